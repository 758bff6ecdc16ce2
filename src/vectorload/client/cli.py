"""`vectorload search`: search a loaded CollectionLoad through the querynodes of one replica.

The data API is closed by default: the command sends the data token (`--token-file`,
`--token-secret NAME` — key `token` of that Secret, the chart's `<release>-data-token` — or
`$VECTORLOAD_DATA_TOKEN`, then `$VECTORLOAD_TOKEN`). `--random` without `--dim` reads the vector
dimension from the catalog, on the control API (`$VECTORLOAD_TOKEN`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vectorload.client.http import QuerynodeClient, QuerynodeError
from vectorload.client.merge import merge_node_answers
from vectorload.wire.querynode import Hit, SearchAnswer, to_builtins

TOKEN_ENVS = ("VECTORLOAD_DATA_TOKEN", "VECTORLOAD_TOKEN")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vectorload search", description=__doc__)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--collection-load", help="CollectionLoad name (nodes from its status)")
    where.add_argument("--nodes", help="comma-separated querynode URLs (bypasses Kubernetes)")
    p.add_argument("-n", "--namespace", default=None, help="namespace of the CollectionLoad")
    p.add_argument("--collection", default=None, help="collection name (required with --nodes)")
    p.add_argument("--replica", type=int, default=None, help="replica id (default: the first fully placed)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--vector", help="query vector(s) as JSON: [..] or [[..], ..]")
    what.add_argument("--random", action="store_true", help="a random query vector")
    p.add_argument("--dim", type=int, default=None, help="dimension for --random (default: from the catalog)")
    p.add_argument("--seed", type=int, default=None, help="random seed for --random")
    p.add_argument("--anns-field", default=None)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--filter", default=None, help="boolean filter expression")
    p.add_argument("--output-fields", default=None, help="comma-separated field names")
    p.add_argument("--partition", action="append", default=None, help="partition to search (repeatable)")
    p.add_argument("--ef", type=int, default=None)
    p.add_argument(
        "--token-file",
        default=None,
        help="data API bearer token file (else $VECTORLOAD_DATA_TOKEN, then $VECTORLOAD_TOKEN)",
    )
    p.add_argument(
        "--token-secret",
        default=None,
        help="Secret (key `token`) holding the data API token, e.g. <release>-data-token",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


async def fan_out(
    urls: list[str],
    token: str | None,
    collection: str,
    vectors: list[list[float]],
    top_k: int,
    **options: Any,
) -> list[list[Hit]]:
    """Search every node of one replica concurrently and merge their top-k."""

    async def one(url: str) -> list[list[Hit]] | QuerynodeError:
        async with QuerynodeClient(url, token) as client:
            try:
                return await client.search(collection, vectors, top_k, **options)
            except QuerynodeError as exc:
                return exc

    answers = await asyncio.gather(*(one(url) for url in urls))
    return merge_node_answers(answers, len(vectors), top_k)


async def _dim_from_catalog(url: str, token: str | None, collection: str, anns_field: str | None) -> int:
    async with QuerynodeClient(url, token) as client:
        try:
            catalog = await client.catalog(collection)
        except QuerynodeError as exc:
            if exc.status == 401:
                raise QuerynodeError(
                    401, exc.reason, "reading the vector dimension needs the control token: pass --dim"
                ) from exc
            raise
    chosen = [f for f in catalog.schema.vector_fields if anns_field is None or f.name == anns_field]
    if not chosen or chosen[0].dim is None:
        raise QuerynodeError(400, "InvalidAnnsField", f"no vector field {anns_field} in {collection}")
    return chosen[0].dim


def format_table(results: list[list[Hit]], output_fields: list[str]) -> str:
    lines = []
    for qi, hits in enumerate(results):
        if len(results) > 1:
            lines.append(f"query {qi}")
        header = ["rank", "id", "distance", "partition", *output_fields]
        rows = [
            [
                str(rank),
                str(hit.id),
                f"{hit.distance:.6g}",
                hit.partition,
                *[json.dumps(hit.fields.get(f), ensure_ascii=False) for f in output_fields],
            ]
            for rank, hit in enumerate(hits, start=1)
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        if not rows:
            lines.append("(no results)")
    return "\n".join(lines)


def _parse_vectors(text: str) -> list[list[float]]:
    data = json.loads(text)
    if isinstance(data, list) and data and all(isinstance(x, int | float) for x in data):
        data = [data]
    if not isinstance(data, list) or not data or not all(isinstance(v, list) for v in data):
        raise ValueError("--vector must be a JSON list of numbers or a list of such lists")
    return [[float(x) for x in v] for v in data]


def _token(args: argparse.Namespace, namespace: str | None) -> str | None:
    if args.token_file:
        return Path(args.token_file).read_text(encoding="utf-8").strip()
    if args.token_secret:
        from vectorload.client.kube import secret_token

        return secret_token(args.token_secret, namespace or "default")
    return next((os.environ[e] for e in TOKEN_ENVS if os.environ.get(e)), None)


def search_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_search(args))
    except (QuerynodeError, ValueError, OSError) as exc:
        print(f"vectorload search: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # kubernetes client and resolution errors
        print(f"vectorload search: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


async def _search(args: argparse.Namespace) -> int:
    namespace = args.namespace
    if args.nodes:
        urls = [u.strip() for u in args.nodes.split(",") if u.strip()]
        if not args.collection:
            raise ValueError("--collection is required with --nodes")
        collection = args.collection
    else:
        from vectorload.client.kube import default_namespace, resolve

        namespace = namespace or default_namespace()
        target = resolve(args.collection_load, namespace, args.replica)
        urls, collection = target.urls, args.collection or target.collection
        print(
            f"CollectionLoad {namespace}/{args.collection_load}: collection {collection}, "
            f"replica {target.replica.id} on {', '.join(target.replica.nodes)}",
            file=sys.stderr,
        )
    token = _token(args, namespace)
    if args.random:
        control = os.environ.get("VECTORLOAD_TOKEN") or token  # the catalog is on the control API
        dim = args.dim or await _dim_from_catalog(urls[0], control, collection, args.anns_field)
        vectors = np.random.default_rng(args.seed).standard_normal((1, dim)).astype(np.float32).tolist()
    else:
        vectors = _parse_vectors(args.vector)
    output_fields = [f.strip() for f in args.output_fields.split(",")] if args.output_fields else []
    results = await fan_out(
        urls,
        token,
        collection,
        vectors,
        args.top_k,
        anns_field=args.anns_field,
        partitions=args.partition,
        filter=args.filter,
        output_fields=output_fields or None,
        ef=args.ef,
    )
    answer = SearchAnswer(results=results)
    print(json.dumps(to_builtins(answer)) if args.json else format_table(results, output_fields))
    return 0
