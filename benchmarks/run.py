"""
Core benchmark runner: B1-B6, S1-S4p against the peers, creation cost and memory.

Usage::

    python benchmarks/run.py [--quick] [--out docs/benchmarks.md]
                             [--repeats R] [--seconds S] [--only B1,S2] [--no-peers]
                             [--no-extra]

Every benchmark builds its machine, then runs its op in a time-bounded loop
``--repeats`` times (after a calibration that doubles as warm-up) and reports the
median rate; S-scenarios count transitions per second, B-scenarios loop iterations
per second (as the Go original does). After timing, each benchmark checks its final
state; a failed check marks the row and makes the exit status 1. The peers run in
the same process and the same run, so the ratios compare like with like.

The table goes to stdout. Unless ``--quick`` or ``--only``, the Markdown page and a
PNG chart of the ratios are written (``--out``; the chart next to it, needs
matplotlib from the ``bench`` extra). ``--quick`` is a short smoke pass: figures are
too noisy to quote.

Other benchmark suites hook in here: a full run (not ``--quick``, ``--only`` or
``--no-extra``) runs ``benchmarks/bench_rpc.py`` and ``benchmarks/bench_tree.py``,
when they exist, as scripts in a subprocess and adds what they print (their table)
to the output and the docs page.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import cast

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(ROOT))

import asyncmachine as am
from benchmarks.peers import Peer, load_peers
from benchmarks.scenarios import (
    B_SCENARIOS,
    CREATE,
    S_SCENARIOS,
    Bench,
    Scenario,
)

#: The Go original's ops/s per B-scenario. Source: ``../shared/bench/README.md``,
#: section "Go original (asyncmachine-go pkg/machine, Go 1.27.3, median of 5 x 2 s,
#: quiet machine)", column ops/s.
GO_OPS: dict[str, float] = {
    "B1": 221_877,
    "B2": 88_222,
    "B3": 108_897,
    "B4": 29_427,
    "B5": 18_879,
    "B6": 145_794,
}
GO_SOURCE = (
    "asyncmachine-go pkg/machine, Go 1.27.3, median of 5 x 2 s on a quiet machine "
    "(recorded in `../shared/bench/README.md`, not measured in this run)"
)
#: Ratio columns of the S table, in order: library key and heading.
LIBRARIES: tuple[tuple[str, str], ...] = (
    ("transitions", "transitions"),
    ("python-statemachine", "python-statemachine"),
    ("automat", "automat"),
    ("raw", "raw floor"),
)
#: Targets of ``../shared/bench/README.md``: at least this many x transitions.
TRANSITIONS_TARGET = {"S1": 3.0, "S2": 3.0, "S4": 3.0}
#: Other suites, run as scripts (if they exist) after the core; their stdout is kept.
EXTRA_SUITES = ("bench_rpc", "bench_tree")
#: Seconds each of them may take.
EXTRA_TIMEOUT = 900.0

#: Idle machines for the memory figure.
MEMORY_MACHINES = 10_000

OURS = "asyncmachine"


@dataclass(frozen=True)
class Settings:
    repeats: int
    seconds: float
    #: Calibration: double the batch until one takes this long (it is the warm-up).
    calibrate: float
    #: Timed batches last about this long (timer reads stay negligible).
    batch: float


FULL = Settings(repeats=5, seconds=1.0, calibrate=0.1, batch=0.05)
QUICK = Settings(repeats=3, seconds=0.05, calibrate=0.01, batch=0.01)


@dataclass
class Measured:
    """The outcome of one benchmark."""

    rates: list[float] = field(default_factory=list)
    calls: int = 0
    error: str | None = None

    @property
    def rate(self) -> float | None:
        """Median units/s, ``None`` if the benchmark failed."""
        if self.error is not None or not self.rates:
            return None
        return statistics.median(self.rates)

    @property
    def spread(self) -> float:
        """(max - min) / median of the repeats, a noise indicator."""
        r = self.rate
        if not r or len(self.rates) < 2:
            return 0.0
        return (max(self.rates) - min(self.rates)) / r


# ------------------------------------------------------------------- timing


def _plan(s: Settings) -> Generator[int, float, list[float]]:
    """
    Yield batch sizes and receive each batch's seconds; return calls/s per repeat.

    Shared by the sync and the async drivers.
    """
    k = 1
    while True:
        dt = yield k
        if dt >= s.calibrate or k >= 1 << 26:
            break
        k *= 2 if dt <= 0 else max(2, min(16, int(s.calibrate / dt) + 1))
    per_call = max(dt / k, 1e-9)
    batch = max(1, int(s.batch / per_call))
    rates: list[float] = []
    for _ in range(s.repeats):
        calls, elapsed = 0, 0.0
        while elapsed < s.seconds:
            elapsed += yield batch
            calls += batch
        rates.append(calls / elapsed)
    return rates


def _drive_sync(
    run_batch: Callable[[int], float], s: Settings, out: Measured
) -> list[float]:
    plan = _plan(s)
    k = next(plan)
    try:
        while True:
            dt = run_batch(k)
            out.calls += k
            k = plan.send(dt)
    except StopIteration as done:
        rates: list[float] = done.value
        return rates


async def _drive_async(
    run_batch: Callable[[int], Awaitable[float]], s: Settings, out: Measured
) -> list[float]:
    plan = _plan(s)
    k = next(plan)
    try:
        while True:
            dt = await run_batch(k)
            out.calls += k
            k = plan.send(dt)
    except StopIteration as done:
        rates: list[float] = done.value
        return rates


def _sync_batch(op: Callable[[], object]) -> Callable[[int], float]:
    perf = time.perf_counter

    def run_batch(k: int) -> float:
        t0 = perf()
        for _ in repeat(None, k):
            op()
        return perf() - t0

    return run_batch


def _async_batch(op: Callable[[], object]) -> Callable[[int], Awaitable[float]]:
    perf = time.perf_counter
    aop = cast(Callable[[], Awaitable[object]], op)  # kind='async' ops

    async def run_batch(k: int) -> float:
        t0 = perf()
        for _ in repeat(None, k):
            await aop()
        return perf() - t0

    return run_batch


def measure(make: Callable[[], Bench], s: Settings) -> Measured:
    """Build, time and check one benchmark; never raises for a benchmark's fault."""
    out = Measured()
    try:
        bench = make()
        gc.collect()
        if bench.kind == "sync":
            rates = _drive_sync(_sync_batch(bench.op), s, out)
        else:
            rates = asyncio.run(_measure_in_loop(bench, s, out))
        bench.check(out.calls)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        out.error = f"{type(exc).__name__}: {exc}"
        return out
    out.rates = [r * bench.units for r in rates]
    return out


async def _measure_in_loop(bench: Bench, s: Settings, out: Measured) -> list[float]:
    if bench.kind == "loop":
        return _drive_sync(_sync_batch(bench.op), s, out)
    if bench.runtime is None:
        return await _drive_async(_async_batch(bench.op), s, out)
    async with bench.runtime():
        return await _drive_async(_async_batch(bench.op), s, out)


# ------------------------------------------------------------------- memory


@dataclass(frozen=True)
class Memory:
    one: int
    many_total: int
    many: int

    @property
    def per_machine(self) -> float:
        return self.many_total / self.many


def measure_memory(n: int = MEMORY_MACHINES) -> Memory:
    """tracemalloc bytes of one idle machine and of *n* (10 states, no handlers)."""
    schema = {f"S{i}": am.State() for i in range(10)}
    am.Machine(schema)  # warm module-level caches first
    gc.collect()
    tracemalloc.start()
    try:
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        one = am.Machine(schema)
        gc.collect()
        one_bytes = tracemalloc.get_traced_memory()[0] - base
        del one
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        machines = [am.Machine(schema) for _ in range(n)]
        gc.collect()
        total = tracemalloc.get_traced_memory()[0] - base - sys.getsizeof(machines)
        if len(machines) != n or any(m.active_states() for m in machines[:10]):
            raise RuntimeError("memory: the machines are not idle")
        del machines
    finally:
        tracemalloc.stop()
    return Memory(one_bytes, total, n)


# ------------------------------------------------------------------- environment


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    models = [
        line.split(":", 1)[1].strip()
        for line in text.splitlines()
        if line.lower().startswith("model name")
    ]
    name = models[0] if models else platform.machine()
    return f"{name} ({len(models) or os.cpu_count()} logical CPUs)"


def loadavg() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev}{' + uncommitted changes in src/' if dirty else ''}"


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# ------------------------------------------------------------------- formatting


def fmt_rate(r: float | None) -> str:
    return "-" if r is None else f"{r:,.0f}"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """A Markdown table; *align* has one ``l`` or ``r`` per column."""
    seps = ["---" if a == "l" else "--:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(seps) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Report:
    settings: Settings
    quick: bool
    ours: dict[str, Measured] = field(default_factory=dict)
    #: peer label -> scenario id -> result
    peers: dict[str, dict[str, Measured]] = field(default_factory=dict)
    peer_library: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    memory: Memory | None = None
    memory_error: str | None = None
    extras: list[tuple[str, str]] = field(default_factory=list)
    load_before: str = ""
    load_after: str = ""
    started: str = ""
    duration: float = 0.0

    def ours_rate(self, sid: str) -> float | None:
        m = self.ours.get(sid)
        return m.rate if m else None

    def best_peer(self, library: str, sid: str) -> tuple[float, str] | None:
        """The fastest flavour of *library* on *sid*: (rate, label)."""
        best: tuple[float, str] | None = None
        for label, results in self.peers.items():
            if self.peer_library[label] != library or sid not in results:
                continue
            r = results[sid].rate
            if r is not None and (best is None or r > best[0]):
                best = (r, label)
        return best

    def ratio(self, sid: str, library: str) -> float | None:
        ours, best = self.ours_rate(sid), self.best_peer(library, sid)
        return None if ours is None or best is None else ours / best[0]

    def failures(self) -> list[str]:
        out = [f"{OURS} {sid}: {m.error}" for sid, m in self.ours.items() if m.error]
        for label, results in self.peers.items():
            out += [
                f"{label} {sid}: {m.error}" for sid, m in results.items() if m.error
            ]
        return out

    # -- tables

    def core_table(self) -> str:
        rows = []
        for sc in B_SCENARIOS:
            m = self.ours.get(sc.id)
            if m is None:
                continue
            go = GO_OPS[sc.id]
            r = m.rate
            rows.append(
                [
                    sc.id,
                    sc.title,
                    fmt_rate(r) if m.error is None else "FAILED",
                    f"±{m.spread * 50:.0f}%" if r else "",
                    fmt_rate(go),
                    fmt_ratio(r / go if r else None),
                ]
            )
        return md_table(
            ["id", "scenario", "ops/s", "spread", "Go ops/s", "x Go"],
            rows,
            "llrrrr",
        )

    def s_table(self) -> str:
        rows = []
        for sc in S_SCENARIOS:
            m = self.ours.get(sc.id)
            if m is None:
                continue
            r = m.rate
            row = [
                sc.id,
                sc.title,
                fmt_rate(r) if m.error is None else "FAILED",
                f"±{m.spread * 50:.0f}%" if r else "",
            ]
            row += [fmt_ratio(self.ratio(sc.id, lib)) for lib, _ in LIBRARIES]
            rows.append(row)
        return md_table(
            ["id", "scenario", "transitions/s", "spread"]
            + [f"x {h}" for _, h in LIBRARIES],
            rows,
            "llrr" + "r" * len(LIBRARIES),
        )

    def peer_table(self) -> str:
        sids = [sc.id for sc in S_SCENARIOS if sc.id in self.ours or self.peers]
        titles = {sc.id: sc.title for sc in S_SCENARIOS}
        rows = [[OURS] + [self._cell(self.ours.get(s)) for s in sids]]
        for label, results in self.peers.items():
            rows.append([label] + [self._cell(results.get(s)) for s in sids])
        return md_table(
            ["library"] + [titles[s] for s in sids], rows, "l" + "r" * len(sids)
        )

    @staticmethod
    def _cell(m: Measured | None) -> str:
        if m is None:
            return "-"
        return "FAILED" if m.error else fmt_rate(m.rate)

    def creation_table(self) -> str:
        rows: list[list[str]] = []
        c = self.ours.get(CREATE.id)
        if c is not None:
            r = c.rate
            rows.append(
                [
                    CREATE.title,
                    f"{fmt_rate(r)} machines/s"
                    + (f" ({1e6 / r:,.1f} µs each)" if r else " FAILED"),
                ]
            )
        mem = self.memory
        if mem is not None:
            rows.append(["bytes per idle machine (one machine)", f"{mem.one:,}"])
            rows.append(
                [
                    f"{mem.many:,} idle machines",
                    (
                        f"{mem.many_total:,} bytes ({mem.many_total / 2**20:,.1f} MiB), "
                        f"{mem.per_machine:,.0f} bytes per machine"
                    ),
                ]
            )
        elif self.memory_error:
            rows.append(["memory", f"FAILED: {self.memory_error}"])
        return md_table(["10 states, no handlers", "figure"], rows, "lr")

    def targets(self) -> list[str]:
        """The README's targets, met or not, for the rows that ran."""
        lines = []
        missed_go = [
            f"{sid} {r / GO_OPS[sid]:.2f}x"
            for sid in GO_OPS
            if (r := self.ours_rate(sid)) is not None and r < GO_OPS[sid]
        ]
        ran_go = [s for s in GO_OPS if self.ours_rate(s) is not None]
        if ran_go:
            lines.append(
                "B1-B6 at least the Go figure: "
                + ("met" if not missed_go else "not met (" + ", ".join(missed_go) + ")")
            )
        behind = []
        for sc in S_SCENARIOS:
            for lib, _ in LIBRARIES:
                r = self.ratio(sc.id, lib)
                if lib != "raw" and r is not None and r < 1:
                    behind.append(f"{sc.id} vs {lib} {r:.2f}x")
        if self.peers:
            lines.append(
                "S1-S4p ahead of every peer: "
                + ("met" if not behind else "not met (" + ", ".join(behind) + ")")
            )
        short = [
            f"{sid} {r:.2f}x"
            for sid, want in TRANSITIONS_TARGET.items()
            if (r := self.ratio(sid, "transitions")) is not None and r < want
        ]
        if any(self.ratio(s, "transitions") for s in TRANSITIONS_TARGET):
            lines.append(
                "at least 3x transitions on S1, S2, S4: "
                + ("met" if not short else "not met (" + ", ".join(short) + ")")
            )
        return lines

    def environment(self) -> list[str]:
        s = self.settings
        peers = ", ".join(
            f"{d} {version(d)}"
            for d in ("transitions", "python-statemachine", "automat")
        )
        lines = [
            f"- Date: {self.started} (took {self.duration:.0f} s)",
            f"- CPU: {cpu_model()}",
            (
                f"- Python: {platform.python_implementation()} {platform.python_version()}"
                f" on {platform.system()} {platform.release()}"
            ),
            f"- asyncmachine {am.__version__} at {git_rev()}; peers: {peers}",
            (
                f"- Load average (1/5/15 min): before {self.load_before}, "
                f"after {self.load_after}"
            ),
            (
                f"- Method: median of {s.repeats} repeats of a {s.seconds:g} s loop per "
                "benchmark, after a calibration that doubles as warm-up; GC enabled; "
                "one process, one run"
            ),
        ]
        lines += [
            f"- WARNING: {var}={os.environ[var]} was set"
            for var in ("AM_LOG", "AM_DEBUG")
            if os.environ.get(var)
        ]
        if self.quick:
            lines.append("- `--quick`: a smoke pass; these figures are not meaningful")
        return lines

    def text(self) -> str:
        parts = [
            "Environment:",
            *self.environment(),
            "",
            "Core, B1-B6 (loop iterations/s; Go: " + GO_SOURCE + "):",
            "",
            self.core_table(),
            "",
            (
                "S-scenarios (transitions/s), asyncmachine / the fastest flavour of each "
                "peer, same run:"
            ),
            "",
            self.s_table(),
            "",
            "Peer medians (transitions/s, same run):",
            "",
            self.peer_table(),
            "",
            "Creation and memory:",
            "",
            self.creation_table(),
            "",
            "Targets (../shared/bench/README.md):",
            *[f"- {t}" for t in self.targets()],
        ]
        parts += [f"- skipped {s}" for s in self.skipped]
        for name, text in self.extras:
            parts += ["", f"{name}:", "", text]
        failures = self.failures()
        if failures:
            parts += ["", "FAILED:", *[f"- {f}" for f in failures]]
        return "\n".join(parts)


# ------------------------------------------------------------------- docs page


def write_docs(report: Report, out: Path) -> Path | None:
    """Write the Markdown page and, if matplotlib is installed, the chart."""
    chart = out.with_suffix(".png")
    chart_ok = write_chart(report, chart)
    lines = [
        "# Benchmarks",
        "",
        (
            "Generated by `python benchmarks/run.py` (`nox -s bench`); do not edit by "
            "hand. The scenarios are defined in the shared benchmark README "
            "(`../shared/bench/README.md`) and implemented in `benchmarks/scenarios.py` "
            "(asyncmachine) and `benchmarks/peers.py` (peers and the raw Python floor)."
        ),
        "",
        (
            "**Figures compare only within one run.** They come from one process on one "
            "machine, noisy like any shared VM; compare ratios measured together, never "
            "absolute figures from different runs or machines. The Go figures are "
            "recorded, not measured here."
        ),
        "",
        "## Machine and run",
        "",
        *report.environment(),
        "",
        "## Ratios",
        "",
    ]
    if chart_ok:
        lines += [f"![asyncmachine ratios to Go and to the peers]({chart.name})", ""]
    else:
        lines += [
            "(no chart: matplotlib is not installed; it is in the bench extra)",
            "",
        ]
    lines += [
        "## Core: B1-B6, the Go original's workload",
        "",
        (
            "One op is one loop iteration of the scenario (B1: `add('A')` and "
            "`remove('A')`), as in Go. Spread is half the range of the repeats over "
            f"their median. Go: {GO_SOURCE}."
        ),
        "",
        report.core_table(),
        "",
        (
            "B6 steps the `when('A')` awaitable by hand (first step registers the waiter, "
            "`add('A')` resolves it, the second step returns `True`), like Go's "
            "`When1` channel, without an event-loop round trip."
        ),
        "",
        "## S-scenarios: asyncmachine and its peers, same run",
        "",
        (
            "One unit is one transition. `x lib` is asyncmachine's rate over the fastest "
            "flavour of that library able to express the scenario; `-` means none can. "
            "The raw floor is `set.discard/add` plus a clock counter, the cost of no "
            "library at all."
        ),
        "",
        report.s_table(),
        "",
        "### Peer medians (transitions/s)",
        "",
        report.peer_table(),
        "",
        "How each library expresses the scenarios:",
        "",
        (
            "- asyncmachine: S1 and S3 toggle with `set`, S2 `set`s around a ring with "
            "`X_enter`/`X_exit` handlers, S3 awaits `when` after each mutation, S4 is one "
            "group of 150 states that remove each other (`add`), S4p the B4 schema. "
            "Handlers are synchronous, so S3 async cb forks its `async def` from "
            "`X_state` with `mach.fork` and awaits its completion."
        ),
        (
            "- transitions: `Machine` (S1, S2, S4 via `to_X`), `AsyncMachine` (S3), "
            "`HierarchicalMachine` with parallel regions (S4p)."
        ),
        (
            "- python-statemachine: `StateMachine` (S1-S4), `StateChart` with a parallel "
            "state (S4p); without an `async def` callback it runs its sync engine, so "
            "S3 no-cb calls it synchronously from the coroutine."
        ),
        (
            "- automat: `TypeMachineBuilder`; no async API and no jumps to any state "
            "(S3, S4, S4p: `-`); S2's transition behaviour calls an exit and an enter "
            "callback, as it has no enter/exit hooks."
        ),
        "",
        "## Creation and memory",
        "",
        (
            "tracemalloc bytes allocated by `am.Machine(schema)` for a 10-state schema "
            "(plus the built-in `Exception`), no handlers, the schema dict shared."
        ),
        "",
        report.creation_table(),
        "",
        "## Targets",
        "",
        *[f"- {t}" for t in report.targets()],
    ]
    for name, text in report.extras:
        lines += ["", f"## {name}", "", "```text", text, "```"]
    failures = report.failures()
    if failures:
        lines += ["", "## Failed checks", "", *[f"- {f}" for f in failures]]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return chart if chart_ok else None


def write_chart(report: Report, path: Path) -> bool:
    """A PNG bar chart of the ratios (log scale); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    b_ids: list[str] = []
    b_vals: list[float] = []
    for sc in B_SCENARIOS:
        r = report.ours_rate(sc.id)
        if r is not None:
            b_ids.append(sc.id)
            b_vals.append(r / GO_OPS[sc.id])
    s_ids = [s.id for s in S_SCENARIOS if report.ours_rate(s.id) is not None]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [2, 3]}
    )
    left.bar(b_ids, b_vals, color="#4c72b0")
    left.set_title("asyncmachine / Go original (B1-B6)")
    for i, v in enumerate(b_vals):
        left.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom", fontsize=8)
    libs = [(lib, head) for lib, head in LIBRARIES]
    width = 0.8 / len(libs)
    colors = ["#dd8452", "#55a868", "#8172b3", "#937860"]
    for j, (lib, head) in enumerate(libs):
        xs, ys = [], []
        for i, sid in enumerate(s_ids):
            r = report.ratio(sid, lib)
            if r is not None:
                xs.append(i + (j - (len(libs) - 1) / 2) * width)
                ys.append(r)
        right.bar(xs, ys, width=width, label=head, color=colors[j % len(colors)])
    right.set_xticks(range(len(s_ids)), s_ids)
    right.set_title("asyncmachine / peer (S-scenarios, same run)")
    for ax in (left, right):
        ax.set_yscale("log")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_ylabel("ratio (log scale; >1: asyncmachine faster)")
        ax.grid(axis="y", which="both", alpha=0.3)
    right.axhline(
        3.0,
        color="#dd8452",
        linewidth=0.8,
        linestyle="--",
        label="3x transitions (target for S1, S2, S4)",
    )
    right.legend(fontsize=8)
    fig.suptitle(
        f"asyncmachine {am.__version__}, {platform.python_implementation()} "
        f"{platform.python_version()}, {report.started}: ratios within one run",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ------------------------------------------------------------------- main


def run_extras(timeout: float = EXTRA_TIMEOUT) -> list[tuple[str, str]]:
    """
    Run each other suite as ``python benchmarks/<name>.py``; keep its stdout.

    A subprocess keeps their servers, workers and event loops out of this one, and
    asks nothing of them but to print their table when run as a script.
    """
    out: list[tuple[str, str]] = []
    for name in EXTRA_SUITES:
        script = HERE / f"{name}.py"
        if not script.is_file():
            out.append((name, f"benchmarks/{name}.py not present: nothing to run"))
            continue
        print(f"[run] python {script.relative_to(ROOT)} ...", file=sys.stderr)
        try:
            done = subprocess.run(
                [sys.executable, str(script)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            out.append((name, f"FAILED: no result within {timeout:g} s"))
            continue
        text = done.stdout.strip()
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            text = f"FAILED: exit status {done.returncode}\n{text}\n{tail}".strip()
        out.append((name, text))
    return out


def _progress(who: str, sid: str, m: Measured, unit: str) -> None:
    what = f"FAILED {m.error}" if m.error else f"{fmt_rate(m.rate)} {unit}"
    print(f"[run] {who:<44} {sid:<5} {what}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> Report:
    s = QUICK if args.quick else FULL
    if args.repeats or args.seconds:
        s = Settings(
            args.repeats or s.repeats, args.seconds or s.seconds, s.calibrate, s.batch
        )
    only = {x.strip() for x in args.only.split(",")} if args.only else None
    report = Report(s, args.quick)
    report.started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    report.load_before = loadavg()
    t0 = time.perf_counter()

    def wanted(sc: Scenario) -> bool:
        return only is None or sc.id in only

    for sc in B_SCENARIOS:
        if wanted(sc):
            m = report.ours[sc.id] = measure(sc.make, s)
            _progress(OURS, sc.id, m, "ops/s")
    peers: list[Peer] = []
    if not args.no_peers:
        peers, report.skipped = load_peers()
    for peer in peers:
        report.peer_library[peer.label] = peer.library
        report.peers[peer.label] = {}
    # Each S-scenario runs asyncmachine, then every peer, back to back: a ratio's
    # two figures are measured minutes apart at most, whatever the load does.
    for sc in S_SCENARIOS:
        if not wanted(sc):
            continue
        m = report.ours[sc.id] = measure(sc.make, s)
        _progress(OURS, sc.id, m, "transitions/s")
        for peer in peers:
            if sc.id in peer.scenarios:
                m = report.peers[peer.label][sc.id] = measure(peer.scenarios[sc.id], s)
                _progress(peer.label, sc.id, m, "transitions/s")
    if wanted(CREATE):
        m = report.ours[CREATE.id] = measure(CREATE.make, s)
        _progress(OURS, CREATE.id, m, "machines/s")
    if only is None or "memory" in only:
        try:
            report.memory = measure_memory()
        except Exception as exc:  # noqa: BLE001 - reported in the table
            report.memory_error = f"{type(exc).__name__}: {exc}"
    if not args.quick and not args.no_extra and only is None:
        report.extras = run_extras()
    report.duration = time.perf_counter() - t0
    report.load_after = loadavg()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run asyncmachine's core benchmarks and the peers."
    )
    parser.add_argument("--quick", action="store_true", help="short smoke pass")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "benchmarks.md", help="docs page"
    )
    parser.add_argument("--repeats", type=int, default=0, help="timed repeats")
    parser.add_argument("--seconds", type=float, default=0.0, help="seconds a repeat")
    parser.add_argument(
        "--only", default="", help="comma-separated ids (B1,S2,C1,memory); no docs"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip the peers")
    parser.add_argument(
        "--no-extra", action="store_true", help="skip bench_rpc.py / bench_tree.py"
    )
    args = parser.parse_args(argv)
    report = run(args)
    print(report.text())
    if not args.quick and not args.only:
        chart = write_docs(report, args.out)
        print(f"\nwrote {args.out}" + (f" and {chart}" if chart else " (no chart)"))
    return 1 if report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
