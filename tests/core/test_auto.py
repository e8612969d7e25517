"""Auto states (spec section 5) and the Go auto tests."""

from __future__ import annotations

import pytest
from core_helpers import (
    Recorder,
    capture_logs,
    log_text,
    machine,
    no_rels,
    record_all,
)

import asyncmachine as am

EXECUTED = am.Result.EXECUTED
CANCELED = am.Result.CANCELED


def test_auto_states(caplog: pytest.LogCaptureFixture) -> None:
    """Go TestAutoStates: B(auto, require=[A]) activates after add("A")."""
    m = no_rels(extra={"B": am.State(auto=True, require=["A"])}, log_level=5)
    capture_logs(caplog)
    assert m.add("A") == EXECUTED
    assert m.active_states() == ["A", "B"]
    assert "[auto] B" in log_text(caplog)


def test_auto_states_call_sequence() -> None:
    """Spec A5: the auto transition runs inside the outer call, with exact handlers."""
    m = machine({"A": am.State(), "B": am.State(auto=True, require=["A"])})
    rec = record_all(m)
    assert m.add("A") == EXECUTED
    assert rec.calls == [
        *("A_enter", "any_enter", "A_state", "any_state"),
        *("B_enter", "A_A", "A_B", "any_enter", "B_state", "any_state"),
    ]
    auto_tx = rec.events[-1].transition
    assert auto_tx.is_auto
    assert auto_tx.mutation.queue_tick == 0
    rec.clear()
    assert m.remove("A") == EXECUTED
    assert rec.calls == [
        *("A_exit", "B_exit", "any_enter", "A_end", "B_end", "any_state"),
    ]
    assert m.active_states() == []


def test_partial_auto_states(caplog: pytest.LogCaptureFixture) -> None:
    """Go TestPartialAutoStates: B is rejected by R10, A still activates."""
    m = no_rels(
        extra={
            "A": am.State(auto=True),
            "B": am.State(auto=True, after=["A"], require=["C"]),
        },
        log_level=5,
    )
    capture_logs(caplog)
    assert m.add("D") == EXECUTED
    assert m.active_states() == ["A", "D"]
    assert "[auto_] +A" in log_text(caplog)


def test_partial_auto_states_by_state_state() -> None:
    """Go TestPartialAutoStatesByStateState: C_B rejecting drops only B."""
    m = machine({"A": am.State(auto=True), "B": am.State(auto=True), "C": am.State()})
    m.bind_handlers(Recorder([], reject=["C_B"]))
    assert m.add("C") == EXECUTED
    assert m.active_states() == ["A", "C"]
    # the auto transition's re-resolved target order is [A, C]
    rec = Recorder(["any_enter"])
    m.bind_handlers(rec)
    m.add("C")
    assert rec.events[0].transition.states_before == ("A", "C")


def test_partial_auto_states_by_enter() -> None:
    """Go TestPartialAutoStatesByEnter: B_enter rejecting drops B and its add of D."""
    m = machine(
        {
            "A": am.State(auto=True),
            "B": am.State(auto=True, add=["D"]),
            "C": am.State(),
            "D": am.State(),
        }
    )
    m.bind_handlers(Recorder([], reject=["B_enter"]))
    m.add("C")
    assert m.active_states() == ["A", "C"]
    assert m.tick("D") == 0


def test_partial_auto_states_by_self_handler() -> None:
    """Go TestPartialAutoStatesBySelfHandler: C_C (C not auto) cancels the auto tx."""
    m = machine({"A": am.State(auto=True), "B": am.State(auto=True), "C": am.State()})
    m.bind_handlers(Recorder([], reject=["C_C"]))
    assert m.add("C") == EXECUTED
    assert m.active_states() == ["C"]


def test_partial_auto(caplog: pytest.LogCaptureFixture) -> None:
    """Go TestPartialAuto: all auto states rejected cancels the auto transition."""
    m = no_rels(
        extra={
            "C": am.State(auto=True, require=["B"]),
            "D": am.State(auto=True, require=["B"]),
        },
        log_level=5,
    )
    capture_logs(caplog)
    assert m.add("A") == EXECUTED
    assert m.active_states() == ["A"]
    assert "[cancel:reject] C D" in log_text(caplog)


def test_auto_skips_states_removed_by_active() -> None:
    """Spec A1: auto states removed by an active state are not called."""
    m = machine(
        {
            "X": am.State(remove=["B"]),
            "B": am.State(auto=True),
            "T": am.State(),
        }
    )
    m.add("X")
    rec = Recorder(["any_enter"])
    m.bind_handlers(rec)
    m.add("T")
    assert m.active_states() == ["T", "X"]
    assert all(not e.transition.is_auto for e in rec.events)


def test_auto_health_transitions() -> None:
    """Spec S4/A1: an add of exactly Heartbeat or Healthcheck triggers no auto."""
    schema = {
        "Heartbeat": am.State(),
        "Healthcheck": am.State(),
        "B": am.State(auto=True),
    }
    for health in ("Heartbeat", "Healthcheck"):
        m = machine(schema)
        m.add(health)
        assert m.active_states() == [health]
        m.remove(health)
        assert m.active_states() == ["B"]
    m = machine(schema)
    m.add(["Heartbeat", "Healthcheck"])
    assert m.is_active("B")


def test_auto_order_is_state_names_order() -> None:
    """Spec A1/DEV-2: the auto mutation calls states in state_names order."""
    schema = {"X": am.State(auto=True), "Y": am.State(auto=True), "T": am.State()}
    m = machine(schema, names=["Y", "T", "Exception", "X"])
    rec = Recorder(["any_state"])
    m.bind_handlers(rec)
    m.add("T")
    assert rec.events[1].mutation.called == ("Y", "X")
    m = machine(schema)
    rec = Recorder(["any_state"])
    m.bind_handlers(rec)
    m.add("T")
    assert rec.events[1].mutation.called == ("X", "Y")


def test_auto_prepended() -> None:
    """Spec A2: the auto mutation runs before earlier queued items, with no queue tick."""
    m = machine({"T": am.State(), "Q": am.State(), "C": am.State(auto=True)})

    def t_state(e: am.Event) -> object:
        return e.machine.add("Q")

    rec = Recorder(["C_state", "Q_state"], hooks={"T_state": t_state})
    m.bind_handlers(rec)
    qt = m.queue_tick()
    assert m.add("T") == EXECUTED
    assert rec.calls == ["T_state", "C_state", "Q_state"]
    assert m.queue_tick() == qt + 2  # T and Q; the auto mutation takes no tick
    assert m.active_states() == ["C", "Q", "T"]


def test_auto_does_not_chain() -> None:
    """Spec A2: an auto transition never triggers another auto mutation."""
    m = machine(
        {
            "X": am.State(remove=["B"]),
            "A": am.State(auto=True, remove=["X"]),
            "B": am.State(auto=True),
            "Z": am.State(),
        },
        initial=["X"],
    )
    # set(["X"]) ran an auto mutation for A only (B was removed by the active X);
    # A removed X, but that auto transition does not trigger another one for B
    assert m.active_states() == ["A"]
    assert m.clock(["A", "B", "X"]) == {"A": 1, "B": 0, "X": 2}
    # the next non-auto transition triggers a new auto mutation, now for B
    m.add("Z")
    assert m.active_states() == ["A", "B", "Z"]


def test_auto_re_adds_itself() -> None:
    """Spec A4: removing an auto state that nothing blocks activates it again."""
    m = machine({"X": am.State(auto=True), "T": am.State()})
    m.add("T")
    assert m.tick("X") == 1
    assert m.remove("X") == EXECUTED
    assert m.is_active("X")
    assert m.tick("X") == 3


def test_auto_exit_rejection_cancels() -> None:
    """Spec A3/DEV-3: an X_exit rejection inside an auto transition cancels it."""
    m = machine({"X": am.State(), "A": am.State(auto=True, remove=["X"])})

    def x_exit(e: am.Event) -> object:
        return not e.transition.is_auto

    rec = Recorder(["A_enter", "A_state"], hooks={"X_exit": x_exit})
    m.bind_handlers(rec)
    assert m.add("X") == EXECUTED
    assert rec.calls == ["X_exit"]
    assert rec.events[0].transition.is_auto
    assert m.active_states() == ["X"]
    assert m.tick("A") == 0


def test_auto_self_handler_rejection_continues() -> None:
    """Spec A3/DEV-4: an auto state's self rejection drops it and later ones still run."""
    m = machine(
        {
            "A": am.State(auto=True),
            "B": am.State(auto=True, require=["D"]),
            "C": am.State(),
            "D": am.State(),
        }
    )
    m.add("C")
    assert m.active_states() == ["A", "C"]

    def a_a(e: am.Event) -> object:
        return not e.transition.is_auto

    rec = Recorder(["C_C", "D_D", "B_enter"], hooks={"A_A": a_a})
    m.bind_handlers(rec)
    m.add("D")
    auto_calls = [e.name for e in rec.events if e.transition.is_auto]
    assert auto_calls == ["B_enter", "A_A", "C_C", "D_D"]
    assert m.active_states() == ["A", "B", "C", "D"]
    assert m.tick("A") == 1
    assert m.tick("B") == 1


def test_auto_negotiation_exception_cancels() -> None:
    """Spec DEV-7: an exception in a negotiation handler cancels the whole auto tx."""
    m = machine({"A": am.State(auto=True), "B": am.State(auto=True), "T": am.State()})
    raised: list[int] = []

    def b_enter(e: am.Event) -> object:
        if not raised:
            raised.append(1)
            raise RuntimeError("B_enter")
        return None

    rec = Recorder(
        ["A_state", "B_state", "Exception_state"], hooks={"B_enter": b_enter}
    )
    m.bind_handlers(rec)
    m.add("T")
    assert rec.calls == [
        "B_enter",
        "Exception_state",
        "B_enter",
        "A_state",
        "B_state",
    ]
    assert m.active_states() == ["A", "B", "Exception", "T"]
