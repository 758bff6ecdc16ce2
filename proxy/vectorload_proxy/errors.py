"""One error type for every Milvus answer that is not a success, with Milvus' own codes and texts.

Milvus 2.4+ (pkg/util/merr) answers an error as a `common.Status` carrying a numeric `code`
(100 collection not found, 101 not loaded, 1100 invalid parameter, ...), the text in `reason`, and
for older clients the deprecated `error_code` enum (`oldCode()`: CollectionNotExists for 100,
IllegalArgument for 1100, UnexpectedError for most others). pymilvus raises whenever either field
is non-zero, so both are filled. The texts follow merr's shapes: a base text, `[key=value]`
details (`collection not found[collection=book]`), and a wrapped message in front
(`"<message>: invalid parameter"`) or a description behind (`"<base>: <description>"`).

Anything a client sent is echoed at most `ECHO_CHARS` characters long, so an error message never
grows with the input.
"""

from __future__ import annotations

from dataclasses import dataclass

ECHO_CHARS = 200


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """`str(value)` cut to `limit` characters (marking the cut and the full length)."""
    text = str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


# merr codes (pkg/util/merr/errors.go)
SUCCESS = 0
SERVICE_NOT_READY = 1
SERVICE_UNAVAILABLE = 2
MEMORY_LIMIT_EXCEEDED = 3
SERVICE_INTERNAL = 5
UNIMPLEMENTED = 10
COLLECTION_NOT_FOUND = 100
COLLECTION_NOT_LOADED = 101
COLLECTION_NOT_FULLY_LOADED = 103
PARTITION_NOT_FOUND = 200
PARTITION_NOT_LOADED = 201
PARTITION_NOT_FULLY_LOADED = 202
RESOURCE_GROUP_NOT_FOUND = 300
RESOURCE_GROUP_NODE_NOT_ENOUGH = 304
REPLICA_NOT_AVAILABLE = 401
INDEX_NOT_FOUND = 700
DATABASE_NOT_FOUND = 800
PARAMETER_INVALID = 1100
PARAMETER_MISSING = 1101
PARAMETER_TOO_LARGE = 1102
FIELD_NOT_FOUND = 1700
NEED_AUTHENTICATE = 1800
INCORRECT_PARAMETER_FORMAT = 1801
MISSING_REQUIRED_PARAMETERS = 1802
IMPORT_FAILED = 2100
TIMEOUT = 10001
UNEXPECTED = 65535

# common.ErrorCode (the deprecated enum), as merr's oldCode() maps them
OLD_SUCCESS = 0
OLD_UNEXPECTED_ERROR = 1
OLD_COLLECTION_NOT_EXISTS = 4
OLD_ILLEGAL_ARGUMENT = 5
OLD_META_FAILED = 15
OLD_NO_REPLICA_AVAILABLE = 46
OLD_INSUFFICIENT_MEMORY_TO_LOAD = 52
OLD_NOT_READY_SERVE = 56

_OLD_CODES = {
    SERVICE_NOT_READY: OLD_NOT_READY_SERVE,
    COLLECTION_NOT_FOUND: OLD_COLLECTION_NOT_EXISTS,
    PARAMETER_INVALID: OLD_ILLEGAL_ARGUMENT,
    PARTITION_NOT_FOUND: OLD_META_FAILED,
    REPLICA_NOT_AVAILABLE: OLD_NO_REPLICA_AVAILABLE,
    MEMORY_LIMIT_EXCEEDED: OLD_INSUFFICIENT_MEMORY_TO_LOAD,
}


def old_code(code: int) -> int:
    """The deprecated `error_code` for a merr `code` (merr's oldCode)."""
    if code == SUCCESS:
        return OLD_SUCCESS
    return _OLD_CODES.get(code, OLD_UNEXPECTED_ERROR)


@dataclass(frozen=True)
class MilvusError(Exception):
    """A Milvus error answer: `code` (merr), `message` (the Status reason)."""

    code: int
    message: str
    retriable: bool = False

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})"

    @property
    def error_code(self) -> int:
        return old_code(self.code)


# ------------------------------------------------------------------------------ constructors


def collection_not_found(collection: str, database: str | None = None) -> MilvusError:
    where = f"[database={echo(database)}]" if database else ""
    return MilvusError(COLLECTION_NOT_FOUND, f"collection not found{where}[collection={echo(collection)}]")


def collection_not_loaded(collection: str, detail: str = "") -> MilvusError:
    text = f"collection not loaded[collection={echo(collection)}]"
    return MilvusError(COLLECTION_NOT_LOADED, f"{detail}: {text}" if detail else text)


def collection_not_fully_loaded(collection: str, detail: str = "") -> MilvusError:
    text = f"collection not fully loaded[collection={echo(collection)}]"
    return MilvusError(COLLECTION_NOT_FULLY_LOADED, f"{detail}: {text}" if detail else text, retriable=True)


def partition_not_found(partition: str, detail: str = "") -> MilvusError:
    text = f"partition not found[partition={echo(partition)}]"
    return MilvusError(PARTITION_NOT_FOUND, f"{detail}: {text}" if detail else text)


def partition_not_loaded(partition: str, detail: str = "") -> MilvusError:
    text = f"partition not loaded[partition={echo(partition)}]"
    return MilvusError(PARTITION_NOT_LOADED, f"{detail}: {text}" if detail else text)


def partition_not_fully_loaded(partition: str, detail: str = "") -> MilvusError:
    text = f"partition not fully loaded[partition={echo(partition)}]"
    return MilvusError(PARTITION_NOT_FULLY_LOADED, f"{detail}: {text}" if detail else text, retriable=True)


def index_not_found(index: str) -> MilvusError:
    return MilvusError(INDEX_NOT_FOUND, f"index not found[indexName={echo(index)}]")


def database_not_found(database: str) -> MilvusError:
    return MilvusError(DATABASE_NOT_FOUND, f"database not found[database={echo(database)}]")


def resource_group_not_found(group: str) -> MilvusError:
    return MilvusError(RESOURCE_GROUP_NOT_FOUND, f"resource group not found[rg={echo(group)}]")


def import_failed(message: str) -> MilvusError:
    """merr.ErrImportFailed: `"importing data failed: <message>"`."""
    return MilvusError(IMPORT_FAILED, f"importing data failed: {message}")


def parameter_invalid(message: str) -> MilvusError:
    """merr.WrapErrParameterInvalidMsg: `"<message>: invalid parameter"`."""
    return MilvusError(PARAMETER_INVALID, f"{message}: invalid parameter")


def parameter_missing(name: str) -> MilvusError:
    return MilvusError(PARAMETER_MISSING, f"missing parameter[missing_param={echo(name)}]")


def parameter_too_large(message: str) -> MilvusError:
    return MilvusError(PARAMETER_TOO_LARGE, f"{message}: parameter too large")


def field_not_found(field: str, detail: str = "") -> MilvusError:
    text = f"field not found[field={echo(field)}]"
    return MilvusError(FIELD_NOT_FOUND, f"{detail}: {text}" if detail else text)


def node_not_enough(current: int | None, expected: int | None, detail: str) -> MilvusError:
    """What an unmet replica count answers (merr ErrResourceGroupNodeNotEnough, 304)."""
    fields = ""
    if current is not None and expected is not None:
        fields = f"[currentNodeNum={current}][expectedNodeNum={expected}]"
    return MilvusError(RESOURCE_GROUP_NODE_NOT_ENOUGH, f"resource group node not enough{fields}: {detail}")


def memory_limit_exceeded(detail: str) -> MilvusError:
    return MilvusError(MEMORY_LIMIT_EXCEEDED, f"memory limit exceeded: {detail}")


def service_unavailable(detail: str) -> MilvusError:
    return MilvusError(SERVICE_UNAVAILABLE, f"service unavailable: {detail}", retriable=True)


def timeout(detail: str) -> MilvusError:
    return MilvusError(TIMEOUT, f"request timeout: {detail}")


def unexpected(detail: str) -> MilvusError:
    return MilvusError(UNEXPECTED, f"unexpected error: {detail}")


def unimplemented(what: str) -> MilvusError:
    return MilvusError(UNIMPLEMENTED, f"service unimplemented: {echo(what)} is not supported by vectorload")


# the authentication errors. gRPC answers them as status UNAUTHENTICATED (not a merr status: "don't
# use the merr, because it will cause the wrong retry behavior in the sdk"); REST as HTTP 401
# with code 1800.
AUTH_MISSING = "missing authorization in header"
AUTH_BAD_FORMAT = "invalid token format"
AUTH_BAD_PASSWORD = "auth check failure, please check username and password are correct"  # noqa: S105
AUTH_BAD_API_KEY = "auth check failure, please check api key is correct"
REST_NEED_AUTHENTICATE = "user hasn't authenticated"
