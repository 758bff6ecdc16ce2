"""The health prober, in a process of its own: `python -m vectorload_dev.testing.fuzz.probe HOST
PORT PATH INTERVAL TIMEOUT`.

A prober in the fuzzing process would wait for that process's GIL behind the workers that build
and judge cases, and report their delays as the server's; a kubelet's liveness probe is another
process too. Every `INTERVAL` seconds it sends `GET PATH` on a fresh connection and prints one
line: when it started (`time.monotonic()`, one clock for every process of the machine) and the
seconds it took, with `fail <reason>` between them when there was no 200 within `TIMEOUT`. It stops
when its standard input closes.
"""

from __future__ import annotations

import sys
import threading
import time

from vectorload_dev.testing.fuzz import http


def main(argv: list[str]) -> int:
    host, port, path, interval, timeout = argv[0], int(argv[1]), argv[2], float(argv[3]), float(argv[4])
    http.check_loopback(host)
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    out = sys.stdout
    while not stop.is_set():
        at = time.monotonic()
        started = time.perf_counter()
        try:
            status, _, _ = http.get(host, port, path, timeout)
            elapsed = time.perf_counter() - started
            out.write(
                f"{at:.6f} {elapsed:.6f}\n"
                if status == 200
                else f"{at:.6f} fail status{status} {elapsed:.6f}\n"
            )
        except Exception as exc:  # every failure is a line of the report, not a crash of the probe
            elapsed = time.perf_counter() - started
            out.write(f"{at:.6f} fail {type(exc).__name__} {elapsed:.6f}\n")
        out.flush()
        stop.wait(interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
