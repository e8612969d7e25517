"""
The thin pump between an anyio byte stream and the sans-IO :class:`Connection`.

Rules: only :meth:`Link.send` writes to the socket, under one lock, and it builds the
event *inside* the lock, so a clock carried by a frame is computed at the moment the
frame is written (never older than a frame written before it). anyio exceptions never
leave this module: they become :class:`RpcConnectionError` or a clean end of stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ._errors import ProtocolError, RemoteProtocolError, RpcConnectionError
from ._events import Kind
from ._protocol import Connection, NextEvent

if TYPE_CHECKING:
    from anyio.abc import ByteStream, TaskGroup

    from ._events import Event, Result

__all__ = ("Link", "Pending", "close_task_group", "collapse")


def _NOTHING() -> None:
    """A build function that sends nothing (only flushes the backlog)."""
    return


_RECEIVE_CHUNK = 65536
#: Slots of the per-kind counters: index = frame kind code, 0 = not a known kind.
KIND_SLOTS = max(Kind) + 1
_ARRAY4 = 0x94  # msgpack fixarray of 4: every frame is [kind, seq, re, body]


def frame_kind(frame: bytes) -> int:
    """The kind code of an encoded frame (length prefix included), 0 if unknown."""
    if len(frame) > 5 and frame[4] == _ARRAY4 and frame[5] < KIND_SLOTS:
        return frame[5]
    return 0


class Pending:
    """A request sent on a link, waiting for its RESULT (``value``) or ERROR."""

    __slots__ = ("error", "event", "value")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.value: Result | None = None
        self.error: BaseException | None = None


class Link:
    """One connection: framing, sequence numbers and the socket, with statistics."""

    def __init__(
        self,
        stream: ByteStream,
        role: str,
        *,
        max_frame: int,
        write_timeout: float | None = 10.0,
    ) -> None:
        self.stream = stream
        self.conn = Connection(role, max_frame=max_frame, check_outgoing=False)  # type: ignore[arg-type]
        self.lock = anyio.Lock()
        self.write_timeout = write_timeout
        now = anyio.current_time()
        self.last_received = now
        self.last_sent = now
        self.bytes_in = 0
        self.bytes_out = 0
        self.frames_in = 0
        self.frames_out = 0
        #: Per-kind statistics, indexed by frame kind code (see :data:`KIND_SLOTS`).
        self.frames_in_kind = [0] * KIND_SLOTS
        self.frames_out_kind = [0] * KIND_SLOTS
        self.bytes_in_kind = [0] * KIND_SLOTS
        self.bytes_out_kind = [0] * KIND_SLOTS
        # Invariant: bytes_in already attributed to received frames (bytes_in_kind).
        self._bytes_in_framed = 0
        self.closed = False
        self.write_started: float | None = None
        self._backlog: list[bytes] = []
        self._flushing = False
        self.eof = False
        #: Set once a stalled write made a heartbeat close the link.
        self.stalled_out = False

    async def send(self, build: Callable[[], Event | None] | Event) -> int:
        """
        Write one frame; *build* may be a callable making the event under the write
        lock (return ``None`` to send nothing). Returns the frame's seq (0 if none).

        Raises:
            RpcConnectionError: the socket failed or the write timed out.
            FrameTooLarge: the frame exceeds the peer's limit (nothing was sent).
        """
        lock = self.lock
        try:
            lock.acquire_nowait()  # uncontended: no checkpoint, no extra loop turn
        except anyio.WouldBlock:
            await lock.acquire()
        try:
            event = build() if callable(build) else build
            if event is None:
                if self._backlog:
                    await self._write(b"")
                return 0
            data = self.conn.send(event)
            seq = self.conn.sent_seq
            await self._write(data)
            return seq
        finally:
            lock.release()

    def send_later(self, event: Event, tg: TaskGroup) -> None:
        """
        Encode *event* now and write it soon, before any frame encoded after it.

        Raises:
            FrameTooLarge: the frame exceeds the peer's limit (nothing queued).
        """
        self._backlog.append(self.conn.send(event))
        if not self._flushing:
            self._flushing = True
            tg.start_soon(self._flush)

    async def _flush(self) -> None:
        try:
            with contextlib.suppress(RpcConnectionError):
                await self.send(_NOTHING)
        finally:
            self._flushing = False

    async def _write(self, data: bytes) -> None:
        if self._backlog:
            # frames encoded earlier (send_later) go first: seq order = write order
            data = b"".join([*self._backlog, data])
            self._backlog.clear()
        if not data:
            return
        # No cancel scope per write (they cost more than the write itself): a
        # heartbeat calls stalled() and closes the link when a write hangs.
        self.write_started = anyio.current_time()
        try:
            await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            if self.stalled_out:
                raise RpcConnectionError("write timed out (slow peer)") from exc
            raise RpcConnectionError(f"connection lost while writing: {exc!r}") from exc
        finally:
            self.write_started = None
        self.bytes_out += len(data)
        self.frames_out += 1
        kind = frame_kind(data)
        self.frames_out_kind[kind] += 1
        self.bytes_out_kind[kind] += len(data)
        self.last_sent = anyio.current_time()

    def stalled(self, now: float) -> bool:
        """True if a write has been blocked for longer than ``write_timeout``."""
        started = self.write_started
        if started is None or self.write_timeout is None:
            return False
        if now - started > self.write_timeout:
            self.stalled_out = True
            return True
        return False

    async def receive(self) -> Event | None:
        """
        The next event from the peer, or ``None`` when the peer closed cleanly.

        Raises:
            RemoteProtocolError: the peer broke the protocol (or vanished mid-frame).
            RpcConnectionError: the socket failed.
        """
        conn = self.conn
        while True:
            try:
                ev = conn.next_event()
            except RemoteProtocolError as exc:
                if self.eof:
                    # EOF in the middle of a frame: the peer vanished, not a
                    # protocol breach (rpc.md 7, row 1)
                    raise RpcConnectionError(f"peer vanished mid-frame: {exc}") from exc
                raise
            if ev is NextEvent.NEED_DATA:
                try:
                    data = await self.stream.receive(_RECEIVE_CHUNK)
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    data = b""
                except (anyio.BrokenResourceError, OSError) as exc:
                    raise RpcConnectionError(f"connection lost: {exc!r}") from exc
                self.bytes_in += len(data)
                self.last_received = anyio.current_time()
                if not data:
                    self.eof = True
                conn.receive_data(data)
                continue
            if ev is NextEvent.CLOSED:
                return None
            self.frames_in += 1
            kind = int(ev.KIND)
            framed = self.bytes_in - conn.buffered
            self.frames_in_kind[kind] += 1
            self.bytes_in_kind[kind] += framed - self._bytes_in_framed
            self._bytes_in_framed = framed
            return ev

    async def aclose(self) -> None:
        """Close the socket (idempotent, never raises)."""
        if self.closed:
            return
        self.closed = True
        with anyio.CancelScope(shield=True):
            try:
                with anyio.move_on_after(1):
                    await self.stream.aclose()
            except (OSError, anyio.BrokenResourceError, ProtocolError):
                pass


def collapse(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """
    The error to raise instead of a task group's exception group.

    A connection's task group fails because one of its tasks hit an error (the
    others are then cancelled): that error is what callers handle. A group holding
    anything but ``Exception`` instances (cancellation, KeyboardInterrupt) is kept.
    """
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(reversed(exc.exceptions))
        else:
            leaves.append(exc)
    if leaves and all(isinstance(e, Exception) for e in leaves):
        return leaves[0]
    return group


async def close_task_group(tg: TaskGroup) -> None:
    """
    Cancel *tg* and wait for its tasks, raising a task's error unwrapped.

    The body's own exception (if any) is not passed in: the caller's ``__aexit__``
    returns ``None`` and Python re-raises it as it was, never inside an
    ``ExceptionGroup`` (api.md: ``AuthError`` is a plain exception).
    """
    tg.cancel_scope.cancel()
    try:
        await tg.__aexit__(None, None, None)
    except BaseExceptionGroup as group:
        raise collapse(group) from None
