"""Tracers, handler timeouts, on_change and synchronous dispose."""

from __future__ import annotations

import time

import pytest

import asyncmachine as am


class HookLog(am.TracerNoOp):
    """Records the hooks that fire, with the transition's called states."""

    def __init__(self) -> None:
        self.hooks: list[str] = []

    def machine_init(self, mach: am.Machine) -> object:
        self.hooks.append(f"machine_init {mach.id}")
        return None

    def mutation_queued(self, mach: am.Machine, mutation: am.Mutation) -> None:
        self.hooks.append(f"mutation_queued {' '.join(mutation.called)}")

    def transition_init(self, tx: am.Transition) -> None:
        self.hooks.append(f"transition_init {' '.join(tx.called)}")

    def transition_start(self, tx: am.Transition) -> None:
        self.hooks.append(f"transition_start {' '.join(tx.called)}")

    def handler_start(self, tx: am.Transition, binding_id: int, name: str) -> None:
        self.hooks.append(f"handler_start {name}")

    def handler_end(self, tx: am.Transition, binding_id: int, name: str) -> None:
        self.hooks.append(f"handler_end {name}")

    def transition_finals(self, tx: am.Transition) -> None:
        self.hooks.append(f"transition_finals {' '.join(tx.called)}")

    def transition_end(self, tx: am.Transition) -> None:
        self.hooks.append(f"transition_end {' '.join(tx.called)} {tx.accepted}")

    def queue_end(self, mach: am.Machine) -> None:
        self.hooks.append("queue_end")

    def schema_change(self, mach: am.Machine, old_schema: dict[str, object]) -> None:
        self.hooks.append(f"schema_change {len(old_schema)}")

    def machine_dispose(self, machine_id: str) -> None:
        self.hooks.append(f"machine_dispose {machine_id}")


class EnterState:
    def A_enter(self, e: am.Event) -> None:
        pass

    def A_state(self, e: am.Event) -> None:
        pass


def test_tracer_hook_order() -> None:
    """Hooks fire in the order of spec 10.3 around one accepted transition."""
    t = HookLog()
    mach = am.Machine({"A": {}}, id="m1", tracers=[t], handlers=EnterState())
    assert t.hooks == ["machine_init m1"]
    t.hooks.clear()
    mach.add("A")
    assert t.hooks == [
        "mutation_queued A",
        "transition_init A",
        "transition_start A",
        "handler_start A_enter",
        "handler_end A_enter",
        "transition_finals A",
        "handler_start A_state",
        "handler_end A_state",
        "transition_end A True",
        "queue_end",
    ]


def test_tracer_added_later_skips_machine_init() -> None:
    """machine_init only fires for tracers given to the constructor."""
    t = HookLog()
    mach = am.Machine({"A": {}})
    mach.add_tracer(t)
    mach.add("A")
    assert not any(h.startswith("machine_init") for h in t.hooks)
    assert "transition_end A True" in t.hooks
    mach.detach_tracer(t)
    t.hooks.clear()
    mach.remove("A")
    assert t.hooks == []


def test_canceled_transition_skips_finals_hook() -> None:
    """A canceled transition ends without transition_finals."""
    t = HookLog()
    mach = am.Machine({"A": am.State(require=["B"]), "B": {}}, tracers=[t])
    t.hooks.clear()
    assert mach.add("A") == am.Result.CANCELED
    assert "transition_end A False" in t.hooks
    assert not any(h.startswith("transition_finals") for h in t.hooks)


def test_raising_tracer_hook_is_disabled() -> None:
    """A hook that raises is disabled and recorded; the machine keeps working."""

    class Bad(am.TracerNoOp):
        calls = 0

        def transition_end(self, tx: am.Transition) -> None:
            Bad.calls += 1
            raise RuntimeError("tracer bug")

    mach = am.Machine({"A": {}}, tracers=[Bad()])
    assert mach.add("A") == am.Result.EXECUTED
    assert mach.remove("A") == am.Result.EXECUTED
    assert Bad.calls == 1
    assert isinstance(mach.err_internal[-1], RuntimeError)
    assert mach.not_active("A")


def test_duck_typed_tracer() -> None:
    """Any object with some hook methods works as a tracer."""

    class Ends:
        def __init__(self) -> None:
            self.ends: list[str] = []

        def transition_end(self, tx: am.Transition) -> None:
            self.ends.append(str(tx.type))

    t = Ends()
    mach = am.Machine({"A": {}}, tracers=[t])
    mach.add("A")
    mach.remove("A")
    assert t.ends == ["add", "remove"]


def test_submachine_and_schema_change_hooks() -> None:
    """new_submachine fires on the parent's tracers; schema_change on set_schema."""
    seen: list[str] = []

    class Sub(am.TracerNoOp):
        def new_submachine(self, parent: am.Machine, mach: am.Machine) -> None:
            seen.append(f"{parent.id}>{mach.id}")

    parent = am.Machine({"A": {}}, id="p", tracers=[Sub()])
    child = am.Machine({"B": {}}, id="c", parent=parent)
    assert seen == ["p>c"]
    assert child.parent_id == "p"
    t = HookLog()
    child.add_tracer(t)
    child.set_schema({"B": {}, "C": {}})
    assert t.hooks == ["schema_change 2"]


class Slow:
    def __init__(self, where: str) -> None:
        self.where = where

    def A_enter(self, e: am.Event) -> None:
        if self.where == "enter":
            time.sleep(0.05)

    def A_state(self, e: am.Event) -> None:
        if self.where == "state":
            time.sleep(0.05)


def test_handler_timeout_in_negotiation_rejects() -> None:
    """An overrun negotiation handler counts as a rejection (13.3), no Exception."""
    mach = am.Machine({"A": {}}, handlers=Slow("enter"), handler_timeout=0.01)
    assert mach.add("A") == am.Result.CANCELED
    assert mach.active_states() == []
    assert isinstance(mach.err_internal[-1], am.HandlerTimeoutError)
    assert not mach.is_err()


def test_handler_timeout_in_final_phase_rolls_back() -> None:
    """An overrun X_state rolls X back like a failure, without Exception (E8)."""
    mach = am.Machine({"A": {}}, handlers=Slow("state"), handler_timeout=0.01)
    assert mach.add("A") == am.Result.CANCELED
    assert mach.active_states() == []
    assert mach.tick("A") == 2
    assert isinstance(mach.err_internal[-1], am.HandlerTimeoutError)
    assert not mach.is_err()


def test_no_timeout_by_default() -> None:
    """Without handler_timeout a slow handler is simply waited for."""
    mach = am.Machine({"A": {}}, handlers=Slow("state"))
    assert mach.handler_timeout is None
    assert mach.add("A") == am.Result.EXECUTED


def test_on_change_runs_for_every_transition() -> None:
    """on_change gets time before/after, canceled transitions included (H12)."""
    changes: list[tuple[list[int], list[int]]] = []
    mach = am.Machine({"A": {}, "B": am.State(require=["C"]), "C": {}})
    mach.on_change = lambda m, before, after: changes.append((before, after))
    mach.add("A")
    mach.add("B")  # canceled
    assert changes == [([0, 0, 0, 0], [1, 0, 0, 0]), ([1, 0, 0, 0], [1, 0, 0, 0])]


def test_dispose_makes_everything_a_no_op() -> None:
    """After dispose mutations cancel and readers return empty values (10.2)."""
    t = HookLog()
    disposed: list[str] = []
    mach = am.Machine({"A": {}, "Start": {}}, id="d1", tracers=[t])
    mach.on_dispose(disposed.append)
    mach.add(["A", "Start"])
    mach.dispose()
    assert mach.is_disposed
    assert disposed == ["d1"]
    assert "machine_dispose d1" in t.hooks
    assert mach.add("A") == am.Result.CANCELED
    assert mach.remove("A") == am.Result.CANCELED
    assert mach.add_err(ValueError("x")) == am.Result.CANCELED
    assert mach.is_active("A") is False
    assert mach.not_active("A") is False
    assert str(mach) == ""
    assert mach.string_all() == ""
    assert mach.inspect() == ""
    assert mach.clock() == {}
    assert mach.time() == []
    assert mach.tick("A") == 0
    assert mach.has("A") is False
    assert mach.index("A") == -1
    mach.dispose()  # idempotent
    assert disposed == ["d1"]


def test_dispose_from_handler_is_deferred() -> None:
    """dispose() inside a handler runs once the queue has drained."""

    class H:
        def A_state(self, e: am.Event) -> None:
            e.machine.add("B")
            e.machine.dispose()
            assert not e.machine.is_disposed

    ticks: list[int] = []

    class Watch:
        def B_state(self, e: am.Event) -> None:
            ticks.append(e.machine.tick("B"))

    mach = am.Machine({"A": {}, "B": {}}, handlers=[H(), Watch()])
    mach.add("A")
    assert ticks == [1]  # the queued add ran before the deferred dispose
    assert mach.is_disposed


def test_mutation_source_from_event() -> None:
    """event= records the source machine, transition and time sum (Go Ev*)."""
    sources: list[object] = []

    class H:
        def A_state(self, e: am.Event) -> None:
            other.add("X", event=e)

    class Rec:
        def X_state(self, e: am.Event) -> None:
            sources.append(e.mutation.source)

    other = am.Machine({"X": {}}, handlers=Rec())
    mach = am.Machine({"A": {}}, id="src", handlers=H())
    mach.add("A")
    assert len(sources) == 1
    src = sources[0]
    assert isinstance(src, tuple)
    assert src[0] == "src"
    assert src[1].startswith("src:")
    assert src[2] == 0  # sum of time before A's transition


def test_state_is_frozen_and_hashable() -> None:
    """State is a frozen value object."""
    s = am.State(require={"B", "A"})
    assert s.require == ("A", "B")
    with pytest.raises(AttributeError):
        s.auto = True
    assert hash(s) == hash(am.State(require=["A", "B"]))


def test_transition_clocks_are_snapshots() -> None:
    """A kept Transition's clocks never change later (copy-on-write clocks)."""
    kept: list[am.Transition] = []

    class Keep:
        def any_state(self, e: am.Event) -> None:
            kept.append(e.transition)

    mach = am.Machine({"A": {}, "B": {}, "C": am.State(require=["X"]), "X": {}})
    bid = mach.bind_handlers(Keep())
    mach.add("A")
    assert mach.add("C") == am.Result.CANCELED  # canceled: no any_state
    mach.detach_handlers(bid)
    mach.add("B")  # the unobserved fast path mutates the clock
    mach.remove("A")
    tx = kept[0]
    assert tx.clock_before == {"A": 0, "B": 0, "C": 0, "Exception": 0, "X": 0}
    assert tx.clock_after == {"A": 1, "B": 0, "C": 0, "Exception": 0, "X": 0}
    assert tx.time_after == [1, 0, 0, 0, 0]
    assert mach.clock() == {"A": 2, "B": 1, "C": 0, "Exception": 0, "X": 0}
