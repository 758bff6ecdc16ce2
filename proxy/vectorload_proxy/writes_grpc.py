"""The write methods of `MilvusService` (a mixin of `grpc_service.MilvusService`): collection,
partition and index management, Insert / Upsert / Delete / Flush, and their translation from
protobuf. The domain work is `writes.WriteApi`'s; this module reads the messages and builds the
answers (MutationResult as Milvus fills it: IDs, counts, the write's timestamp)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from pymilvus.grpc_gen import common_pb2, milvus_pb2, schema_pb2

from vectorload.storage.api import CollectionSchema, FieldSchema

from .errors import echo, parameter_invalid, service_unavailable
from .imports import ImportJob
from .names import grpc_database
from .rows import BOOL, FLOAT, FLOAT_VECTOR, INT64, VARCHAR, Batch, batch_from_field_data, type_name
from .writes import WriteApi, to_batch

STORAGE_TYPES = {
    INT64: "int64",
    FLOAT: "float",
    BOOL: "bool",
    VARCHAR: "varchar",
    FLOAT_VECTOR: "float_vector",
}
DEFAULT_MAX_LENGTH = 65535


def _params(pairs: Any) -> dict[str, str]:
    return {str(kv.key): str(kv.value) for kv in pairs}


def schema_from_proto(name: str, raw: bytes) -> tuple[CollectionSchema, bool]:
    """The storage schema and auto_id of a CreateCollection request's serialized schema, or 1100
    naming the field whose type the storage format lacks."""
    proto = schema_pb2.CollectionSchema()
    try:
        proto.ParseFromString(raw)
    except Exception:
        raise parameter_invalid("the collection schema cannot be parsed") from None
    if proto.name and proto.name != name:
        raise parameter_invalid(
            f"collection name [{echo(name)}] does not match schema name [{echo(proto.name)}]"
        )
    if getattr(proto, "functions", None) and len(proto.functions):
        raise parameter_invalid("collection functions are not supported by vectorload")
    fields = []
    auto_id = bool(proto.autoID)
    primaries = 0
    for f in proto.fields:
        params = _params(f.type_params)
        kind = int(f.data_type)
        if f.is_dynamic:
            continue  # the dynamic field ($meta) is `enable_dynamic_field`
        if kind not in STORAGE_TYPES:
            raise parameter_invalid(
                f"field {echo(f.name)}: data type {type_name(kind)} is not supported by vectorload's "
                "storage (supported: Int64, Float, Bool, VarChar, FloatVector; JSON only as the "
                "dynamic field)"
            )
        if f.nullable or f.HasField("default_value"):
            raise parameter_invalid(
                f"field {echo(f.name)}: nullable fields and default values are not supported"
            )
        if f.is_partition_key or f.is_clustering_key:
            raise parameter_invalid(f"field {echo(f.name)}: partition and clustering keys are not supported")
        stype = STORAGE_TYPES[kind]
        dim = max_length = None
        metric = None
        if stype == "float_vector":
            try:
                dim = int(params.get("dim", ""))
            except ValueError:
                raise parameter_invalid(
                    f"dimension is not defined in field type params of field {f.name}"
                ) from None
            if not 1 <= dim <= 32768:
                raise parameter_invalid(
                    f"invalid dimension: {dim} of field {f.name}. should be in range 2 ~ 32768"
                )
            metric = "l2"  # until an index says otherwise (properties.json)
        if stype == "varchar":
            try:
                max_length = int(params.get("max_length", DEFAULT_MAX_LENGTH))
            except ValueError:
                raise parameter_invalid(f"max_length of field {f.name} is not an integer") from None
            if not 1 <= max_length <= DEFAULT_MAX_LENGTH:
                raise parameter_invalid(
                    f"the maximum length specified for the field({f.name}) should be in (0, 65535], "
                    f"but got {max_length} instead"
                )
        if f.is_primary_key:
            primaries += 1
            if stype not in ("int64", "varchar"):
                raise parameter_invalid("the data type of primary key should be Int64 or VarChar")
            auto_id = auto_id or bool(f.autoID)
        fields.append(
            FieldSchema(
                name=str(f.name),
                type=stype,  # type: ignore[arg-type]
                is_primary=bool(f.is_primary_key),
                dim=dim,
                metric=metric,  # type: ignore[arg-type]
                max_length=max_length,
            )
        )
    if primaries != 1:
        raise parameter_invalid("there should be exactly one primary key field in the schema")
    if not any(f.type == "float_vector" for f in fields):
        raise parameter_invalid("schema does not contain vector field")
    pk = next(f for f in fields if f.is_primary)
    if auto_id and pk.type != "int64":
        raise parameter_invalid("auto_id is supported for Int64 primary keys only")
    return CollectionSchema(
        name=name,
        fields=tuple(fields),
        dynamic_field=bool(proto.enable_dynamic_field),
        description=proto.description,
    ), auto_id


def ids_proto(ids: list[Any], pk_type: str) -> schema_pb2.IDs:
    if pk_type == "int64":
        return schema_pb2.IDs(int_id=schema_pb2.LongArray(data=ids))
    return schema_pb2.IDs(str_id=schema_pb2.StringArray(data=ids))


WRITE_METHODS = (
    "CreateCollection", "DropCollection", "CreatePartition", "DropPartition", "CreateIndex", "DropIndex",
    "Insert", "Upsert", "Delete", "Flush", "GetFlushState", "Import", "GetImportState", "ListImportTasks",
)  # fmt: skip
IMPORT_STATES = {
    "Pending": common_pb2.ImportPending,
    "Importing": common_pb2.ImportStarted,
    "Completed": common_pb2.ImportCompleted,
    "Failed": common_pb2.ImportFailed,
}
IMPORT_OPTIONS = ("timeout",)  # Milvus' `backup` / `sep` / `nullkey` options: not served


def import_state(job: ImportJob) -> Any:
    """GetImportStateResponse as Milvus fills it (infos: the keys pymilvus' BulkInsertState reads)."""
    return milvus_pb2.GetImportStateResponse(
        status=common_pb2.Status(),
        state=IMPORT_STATES[job.state],
        row_count=job.imported_rows,
        id_list=job.id_ranges,
        infos=[
            common_pb2.KeyValuePair(key="failed_reason", value=job.reason),
            common_pb2.KeyValuePair(key="files", value=",".join(job.files)),
            common_pb2.KeyValuePair(key="collection", value=job.collection),
            common_pb2.KeyValuePair(key="partition", value=job.partition),
            common_pb2.KeyValuePair(key="progress_percent", value=str(job.progress)),
        ],
        id=job.id,
        create_ts=int(job.created),
    )


class WriteMethods:
    """Mixed into `MilvusService`; `self.api.writes` is the write domain layer."""

    api: Any

    @property
    def _writes(self) -> WriteApi:
        writes = self.api.writes
        if writes is None:
            raise service_unavailable("this proxy serves no writes (no write path configured)")
        assert isinstance(writes, WriteApi)
        return writes

    async def CreateCollection(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        schema, auto_id = schema_from_proto(request.collection_name, request.schema)
        await self._writes.create_collection(grpc_database(request, context), schema, auto_id)
        return common_pb2.Status()

    async def DropCollection(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._writes.drop_collection(grpc_database(request, context), request.collection_name)
        return common_pb2.Status()

    async def CreatePartition(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._writes.create_partition(
            grpc_database(request, context), request.collection_name, request.partition_name
        )
        return common_pb2.Status()

    async def DropPartition(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._writes.drop_partition(
            grpc_database(request, context), request.collection_name, request.partition_name
        )
        return common_pb2.Status()

    async def CreateIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._writes.create_index(
            grpc_database(request, context),
            request.collection_name,
            request.field_name,
            request.index_name,
            _params(request.extra_params),
        )
        return common_pb2.Status()

    async def DropIndex(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self._writes.drop_index(
            grpc_database(request, context), request.collection_name, request.field_name, request.index_name
        )
        return common_pb2.Status()

    async def _mutation(self, request: Any, context: grpc.aio.ServicerContext, upsert: bool) -> Any:
        writes = self._writes
        database = grpc_database(request, context)
        info = await self.api.catalog.get(request.collection_name)
        schema = info.schema
        auto_id = writes.auto_id(schema.name)
        rows = int(request.num_rows)
        batch: Batch = await to_batch(
            rows,
            lambda: batch_from_field_data(
                schema, auto_id, request.fields_data, rows, writes.allocate_ids, upsert
            ),
        )
        out = await writes.insert(database, schema.name, request.partition_name, batch, upsert=upsert)
        return milvus_pb2.MutationResult(
            status=common_pb2.Status(),
            IDs=ids_proto(out.ids, schema.primary_key.type),
            succ_index=list(range(len(out.ids))),
            insert_cnt=out.insert_count,
            upsert_cnt=out.upsert_count,
            delete_cnt=out.delete_count,
            timestamp=out.timestamp,
        )

    async def Insert(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self._mutation(request, context, upsert=False)

    async def Upsert(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self._mutation(request, context, upsert=True)

    async def Delete(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if len(request.expr_template_values):
            raise parameter_invalid("expression templates are not supported")
        info = await self.api.catalog.get(request.collection_name)
        out = await self._writes.delete(
            grpc_database(request, context), info.name, request.partition_name, request.expr
        )
        return milvus_pb2.MutationResult(  # no IDs: Milvus 2.3.2+ answers a delete with counts only
            status=common_pb2.Status(),
            delete_cnt=out.delete_count,
            timestamp=out.timestamp,
        )

    async def Flush(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        database = grpc_database(request, context)
        stamps = await self._writes.flush(database, list(request.collection_names))
        return milvus_pb2.FlushResponse(
            status=common_pb2.Status(),
            db_name=database or "default",
            coll_segIDs={n: schema_pb2.LongArray(data=[]) for n in stamps},
            flush_coll_segIDs={n: schema_pb2.LongArray(data=[]) for n in stamps},
            coll_seal_times={n: ts >> 18 for n, ts in stamps.items()},
            coll_flush_ts=stamps,
        )

    async def Import(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        options = _params(request.options)
        if options.get("backup", "false").lower() in ("false", "0", ""):
            options.pop("backup", None)  # an ordinary import, not a restore of Milvus' backup files
        unknown = sorted(set(options) - set(IMPORT_OPTIONS))
        if unknown:
            raise parameter_invalid(f"import option {echo(unknown[0])} is not supported by vectorload")
        job = await self._writes.imports.create(
            grpc_database(request, context),
            request.collection_name,
            request.partition_name,
            list(request.files),
        )
        return milvus_pb2.ImportResponse(status=common_pb2.Status(), tasks=[job.id])

    async def GetImportState(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return import_state(await asyncio.to_thread(self._writes.imports.get, int(request.task)))

    async def ListImportTasks(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        jobs = await asyncio.to_thread(
            self._writes.imports.list,
            grpc_database(request, context),
            request.collection_name,
            max(int(request.limit), 0),
        )
        return milvus_pb2.ListImportTasksResponse(
            status=common_pb2.Status(), tasks=[import_state(j) for j in jobs]
        )

    async def GetFlushState(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        # Flush returns once everything logged is sealed: any flush it handed out is done
        return milvus_pb2.GetFlushStateResponse(status=common_pb2.Status(), flushed=True)
