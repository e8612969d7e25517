"""
One node of the tree demo, as its own OS process: the root or a replicant.

    python node.py --role root --listen 0 --http 0 --name root
    python node.py --role replicant --parent 127.0.0.1:19700 --name rep-1

- root: the flights machine (id ``root``) served over aRPC, plus the scripted source
  of changes, started and stopped by ``start``/``stop`` lines on stdin.
- replicant: ``am.rpc.Replicant`` of ``--parent``, re-serving its mirror.

Both serve HTTP on 127.0.0.1: ``GET /`` answers the active states as a JSON list, from
local memory (no RPC per request); ``GET /status`` answers the node's status as JSON,
including when it saw each clock version (``?since=V`` limits that log to versions
above V). A clock version is the machine's tick sum: it only grows, and equal versions
of the root and of a mirror mean equal clocks.

Once listening, the node prints one line to stdout::

    READY {"name": "root", "role": "root", "rpc": 19700, "http": 18700, "pid": 4242}

The node exits on end-of-file on stdin (its parent process went away), on SIGINT or
SIGTERM, and never outlives the process that started it with a pipe on stdin.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

sys.path.insert(0, str(Path(__file__).resolve().parent))

import minihttp
from flights import Script, schema

import asyncmachine as am

if TYPE_CHECKING:
    from anyio.lowlevel import EventLoopToken
    from anyio.streams.memory import MemoryObjectSendStream

#: How many (version, time) pairs a node keeps.
LOG_LIMIT = 50_000
#: Longest pause between two reconnect attempts of a replicant.
RECONNECT_MAX_DELAY = 0.5


class VersionLog(am.TracerNoOp):
    """Records when the traced machine's clock version (tick sum) changed."""

    def __init__(self, time_fn: Callable[[], list[int]]) -> None:
        self._time_fn = time_fn
        self.version = sum(time_fn())
        self.log: deque[tuple[int, float]] = deque(maxlen=LOG_LIMIT)
        self.log.append((self.version, time.time()))

    def transition_end(self, tx: am.Transition) -> None:
        v = sum(self._time_fn())
        if v != self.version:
            self.version = v
            self.log.append((v, time.time()))

    def since(self, version: int) -> list[tuple[int, float]]:
        """The entries with a version above *version*."""
        out: list[tuple[int, float]] = []
        for entry in reversed(self.log):
            if entry[0] <= version:
                break
            out.append(entry)
        out.reverse()
        return out


class Node:
    """The parts of a node the HTTP handlers read."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.name: str = args.name
        self.role: str = args.role
        self.requests = {"/": 0, "/status": 0, "other": 0}
        self.rpc_port = 0
        self.http_port = 0
        self.active_states: Callable[[], list[str]] = list
        self.up: Callable[[], bool] = lambda: True
        self.clients: Callable[[], int] = lambda: 0
        self.reconnects: Callable[[], int] = lambda: 0
        self.versions: VersionLog | None = None
        # root only
        self.mach: am.Machine | None = None
        self.mutations = 0
        self.canceled = 0
        self.source_running = False
        self.source_start_version: int | None = None
        self.source_scope: anyio.CancelScope | None = None

    def handle(self, req: minihttp.Request) -> minihttp.Response:
        """Answer one HTTP request from memory."""
        if req.path == "/":
            self.requests["/"] += 1
            return minihttp.json_response(self.active_states())
        if req.path == "/status":
            self.requests["/status"] += 1
            return minihttp.json_response(self.status(int(req.param("since", "-1"))))
        self.requests["other"] += 1
        return minihttp.Response(404, b"GET / or /status\n", "text/plain")

    def status(self, since: int) -> dict[str, object]:
        """The node's status; the version log is limited to versions above *since*."""
        log = self.versions
        assert log is not None
        out: dict[str, object] = {
            "name": self.name,
            "role": self.role,
            "pid": os.getpid(),
            "parent": self.args.parent,
            "rpc": self.rpc_port,
            "http": self.http_port,
            "up": self.up(),
            "version": log.version,
            "active": len(self.active_states()),
            "clients": self.clients(),
            "reconnects": self.reconnects(),
            "requests": dict(self.requests),
            "push_interval": self.args.push_interval,
            "seen": log.since(since),
            "time": time.time(),
        }
        if self.role == "root":
            out |= {
                "mutations": self.mutations,
                "canceled": self.canceled,
                "source_running": self.source_running,
                "source_start_version": self.source_start_version,
            }
        return out


def ready_line(node: Node) -> str:
    """The line announcing a listening node."""
    info = {
        "name": node.name,
        "role": node.role,
        "rpc": node.rpc_port,
        "http": node.http_port,
        "pid": os.getpid(),
    }
    return "READY " + json.dumps(info)


async def run_source(node: Node, interval: float) -> None:
    """Apply the scripted flight changes to the root, one mutation per *interval*."""
    mach = node.mach
    assert mach is not None
    assert node.versions is not None
    script = Script(node.args.flights, seed=node.args.seed)
    node.source_running = True
    if node.source_start_version is None:
        node.source_start_version = node.versions.version
    try:
        deadline = anyio.current_time()
        while True:
            res = mach.add(script.next(mach))
            if res == am.Result.EXECUTED:
                node.mutations += 1
            else:
                node.canceled += 1
            if mach.is_active(am.EXCEPTION):
                print(f"{node.name}: {mach.err()!r}", file=sys.stderr)
                mach.remove(am.EXCEPTION)
            deadline += interval
            # Never catch up in a burst after a stall: keep the pace.
            deadline = max(deadline, anyio.current_time())
            await anyio.sleep_until(deadline)
    finally:
        node.source_running = False


async def commands(
    node: Node, lines: Sequence[str], tg: TaskGroup, stop: anyio.Event
) -> None:
    """Act on one batch of stdin lines (``start``, ``stop``, ``quit``)."""
    for line in lines:
        cmd = line.strip()
        if cmd == "start" and node.mach is not None and node.source_scope is None:
            scope = anyio.CancelScope()
            node.source_scope = scope

            async def source(scope: anyio.CancelScope = scope) -> None:
                with scope:
                    await run_source(node, node.args.interval)

            tg.start_soon(source)
        elif cmd == "stop" and node.source_scope is not None:
            node.source_scope.cancel()
            node.source_scope = None
        elif cmd == "quit":
            stop.set()


def watch_stdin(
    send: MemoryObjectSendStream[str | None], token: EventLoopToken
) -> None:
    """(thread) Forward stdin lines to the event loop; ``None`` on end-of-file."""
    try:
        for line in sys.stdin:
            anyio.from_thread.run(send.send, line, token=token)
        anyio.from_thread.run(send.send, None, token=token)
    except (anyio.BrokenResourceError, anyio.RunFinishedError, RuntimeError):
        return  # the node is exiting anyway


async def lifeline(node: Node, tg: TaskGroup, stop: anyio.Event) -> None:
    """Serve stdin commands; set *stop* on end-of-file."""
    send, receive = anyio.create_memory_object_stream[str | None](16)
    # A daemon thread: a blocked stdin read never delays the process exit.
    token = anyio.lowlevel.current_token()
    threading.Thread(target=watch_stdin, args=(send, token), daemon=True).start()
    async with receive:
        async for line in receive:
            if line is None:
                stop.set()
                return
            await commands(node, [line], tg, stop)


async def signals(stop: anyio.Event) -> None:
    """Set *stop* on SIGINT or SIGTERM."""
    if sys.platform == "win32":  # no signal receivers there; Ctrl-C still raises
        return
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
        async for _ in received:
            stop.set()
            return


def parse_addr(text: str) -> tuple[str, int]:
    """``host:port`` (or ``port``) as a tuple; the host defaults to 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    return (host if sep and host else "127.0.0.1", int(port))


async def serve_node(node: Node, stop: anyio.Event) -> None:
    """Run the node until *stop* is set."""
    args = node.args
    async with anyio.create_task_group() as tg:
        tg.start_soon(lifeline, node, tg, stop)
        tg.start_soon(signals, stop)
        if node.role == "root":
            mach = am.Machine(schema(args.flights), id="root")
            mach.add("Ready")
            node.mach = mach
            node.versions = VersionLog(mach.time)
            mach.add_tracer(node.versions)
            node.active_states = mach.active_states
            async with am.rpc.serve(
                mach,
                "127.0.0.1",
                args.listen,
                push_interval=args.push_interval,
            ) as server:
                node.rpc_port = server.addr[1]
                node.clients = lambda: len(server.sessions)
                await run_http(node, tg, stop)
        else:
            # Reconnect forever, quickly: a restarted parent is found within 0.5 s.
            retry = am.rpc.RetryPolicy(
                retries=sys.maxsize,
                delay=0.05,
                max_delay=RECONNECT_MAX_DELAY,
                total=math.inf,
            )
            async with am.rpc.Replicant(
                parse_addr(args.parent),
                listen=("127.0.0.1", args.listen),
                push_interval=args.push_interval,
                id=args.name,
                reconnect_retry=retry,
            ) as rep:
                nm = rep.netmach
                node.rpc_port = rep.addr[1]
                node.versions = VersionLog(nm.time)
                nm.add_tracer(node.versions)
                node.active_states = nm.active_states
                node.up = lambda: nm.up
                node.clients = lambda: len(rep.server.sessions)
                node.reconnects = lambda: rep.client.stats["reconnects"]
                await run_http(node, tg, stop)
        tg.cancel_scope.cancel()


async def run_http(node: Node, tg: TaskGroup, stop: anyio.Event) -> None:
    """Serve HTTP, announce the node, and wait for *stop*."""
    node.http_port = await tg.start(
        minihttp.serve, node.handle, "127.0.0.1", node.args.http
    )
    print(ready_line(node), flush=True)
    await stop.wait()
    if node.source_scope is not None:
        node.source_scope.cancel()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The node's command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    p.add_argument("--role", choices=("root", "replicant"), required=True)
    p.add_argument("--parent", help="host:port of the parent (replicants)")
    p.add_argument("--listen", type=int, default=0, help="aRPC port (0: any free)")
    p.add_argument("--http", type=int, default=0, help="HTTP port (0: any free)")
    p.add_argument("--name", default=None)
    p.add_argument("--flights", type=int, default=10, help="root: number of flights")
    p.add_argument("--push-interval", type=float, default=0.25)
    p.add_argument(
        "--interval", type=float, default=0.05, help="root: seconds between mutations"
    )
    p.add_argument("--seed", type=int, default=1, help="root: the script's seed")
    args = p.parse_args(argv)
    if args.role == "replicant" and not args.parent:
        p.error("--parent is required for a replicant")
    if args.role == "root":
        args.name = "root"
    elif args.name is None:
        args.name = f"rep-{os.getpid()}"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    node = Node(args)

    async def amain() -> None:
        await serve_node(node, anyio.Event())

    try:
        anyio.run(amain)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
