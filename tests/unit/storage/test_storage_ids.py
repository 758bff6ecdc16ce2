"""The storage root's auto-id allocator: ids never repeat across threads, processes and restarts;
a corrupt allocator file is refused, never guessed around."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vectorload.storage.api import StorageError
from vectorload.storage.ids import IDS_DIR, NEXT_FILE, IdAllocator

# one writer process: a small block, so the processes contend for the flock on almost every call
_TAKER = """
import json, sys
from pathlib import Path
from vectorload.storage.ids import IdAllocator
alloc = IdAllocator(Path(sys.argv[1]), floor=lambda: 1000, block=7)
ids = []
for i in range(int(sys.argv[2])):
    ids.extend(alloc.allocate(1 + i % 5))
print(json.dumps(ids))
"""


def test_first_block_starts_at_the_floor_and_ids_increase(tmp_path: Path) -> None:
    alloc = IdAllocator(tmp_path, floor=lambda: 5_000, block=10)
    assert list(alloc.allocate(3)) == [5_000, 5_001, 5_002]
    assert list(alloc.allocate(7)) == list(range(5_003, 5_010))
    assert list(alloc.allocate(2)) == [5_010, 5_011]  # a second block, right after the first
    assert alloc.reservations == 2
    data = json.loads((tmp_path / IDS_DIR / NEXT_FILE).read_text())
    assert data == {"formatVersion": 1, "next": 5_020}


def test_a_request_larger_than_a_block_gets_one_range(tmp_path: Path) -> None:
    alloc = IdAllocator(tmp_path, floor=lambda: 1, block=4)
    assert list(alloc.allocate(10)) == list(range(1, 11))
    assert len(alloc.allocate(0)) == 0


def test_a_restarted_process_never_reuses_an_id(tmp_path: Path) -> None:
    first = IdAllocator(tmp_path, floor=lambda: 100, block=50)
    used = set(first.allocate(3))
    # the process dies: the rest of its block is a gap, not handed out again
    again = IdAllocator(tmp_path, floor=lambda: 100, block=50)
    second = set(again.allocate(3))
    assert not used & second
    assert min(second) == 150
    # the floor matters only for a root without an allocator file
    later = IdAllocator(tmp_path, floor=lambda: 10**12, block=50)
    assert min(later.allocate(1)) == 200


def test_threads_of_one_process_share_blocks_without_duplicates(tmp_path: Path) -> None:
    alloc = IdAllocator(tmp_path, floor=lambda: 1, block=16)
    got: list[list[int]] = [[] for _ in range(4)]

    def run(k: int) -> None:
        for i in range(300):
            got[k].extend(alloc.allocate(1 + i % 3))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for ids in got for i in ids]
    assert len(every) == len(set(every)) == 4 * sum(1 + i % 3 for i in range(300))


def test_processes_on_one_root_never_share_an_id(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", _TAKER, str(tmp_path), "400"], stdout=subprocess.PIPE)
        for _ in range(3)
    ]
    results: list[list[int]] = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        results.append(json.loads(out))
    every = [i for ids in results for i in ids]
    assert len(every) == len(set(every)) == 3 * sum(1 + i % 5 for i in range(400))
    assert min(every) >= 1000
    for ids in results:  # each process's ids increase
        assert ids == sorted(ids)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"[]",
        b'{"formatVersion": 2, "next": 10}',
        b'{"formatVersion": 1, "next": "10"}',
        b'{"formatVersion": 1, "next": true}',
        b'{"formatVersion": 1, "next": 0}',
        b'{"formatVersion": 1}',
    ],
)
def test_a_corrupt_allocator_file_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / IDS_DIR).mkdir()
    (tmp_path / IDS_DIR / NEXT_FILE).write_bytes(content)
    alloc = IdAllocator(tmp_path, floor=lambda: 1)
    with pytest.raises(StorageError) as err:
        alloc.allocate(1)
    assert err.value.reason == "CorruptIds"
    assert NEXT_FILE in err.value.message
    # nothing was written over the file
    assert (tmp_path / IDS_DIR / NEXT_FILE).read_bytes() == content


def test_exhausted_ids_are_refused(tmp_path: Path) -> None:
    alloc = IdAllocator(tmp_path, floor=lambda: 2**63 - 10, block=100)
    with pytest.raises(StorageError) as err:
        alloc.allocate(1)
    assert err.value.reason == "IdsExhausted"
