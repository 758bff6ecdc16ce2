"""The fuzz suite's engine (issue 13): hostile input against a real server, bounded in time.

    from vectorload_dev.testing.fuzz import runner
    from vectorload_dev.testing.fuzz.targets.querynode import QuerynodeTarget

    report = runner.run(QuerynodeTarget(...), requests=3000, seconds=90, seed=1)
    print(report.summary())
    assert not report.failures()

Parts: `model` (targets, surfaces, cases, outcomes), `http` (a raw HTTP/1.1 client that sends
any bytes), `surface` (a JSON-over-HTTP surface and the judge of its answers: no 5xx, no token
accepted that is not the configured one, answers as documented), `hostile` (the hand-written
classes of bad input), `filters` (hostile filter expressions), `schema` (schemathesis cases from
an OpenAPI document), `grpc_surface` (a gRPC service's every method, from its descriptor, and the
judge of its answers), `protowire` (protobuf messages written on the wire from descriptors, within
and beyond their field types), `runner` (workers, the /healthz and RSS monitor, the report),
`targets/` (one module per server: `querynode`, `proxy`). A new server is a new target module; a
new kind of surface is a new `Surface` with cases of its own — the runner does not change.
"""
