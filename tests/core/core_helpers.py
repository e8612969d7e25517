"""Shared helpers of the core tests: a handler-call recorder and the Go test machines."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

import asyncmachine as am

HandlerFn = Callable[[am.Event], object]

#: The handlers of Go's ``trackTransitions`` recorder, in Python names. ``B_any`` is
#: kept on purpose: it is not a handler name (spec H2) and must never be called.
TRACKED = (
    "any_enter",
    "any_state",
    "A_D",
    "A_C",
    "A_exit",
    "A_end",
    "A_A",
    "A_state",
    "A_B",
    "B_enter",
    "B_end",
    "B_state",
    "B_B",
    "B_exit",
    "B_D",
    "B_any",
    "B_C",
    "C_enter",
    "C_state",
    "D_enter",
    "D_state",
)


def all_handler_names(states: Iterable[str]) -> list[str]:
    """Every handler name for *states*: enter/exit/state/end, self, pairs, globals."""
    names = list(states)
    out = ["any_enter", "any_state"]
    for x in names:
        out += [f"{x}_enter", f"{x}_exit", f"{x}_state", f"{x}_end"]
        out += [f"{x}_{y}" for y in names]
    return out


class Recorder:
    """
    A handler object whose handlers are function-valued attributes recording each call.

    Args:
        names: handler names to record.
        reject: handler names that return False (after being recorded).
        raises: handler names that raise the given exception (after being recorded).
        hooks: handler names mapped to functions run after recording; the function's
            return value is the handler's return value.
    """

    def __init__(
        self,
        names: Iterable[str],
        *,
        reject: Iterable[str] = (),
        raises: Mapping[str, BaseException] | None = None,
        hooks: Mapping[str, HandlerFn] | None = None,
    ) -> None:
        self.calls: list[str] = []
        self.events: list[am.Event] = []
        rejecting = set(reject)
        raising = dict(raises or {})
        hooked = dict(hooks or {})
        for name in dict.fromkeys([*names, *rejecting, *raising, *hooked]):
            setattr(
                self,
                name,
                self._make(
                    name, name in rejecting, raising.get(name), hooked.get(name)
                ),
            )

    def _make(
        self,
        name: str,
        reject: bool,
        exc: BaseException | None,
        hook: HandlerFn | None,
    ) -> HandlerFn:
        def handler(e: am.Event) -> object:
            self.calls.append(name)
            self.events.append(e)
            if exc is not None:
                raise exc
            if hook is not None:
                return hook(e)
            return False if reject else None

        return handler

    def counts(self) -> Counter[str]:
        """Calls per handler name."""
        return Counter(self.calls)

    def clear(self) -> None:
        """Forget the calls recorded so far."""
        self.calls.clear()
        self.events.clear()


def machine(
    schema: Mapping[str, am.State],
    initial: Iterable[str] | None = None,
    **opts: Any,
) -> am.Machine:
    """A machine for *schema*, with ``set(initial)`` applied when given."""
    mach = am.Machine(schema, **opts)
    if initial is not None:
        mach.set(list(initial))
    return mach


def no_rels(
    initial: Iterable[str] | None = None,
    extra: Mapping[str, am.State] | None = None,
    **opts: Any,
) -> am.Machine:
    """Go ``NewNoRels``: states A-D without relations; *extra* replaces definitions."""
    schema: dict[str, am.State] = {n: am.State() for n in ("A", "B", "C", "D")}
    schema.update(extra or {})
    return machine(schema, initial, **opts)


REL_SCHEMA: dict[str, am.State] = {
    "A": am.State(auto=True, require=["C"]),
    "B": am.State(multi=True, add=["C"]),
    "C": am.State(after=["D"]),
    "D": am.State(add=["C", "B"]),
}


def rels(initial: Iterable[str] | None = None, **opts: Any) -> am.Machine:
    """Go ``NewRels``: A(auto, require C), B(multi, add C), C(after D), D(add C B)."""
    return machine(REL_SCHEMA, initial, **opts)


def track(mach: am.Machine) -> Recorder:
    """Go ``trackTransitions``: bind a recorder of the :data:`TRACKED` handlers."""
    rec = Recorder(TRACKED)
    mach.bind_handlers(rec)
    return rec


def record_all(
    mach: am.Machine,
    *,
    reject: Iterable[str] = (),
    raises: Mapping[str, BaseException] | None = None,
    hooks: Mapping[str, HandlerFn] | None = None,
) -> Recorder:
    """Bind a recorder of every handler name of *mach*."""
    rec = Recorder(
        all_handler_names(mach.state_names()),
        reject=reject,
        raises=raises,
        hooks=hooks,
    )
    mach.bind_handlers(rec)
    return rec


def capture_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Capture every record of the ``asyncmachine`` logger."""
    caplog.set_level(logging.DEBUG, logger="asyncmachine")


def log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The formatted messages logged by ``asyncmachine`` so far."""
    return [r.getMessage() for r in caplog.records if r.name == "asyncmachine"]


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """All ``asyncmachine`` messages joined by newlines."""
    return "\n".join(log_lines(caplog))
