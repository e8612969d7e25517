"""
Tracers: objects with optional hook methods the machine calls as it works.

A tracer may subclass :class:`TracerNoOp` and override some hooks, or be any object with
some of the hook methods. Only hooks a tracer really implements are called. A hook that
raises is disabled for that tracer and the error is logged: tracing never breaks a
machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._core._mutation import Mutation
    from ._machine import Machine
    from ._transition import Transition

__all__ = ("HOOKS", "TracerNoOp")

_log = logging.getLogger("asyncmachine")

HOOKS: Final = (
    "machine_init",
    "new_submachine",
    "mutation_queued",
    "transition_init",
    "transition_start",
    "handler_start",
    "handler_end",
    "transition_finals",
    "transition_end",
    "queue_end",
    "schema_change",
    "verify_states",
    "machine_dispose",
)


class TracerNoOp:
    """A tracer whose hooks do nothing; subclass it and override what you need."""

    def machine_init(self, mach: Machine) -> object:
        """The machine was created (tracers passed to the constructor only)."""
        return None

    def new_submachine(self, parent: Machine, mach: Machine) -> None:
        """A machine was created with ``parent=`` set to a traced machine."""

    def mutation_queued(self, mach: Machine, mutation: Mutation) -> None:
        """A mutation entered the queue (appended or prepended)."""

    def transition_init(self, tx: Transition) -> None:
        """Target, acceptance, exits and enters of *tx* are known."""

    def transition_start(self, tx: Transition) -> None:
        """Negotiation of *tx* starts."""

    def handler_start(self, tx: Transition, binding_id: int, name: str) -> None:
        """A handler method is about to be called."""

    def handler_end(self, tx: Transition, binding_id: int, name: str) -> None:
        """A handler method returned, raised or timed out."""

    def transition_finals(self, tx: Transition) -> None:
        """The states were applied; final handlers are next."""

    def transition_end(self, tx: Transition) -> None:
        """*tx* completed (canceled transitions and checks included)."""

    def queue_end(self, mach: Machine) -> None:
        """A drain emptied the queue."""

    def schema_change(self, mach: Machine, old_schema: dict[str, object]) -> None:
        """The schema was replaced with ``set_schema``."""

    def verify_states(self, mach: Machine) -> None:
        """The state order was set explicitly (import)."""

    def machine_dispose(self, machine_id: str) -> None:
        """The machine is being disposed."""


def tracer_hooks(tracers: list[object]) -> dict[str, list[Callable[..., object]]]:
    """For each hook, the bound methods of the tracers that implement it."""
    out: dict[str, list[Callable[..., object]]] = {}
    for hook in HOOKS:
        base = getattr(TracerNoOp, hook)
        fns = []
        for t in tracers:
            fn = getattr(t, hook, None)
            if fn is None or not callable(fn):
                continue
            if getattr(type(t), hook, None) is base:
                continue  # inherited no-op
            fns.append(fn)
        if fns:
            out[hook] = fns
    return out


def hook_failed(tracer_fn: Callable[..., object], exc: BaseException) -> None:
    """Log a failing tracer hook (it gets disabled by the caller)."""
    _log.error("tracer hook %r raised, disabled: %r", tracer_fn, exc, exc_info=exc)
