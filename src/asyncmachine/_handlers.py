"""
Handler discovery: which methods of a bound object are handlers.

For states ``X`` and ``Y`` of the schema a handler is a public callable attribute named:

============== =========== ======================================================
name           phase       called for
============== =========== ======================================================
``X_exit``     negotiation each state leaving
``X_enter``    negotiation each state entering (multi re-entry included)
``X_X``        negotiation each target state already active (not for ``remove``)
``X_Y``        negotiation X active before, Y in the target
``any_enter``  negotiation once per transition, last in negotiation
``X_end``      final       each state that left
``X_state``    final       each state that entered
``any_state``  final       once per accepted transition, last
============== =========== ======================================================

Lookup happens once, at bind time (and again after a schema change); attributes added
to the object later are not seen until it is bound again.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._transition import Event

__all__ = ("HANDLER_SUFFIXES", "ExceptionHandler", "Handler", "scan_handlers")

Handler = Callable[..., object]

HANDLER_SUFFIXES: Final = frozenset({"enter", "exit", "state", "end"})
GLOBAL_HANDLERS: Final = frozenset({"any_enter", "any_state"})


def is_handler_name(name: str, states: Collection[str]) -> bool:
    """True if *name* is a handler name for a schema with *states*."""
    if name in GLOBAL_HANDLERS:
        return True
    head, sep, tail = name.partition("_")
    return bool(sep) and head in states and (tail in HANDLER_SUFFIXES or tail in states)


def scan_handlers(obj: object, states: Collection[str]) -> dict[str, Handler]:
    """
    Return the handlers of *obj* by method name.

    Raises:
        TypeError: a handler is a coroutine function (handlers are synchronous; start
            async work from them with ``mach.fork``).
    """
    found: dict[str, Handler] = {}
    for name in dir(obj):
        if name.startswith("_") or not is_handler_name(name, states):
            continue
        fn = getattr(obj, name, None)
        if not callable(fn):
            continue
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"handler {name!r} of {type(obj).__name__} is a coroutine function; "
                "handlers must be synchronous (use mach.fork() for async work)"
            )
        found[name] = fn
    return found


class ExceptionHandler:
    """
    A mixin with the default ``Exception_state`` handler: it logs the error.

    After a handler exception the line reads ``[error:add] A B (message)`` (the failed
    mutation's type and called states), otherwise ``[error] message``; the traceback
    follows. Both at log level 2.
    """

    def Exception_state(self, e: Event) -> None:
        """Log the error carried by the ``Exception`` transition."""
        mach = e.machine
        err = e.args.get("err")
        trace = e.args.get("err_trace", "")
        panic = e.args.get("panic")
        if isinstance(panic, dict):
            tx = panic.get("transition")
            kind = getattr(tx, "type", "add")
            called = " ".join(panic.get("called_states", ()))
            mach._log(2, "[error:%s] %s (%s)\n%s", kind, called, err, trace)
        else:
            mach._log(2, "[error] %s\n%s", err, trace)
