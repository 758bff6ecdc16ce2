"""`milvus.proto.milvus.MilvusService` on grpc.aio, from the stubs inside the pymilvus wheel.

A thin layer: each implemented method reads its request message, calls the domain layer
(`api.MilvusApi`) and builds the response message. Errors follow Milvus 2.4+: a failed call is a
successful RPC whose `status` carries both `code` (merr) and the deprecated `error_code`;
an exception in a handler becomes such a status (code 65535, "unexpected error", logged with its
traceback) — never a gRPC INTERNAL, which the SDKs would retry 75 times. Authentication is an
interceptor in front of every method (implemented or not): a missing or wrong token is the gRPC
status UNAUTHENTICATED with Milvus' text. Every method of the service this module does not
implement answers gRPC UNIMPLEMENTED ("Method not implemented!", the generated servicer's
default), which pymilvus turns into a clear "not supported" error.

The database of a call is the request's `db_name`, else the `dbname` metadata pymilvus sends for
`MilvusClient(db_name=...)`, else `default` (Milvus' database interceptor does the same).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import message_factory
from pymilvus.grpc_gen import common_pb2, milvus_pb2, milvus_pb2_grpc

from . import convert
from .api import MilvusApi
from .auth import Authenticator, AuthError
from .errors import AUTH_BAD_FORMAT, MilvusError, echo, old_code, unexpected
from .metrics import ProxyMetrics
from .names import grpc_database
from .requests import key_values
from .writes_grpc import WRITE_METHODS, WriteMethods

log = logging.getLogger(__name__)
T = TypeVar("T")

SERVICE = milvus_pb2.DESCRIPTOR.services_by_name["MilvusService"]
PROTOCOL = "grpc"
UNIMPLEMENTED_DETAILS = "Method not implemented!"
CONSISTENCY_BOUNDED = 2


def status(exc: MilvusError | None = None) -> common_pb2.Status:
    if exc is None:
        return common_pb2.Status()
    return common_pb2.Status(
        code=exc.code,
        error_code=old_code(exc.code),
        reason=exc.message,
        detail=exc.message,
        retriable=exc.retriable,
    )


def _response_class(method: str) -> Any:
    return message_factory.GetMessageClass(SERVICE.methods_by_name[method].output_type)


def _error_response(method: str, exc: MilvusError) -> Any:
    cls = _response_class(method)
    if cls.DESCRIPTOR.full_name == "milvus.proto.common.Status":
        return status(exc)
    return cls(status=status(exc))


Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]


def rpc(fn: Handler) -> Handler:
    """Metrics and error translation around one implemented method."""
    method = fn.__name__

    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        metrics: ProxyMetrics = self.metrics
        metrics.in_flight.labels(PROTOCOL).inc()
        started = time.perf_counter()
        code = "0"
        try:
            return await fn(self, request, context)
        except MilvusError as exc:
            code = str(exc.code)
            return _error_response(method, exc)
        except Exception as exc:
            log.exception("unexpected error in %s", method)
            error = unexpected(f"{type(exc).__name__}: {echo(exc)}; see the proxy log")
            code = str(error.code)
            return _error_response(method, error)
        finally:
            metrics.in_flight.labels(PROTOCOL).dec()
            metrics.requests.labels(PROTOCOL, method, code).inc()
            metrics.latency.labels(PROTOCOL, method).observe(time.perf_counter() - started)

    wrapper.__name__ = method
    wrapper.__qualname__ = fn.__qualname__
    return wrapper


class MilvusService(WriteMethods, milvus_pb2_grpc.MilvusServiceServicer):  # type: ignore[misc]
    def __init__(self, api: MilvusApi, metrics: ProxyMetrics) -> None:
        self.api = api
        self.metrics = metrics

    # ------------------------------------------------------------------------ session

    @rpc
    async def Connect(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        info = self.api.server_info()
        return milvus_pb2.ConnectResponse(
            status=status(),
            server_info=common_pb2.ServerInfo(
                build_tags=info["build_tags"], deploy_mode=info["deploy_mode"], git_commit=info["git_commit"]
            ),
            identifier=self.api.connect(),
        )

    @rpc
    async def GetVersion(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return milvus_pb2.GetVersionResponse(status=status(), version=self.api.version())

    @rpc
    async def CheckHealth(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        healthy, reasons = self.api.health()
        return milvus_pb2.CheckHealthResponse(status=status(), isHealthy=healthy, reasons=reasons)

    @rpc
    async def GetComponentStates(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        healthy, _ = self.api.health()
        code = common_pb2.Healthy if healthy else common_pb2.Initializing
        return milvus_pb2.ComponentStates(
            state=milvus_pb2.ComponentInfo(role="proxy", state_code=code), status=status()
        )

    @rpc
    async def ListDatabases(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        names = self.api.list_databases()
        return milvus_pb2.ListDatabasesResponse(status=status(), db_names=names)

    @rpc
    async def DescribeDatabase(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        name, db_id = self.api.describe_database(request.db_name)
        return milvus_pb2.DescribeDatabaseResponse(status=status(), db_name=name, dbID=db_id)

    # ------------------------------------------------------------------------ catalog

    @rpc
    async def ShowCollections(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        rows = await self.api.show_collections(
            grpc_database(request, context), list(request.collection_names), in_memory_only=request.type == 1
        )
        return milvus_pb2.ShowCollectionsResponse(
            status=status(),
            collection_names=[r.name for r in rows],
            collection_ids=[r.id for r in rows],
            created_timestamps=[convert.hybrid_ts(r.created_ns) for r in rows],
            created_utc_timestamps=[r.created_ns // 1_000_000 for r in rows],
            inMemory_percentages=[r.in_memory for r in rows],
            query_service_available=[r.in_memory == 100 for r in rows],
            shards_num=[1 for _ in rows],
        )

    @rpc
    async def DescribeCollection(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        described = await self.api.describe_collection(
            grpc_database(request, context), request.collection_name
        )
        info = described.info
        return milvus_pb2.DescribeCollectionResponse(
            status=status(),
            schema=convert.schema_proto(info, described.database),
            collectionID=info.collection_id,
            created_timestamp=convert.hybrid_ts(info.created_ns),
            created_utc_timestamp=info.created_ns // 1_000_000,
            update_timestamp=convert.hybrid_ts(info.updated_ns),
            shards_num=1,
            consistency_level=CONSISTENCY_BOUNDED,
            collection_name=info.name,
            db_name=described.database,
            num_partitions=len(info.partitions),
        )

    @rpc
    async def HasCollection(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        found = await self.api.has_collection(grpc_database(request, context), request.collection_name)
        return milvus_pb2.BoolResponse(status=status(), value=found)

    @rpc
    async def ShowPartitions(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        rows = await self.api.show_partitions(
            grpc_database(request, context), request.collection_name, list(request.partition_names)
        )
        return milvus_pb2.ShowPartitionsResponse(
            status=status(),
            partition_names=[r.name for r in rows],
            partitionIDs=[r.id for r in rows],
            created_timestamps=[convert.hybrid_ts(r.created_ns) for r in rows],
            created_utc_timestamps=[r.created_ns // 1_000_000 for r in rows],
            inMemory_percentages=[r.in_memory for r in rows],
        )

    @rpc
    async def HasPartition(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        found = await self.api.has_partition(
            grpc_database(request, context), request.collection_name, request.partition_name
        )
        return milvus_pb2.BoolResponse(status=status(), value=found)

    @rpc
    async def GetCollectionStatistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        rows = await self.api.collection_rows(grpc_database(request, context), request.collection_name)
        stats = [common_pb2.KeyValuePair(key="row_count", value=str(rows))]
        return milvus_pb2.GetCollectionStatisticsResponse(status=status(), stats=stats)

    @rpc
    async def GetPartitionStatistics(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        rows = await self.api.partition_rows(
            grpc_database(request, context), request.collection_name, request.partition_name
        )
        stats = [common_pb2.KeyValuePair(key="row_count", value=str(rows))]
        return milvus_pb2.GetPartitionStatisticsResponse(status=status(), stats=stats)

    @rpc
    async def DescribeIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        rows = await self.api.describe_index(
            grpc_database(request, context), request.collection_name, request.field_name or request.index_name
        )
        return milvus_pb2.DescribeIndexResponse(
            status=status(),
            index_descriptions=[
                milvus_pb2.IndexDescription(
                    index_name=r.index_name,
                    indexID=r.index_id,
                    params=[common_pb2.KeyValuePair(key=k, value=v) for k, v in r.params.items()],
                    field_name=r.field,
                    indexed_rows=r.rows,
                    total_rows=r.rows,
                    state=common_pb2.Finished,
                )
                for r in rows
            ],
        )

    @rpc
    async def GetIndexState(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self.api.describe_index(
            grpc_database(request, context), request.collection_name, request.field_name or request.index_name
        )  # every index is built when a segment is written: Finished, or 700 index not found
        return milvus_pb2.GetIndexStateResponse(status=status(), state=common_pb2.Finished)

    @rpc
    async def GetIndexBuildProgress(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        rows = await self.api.describe_index(
            grpc_database(request, context), request.collection_name, request.field_name or request.index_name
        )
        total = rows[0].rows if rows else 0
        return milvus_pb2.GetIndexBuildProgressResponse(status=status(), indexed_rows=total, total_rows=total)

    @rpc
    async def ListAliases(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        database = grpc_database(request, context)
        if request.collection_name:
            await self.api.describe_collection(database, request.collection_name)
        name, _ = self.api.describe_database(database)
        return milvus_pb2.ListAliasesResponse(
            status=status(), db_name=name, collection_name=request.collection_name, aliases=[]
        )  # vectorload has no aliases

    # ---------------------------------------------------------------------- lifecycle

    @rpc
    async def LoadCollection(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self.api.load_collection(
            grpc_database(request, context),
            request.collection_name,
            replica_number=request.replica_number,
            load_fields=list(request.load_fields),
            skip_dynamic=request.skip_load_dynamic_field,
            resource_groups=list(request.resource_groups),
        )
        return status()

    @rpc
    async def LoadPartitions(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self.api.load_partitions(
            grpc_database(request, context),
            request.collection_name,
            list(request.partition_names),
            replica_number=request.replica_number,
            load_fields=list(request.load_fields),
            skip_dynamic=request.skip_load_dynamic_field,
            resource_groups=list(request.resource_groups),
        )
        return status()

    @rpc
    async def ReleaseCollection(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self.api.release_collection(grpc_database(request, context), request.collection_name)
        return status()

    @rpc
    async def ReleasePartitions(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self.api.release_partitions(
            grpc_database(request, context), request.collection_name, list(request.partition_names)
        )
        return status()

    @rpc
    async def GetLoadState(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        load, _ = await self.api.load_state(
            grpc_database(request, context), request.collection_name, list(request.partition_names)
        )
        return milvus_pb2.GetLoadStateResponse(status=status(), state=load)

    @rpc
    async def GetLoadingProgress(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        progress = await self.api.loading_progress(
            grpc_database(request, context), request.collection_name, list(request.partition_names)
        )
        return milvus_pb2.GetLoadingProgressResponse(
            status=status(), progress=progress, refresh_progress=progress
        )

    @rpc
    async def GetReplicas(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        rows = await self.api.replicas(
            grpc_database(request, context), request.collection_name, request.collectionID
        )
        return milvus_pb2.GetReplicasResponse(
            status=status(),
            replicas=[
                milvus_pb2.ReplicaInfo(
                    replicaID=r.id,
                    collectionID=r.collection_id,
                    partition_ids=list(r.partition_ids),
                    node_ids=list(r.node_ids),
                    resource_group_name="__default_resource_group",
                    shard_replicas=[
                        milvus_pb2.ShardReplica(
                            leaderID=r.node_ids[0] if r.node_ids else 0,
                            leader_addr=r.nodes[0] if r.nodes else "",
                            dm_channel_name=f"replica-{r.id}",
                            node_ids=list(r.node_ids),
                        )
                    ],
                )
                for r in rows
            ],
        )

    # --------------------------------------------------------------------------- data

    @rpc
    async def Search(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request.HasField("ids") or request.search_by_primary_keys:
            raise MilvusError(
                1100, "search by primary keys is not supported by vectorload: invalid parameter"
            )
        if len(request.sub_reqs) or request.HasField("function_score"):
            raise MilvusError(
                1100, "hybrid search and rerankers are not supported by vectorload: invalid parameter"
            )
        if len(request.expr_template_values):
            raise MilvusError(
                1100,
                "expression templates (filter_params) are not supported by vectorload: invalid parameter",
            )
        outcome = await self.api.search(
            grpc_database(request, context),
            request.collection_name,
            list(request.partition_names),
            request.dsl,
            request.placeholder_group,
            list(request.output_fields),
            key_values(request.search_params),
            nq=request.nq,
        )
        args = outcome.args
        results = convert.search_result_columns(
            outcome.info.schema,
            outcome.columns,
            args.top_k,
            args.output_fields,
            args.metric,
            args.round_decimal,
            args.offset,
        )
        return milvus_pb2.SearchResults(
            status=status(), results=results, collection_name=request.collection_name
        )

    @rpc
    async def Query(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if len(request.expr_template_values):
            raise MilvusError(
                1100,
                "expression templates (filter_params) are not supported by vectorload: invalid parameter",
            )
        outcome = await self.api.query(
            grpc_database(request, context),
            request.collection_name,
            request.expr,
            list(request.output_fields),
            list(request.partition_names),
            key_values(request.query_params),
        )
        schema = outcome.info.schema
        pk = schema.primary_key.name
        names = [pk, *(n for n in outcome.output_fields if n != pk)]
        return milvus_pb2.QueryResults(
            status=status(),
            fields_data=convert.query_columns(schema, outcome.output_fields, outcome.rows),
            collection_name=request.collection_name,
            output_fields=names,
            primary_field_name=pk,
        )


def _unimplemented(name: str) -> Callable[..., Awaitable[None]]:
    async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.metrics.requests.labels(PROTOCOL, name, "UNIMPLEMENTED").inc()
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, UNIMPLEMENTED_DETAILS)

    handler.__name__ = name
    return handler


for _name in WRITE_METHODS:  # the write path (writes_grpc.py), behind the same wrapper
    setattr(MilvusService, _name, rpc(getattr(WriteMethods, _name)))
IMPLEMENTED = tuple(
    m.name
    for m in SERVICE.methods
    if getattr(getattr(MilvusService, m.name, None), "__qualname__", "").startswith(
        ("MilvusService.", "WriteMethods.")
    )
)
for _method in SERVICE.methods:
    if _method.name not in IMPLEMENTED:
        setattr(MilvusService, _method.name, _unimplemented(_method.name))
NOT_IMPLEMENTED = tuple(m.name for m in SERVICE.methods if m.name not in IMPLEMENTED)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Milvus' authentication in front of every method."""

    def __init__(self, auth: Authenticator, metrics: ProxyMetrics) -> None:
        self.auth = auth
        self.metrics = metrics

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        if not self.auth.enabled:
            return await continuation(details)
        pairs = list(details.invocation_metadata or ())
        metadata = dict(pairs)
        try:
            if sum(1 for k, _ in pairs if k == "authorization") > 1:
                # which one would count is a guess (a dict keeps the last, Go's md.Get the first):
                # a call with two tokens is refused, whatever they are
                raise AuthError(AUTH_BAD_FORMAT)
            self.auth.check_grpc(metadata)
        except AuthError as exc:
            method = str(details.method or "").rsplit("/", 1)[-1]
            # a client chooses the path: a label per name it sends would be memory without bound
            label = method if method in SERVICE.methods_by_name else "unknown"
            self.metrics.requests.labels(PROTOCOL, label, "UNAUTHENTICATED").inc()
            return _refuse(exc.message)
        return await continuation(details)


class _Undecodable:
    """A request whose bytes are not its message type (what the guarded deserializer returns
    instead of raising, which grpc.aio would answer UNKNOWN "Unexpected DecodeError")."""

    def __init__(self, error: str) -> None:
        self.error = error


class RequestGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Bytes that do not parse as the method's request message are INVALID_ARGUMENT naming the
    problem, not UNKNOWN; a method not implemented answers UNIMPLEMENTED whatever its bytes.
    The guarded handlers are made once per method (the service's methods bound the cache)."""

    def __init__(self, metrics: ProxyMetrics) -> None:
        self.metrics = metrics
        self._handlers: dict[str, Any] = {}

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        method = str(details.method or "")
        guarded = self._handlers.get(method)
        if guarded is not None:
            return guarded
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        name = method.rsplit("/", 1)[-1]
        if name in NOT_IMPLEMENTED:
            # its answer does not depend on the request: the bytes are not parsed (unary or
            # streaming alike; DumpMessages' garbage was UNKNOWN too)
            guarded = handler._replace(request_deserializer=None)
        elif handler.unary_unary is not None:
            guarded = self._guard(handler, name)
        else:  # an implemented streaming method (none yet) parses as grpc.aio does
            return handler
        self._handlers[method] = guarded
        return guarded

    def _guard(self, handler: Any, name: str) -> Any:
        inner = handler.unary_unary
        parse = handler.request_deserializer
        type_name = SERVICE.methods_by_name[name].input_type.name if name in SERVICE.methods_by_name else name
        metrics = self.metrics

        def deserialize(data: bytes) -> Any:
            try:
                return parse(data)
            except Exception as exc:  # DecodeError, bad UTF-8, nesting too deep: the input's fault
                return _Undecodable(str(exc))

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, _Undecodable):
                metrics.requests.labels(PROTOCOL, name, "INVALID_ARGUMENT").inc()
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the request is not a valid {type_name} message: {echo(request.error)}",
                )
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            call, request_deserializer=deserialize, response_serializer=handler.response_serializer
        )


def _refuse(message: str) -> Any:
    async def abort(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpc.unary_unary_rpc_method_handler(abort)


def server_options(max_receive: int, max_send: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_receive),
        ("grpc.max_send_message_length", max_send),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
    ]
