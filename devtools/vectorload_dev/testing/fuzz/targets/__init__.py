"""Fuzz targets: one module per server under attack — `querynode` (its HTTP API) and `proxy` (the
Milvus front door: REST v2, REST v1, gRPC and raw bytes on its shared port)."""
