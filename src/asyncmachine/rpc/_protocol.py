"""
The sans-IO ``amrp/1`` connection: bytes in, events out; events in, bytes out.

Theory of operation
===================

:class:`Connection` does no I/O and never blocks. The transport feeds it what the
socket produced (:meth:`~Connection.receive_data`, ``b""`` for EOF), pulls events with
:meth:`~Connection.next_event` until it gets :data:`NEED_DATA`, and writes whatever
:meth:`~Connection.send` returns. One object serves one side of one connection; its
``role`` (``"client"`` or ``"server"``) fixes which kinds it may send and receive.

Rules of the receive path, checked in this order for every frame:

1. Framing (:mod:`._framing`): length 1..``max_frame`` (``too_big`` is reported
   before the body arrives), one msgpack value, ``[kind, seq, re, body]``.
2. ``kind`` is a known :class:`Kind` that the peer's role may send.
3. ``seq`` is exactly ``received_seq + 1`` (no gap, no repeat).
4. ``re`` is at most ``sent_seq``: a frame can only answer something we sent. A
   RESULT must answer something (``re >= 1``); a WAIT ``cancel`` must name an
   earlier frame of the same direction.
5. The peer has not said goodbye yet (BYE, or ERROR with ``fatal``): after that only
   EOF may follow.
6. Handshake: a server's first frame received must be HELLO, and HELLO may not come
   again; a client accepts only WELCOME, ERROR or BYE until it has a WELCOME.
7. The body fits the kind (:meth:`from_body` of the event class).

The send path applies the mirror image of rules 2-7 to our own events (raising
:exc:`LocalProtocolError`), then encodes with the *peer's* max frame. ``send`` is
atomic: when it raises (:exc:`LocalProtocolError`, :exc:`FrameTooLarge`,
:exc:`TypeError` for values msgpack cannot carry) nothing was encoded, no ``seq`` was
used and the connection is exactly as before; it stays usable.

States (:class:`ConnectionState`), sticky once left OPEN:

- ``OPEN``: frames may still arrive.
- ``CLOSED``: EOF arrived at a frame boundary; :meth:`next_event` returns
  :data:`CLOSED` forever. Sending is still allowed (the peer may only have shut down
  its write side); whether to is the transport's decision.
- ``ERROR``: the peer broke the protocol (any receive-path failure, including EOF in
  the middle of a frame). :meth:`next_event` and :meth:`receive_data` raise
  :exc:`RemoteProtocolError` with the same ``code`` on every call. :meth:`send`
  accepts exactly one last frame, an :class:`Error` with ``fatal`` set or a
  :class:`Bye` (build it with :func:`error_frame_for`), and refuses everything else.

Limits: the receive buffer never holds more than one incomplete frame after
:meth:`next_event` returned :data:`NEED_DATA` (``buffered < 4 + max_frame``).
"""

from __future__ import annotations

from enum import Enum
from typing import Final, Literal

from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import (
    NO_RETRY_CODES,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Bye,
    Error,
    Event,
    Hello,
    Kind,
    Op,
    WaitCancel,
    Welcome,
    event_from_body,
)
from ._framing import (
    MAX_FRAME,
    MAX_FRAME_LIMIT,
    FrameDecoder,
    check_max_frame,
    encode_frame,
)

# Re-exported so the I/O layer needs only this module: MAX_FRAME, MAX_FRAME_LIMIT,
# PROTOCOL_VERSION, SUPPORTED_VERSIONS, Kind, Op, Event.
__all__ = (
    "CLOSED",
    "MAX_FRAME",
    "MAX_FRAME_LIMIT",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "Connection",
    "ConnectionState",
    "Event",
    "Kind",
    "NextEvent",
    "Op",
    "Role",
    "error_frame_for",
)

#: Which side of the connection a :class:`Connection` plays.
Role = Literal["client", "server"]


class NextEvent(Enum):
    """What :meth:`Connection.next_event` returns when it has no event."""

    NEED_DATA = "NEED_DATA"
    """No complete frame is buffered: feed more bytes."""
    CLOSED = "CLOSED"
    """The peer closed the stream at a frame boundary."""


#: :meth:`Connection.next_event` needs more bytes.
NEED_DATA: Final = NextEvent.NEED_DATA
#: :meth:`Connection.next_event`: the peer closed the stream cleanly.
CLOSED: Final = NextEvent.CLOSED


class ConnectionState(Enum):
    """The sticky state of a :class:`Connection`."""

    OPEN = "OPEN"
    """Frames may still arrive."""
    CLOSED = "CLOSED"
    """EOF arrived at a frame boundary."""
    ERROR = "ERROR"
    """The peer broke the protocol."""


_FROM_CLIENT: Final = frozenset(
    {
        Kind.HELLO,
        Kind.MUTATE,
        Kind.SYNC,
        Kind.WAIT,
        Kind.PING,
        Kind.RESULT,
        Kind.ERROR,
        Kind.BYE,
    }
)
_FROM_SERVER: Final = frozenset(
    {
        Kind.WELCOME,
        Kind.CLOCK,
        Kind.PAYLOAD,
        Kind.PING,
        Kind.RESULT,
        Kind.ERROR,
        Kind.BYE,
    }
)
#: What a server may send, and a client accept, before WELCOME.
_BEFORE_WELCOME: Final = frozenset({Kind.WELCOME, Kind.ERROR, Kind.BYE})
_KINDS = frozenset(int(k) for k in Kind)
#: Longest ``msg`` :func:`error_frame_for` puts in a frame.
_MAX_ERROR_MSG = 1000


def _is_final(event: Event) -> bool:
    """BYE and fatal ERROR are the last frame their sender sends."""
    return isinstance(event, Bye) or (isinstance(event, Error) and event.fatal)


class Connection:
    """
    One side of an ``amrp/1`` connection, without I/O.

    Args:
        role: ``"client"`` (sends HELLO) or ``"server"`` (answers with WELCOME).
        max_frame: the largest frame payload we accept, in bytes; announce it to the
            peer as ``mf``.

    Raises:
        ValueError: for an unknown role or a *max_frame* outside
            ``1..MAX_FRAME_LIMIT``.
    """

    __slots__ = (
        "_decoder",
        "_eof",
        "_error",
        "_our_final",
        "_our_kinds",
        "_peer_kinds",
        "_peer_max_frame",
        "_received_seq",
        "_role",
        "_sent_seq",
        "_state",
        "_their_final",
        "_welcomed",
        "check_outgoing",
    )

    def __init__(
        self, role: Role, *, max_frame: int = MAX_FRAME, check_outgoing: bool = True
    ) -> None:
        if role not in ("client", "server"):
            msg = f"role must be 'client' or 'server', got {role!r}"
            raise ValueError(msg)
        self._role: Role = role
        #: Re-validate every outgoing body as the peer would (off in the transport,
        #: whose events are built by this package from checked values).
        self.check_outgoing = check_outgoing
        self._decoder = FrameDecoder(max_frame)
        self._our_kinds = _FROM_CLIENT if role == "client" else _FROM_SERVER
        self._peer_kinds = _FROM_SERVER if role == "client" else _FROM_CLIENT
        self._peer_max_frame = MAX_FRAME
        # Invariant: equal to the seq of the last frame sent / accepted.
        self._sent_seq = 0
        self._received_seq = 0
        self._state = ConnectionState.OPEN
        # Invariant: set exactly when self._state is ERROR.
        self._error: RemoteProtocolError | None = None
        self._eof = False
        # Client: a WELCOME was received. Server: a WELCOME was sent.
        self._welcomed = False
        self._our_final = False
        self._their_final = False

    def __repr__(self) -> str:
        return (
            f"<Connection role={self._role} state={self._state.name} "
            f"sent_seq={self._sent_seq} received_seq={self._received_seq}>"
        )

    @property
    def role(self) -> Role:
        """``"client"`` or ``"server"``."""
        return self._role

    @property
    def state(self) -> ConnectionState:
        """``OPEN``, ``CLOSED`` (clean EOF) or ``ERROR`` (the peer broke the rules)."""
        return self._state

    @property
    def max_frame(self) -> int:
        """The largest frame payload we accept, in bytes."""
        return self._decoder.max_frame

    @property
    def peer_max_frame(self) -> int:
        """
        The largest frame payload the peer accepts; :meth:`send` refuses bigger ones.

        :data:`MAX_FRAME` until the peer's HELLO (server) or WELCOME (client) arrives,
        which sets it from ``mf``. It may also be set directly; values above
        :data:`MAX_FRAME_LIMIT` are lowered to it.

        Raises:
            ValueError: (setter) for a value below 1.
        """
        return self._peer_max_frame

    @peer_max_frame.setter
    def peer_max_frame(self, value: int) -> None:
        self._peer_max_frame = check_max_frame(min(value, MAX_FRAME_LIMIT))

    @property
    def sent_seq(self) -> int:
        """The ``seq`` of the last frame sent (0 before the first)."""
        return self._sent_seq

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next successful :meth:`send` will use."""
        return self._sent_seq + 1

    @property
    def received_seq(self) -> int:
        """The ``seq`` of the last frame received (0 before the first)."""
        return self._received_seq

    @property
    def buffered(self) -> int:
        """Received bytes not yet returned as events."""
        return self._decoder.buffered

    # --- receiving ---------------------------------------------------------------------

    def _raise_sticky(self) -> None:
        err = self._error
        if err is not None:
            msg = f"connection is in ERROR state after: {err}"
            raise RemoteProtocolError(msg, err.code) from err

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """
        Feed bytes received from the peer; ``b""`` means EOF.

        Nothing is parsed here: call :meth:`next_event` until it returns
        :data:`NEED_DATA`.

        Args:
            data: the received bytes, or ``b""`` once the peer closed its side.

        Raises:
            RemoteProtocolError: if the connection is in the ERROR state.
            LocalProtocolError: for non-empty *data* after EOF (a transport bug;
                the connection is unchanged).
        """
        self._raise_sticky()
        if self._eof:
            if data:
                msg = f"received {len(data)} bytes after EOF"
                raise LocalProtocolError(msg)
            return
        if not data:
            self._eof = True
            return
        self._decoder.feed(data)

    def next_event(self) -> Event | NextEvent:
        """
        Return the next event, :data:`NEED_DATA` or :data:`CLOSED`.

        Frames buffered before EOF are all returned before :data:`CLOSED`.

        Returns:
            An event with its frame's ``seq`` and ``re``; :data:`NEED_DATA` when no
            complete frame is buffered; :data:`CLOSED` once EOF arrived at a frame
            boundary (then on every later call).

        Raises:
            RemoteProtocolError: if the peer broke the protocol (see the module
                docstring for the rules), or EOF cut a frame short. The connection
                enters the ERROR state and every later call raises again.
        """
        self._raise_sticky()
        if self._state is ConnectionState.CLOSED:
            return CLOSED
        try:
            frame = self._decoder.next_frame()
            if frame is None:
                if not self._eof:
                    return NEED_DATA
                if self._decoder.buffered:
                    msg = (
                        "peer closed the connection in the middle of a frame "
                        f"({self._decoder.buffered} bytes buffered)"
                    )
                    raise RemoteProtocolError(msg, "proto")
                self._state = ConnectionState.CLOSED
                return CLOSED
            return self._accept(*frame)
        except RemoteProtocolError as exc:
            self._state = ConnectionState.ERROR
            self._error = exc
            raise

    def _accept(self, kind: int, seq: int, re: int, body: dict[str, object]) -> Event:
        peer = "server" if self._role == "client" else "client"
        if kind not in _KINDS:
            msg = f"unknown frame kind {kind}"
            raise RemoteProtocolError(msg, "proto")
        k = Kind(kind)
        if k not in self._peer_kinds:
            msg = f"a {peer} may not send {k.name}"
            raise RemoteProtocolError(msg, "proto")
        if seq != self._received_seq + 1:
            what = "repeated" if seq <= self._received_seq else "gap in"
            msg = f"{what} seq: got {seq}, expected {self._received_seq + 1}"
            raise RemoteProtocolError(msg, "proto")
        if re > self._sent_seq:
            msg = (
                f"{k.name} answers re={re}, but only {self._sent_seq} frames were sent"
            )
            raise RemoteProtocolError(msg, "proto")
        if k is Kind.RESULT and re == 0:
            msg = "RESULT with re=0 answers nothing"
            raise RemoteProtocolError(msg, "proto")
        if self._their_final:
            msg = f"{k.name} after the peer's BYE or fatal ERROR"
            raise RemoteProtocolError(msg, "proto")
        if self._role == "server":
            if (self._received_seq == 0) != (k is Kind.HELLO):
                msg = (
                    f"first frame must be HELLO, got {k.name}"
                    if self._received_seq == 0
                    else "HELLO may only be the first frame"
                )
                raise RemoteProtocolError(msg, "proto")
        elif not self._welcomed and k not in _BEFORE_WELCOME:
            msg = f"{k.name} before WELCOME"
            raise RemoteProtocolError(msg, "proto")
        event = event_from_body(k, body, seq=seq, re=re)
        if isinstance(event, WaitCancel) and event.wait_seq >= seq:
            msg = f"WAIT cancel={event.wait_seq} names no earlier frame"
            raise RemoteProtocolError(msg, "proto")
        # Accepted: commit.
        self._received_seq = seq
        if _is_final(event):
            self._their_final = True
        if isinstance(event, (Hello, Welcome)):
            self.peer_max_frame = event.max_frame
        if isinstance(event, Welcome):
            self._welcomed = True
        return event

    # --- sending -----------------------------------------------------------------------

    def _check_send(self, event: Event) -> None:
        k = event.KIND
        if self._our_final:
            msg = f"cannot send {k.name}: BYE or a fatal ERROR was already sent"
            raise LocalProtocolError(msg)
        if self._state is ConnectionState.ERROR and not _is_final(event):
            msg = f"cannot send {k.name} in the ERROR state; only a fatal ERROR or BYE"
            raise LocalProtocolError(msg)
        if k not in self._our_kinds:
            msg = f"a {self._role} may not send {k.name}"
            raise LocalProtocolError(msg)
        if self._role == "client":
            if (self._sent_seq == 0) != (k is Kind.HELLO):
                msg = (
                    f"the first frame must be HELLO, not {k.name}"
                    if self._sent_seq == 0
                    else "HELLO may only be the first frame"
                )
                raise LocalProtocolError(msg)
        elif not self._welcomed:
            if k not in _BEFORE_WELCOME:
                msg = f"cannot send {k.name} before WELCOME"
                raise LocalProtocolError(msg)
            if k is Kind.WELCOME and self._received_seq == 0:
                msg = "cannot send WELCOME before receiving HELLO"
                raise LocalProtocolError(msg)
        re = event.re
        if (
            not isinstance(re, int)
            or isinstance(re, bool)
            or not 0 <= re <= self._received_seq
        ):
            msg = f"re={re!r} must be in [0, {self._received_seq}] (frames received)"
            raise LocalProtocolError(msg)
        if k is Kind.RESULT and re == 0:
            msg = "RESULT needs re: the seq of the frame it answers"
            raise LocalProtocolError(msg)
        if isinstance(event, WaitCancel) and event.wait_seq > self._sent_seq:
            msg = f"WAIT cancel={event.wait_seq} names no frame sent yet"
            raise LocalProtocolError(msg)

    def send(self, event: Event) -> bytes:
        """
        Encode *event* as the next frame and return the bytes to write.

        The frame's ``seq`` is :attr:`next_seq` (the event's own ``seq`` is ignored);
        after a successful call it is :attr:`sent_seq`. ``re`` is taken from the
        event. The call is atomic: if it raises, nothing was encoded and no ``seq``
        was used.

        Args:
            event: the event to send.

        Returns:
            The complete frame, length prefix included.

        Raises:
            LocalProtocolError: if this role may not send the event's kind now (see
                the module docstring), ``re`` names no received frame, or a field has
                the wrong type.
            FrameTooLarge: if the encoded frame exceeds :attr:`peer_max_frame`.
            TypeError: if a value (e.g. in ``args`` or ``data``) cannot be encoded.
        """
        self._check_send(event)
        body = event.to_body()
        if self.check_outgoing:
            try:
                event_from_body(event.KIND, body)
            except RemoteProtocolError as exc:
                msg = f"invalid {event.KIND.name} event: {exc}"
                raise LocalProtocolError(msg, exc.code) from None
        seq = self._sent_seq + 1
        frame = encode_frame(
            event.KIND, seq, event.re, body, max_frame=self._peer_max_frame
        )
        # Encoded: commit.
        self._sent_seq = seq
        if _is_final(event):
            self._our_final = True
        if isinstance(event, Welcome):
            self._welcomed = True
        return frame


def error_frame_for(exc: ProtocolError) -> Error:
    """
    Build the ERROR to send before closing because of *exc*.

    Args:
        exc: the protocol error that ends the connection (usually a
            :exc:`RemoteProtocolError` from :meth:`Connection.next_event`).

    Returns:
        ``Error(exc.code, str(exc), fatal=True, retry=...)`` with ``re=0``; ``retry``
        is false only for the codes of :data:`~._events.NO_RETRY_CODES` (``version``,
        ``auth``, ``acl``, ``cycle``), so true for ``proto`` and ``too_big``. The
        message is cut to 1000 characters.
    """
    message = str(exc)
    if len(message) > _MAX_ERROR_MSG:
        message = message[: _MAX_ERROR_MSG - 3] + "..."
    return Error(
        code=exc.code,
        msg=message,
        fatal=True,
        retry=exc.code not in NO_RETRY_CODES,
    )
