"""
The harness finds bugs planted in the example order machine's handlers
(``examples/order_machine.py``), and its reproduction snippet replays them.

The rules classes live at module level so that the snippet can import them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import invariant, run_state_machine_as_test

import asyncmachine as am
from asyncmachine.testing import InvariantViolation, MachineRules, RunawayError
from asyncmachine.testing._rules import REPRO_HEADER

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from order_machine import Order
from test_order_machine import OrderRules

SETTINGS = settings(
    max_examples=300,
    stateful_step_count=15,
    deadline=None,
    derandomize=True,
    database=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.generate, Phase.shrink],  # no explain phase: faster, same snippet
)


class ExpressLaneOrder(Order):
    """Planted bug: the express lane (2 items) forgets to check the amount."""

    def Paid_enter(self, e: am.Event) -> bool:
        return len(self.items) == 2 or super().Paid_enter(e)


class ExpressLaneRules(OrderRules):
    """The example's rules, on the buggy handlers."""

    handlers = ExpressLaneOrder


class LabelPrinterOrder(Order):
    """Planted bug: the label printer jams once, on the first order with cake."""

    jammed = False

    def Shipped_state(self, e: am.Event) -> None:
        if "cake" in self.items and not self.jammed:
            self.jammed = True
            raise OSError("label printer jammed")
        super().Shipped_state(e)


class StuckPrinterOrder(Order):
    """Planted bug: the printer never recovers; auto Shipped retries forever."""

    def Shipped_state(self, e: am.Event) -> None:
        if "cake" in self.items:
            raise OSError("label printer jammed")
        super().Shipped_state(e)


class StuckPrinterRules(OrderRules):
    """The example's rules on handlers that make a mutation call loop forever."""

    handlers = StuckPrinterOrder
    max_transitions = 100


class LabelPrinterRules(OrderRules):
    """The example's rules on the buggy handlers, plus: no I/O errors, ever."""

    handlers = LabelPrinterOrder

    @invariant()
    def no_io_errors(self) -> None:
        err = self.mach.err()
        assert not isinstance(err, OSError), f"error: {err!r}"


class LyingOrderRules(MachineRules):
    """Planted core bug: the machine forgets Paid's requirement when it reads it."""

    schema = OrderRules.schema
    handlers = Order

    def new_machine(self) -> am.Machine:
        class Forgetful(am.Machine):
            @property
            def schema(self) -> dict[str, am.State]:
                real = dict(super().schema)
                real["Cancelled"] = am.State(require=["Cart"])
                return real

        return Forgetful(self.schema, handlers=self.handler_obj)


def run_and_catch(rules: type[MachineRules]) -> tuple[AssertionError, str]:
    """Run *rules* until it fails; the error and the reproduction snippet."""
    with pytest.raises(AssertionError) as info:
        run_state_machine_as_test(rules, settings=SETTINGS)
    notes = getattr(info.value, "__notes__", [])
    snippets = [n for n in notes if n.startswith(REPRO_HEADER)]
    assert len(snippets) == 1, notes
    return info.value, snippets[0]


def replay(snippet: str) -> AssertionError:
    """exec() the snippet; it must fail the same way."""
    compile(snippet, "<reproduction>", "exec")  # valid Python
    with pytest.raises(AssertionError) as info:
        exec(snippet, {})  # noqa: S102 - running the snippet is the test
    return info.value


def first_line(err: BaseException) -> str:
    """The message without pytest's assertion details (they show machine ids)."""
    return str(err).splitlines()[0]


def test_wrong_amount_ships_is_found_and_replayed() -> None:
    """A user invariant catches the express-lane bug; the snippet reproduces it."""
    err, snippet = run_and_catch(ExpressLaneRules)
    # an unchecked amount ships underpaid orders, or accepts a payment of 0
    assert re.match(r"shipped, but paid \d+ of \d+|paid 0 \(", str(err)), err
    assert f"from {__name__} import ExpressLaneRules" in snippet
    assert snippet.count("mach.add(['Cart']") >= 2  # the express lane needs 2 items
    again = replay(snippet)
    assert type(again) is type(err)
    assert first_line(again) == first_line(err)


def test_rare_handler_exception_is_found_and_replayed() -> None:
    """A raise under a rare condition surfaces through a user invariant."""
    err, snippet = run_and_catch(LabelPrinterRules)
    assert "label printer jammed" in str(err)
    assert first_line(replay(snippet)) == first_line(err)


def test_endless_loop_is_found_and_replayed() -> None:
    """A handler loop the core cannot stop ends as a RunawayError, not a hang."""
    with pytest.raises(RunawayError) as info:
        run_state_machine_as_test(StuckPrinterRules, settings=SETTINGS)
    assert "more than 100 transitions" in str(info.value)
    notes = getattr(info.value, "__notes__", [])
    (snippet,) = [n for n in notes if n.startswith(REPRO_HEADER)]
    with pytest.raises(RunawayError, match="more than 100 transitions"):
        exec(snippet, {})  # noqa: S102 - running the snippet is the test


def test_core_invariant_violation_is_found_and_replayed() -> None:
    """check_invariants() failures reproduce too, with the invariant's name."""
    err, snippet = run_and_catch(LyingOrderRules)
    assert isinstance(err, InvariantViolation)
    assert err.invariant == "require"
    again = replay(snippet)
    assert isinstance(again, InvariantViolation)
    assert again.invariant == "require"
    assert again.states == err.states
