"""Errors and exceptions (spec section 7) and the S9 schema-conflict start."""

from __future__ import annotations

import asyncio
import logging

import pytest
from core_helpers import (
    Recorder,
    all_handler_names,
    capture_logs,
    log_lines,
    log_text,
    machine,
    no_rels,
    record_all,
)

import asyncmachine as am

EXECUTED = am.Result.EXECUTED
CANCELED = am.Result.CANCELED

# -- E1 add_err / add_err_state --------------------------------------------------------


def test_add_err() -> None:
    """Go TestAddErr: add_err_state activates the state and Exception; add_err too."""
    m = no_rels()
    err = ValueError("test")
    assert m.add_err_state("B", err) == EXECUTED
    assert m.is_active("B")
    assert m.is_err()
    assert m.err() is err
    err2 = ValueError("test2")
    assert m.add_err(err2) == EXECUTED
    assert m.err() is err2
    assert m.tick("Exception") == 3


def test_add_err_args() -> None:
    """Spec E1: handlers receive err, err_trace and the caller's args."""
    m = no_rels()
    rec = Recorder(["Exception_state", "B_state"])
    m.bind_handlers(rec)
    try:
        raise ValueError("boom")
    except ValueError as exc:
        err = exc
    m.add_err_state("B", err, {"x": 1})
    assert rec.calls == ["B_state", "Exception_state"]
    ev = rec.events[0]
    assert ev.mutation.called == ("B", "Exception")
    assert ev.args["err"] is err
    assert ev.args["x"] == 1
    trace = ev.args["err_trace"]
    assert isinstance(trace, str)
    assert "ValueError: boom" in trace
    assert "test_add_err_args" in trace
    assert "panic" not in ev.args


def test_add_err_none_and_cancellation() -> None:
    """Spec E1: None and task cancellation errors are not errors (CANCELED)."""
    m = no_rels()
    errors: list[BaseException] = []
    m.on_error = lambda _m, err: errors.append(err)
    assert m.add_err(None) == CANCELED
    assert m.add_err(asyncio.CancelledError()) == CANCELED
    assert m.add_err_state("B", None) == CANCELED
    assert not m.is_err()
    assert m.err() is None
    assert errors == []
    assert m.queue_tick() == 1


def test_err_kept_after_exception_removed() -> None:
    """Spec E1: err() returns the last error even after Exception is removed."""
    m = no_rels()
    err = RuntimeError("x")
    m.add_err(err)
    m.remove("Exception")
    assert not m.is_err()
    assert m.err() is err


def test_add_err_from_handler_is_queued() -> None:
    """Spec E1: add_err is a normal appended add, never de-duplicated."""
    m = no_rels()
    results: list[am.Result] = []

    def a_state(e: am.Event) -> object:
        err = ValueError("same")
        results.append(e.machine.add_err(err))
        results.append(e.machine.add_err(err))
        return None

    m.bind_handlers(Recorder([], hooks={"A_state": a_state}))
    m.add("A")
    assert results == [3, 4]
    assert m.tick("Exception") == 3
    assert m.queue_tick() == 4


def test_on_error_callback() -> None:
    """Spec E1: on_error(mach, err) runs for add_err and for handler exceptions."""
    m = no_rels()
    seen: list[tuple[am.Machine, BaseException]] = []
    m.on_error = lambda mach, err: seen.append((mach, err))
    boom = RuntimeError("b")
    m.bind_handlers(Recorder([], raises={"B_state": boom}))
    err = ValueError("a")
    m.add_err(err)
    m.add("B")
    assert seen == [(m, err), (m, boom)]


# -- E3 negotiation exceptions ---------------------------------------------------------


class PartialNegotiationPanic(am.ExceptionHandler):
    """B_enter raises."""

    def B_enter(self, e: am.Event) -> None:
        raise RuntimeError("B_enter panic")


def test_partial_negotiation_panic(caplog: pytest.LogCaptureFixture) -> None:
    """Go TestPartialNegotiationPanic: B_enter raising cancels add("B")."""
    m = no_rels(["A"], log_level=5)
    m.bind_handlers(PartialNegotiationPanic())
    capture_logs(caplog)
    assert m.add("B") == CANCELED
    assert m.active_states() == ["A", "Exception"]
    assert m.tick("B") == 0
    assert isinstance(m.err(), RuntimeError)
    assert "[cancel] (B A) by recover" in log_text(caplog)


def test_negotiation_exception_prepends_exception() -> None:
    """Spec E3: Exception runs right after the failed transition, before its queue."""
    m = no_rels(["A"])

    def b_enter(e: am.Event) -> object:
        e.machine.add("C")
        raise RuntimeError("b")

    rec = Recorder(["C_state", "Exception_state"], hooks={"B_enter": b_enter})
    m.bind_handlers(rec)
    assert m.add("B") == CANCELED
    assert rec.calls == ["B_enter", "Exception_state", "C_state"]
    ev = rec.events[1]
    assert ev.mutation.called == ("Exception",)
    assert ev.mutation.queue_tick == 0
    assert isinstance(ev.args["err"], RuntimeError)
    panic = ev.args["panic"]
    assert isinstance(panic, dict)
    assert panic["called_states"] == ["B"]
    assert panic["states_before"] == ["A"]
    assert panic["transition"] is rec.events[0].transition
    assert m.active_states() == ["A", "C", "Exception"]


def test_exception_in_check_and_any_enter() -> None:
    """Spec E3: exceptions in checks and in any_enter cancel and add Exception."""
    m = no_rels()
    m.bind_handlers(Recorder([], raises={"B_enter": RuntimeError("check")}))
    assert m.can_add("B") == CANCELED
    assert m.active_states() == ["Exception"]

    m = no_rels()
    m.bind_handlers(Recorder([], raises={"any_enter": RuntimeError("any")}))
    assert m.add("A") == CANCELED
    assert m.not_active("A")
    assert str(m.err()) == "any"


# -- E4 final exceptions ---------------------------------------------------------------


class PartialFinalPanic(am.ExceptionHandler):
    """B_state raises."""

    def B_state(self, e: am.Event) -> None:
        raise RuntimeError("B_state panic")


def test_partial_final_panic(caplog: pytest.LogCaptureFixture) -> None:
    """Go TestPartialFinalPanic: B_state raising keeps A, rolls back B and C."""
    m = no_rels(log_level=5)
    m.bind_handlers(PartialFinalPanic())
    capture_logs(caplog)
    assert m.add(["A", "B", "C"]) == CANCELED
    assert m.active_states() == ["A", "Exception"]
    text = log_text(caplog)
    assert "[error:add] A B C (B_state panic)" in text
    assert "[cancel] (A B C) by recover" in text
    error_line = next(x for x in log_lines(caplog) if "[error:add]" in x)
    assert "PartialFinalPanic" not in error_line.splitlines()[0]
    assert "in B_state" in error_line  # the trace follows the message


def test_exception_handler_logs_at_level_2(caplog: pytest.LogCaptureFixture) -> None:
    """Spec 13.5: am.ExceptionHandler logs "[error:add] A B C (" at log level 2."""
    m = no_rels(log_level=2)
    m.bind_handlers(PartialFinalPanic())
    capture_logs(caplog)
    m.add(["A", "B", "C"])
    errors = [r for r in caplog.records if "[error:add] A B C (" in r.getMessage()]
    assert len(errors) == 1
    assert errors[0].levelno >= logging.INFO
    assert "[cancel]" not in log_text(caplog)  # level 3

    caplog.clear()
    m = no_rels(log_level=1)
    m.bind_handlers(PartialFinalPanic())
    m.add(["A", "B", "C"])
    assert "[error" not in log_text(caplog)


def test_exception_handler_plain_error(caplog: pytest.LogCaptureFixture) -> None:
    """Spec 13.5: without handler-exception info the line is "[error] msg"."""
    m = no_rels(log_level=2, handlers=am.ExceptionHandler())
    capture_logs(caplog)
    m.add_err(ValueError("plain"))
    assert any(
        line.split("\n")[0].endswith("[error] plain") for line in log_lines(caplog)
    )


def test_final_exception_worked_example() -> None:
    """Spec E4 example: D active, B_state raises during set(["A","B","C"])."""
    m = no_rels(["D"])
    rec = record_all(m, raises={"B_state": RuntimeError("B_state")})
    assert m.set(["A", "B", "C"]) == CANCELED
    assert rec.calls == [
        *("D_exit", "A_enter", "B_enter", "C_enter", "D_A", "D_B", "D_C"),
        *("any_enter", "D_end", "A_state", "B_state"),
        *("Exception_enter", "A_A", "A_Exception", "any_enter"),
        *("Exception_state", "any_state"),
    ]
    assert m.string_all() == "(A:1 Exception:1) [B:2 C:2 D:2]"
    rec.clear()
    m.add("D")
    assert rec.events[0].transition.states_before == ("Exception", "A")


def test_final_exception_in_end_handler() -> None:
    """Spec E4: an exception in X_end rolls nothing back and skips the other finals."""
    m = machine(
        {"A": am.State(), "B": am.State(), "C": am.State(), "M": am.State()},
        ["A", "B", "M"],
    )
    rec = Recorder(
        ["B_end", "C_state", "any_state", "Exception_state"],
        raises={"A_end": RuntimeError("A_end")},
    )
    m.bind_handlers(rec)
    assert m.set(["M", "C"]) == CANCELED
    assert rec.calls == ["A_end", "Exception_state", "any_state"]
    assert m.active_states() == ["C", "Exception", "M"]
    assert m.clock(["A", "B", "C", "M"]) == {"A": 2, "B": 2, "C": 1, "M": 1}


def test_final_exception_in_any_state() -> None:
    """Spec E4: an exception in any_state rolls nothing back; the result is CANCELED."""
    m = no_rels()
    calls: list[str] = []

    def any_state(e: am.Event) -> object:
        calls.append(e.transition.called[0])
        if e.transition.called == ("A",):
            raise RuntimeError("any_state")
        return None

    m.bind_handlers(Recorder([], hooks={"any_state": any_state}))
    assert m.add("A") == CANCELED
    assert m.active_states() == ["A", "Exception"]
    assert m.tick("A") == 1
    assert calls == ["A", "Exception"]


def test_final_exception_no_extra_ticks() -> None:
    """Spec E4/DEV-5: rollback gives no extra ticks to called active multi states."""
    m = machine({"M": am.State(multi=True), "B": am.State()}, ["M"])
    rec = Recorder(["M_state"], raises={"B_state": RuntimeError("b")})
    m.bind_handlers(rec)
    assert m.add(["M", "B"]) == CANCELED
    assert rec.calls == ["M_state", "B_state"]
    assert m.clock(["M", "B"]) == {"M": 3, "B": 2}
    assert m.active_states() == ["Exception", "M"]


# -- E5 / E6 ---------------------------------------------------------------------------


def test_no_nested_exception() -> None:
    """Spec E5: an exception while adding Exception is not turned into another one."""
    m = no_rels()
    boom = RuntimeError("nested")
    rec = Recorder(["Exception_enter"], raises={"Exception_state": boom})
    m.bind_handlers(rec)
    assert m.add_err(ValueError("first")) == CANCELED
    assert rec.calls == ["Exception_enter", "Exception_state"]
    assert not m.is_err()
    assert m.tick("Exception") == 2
    assert m.err() is boom
    assert m.add("A") == EXECUTED
    assert m.active_states() == ["A"]


def test_no_nested_exception_negotiation() -> None:
    """Spec E5: an exception in Exception_enter cancels without a new Exception."""
    m = no_rels()
    rec = Recorder([], raises={"Exception_enter": RuntimeError("enter")})
    m.bind_handlers(rec)
    assert m.add_err(ValueError("first")) == CANCELED
    assert rec.calls == ["Exception_enter"]
    assert not m.is_err()
    assert m.tick("Exception") == 0
    assert m.queue_len() == 0


def test_catch_exceptions_false_reraises() -> None:
    """Spec E6: catch_exceptions=False re-raises, keeps the queue, adds no Exception."""
    m = no_rels(catch_exceptions=False)
    boom = RuntimeError("boom")

    def a_state(e: am.Event) -> object:
        e.machine.add("B")
        raise boom

    m.bind_handlers(Recorder([], hooks={"A_state": a_state}))
    with pytest.raises(RuntimeError) as info:
        m.add("A")
    assert info.value is boom
    assert m.err() is boom
    assert not m.is_err()
    assert m.tick("A") == 2
    assert m.queue_len() == 1
    assert m.transition is None
    m.add("C")
    assert m.active_states() == ["B", "C"]
    assert m.queue_len() == 0


def test_catch_exceptions_false_negotiation() -> None:
    """Spec E6: a negotiation exception is re-raised after the cancel."""
    m = no_rels(["A"], catch_exceptions=False)
    m.bind_handlers(Recorder([], raises={"B_enter": KeyError("k")}))
    with pytest.raises(KeyError):
        m.add("B")
    assert m.active_states() == ["A"]
    assert m.add("C") == EXECUTED


# -- S9 / S3 ---------------------------------------------------------------------------

CONFLICT = {"A": am.State(require=["B"], remove=["B"]), "B": am.State()}


def test_require_remove_conflict_starts_in_exception() -> None:
    """Spec S9: a require-remove conflict does not raise, Exception starts at tick 1."""
    m = am.Machine(CONFLICT)
    assert m.is_err()
    assert m.tick("Exception") == 1
    assert isinstance(m.err(), am.SchemaError)
    assert m.schema["A"].require == ("B",)
    assert m.schema["A"].remove == ("B",)


def test_require_remove_conflict_with_handlers() -> None:
    """Spec S9: with handlers the first binding adds the error again (tick 3)."""
    rec = Recorder(["Exception_state"])
    m = am.Machine(CONFLICT, handlers=rec)
    assert m.tick("Exception") == 3
    assert rec.calls == ["Exception_state"]
    assert isinstance(rec.events[0].args["err"], am.SchemaError)

    m = am.Machine(CONFLICT)
    m.bind_handlers(Recorder([]))
    assert m.tick("Exception") == 3
    m.bind_handlers(Recorder([]))
    assert m.tick("Exception") == 3


def test_user_defined_non_multi_exception() -> None:
    """Spec S3: a non-multi user Exception ignores a second add_err (self handler only)."""
    m = machine({"A": am.State(), "Exception": am.State()})
    assert not m.schema["Exception"].multi
    m.add_err(ValueError("1"))
    rec = Recorder(all_handler_names(m.state_names()))
    m.bind_handlers(rec)
    rec.clear()
    m.add_err(ValueError("2"))
    assert rec.calls == ["Exception_Exception", "any_enter", "any_state"]
    assert m.tick("Exception") == 1
