"""
The replicant tree demo: a flight-status machine mirrored across OS processes.

    python examples/tree/demo.py              # ~20 s scenario, summary, exit code
    python examples/tree/demo.py --forever    # until Ctrl-C
    python examples/tree/demo.py --kill-l1 8  # kill rep-1 at 8 s, restart it 2 s later

One root process owns the flights machine and changes it from a script; L1 replicant
processes mirror the root, L2 replicants mirror the L1s, and every node answers
``GET /`` (its active states as JSON) and ``GET /status`` on its own HTTP port. This
orchestrator starts the nodes, reads from the L2 endpoints, shows the tree live, and
ends with a summary: mutations applied, propagation latency from the root to each
level, HTTP requests served, and the checks that decide the exit code.

Exit codes: 0 when every check passed, 1 when one failed (a node crashed, a snapshot
was inconsistent, a node did not converge, ...), 130 when interrupted (Ctrl-C or
SIGTERM; the summary of what ran is still printed). See docs/demo.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import minihttp
from cluster import Cluster, NodeProc, percentile, propagation, topology
from flights import check_board, schema

if TYPE_CHECKING:
    from rich.console import RenderableType

#: How long the end of the scenario may wait for every node to show the root's clock.
CONVERGE_TIMEOUT = 5.0


# -- the run's measurements -------------------------------------------------------


@dataclass
class Reads:
    """What the HTTP readers saw."""

    ok: int = 0
    errors: int = 0
    inconsistent: int = 0
    problems: list[str] = field(default_factory=list)
    #: Read latencies (seconds), the most recent ones.
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=200_000))


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Run:
    """Everything one demo run collects; the summary is computed from it."""

    args: argparse.Namespace
    cluster: Cluster | None = None
    reads: Reads = field(default_factory=Reads)
    started: float = 0.0
    source_started: float = 0.0
    source_stopped: float = 0.0
    converged_in: float | None = None
    interrupted: bool = False
    error: str | None = None
    fault_victim: str | None = None
    fault_restarted: bool = False
    fault_done: anyio.Event = field(default_factory=anyio.Event)
    #: Set once the summary was printed.
    exit_code: int | None = None
    #: The root's mutation count when the fault was injected, and at the restart.
    fault_root_mutations: tuple[int, int] = (0, 0)

    def elapsed(self) -> float:
        if not self.source_started:
            return 0.0
        end = self.source_stopped or time.time()
        return end - self.source_started


# -- readers and fault injection ----------------------------------------------------


async def reader(run: Run, targets: list[NodeProc], offset: int, pause: float) -> None:
    """GET / from *targets* in turn; check every snapshot is a consistent board."""
    flights = run.args.flights
    clients: dict[str, minihttp.HttpClient] = {}
    try:
        for i in itertools.count(offset):
            node = targets[i % len(targets)]
            if not node.running:
                await anyio.sleep(0.05)
                continue
            c = clients.get(node.name)
            if c is None or c.port != node.http:
                if c is not None:
                    await c.aclose()
                c = clients[node.name] = minihttp.HttpClient("127.0.0.1", node.http)
            t0 = time.perf_counter()
            try:
                active = await c.get_json("/")
            except (minihttp.HttpError, ValueError):
                run.reads.errors += 1
                await anyio.sleep(0.1)
                continue
            run.reads.latencies.append(time.perf_counter() - t0)
            problems = (
                check_board(active, flights)
                if isinstance(active, list)
                else [f"not a list: {active!r:.60}"]
            )
            if problems:
                run.reads.inconsistent += 1
                if len(run.reads.problems) < 5:
                    run.reads.problems.append(f"{node.name}: {problems[0]}")
            else:
                run.reads.ok += 1
            await anyio.sleep(pause)
    finally:
        for c in clients.values():
            await c.aclose()


async def inject_fault(run: Run, cluster: Cluster, at: float, after: float) -> None:
    """Kill the first L1 with SIGKILL at *at* seconds; restart it *after* later."""
    try:
        victims = cluster.level(1)
        if not victims:
            return
        victim = victims[0]
        await anyio.sleep(at)
        run.fault_victim = victim.name
        await cluster.kill(victim.name)
        killed_at = root_mutations(cluster)
        await anyio.sleep(after)
        await cluster.poll_all()
        run.fault_root_mutations = (killed_at, root_mutations(cluster))
        await cluster.restart(victim.name)
        run.fault_restarted = True
    finally:
        run.fault_done.set()


def root_mutations(cluster: Cluster) -> int:
    """The root's mutation count, as of its last status."""
    return cluster.root.stat("mutations")


# -- the live view ------------------------------------------------------------------


def lag(cluster: Cluster, node: NodeProc) -> tuple[int, float]:
    """How far *node* is behind the root: versions, and seconds since the root
    produced the oldest version the node does not show yet."""
    root = cluster.root
    behind = max(0, root.version - node.version)
    if not behind or node.spec.level == 0:
        return 0, 0.0
    t_first = 0.0
    for v, t in reversed(root.seen):
        if v <= node.version:
            break
        t_first = t
    return behind, max(0.0, node.fetched_at - t_first) if t_first else 0.0


def node_state(node: NodeProc) -> str:
    if node.crashed:
        return f"crashed ({node.exit_code})"
    if node.exit_code is not None:
        return "killed"
    if not node.reachable:
        return "starting" if node.status is None else "unreachable"
    return "ok" if node.up else "STALE"


def header(run: Run) -> str:
    cluster = run.cluster
    assert cluster is not None
    duration = "forever" if run.args.forever else f"{run.args.duration:.0f} s"
    return (
        f"t={run.elapsed():5.1f} s / {duration}   "
        f"mutations {cluster.root.stat('mutations')}   "
        f"HTTP reads {run.reads.ok + run.reads.inconsistent} "
        f"(errors {run.reads.errors}, inconsistent {run.reads.inconsistent})"
    )


def rich_table(run: Run) -> RenderableType:
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    cluster = run.cluster
    assert cluster is not None
    table = Table(
        title="asyncmachine replicant tree (Ctrl-C stops)",
        title_justify="left",
        caption="version: the clock's tick sum; lag: behind the root",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("node", no_wrap=True)
    table.add_column("pid", justify="right", no_wrap=True)
    table.add_column("ports", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("active", justify="right", no_wrap=True)
    table.add_column("version", justify="right", no_wrap=True)
    table.add_column("lag", justify="right", no_wrap=True)
    table.add_column("lag ms", justify="right", no_wrap=True)
    table.add_column("GET /", justify="right", no_wrap=True)
    for node in tree_order(cluster):
        st = node.status or {}
        behind, lag_s = lag(cluster, node)
        state = node_state(node)
        style = {"ok": "green", "STALE": "yellow"}.get(state, "red")
        table.add_row(
            "  " * node.spec.level + node.name,
            str(node.pid),
            f"{node.rpc}/{node.http}",
            Text(state, style=style),
            str(st.get("active", "")),
            str(node.version if node.version >= 0 else ""),
            str(behind),
            f"{lag_s * 1000:.0f}",
            str(node.counter("/")),
        )
    events = [Text(f"  {e}", style="dim") for _, e in cluster.events[-4:]]
    return Group(Text(header(run)), table, *events)


def plain_line(run: Run) -> str:
    cluster = run.cluster
    assert cluster is not None
    parts = [header(run)]
    for node in tree_order(cluster):
        behind, lag_s = lag(cluster, node)
        state = node_state(node)
        extra = f" lag {behind}/{lag_s * 1000:.0f}ms" if behind else ""
        flag = "" if state == "ok" else f" {state}"
        parts.append(f"{node.name} v{node.version}{extra}{flag}")
    return " | ".join(parts)


def tree_order(cluster: Cluster) -> list[NodeProc]:
    """Nodes depth-first: root, rep-1, rep-1-1, ..., rep-2, ..."""
    out: list[NodeProc] = []

    def walk(name: str) -> None:
        out.append(cluster.nodes[name])
        for node in cluster.nodes.values():
            if node.spec.parent == name:
                walk(node.name)

    walk("root")
    return out


async def live_view(run: Run, stop: anyio.Event) -> None:
    """Refresh the view until *stop*: a rich table on a terminal, else plain lines."""
    use_rich = sys.stdout.isatty() and not run.args.plain
    if use_rich:
        try:
            from rich.live import Live
        except ImportError:
            print("(install rich for the live table: pip install rich)", flush=True)
            use_rich = False
    if not use_rich:
        while not stop.is_set():
            with anyio.move_on_after(run.args.plain_every):
                await stop.wait()
            print(plain_line(run), flush=True)
        return
    with Live(rich_table(run), refresh_per_second=4, transient=False) as live:
        while not stop.is_set():
            with anyio.move_on_after(0.25):
                await stop.wait()
            live.update(rich_table(run))


# -- the summary --------------------------------------------------------------------


@dataclass
class Level:
    name: str
    latencies: list[float]
    missing: int

    def describe(self) -> str:
        lat = self.latencies
        if not lat:
            return f"no samples ({self.missing} versions never shown)"
        missing = f", {self.missing} never shown" if self.missing else ""
        return (
            f"p50 {percentile(lat, 50) * 1000:.1f} ms, "
            f"p99 {percentile(lat, 99) * 1000:.1f} ms, "
            f"max {lat[-1] * 1000:.1f} ms ({len(lat)} samples{missing})"
        )


def summarize(run: Run) -> tuple[list[str], dict[str, object], list[Check]]:
    """The summary lines, the same as JSON, and the checks."""
    args = run.args
    cluster = run.cluster
    assert cluster is not None
    root = cluster.root
    rst = root.status or {}
    start_v = rst.get("source_start_version")
    after = int(start_v) if isinstance(start_v, int) else root.version
    per_node: dict[str, tuple[list[float], int]] = {}
    levels: dict[int, Level] = {}
    for node in cluster.nodes.values():
        if node.spec.level == 0:
            continue
        lat, missing = propagation(root.seen, node.seen, after)
        per_node[node.name] = (lat, missing)
        lvl = levels.setdefault(
            node.spec.level, Level(f"root->L{node.spec.level}", [], 0)
        )
        lvl.latencies.extend(lat)
        lvl.missing += missing
    for lvl in levels.values():
        lvl.latencies.sort()

    mutations = root.stat("mutations")
    canceled = root.stat("canceled")
    leaves = [n for n in cluster.nodes.values() if n.spec.level == max_level(cluster)]
    reads_served = sum(n.counter("/") for n in cluster.nodes.values())
    leaf_reads = sum(n.counter("/") for n in leaves)
    polls = sum(n.counter("/status") for n in cluster.nodes.values())
    n_states = len(schema(args.flights)) + 1  # + Exception
    l1 = len(cluster.level(1))
    l2 = len(cluster.level(2))
    elapsed = run.elapsed()
    rl = sorted(run.reads.latencies)

    lines = [
        (
            f"Summary: {elapsed:.1f} s, {len(cluster.nodes)} processes "
            f"(root, {l1} L1, {l2} L2), {args.flights} flights = {n_states} states, "
            f"push interval {args.push_interval * 1000:.0f} ms"
        ),
        (
            f"  mutations applied:    {mutations} ({canceled} canceled), "
            f"{mutations / elapsed if elapsed else 0:.1f}/s; "
            f"root clock version {root.version}"
        ),
    ]
    lines += [
        f"  propagation {levels[n].name}: {levels[n].describe()}"
        for n in sorted(levels)
    ]
    lines.append(
        f"  HTTP requests served: {reads_served} GET / "
        f"({leaf_reads} on the L{max_level(cluster)} nodes), {polls} GET /status"
    )
    lines.append(
        f"  HTTP readers:         {args.readers} readers, "
        f"{run.reads.ok + run.reads.inconsistent} reads, {run.reads.errors} errors, "
        f"{run.reads.inconsistent} inconsistent"
        + (
            f"; latency p50 {percentile(rl, 50) * 1000:.2f} ms"
            f", p99 {percentile(rl, 99) * 1000:.2f} ms"
            if rl
            else ""
        )
    )
    if run.converged_in is not None:
        lines.append(
            f"  converged:            every node at version {root.version} "
            f"{run.converged_in * 1000:.0f} ms after the source stopped"
        )
    row = "    {:<10} {:>5} {:>8} {:>10} {:>8} {:>6} {:>8} {:>8}"
    lines.append(
        row.format(
            "node",
            "level",
            "restarts",
            "went stale",
            "version",
            "GET /",
            "p50 ms",
            "p99 ms",
        )
    )
    for node in tree_order(cluster):
        lat, _missing = per_node.get(node.name, ([], 0))
        lines.append(
            row.format(
                node.name,
                node.spec.level,
                node.restarts,
                "yes" if node.went_stale else "no",
                node.version,
                node.counter("/"),
                f"{percentile(lat, 50) * 1000:.1f}" if lat else "-",
                f"{percentile(lat, 99) * 1000:.1f}" if lat else "-",
            )
        )
    for t, text in cluster.events:
        t0 = run.source_started or run.started
        lines.append(f"  event at {t - t0:5.1f} s: {text}")
    for node in cluster.nodes.values():
        if node.crashed and node.log_tail():
            lines.append(f"  log of {node.name}:")
            lines += [f"    {line}" for line in node.log_tail().splitlines()]

    checks = make_checks(run, mutations, levels, reads_served)
    data: dict[str, object] = {
        "elapsed": elapsed,
        "nodes": {
            n.name: {
                "level": n.spec.level,
                "pids": n.pids,
                "version": n.version,
                "reads": n.counter("/"),
                "restarts": n.restarts,
                "went_stale": n.went_stale,
                "crashed": n.crashed,
            }
            for n in cluster.nodes.values()
        },
        "mutations": mutations,
        "canceled": canceled,
        "root_version": root.version,
        "latency_ms": {
            lvl.name: {
                "p50": percentile(lvl.latencies, 50) * 1000,
                "p99": percentile(lvl.latencies, 99) * 1000,
                "max": (lvl.latencies[-1] * 1000) if lvl.latencies else math.nan,
                "samples": len(lvl.latencies),
                "missing": lvl.missing,
            }
            for lvl in levels.values()
        },
        "http_requests": reads_served,
        "http_leaf_requests": leaf_reads,
        "http_status_requests": polls,
        "reads": {
            "ok": run.reads.ok,
            "errors": run.reads.errors,
            "inconsistent": run.reads.inconsistent,
        },
        "converged_in": run.converged_in,
        "events": [text for _, text in cluster.events],
        "checks": {c.name: c.ok for c in checks},
        "interrupted": run.interrupted,
    }
    return lines, data, checks


def max_level(cluster: Cluster) -> int:
    return max(n.spec.level for n in cluster.nodes.values())


def make_checks(
    run: Run, mutations: int, levels: dict[int, Level], reads_served: int
) -> list[Check]:
    cluster = run.cluster
    assert cluster is not None
    crashed = [n.name for n in cluster.nodes.values() if n.crashed]
    checks = [
        Check("no node crashed", not crashed, ", ".join(crashed)),
        Check("mutations applied", mutations > 0, str(mutations)),
        Check(
            "propagation measured at every level",
            all(lvl.latencies for lvl in levels.values()),
        ),
        Check(
            "HTTP requests served",
            reads_served > 0 or not run.args.readers,
            str(reads_served),
        ),
        Check("no HTTP read failed", run.reads.errors == 0, str(run.reads.errors)),
        Check(
            "every snapshot read was a consistent board",
            run.reads.inconsistent == 0,
            "; ".join(run.reads.problems),
        ),
    ]
    if not run.interrupted:
        checks.append(
            Check(
                "every node converged to the root's clock",
                run.converged_in is not None,
                f"not within {CONVERGE_TIMEOUT} s",
            )
        )
    if run.fault_victim is not None:
        children = [
            n for n in cluster.nodes.values() if n.spec.parent == run.fault_victim
        ]
        checks.append(
            Check(
                f"{run.fault_victim}'s children went stale and recovered",
                run.fault_restarted
                and all(n.went_stale and n.up for n in children)
                and run.converged_in is not None,
            )
        )
        before, after = run.fault_root_mutations
        checks.append(
            Check(
                "the root kept running (and mutating) while the L1 was down",
                not cluster.root.crashed and after > before,
                f"mutations {before} -> {after}",
            )
        )
    if run.error is not None:
        checks.append(Check("the orchestrator ran without errors", False, run.error))
    return checks


# -- the scenario -------------------------------------------------------------------


async def scenario(run: Run) -> None:
    args = run.args
    specs = topology(args.l1, args.l2_per_l1)
    log_dir = Path(args.log_dir)
    run.cluster = cluster = Cluster(
        specs,
        log_dir=log_dir,
        flights=args.flights,
        push_interval=args.push_interval,
        interval=args.interval,
        seed=args.seed,
    )
    async with cluster:
        try:
            await run_scenario(run, cluster)
        except Exception as exc:  # noqa: BLE001 - reported in the summary, exit 1
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            # The summary comes before the nodes are stopped: on Ctrl-C a supervisor
            # (nox, for one) may not wait long for us; the nodes die with us anyway.
            report(run)


async def run_scenario(run: Run, cluster: Cluster) -> None:
    args = run.args
    stop_view = anyio.Event()
    leaves = [n for n in cluster.nodes.values() if n.spec.level == max_level(cluster)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(live_view, run, stop_view)
        async with anyio.create_task_group() as work:
            for i in range(args.readers):
                work.start_soon(reader, run, leaves, i, args.read_pause)
            await cluster.poll_all()
            await cluster.command("root", "start")
            run.source_started = time.time()
            if args.kill_l1 is not None:
                work.start_soon(
                    inject_fault, run, cluster, args.kill_l1, args.restart_after
                )
            if args.forever:
                await anyio.sleep_forever()
            await anyio.sleep(args.duration)
            await cluster.command("root", "stop")
            run.source_stopped = time.time()
            if args.kill_l1 is not None:
                # a fault injection still in progress finishes first (restart)
                with anyio.move_on_after(args.restart_after + 10):
                    await run.fault_done.wait()
            timeout = CONVERGE_TIMEOUT + 2 * max_level(cluster) * args.push_interval
            run.converged_in = await cluster.converge(timeout)
            work.cancel_scope.cancel()
        stop_view.set()


async def watch_signals(run: Run, scope: anyio.CancelScope) -> None:
    """Ctrl-C or SIGTERM: stop the scenario (the cluster then stops in order)."""
    if sys.platform == "win32":
        return
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
        async for _ in received:
            run.interrupted = True
            scope.cancel()
            return


async def amain(run: Run) -> None:
    run.started = time.time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_signals, run, tg.cancel_scope)
        try:
            await scenario(run)
        except Exception as exc:  # noqa: BLE001 - reported in the summary, exit 1
            run.error = f"{type(exc).__name__}: {exc}"
        tg.cancel_scope.cancel()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="The asyncmachine replicant tree demo (see docs/demo.md)."
    )
    add: Callable[..., object] = p.add_argument
    add("--duration", type=float, default=20.0, help="seconds of changes (20)")
    add("--forever", action="store_true", help="run until Ctrl-C")
    add("--flights", type=int, default=10, help="flights on the board (10)")
    add("--l1", type=int, default=2, help="replicants under the root (2)")
    add("--l2-per-l1", type=int, default=2, help="replicants under each L1 (2)")
    add("--push-interval", type=float, default=0.25, help="seconds, every node (0.25)")
    add("--interval", type=float, default=0.05, help="seconds between mutations")
    add("--readers", type=int, default=4, help="concurrent HTTP readers (4)")
    add("--read-pause", type=float, default=0.01, help="seconds between reads")
    add("--seed", type=int, default=1, help="seed of the scripted changes")
    add(
        "--kill-l1",
        type=float,
        default=None,
        metavar="SECONDS",
        help="fault: kill the first L1 with SIGKILL this long after the start",
    )
    add("--restart-after", type=float, default=2.0, help="fault: restart delay (2)")
    add("--plain", action="store_true", help="plain lines instead of the live table")
    add("--plain-every", type=float, default=2.0, help="seconds between plain lines")
    add("--json", type=Path, default=None, help="also write the summary as JSON")
    add("--log-dir", type=Path, default=None, help="keep node logs here")
    args = p.parse_args(argv)
    if args.l1 < 0 or args.l2_per_l1 < 0 or args.flights < 1 or args.readers < 0:
        p.error("--l1, --l2-per-l1 and --readers must be >= 0, --flights >= 1")
    if args.l1 == 0 and args.l2_per_l1:
        p.error("--l2-per-l1 needs --l1 >= 1")
    if args.duration <= 0 or args.push_interval < 0 or args.interval <= 0:
        p.error("--duration and --interval must be > 0, --push-interval >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    keep_logs = args.log_dir is not None
    if not keep_logs:
        args.log_dir = Path(tempfile.mkdtemp(prefix="asyncmachine-tree-"))
    run = Run(args)
    try:
        anyio.run(amain, run)
    except KeyboardInterrupt:  # Windows, or a Ctrl-C before the receiver is up
        run.interrupted = True
    if run.cluster is None:
        print(f"demo: {run.error or 'interrupted before the start'}", file=sys.stderr)
        return 130 if run.interrupted else 1
    code = report(run)
    if not keep_logs and code == 1:
        print(f"node logs kept in {args.log_dir}")
    elif not keep_logs:
        shutil.rmtree(args.log_dir, ignore_errors=True)
    return code


def report(run: Run) -> int:
    """Print the summary (once) and write the JSON file; the exit code."""
    if run.exit_code is not None:
        return run.exit_code
    if not run.source_stopped:
        run.source_stopped = time.time()
    lines, data, checks = summarize(run)
    failed = any(not c.ok for c in checks)
    code = 130 if run.interrupted else (1 if failed else 0)
    verdict = "INTERRUPTED" if run.interrupted else ("FAIL" if failed else "PASS")
    lines.append("  checks:")
    lines += [
        f"    [{'ok' if c.ok else 'FAILED'}] {c.name}"
        + (f": {c.detail}" if c.detail and not c.ok else "")
        for c in checks
    ]
    lines.append(f"  result: {verdict} (exit {code})")
    print("\n".join(lines), flush=True)
    data["exit_code"] = code
    if run.args.json is not None:
        run.args.json.write_text(json.dumps(data, indent=2, default=str))
    run.exit_code = code
    return code


if __name__ == "__main__":
    sys.exit(main())
