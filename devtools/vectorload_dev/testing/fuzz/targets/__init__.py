"""Fuzz targets: one module per server under attack (`querynode`; the proxy's will sit beside
it, listing its REST and gRPC surfaces)."""
