"""The fuzz suite against a real querynode process serving the sample collection (issue 13).

CI runs a short bounded run (`VECTORLOAD_FUZZ_REQUESTS`, default 3000 requests, at most
`VECTORLOAD_FUZZ_SECONDS`, default 100 s); the full run is the same test with
`VECTORLOAD_FUZZ_REQUESTS=10000` (the figures in the README come from it). It fails on any 5xx
(seen by the client or counted by the node), any token accepted that is not the configured one
(or the configured one refused), any answer that is not the documented error or answer type, any
request left without an answer, a `/healthz` answer slower than 0.5 s, or RSS growth over 10 %
from the end of the warm-up to the end of the run. `VECTORLOAD_FUZZ_SEED` picks the cases
(default 1); the summary (printed, `-s` shows it) names the seed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from vectorload.storage.sample import write_sample
from vectorload_dev.testing.fuzz import runner
from vectorload_dev.testing.fuzz.targets.querynode import SERVER_ARGS, QuerynodeTarget
from vectorload_dev.testing.querynode_harness import DATA_TOKEN, TOKEN, QuerynodeProcess, load_all, next_host

REQUESTS = int(os.environ.get("VECTORLOAD_FUZZ_REQUESTS", "3000"))
SECONDS = float(os.environ.get("VECTORLOAD_FUZZ_SECONDS", str(max(100.0, REQUESTS * 0.03))))
SEED = int(os.environ.get("VECTORLOAD_FUZZ_SEED", "1"))


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-sample")
    write_sample(root, size="tiny", seed=0, num_threads=1, segment_rows=200)
    return root


@pytest.fixture
def node(sample_root: Path, tmp_path: Path) -> Iterator[QuerynodeProcess]:
    qn = QuerynodeProcess(
        sample_root,
        host=next_host(),
        token=TOKEN,
        memory_limit="1Gi",
        extra_args=SERVER_ARGS,
        env={"VECTORLOAD_DATA_TOKEN": DATA_TOKEN},
        log_path=tmp_path / "querynode.log",
    )
    qn.start()
    try:
        load_all(qn, sample_root, "book")
        yield qn
    finally:
        qn.stop()


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 240)
def test_fuzz_querynode(node: QuerynodeProcess, tmp_path: Path) -> None:
    target = QuerynodeTarget(node, TOKEN, DATA_TOKEN, loaded_segment=("novel", "novel-0000"), rows=1800)
    report = runner.run(target, requests=REQUESTS, seconds=SECONDS, seed=SEED)
    print("\n" + report.summary())
    failures = report.failures()
    assert report.requests >= min(REQUESTS, 1000), report.summary()
    assert not failures, "\n".join(failures) + "\n" + report.summary()
    node.stop()
    logged = (tmp_path / "querynode.log").read_text(encoding="utf-8", errors="replace")
    assert TOKEN not in logged and DATA_TOKEN not in logged, "a token reached the querynode log"
    assert "Traceback" not in logged, logged[logged.index("Traceback") - 500 :][:3000]
