"""
The S-scenarios for the peer libraries and the raw Python floor.

Peers: ``transitions`` (``Machine``, ``AsyncMachine``, ``HierarchicalMachine``),
``python-statemachine`` and ``automat``, all installed by the ``bench`` extra. Each
is imported lazily: a missing library is skipped with a message, so ``benchmarks/``
stays importable without them. A peer that cannot express a scenario has no entry
for it, and the runner prints ``-`` (as the README's table does):

- automat has no async API and no jump-to-any-state, so only S1, S1 cb and S2. It
  has no enter/exit hooks either: S2's transition behaviour calls an exit and an
  enter callback.
- ``transitions`` needs ``AsyncMachine`` for S3 and ``HierarchicalMachine`` (parallel
  states) for S4p; the plain ``Machine`` cannot await or hold 5 active states.
- python-statemachine only runs its async engine when a callback is ``async def``:
  S3 no-cb calls its synchronous engine from the coroutine.

The ops mirror ``scenarios.py``: the same transitions per op (``units``), the same
seeded sequences (S4, S4p), and a check of the final state after *n* ops.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from inspect import isawaitable
from itertools import cycle
from typing import Any, Protocol

from .scenarios import (
    GROUPS,
    PER_GROUP,
    RING,
    Bench,
    expect,
    flat_names,
    flat_sequence,
    region_sequence,
    simulate_flat,
    simulate_regions,
)

__all__ = ("Peer", "load_peers")

Factory = Callable[[], Bench]


@dataclass(frozen=True)
class Peer:
    """One library flavour and the S-scenarios it can express."""

    #: Ratio column it belongs to: ``raw``, ``automat``, ``transitions``,
    #: ``python-statemachine``. The ratio uses the fastest flavour of a library.
    library: str
    label: str
    scenarios: dict[str, Factory] = field(default_factory=dict)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


class _Counter:
    """A mutable counter for callbacks (a closure cell costs about the same)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def inc(self, *args: object, **kwargs: object) -> None:
        self.n += 1

    async def ainc(self, *args: object, **kwargs: object) -> None:
        self.n += 1


# --------------------------------------------------------------- raw Python floor


def _raw() -> Peer:
    """``set.discard/add`` plus ``clock[state] += 1``: the floor of any library."""

    def s1(cb: bool) -> Bench:
        active = {"A"}
        clock = {"A": 1, "B": 0}
        c = _Counter()
        inc = c.inc if cb else None
        discard, add = active.discard, active.add

        if inc is None:

            def op() -> None:
                discard("A")
                add("B")
                clock["B"] += 1
                discard("B")
                add("A")
                clock["A"] += 1

        else:

            def op() -> None:
                discard("A")
                add("B")
                clock["B"] += 1
                inc()
                discard("B")
                add("A")
                clock["A"] += 1
                inc()

        def check(n: int) -> None:
            expect(active == {"A"} and clock == {"A": n + 1, "B": n}, "raw S1")
            expect(c.n == (2 * n if cb else 0), "raw S1: callbacks")

        return Bench(op, check, units=2)

    def s2() -> Bench:
        cur = ["A"]
        active = {"A"}
        clock = dict.fromkeys(RING, 0)
        c = _Counter()
        on_exit = on_enter = c.inc
        order = (*RING[1:], RING[0])

        def op() -> None:
            for s in order:
                old = cur[0]
                on_exit()
                active.discard(old)
                active.add(s)
                clock[s] += 1
                on_enter()
                cur[0] = s

        def check(n: int) -> None:
            expect(active == {"A"} and c.n == 10 * n, "raw S2")
            expect(all(v == n for v in clock.values()), "raw S2: clock")

        return Bench(op, check, units=len(RING))

    def s3(cb: bool) -> Bench:
        active = {"A"}
        clock = {"A": 1, "B": 0}
        c = _Counter()
        acb = c.ainc

        async def step(old: str, new: str) -> None:
            active.discard(old)
            active.add(new)
            clock[new] += 1

        async def step_cb(old: str, new: str) -> None:
            active.discard(old)
            active.add(new)
            clock[new] += 1
            await acb()

        fn = step_cb if cb else step

        async def op() -> None:
            await fn("A", "B")
            await fn("B", "A")

        def check(n: int) -> None:
            expect(active == {"A"} and clock == {"A": n + 1, "B": n}, "raw S3")
            expect(c.n == (2 * n if cb else 0), "raw S3: callbacks")

        return Bench(op, check, kind="async", units=2)

    def s4() -> Bench:
        names = flat_names()
        seq = flat_sequence()
        cur = [names[seq[-1]]]
        active = {cur[0]}
        clock = dict.fromkeys(names, 0)
        it = cycle([names[i] for i in seq])

        def op() -> None:
            new = next(it)
            active.discard(cur[0])
            active.add(new)
            clock[new] += 1
            cur[0] = new

        def check(n: int) -> None:
            want = names[simulate_flat(seq, n)]
            expect(active == {want}, f"raw S4: {active} != {want}")
            expect(sum(clock.values()) == n, "raw S4: clock")

        return Bench(op, check)

    def s4p() -> Bench:
        start, seq = region_sequence()
        names = [[f"G{g}S{i:02d}" for i in range(PER_GROUP)] for g in range(GROUPS)]
        cur = [names[g][s] for g, s in enumerate(start)]
        active = set(cur)
        clock: dict[str, int] = {}
        it = cycle([(g, names[g][s]) for g, s in seq])

        def op() -> None:
            g, new = next(it)
            active.discard(cur[g])
            active.add(new)
            clock[new] = clock.get(new, 0) + 1
            cur[g] = new

        def check(n: int) -> None:
            want_cur, _ = simulate_regions(start, seq, n)
            want = {names[g][s] for g, s in enumerate(want_cur)}
            expect(active == want, "raw S4p: active")
            expect(sum(clock.values()) == n, "raw S4p: clock")

        return Bench(op, check)

    return Peer(
        "raw",
        "raw Python floor (set + clock dict)",
        {
            "S1": lambda: s1(False),
            "S1cb": lambda: s1(True),
            "S2": s2,
            "S3": lambda: s3(False),
            "S3cb": lambda: s3(True),
            "S4": s4,
            "S4p": s4p,
        },
    )


# -------------------------------------------------------------------- automat


class _Toggle(Protocol):
    def go(self) -> None: ...

    def where(self) -> str: ...


class _AutomatCore:
    def __init__(self) -> None:
        self.n = 0


def _automat() -> Peer:
    from automat import TypeMachineBuilder

    def build(states: tuple[str, ...], cb: int) -> tuple[Any, _AutomatCore]:
        """A ring over *states* on ``go``; *cb* callbacks per transition (0-2)."""
        b: Any = TypeMachineBuilder(_Toggle, _AutomatCore)
        st = [b.state(s) for s in states]
        for i, src in enumerate(st):
            dst = st[(i + 1) % len(st)]
            if cb == 0:
                src.upon(_Toggle.go).to(dst).returns(None)
            else:
                src.upon(_Toggle.go).to(dst)(on_enter if cb == 1 else exit_enter)
            src.upon(_Toggle.where).loop().returns(states[i])
        core = _AutomatCore()
        return b.build()(core), core

    def on_enter(proto: _Toggle, core: _AutomatCore) -> None:
        core.n += 1

    def exit_enter(proto: _Toggle, core: _AutomatCore) -> None:
        """S2: automat has no enter/exit hooks; the behaviour calls both."""
        on_exit_cb(core)
        on_enter_cb(core)

    def on_exit_cb(core: _AutomatCore) -> None:
        core.n += 1

    def on_enter_cb(core: _AutomatCore) -> None:
        core.n += 1

    def s1(cb: int) -> Bench:
        m, core = build(("A", "B"), cb)
        go = m.go

        def op() -> None:
            go()
            go()

        def check(n: int) -> None:
            expect(m.where() == "A", "automat S1: final state")
            expect(core.n == 2 * n * cb, f"automat S1: {core.n} callbacks")

        return Bench(op, check, units=2)

    def s2() -> Bench:
        m, core = build(RING, 2)
        go = m.go

        def op() -> None:
            go()
            go()
            go()
            go()
            go()

        def check(n: int) -> None:
            expect(m.where() == "A", "automat S2: final state")
            expect(core.n == 10 * n, f"automat S2: {core.n} callbacks")

        return Bench(op, check, units=len(RING))

    return Peer(
        "automat",
        f"automat {_version('automat')}",
        {"S1": lambda: s1(0), "S1cb": lambda: s1(1), "S2": s2},
    )


# ---------------------------------------------------------------- transitions


class _Model:
    """A bare ``transitions`` model (the machine adds ``go`` and ``to_X``)."""

    state: Any
    go: Any


def _transitions_states(names: tuple[str, ...], c: _Counter, cb: str) -> list[Any]:
    if cb == "enter":
        return [{"name": s, "on_enter": c.inc} for s in names]
    if cb == "both":
        return [{"name": s, "on_enter": c.inc, "on_exit": c.inc} for s in names]
    return list(names)


def _ring(names: tuple[str, ...]) -> list[list[str]]:
    return [["go", s, names[(i + 1) % len(names)]] for i, s in enumerate(names)]


def _transitions() -> list[Peer]:
    from transitions import Machine
    from transitions.extensions import HierarchicalMachine
    from transitions.extensions.asyncio import AsyncMachine

    ver = _version("transitions")

    def s1(cls: Any, cb: bool) -> Bench:
        c = _Counter()
        model = _Model()
        cls(
            model=model,
            states=_transitions_states(("A", "B"), c, "enter" if cb else ""),
            transitions=_ring(("A", "B")),
            initial="A",
            auto_transitions=False,
        )
        c0 = c.n
        go = model.go

        def op() -> None:
            go()
            go()

        def check(n: int) -> None:
            expect(model.state == "A", f"transitions S1: state {model.state}")
            expect(c.n - c0 == (2 * n if cb else 0), "transitions S1: callbacks")

        return Bench(op, check, units=2)

    def s2() -> Bench:
        c = _Counter()
        model = _Model()
        Machine(
            model=model,
            states=_transitions_states(RING, c, "both"),
            transitions=_ring(RING),
            initial="A",
            auto_transitions=False,
        )
        c0 = c.n
        go = model.go

        def op() -> None:
            go()
            go()
            go()
            go()
            go()

        def check(n: int) -> None:
            expect(model.state == "A", f"transitions S2: state {model.state}")
            expect(c.n - c0 == 10 * n, f"transitions S2: {c.n - c0} callbacks")

        return Bench(op, check, units=len(RING))

    def s3(cb: bool) -> Bench:
        c = _Counter()
        model = _Model()
        states: list[Any] = (
            [{"name": s, "on_enter": c.ainc} for s in ("A", "B")] if cb else ["A", "B"]
        )
        AsyncMachine(
            model=model,
            states=states,
            transitions=_ring(("A", "B")),
            initial="A",
            auto_transitions=False,
        )
        c0 = c.n
        go = model.go

        async def op() -> None:
            await go()
            await go()

        def check(n: int) -> None:
            expect(model.state == "A", f"transitions S3: state {model.state}")
            expect(c.n - c0 == (2 * n if cb else 0), "transitions S3: callbacks")

        return Bench(op, check, kind="async", units=2)

    def s4() -> Bench:
        names = flat_names()
        seq = flat_sequence()
        model = _Model()
        Machine(model=model, states=names, initial=names[seq[-1]])
        it = cycle([getattr(model, f"to_{names[i]}") for i in seq])

        def op() -> None:
            next(it)()

        def check(n: int) -> None:
            want = names[simulate_flat(seq, n)]
            expect(model.state == want, f"transitions S4: {model.state} != {want}")

        return Bench(op, check)

    def s4p() -> Bench:
        start, seq = region_sequence()
        regions = [
            {
                "name": f"R{g}",
                "children": [f"S{i:02d}" for i in range(PER_GROUP)],
                "initial": f"S{start[g]:02d}",
            }
            for g in range(GROUPS)
        ]
        model = _Model()
        HierarchicalMachine(
            model=model, states=[{"name": "P", "parallel": regions}], initial="P"
        )
        it = cycle([getattr(model, f"to_P_R{g}_S{s:02d}") for g, s in seq])

        def op() -> None:
            next(it)()

        def check(n: int) -> None:
            cur, _ = simulate_regions(start, seq, n)
            want = [f"P_R{g}_S{s:02d}" for g, s in enumerate(cur)]
            expect(list(model.state) == want, f"transitions S4p: {model.state}")

        return Bench(op, check)

    return [
        Peer(
            "transitions",
            f"transitions {ver} Machine",
            {
                "S1": lambda: s1(Machine, False),
                "S1cb": lambda: s1(Machine, True),
                "S2": s2,
                "S4": s4,
            },
        ),
        Peer(
            "transitions",
            f"transitions {ver} AsyncMachine",
            {"S3": lambda: s3(False), "S3cb": lambda: s3(True)},
        ),
        Peer(
            "transitions",
            f"transitions {ver} HierarchicalMachine",
            {
                "S1": lambda: s1(HierarchicalMachine, False),
                "S1cb": lambda: s1(HierarchicalMachine, True),
                "S4p": s4p,
            },
        ),
    ]


# -------------------------------------------------------- python-statemachine


def _statemachine() -> Peer:
    from statemachine import State, StateChart, StateMachine
    from statemachine.factory import StateMachineMetaclass
    from statemachine.state import NestedStateFactory

    def make_class(
        base: type[Any], ns: dict[str, Any], name: str = "Bench"
    ) -> type[Any]:
        cls: type[Any] = StateMachineMetaclass(name, (base,), ns)
        return cls

    def ring_class(states: tuple[str, ...], c: _Counter, cb: str) -> type[Any]:
        sts = {s.lower(): State(initial=(i == 0)) for i, s in enumerate(states)}
        ns: dict[str, Any] = dict(sts)
        go = None
        for i, s in enumerate(states):
            t = sts[s.lower()].to(sts[states[(i + 1) % len(states)].lower()])
            go = t if go is None else go | t
        ns["go"] = go
        for s in states:
            if cb in ("enter", "both"):
                ns[f"on_enter_{s.lower()}"] = lambda self: c.inc()
            if cb == "both":
                ns[f"on_exit_{s.lower()}"] = lambda self: c.inc()
            if cb == "async":

                async def on_enter(self: object) -> None:
                    c.n += 1

                ns[f"on_enter_{s.lower()}"] = on_enter
        return make_class(StateMachine, ns)

    def config(sm: Any) -> list[str]:
        return sorted(s.id for s in sm.configuration if s.is_atomic)

    def s1(cb: bool) -> Bench:
        c = _Counter()
        sm = ring_class(("A", "B"), c, "enter" if cb else "")()
        c0 = c.n
        go = sm.go

        def op() -> None:
            go()
            go()

        def check(n: int) -> None:
            expect(config(sm) == ["a"], f"python-statemachine S1: {config(sm)}")
            expect(c.n - c0 == (2 * n if cb else 0), "python-statemachine S1: cbs")

        return Bench(op, check, units=2)

    def s2() -> Bench:
        c = _Counter()
        sm = ring_class(RING, c, "both")()
        c0 = c.n
        go = sm.go

        def op() -> None:
            go()
            go()
            go()
            go()
            go()

        def check(n: int) -> None:
            expect(config(sm) == ["a"], f"python-statemachine S2: {config(sm)}")
            expect(c.n - c0 == 10 * n, "python-statemachine S2: callbacks")

        return Bench(op, check, units=len(RING))

    def s3(cb: bool) -> Bench:
        c = _Counter()
        cls = ring_class(("A", "B"), c, "async" if cb else "")
        holder: list[Any] = []
        c0 = [0]

        @asynccontextmanager
        async def runtime() -> AsyncIterator[object]:
            if not holder:
                sm = cls()
                started = sm.activate_initial_state()  # awaitable on the async engine
                if isawaitable(started):
                    await started
                holder.append(sm)
                c0[0] = c.n
            yield holder[0]

        if cb:

            async def op() -> None:
                go = holder[0].go
                await go()
                await go()

        else:

            async def op() -> None:
                # No async callback: the library runs its sync engine, nothing
                # to await; the transitions still run inside the coroutine.
                go = holder[0].go
                go()
                go()

        def check(n: int) -> None:
            sm = holder[0]
            expect(config(sm) == ["a"], f"python-statemachine S3: {config(sm)}")
            expect(c.n - c0[0] == (2 * n if cb else 0), "python-statemachine S3")

        return Bench(op, check, kind="async", units=2, runtime=runtime)

    def s4() -> Bench:
        names = flat_names()
        seq = flat_sequence()
        sts = {s.lower(): State(initial=(s == names[seq[-1]])) for s in names}
        ns: dict[str, Any] = dict(sts)
        for s in names:
            others = [v for k, v in sts.items() if k != s.lower()]
            ns[f"to_{s.lower()}"] = sts[s.lower()].from_(*others)
        sm = make_class(StateMachine, ns, "Flat")()
        it = cycle([getattr(sm, f"to_{names[i].lower()}") for i in seq])

        def op() -> None:
            next(it)()

        def check(n: int) -> None:
            want = [names[simulate_flat(seq, n)].lower()]
            expect(config(sm) == want, f"python-statemachine S4: {config(sm)}")

        return Bench(op, check)

    def s4p() -> Bench:
        start, seq = region_sequence()
        regions: dict[str, Any] = {}
        ns: dict[str, Any] = {}
        for g in range(GROUPS):
            sts = {
                f"r{g}s{i:02d}": State(initial=(i == start[g]))
                for i in range(PER_GROUP)
            }
            region = NestedStateFactory(f"r{g}", (State.Compound,), dict(sts))
            regions[f"r{g}"] = region
            for i in range(PER_GROUP):
                tgt = getattr(region, f"r{g}s{i:02d}")
                others = [
                    getattr(region, f"r{g}s{j:02d}") for j in range(PER_GROUP) if j != i
                ]
                ns[f"to_r{g}s{i:02d}"] = tgt.from_(*others)
        ns["p"] = NestedStateFactory("p", (State.Parallel,), regions)
        sm = make_class(StateChart, ns, "Regions")()
        it = cycle([getattr(sm, f"to_r{g}s{s:02d}") for g, s in seq])

        def op() -> None:
            next(it)()

        def check(n: int) -> None:
            cur, _ = simulate_regions(start, seq, n)
            want = sorted(f"r{g}s{s:02d}" for g, s in enumerate(cur))
            expect(config(sm) == want, f"python-statemachine S4p: {config(sm)}")

        return Bench(op, check)

    return Peer(
        "python-statemachine",
        f"python-statemachine {_version('python-statemachine')}",
        {
            "S1": lambda: s1(False),
            "S1cb": lambda: s1(True),
            "S2": s2,
            "S3": lambda: s3(False),
            "S3cb": lambda: s3(True),
            "S4": s4,
            "S4p": s4p,
        },
    )


def load_peers() -> tuple[list[Peer], list[str]]:
    """The peers that import, and a message for each library that does not."""
    peers = [_raw()]
    skipped: list[str] = []
    loaders: list[tuple[str, Callable[[], Peer | list[Peer]]]] = [
        ("automat", _automat),
        ("transitions", _transitions),
        ("python-statemachine", _statemachine),
    ]
    for name, loader in loaders:
        try:
            got = loader()
        except ImportError as err:
            skipped.append(f"{name}: not installed ({err}); install the bench extra")
            continue
        peers.extend(got if isinstance(got, list) else [got])
    return peers, skipped
