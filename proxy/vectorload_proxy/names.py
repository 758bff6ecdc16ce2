"""Milvus names ↔ Kubernetes names: the CollectionLoad name of a collection, databases ↔ namespaces,
and which database a gRPC or REST call names (one rule for the read and the write paths).

A Milvus collection name (`^[A-Za-z_][A-Za-z0-9_]{0,254}$`) is not a Kubernetes object name
(DNS-1123 subdomain: lowercase letters, digits, `-` and `.`, alphanumeric at both ends, at most
253 characters). A CollectionLoad the proxy creates is named by lowercasing and turning `_` into
`-`; when that changed the name (or had to trim it), a short hash of the real name is appended so
that `Book` and `book`, or `my_col` and `my-col`'s neighbours, never share an object. The real
name is always `spec.collection`, and the annotation `COLLECTION_ANNOTATION` repeats it for people
reading `kubectl get cload -o yaml`.

Which CollectionLoad answers for a collection is not decided by its name: any CollectionLoad of
the namespace whose `spec.collection` is the collection counts (one made with kubectl too), and
the oldest wins — the operator's conflict rule (`core/conflicts.py`), so both always pick the
same object.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

from vectorload.storage.api import NAME_PATTERN

from .errors import database_not_found, echo, parameter_invalid

if TYPE_CHECKING:
    import grpc
    from aiohttp import web

COLLECTION_ANNOTATION = "vectorload.io/collection"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "vectorload-proxy"
DEFAULT_DATABASE = "default"
DB_HEADER = "DB-Name"  # REST v2: the database when the body names none
DB_METADATA = "dbname"  # gRPC: the metadata pymilvus sends for `MilvusClient(db_name=...)`
MAX_OBJECT_NAME = 253
HASH_CHARS = 8
_DNS_INVALID = re.compile(r"[^a-z0-9-]")


def name_hash(collection: str) -> str:
    return hashlib.sha256(collection.encode()).hexdigest()[:HASH_CHARS]


def collection_load_name(collection: str) -> str:
    """The DNS-1123 object name of the CollectionLoad the proxy creates for `collection`."""
    base = _DNS_INVALID.sub("-", collection.lower().replace("_", "-")).strip("-")
    limit = MAX_OBJECT_NAME - HASH_CHARS - 1
    if base == collection and len(base) <= MAX_OBJECT_NAME:
        return base
    base = base[:limit].rstrip("-")
    return f"{base}-{name_hash(collection)}" if base else f"c-{name_hash(collection)}"


def alternative_name(collection: str) -> str:
    """The name to use when `collection_load_name` is taken by a CollectionLoad of another
    collection (made with kubectl): a hashed name, always distinct from the first choice."""
    base = _DNS_INVALID.sub("-", collection.lower().replace("_", "-")).strip("-")
    base = base[: MAX_OBJECT_NAME - 2 * HASH_CHARS - 2].rstrip("-") or "c"
    return f"{base}-{name_hash(collection)}-{name_hash(collection + '#')}"


def check_collection_name(name: str) -> str:
    """`name` when it is a valid Milvus collection name, else 1100 naming the problem."""
    if not name:
        raise parameter_invalid("collection name should not be empty")
    if not NAME_PATTERN.fullmatch(name):
        raise parameter_invalid(
            f"Invalid collection name: {echo(name)}. the first character of a collection name must be "
            "an underscore or letter, the name may only contain numbers, letters and underscores, "
            "and it must not be longer than 255 characters"
        )
    return name


def check_partition_name(name: str) -> str:
    if not name:
        raise parameter_invalid("partition name should not be empty")
    if not NAME_PATTERN.fullmatch(name):
        raise parameter_invalid(
            f"Invalid partition name: {echo(name)}. the first character of a partition name must be "
            "an underscore or letter, the name may only contain numbers, letters and underscores, "
            "and it must not be longer than 255 characters"
        )
    return name


def check_field_name(name: str) -> str:
    if not name or not NAME_PATTERN.fullmatch(name):
        raise parameter_invalid(f"Invalid field name: {echo(name)}")
    return name


class Databases:
    """Milvus databases ↔ Kubernetes namespaces: `default` (or no name) is the proxy's own
    namespace; every other served namespace is a database of its own name."""

    def __init__(self, own_namespace: str, served: tuple[str, ...]) -> None:
        self.own = own_namespace
        self.served = tuple(dict.fromkeys((own_namespace, *served)))

    def namespace(self, database: str | None) -> str:
        """The namespace of `database`; 800 database not found for any other name."""
        if not database or database == DEFAULT_DATABASE:
            return self.own
        if database in self.served and database != self.own:
            return database
        raise database_not_found(database)

    def names(self) -> list[str]:
        """ListDatabases: `default`, then every other served namespace."""
        return [DEFAULT_DATABASE, *(ns for ns in self.served if ns != self.own)]

    def database(self, namespace: str) -> str:
        return DEFAULT_DATABASE if namespace == self.own else namespace


def grpc_database(request: Any, context: grpc.aio.ServicerContext) -> str:
    """The database a gRPC call names: the request's `db_name`, else the `dbname` metadata."""
    name = str(getattr(request, "db_name", "") or "")
    if name:
        return name
    for key, value in context.invocation_metadata() or ():
        if key == DB_METADATA and value:
            return str(value)
    return ""


def rest_database(request: web.Request, body_db: str) -> str:
    """The database a REST v2 call names: the body's `dbName`, else the `DB-Name` header."""
    return body_db or request.headers.get(DB_HEADER, "")
