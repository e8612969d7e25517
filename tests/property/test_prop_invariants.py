"""
The core keeps every invariant of ``check_invariants`` on random schemas, handlers
and mutations; and ``check_invariants`` is exactly as strict as the spec.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given
from prop_helpers import Case, cases, run_case

import asyncmachine as am
from asyncmachine.testing import (
    INVARIANTS,
    HandlerBehaviour,
    InvariantViolation,
    check_invariants,
    watch,
)


@given(cases())
def test_random_runs_keep_every_invariant(case: Case) -> None:
    """Random schemas (cycles, conflicts, auto, multi) with stress handlers."""
    run = run_case(case)
    assert len(run.results) == len(case.steps)
    assert all(not r.is_queued for r in run.results)


@given(cases(density=0.6, max_states=8))
def test_dense_schemas_keep_every_invariant(case: Case) -> None:
    """The same with relation lists up to 60% of the states long."""
    run_case(case)


@given(cases(cycles=False, contradictions=False))
def test_orderly_schemas_keep_every_invariant(case: Case) -> None:
    """No Require cycles, no contradictions: invariants hold there too."""
    run_case(case)


# -- the nuances: what the spec does not guarantee ---------------------------------


class RaiseIn:
    """Handlers: the named final handlers raise."""

    def __init__(self, *names: str) -> None:
        for name in names:
            setattr(self, name, self._raise)

    def _raise(self, e: am.Event) -> None:
        raise ValueError(f"{e.name} failed")


@pytest.mark.parametrize(
    ("schema", "called", "failing"),
    [
        # After puts B (which requires A) before A in the enter order.
        ({"A": {"after": ["B"]}, "B": {"require": ["A"]}}, ["A", "B"], "A_state"),
        # A Require cycle switches Require ordering off (S10): called order stays.
        ({"A": {"require": ["B"]}, "B": {"require": ["A"]}}, ["A", "B"], "B_state"),
    ],
    ids=["after", "require-cycle"],
)
def test_rollback_can_break_require_and_suspends_it(
    schema: dict[str, dict[str, list[str]]], called: list[str], failing: str
) -> None:
    """E4 leaves a state without its requirement; check_invariants allows exactly that."""
    mach = am.Machine(schema, handlers=RaiseIn(failing), catch_exceptions=False)
    monitor = watch(mach)
    with pytest.raises(ValueError, match="failed"):
        mach.add(called)
    (left,) = mach.active_states()
    required = schema[left]["require"]
    assert not mach.is_active(required)  # the spec really allows this state
    assert not monitor.require_valid
    assert "rolled back" in monitor.reason
    check_invariants(mach)
    # the next fully applied transition restores (and checks) the invariant
    mach.add([])
    assert monitor.require_valid
    assert mach.active_states() == []
    check_invariants(mach)


def test_rollback_is_repaired_by_the_exception_transition() -> None:
    """With caught exceptions the prepended add(Exception) drops the orphan at once."""
    schema = {"A": {"after": ["B"]}, "B": {"require": ["A"]}}
    mach = am.Machine(schema, handlers=RaiseIn("A_state"))
    monitor = watch(mach)
    assert mach.add(["A", "B"]) == am.Result.CANCELED
    assert mach.active_states() == ["Exception"]
    assert monitor.require_valid
    check_invariants(mach)


def test_second_add_pass_can_activate_a_remover_next_to_its_victim() -> None:
    """Spec R6: C arrives by a second-level `add` after remove-blocking ran."""
    schema = {"A": {"add": ["B"]}, "B": {"add": ["C"]}, "C": {"remove": ["D"]}, "D": {}}
    mach = am.Machine(schema)
    mach.add("D")
    assert mach.add("A") == am.Result.EXECUTED
    assert mach.is_active(["C", "D"])  # C removes D, and both are active
    check_invariants(mach)  # C is an add target: exempt, as documented


def test_import_suspends_remove_until_an_applied_transition() -> None:
    """An import may activate a remover next to its victim; R4 resolves it next."""
    schema = {"C": {"remove": ["D"]}, "D": {}}
    names = ["C", "D", "Exception"]
    mach = am.Machine(schema, id="m", names=names)
    monitor = watch(mach)
    mach.import_({"id": "m", "state_names": names, "time": [1, 1, 0]})
    assert mach.is_active(["C", "D"])
    assert not monitor.remove_valid
    check_invariants(mach)
    mach.add([])  # to_set is [C, D]: C blocks D (R4)
    assert monitor.remove_valid
    assert mach.active_states() == ["C"]
    check_invariants(mach)


def test_import_suspends_require_until_an_applied_transition() -> None:
    """import_() may set any clock; the next applied transition resolves it."""
    schema = {"A": {}, "B": {"require": ["A"]}}
    names = ["A", "B", "Exception"]
    mach = am.Machine(schema, id="m", names=names)
    monitor = watch(mach)
    mach.import_({"id": "m", "state_names": names, "time": [4, 7, 0]})
    assert mach.active_states() == ["B"]
    assert not monitor.require_valid
    check_invariants(mach)
    mach.add([])  # to_set is [B]: B loses its requirement (R3)
    assert monitor.require_valid
    assert mach.active_states() == []
    check_invariants(mach)


def test_aborted_drain_may_leave_a_queue() -> None:
    """E6: the queue keeps what the failing handler queued until the next drain."""

    class Handlers:
        def A_state(self, e: am.Event) -> None:
            e.machine.add("B")
            raise ValueError("A failed")

    mach = am.Machine({"A": {}, "B": {}}, handlers=Handlers(), catch_exceptions=False)
    watch(mach)
    with pytest.raises(ValueError, match="A failed"):
        mach.add("A")
    assert mach.queue_len() == 1
    check_invariants(mach)
    mach.add([])
    assert mach.queue_len() == 0
    assert mach.is_active("B")
    check_invariants(mach)


def test_unknown_history_checks_require_only_without_errors() -> None:
    """A machine seen late: require is trusted only if no error could roll back."""
    clean = am.Machine({"A": {}, "B": {"require": ["A"]}})
    clean.add(["A", "B"])
    assert watch(clean).require_valid
    failed = am.Machine({"A": {}}, handlers=RaiseIn("A_state"))
    failed.add("A")
    monitor = watch(failed)
    assert not monitor.require_valid
    assert monitor.remove_valid
    check_invariants(failed)


def test_hostile_behaviour_terminates_within_budgets() -> None:
    """An auto state whose enter always raises, and ping-pong handlers, stop."""
    schema = {"A": {"auto": True}, "B": {}, "C": {}}
    states = ("A", "B", "C", "Exception")
    behaviour = HandlerBehaviour(
        states=states,
        raises=("A_enter",),
        mutate=(("B_state", "set", ("C",)), ("C_state", "set", ("B",))),
        max_raises=3,
        max_mutations=5,
    )
    handlers = behaviour.build()
    mach = am.Machine(schema, handlers=handlers)
    watch(mach)
    mach.add("B")
    assert handlers.raised == 3
    assert handlers.mutated == 5
    assert mach.is_active("A")  # once the raise budget is spent, A activates
    check_invariants(mach)


# -- check_invariants catches each kind of violation ----------------------------------
# A machine that lies through its public readers stands in for a broken core.


class Lying(am.Machine):
    """A machine whose readers can be told to lie."""

    lie: str = ""

    def active_states(self, states: am.StatesArg | None = None) -> list[str]:
        real = super().active_states(states)
        return real[1:] if self.lie == "active" else real

    def clock(self, states: am.StatesArg | None = None) -> dict[str, int]:
        real = super().clock(states)
        if states is None and "A" in real:
            real["A"] += {"tick": 2, "lower": -2}.get(self.lie, 0)
            if self.lie == "negative":
                real["A"] = -1
        return real

    def time(self, states: am.StatesArg | None = None) -> list[int]:
        return list(self.clock(states).values())

    def __str__(self) -> str:
        if self.is_disposed:
            return ""
        clock = self.clock()
        return "(" + " ".join(f"{s}:{t}" for s, t in clock.items() if t % 2) + ")"

    def queue_len(self) -> int:
        return 1 if self.lie == "queue" else super().queue_len()

    def queue_tick(self) -> int:
        return 0 if self.lie == "queue-tick" else super().queue_tick()

    @property
    def schema(self) -> dict[str, am.State]:
        real = dict(super().schema)
        if self.lie == "require":
            real["B"] = am.State(require=["C"])
        if self.lie == "remove":
            real["A"] = am.State(remove=["B"])
        return real


def expect(invariant: str, mach: am.Machine) -> InvariantViolation:
    """check_invariants(mach) raises a violation of *invariant*."""
    assert invariant in INVARIANTS
    with pytest.raises(InvariantViolation) as info:
        check_invariants(mach)
    err = info.value
    assert err.invariant == invariant
    assert isinstance(err, AssertionError)
    assert f"invariant {invariant!r} broken" in str(err)
    assert "clock:" in str(err)
    return err


def lying(lie: str, active: Iterable[str] = ("A", "B")) -> Lying:
    mach = Lying({"A": {}, "B": {}, "C": {}})
    watch(mach)
    mach.add("A")
    mach.remove("A")
    mach.add(list(active))  # A:3 when active
    check_invariants(mach)
    mach.lie = lie
    return mach


@pytest.mark.parametrize(
    ("lie", "invariant", "states"),
    [
        ("active", "tick-parity", ["A", "B"]),
        ("lower", "clock-monotonic", ["A"]),
        ("tick", "clock-changes", ["A"]),
        ("negative", "clock-shape", ["A"]),
        ("queue", "idle", []),
        ("queue-tick", "queue-tick", []),
        ("require", "require", ["B", "C"]),
        ("remove", "remove", ["A", "B"]),
    ],
)
def test_each_violation_is_named(lie: str, invariant: str, states: list[str]) -> None:
    """The error names the invariant, the states and the clock."""
    err = expect(invariant, lying(lie))
    assert list(err.states) == states
    assert set(err.clock) == {"A", "B", "C", "Exception"}


def test_clock_change_inside_a_transition_is_caught() -> None:
    """Ticks that do not follow C2 are reported when the transition ends."""
    mach = lying("", active=["A"])
    mach.lie = "tick"  # from now on A reads 2 ticks higher
    mach.add("C")
    err = expect("clock-changes", mach)
    assert "A" in err.states


def test_disposed_machine_reads_empty() -> None:
    """A disposed machine passes only if it reads as empty."""
    mach = lying("")
    mach.dispose()
    check_invariants(mach)

    class Stale(am.Machine):
        def clock(self, states: am.StatesArg | None = None) -> dict[str, int]:
            return {"A": 1}

    stale = Stale({"A": {}})
    stale.dispose()
    expect("disposed", stale)


def test_check_from_a_handler_is_not_idle() -> None:
    """Inside a transition the machine is not idle: reported as such."""
    seen: list[InvariantViolation] = []

    class Handlers:
        def A_state(self, e: am.Event) -> None:
            try:
                check_invariants(e.machine)
            except InvariantViolation as err:
                seen.append(err)

    mach = am.Machine({"A": {}}, handlers=Handlers())
    watch(mach)
    mach.add("A")
    assert [err.invariant for err in seen] == ["idle"]
