"""
Waiters: the bookkeeping behind ``mach.when*``.

Rules (``spec/machine.md`` section 9):

- A waiter resolves ``True`` when its condition holds at a check point, ``False`` when
  its ``ctx`` expires or the machine is disposed [W0]. It resolves once.
- Check points: after every processed queue item, after a rollback, on import, on ctx
  expiry and on dispose [W1, DEV-8, DEV-9, DEV-15]. Conditions are tested against the
  actual state, never against incremental bookkeeping.
- State waiters are indexed by state, so a transition only looks at the waiters of the
  states whose tick changed.
- Resolving sets an :class:`anyio.Event`; the awaiting task runs later, after the
  mutation call that resolved it returned [W1].
- Cancelling the awaiting task unregisters the waiter (the ``finally`` of the await).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio

from ._context import Context

__all__ = ("EventLike", "LoopEvent", "Waiter")


class EventLike(Protocol):
    """An event of the running backend (asyncio, trio or anyio's own)."""

    def set(self) -> object:
        """Wake every waiter."""
        ...

    def wait(self) -> Awaitable[object]:
        """Return once set."""
        ...


class LoopEvent:
    """
    A one-shot event on an asyncio loop: one future, no waiter deque.

    Each :class:`Waiter` has one awaiting task, so a bare future is enough; it is
    cheaper to make than ``asyncio.Event`` and is cancelled with the task awaiting it.
    """

    __slots__ = ("_fut",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._fut: asyncio.Future[bool] = loop.create_future()

    def set(self) -> None:
        """Wake the waiting task (no-op once done or cancelled)."""
        if not self._fut.done():
            self._fut.set_result(True)

    def is_set(self) -> bool:
        """True once set (or cancelled)."""
        return self._fut.done()

    def wait(self) -> asyncio.Future[bool]:
        """The awaitable to wait on."""
        return self._fut


class Waiter:
    """One pending ``when*`` call."""

    __slots__ = ("check", "ctx", "ctx_handle", "done", "event", "result", "states")

    def __init__(
        self,
        check: Callable[[], bool] | None,
        states: tuple[str, ...] = (),
        event: EventLike | None = None,
    ) -> None:
        self.check = check
        self.states = states
        # The machine passes its backend's native event (cheaper than anyio.Event,
        # which detects the backend on every creation).
        self.event: EventLike = event if event is not None else anyio.Event()
        self.done = False
        self.result = False
        self.ctx: Context | None = None
        self.ctx_handle: int | None = None

    def resolve(self, result: bool) -> None:
        """Resolve once with *result* and wake the awaiting task."""
        if self.done:
            return
        self.done = True
        self.result = result
        self.event.set()
        if self.ctx is not None and self.ctx_handle is not None:
            self.ctx.remove_done_callback(self.ctx_handle)
            self.ctx_handle = None

    def bind_ctx(self, ctx: Context | None) -> None:
        """Resolve ``False`` as soon as *ctx* expires [DEV-9]."""
        if ctx is None:
            return
        self.ctx = ctx
        self.ctx_handle = ctx.add_done_callback(lambda _c: self.resolve(False))
