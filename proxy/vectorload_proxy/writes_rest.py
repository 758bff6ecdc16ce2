"""REST v2 endpoints of the write path, as Milvus 2.4's `/v2/vectordb/...` takes them:
`collections/{create,drop}`, `partitions/{create,drop}`, `indexes/{create,describe,list,drop}`,
`entities/{insert,upsert,delete}`. Bodies are decoded strictly (unknown keys refused, 1100) and
handed to the same domain layer as gRPC (`writes.WriteApi`), so both answer the same."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from vectorload.storage.api import CollectionSchema, FieldSchema
from vectorload.timefmt import rfc3339

from .errors import echo, parameter_invalid, parameter_missing, service_unavailable
from .imports import ImportJob
from .names import rest_database
from .rest_types import V2, decode, decode_large
from .rows import batch_from_rows
from .writes import WriteApi, to_batch


class V2IndexParam(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    field_name: str
    metric_type: str = ""
    index_name: str = ""
    index_type: str = ""
    params: dict[str, Any] = {}


class V2Field(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    field_name: str
    data_type: str
    is_primary: bool = False
    element_type_params: dict[str, Any] = {}


class V2Schema(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    fields: list[V2Field]
    auto_id: bool = False
    enable_dynamic_field: bool = False


class V2Create(V2, frozen=True):
    collection_name: str
    db_name: str = ""
    dimension: int = 0
    metric_type: str = "COSINE"
    id_type: str = "Int64"
    auto_id: bool = False
    primary_field_name: str = "id"
    vector_field_name: str = "vector"
    schema: V2Schema | None = None
    index_params: list[V2IndexParam] = []  # noqa: RUF012 (a msgspec.Struct default, copied per instance)
    params: dict[str, Any] = {}  # noqa: RUF012


class V2Name(V2, frozen=True):
    collection_name: str
    db_name: str = ""


class V2PartitionName(V2, frozen=True):
    collection_name: str
    partition_name: str
    db_name: str = ""


class V2Indexes(V2, frozen=True):
    collection_name: str
    index_params: list[V2IndexParam]
    db_name: str = ""


class V2IndexName(V2, frozen=True):
    collection_name: str
    index_name: str
    db_name: str = ""


class V2Rows(V2, frozen=True):
    collection_name: str
    data: list[Any] | dict[str, Any]
    db_name: str = ""
    partition_name: str = ""


class V2Delete(V2, frozen=True):
    collection_name: str
    filter: str = ""
    db_name: str = ""
    partition_name: str = ""


REST_TYPES = {
    "int64": "int64",
    "float": "float",
    "bool": "bool",
    "varchar": "varchar",
    "floatvector": "float_vector",
}


def _writes(request: web.Request) -> WriteApi:
    from .rest import API_KEY

    writes = request.app[API_KEY].writes
    if writes is None:
        raise service_unavailable("this proxy serves no writes (--read-only)")
    return writes


def _depth(request: web.Request) -> int:
    from .rest import LIMITS_KEY

    return request.app[LIMITS_KEY].max_json_depth


def _schema(body: V2Create) -> tuple[CollectionSchema, bool]:
    if body.schema is None:
        if body.dimension <= 0:
            raise parameter_invalid("dimension is required (or a schema)")
        pk_type = {"int64": "int64", "varchar": "varchar"}.get(body.id_type.lower())
        if pk_type is None:
            raise parameter_invalid(f"idType {echo(body.id_type)} must be Int64 or VarChar")
        fields = (
            FieldSchema(
                body.primary_field_name,
                pk_type,  # type: ignore[arg-type]
                is_primary=True,
                max_length=65535 if pk_type == "varchar" else None,
            ),
            FieldSchema(body.vector_field_name, "float_vector", dim=body.dimension, metric="l2"),
        )
        return CollectionSchema(body.collection_name, fields, dynamic_field=True), body.auto_id
    out = []
    for f in body.schema.fields:
        kind = REST_TYPES.get(f.data_type.lower())
        if kind is None:
            raise parameter_invalid(
                f"field {echo(f.field_name)}: data type {echo(f.data_type)} is not supported by vectorload's "
                "storage (supported: Int64, Float, Bool, VarChar, FloatVector)"
            )
        params = f.element_type_params
        dim = int(params["dim"]) if kind == "float_vector" and "dim" in params else None
        if kind == "float_vector" and dim is None:
            raise parameter_invalid(f"dimension is not defined in field type params of field {f.field_name}")
        max_length = int(params.get("max_length", 65535)) if kind == "varchar" else None
        out.append(
            FieldSchema(
                f.field_name,
                kind,  # type: ignore[arg-type]
                is_primary=f.is_primary,
                dim=dim,
                metric="l2" if kind == "float_vector" else None,
                max_length=max_length,
            )
        )
    if sum(1 for f in out if f.is_primary) != 1:
        raise parameter_invalid("there should be exactly one primary key field in the schema")
    return CollectionSchema(
        body.collection_name, tuple(out), dynamic_field=body.schema.enable_dynamic_field
    ), (body.schema.auto_id)


def _index_params(p: V2IndexParam) -> dict[str, str]:
    out = {str(k): str(v) for k, v in p.params.items()}
    if p.metric_type:
        out["metric_type"] = p.metric_type
    if p.index_type:
        out["index_type"] = p.index_type
    return out


async def create(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Create, _depth(request))
    writes = _writes(request)
    schema, auto_id = _schema(body)
    database = rest_database(request, body.db_name)
    await writes.create_collection(database, schema, auto_id)
    indexes = list(body.index_params)
    if body.schema is None:  # the quick form: an index on the vector field, then a load (Milvus)
        indexes = [
            V2IndexParam(
                field_name=body.vector_field_name, metric_type=body.metric_type, index_type="AUTOINDEX"
            )
        ]
    for p in indexes:
        await writes.create_index(
            database, body.collection_name, p.field_name, p.index_name, _index_params(p)
        )
    if indexes and len(indexes) >= len(schema.vector_fields):
        await writes.api.load_collection(database, body.collection_name)
    return {}


async def drop(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Name, _depth(request))
    await _writes(request).drop_collection(rest_database(request, body.db_name), body.collection_name)
    return {}


async def partition_create(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2PartitionName, _depth(request))
    await _writes(request).create_partition(
        rest_database(request, body.db_name), body.collection_name, body.partition_name
    )
    return {}


async def partition_drop(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2PartitionName, _depth(request))
    await _writes(request).drop_partition(
        rest_database(request, body.db_name), body.collection_name, body.partition_name
    )
    return {}


async def index_create(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Indexes, _depth(request))
    writes = _writes(request)
    for p in body.index_params:
        await writes.create_index(
            rest_database(request, body.db_name),
            body.collection_name,
            p.field_name,
            p.index_name,
            _index_params(p),
        )
    return {}


async def index_list(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Name, _depth(request))
    writes = _writes(request)
    try:
        rows = await writes.api.describe_index(rest_database(request, body.db_name), body.collection_name)
    except Exception as exc:
        if getattr(exc, "code", None) == 700:
            return []
        raise
    return [r.index_name for r in rows]


async def index_describe(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2IndexName, _depth(request))
    rows = await _writes(request).api.describe_index(
        rest_database(request, body.db_name), body.collection_name, body.index_name
    )
    return [
        {
            "fieldName": r.field,
            "indexName": r.index_name,
            "indexType": r.params.get("index_type", ""),
            "metricType": r.params.get("metric_type", ""),
            "indexState": "Finished",
            "indexedRows": r.rows,
            "totalRows": r.rows,
            "pendingRows": 0,
            "failReason": "",
        }
        for r in rows
    ]


async def index_drop(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2IndexName, _depth(request))
    await _writes(request).drop_index(
        rest_database(request, body.db_name), body.collection_name, "", body.index_name
    )
    return {}


async def _rows(request: web.Request, raw: bytes, upsert: bool) -> Any:
    body = await decode_large(raw, V2Rows, _depth(request))
    writes = _writes(request)
    info = await writes.api.catalog.get(body.collection_name)
    data = body.data if isinstance(body.data, list) else [body.data]
    auto_id = writes.auto_id(info.name)
    batch = await to_batch(
        len(data), lambda: batch_from_rows(info.schema, auto_id, data, writes.allocate_ids, upsert)
    )
    out = await writes.insert(
        rest_database(request, body.db_name), info.name, body.partition_name, batch, upsert=upsert
    )
    if upsert:
        return {"upsertCount": out.upsert_count, "upsertIds": out.ids}
    return {"insertCount": out.insert_count, "insertIds": out.ids}


async def insert(request: web.Request, raw: bytes) -> Any:
    return await _rows(request, raw, upsert=False)


async def upsert(request: web.Request, raw: bytes) -> Any:
    return await _rows(request, raw, upsert=True)


async def delete(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2Delete, _depth(request))
    out = await _writes(request).delete(
        rest_database(request, body.db_name), body.collection_name, body.partition_name, body.filter
    )
    return {"deleteCount": out.delete_count}


class V2Cloud(V2, frozen=True):
    """Keys `pymilvus.bulk_writer` sends for Zilliz Cloud (empty against open-source Milvus)."""

    cluster_id: str = ""
    project_id: str = ""
    region_id: str = ""
    object_url: str = ""
    object_urls: list[Any] | None = None
    access_key: str = ""
    secret_key: str = ""
    token: str = ""
    volume_name: str = ""
    data_paths: list[Any] | None = None

    def check_local(self) -> None:
        for key in ("cluster_id", "project_id", "region_id", "object_url", "access_key", "secret_key",
                    "token", "volume_name", "object_urls", "data_paths"):  # fmt: skip
            if getattr(self, key):
                camel = key.split("_")[0] + "".join(w.title() for w in key.split("_")[1:])
                raise parameter_invalid(
                    f"{camel} is a Zilliz Cloud import key; vectorload imports files of its import root"
                )


class V2ImportCreate(V2Cloud, frozen=True):
    collection_name: str = ""  # required (checked: a default only because V2Cloud's keys have them)
    db_name: str = ""
    partition_name: str = ""
    files: list[list[str]] = []  # noqa: RUF012 (a msgspec.Struct default, copied per instance)
    options: dict[str, Any] = {}  # noqa: RUF012


class V2ImportJob(V2Cloud, frozen=True):
    job_id: str = ""  # required (checked)
    db_name: str = ""


class V2ImportList(V2Cloud, frozen=True):
    collection_name: str = ""
    db_name: str = ""
    page_size: int = 0
    current_page: int = 0


def _job_json(job: ImportJob, detail: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jobId": str(job.id),
        "collectionName": job.collection,
        "state": job.state,
        "progress": job.progress,
    }
    if detail:
        out.update(
            {
                "importedRows": job.imported_rows,
                "totalRows": job.total_rows,
                "reason": job.reason,
                "partitionName": job.partition,
                "completeTime": rfc3339(job.finished) if job.finished else "",
                "details": [{"fileName": f, "state": job.state} for f in job.files],
            }
        )
    return out


async def import_create(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2ImportCreate, _depth(request))
    body.check_local()
    if not body.collection_name:
        raise parameter_missing("collectionName")
    unknown = sorted(set(body.options) - {"timeout"})
    if unknown:
        raise parameter_invalid(f"import option {echo(unknown[0])} is not supported by vectorload")
    files = []
    for group in body.files:
        if len(group) != 1:
            raise parameter_invalid(
                "each entry of files must name one JSON or Parquet file (numpy file sets are not supported)"
            )
        files.append(group[0])
    job = await _writes(request).imports.create(
        rest_database(request, body.db_name), body.collection_name, body.partition_name, files
    )
    return {"jobId": str(job.id)}


async def import_describe(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2ImportJob, _depth(request))
    body.check_local()
    if not body.job_id:
        raise parameter_missing("jobId")
    try:
        job_id = int(body.job_id)
    except ValueError:
        raise parameter_invalid(f"jobId {echo(body.job_id)} is not an import job id") from None
    return _job_json(await asyncio.to_thread(_writes(request).imports.get, job_id), detail=True)


async def import_list(request: web.Request, raw: bytes) -> Any:
    body = decode(raw, V2ImportList, _depth(request))
    body.check_local()
    jobs = await asyncio.to_thread(
        _writes(request).imports.list, rest_database(request, body.db_name), body.collection_name
    )
    if body.page_size > 0:
        start = max(body.current_page - 1, 0) * body.page_size
        jobs = jobs[start : start + body.page_size]
    return {"records": [_job_json(j, detail=False) for j in jobs]}


WRITE_ROUTES: dict[str, Callable[[web.Request, bytes], Awaitable[Any]]] = {
    "collections/create": create,
    "collections/drop": drop,
    "partitions/create": partition_create,
    "partitions/drop": partition_drop,
    "indexes/create": index_create,
    "indexes/list": index_list,
    "indexes/describe": index_describe,
    "indexes/drop": index_drop,
    "entities/insert": insert,
    "entities/upsert": upsert,
    "entities/delete": delete,
    "jobs/import/create": import_create,
    "jobs/import/describe": import_describe,
    "jobs/import/get_progress": import_describe,
    "jobs/import/list": import_list,
}
