"""vectorload's Milvus front door: the MilvusService gRPC API and REST v2 on one port, REST v1,
translated to CollectionLoad resources (the single source of truth) and to querynode searches.

Layout: pure parts (`errors`, `names`, `state`, `lifecycle`, `routing`, `convert`, `requests`)
are small typed modules with unit tests; `api` is the one domain layer both protocol layers call;
`grpc_service`, `rest` and `listener` are the protocol edges, `kube`, `catalog`, `search` and
`auth` the I/O edges, `server` wires them and `cli` is `vectorload proxy`.
"""
