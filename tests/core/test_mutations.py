"""Basic mutations and checks, toggle, getters, can_add/can_remove and bad input."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from core_helpers import Recorder, machine, no_rels, record_all, rels

import asyncmachine as am

EXECUTED = am.Result.EXECUTED
CANCELED = am.Result.CANCELED

# -- basic mutations -------------------------------------------------------------------


def test_single_state_active() -> None:
    """Go TestSingleStateActive: set(["A"]) makes only A active."""
    m = no_rels(["A"])
    assert m.active_states() == ["A"]
    assert m.is_active("A")
    assert m.not_active(["B", "C", "D", "Exception"])


def test_multiple_states_active() -> None:
    """Go TestMultipleStatesActive: A then add("B") gives A and B."""
    m = no_rels(["A"])
    assert m.add("B") == EXECUTED
    assert m.active_states() == ["A", "B"]


def test_expose_all_state_names() -> None:
    """Go TestExposeAllStateNames: the names are A-D plus the implicit Exception."""
    m = no_rels(["A"])
    assert m.state_names() == ["A", "B", "C", "D", "Exception"]


def test_state_set() -> None:
    """Go TestStateSet: set(["B"]) on (A) gives (B)."""
    m = no_rels(["A"])
    assert m.set(["B"]) == EXECUTED
    assert m.active_states() == ["B"]
    assert m.clock(["A", "B"]) == {"A": 2, "B": 1}


def test_state_add() -> None:
    """Go TestStateAdd: add keeps A and adds B."""
    m = no_rels(["A"])
    m.add(["B"])
    assert m.active_states() == ["A", "B"]
    assert m.clock(["A", "B"]) == {"A": 1, "B": 1}


def test_state_remove() -> None:
    """Go TestStateRemove: remove("C") on (B C) gives (B)."""
    m = no_rels(["B", "C"])
    assert m.remove("C") == EXECUTED
    assert m.active_states() == ["B"]
    assert m.tick("C") == 2


def test_panic_when_state_is_unknown() -> None:
    """Go TestPanicWhenStateIsUnknown: set(["E"]) raises StateUnknownError."""
    m = no_rels(["A"])
    with pytest.raises(am.StateUnknownError):
        m.set(["E"])
    assert m.active_states() == ["A"]


def test_is() -> None:
    """Go TestIs: is_active is true only if every listed state is active."""
    m = no_rels(["A", "B"])
    assert m.is_active(["A", "B"])
    assert m.is_active("A")
    assert not m.is_active(["A", "B", "C"])


def test_not() -> None:
    """Go TestNot: not_active is true only if none of the listed states is active."""
    m = no_rels(["A", "B"])
    assert not m.not_active(["A", "B"])
    assert not m.not_active(["A", "B", "C"])
    assert m.not_active("D")
    assert m.not_active(["C", "D"])


def test_any() -> None:
    """Go TestAny: any_active is true if any group has all its states active."""
    m = no_rels(["A", "B"])
    assert m.any_active(["A", "B"], ["C"])
    assert m.any_active(["A", "B", "C"], ["A"])
    assert m.any_active("A", "B")
    assert not m.any_active(["C"])
    assert not m.any_active("C")
    assert not m.any_active(["A", "C"], ["B", "D"])


def test_count_active() -> None:
    """Go TestCountActive: active_states(states) filters to the active ones."""
    m = no_rels()
    m.add("A")
    assert m.active_states(["A", "B"]) == ["A"]
    m.add("B")
    assert m.active_states(["B", "C", "A"]) == ["B", "A"]


def test_switch() -> None:
    """Go TestSwitch: switch returns the first active state of the list, or ""."""
    m = no_rels(["A"])
    assert m.switch(["A", "B"]) == "A"
    assert m.switch(["C", "B"]) == ""
    m.add("B")
    assert m.switch(["C", "B", "A"]) == "B"


def test_has() -> None:
    """Go TestHas: an unknown name gives False, duplicates are fine."""
    m = no_rels()
    assert not m.has(["A", "Err"])
    assert m.has(["A", "A", "B"])
    assert m.has(m.state_names())
    assert m.has(["A", "B"])
    assert m.has("Exception")


def test_toggle() -> None:
    """Go TestToggle: toggle adds an inactive state and removes an active one."""
    m = no_rels()
    assert m.toggle("A") == EXECUTED
    assert m.is_active("A")
    assert m.toggle("A") == EXECUTED
    assert not m.is_active("A")

    m = no_rels()
    m.toggle(["A"])
    assert m.is_active("A")
    m.toggle(["A"])
    assert not m.is_active("A")


def test_toggle_partial_adds() -> None:
    """Spec 10.5: toggle removes only if all the states are active, else it adds."""
    m = no_rels(["A"])
    m.toggle(["A", "B"])
    assert m.active_states() == ["A", "B"]
    m.toggle(["A", "B"])
    assert m.active_states() == []


def test_getters() -> None:
    """Go TestGetters: the log level getter reflects the setter, the queue is empty."""
    m = no_rels(["A"])
    m.log_level = 5
    assert m.log_level == 5
    assert m.queue_len() == 0
    assert m.queue() == []
    assert m.transition is None


def test_called_states_deduped() -> None:
    """Spec M2: the called states are de-duplicated in call order."""
    m = no_rels()
    rec = Recorder(["any_enter"])
    m.bind_handlers(rec)
    m.add(["B", "A", "B"])
    assert rec.events[0].mutation.called == ("B", "A")


def test_single_str_is_one_state() -> None:
    """Spec M2: a single str names one state and is not iterated per character."""
    m = machine({"A": am.State(), "B": am.State(), "AB": am.State()})
    m.add("AB")
    assert m.active_states() == ["AB"]
    with pytest.raises(am.StateUnknownError):
        m.add("BA")


# -- can_add / can_remove --------------------------------------------------------------


def test_can_add() -> None:
    """Go TestCanAdd: on Rels, can_add("A") is CANCELED and can_add("C") EXECUTED."""
    m = rels()
    assert m.can_add("A") == CANCELED
    assert m.can_add("C") == EXECUTED
    assert m.active_states() == []
    assert m.time() == [0, 0, 0, 0, 0]


def test_can_add_runs_negotiation_only() -> None:
    """Spec 10.4/H7: a check runs negotiation handlers, applies nothing, runs no finals."""
    m = no_rels(["A"])
    rec = record_all(m)
    qt = m.queue_tick()
    assert m.can_add("B") == EXECUTED
    assert rec.calls == ["B_enter", "A_A", "A_B", "any_enter"]
    assert m.active_states() == ["A"]
    assert m.clock(["A", "B"]) == {"A": 1, "B": 0}
    assert m.queue_tick() == qt


def test_can_add_rejected_by_handler() -> None:
    """Spec 10.4: a rejecting negotiation handler makes the check CANCELED."""
    m = no_rels(["A"])
    rec = record_all(m, reject=["B_enter"])
    assert m.can_add("B") == CANCELED
    assert rec.calls == ["B_enter"]
    assert m.active_states() == ["A"]


def test_can_remove() -> None:
    """Spec 10.4: can_remove runs exit handlers and leaves the state active."""
    m = no_rels(["A"])
    rec = record_all(m)
    assert m.can_remove("A") == EXECUTED
    assert rec.calls == ["A_exit", "any_enter"]
    assert m.active_states() == ["A"]

    m = no_rels(["A"])
    record_all(m, reject=["A_exit"])
    assert m.can_remove("A") == CANCELED
    assert m.is_active("A")


def test_can_add_multi_accepts_partially() -> None:
    """Spec R10: a check whose called states include a multi state ignores rejections."""
    schema = {
        "M": am.State(multi=True),
        "Q": am.State(),
        "R": am.State(require=["Q"]),
    }
    m = machine(schema)
    assert m.can_add("R") == CANCELED
    assert m.can_add(["M", "R"]) == EXECUTED
    assert m.add(["M", "R"]) == CANCELED
    assert m.active_states() == []


def test_can_add_handler_mutations_run() -> None:
    """Spec 10.4: mutations queued by handlers during a check really run."""
    m = no_rels()

    def b_enter(e: am.Event) -> object:
        e.machine.add("C")
        return None

    rec = Recorder([], hooks={"B_enter": b_enter})
    m.bind_handlers(rec)
    assert m.can_add("B") == EXECUTED
    assert m.active_states() == ["C"]


def test_can_add_from_handler_is_queued() -> None:
    """Spec 10.4: a check called from a handler returns QUEUED (2) and runs next."""
    m = no_rels()
    results: list[am.Result] = []

    def a_state(e: am.Event) -> object:
        e.machine.add("C")
        results.append(e.machine.can_add("B"))
        return None

    rec = Recorder(["B_enter", "C_enter"], hooks={"A_state": a_state})
    m.bind_handlers(rec)
    m.add("A")
    assert results == [am.Result.QUEUED]
    assert rec.calls == ["A_state", "B_enter", "C_enter"]
    assert rec.events[1].is_check
    assert not rec.events[2].is_check
    assert m.active_states() == ["A", "C"]


# -- bad input -------------------------------------------------------------------------

Op = Callable[[am.Machine], object]

UNKNOWN_OPS: list[tuple[str, Op]] = [
    ("add", lambda m: m.add("Z")),
    ("add_list", lambda m: m.add(["B", "Z"])),
    ("remove", lambda m: m.remove(["A", "Z"])),
    ("set", lambda m: m.set(["Z"])),
    ("toggle", lambda m: m.toggle(["Z"])),
    ("can_add", lambda m: m.can_add("Z")),
    ("can_remove", lambda m: m.can_remove("Z")),
    ("add_err_state", lambda m: m.add_err_state("Z", ValueError("x"))),
    ("is_active", lambda m: m.is_active("Z")),
    ("is_active_list", lambda m: m.is_active(["A", "Z"])),
    ("not_active", lambda m: m.not_active(["Z"])),
    ("any_active", lambda m: m.any_active(["Z"])),
    ("active_states", lambda m: m.active_states(["Z"])),
    ("tick", lambda m: m.tick("Z")),
    ("clock", lambda m: m.clock(["Z"])),
    ("time", lambda m: m.time(["A", "Z"])),
]


@pytest.mark.parametrize("op", [pytest.param(op, id=name) for name, op in UNKNOWN_OPS])
def test_unknown_state_raises_before_anything_happens(op: Op) -> None:
    """Spec M1/api.md: unknown names raise StateUnknownError and change nothing."""
    m = no_rels(["A"])
    errors: list[BaseException] = []
    m.on_error = lambda _m, err: errors.append(err)
    rec = record_all(m)
    clock = m.clock()
    qt = m.queue_tick()
    with pytest.raises(am.StateUnknownError) as info:
        op(m)
    assert isinstance(info.value, KeyError)
    assert isinstance(info.value, am.AsyncMachineError)
    assert m.clock() == clock
    assert m.queue_tick() == qt
    assert m.queue_len() == 0
    assert rec.calls == []
    assert m.err() is None
    assert errors == []
    assert m.active_states() == ["A"]


def test_unknown_state_in_handler_queues_nothing() -> None:
    """Spec M1: an unknown name raises inside a handler before anything is queued."""
    m = no_rels()
    seen: list[int] = []

    def a_state(e: am.Event) -> object:
        e.machine.add("B")
        before = e.machine.queue_len()
        with pytest.raises(am.StateUnknownError):
            e.machine.add(["C", "Z"])
        seen.append(e.machine.queue_len() - before)
        return None

    m.bind_handlers(Recorder([], hooks={"A_state": a_state}))
    m.add("A")
    assert seen == [0]
    assert m.active_states() == ["A", "B"]


def test_unknown_state_in_handler_becomes_exception() -> None:
    """Spec M1: an unknown name raised inside a final handler becomes Exception."""
    m = no_rels()

    def a_state(e: am.Event) -> object:
        return e.machine.add("Z")

    m.bind_handlers(Recorder([], hooks={"A_state": a_state}))
    assert m.add("A") == CANCELED
    assert m.active_states() == ["Exception"]
    assert isinstance(m.err(), am.StateUnknownError)
    assert m.tick("A") == 2
