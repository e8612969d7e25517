"""
asyncmachine's benchmark scenarios: B1-B6, S1-S4p and machine creation.

The definitions are those of ``../shared/bench/README.md``. Each scenario is a
factory that builds its machine (setup, not timed) and returns a :class:`Bench`:

- ``op()`` is one timed operation; ``units`` says how many transitions it makes
  (B-scenarios report loop iterations, as Go does, so their ``units`` is 1).
- ``check(n)`` verifies the final state after exactly *n* calls of ``op`` (warm-up
  and calibration included) and raises :class:`CheckError` when it is wrong, so a
  broken fast path cannot pass. It is not timed.
- ``kind`` says how to call ``op``: ``"sync"`` from plain code, ``"loop"`` from
  plain code inside a running event loop, ``"async"`` awaited from a coroutine.

This module imports only asyncmachine and the standard library, so the smoke test
(``tests/test_benchmarks_smoke.py``) can run every scenario without the peers.
``peers.py`` reuses the sequences and names defined here.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from itertools import cycle
from typing import Literal

import asyncmachine as am

__all__ = (
    "ALL",
    "B_SCENARIOS",
    "CREATE",
    "S_SCENARIOS",
    "Bench",
    "CheckError",
    "Kind",
    "Scenario",
    "expect",
    "flat_names",
    "flat_sequence",
    "region_names",
    "region_sequence",
    "simulate_flat",
    "simulate_regions",
)

Kind = Literal["sync", "loop", "async"]

#: Length of the precomputed random sequences (B4, S4, S4p), as in the Go original.
SEQ_LEN = 4096
#: Seed of every random sequence (Go's B4 uses ``math/rand`` with seed 42).
SEED = 42
#: B4 / S4p: groups (regions) x states per group.
GROUPS, PER_GROUP = 5, 30
#: S4: states in the one flat, mutually exclusive group.
FLAT = 150


class CheckError(AssertionError):
    """A benchmark's final state is wrong: its op did not do the work."""


def expect(cond: bool, msg: str) -> None:
    """Raise :class:`CheckError` with *msg* unless *cond* (works under ``-O``)."""
    if not cond:
        raise CheckError(msg)


@dataclass
class Bench:
    """One prepared benchmark: a timed op and the untimed check of its final state."""

    op: Callable[[], object]
    check: Callable[[int], None]
    kind: Kind = "sync"
    #: Transitions per op; the runner reports ``ops/s * units``.
    units: int = 1
    #: For ``kind="async"``: entered around all calls (e.g. ``async with mach:``).
    runtime: Callable[[], AbstractAsyncContextManager[object]] | None = None


@dataclass(frozen=True)
class Scenario:
    """A named benchmark factory."""

    id: str
    title: str
    make: Callable[[], Bench]


# ---------------------------------------------------------------- shared helpers


def flat_names(n: int = FLAT) -> list[str]:
    """``S000`` .. ``S149``: the S4 states."""
    return [f"S{i:03d}" for i in range(n)]


def region_names() -> list[list[str]]:
    """``G{g}S{ii}`` per group: the B4 / S4p states, group by group."""
    return [[f"G{g}S{i:02d}" for i in range(PER_GROUP)] for g in range(GROUPS)]


def flat_sequence(n: int = FLAT) -> list[int]:
    """
    S4 jumps: indexes into :func:`flat_names`, never to the current state.

    The sequence is a cycle: its last element differs from its first, and the
    machine starts in the last one, so replaying it never jumps in place.
    """
    rnd = random.Random(SEED)
    seq: list[int] = []
    prev = -1
    for _ in range(SEQ_LEN):
        nxt = rnd.randrange(n - 1) if prev >= 0 else rnd.randrange(n)
        if prev >= 0 and nxt >= prev:
            nxt += 1  # uniform over the other n - 1 states
        seq.append(nxt)
        prev = nxt
    if seq[-1] == seq[0]:
        seq[-1] = (seq[0] + 1) % n
        if seq[-1] == seq[-2]:
            seq[-1] = (seq[0] + 2) % n
    return seq


def simulate_flat(seq: Sequence[int], n_ops: int) -> int:
    """The active S4 index after *n_ops* jumps from the start (``seq[-1]``)."""
    return seq[(n_ops - 1) % len(seq)] if n_ops else seq[-1]


def region_sequence() -> tuple[list[int], list[tuple[int, int]]]:
    """
    S4p jumps: ``(start, [(region, status), ...])``, never to a region's current status.

    The sequence ends with the jumps that restore *start*, so it can be replayed.
    """
    rnd = random.Random(SEED + 1)
    start = [rnd.randrange(PER_GROUP) for _ in range(GROUPS)]
    cur = list(start)
    seq: list[tuple[int, int]] = []
    for _ in range(SEQ_LEN):
        g = rnd.randrange(GROUPS)
        s = rnd.randrange(PER_GROUP - 1)
        if s >= cur[g]:
            s += 1
        seq.append((g, s))
        cur[g] = s
    for g in range(GROUPS):
        if cur[g] != start[g]:
            seq.append((g, start[g]))
            cur[g] = start[g]
    return start, seq


def simulate_regions(
    start: Sequence[int], seq: Sequence[tuple[int, int]], n_ops: int
) -> tuple[list[int], list[list[int]]]:
    """The statuses per region and the jump count per (region, status) after *n_ops*."""
    cur = list(start)
    entered = [[0] * PER_GROUP for _ in range(GROUPS)]
    laps, rest = divmod(n_ops, len(seq))
    for i, (g, s) in enumerate(seq):
        cur[g] = s
        entered[g][s] += laps + (1 if i < rest else 0)
    cur = list(start)
    for g, s in seq[:rest]:
        cur[g] = s
    return cur, entered


def _exclusive(groups: Sequence[Sequence[str]]) -> dict[str, am.State]:
    """Each state removes the other members of its group, in group order."""
    return {
        name: am.State(remove=[o for o in group if o != name])
        for group in groups
        for name in group
    }


def _active(mach: am.Machine) -> list[str]:
    return mach.active_states()


def _expect_clock(mach: am.Machine, want: dict[str, int], what: str) -> None:
    got = {s: mach.tick(s) for s in want}
    expect(got == want, f"{what}: ticks {got} != expected {want}")


# ------------------------------------------------------------------- B-scenarios


def b1_toggle() -> Bench:
    """B1: ``add("A")`` then ``remove("A")``, no handlers."""
    mach = am.Machine({"A": am.State(), "B": am.State()})
    add, remove = mach.add, mach.remove

    def op() -> None:
        add("A")
        remove("A")

    def check(n: int) -> None:
        expect(_active(mach) == [], f"B1: active {_active(mach)} at the end")
        _expect_clock(mach, {"A": 2 * n, "B": 0}, "B1")

    return Bench(op, check)


class _B2Handlers:
    """B2's handler object: exactly ``A_enter`` (returns True) and ``A_state``."""

    def __init__(self) -> None:
        self.entered = 0
        self.states = 0

    def A_enter(self, e: am.Event) -> bool:
        self.entered += 1
        return True

    def A_state(self, e: am.Event) -> None:
        self.states += 1


def b2_toggle_handlers() -> Bench:
    """B2: B1 with an ``A_enter`` negotiation and an ``A_state`` final handler."""
    h = _B2Handlers()
    mach = am.Machine({"A": am.State(), "B": am.State()}, handlers=h)
    add, remove = mach.add, mach.remove

    def op() -> None:
        add("A")
        remove("A")

    def check(n: int) -> None:
        expect(h.entered == n, f"B2: A_enter ran {h.entered} times, want {n}")
        expect(h.states == n, f"B2: A_state ran {h.states} times, want {n}")
        expect(_active(mach) == [], f"B2: active {_active(mach)} at the end")
        _expect_clock(mach, {"A": 2 * n}, "B2")

    return Bench(op, check)


def b3_relations() -> Bench:
    """B3: Dry, then Water (removes Dry, adds Wet), then remove Water (drops Wet)."""
    mach = am.Machine(
        {
            "Wet": am.State(require=["Water"]),
            "Dry": am.State(remove=["Water"]),
            "Water": am.State(add=["Wet"], remove=["Dry"]),
        }
    )
    add, remove = mach.add, mach.remove

    def op() -> None:
        add("Dry")
        add("Water")
        remove("Water")

    def check(n: int) -> None:
        expect(_active(mach) == [], f"B3: active {_active(mach)} at the end")
        # Each op activates and deactivates each of the three states once.
        _expect_clock(mach, {"Dry": 2 * n, "Water": 2 * n, "Wet": 2 * n}, "B3")

    return Bench(op, check)


def b4_wide() -> Bench:
    """B4: 150 states in 5 exclusive groups of 30; ``add`` a seeded random state."""
    groups = region_names()
    names = [s for g in groups for s in g]
    rnd = random.Random(SEED)
    seq = [rnd.choice(names) for _ in range(SEQ_LEN)]
    mach = am.Machine(_exclusive(groups))
    add = mach.add
    it = cycle(seq)

    def op() -> None:
        add(next(it))

    def check(n: int) -> None:
        # Replay the n adds on sets and counters: the exact final clock.
        group_of = {s: gi for gi, g in enumerate(groups) for s in g}
        cur: list[str | None] = [None] * GROUPS
        ticks = dict.fromkeys(names, 0)
        for i in range(n):
            s = seq[i % SEQ_LEN]
            g = group_of[s]
            prev = cur[g]
            if prev != s:
                if prev is not None:
                    ticks[prev] += 1
                ticks[s] += 1
                cur[g] = s
        active = _active(mach)
        expect(len(active) <= GROUPS, f"B4: {len(active)} states active")
        want = sorted(s for s in cur if s is not None)
        expect(sorted(active) == want, f"B4: active {active}, want {want}")
        _expect_clock(mach, ticks, "B4")

    return Bench(op, check)


def b5_auto_chain() -> Bench:
    """B5: ``add("S0")`` auto-activates S1..S9; ``remove("S0")`` drops them all."""
    schema = {"S0": am.State()}
    for i in range(1, 10):
        schema[f"S{i}"] = am.State(auto=True, require=[f"S{i - 1}"])
    mach = am.Machine(schema)
    add, remove = mach.add, mach.remove
    # Setup probe (not timed): S9 is active right after add("S0").
    add("S0")
    expect(mach.is_active("S9"), f"B5: add('S0') gave {_active(mach)}, not S9")
    remove("S0")

    def op() -> None:
        add("S0")
        remove("S0")

    def check(n: int) -> None:
        expect(_active(mach) == [], f"B5: active {_active(mach)} at the end")
        # S9's tick is 2 (the probe) + 2n only if every add activated the chain.
        _expect_clock(mach, {f"S{i}": 2 * n + 2 for i in range(10)}, "B5")

    return Bench(op, check)


def b6_wait() -> Bench:
    """
    B6: register ``when("A")``, ``add("A")``, take the result, ``remove("A")``.

    Go's ``When1`` registers when called and returns a channel. In Python the
    subscription happens when the ``when`` awaitable first runs, so the op steps it
    through the awaitable protocol: the first step registers the waiter and
    suspends on its event; ``add`` resolves it; the next step returns the result,
    without a trip through the event loop. Needs a running loop (``kind="loop"``).
    """
    mach = am.Machine({"A": am.State(), "B": am.State()})
    add, remove, when = mach.add, mach.remove, mach.when
    resolved = [0]

    def op() -> None:
        step = when("A").__await__()
        try:
            next(step)  # registers; A is inactive, so it suspends
        except StopIteration:
            raise CheckError("B6: when('A') returned before add('A')") from None
        add("A")
        try:
            step.send(None)
        except StopIteration as done:
            if done.value is True:
                resolved[0] += 1
        else:
            raise CheckError("B6: when('A') still pending after add('A')")
        remove("A")

    def check(n: int) -> None:
        expect(resolved[0] == n, f"B6: {resolved[0]} waiters resolved, want {n}")
        expect(_active(mach) == [], f"B6: active {_active(mach)} at the end")
        _expect_clock(mach, {"A": 2 * n}, "B6")

    return Bench(op, check, kind="loop")


# ------------------------------------------------------------------- S-scenarios


def s1_toggle() -> Bench:
    """S1 no-cb: ``set("B")`` then ``set("A")`` (two transitions per op)."""
    mach = am.Machine({"A": am.State(), "B": am.State()})
    mach.set("A")
    set_ = mach.set

    def op() -> None:
        set_("B")
        set_("A")

    def check(n: int) -> None:
        expect(_active(mach) == ["A"], f"S1: active {_active(mach)}")
        _expect_clock(mach, {"A": 2 * n + 1, "B": 2 * n}, "S1")

    return Bench(op, check, units=2)


class _EnterCounter:
    """A trivial ``X_enter`` for A and B (S1 cb)."""

    def __init__(self) -> None:
        self.n = 0

    def A_enter(self, e: am.Event) -> None:
        self.n += 1

    def B_enter(self, e: am.Event) -> None:
        self.n += 1


def s1_toggle_cb() -> Bench:
    """S1 cb: S1 with one trivial on-enter handler per transition."""
    h = _EnterCounter()
    mach = am.Machine({"A": am.State(), "B": am.State()}, handlers=h)
    mach.set("A")
    set_ = mach.set

    def op() -> None:
        set_("B")
        set_("A")

    def check(n: int) -> None:
        expect(h.n == 2 * n + 1, f"S1cb: {h.n} enters, want {2 * n + 1}")
        expect(_active(mach) == ["A"], f"S1cb: active {_active(mach)}")
        _expect_clock(mach, {"A": 2 * n + 1, "B": 2 * n}, "S1cb")

    return Bench(op, check, units=2)


RING = ("A", "B", "C", "D", "E")


class _RingCounter:
    """``X_enter`` and ``X_exit`` for every ring state, each counting (S2)."""

    def __init__(self) -> None:
        self.n = 0

    def _count(self, e: am.Event) -> None:
        self.n += 1


for _s in RING:
    setattr(_RingCounter, f"{_s}_enter", _RingCounter._count)
    setattr(_RingCounter, f"{_s}_exit", _RingCounter._count)


def s2_ring() -> Bench:
    """S2: ``set`` around the ring A->B->C->D->E->A; enter and exit handlers count."""
    h = _RingCounter()
    mach = am.Machine({s: am.State() for s in RING}, handlers=h)
    mach.set("A")
    set_ = mach.set
    order = (*RING[1:], RING[0])

    def op() -> None:
        for s in order:
            set_(s)

    def check(n: int) -> None:
        want = 1 + 2 * len(RING) * n  # the initial enter, then exit + enter each
        expect(h.n == want, f"S2: {h.n} handler calls, want {want}")
        expect(_active(mach) == ["A"], f"S2: active {_active(mach)}")
        ticks = dict.fromkeys(RING, 2 * n)
        ticks["A"] += 1
        _expect_clock(mach, ticks, "S2")

    return Bench(op, check, units=len(RING))


def s3_async() -> Bench:
    """S3 no-cb: S1 from a coroutine, awaiting ``when`` after each mutation."""
    mach = am.Machine({"A": am.State(), "B": am.State()})
    mach.set("A")
    set_, when = mach.set, mach.when
    ok = [0]

    async def op() -> None:
        set_("B")
        ok[0] += await when("B")
        set_("A")
        ok[0] += await when("A")

    def check(n: int) -> None:
        expect(ok[0] == 2 * n, f"S3: {ok[0]} waits succeeded, want {2 * n}")
        expect(_active(mach) == ["A"], f"S3: active {_active(mach)}")
        _expect_clock(mach, {"A": 2 * n + 1, "B": 2 * n}, "S3")

    return Bench(op, check, kind="async", units=2)


class _AsyncEnter:
    """
    S3 async cb: handlers are synchronous in asyncmachine, so the on-enter handler
    forks its ``async def`` as a task of the machine (``mach.fork``); the op awaits
    that coroutine's completion before the next mutation.
    """

    def __init__(self) -> None:
        self.n = 0
        self.done: asyncio.Future[None] | None = None

    async def _cb(self) -> None:
        self.n += 1
        if self.done is not None:
            self.done.set_result(None)

    def A_state(self, e: am.Event) -> None:
        e.machine.fork(e, self._cb)

    def B_state(self, e: am.Event) -> None:
        e.machine.fork(e, self._cb)


def s3_async_cb() -> Bench:
    """S3 async cb: S3 where each enter runs an awaited ``async def`` (via fork)."""
    h = _AsyncEnter()
    mach = am.Machine({"A": am.State(), "B": am.State()}, handlers=h)
    set_, when = mach.set, mach.when
    ok = [0]

    @asynccontextmanager
    async def runtime() -> AsyncIterator[object]:
        async with mach:
            if not mach.is_active("A"):
                await _transition(set_, "A")
            yield mach

    async def _transition(set_: Callable[[str], am.Result], state: str) -> None:
        h.done = asyncio.get_running_loop().create_future()
        set_(state)
        ok[0] += await when(state)
        await h.done

    async def op() -> None:
        await _transition(set_, "B")
        await _transition(set_, "A")

    def check(n: int) -> None:
        expect(h.n == 2 * n + 1, f"S3cb: {h.n} callbacks ran, want {2 * n + 1}")
        expect(ok[0] == 2 * n + 1, f"S3cb: {ok[0]} waits, want {2 * n + 1}")
        expect(_active(mach) == ["A"], f"S3cb: active {_active(mach)}")
        _expect_clock(mach, {"A": 2 * n + 1, "B": 2 * n}, "S3cb")

    return Bench(op, check, kind="async", units=2, runtime=runtime)


def s4_flat() -> Bench:
    """S4: one group of 150 mutually exclusive states; ``add`` a seeded random one."""
    names = flat_names()
    seq = flat_sequence()
    mach = am.Machine(_exclusive([names]))
    mach.add(names[seq[-1]])
    add = mach.add
    it = cycle([names[i] for i in seq])

    def op() -> None:
        add(next(it))

    def check(n: int) -> None:
        want = names[simulate_flat(seq, n)]
        expect(_active(mach) == [want], f"S4: active {_active(mach)}, want {want}")
        # Entries and exits alternate: a state's tick is twice its entries (the
        # start state entered once before timing) minus 1 if active now.
        entries = dict.fromkeys(names, 0)
        entries[names[seq[-1]]] += 1
        laps, rest = divmod(n, len(seq))
        for i, idx in enumerate(seq):
            entries[names[idx]] += laps + (i < rest)
        ticks = {s: 2 * e - (s == want) for s, e in entries.items()}
        _expect_clock(mach, ticks, "S4")

    return Bench(op, check)


def s4p_regions() -> Bench:
    """S4p: the B4 schema as 5 regions x 30 statuses; seeded (region, status) jumps."""
    groups = region_names()
    start, seq = region_sequence()
    mach = am.Machine(_exclusive(groups))
    mach.add([groups[g][s] for g, s in enumerate(start)])
    add = mach.add
    it = cycle([groups[g][s] for g, s in seq])

    def op() -> None:
        add(next(it))

    def check(n: int) -> None:
        cur, entered = simulate_regions(start, seq, n)
        want = sorted(groups[g][s] for g, s in enumerate(cur))
        got = sorted(_active(mach))
        expect(got == want, f"S4p: active {got}, want {want}")
        ticks: dict[str, int] = {}
        # Entries and exits alternate, so a status's tick is twice its entries
        # (the start status entered once before timing) minus 1 if active now.
        for g, group in enumerate(groups):
            for s, name in enumerate(group):
                entries = entered[g][s] + (s == start[g])
                ticks[name] = 2 * entries - (s == cur[g])
        _expect_clock(mach, ticks, "S4p")

    return Bench(op, check)


# ------------------------------------------------------------------ creation


def create_machine() -> Bench:
    """C1: create an idle machine of 10 states, no handlers (the op is the ctor)."""
    schema = {f"S{i}": am.State() for i in range(10)}
    last: list[am.Machine] = []
    count = [0]

    def op() -> None:
        m = am.Machine(schema)
        count[0] += 1
        if not last:
            last.append(m)
        else:
            last[0] = m

    def check(n: int) -> None:
        expect(count[0] == n, f"C1: {count[0]} machines created, want {n}")
        if n:
            names = last[0].state_names()
            expect(len(names) == 11, f"C1: states {names}")
            expect(last[0].active_states() == [], "C1: a new machine is not idle")

    return Bench(op, check)


B_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("B1", "toggle, no handlers (add A, remove A)", b1_toggle),
    Scenario("B2", "toggle with A_enter + A_state", b2_toggle_handlers),
    Scenario("B3", "Dry/Water/Wet relations cycle", b3_relations),
    Scenario("B4", "150 states, 5 exclusive groups, add random", b4_wide),
    Scenario("B5", "auto chain of 10, toggle S0", b5_auto_chain),
    Scenario("B6", "when(A) + add A + remove A", b6_wait),
)
S_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("S1", "S1 no-cb", s1_toggle),
    Scenario("S1cb", "S1 cb", s1_toggle_cb),
    Scenario("S2", "S2 enter+exit", s2_ring),
    Scenario("S3", "S3 async no-cb", s3_async),
    Scenario("S3cb", "S3 async cb", s3_async_cb),
    Scenario("S4", "S4 150 flat", s4_flat),
    Scenario("S4p", "S4p 5x30", s4p_regions),
)
CREATE = Scenario("C1", "create a machine (10 states, idle)", create_machine)
ALL: tuple[Scenario, ...] = (*B_SCENARIOS, *S_SCENARIOS, CREATE)


def run_ops(bench: Bench, n: int) -> None:
    """Call ``bench.op`` *n* times the way the runner does (no timing): for tests."""
    if bench.kind == "sync":
        for _ in range(n):
            bench.op()
        return

    async def main() -> None:
        if bench.kind == "loop":
            for _ in range(n):
                bench.op()
            return
        if bench.runtime is None:
            for _ in range(n):
                await _awaitable(bench.op())
            return
        async with bench.runtime():
            for _ in range(n):
                await _awaitable(bench.op())

    asyncio.run(main())


def _awaitable(x: object) -> Awaitable[object]:
    if not isinstance(x, Awaitable):
        raise TypeError(f"an async op returned {x!r}, not an awaitable")
    return x
