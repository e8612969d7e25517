"""
The replicant tree under load: HTTP reads per topology, and propagation latency.

Two measurements on the tree demo's processes (``examples/tree``), all on 127.0.0.1:

- HTTP load: keep-alive ``GET /`` against the serving tier of four topologies, the
  ones of asyncmachine-go's published benchmark (rpc.md section 2.3): root only,
  2 L1 replicants, 4 L2 replicants (2 x 2), 6 L2 replicants (2 x 3). The root applies
  one 3-state mutation per second, as in the Go demo. The load comes from
  ``--workers`` processes with ``--connections`` connections in total, each pinned to
  one node of the tier (round robin). Reported next to the Go table.
- Propagation: root-to-L1 and root-to-L2 latency (p50/p99) on the 2 x 2 tree versus
  the push interval, with the root mutating every 50 ms.

Run ``python benchmarks/bench_tree.py`` (about a minute; see ``--help``), or through
``pytest benchmarks/`` (shorter runs; the table is printed at the end). Not run in CI.

Read the comparison with care: the Go figures come from Docker containers limited to
0.1 CPU and 64 MB each, behind a Caddy load balancer, loaded by go-wrk with 512
connections for 10 s on unstated hardware; its averages include client timeouts and
its percentiles do not; and its compose file may not have wired the tree at all (see
rpc.md 2.3). Here every node and the load generator share this machine's CPUs without
limits, and the load generator is Python. Compare shapes, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import anyio
import pytest

TREE: Final = Path(__file__).resolve().parent.parent / "examples" / "tree"
sys.path.insert(0, str(TREE))

import minihttp
from cluster import Cluster, percentile, propagation, topology

SCRIPT: Final = Path(__file__).resolve()
#: A load worker exits this long after its planned end, whatever happens.
WORKER_GRACE: Final = 15.0
REQUEST_TIMEOUT: Final = 2.0

#: asyncmachine-go's published figures (rpc.md 2.3), per tier: requests/s,
#: p50 and p99 in ms, average in ms, errors.
GO: Final = {
    "root": (1638.53, 0.490, 0.604, 312.475, 3471),
    "l1x2": (1809.40, 0.405, 0.493, 282.966, 1619),
    "l2x4": (2733.10, 0.699, 0.918, 187.333, 220),
    "l2x6": (7351.38, 0.601, 0.810, 69.646, 0),
}


@dataclass(frozen=True, slots=True)
class Tier:
    key: str
    name: str
    l1: int
    l2_per_l1: int
    level: int  # the tier that serves the reads


TIERS: Final = (
    Tier("root", "root only", 0, 0, 0),
    Tier("l1x2", "2 replicants (L1)", 2, 0, 1),
    Tier("l2x4", "4 replicants (L2)", 2, 2, 2),
    Tier("l2x6", "6 replicants (L2)", 2, 3, 2),
)


@dataclass
class Load:
    """What the load workers measured against one tier."""

    tier: Tier
    nodes: int
    targets: int
    duration: float
    connections: int
    workers: int
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.duration if self.duration else 0.0


@dataclass
class Propagation:
    push_interval: float
    l1: list[float]
    l2: list[float]
    missing: int


LOADS: list[Load] = []
PROPAGATIONS: list[Propagation] = []


# -- the load worker (a child process) ------------------------------------------------


async def _worker(
    ports: list[int], connections: int, offset: int, start_at: float, end_at: float
) -> dict[str, object]:
    latencies: list[int] = []  # microseconds
    counts = {"ok": 0, "errors": 0}

    async def one(i: int) -> None:
        port = ports[(offset + i) % len(ports)]
        async with minihttp.HttpClient(
            "127.0.0.1", port, timeout=REQUEST_TIMEOUT
        ) as client:
            while True:
                t0 = time.time()
                if t0 >= end_at:
                    return
                p0 = time.perf_counter()
                try:
                    status, _body = await client.get("/")
                    ok = status == 200
                except minihttp.HttpError:
                    ok = False
                elapsed = time.perf_counter() - p0
                if t0 < start_at:
                    continue  # warm-up
                if ok:
                    counts["ok"] += 1
                    latencies.append(round(elapsed * 1e6))
                else:
                    counts["errors"] += 1
                    await anyio.sleep(0.01)

    with anyio.move_on_after(end_at - time.time() + WORKER_GRACE):
        async with anyio.create_task_group() as tg:
            for i in range(connections):
                tg.start_soon(one, i)
    return {"ok": counts["ok"], "errors": counts["errors"], "lat_us": latencies}


def worker_main(args: argparse.Namespace) -> None:
    ports = [int(p) for p in args.ports.split(",")]
    result = anyio.run(
        _worker, ports, args.connections, args.offset, args.start_at, args.end_at
    )
    sys.stdout.write(json.dumps(result))


# -- the measurements ---------------------------------------------------------------


async def measure_tier(
    tier: Tier,
    *,
    duration: float,
    warmup: float,
    connections: int,
    workers: int,
    log_dir: Path,
) -> Load:
    """Start the tier's tree, load its serving nodes, stop the tree."""
    specs = topology(tier.l1, tier.l2_per_l1)
    async with Cluster(
        specs, log_dir=log_dir / tier.key, interval=1.0, poll_interval=1.0
    ) as cluster:
        await cluster.command("root", "start")
        targets = cluster.level(tier.level)
        ports = ",".join(str(n.http) for n in targets)
        start_at = time.time() + 0.5 + warmup  # the workers need a moment to start
        end_at = start_at + duration
        outputs: list[bytes] = []

        async def run_worker(w: int) -> None:
            share = connections // workers + (w < connections % workers)
            cmd = [
                sys.executable,
                str(SCRIPT),
                "--worker",
                "--ports",
                ports,
                "--connections",
                str(share),
                "--offset",
                str(w * (connections // workers)),
                "--start-at",
                repr(start_at),
                "--end-at",
                repr(end_at),
            ]
            with anyio.fail_after(end_at - time.time() + 2 * WORKER_GRACE):
                proc = await anyio.run_process(cmd, check=True)
            outputs.append(proc.stdout)

        async with anyio.create_task_group() as tg:
            for w in range(workers):
                tg.start_soon(run_worker, w)
        crashed = [n.name for n in cluster.nodes.values() if n.crashed]
        if crashed:
            raise RuntimeError(f"nodes crashed under load: {crashed}")
    load = Load(tier, len(specs), len(targets), duration, connections, workers)
    for out in outputs:
        data = json.loads(out)
        load.requests += int(data["ok"])
        load.errors += int(data["errors"])
        load.latencies += [us / 1e6 for us in data["lat_us"]]
    load.latencies.sort()
    return load


async def measure_propagation(
    push_interval: float, *, duration: float, log_dir: Path
) -> Propagation:
    """Root-to-L1/L2 latency on a 2 x 2 tree at one push interval."""
    async with Cluster(
        topology(2, 2),
        log_dir=log_dir / f"push-{push_interval}",
        push_interval=push_interval,
        interval=0.05,
    ) as cluster:
        await cluster.poll_all()
        start_v = cluster.root.version
        await cluster.command("root", "start")
        await anyio.sleep(duration)
        await cluster.command("root", "stop")
        await cluster.converge(5 + 4 * push_interval)
    by_level: dict[int, list[float]] = {1: [], 2: []}
    missing = 0
    for node in cluster.nodes.values():
        if node.spec.level:
            lat, miss = propagation(cluster.root.seen, node.seen, start_v)
            by_level[node.spec.level] += lat
            missing += miss
    return Propagation(push_interval, sorted(by_level[1]), sorted(by_level[2]), missing)


# -- reporting ----------------------------------------------------------------------


def _ms(values: Sequence[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:.2f}" if values else "-"


def table() -> str:
    """The figures measured in this process, with Go's next to them."""
    lines = [
        (
            f"Replicant tree benchmarks: CPython {platform.python_version()}, "
            f"{os.cpu_count()} CPUs, {platform.system()}; every process on this host"
        ),
    ]
    if LOADS:
        first = LOADS[0]
        lines += [
            "",
            (
                f"HTTP GET / (keep-alive), {first.duration:.0f} s per tier after a "
                f"warm-up, {first.connections} connections from {first.workers} load "
                "process(es); the root mutates once per second"
            ),
            (
                f"{'tier':<19} {'nodes':>5} {'serve':>5} {'requests':>9} {'req/s':>9} "
                f"{'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'errors':>6} | "
                f"{'Go req/s':>8} {'p50 ms':>6} {'p99 ms':>6} {'avg ms':>7} {'errors':>6}"
            ),
        ]
        for load in LOADS:
            go = GO[load.tier.key]
            lat = load.latencies
            lines.append(
                f"{load.tier.name:<19} {load.nodes:>5} {load.targets:>5} "
                f"{load.requests:>9} {load.rate:>9.0f} {_ms(lat, 50):>7} "
                f"{_ms(lat, 99):>7} {_ms(lat, 100):>7} {load.errors:>6} | "
                f"{go[0]:>8.0f} {go[1]:>6.3f} {go[2]:>6.3f} {go[3]:>7.1f} {go[4]:>6}"
            )
        lines += [
            (
                "Go: Docker, 0.1 CPU + 64 MB per node, Caddy in front, go-wrk 512 "
                "connections x 10 s, hardware not stated;"
            ),
            (
                "    its avg includes client timeouts (the errors), its percentiles do "
                "not; the tree wiring is unverified (rpc.md 2.3)."
            ),
            (
                "Here: no CPU limits, no load balancer (each connection pinned to one "
                "node), a Python load generator sharing the CPUs;"
            ),
            (
                "    with few CPUs the load generator is the bottleneck, and the tiers "
                "then measure it rather than the nodes."
            ),
        ]
    if PROPAGATIONS:
        lines += [
            "",
            "Propagation from the root (2 L1 x 2 L2, a mutation every 50 ms)",
            (
                f"{'push interval':>13} {'L1 p50 ms':>10} {'L1 p99 ms':>10} "
                f"{'L2 p50 ms':>10} {'L2 p99 ms':>10} {'samples':>8} {'missing':>8}"
            ),
        ]
        for prop in PROPAGATIONS:
            lines.append(
                f"{prop.push_interval * 1000:>10.0f} ms {_ms(prop.l1, 50):>10} "
                f"{_ms(prop.l1, 99):>10} {_ms(prop.l2, 50):>10} "
                f"{_ms(prop.l2, 99):>10} {len(prop.l2):>8} {prop.missing:>8}"
            )
        lines.append(
            "Each level waits up to one push interval; the phase between levels "
            "is arbitrary, so root->L2 lies between 1x and 2x the interval."
        )
    return "\n".join(lines)


def summary() -> str | None:
    """The table of what ran in this process, if anything (see conftest.py)."""
    return table() if LOADS or PROPAGATIONS else None


# -- entry points -------------------------------------------------------------------


async def run_all(args: argparse.Namespace, log_dir: Path) -> None:
    tiers = [t for t in TIERS if t.key in args.tiers.split(",")]
    for tier in tiers:
        LOADS.append(
            await measure_tier(
                tier,
                duration=args.duration,
                warmup=args.warmup,
                connections=args.connections,
                workers=args.workers,
                log_dir=log_dir,
            )
        )
        print(f"  measured {tier.name}", file=sys.stderr, flush=True)
    for interval in (float(x) for x in args.intervals.split(",") if x):
        PROPAGATIONS.append(
            await measure_propagation(
                interval, duration=args.prop_duration, log_dir=log_dir
            )
        )
        print(f"  measured push interval {interval}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--duration", type=float, default=5.0, help="seconds per tier")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before that")
    p.add_argument("--connections", type=int, default=64, help="in total (64)")
    p.add_argument(
        "--workers",
        type=int,
        default=max(1, min(4, (os.cpu_count() or 2) // 2)),
        help="load generator processes",
    )
    p.add_argument("--tiers", default="root,l1x2,l2x4,l2x6")
    p.add_argument(
        "--intervals",
        default="0.01,0.05,0.1,0.25",
        help="push intervals for the propagation table ('' to skip)",
    )
    p.add_argument("--prop-duration", type=float, default=4.0)
    # internal: a load worker
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ports", help=argparse.SUPPRESS)
    p.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--end-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.worker:
        args.workers = max(1, min(args.workers, args.connections))
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker_main(args)
        return
    log_dir = Path(tempfile.mkdtemp(prefix="asyncmachine-bench-tree-"))
    started = time.perf_counter()
    try:
        anyio.run(run_all, args, log_dir)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    print(table())
    print(f"\n(total {time.perf_counter() - started:.1f} s)")


# -- pytest (``pytest benchmarks/``: shorter runs) ----------------------------------


class _Benchmark(Protocol):
    extra_info: dict[str, object]

    def pedantic(self, target: object, *, rounds: int, iterations: int) -> object: ...


@pytest.mark.timeout(180)
def test_tree_http_load(benchmark: _Benchmark, tmp_path: Path) -> None:
    """HTTP reads against every tier, 2 s each."""

    def run() -> None:
        args = parse_args(["--duration", "2", "--intervals", ""])
        anyio.run(run_all, args, tmp_path)

    benchmark.pedantic(run, rounds=1, iterations=1)
    for load in LOADS:
        benchmark.extra_info[f"{load.tier.key}_req_s"] = round(load.rate)
        assert load.requests > 0


@pytest.mark.timeout(120)
def test_tree_propagation(benchmark: _Benchmark, tmp_path: Path) -> None:
    """Root-to-leaf latency at three push intervals, 2 s each."""

    def run() -> None:
        args = parse_args(
            ["--tiers", "", "--intervals", "0.01,0.1,0.25", "--prop-duration", "2"]
        )
        anyio.run(run_all, args, tmp_path)

    benchmark.pedantic(run, rounds=1, iterations=1)
    for prop in PROPAGATIONS:
        assert prop.l2
        benchmark.extra_info[f"l2_p50_ms_at_{prop.push_interval}"] = round(
            percentile(prop.l2, 50) * 1000, 1
        )


if __name__ == "__main__":
    main()
