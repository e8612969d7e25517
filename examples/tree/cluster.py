"""
Start, watch and stop a tree of ``node.py`` processes; measure propagation.

Used by ``demo.py`` (the orchestrator) and by ``benchmarks/bench_tree.py``.

Process hygiene, in layers:

- every node gets a pipe on stdin and exits on end-of-file, so nodes die with the
  orchestrator even when it is killed with SIGKILL;
- nodes run in their own session (POSIX), so a Ctrl-C in the terminal reaches the
  orchestrator only, which then stops the tree in order;
- :meth:`Cluster.__aexit__` closes every stdin, waits, then terminates and finally
  kills what is left, with bounded timeouts, shielded from cancellation;
- a node that exits on its own is recorded as crashed (exit code and the tail of its
  log) and the rest keeps running.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import PIPE
from types import TracebackType
from typing import Self

import anyio
import minihttp
from anyio.abc import ByteReceiveStream, Process, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = (
    "Cluster",
    "NodeProc",
    "Spec",
    "percentile",
    "propagation",
    "topology",
)

HERE = Path(__file__).resolve().parent
NODE_PY = HERE / "node.py"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 3.0
#: How many (version, time) pairs the orchestrator keeps per node.
KEEP_SEEN = 200_000


@dataclass(frozen=True, slots=True)
class Spec:
    """What to start: a node's name, role, parent and (optional) fixed ports."""

    name: str
    parent: str | None = None
    level: int = 0
    rpc: int = 0
    http: int = 0

    @property
    def role(self) -> str:
        """``root`` or ``replicant``."""
        return "root" if self.parent is None else "replicant"


def topology(l1: int, l2_per_l1: int) -> list[Spec]:
    """root, ``rep-1`` ... ``rep-<l1>`` under it, ``rep-<i>-<j>`` under each."""
    specs = [Spec("root")]
    specs += [Spec(f"rep-{i}", "root", 1) for i in range(1, l1 + 1)]
    specs += [
        Spec(f"rep-{i}-{j}", f"rep-{i}", 2)
        for i in range(1, l1 + 1)
        for j in range(1, l2_per_l1 + 1)
    ]
    return specs


@dataclass
class NodeProc:
    """A running (or crashed, or restarting) node and what the orchestrator knows."""

    spec: Spec
    log_path: Path
    proc: Process | None = None
    pid: int = 0
    rpc: int = 0
    http: int = 0
    #: The last ``/status`` answer, and when it was fetched.
    status: dict[str, object] | None = None
    fetched_at: float = 0.0
    #: (version, time seen) pairs, accumulated from ``/status?since=``.
    seen: deque[tuple[int, float]] = field(
        default_factory=lambda: deque(maxlen=KEEP_SEEN)
    )
    version: int = -1
    up: bool = False
    reachable: bool = False
    #: The node was seen stale (``up: false``) at least once.
    went_stale: bool = False
    exit_code: int | None = None
    expected_exit: bool = False
    restarts: int = 0
    pids: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def running(self) -> bool:
        return self.proc is not None and self.exit_code is None

    @property
    def crashed(self) -> bool:
        return self.exit_code is not None and not self.expected_exit

    def stat(self, key: str) -> int:
        """An integer field of the last status (0 when missing)."""
        value = (self.status or {}).get(key)
        return value if isinstance(value, int) else 0

    def counter(self, key: str) -> int:
        """One of the node's request counters (``/`` or ``/status``)."""
        requests = (self.status or {}).get("requests")
        if isinstance(requests, dict):
            return int(requests.get(key, 0))
        return 0

    def log_tail(self, lines: int = 8) -> str:
        """The last lines of the node's stderr log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Cluster:
    """
    A tree of node processes on 127.0.0.1.

    ``async with Cluster(specs, ...) as cluster:`` starts the nodes level by level
    (each waits for its parent's ready line) and polls their ``/status``; leaving the
    block stops them all.
    """

    def __init__(
        self,
        specs: Sequence[Spec],
        *,
        log_dir: Path,
        flights: int = 10,
        push_interval: float = 0.25,
        interval: float = 0.05,
        seed: int = 1,
        poll_interval: float = 0.25,
        python: str = sys.executable,
    ) -> None:
        self.specs = list(specs)
        self.log_dir = log_dir
        self.flights = flights
        self.push_interval = push_interval
        self.interval = interval
        self.seed = seed
        self.poll_interval = poll_interval
        self.python = python
        self.nodes = {
            s.name: NodeProc(s, log_dir / f"{s.name}.log") for s in self.specs
        }
        self.events: list[tuple[float, str]] = []
        self.started_at = time.time()
        self._tg: TaskGroup | None = None
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------

    @property
    def root(self) -> NodeProc:
        return self.nodes["root"]

    def level(self, n: int) -> list[NodeProc]:
        """The nodes at tree level *n* (0 = root)."""
        return [p for p in self.nodes.values() if p.spec.level == n]

    def event(self, text: str) -> None:
        """Record something worth reporting (a crash, a restart, ...)."""
        self.events.append((time.time(), text))

    async def __aenter__(self) -> Self:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            for lvl in sorted({s.level for s in self.specs}):
                async with anyio.create_task_group() as start_tg:
                    for node in self.level(lvl):
                        start_tg.start_soon(self.start_node, node)
            for node in self.nodes.values():
                tg.start_soon(self._poll_loop, node)
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        with anyio.CancelScope(shield=True):
            # Leaves first: nothing reconnects to a parent that is going away.
            for lvl in sorted({s.level for s in self.specs}, reverse=True):
                async with anyio.create_task_group() as stop_tg:
                    for node in self.level(lvl):
                        stop_tg.start_soon(self.stop_node, node)
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)

    def command_line(self, node: NodeProc) -> list[str]:
        """The node's command line."""
        spec = node.spec
        cmd = [
            self.python,
            str(NODE_PY),
            "--role",
            spec.role,
            "--name",
            spec.name,
            "--listen",
            str(node.rpc or spec.rpc),
            "--http",
            str(node.http or spec.http),
            "--push-interval",
            str(self.push_interval),
        ]
        if spec.parent is None:
            cmd += ["--flights", str(self.flights), "--interval", str(self.interval)]
            cmd += ["--seed", str(self.seed)]
        else:
            parent = self.nodes[spec.parent]
            cmd += ["--parent", f"127.0.0.1:{parent.rpc}"]
        return cmd

    async def start_node(self, node: NodeProc) -> None:
        """Spawn *node* (again, on the same ports if it ran before) and await READY."""
        assert self._tg is not None
        node.exit_code = None
        node.expected_exit = False
        with node.log_path.open("ab") as log:
            proc = await anyio.open_process(
                self.command_line(node),
                stdin=PIPE,
                stdout=PIPE,
                stderr=log,
                start_new_session=os.name == "posix",
            )
        node.proc = proc
        node.pid = proc.pid
        node.pids.append(proc.pid)
        assert proc.stdout is not None
        reader = BufferedByteReceiveStream(proc.stdout)
        try:
            with anyio.fail_after(READY_TIMEOUT):
                while True:
                    line = (await reader.receive_until(b"\n", 65536)).decode()
                    if line.startswith("READY "):
                        break
        except (TimeoutError, anyio.EndOfStream, anyio.IncompleteRead) as exc:
            with anyio.CancelScope(shield=True):
                await self._kill(proc)
            node.exit_code = proc.returncode
            tail = node.log_tail()
            raise RuntimeError(
                f"node {node.name} did not start ({exc!r}); its log:\n{tail}"
            ) from None
        info = json.loads(line[len("READY ") :])
        node.rpc, node.http = int(info["rpc"]), int(info["http"])
        node.up = True
        self._tg.start_soon(self._watch, node, proc, reader)

    async def _watch(
        self, node: NodeProc, proc: Process, stdout: ByteReceiveStream
    ) -> None:
        """Drain the node's stdout and notice when it exits."""
        with contextlib.suppress(Exception):
            async for _chunk in stdout:
                pass
        rc = await proc.wait()
        if node.proc is not proc:
            return
        node.exit_code = rc
        node.reachable = False
        if not node.expected_exit and not self._closing:
            self.event(f"{node.name} (pid {proc.pid}) exited with code {rc}")

    async def stop_node(self, node: NodeProc) -> None:
        """Close the node's stdin, then terminate, then kill (bounded)."""
        proc = node.proc
        if proc is None or proc.returncode is not None:
            return
        node.expected_exit = True
        with contextlib.suppress(Exception):
            if proc.stdin is not None:
                await proc.stdin.aclose()
        with anyio.move_on_after(STOP_TIMEOUT):
            await proc.wait()
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        with anyio.move_on_after(STOP_TIMEOUT):
            await proc.wait()
            return
        await self._kill(proc)

    async def _kill(self, proc: Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with anyio.move_on_after(STOP_TIMEOUT):
            await proc.wait()

    async def kill(self, name: str) -> None:
        """SIGKILL *name* (a fault injection: not reported as a crash)."""
        node = self.nodes[name]
        if node.proc is None:
            return
        node.expected_exit = True
        self.event(f"killed {name} (pid {node.pid}) with SIGKILL")
        await self._kill(node.proc)

    async def restart(self, name: str) -> None:
        """Start *name* again on its previous ports."""
        node = self.nodes[name]
        node.restarts += 1
        await self.start_node(node)
        self.event(f"restarted {name} (pid {node.pid}) on :{node.rpc}")

    async def command(self, name: str, line: str) -> None:
        """Send a command line (``start``, ``stop``) to a node's stdin."""
        proc = self.nodes[name].proc
        if proc is not None and proc.stdin is not None and proc.returncode is None:
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                await proc.stdin.send(f"{line}\n".encode())

    # -- status -------------------------------------------------------------------

    async def _poll_loop(self, node: NodeProc) -> None:
        client: minihttp.HttpClient | None = None
        port = 0
        try:
            while True:
                if node.running:
                    if client is None or port != node.http:
                        if client is not None:
                            await client.aclose()
                        port = node.http
                        client = minihttp.HttpClient("127.0.0.1", port, timeout=2.0)
                    await self.poll(node, client)
                await anyio.sleep(self.poll_interval)
        finally:
            if client is not None:
                await client.aclose()

    async def poll(self, node: NodeProc, client: minihttp.HttpClient) -> bool:
        """Fetch the node's status (and its new versions); False if unreachable."""
        try:
            st = await client.get_json(f"/status?since={node.version}")
        except (minihttp.HttpError, ValueError):
            node.reachable = False
            return False
        assert isinstance(st, dict)
        node.status = st
        node.fetched_at = time.time()
        node.reachable = True
        node.up = bool(st["up"])
        if not node.up:
            node.went_stale = True
        for v, t in st["seen"]:
            if v > node.version:
                node.seen.append((int(v), float(t)))
                node.version = int(v)
        return True

    async def poll_all(self) -> None:
        """Fetch every running node's status now."""

        async def one(node: NodeProc) -> None:
            async with minihttp.HttpClient("127.0.0.1", node.http, timeout=2.0) as c:
                await self.poll(node, c)

        async with anyio.create_task_group() as tg:
            for node in self.nodes.values():
                if node.running:
                    tg.start_soon(one, node)

    async def converge(self, limit: float) -> float | None:
        """
        Wait until every running node shows the root's version and is up.

        Returns:
            Seconds it took, or None on timeout.
        """
        start = time.monotonic()
        with anyio.move_on_after(limit):
            while True:
                await self.poll_all()
                target = self.root.version
                if all(
                    n.up and n.version == target
                    for n in self.nodes.values()
                    if n.running
                ):
                    return time.monotonic() - start
                await anyio.sleep(0.02)
        return None


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank *p*-th percentile of sorted *values* (NaN when empty)."""
    if not values:
        return math.nan
    k = max(0, min(len(values) - 1, math.ceil(p / 100 * len(values)) - 1))
    return values[k]


def propagation(
    root_seen: Iterable[tuple[int, float]],
    node_seen: Iterable[tuple[int, float]],
    after_version: int,
) -> tuple[list[float], int]:
    """
    Latencies from the root producing each version to a node first showing it.

    A node that skipped a version (pushes coalesce changes) shows it when it first
    shows any later version. Only root versions above *after_version* count.

    Returns:
        The sorted latencies (seconds) and how many versions the node never showed.
    """
    seen = sorted(node_seen)
    versions = [v for v, _ in seen]
    # earliest[i]: the first time the node showed a version >= versions[i]
    earliest = [t for _, t in seen]
    for i in range(len(earliest) - 2, -1, -1):
        earliest[i] = min(earliest[i], earliest[i + 1])
    out: list[float] = []
    missing = 0
    for v, t0 in root_seen:
        if v <= after_version:
            continue
        i = bisect.bisect_left(versions, v)
        if i == len(versions):
            missing += 1
            continue
        out.append(max(0.0, earliest[i] - t0))
    out.sort()
    return out, missing
