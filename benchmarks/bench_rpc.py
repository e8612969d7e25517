"""
aRPC benchmarks: remote mutation latency, clock push fan-out, and the TCP floor.

Everything runs over real TCP on 127.0.0.1 and stops by itself. Scenarios:

- (a) a remote ``await nm.add("A")`` on a multi state, client and server in one
  process: p50/p99 latency and mutations/s;
- (b) the same with the server in a child process (client and server do not share
  a CPU or an event loop);
- (c) fan-out: one source, ``FANOUT_CLIENTS`` clients with ``push_interval=0``; the
  source changes a state and we time until every mirror saw the new tick;
- (d) the floor: a raw anyio TCP echo that sends the bytes of a real MUTATE frame and
  answers with the bytes of a real RESULT frame (both made by the protocol code), in
  process and across processes like (a) and (b).

Run ``python benchmarks/bench_rpc.py`` for a table with the ratios aRPC/floor, or
``pytest benchmarks/`` (pytest-benchmark, from the ``bench`` extra, records the figures
as ``extra_info``; a summary table is printed at the end). Absolute figures depend on
the machine and on its load: compare only figures from one run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import anyio
import anyio.abc

import asyncmachine as am
from asyncmachine import rpc
from asyncmachine.rpc._clock import ClockExporter
from asyncmachine.rpc._events import Hello, Mutate, Op, Result, Welcome
from asyncmachine.rpc._protocol import SUPPORTED_VERSIONS, Connection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

#: Timed round trips per latency scenario (a, b, d).
N_ROUND_TRIPS: Final = 2000
#: Untimed round trips before each timed loop.
N_WARMUP: Final = 200
#: Mirrors in the fan-out scenario (c).
FANOUT_CLIENTS: Final = 100
#: Source changes in the fan-out scenario, one at a time (each waits for all mirrors).
FANOUT_CHANGES: Final = 50
#: Source changes in the fan-out burst (back to back, one checkpoint between).
FANOUT_BURST: Final = 200
#: A child server process exits after this many seconds even if nobody stops it.
CHILD_LIFETIME: Final = 90.0
#: Seconds to wait for a child server to print its address.
CHILD_START_TIMEOUT: Final = 20.0
#: Go's aRPC reference: ns per remote mutation including a read (rpc.md section 3).
GO_ARPC_NS: Final = 248_913

HOST: Final = "127.0.0.1"
SCRIPT: Final = Path(__file__).resolve()


@dataclass(frozen=True, slots=True)
class Figures:
    """What one scenario measured."""

    name: str
    p50_us: float
    p99_us: float
    rate: float  # operations per second
    rate_unit: str
    note: str = ""

    def as_dict(self) -> dict[str, float | str]:
        return {
            "p50_us": round(self.p50_us, 1),
            "p99_us": round(self.p99_us, 1),
            self.rate_unit: round(self.rate),
        }


#: Figures of every scenario run in this process, by key (the summary reads them).
RESULTS: dict[str, Figures] = {}
#: Which floor each aRPC scenario is compared with.
FLOOR_OF: Final = {
    "rpc_inproc": "floor_inproc",
    "rpc_xproc": "floor_xproc",
}


def _source() -> am.Machine:
    return am.Machine({"A": am.State(multi=True), "B": am.State()}, id="bench")


def _percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile of sorted nanoseconds, in microseconds."""
    i = min(len(sorted_ns) - 1, max(0, round(q * len(sorted_ns)) - 1))
    return sorted_ns[i] / 1000


def _figures(name: str, lat_ns: list[int], elapsed: float, unit: str) -> Figures:
    lat_ns.sort()
    return Figures(
        name,
        _percentile(lat_ns, 0.50),
        _percentile(lat_ns, 0.99),
        len(lat_ns) / elapsed,
        unit,
    )


def protocol_frames() -> tuple[bytes, bytes]:
    """
    The bytes of a MUTATE ``add A`` and of its RESULT, as the protocol code makes them.

    Both sides of a sans-IO connection are driven through HELLO and WELCOME first; the
    RESULT carries the clock delta of a real multi-state add, and the MUTATE a request
    id of the client's shape (a 31-bit prefix and a counter: always 9 bytes).
    Returned are the frames of round trip ``N_WARMUP + N_ROUND_TRIPS // 2``.
    """
    mach = _source()
    cli, srv = Connection("client"), Connection("server")
    srv.receive_data(cli.send(Hello(versions=tuple(SUPPORTED_VERSIONS), id="bench")))
    srv.next_event()
    exp = ClockExporter()

    def clock() -> tuple[str, list[int], int, int]:
        return mach.epoch, mach.time(), mach.queue_tick(), mach.machine_tick()

    welcome = Welcome(
        version=max(SUPPORTED_VERSIONS),
        id=mach.id,
        session_id=f"rs-{mach.id}-1",
        names=tuple(mach.state_names()),
        clock=exp.full(*clock()),
        push_interval=250,
    )
    cli.receive_data(srv.send(welcome))
    cli.next_event()
    mutate = result = b""
    # the frames of a round trip in the middle of a timed loop: seq numbers and ticks
    # of the sizes the benchmarks see
    for i in range(N_WARMUP + N_ROUND_TRIPS // 2):
        rid = (0x5EED << 32) | i
        mutate = cli.send(Mutate(op=Op.ADD, states=(mach.index("A"),), rid=rid))
        srv.receive_data(mutate)
        req = srv.next_event()
        assert isinstance(req, Mutate)
        res = mach.add("A")
        clk = exp.update(*clock())
        result = srv.send(Result(result=int(res), clock=clk, re=req.seq))
        cli.receive_data(result)
        cli.next_event()
    return mutate, result


# -- child processes ------------------------------------------------------------------


async def _stdin_closed() -> None:
    """Return once stdin reaches EOF (the parent closed it)."""
    fd = sys.stdin.fileno()
    while True:
        await anyio.wait_readable(fd)
        if not os.read(fd, 4096):
            return


async def _serve_child(kind: str) -> None:
    """Child mode: serve an aRPC source or an echo server until stdin closes."""

    def ready(host: str, port: int) -> None:
        print(f"LISTENING {host} {port}", flush=True)

    with anyio.move_on_after(CHILD_LIFETIME):
        if kind == "arpc":
            async with rpc.serve(_source(), HOST) as server:
                ready(*server.addr)
                await _stdin_closed()
        else:
            mutate, result = protocol_frames()
            async with await anyio.create_tcp_listener(local_host=HOST) as listener:
                port = listener.extra(anyio.abc.SocketAttribute.local_port)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(listener.serve, _echo_handler(len(mutate), result))
                    ready(HOST, port)
                    await _stdin_closed()
                    tg.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def _child_server(kind: str) -> AsyncIterator[tuple[str, int]]:
    """Start ``bench_rpc.py --serve kind`` and yield its address; stop it after."""
    cmd = [sys.executable, str(SCRIPT), "--serve", kind]
    async with await anyio.open_process(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        line = b""
        with anyio.fail_after(CHILD_START_TIMEOUT):
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive(1)
                line += chunk
        word, host, port = line.decode().split()
        assert word == "LISTENING", line
        try:
            yield (host, int(port))
        finally:
            with anyio.CancelScope(shield=True):
                await proc.stdin.aclose()  # the child stops at EOF
                with anyio.move_on_after(10):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


# -- (d) the floor: a raw TCP echo of protocol-sized messages -------------------------


def _echo_handler(
    request_size: int, reply: bytes
) -> Callable[[anyio.abc.SocketStream], object]:
    async def handle(stream: anyio.abc.SocketStream) -> None:
        buf = b""
        async with stream:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                while True:
                    buf += await stream.receive()
                    while len(buf) >= request_size:
                        buf = buf[request_size:]
                        await stream.send(reply)

    return handle


async def _echo_client(
    addr: tuple[str, int], request: bytes, reply_size: int
) -> Figures:
    lat: list[int] = []
    async with await anyio.connect_tcp(*addr) as stream:

        async def round_trip() -> None:
            await stream.send(request)
            got = 0
            while got < reply_size:
                got += len(await stream.receive())

        for _ in range(N_WARMUP):
            await round_trip()
        gc.collect()
        start = time.perf_counter()
        for _ in range(N_ROUND_TRIPS):
            t = time.perf_counter_ns()
            await round_trip()
            lat.append(time.perf_counter_ns() - t)
        elapsed = time.perf_counter() - start
    return _figures("", lat, elapsed, "msgs_per_s")


def run_floor_in_process() -> Figures:
    """
    The floor, one process: round trips of a raw anyio TCP echo on 127.0.0.1.

    The client sends the bytes of a real MUTATE frame, the server answers with the
    bytes of a real RESULT frame; nothing is parsed. Client and server share an event
    loop, as in :func:`run_remote_mutation_in_process`.
    """
    mutate, result = protocol_frames()

    async def main() -> Figures:
        async with await anyio.create_tcp_listener(local_host=HOST) as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, _echo_handler(len(mutate), result))
                fig = await _echo_client((HOST, port), mutate, len(result))
                tg.cancel_scope.cancel()
        return fig

    fig = anyio.run(main)
    return _record("floor_inproc", fig, "(d) floor: TCP echo, 1 process")


def run_floor_cross_process() -> Figures:
    """
    The floor, two processes: the echo of :func:`run_floor_in_process` with the echo
    server in a child process.
    """
    mutate, result = protocol_frames()

    async def main() -> Figures:
        async with _child_server("echo") as addr:
            return await _echo_client(addr, mutate, len(result))

    fig = anyio.run(main)
    return _record("floor_xproc", fig, "(d) floor: TCP echo, 2 processes")


# -- (a), (b): remote mutation round trips --------------------------------------------


async def _mutations(addr: tuple[str, int]) -> Figures:
    lat: list[int] = []
    async with rpc.Client(addr) as client:
        nm = client.netmach
        for _ in range(N_WARMUP):
            await nm.add("A")
        link = client._link
        assert link is not None
        bytes_out, frames_out = link.bytes_out, link.frames_out
        bytes_in, frames_in = link.bytes_in, link.frames_in
        tick = nm.tick("A")
        gc.collect()
        start = time.perf_counter()
        for _ in range(N_ROUND_TRIPS):
            t = time.perf_counter_ns()
            await nm.add("A")
            lat.append(time.perf_counter_ns() - t)
        elapsed = time.perf_counter() - start
        # every add executed once, and the mirror shows it
        assert nm.tick("A") == tick + 2 * N_ROUND_TRIPS, (nm.tick("A"), tick)
        sent = (link.bytes_out - bytes_out) / (link.frames_out - frames_out)
        received = (link.bytes_in - bytes_in) / max(1, link.frames_in - frames_in)
    fig = _figures("", lat, elapsed, "mutations_per_s")
    note = f"wire: {sent:.0f} B out, {received:.0f} B in per frame"
    return Figures(fig.name, fig.p50_us, fig.p99_us, fig.rate, fig.rate_unit, note)


def run_remote_mutation_in_process() -> Figures:
    """
    (a) Remote ``await nm.add("A")`` (multi state) over TCP, client and server in one
    process and one event loop; the server uses the default ``push_interval``.

    One op is a full round trip: MUTATE out, the source's transition, RESULT with the
    clock delta back, the delta applied to the mirror.
    """

    async def main() -> Figures:
        async with rpc.serve(_source(), HOST) as server:
            return await _mutations(server.addr)

    return _record("rpc_inproc", anyio.run(main), "(a) remote add, 1 process")


def run_remote_mutation_cross_process() -> Figures:
    """(b) The round trips of (a), with the served machine in a child process."""

    async def main() -> Figures:
        async with _child_server("arpc") as addr:
            return await _mutations(addr)

    return _record("rpc_xproc", anyio.run(main), "(b) remote add, 2 processes")


# -- (c) clock push fan-out -----------------------------------------------------------


class _Fanout:
    """How many mirrors have reached ``target`` ticks of A."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.target = 0
        self.seen = 0
        self.done = anyio.Event()

    def expect(self, target: int) -> None:
        self.target = target
        self.seen = 0
        self.done = anyio.Event()


class _Watch(am.TracerNoOp):
    """Counts one mirror into a :class:`_Fanout` when its tick of A reaches the target."""

    def __init__(self, nm: rpc.NetMach, fan: _Fanout) -> None:
        self.nm = nm
        self.fan = fan
        self.counted = 0

    def transition_end(self, tx: object) -> None:
        fan = self.fan
        if self.counted < fan.target <= self.nm.tick("A"):
            self.counted = fan.target
            fan.seen += 1
            if fan.seen == fan.n:
                fan.done.set()


def run_fanout() -> Figures:
    """
    (c) Clock pushes from one source to ``FANOUT_CLIENTS`` mirrors (``push_interval=0``),
    all in one process.

    Per change: the source adds A (a multi state) locally, and we time until every
    mirror's tick of A reached the new value (p50/p99 over ``FANOUT_CHANGES`` changes);
    pushes/s is mirrors updated per second over those changes. Then a burst of
    ``FANOUT_BURST`` changes with one checkpoint between them: the time until every
    mirror saw the last tick, and how many CLOCK frames that took (pushes coalesce).
    """

    async def main() -> Figures:
        src = _source()
        fan = _Fanout(FANOUT_CLIENTS)
        async with (
            rpc.serve(src, HOST, push_interval=0) as server,
            contextlib.AsyncExitStack() as stack,
        ):
            clients = [
                await stack.enter_async_context(rpc.Client(server.addr))
                for _ in range(FANOUT_CLIENTS)
            ]
            for c in clients:
                c.netmach.add_tracer(_Watch(c.netmach, fan))

            async def change(n: int) -> None:
                for i in range(n):
                    src.add("A")
                    if i < n - 1:
                        await anyio.lowlevel.checkpoint()
                fan.expect(src.tick("A"))
                await fan.done.wait()

            for _ in range(5):  # warm-up
                await change(1)
            lat: list[int] = []
            gc.collect()
            start = time.perf_counter()
            for _ in range(FANOUT_CHANGES):
                t = time.perf_counter_ns()
                await change(1)
                lat.append(time.perf_counter_ns() - t)
            elapsed = time.perf_counter() - start

            frames = sum(s.link.frames_out for s in server.sessions.values())
            t = time.perf_counter_ns()
            await change(FANOUT_BURST)
            burst_ms = (time.perf_counter_ns() - t) / 1e6
            pushes = sum(s.link.frames_out for s in server.sessions.values()) - frames
            assert all(c.netmach.tick("A") == src.tick("A") for c in clients)
        fig = _figures("", lat, elapsed, "changes_per_s")
        note = (
            f"burst of {FANOUT_BURST} changes: all mirrors current after "
            f"{burst_ms:.1f} ms, {pushes} CLOCK frames "
            f"({pushes / FANOUT_CLIENTS:.1f} per mirror)"
        )
        return Figures(
            "",
            fig.p50_us,
            fig.p99_us,
            fig.rate * FANOUT_CLIENTS,
            "pushes_per_s",
            note,
        )

    return _record("fanout", anyio.run(main), f"(c) fan-out to {FANOUT_CLIENTS}")


# -- reporting ------------------------------------------------------------------------


def _record(key: str, fig: Figures, name: str) -> Figures:
    fig = Figures(name, fig.p50_us, fig.p99_us, fig.rate, fig.rate_unit, fig.note)
    RESULTS[key] = fig
    return fig


def ratio_to_floor(key: str) -> tuple[float, float] | None:
    """(p50, p99) of the aRPC scenario *key* divided by its floor's, if both ran."""
    floor = RESULTS.get(FLOOR_OF.get(key, ""))
    fig = RESULTS.get(key)
    if floor is None or fig is None:
        return None
    return fig.p50_us / floor.p50_us, fig.p99_us / floor.p99_us


def table() -> str:
    """The figures of every scenario run so far, with the ratios aRPC/floor."""
    mutate, result = protocol_frames()
    header = (
        f"aRPC benchmarks: CPython {platform.python_version()}, anyio "
        f"{importlib.metadata.version('anyio')} (asyncio), {os.cpu_count()} CPUs\n"
        f"{N_ROUND_TRIPS} round trips after {N_WARMUP} warm-up; "
        f"MUTATE frame {len(mutate)} B, RESULT frame {len(result)} B"
    )
    columns = (
        f"{'scenario':<34} {'p50 µs':>9} {'p99 µs':>9} {'ops/s':>9}  "
        f"{'unit':<16} {'vs floor p50/p99':>16}"
    )
    lines = [header, "", columns]
    order = ["floor_inproc", "rpc_inproc", "floor_xproc", "rpc_xproc", "fanout"]
    for key in order:
        fig = RESULTS.get(key)
        if fig is None:
            continue
        r = ratio_to_floor(key)
        ratio = f"x{r[0]:.1f} / x{r[1]:.1f}" if r else ""
        lines.append(
            f"{fig.name:<34} {fig.p50_us:>9.1f} {fig.p99_us:>9.1f} {fig.rate:>9.0f}  "
            f"{fig.rate_unit:<16} {ratio:>16}"
        )
        if fig.note:
            lines.append(f"{'':<34} {fig.note}")
    lines.append("")
    lines.append(
        f"Go aRPC reference (rpc.md section 3, other hardware): "
        f"{GO_ARPC_NS / 1000:.0f} µs per remote mutation with a read."
    )
    return "\n".join(lines)


def summary() -> str | None:
    """The table of the scenarios run in this process, if any (see conftest.py)."""
    return table() if RESULTS else None


def run_all() -> None:
    """Every scenario in one process, floors first, so the ratios are meaningful."""
    run_floor_in_process()
    run_remote_mutation_in_process()
    run_floor_cross_process()
    run_remote_mutation_cross_process()
    run_fanout()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--serve", choices=["arpc", "echo"], help="internal: run as a child server"
    )
    args = parser.parse_args(argv)
    if args.serve:
        anyio.run(_serve_child, args.serve)
        return
    started = time.perf_counter()
    run_all()
    print(table())
    print(f"\n(total {time.perf_counter() - started:.1f} s)")


# -- pytest ---------------------------------------------------------------------------


class _Benchmark(Protocol):
    """The part of pytest-benchmark's fixture used here."""

    extra_info: dict[str, object]

    def pedantic(
        self, target: Callable[[], Figures], *, rounds: int, iterations: int
    ) -> Figures: ...


def _bench(benchmark: _Benchmark, key: str, fn: Callable[[], Figures]) -> Figures:
    fig = benchmark.pedantic(fn, rounds=1, iterations=1)
    benchmark.extra_info.update(fig.as_dict())
    r = ratio_to_floor(key)
    if r is not None:
        benchmark.extra_info["p50_vs_floor"] = round(r[0], 2)
        benchmark.extra_info["p99_vs_floor"] = round(r[1], 2)
    assert fig.p50_us > 0
    assert fig.rate > 0
    return fig


def test_floor_in_process(benchmark: _Benchmark) -> None:
    """(d) Raw TCP echo of MUTATE/RESULT-sized messages, one process."""
    _bench(benchmark, "floor_inproc", run_floor_in_process)


def test_remote_mutation_in_process(benchmark: _Benchmark) -> None:
    """(a) Remote ``await nm.add("A")`` round trips, one process."""
    _bench(benchmark, "rpc_inproc", run_remote_mutation_in_process)


def test_floor_cross_process(benchmark: _Benchmark) -> None:
    """(d) Raw TCP echo of MUTATE/RESULT-sized messages, two processes."""
    _bench(benchmark, "floor_xproc", run_floor_cross_process)


def test_remote_mutation_cross_process(benchmark: _Benchmark) -> None:
    """(b) Remote ``await nm.add("A")`` round trips, server in a child process."""
    _bench(benchmark, "rpc_xproc", run_remote_mutation_cross_process)


def test_fanout(benchmark: _Benchmark) -> None:
    """(c) One source's changes pushed to ``FANOUT_CLIENTS`` mirrors."""
    _bench(benchmark, "fanout", run_fanout)


if __name__ == "__main__":
    main()
