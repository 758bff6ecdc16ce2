"""die_with_parent: the wrapped command keeps its pid and dies with the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from vectorload_dev.procutil import die_with_parent
from vectorload_dev.testing import wait_for


def test_the_command_runs_in_place_with_the_wrappers_pid() -> None:
    proc = subprocess.run(
        die_with_parent(["sh", "-c", "echo $$; cat /proc/$$/status | grep -i '^PPid'"]),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    pid = int(proc.stdout.split()[0])
    assert pid > 0
    ppid = int(proc.stdout.split()[-1])
    assert ppid == os.getpid()  # exec'd in place: no extra process between us and the command


def test_the_child_gets_the_signal_when_its_parent_is_killed() -> None:
    # a parent process starts `sleep` through the wrapper, reports its pid, then is SIGKILLed
    parent_code = textwrap.dedent(
        """
        import subprocess, sys, time
        from vectorload_dev.procutil import die_with_parent
        child = subprocess.Popen(die_with_parent(["sleep", "60"]))
        print(child.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    cmdline = Path(f"/proc/{child}/cmdline")
    wait_for("the child running sleep", lambda: cmdline.read_bytes().startswith(b"sleep"), 10)
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)

    def gone() -> bool:
        try:  # a zombie until init reaps it
            return Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    started = time.monotonic()
    wait_for("the child killed with its parent", gone, 10)
    assert time.monotonic() - started < 10
