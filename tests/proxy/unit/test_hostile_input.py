"""Regression tests of what the proxy fuzz run (tests/fuzz/test_fuzz_proxy.py, issue 13) found:

- gRPC requests whose bytes are not the method's message (corrupt wire format, a string field
  that is not UTF-8) were answered UNKNOWN "Unexpected DecodeError" by grpc.aio; they are
  INVALID_ARGUMENT naming the message type, and methods not implemented stay UNIMPLEMENTED
  whatever their bytes;
- a token in non-canonical base64 (`cm9vdDpNaWx2dXN=`: stray bits before the padding, the same
  bytes as `cm9vdDpNaWx2dXM=`) was accepted on gRPC and in REST `Basic`; so was a REST token with
  NBSP (or any Unicode whitespace) around it, since `str.strip()` removed it;
- a gRPC call with two `authorization` entries was judged by the last one only;
- `DescribeIndex` of an unknown field answered code 700, which errors.py did not document, with
  the field name echoed uncut (a 190 KB name gave a 190 KB message);
- search `params` nested deeper than the JSON parser's stack (`[[[[...`) raised RecursionError:
  "unexpected error" 65535 instead of 1100;
- a failed password check logged the user name, whatever it was: `Bearer <API key>:x` put the API
  key in the log;
- the method name of an unauthenticated call became a metric label (a series per name sent).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry
from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload_dev.testing import free_port, run_slot
from vectorload_proxy import errors, requests
from vectorload_proxy.auth import Authenticator, AuthError
from vectorload_proxy.grpc_service import NOT_IMPLEMENTED, AuthInterceptor, MilvusService, RequestGuard
from vectorload_proxy.metrics import ProxyMetrics
from vectorload_proxy.requests import Limits

SCHEMA = CollectionSchema(
    name="book",
    fields=(
        FieldSchema("book_id", "int64", is_primary=True),
        FieldSchema("intro", "float_vector", dim=4, metric="l2"),
    ),
)

GOOD = base64.b64encode(b"root:Milvus").decode()  # cm9vdDpNaWx2dXM=
STRAY = GOOD[:-2] + "N="  # the same bytes, not canonical


@pytest.fixture
def auth(tmp_path: Path) -> Authenticator:
    creds = tmp_path / "credentials"
    creds.write_text("root:Milvus\nalice:Wonderland\nsecret-key\n")
    return Authenticator(creds)


def test_only_canonical_base64_carries_a_token(auth: Authenticator) -> None:
    assert base64.b64decode(STRAY) == b"root:Milvus"  # what made it pass
    assert auth.check_grpc({"authorization": GOOD}) == "root"
    assert auth.check_grpc({"authorization": f" {GOOD} "}) == "root"  # HTTP whitespace around it
    assert auth.check_http(f"Basic {GOOD}") == "root"
    for value in (
        STRAY,
        GOOD.rstrip("="),
        GOOD + "==",
        f"{GOOD}\u00a0",
        base64.b64encode(b"root:Milvus\n").decode(),
    ):
        with pytest.raises(AuthError):
            auth.check_grpc({"authorization": value})
        with pytest.raises(AuthError):
            auth.check_http(f"Basic {value}")


@pytest.mark.parametrize("space", ["\u00a0", "\x0b", "\x0c", "\x1f", "\x85", "\u2028", "\u3000"])
def test_only_http_whitespace_surrounds_a_rest_token(auth: Authenticator, space: str) -> None:
    assert auth.check_http(" Bearer root:Milvus\t") == "root"
    for header in (f"Bearer root:Milvus{space}", f"Bearer {space}root:Milvus", f"{space}Bearer root:Milvus"):
        with pytest.raises(AuthError):
            auth.check_http(header)


def test_another_users_password_is_refused(auth: Authenticator) -> None:
    assert auth.check_http("Bearer alice:Wonderland") == "alice"
    for token in ("root:Wonderland", "alice:Milvus", "secret-key:Milvus", "root:", ":Milvus"):
        with pytest.raises(AuthError):
            auth.check_http(f"Bearer {token}")


def test_a_failed_check_logs_only_configured_user_names(
    auth: Authenticator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="vectorload_proxy.auth")
    for token in ("secret-key:x", "secret-key:", "alice:wrong"):
        with pytest.raises(AuthError):
            auth.check_http(f"Bearer {token}")
    assert "secret-key" not in caplog.text
    assert "authentication failed for user alice" in caplog.text


def test_index_not_found_is_documented_and_capped() -> None:
    error = errors.index_not_found("x" * 200_000)
    assert error.code == errors.INDEX_NOT_FOUND == 700
    assert len(error.message) < 300


@pytest.mark.parametrize("params", ["[" * 100_000 + "]" * 100_000, '{"a":' * 10_000 + "1" + "}" * 10_000])
def test_search_params_nested_too_deep_are_1100(params: str) -> None:
    with pytest.raises(errors.MilvusError) as caught:
        requests.search_args(
            "book",
            [],
            "",
            b"",
            [],
            {"topk": "5", "params": params},
            0,
            SCHEMA,
            ("book_id", "intro"),
            Limits(),
        )
    assert caught.value.code == errors.PARAMETER_INVALID
    assert "search params must be a JSON object" in caught.value.message
    assert len(caught.value.message) < 400


class _Api:
    """The one domain call GetVersion makes (the guard and the interceptor are under test)."""

    def version(self) -> str:
        return "v2.6.0"


@pytest.fixture
def metrics() -> ProxyMetrics:
    return ProxyMetrics(CollectorRegistry())


@pytest.fixture
async def channel(auth: Authenticator, metrics: ProxyMetrics) -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=[AuthInterceptor(auth, metrics), RequestGuard(metrics)])
    api: Any = _Api()
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusService(api, metrics), server)
    host = run_slot().host
    port = free_port(host)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    async with grpc.aio.insecure_channel(f"{host}:{port}") as ch:
        yield ch
    await server.stop(0)


async def _call(
    channel: grpc.aio.Channel,
    method: str,
    payload: bytes,
    metadata: tuple[tuple[str, str], ...] | None = None,
) -> tuple[grpc.StatusCode, str]:
    stub = channel.unary_unary(
        f"/milvus.proto.milvus.MilvusService/{method}", request_serializer=None, response_deserializer=None
    )
    try:
        await stub(payload, metadata=(("authorization", GOOD),) if metadata is None else metadata, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), str(exc.details())
    return grpc.StatusCode.OK, ""


BAD_UTF8 = milvus_pb2.GetVersionRequest().SerializeToString() + b"\x0a\x02\xff\xfe"  # an unknown field
CORRUPT = b"\x0a\xff\xff\xff\xff\x0f"
NOT_UTF8_NAME = milvus_pb2.HasCollectionRequest().SerializeToString() + b"\x1a\x02\xff\xfe"


async def test_undecodable_requests_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    assert (await _call(channel, "GetVersion", b""))[0] == grpc.StatusCode.OK
    assert (await _call(channel, "GetVersion", BAD_UTF8))[0] == grpc.StatusCode.OK  # unknown fields are fine
    code, details = await _call(channel, "GetVersion", CORRUPT)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert "not a valid GetVersionRequest message" in details
    code, details = await _call(channel, "HasCollection", NOT_UTF8_NAME)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert "UTF-8" in details


async def test_unimplemented_methods_stay_unimplemented_whatever_their_bytes(
    channel: grpc.aio.Channel,
) -> None:
    method = NOT_IMPLEMENTED[0]
    for payload in (b"", CORRUPT, b"\xff" * 10):
        assert (await _call(channel, method, payload))[0] == grpc.StatusCode.UNIMPLEMENTED


async def test_unimplemented_streaming_methods_stay_unimplemented(channel: grpc.aio.Channel) -> None:
    """Found by the fuzz run: the guard covered unary methods only; garbage sent to DumpMessages
    (server streaming) was UNKNOWN."""
    path = "/milvus.proto.milvus.MilvusService/DumpMessages"
    stream = channel.unary_stream(path, request_serializer=None, response_deserializer=None)
    for payload in (b"", CORRUPT, b"\xf6\x8a\x8biz\r"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stream(payload, metadata=(("authorization", GOOD),), timeout=10):
                pass
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_two_authorization_entries_are_refused(channel: grpc.aio.Channel) -> None:
    wrong = base64.b64encode(b"root:wrong").decode()
    for metadata in ((("authorization", wrong), ("authorization", GOOD)), (("authorization", GOOD),) * 2):
        code, _ = await _call(channel, "GetVersion", b"", metadata)
        assert code == grpc.StatusCode.UNAUTHENTICATED
    assert (await _call(channel, "GetVersion", b"", (("authorization", STRAY),)))[
        0
    ] == grpc.StatusCode.UNAUTHENTICATED


async def test_unknown_method_names_are_not_metric_labels(
    channel: grpc.aio.Channel, metrics: ProxyMetrics
) -> None:
    """Found by the fuzz run: an unauthenticated call's method name, which the client chooses,
    became a metric label: a series (memory) per name sent."""
    wrong = (("authorization", base64.b64encode(b"root:wrong").decode()),)
    for name in ("Nope1", "Nope2", "GetVersionX"):
        assert (await _call(channel, name, b"", wrong))[0] == grpc.StatusCode.UNAUTHENTICATED
        assert (await _call(channel, name, b""))[0] == grpc.StatusCode.UNIMPLEMENTED
    assert (await _call(channel, "GetVersion", b"", wrong))[0] == grpc.StatusCode.UNAUTHENTICATED
    methods = {
        sample.labels["method"]
        for family in metrics.registry.collect()
        for sample in family.samples
        if "method" in sample.labels
    }
    assert methods == {"unknown", "GetVersion"}, methods
