"""Handlers: section 4.3 call sequences, negotiation, self/pair rules, binding."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
from core_helpers import (
    Recorder,
    capture_logs,
    log_text,
    machine,
    no_rels,
    record_all,
    track,
)

import asyncmachine as am

EXECUTED = am.Result.EXECUTED
CANCELED = am.Result.CANCELED

# -- 4.3 complete call sequences -------------------------------------------------------


def test_call_sequences_no_rels() -> None:
    """Spec 4.3: the exact handler sequences of the NoRels walk-through."""
    m = no_rels()
    rec = record_all(m)

    def step(res: am.Result, calls: list[str], before: tuple[str, ...]) -> None:
        assert res == EXECUTED
        assert rec.calls == calls
        assert rec.events[0].transition.states_before == before
        rec.clear()

    step(
        m.set(["A", "B"]),
        ["A_enter", "B_enter", "any_enter", "A_state", "B_state", "any_state"],
        (),
    )
    assert str(m) == "(A:1 B:1)"
    step(
        m.add("C"),
        [
            *("C_enter", "A_A", "B_B", "A_C", "A_B", "B_C", "B_A"),
            *("any_enter", "C_state", "any_state"),
        ],
        ("A", "B"),
    )
    time = m.time()
    step(
        m.add("A"),
        [
            *("A_A", "C_C", "B_B", "C_A", "C_B", "A_C", "A_B", "B_A", "B_C"),
            *("any_enter", "any_state"),
        ],
        ("C", "A", "B"),
    )
    assert m.time() == time
    step(
        m.remove("D"),
        ["A_C", "A_B", "C_A", "C_B", "B_A", "B_C", "any_enter", "any_state"],
        ("A", "C", "B"),
    )
    assert m.time() == time
    step(
        m.remove("B"),
        ["B_exit", "A_C", "C_A", "B_A", "B_C", "any_enter", "B_end", "any_state"],
        ("A", "C", "B"),
    )
    step(
        m.set(["C", "A", "D"]),
        [
            *("D_enter", "C_C", "A_A", "A_C", "A_D", "C_A", "C_D"),
            *("any_enter", "D_state", "any_state"),
        ],
        ("A", "C"),
    )
    m.add("B")
    assert rec.events[0].transition.states_before == ("C", "A", "D")


def test_call_sequences_set_from_two() -> None:
    """Spec 4.3 (Go order tests): set(["C"]) from (A B)."""
    m = no_rels(["A", "B"])
    rec = record_all(m)
    m.set(["C"])
    assert rec.calls == [
        *("A_exit", "B_exit", "C_enter", "A_C", "B_C", "any_enter"),
        *("A_end", "B_end", "C_state", "any_state"),
    ]


def test_call_sequences_multi() -> None:
    """Spec 4.3: a called multi state enters again; its implied B does not."""
    m = machine({"M": am.State(multi=True, add=["B"]), "B": am.State()})
    rec = record_all(m)
    assert m.add("M") == EXECUTED
    assert rec.calls == [
        *("M_enter", "B_enter", "any_enter", "M_state", "B_state", "any_state"),
    ]
    assert str(m) == "(B:1 M:1)"
    rec.clear()
    assert m.add("M") == EXECUTED
    assert rec.calls == [
        *("M_enter", "M_M", "B_B", "M_B", "B_M", "any_enter", "M_state", "any_state"),
    ]
    assert str(m) == "(B:1 M:3)"


def test_call_sequences_canceled_negotiation() -> None:
    """Spec 4.3: A_B rejecting cancels add("B") and set(["B"]) after the exact calls."""
    m = no_rels(["A"])
    rec = record_all(m, reject=["A_B"])
    time = m.time()
    assert m.add("B") == CANCELED
    assert rec.calls == ["B_enter", "A_A", "A_B"]
    rec.clear()
    assert m.set(["B"]) == CANCELED
    assert rec.calls == ["A_exit", "B_enter", "A_B"]
    assert m.time() == time
    assert m.active_states() == ["A"]


# -- Go handler-order tests ------------------------------------------------------------


def test_single_to_single_state_transition() -> None:
    """Go TestSingleToSingleStateTransition: from (A B), set(["C"])."""
    m = no_rels(["A", "B"])
    rec = track(m)
    m.set(["C"])
    assert m.active_states() == ["C"]
    assert rec.calls == [
        *("A_exit", "B_exit", "C_enter", "A_C", "B_C", "any_enter"),
        *("A_end", "B_end", "C_state", "any_state"),
    ]
    assert set(rec.counts().values()) == {1}


def test_single_to_multi_state_transition() -> None:
    """Go TestSingleToMultiStateTransition: from (A), set(["B","C"])."""
    m = no_rels(["A"])
    rec = track(m)
    m.set(["B", "C"])
    assert m.active_states() == ["B", "C"]
    assert rec.calls == [
        *("A_exit", "B_enter", "C_enter", "A_B", "A_C", "any_enter"),
        *("A_end", "B_state", "C_state", "any_state"),
    ]
    assert set(rec.counts().values()) == {1}


def test_multi_to_multi_state_transition() -> None:
    """Go TestMultiToMultiStateTransition: from (A B), set(["D","C"]) keeps called order."""
    m = no_rels(["A", "B"])
    rec = track(m)
    m.set(["D", "C"])
    assert m.active_states() == ["C", "D"]
    assert rec.calls == [
        *("A_exit", "B_exit", "D_enter", "C_enter", "A_D", "A_C", "B_D", "B_C"),
        *("any_enter", "A_end", "B_end", "D_state", "C_state", "any_state"),
    ]
    assert set(rec.counts().values()) == {1}


def test_multi_to_single_state_transition() -> None:
    """Go TestMultiToSingleStateTransition: any_enter runs last in negotiation."""
    m = no_rels(["A", "B"])
    rec = track(m)
    m.set(["C"])
    assert rec.calls == [
        *("A_exit", "B_exit", "C_enter", "A_C", "B_C", "any_enter"),
        *("A_end", "B_end", "C_state", "any_state"),
    ]


def test_transition_to_active_state() -> None:
    """Go TestTransitionToActiveState: set(["A"]) on (A B) does not exit A."""
    m = no_rels(["A", "B"])
    rec = track(m)
    m.set(["A"])
    assert m.active_states() == ["A"]
    counts = rec.counts()
    assert counts["A_exit"] == 0
    assert counts["A_end"] == 0
    assert counts["B_exit"] == 1
    assert "B_any" not in counts


def test_self_handlers_order() -> None:
    """Go TestSelfHandlersOrder: from (A), set(["A","B"]) gives the exact sequence."""
    m = no_rels(["A"])
    rec = track(m)
    m.set(["A", "B"])
    assert rec.calls == ["B_enter", "A_A", "A_B", "any_enter", "B_state", "any_state"]


def test_self_handlers_for_all_no_change_states() -> None:
    """Go TestSelfHandlersForAllNoChangeStates: A_A runs twice and B_B once."""
    m = no_rels(["A"])
    rec = track(m)
    m.add("B")
    m.add("A")
    counts = rec.counts()
    assert counts["A_A"] == 2
    assert counts["B_B"] == 1


def test_self_handlers_cancellable() -> None:
    """Go TestSelfHandlersCancellable: A_A returning False cancels set(["A","B"])."""
    m = no_rels(["A"])
    rec = track(m)
    counter: list[int] = []

    class Handlers:
        def A_A(self, e: am.Event) -> bool:
            counter.append(1)
            return False

    m.bind_handlers(Handlers())
    assert m.set(["A", "B"]) == CANCELED
    assert counter == [1]
    assert rec.counts()["A_A"] == 1
    assert "A_B" not in rec.calls
    assert m.active_states() == ["A"]


def test_self_handlers_not_for_remove() -> None:
    """Spec H6.3: self handlers do not run for remove transitions."""
    m = no_rels(["A", "B"])
    rec = record_all(m)
    m.remove("B")
    assert "A_A" not in rec.calls
    assert "B_B" not in rec.calls


def test_handler_state_state() -> None:
    """Go TestHandlerStateState: from (A), add("B") calls A_B but not B_A."""
    m = no_rels(["A"])
    rec = Recorder(["A_B", "B_A"])
    m.bind_handlers(rec)
    m.add("B")
    assert rec.calls == ["A_B"]


def test_handler_negotiation_state_state() -> None:
    """Go TestHandlerNegotiationStateState: A_B returning False cancels add("B")."""
    m = no_rels(["A"])
    m.bind_handlers(Recorder(["B_A"], reject=["A_B"]))
    assert m.add("B") == CANCELED
    assert m.active_states() == ["A"]


def test_anon_handlers() -> None:
    """Go TestAnonHandlers: function-valued attributes work as handlers."""
    m = no_rels(["A"])
    ok: list[str] = []
    handlers = SimpleNamespace(
        A_exit=lambda e: True,
        A_end=lambda e: ok.append(e.name),
    )
    m.bind_handlers(handlers)
    assert m.remove("A") == EXECUTED
    assert m.not_active("A")
    assert ok == ["A_end"]


def test_handler_return_values() -> None:
    """Spec H1: only the identity False rejects; None, 0, "" and True accept."""
    values: list[object] = [None, 0, "", True, []]
    for value in values:
        m = no_rels()
        m.bind_handlers(SimpleNamespace(A_enter=lambda e, v=value: v))
        assert m.add("A") == EXECUTED, value
    m = no_rels()
    m.bind_handlers(SimpleNamespace(A_enter=lambda e: False))
    assert m.add("A") == CANCELED


def test_final_handler_return_ignored() -> None:
    """Spec H1: return values of final handlers are ignored."""
    m = no_rels()
    m.bind_handlers(SimpleNamespace(A_state=lambda e: False, any_state=lambda e: False))
    assert m.add("A") == EXECUTED
    assert m.is_active("A")


def test_handler_args() -> None:
    """Go TestHandlerArgs: the args reach _enter, _exit and _state as one dict object."""
    m = no_rels(["A"])
    seen: list[tuple[str, object, int]] = []

    def spy(e: am.Event) -> object:
        seen.append((e.name, e.args.get("foo"), id(e.args)))
        return None

    rec = Recorder(
        ["B_enter", "A_exit", "C_state", "any_enter", "any_state"],
        hooks=dict.fromkeys(("B_enter", "A_exit", "C_state", "any_enter"), spy),
    )
    m.bind_handlers(rec)
    m.add("B", {"foo": "bar"})
    m.remove("A", {"foo": "bar"})
    m.set(["C"], {"foo": "bar"})
    assert {name for name, _, _ in seen} == {
        "B_enter",
        "A_exit",
        "C_state",
        "any_enter",
    }
    assert all(v == "bar" for _, v, _ in seen)
    # one dict object per transition, shared by all its handlers
    by_tx: dict[str, set[int]] = {}
    for ev in rec.events:
        by_tx.setdefault(ev.transition_id, set()).add(id(ev.args))
    assert all(len(ids) == 1 for ids in by_tx.values())
    # args are a dict, never None
    rec.clear()
    m.add("D")
    assert rec.events[0].args == {}


def test_handler_state_info() -> None:
    """Go TestHandlerStateInfo: inside D_enter the event shows before, target, called."""
    m = no_rels(["A"], names=["A", "B", "C", "D", "Exception"])
    info: dict[str, object] = {}

    def d_enter(e: am.Event) -> object:
        info["active"] = e.machine.active_states()
        info["target"] = list(e.transition.target)
        info["called"] = "D" in e.mutation.called
        info["exits"] = list(e.transition.exits)
        info["valid"] = e.is_valid()
        info["current"] = e.machine.transition is e.transition
        return None

    def d_state(e: am.Event) -> object:
        info["index"] = e.machine.index("D")
        info["tick"] = e.machine.tick("D")
        return None

    rec = track(m)
    m.bind_handlers(Recorder([], hooks={"D_enter": d_enter, "D_state": d_state}))
    m.set(["D"], {"t": 1})
    assert info == {
        "active": ["A"],
        "target": ["D"],
        "called": True,
        "exits": ["A"],
        "valid": True,
        "current": True,
        "index": 3,
        "tick": 1,
    }
    assert rec.counts()["D_enter"] == 1


def test_event_attributes() -> None:
    """Spec H4/DEV-13: event fields, is_check in checks, is_valid only while current."""
    m = no_rels(id="mach1")
    rec = Recorder(["A_enter", "A_state"])
    m.bind_handlers(rec)
    m.add("A", {"k": 1})
    enter, state = rec.events
    assert enter.name == "A_enter"
    assert state.name == "A_state"
    assert enter.machine is m
    assert enter.machine_id == "mach1"
    assert enter.transition is state.transition
    assert enter.transition_id == enter.transition.id
    assert enter.mutation is enter.transition.mutation
    assert enter.mutation.type is am.MutationType.ADD
    assert enter.args == {"k": 1}
    assert not enter.is_check
    assert not enter.is_valid()  # the transition is over
    checks = Recorder(["B_enter", "A_exit", "any_enter"])
    m.bind_handlers(checks)
    m.can_add("B")
    m.can_remove("A")
    assert checks.calls == ["B_enter", "any_enter", "A_exit", "any_enter"]
    assert all(e.is_check for e in checks.events)
    assert all(e.mutation.is_check for e in checks.events)


@pytest.mark.parametrize(
    ("mutate", "log"),
    [
        pytest.param(lambda m: m.set(["D"]), "[cancel] (D) by D_enter", id="set"),
        pytest.param(lambda m: m.add("D"), "[cancel] (D A) by D_enter", id="add"),
    ],
)
def test_negotiation_cancel(
    caplog: pytest.LogCaptureFixture,
    mutate: Callable[[am.Machine], am.Result],
    log: str,
) -> None:
    """Go TestNegotiationCancel: D_enter returning False cancels set and add."""
    m = no_rels(["A"], log_level=5)
    m.bind_handlers(Recorder([], reject=["D_enter"]))
    capture_logs(caplog)
    assert mutate(m) == CANCELED
    assert m.active_states() == ["A"]
    assert log in log_text(caplog)


def test_negotiation_remove(caplog: pytest.LogCaptureFixture) -> None:
    """Go TestNegotiationRemove: A_exit returning False cancels remove("A")."""
    m = no_rels(["A"], log_level=5)
    m.bind_handlers(Recorder([], reject=["A_exit"]))
    capture_logs(caplog)
    assert m.remove("A") == CANCELED
    assert m.active_states() == ["A"]
    assert "[cancel] () by A_exit" in log_text(caplog)


def test_unbind_handlers() -> None:
    """Go TestUnbindHandlers: detaching a binding removes its handlers."""
    m = no_rels()
    rec = record_all(m)
    other = Recorder(["A_state"])
    bid = m.bind_handlers(other)
    m.add("A")
    assert other.calls == ["A_state"]
    m.detach_handlers(bid)
    m.remove("A")
    m.add("A")
    assert other.calls == ["A_state"]
    assert rec.calls.count("A_state") == 2
    with pytest.raises(KeyError):
        m.detach_handlers(bid)


def test_handlers_called_in_bind_order() -> None:
    """Spec H3: constructor handlers first, then bind_handlers, in bind order."""
    calls: list[str] = []

    def obj(tag: str) -> SimpleNamespace:
        return SimpleNamespace(
            A_enter=lambda e: calls.append(f"{tag}:{e.name}"),
            A_state=lambda e: calls.append(f"{tag}:{e.name}"),
        )

    m = no_rels(handlers=[obj("h1"), obj("h2")])
    m.bind_handlers(obj("h3"))
    m.add("A")
    assert calls == [
        *("h1:A_enter", "h2:A_enter", "h3:A_enter"),
        *("h1:A_state", "h2:A_state", "h3:A_state"),
    ]


def test_first_rejection_stops_later_objects() -> None:
    """Spec H3: the first negotiation rejection stops the later objects for that event."""
    m = no_rels()
    first = Recorder(["A_enter"])
    second = Recorder([], reject=["A_enter"])
    third = Recorder(["A_enter", "any_enter"])
    for r in (first, second, third):
        m.bind_handlers(r)
    assert m.add("A") == CANCELED
    assert first.calls == ["A_enter"]
    assert second.calls == ["A_enter"]
    assert third.calls == []


def test_exception_stops_later_objects() -> None:
    """Spec H3: after a handler raises, no further objects are called for that event."""
    m = no_rels()
    first = Recorder([], raises={"A_state": RuntimeError("boom")})
    second = Recorder(["A_state"])
    m.bind_handlers(first)
    m.bind_handlers(second)
    assert m.add("A") == CANCELED
    assert first.calls == ["A_state"]
    assert second.calls == []
    assert m.is_err()


def test_any_handlers_are_not_per_state() -> None:
    """Spec H2: B_any and any_B are not handler names and never run."""
    m = no_rels()
    rec = Recorder(["B_any", "any_B", "any_enter"])
    m.bind_handlers(rec)
    m.add(["A", "B"])
    m.remove("B")
    assert rec.calls == ["any_enter", "any_enter"]


def test_no_handlers_same_results() -> None:
    """Spec H14: without handlers the results and clocks are the same."""
    m1 = no_rels(["A"])
    m2 = no_rels(["A"])
    record_all(m2)
    for m in (m1, m2):
        assert m.add("C") == EXECUTED
        assert m.remove("D") == EXECUTED
        assert m.set(["B"]) == EXECUTED
    assert m1.time() == m2.time()


def test_coroutine_handler_raises_type_error() -> None:
    """Spec 13.1: binding a coroutine function as a handler raises TypeError."""

    class AsyncHandlers:
        async def A_state(self, e: am.Event) -> None:
            return None

    m = no_rels()
    with pytest.raises(TypeError):
        m.bind_handlers(AsyncHandlers())
    with pytest.raises(TypeError):
        no_rels(handlers=AsyncHandlers())
    m.add("A")
    assert m.is_active("A")
