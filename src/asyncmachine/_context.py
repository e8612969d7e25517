"""
Contexts: small cancellation tokens that tie work to a state's lifetime.

Theory of operation (``spec/machine.md`` sections 8 and 13.2):

- A :class:`Context` is live until it *expires*; expiry is final, happens once, and
  runs the done-callbacks in registration order. A child expires with its parent.
- Each machine owns a root context (expired by ``dispose()``); state contexts are its
  children. A :class:`StateContext` is bound to the tick its state had when it was
  created and expires the next time that tick changes through an applied transition
  (activation, deactivation, multi re-activation) [X1-X4].
- Expiry is the *origin* of cancellation; the *plumbing* is an anyio
  :class:`~anyio.CancelScope` per ``async with ctx.scope():`` block, cancelled by a
  done-callback. Expiry always happens on the machine's loop thread, so cancelling a
  scope from the callback is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio

if TYPE_CHECKING:
    from ._machine import Machine

__all__ = ("Context", "ContextScope", "StateContext")

_log = logging.getLogger("asyncmachine")

DoneCallback = Callable[["Context"], object]


class Context:
    """
    A cancellation token: live until it expires, with callbacks and a parent chain.

    Args:
        parent: expire this context when *parent* expires.
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_event",
        "_expired",
        "_parent",
        "_parent_handle",
        "_reason",
        "_seq",
    )

    def __init__(self, parent: Context | None = None) -> None:
        self._expired = False
        self._reason: str | None = None
        self._callbacks: dict[int, DoneCallback] = {}
        self._seq = 0
        self._event: anyio.Event | None = None
        self._parent = parent
        self._parent_handle: int | None = None
        if parent is not None:
            if parent.expired:
                self._expire_now(parent.reason)
            else:
                self._parent_handle = parent.add_done_callback(self._parent_expired)

    @classmethod
    def background(cls) -> Context:
        """A root context that only expires when :meth:`expire` is called."""
        return cls()

    @property
    def expired(self) -> bool:
        """True once the context expired."""
        return self._expired

    @property
    def reason(self) -> str | None:
        """Why the context expired (``None`` while live)."""
        return self._reason

    @property
    def err(self) -> str | None:
        """Alias of :attr:`reason`, after Go's ``ctx.Err()``."""
        return self._reason

    def expire(self, reason: str = "expired") -> None:
        """Expire the context (and its children) now; later calls do nothing."""
        if self._expired:
            return
        self._expire_now(reason)

    def _parent_expired(self, parent: Context) -> None:
        self._parent_handle = None
        self._expire_now(parent.reason)

    def _expire_now(self, reason: str | None) -> None:
        self._expired = True
        self._reason = reason or "expired"
        if self._parent is not None and self._parent_handle is not None:
            self._parent.remove_done_callback(self._parent_handle)
            self._parent_handle = None
        self._parent = None
        if self._event is not None:
            self._event.set()
        callbacks = list(self._callbacks.values())
        self._callbacks.clear()
        for cb in callbacks:
            try:
                cb(self)
            except Exception:  # noqa: BLE001 - expiry runs inside transitions
                # A failing callback must not leave a transition half-applied.
                _log.exception("context done-callback %r raised", cb)

    def add_done_callback(self, fn: DoneCallback) -> int:
        """
        Call ``fn(ctx)`` when the context expires (at once if it already has).

        Returns:
            A handle for :meth:`remove_done_callback`.
        """
        self._seq += 1
        if self._expired:
            fn(self)
            return self._seq
        self._callbacks[self._seq] = fn
        return self._seq

    def remove_done_callback(self, handle: int) -> None:
        """Forget a callback registered with :meth:`add_done_callback`."""
        self._callbacks.pop(handle, None)

    async def wait(self) -> None:
        """Return once the context expired (at once if it already has)."""
        if self._expired:
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()

    def scope(self) -> ContextScope:
        """
        ``async with ctx.scope():`` runs its body until the context expires; the body
        is then cancelled and the block ends without an exception.
        """
        return ContextScope(self)

    def __repr__(self) -> str:
        state = f"expired ({self._reason})" if self._expired else "live"
        return f"<{type(self).__name__} {state}>"


class StateContext(Context):
    """
    A context bound to one tick of one state; made by ``mach.new_state_ctx(state)``.

    Attributes:
        machine_id: the machine's id.
        state: the state name.
        tick: the state's tick when the context was made.
    """

    __slots__ = ("_machine", "machine_id", "state", "tick")

    def __init__(
        self, machine: Machine, state: str, tick: int, parent: Context | None
    ) -> None:
        self._machine = machine
        self.machine_id = machine.id
        self.state = state
        self.tick = tick
        super().__init__(parent)

    def scope(self) -> ContextScope:
        """See :meth:`Context.scope`; also binds the machine to the running loop."""
        self._machine._bind_loop()
        return ContextScope(self)

    async def wait(self) -> None:
        """See :meth:`Context.wait`."""
        self._machine._bind_loop()
        await super().wait()

    def __repr__(self) -> str:
        state = f"expired ({self._reason})" if self._expired else "live"
        return f"<StateContext {self.machine_id}/{self.state}@{self.tick} {state}>"


class ContextScope:
    """The async context manager returned by :meth:`Context.scope`."""

    __slots__ = ("_cs", "_ctx", "_handle")

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._cs: anyio.CancelScope | None = None
        self._handle: int | None = None

    @property
    def cancel_scope(self) -> anyio.CancelScope:
        """The underlying anyio cancel scope (inside the block)."""
        if self._cs is None:
            raise RuntimeError("the scope is not entered")
        return self._cs

    @property
    def cancelled_caught(self) -> bool:
        """True if the block was ended by the context's expiry."""
        return self._cs is not None and self._cs.cancelled_caught

    async def __aenter__(self) -> Self:
        cs = anyio.CancelScope()
        cs.__enter__()
        self._cs = cs
        ctx = self._ctx

        def cancel(c: Context) -> None:
            cs.cancel(c.reason)

        if ctx.expired:
            cs.cancel(ctx.reason)
        else:
            self._handle = ctx.add_done_callback(cancel)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._handle is not None:
            self._ctx.remove_done_callback(self._handle)
            self._handle = None
        assert self._cs is not None
        return bool(self._cs.__exit__(exc_type, exc, tb))
