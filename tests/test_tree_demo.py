"""
The replicant tree demo (examples/tree) as real OS processes.

- the demo runs a short scenario, exits 0, reports its figures and leaves no node
  process behind;
- fault: an L1 killed with SIGKILL turns its L2 children stale (``up: false`` on
  their status endpoint), they recover when it is restarted on the same port, and the
  root notices nothing but a disconnect.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

TREE = Path(__file__).resolve().parent.parent / "examples" / "tree"
DEMO = TREE / "demo.py"
NODE = TREE / "node.py"

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="uses POSIX signals and /proc-style pid checks"
)


def alive(pid: int) -> bool:
    """True if *pid* is a running node process (not a zombie, not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process reusing the pid
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: assume the worst
    return b"node.py" in cmdline  # a zombie has an empty command line


def test_demo_runs_and_leaves_nothing_behind(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(DEMO),
            "--duration",
            "4",
            "--json",
            str(summary),
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout
    assert "mutations applied:" in out
    assert "propagation root->L1: p50" in out
    assert "propagation root->L2: p50" in out
    assert "HTTP requests served:" in out
    assert "result: PASS (exit 0)" in out

    data = json.loads(summary.read_text())
    assert data["exit_code"] == 0
    assert data["mutations"] > 0
    assert data["http_requests"] > 0
    assert data["reads"]["errors"] == 0
    assert data["reads"]["inconsistent"] == 0
    for level in ("root->L1", "root->L2"):
        lat = data["latency_ms"][level]
        assert lat["samples"] > 0
        assert math.isfinite(lat["p50"])
        assert 0 <= lat["p50"] <= lat["p99"] < 5000
    nodes = data["nodes"]
    assert len(nodes) == 7
    pids = [pid for node in nodes.values() for pid in node["pids"]]
    assert len(pids) == 7
    assert not [pid for pid in pids if alive(pid)]


# -- the fault test -------------------------------------------------------------------


class Node:
    """A node.py process with a pipe on stdin (closing it stops the node)."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(NODE), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        lines: queue.Queue[bytes] = queue.Queue()
        self._reader = threading.Thread(
            target=self._read, args=(self.proc.stdout, lines), daemon=True
        )
        self._reader.start()
        try:
            line = lines.get(timeout=20)
        except queue.Empty:
            self.stop()
            raise AssertionError(f"no READY line; log:\n{log.read_text()}") from None
        assert line.startswith(b"READY "), line
        info = json.loads(line[len(b"READY ") :])
        self.rpc: int = info["rpc"]
        self.http: int = info["http"]

    @staticmethod
    def _read(stdout: IO[bytes], lines: queue.Queue[bytes]) -> None:
        for line in stdout:
            lines.put(line)

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\n".encode())
        self.proc.stdin.flush()

    def status(self) -> dict[str, object]:
        url = f"http://127.0.0.1:{self.http}/status?since={2**62}"
        with urllib.request.urlopen(url, timeout=2) as resp:
            data = json.loads(resp.read())
        assert isinstance(data, dict)
        return data

    def stat(self, key: str) -> int:
        value = self.status()[key]
        assert isinstance(value, int)
        return value

    def active(self) -> list[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/", timeout=2) as r:
            data = json.loads(r.read())
        assert isinstance(data, list)
        return data

    def stop(self) -> None:
        """Close stdin (the node exits), then kill what is left; reap the process."""
        proc = self.proc
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        self._reader.join(timeout=5)  # it reads stdout up to end-of-file
        if proc.stdout is not None:
            proc.stdout.close()


def wait_until(pred: Callable[[], bool], what: str, limit: float = 8.0) -> float:
    """Poll *pred* until it holds; the seconds it took."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > limit:
            raise AssertionError(f"timed out after {limit} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """Start node processes; all are stopped at the end of the test."""
    nodes: list[Node] = []

    def start(name: str, *args: str) -> Node:
        node = Node(tmp_path / f"{name}.log", "--name", name, *args)
        nodes.append(node)
        return node

    try:
        yield start
    finally:
        for node in reversed(nodes):
            node.stop()
        assert not [n.proc.pid for n in nodes if alive(n.proc.pid)]


def test_killed_l1_makes_children_stale_until_restarted(
    spawn: Callable[..., Node],
) -> None:
    fast = ("--push-interval", "0.02")
    root = spawn("root", "--role", "root", "--interval", "0.02", *fast)
    parent = ("--role", "replicant", "--parent")
    l1 = spawn("rep-1", *parent, f"127.0.0.1:{root.rpc}", *fast)
    l2s = [spawn(f"rep-1-{i}", *parent, f"127.0.0.1:{l1.rpc}", *fast) for i in (1, 2)]
    root.send("start")
    start_v = root.stat("version")

    def every_l2(pred: Callable[[Node], bool], what: str) -> None:
        wait_until(lambda: all(pred(l2) for l2 in l2s), what)

    every_l2(lambda n: n.stat("version") > start_v, "the L2s to mirror changes")
    assert all(l2.status()["up"] is True for l2 in l2s)
    assert root.stat("clients") == 1

    # kill -9 the L1: its children go stale, but keep answering from memory
    l1.proc.kill()
    l1.proc.wait(timeout=5)
    every_l2(lambda n: n.status()["up"] is False, "the L2s to report up: false")
    assert all(len(l2.active()) > 10 for l2 in l2s)  # the stale board, still served
    # the root saw a client go away, nothing more; it keeps mutating
    wait_until(lambda: root.stat("clients") == 0, "the root to notice the disconnect")
    mutations = root.stat("mutations")
    wait_until(lambda: root.stat("mutations") > mutations, "the root to keep going")
    assert root.proc.poll() is None
    assert all(l2.stat("version") < root.stat("version") for l2 in l2s)

    # restart the L1 on the same port: the children reconnect and catch up
    l1b = spawn(
        "rep-1", *parent, f"127.0.0.1:{root.rpc}", "--listen", str(l1.rpc), *fast
    )
    assert l1b.rpc == l1.rpc
    target = root.stat("version")
    every_l2(lambda n: n.status()["up"] is True, "the L2s to recover")
    every_l2(lambda n: n.stat("version") >= target, "the L2s to catch up")
    assert all(l2.stat("reconnects") >= 1 for l2 in l2s)
    root.send("stop")
    wait_until(lambda: root.status()["source_running"] is False, "the source to stop")
    final = root.stat("version")
    every_l2(lambda n: n.stat("version") == final, "the L2s to converge")
    assert root.stat("clients") == 1
    assert root.proc.poll() is None
    assert "Traceback" not in root.log.read_text()
