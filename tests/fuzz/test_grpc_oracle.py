"""The gRPC half of the fuzz suite can fail: against a deliberately broken MilvusService (a sync
grpc server in this process) the gRPC surface's cases and judge report an INTERNAL status, an
UNKNOWN one, a token accepted in non-canonical base64, another user's password accepted, a valid
token refused, an "unexpected error" status, an undocumented code, an uncapped message and an
unimplemented method that answers. And the wire generator writes messages the real parser reads
(within their types) and covers every method of the service."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from hypothesis import given, settings
from hypothesis import strategies as st
from pymilvus.grpc_gen import common_pb2, milvus_pb2

from vectorload_dev.testing import free_port, run_slot
from vectorload_dev.testing.fuzz import protowire
from vectorload_dev.testing.fuzz.grpc_surface import (
    GrpcSurface,
    canonical_b64,
    carried_grpc_token,
    mutate,
    token_variants,
)
from vectorload_dev.testing.fuzz.targets.proxy import CODES, grpc_examples

SERVICE = milvus_pb2.DESCRIPTOR.services_by_name["MilvusService"]
CREDENTIALS = ("root:Milvus", "alice:Wonderland")
IMPLEMENTED = frozenset({"GetVersion", "HasCollection", "DescribeCollection", "Search"})


def _broken_handler(method: str) -> grpc.RpcMethodHandler:
    response_cls = message_factory.GetMessageClass(SERVICE.methods_by_name[method].output_type)

    def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
        metadata = dict(context.invocation_metadata())
        token = base64.b64decode(str(metadata.get("authorization", "")) + "==")  # lenient: a bug
        if b"Wonderland" in token:  # bug: any user with alice's password
            pass
        elif token != b"root:Milvus":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no")
        if method == "DescribeCollection" and token == b"root:Milvus":  # bug: a valid token refused
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no")
        if request.startswith(b"\xff"):
            context.abort(grpc.StatusCode.INTERNAL, "boom")  # bug: INTERNAL from input
        if request.startswith(b"\xfe"):
            raise RuntimeError("bug: UNKNOWN from input")
        if method == "GetVersion":  # an implemented method answering UNIMPLEMENTED is caught too
            return bytes(milvus_pb2.GetVersionResponse(version="v2.6.0").SerializeToString())
        if method == "HasCollection":
            code, reason = (65535, "unexpected") if request else (77, "x" * 5000)
            return bytes(
                milvus_pb2.BoolResponse(
                    status=common_pb2.Status(code=code, reason=reason)
                ).SerializeToString()
            )
        if method == "Search":
            return bytes(
                milvus_pb2.SearchResults(status=common_pb2.Status(reason="y" * 5000)).SerializeToString()
            )
        return bytes(response_cls().SerializeToString())  # answers methods it does not implement

    return grpc.unary_unary_rpc_method_handler(handle)


@pytest.fixture(scope="module")
def broken() -> Iterator[GrpcSurface]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handlers = {m.name: _broken_handler(m.name) for m in SERVICE.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    host = run_slot().host
    port = free_port(host)
    server.add_insecure_port(f"{host}:{port}")
    server.start()
    yield GrpcSurface(
        name="broken gRPC",
        host=host,
        port=port,
        service=SERVICE,
        examples=grpc_examples(),
        implemented=IMPLEMENTED,
        credentials=CREDENTIALS,
        codes=CODES,
        max_reason=1000,
    )
    server.stop(0)


def _judged(surface: GrpcSurface, method: str, payload: bytes, metadata: Any = None) -> set[str]:
    case = surface.case("t", f"t: {method}", method, payload, metadata)
    session = surface.session()
    try:
        return {f.kind for f in surface.judge(case, case.run(session))}
    finally:
        surface.close(session)


def test_the_judge_reports_every_kind_of_failure(broken: GrpcSurface) -> None:
    stray = canonical_b64("root:Milvus")[:-2] + "N="
    assert _judged(broken, "GetVersion", b"") == set()
    assert _judged(broken, "GetVersion", b"\xff") == {"grpc INTERNAL"}
    assert _judged(broken, "GetVersion", b"\xfe") == {"grpc UNKNOWN"}
    assert _judged(broken, "GetVersion", b"", (("authorization", stray),)) == {"token accepted"}
    assert _judged(broken, "GetVersion", b"", broken.auth("root:Wonderland")) == {"token accepted"}
    assert _judged(broken, "GetVersion", b"", (("authorization", "d3Jvbmc="),)) == set()  # refused
    assert _judged(broken, "DescribeCollection", b"") == {"valid token refused"}
    assert _judged(broken, "HasCollection", b"\x0a\x00") == {"unexpected error"}
    assert _judged(broken, "HasCollection", b"") == {"undocumented code"}
    assert _judged(broken, "Search", b"") == {"message not capped"}
    assert _judged(broken, "Dummy", b"") == {"unimplemented method answered"}


def test_the_cases_cover_every_method_of_the_service(broken: GrpcSurface) -> None:
    cases = list(broken.cases(1500, seed=4))
    methods = {getattr(c, "method", None) for c in cases}
    assert {m.name for m in SERVICE.methods} <= methods
    kinds = {c.kind for c in cases}
    assert {
        "grpc_valid",
        "grpc_schema",
        "grpc_mutations",
        "grpc_garbage",
        "grpc_tokens",
        "grpc_bursts",
    } <= kinds


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ((("authorization", "cm9vdDpNaWx2dXM="),), "root:Milvus"),
        ((("authorization", " cm9vdDpNaWx2dXM= "),), "root:Milvus"),
        ((("authorization", "cm9vdDpNaWx2dXN="),), None),  # stray bits
        ((("authorization", "cm9vdDpNaWx2dXM"),), None),  # no padding
        ((("authorization", "Bearer cm9vdDpNaWx2dXM="),), None),
        ((("authorization", "cm9vdDpNaWx2dXM="),) * 2, None),  # two entries
        ((), None),
    ],
)
def test_what_carries_a_grpc_token(metadata: Any, token: str | None) -> None:
    assert carried_grpc_token(metadata) == token


def test_no_token_variant_carries_the_token() -> None:
    for credential in CREDENTIALS:
        for label, value in token_variants(credential):
            assert carried_grpc_token((("authorization", value),)) != credential, label


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_messages_within_their_types_parse(data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(list(SERVICE.methods)))
    payload = data.draw(protowire.message_strategy(method.input_type, 0, False))
    message_factory.GetMessageClass(method.input_type).FromString(payload)


def test_a_mutation_replaces_one_nested_field() -> None:
    request = milvus_pb2.SearchRequest(collection_name="book", base=common_pb2.MsgBase(msgID=5, sourceID=7))
    number = common_pb2.MsgBase.DESCRIPTOR.fields_by_name["msgID"].number
    encoded = protowire.key(number, 0) + protowire.varint(9)
    mutated = milvus_pb2.SearchRequest.FromString(mutate(request, ("base", "msgID"), encoded))
    assert (mutated.collection_name, mutated.base.msgID, mutated.base.sourceID) == ("book", 9, 7)
