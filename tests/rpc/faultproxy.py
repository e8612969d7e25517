"""
A fault-injecting TCP proxy for aRPC tests, plus small helpers the fault tests share.

``async with FaultProxy(server.addr) as proxy:`` listens on ``127.0.0.1:0``
(``proxy.addr``) and forwards every accepted connection to ``proxy.target`` (settable
at any time; new connections use the new target). Each direction, ``proxy.c2s``
(client to server) and ``proxy.s2c`` (server to client), is frame-aware: it splits the
byte stream at the 4-byte length prefixes, logs every frame it reads
(:attr:`Direction.frames`) and applies the first armed :class:`Rule` that matches it:

- ``drop`` a frame, ``duplicate`` it, ``delay`` it (in order: later frames wait too),
- ``truncate`` its msgpack body (the length prefix is fixed up, so the receiver gets
  a complete but malformed frame), ``corrupt`` its body bytes, ``rewrite`` its decoded
  ``[kind, seq, re, body]``,
- ``cut`` the connection in the middle of it (header and half the body, then EOF).

``drop`` and ``duplicate`` renumber by default: later frames get consecutive ``seq``
values and the other direction's ``re`` values are mapped back, so the receiver sees a
valid stream that simply lacks (or repeats) one frame's content. With
``renumber=False`` the gap or the repeated ``seq`` stays visible. Besides rules:
``stall()`` / ``resume()`` stop and restart reading a direction (its sender's writes
then block once the kernel buffers are full), ``inject(data)`` writes raw bytes to the
receivers at once, ``proxy.refuse = True`` resets new connections right after accepting
them, and ``kill_all()`` resets every live connection. ``raw=True`` turns framing off
(for TLS, whose bytes are opaque); then only stall, inject, refuse and kill apply.

Bounds: at most ``max_connections`` accepted connections and ``max_bytes`` forwarded
bytes (beyond that, connections are reset), at most ``lifetime`` seconds alive, after
which everything stops by itself; leaving the ``async with`` closes everything.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import anyio
import anyio.abc

# msgpack ships neither stubs nor py.typed.
import msgpack  # type: ignore[import-untyped]

import asyncmachine as am

__all__ = (
    "BYE",
    "C2S",
    "CLOCK",
    "ERROR",
    "HELLO",
    "MUTATE",
    "PAYLOAD",
    "PING",
    "RESULT",
    "S2C",
    "SYNC",
    "WAIT",
    "WELCOME",
    "Direction",
    "FaultProxy",
    "Frame",
    "FrameInfo",
    "Rule",
    "fast_client",
    "free_port",
    "new_source",
    "retry_states_clear",
    "wait_handshakes",
)

# frame kinds (docs/protocol.md section 2), spelled out so the proxy does not trust
# the implementation under test
HELLO, WELCOME, CLOCK, MUTATE, SYNC, WAIT, PAYLOAD, PING, RESULT, ERROR, BYE = range(
    1, 12
)
C2S = "c2s"
S2C = "s2c"

_HEADER = struct.Struct(">I")
_CHUNK = 65536
#: Frames declaring more than this are not parsed: the rest of the stream goes raw.
_PARSE_LIMIT = 80 << 20
#: How many frames each direction keeps in its log.
_LOG_LIMIT = 20_000

Frame = list[object]  # [kind, seq, re, body], as decoded


@dataclass
class FrameInfo:
    """One frame as the proxy read it from its sender (before any fault)."""

    conn: int
    kind: int
    seq: int
    re: int
    body: dict[str, object] | None
    size: int


@dataclass
class Rule:
    """An armed fault: applies to *count* matching frames (``None`` = forever)."""

    action: str
    kinds: frozenset[int] | None
    count: int | None
    skip: int
    match: Callable[[FrameInfo], bool] | None
    arg: object = None
    renumber: bool = True
    hits: int = 0
    fired: anyio.Event = field(default_factory=anyio.Event)

    def matches(self, info: FrameInfo) -> bool:
        if self.count is not None and self.hits >= self.count:
            return False
        if self.kinds is not None and info.kind not in self.kinds:
            return False
        if self.match is not None and not self.match(info):
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        return True

    @property
    def exhausted(self) -> bool:
        """True once the rule has hit all the frames it was armed for."""
        return self.count is not None and self.hits >= self.count


def _kinds(kinds: int | Collection[int] | None) -> frozenset[int] | None:
    if kinds is None:
        return None
    if isinstance(kinds, int):
        return frozenset((kinds,))
    return frozenset(kinds)


def _decode(payload: bytes) -> Frame | None:
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (
        ValueError,
        TypeError,
        OverflowError,
        RecursionError,
        msgpack.UnpackException,
    ):  # any malformed input: the frame is logged as kind -1
        return None
    if (
        isinstance(obj, list)
        and len(obj) == 4
        and all(type(x) is int for x in obj[:3])
        and isinstance(obj[3], dict)
    ):
        return obj
    return None


def _encode(frame: Frame) -> bytes:
    payload: bytes = msgpack.packb(frame, use_bin_type=True)
    return _HEADER.pack(len(payload)) + payload


class Direction:
    """One direction of the proxy: its rules, its gate and its frame log."""

    def __init__(self, name: str) -> None:
        self.name = name
        #: Every frame read from this direction's senders, in order.
        self.frames: list[FrameInfo] = []
        self.bytes = 0
        self.rules: list[Rule] = []
        self._stalled: anyio.Event | None = None
        self._changed = anyio.Event()
        self._proxy: FaultProxy | None = None

    # -- rules --------------------------------------------------------------------

    def _arm(
        self,
        action: str,
        kinds: int | Collection[int] | None,
        count: int | None,
        skip: int,
        match: Callable[[FrameInfo], bool] | None,
        arg: object = None,
        renumber: bool = True,
    ) -> Rule:
        rule = Rule(action, _kinds(kinds), count, skip, match, arg, renumber)
        self.rules.append(rule)
        return rule

    def drop(
        self,
        kinds: int | Collection[int] | None = None,
        *,
        count: int | None = 1,
        skip: int = 0,
        match: Callable[[FrameInfo], bool] | None = None,
        renumber: bool = True,
    ) -> Rule:
        """Drop matching frames (renumbering later ones unless ``renumber=False``)."""
        return self._arm("drop", kinds, count, skip, match, renumber=renumber)

    def duplicate(
        self,
        kinds: int | Collection[int] | None = None,
        *,
        count: int | None = 1,
        skip: int = 0,
        match: Callable[[FrameInfo], bool] | None = None,
        renumber: bool = True,
    ) -> Rule:
        """Send matching frames twice (the copy gets the next ``seq`` if renumbering)."""
        return self._arm("dup", kinds, count, skip, match, renumber=renumber)

    def delay(
        self,
        seconds: float,
        kinds: int | Collection[int] | None = None,
        *,
        count: int | None = 1,
        skip: int = 0,
        match: Callable[[FrameInfo], bool] | None = None,
    ) -> Rule:
        """Hold matching frames for *seconds* (the direction keeps its order)."""
        return self._arm("delay", kinds, count, skip, match, seconds)

    def truncate(
        self,
        keep: int,
        kinds: int | Collection[int] | None = None,
        *,
        count: int | None = 1,
        skip: int = 0,
        match: Callable[[FrameInfo], bool] | None = None,
    ) -> Rule:
        """Cut the msgpack body of matching frames to *keep* bytes (length fixed up)."""
        return self._arm("truncate", kinds, count, skip, match, keep)

    def corrupt(
        self,
        fn: Callable[[bytes], bytes],
        kinds: int | Collection[int] | None = None,
        *,
        count: int | None = 1,
        skip: int = 0,
        match: Callable[[FrameInfo], bool] | None = None,
    ) -> Rule:
        """Replace the msgpack body of matching frames by ``fn(body)`` (length fixed)."""
        return self._arm("corrupt", kinds, count, skip, match, fn)

    def rewrite(
        self,
        fn: Callable[[Frame], Frame],
        kinds: int | Collection[int] | None = None,
        *,
        count: int | None = 1,
        skip: int = 0,
        match: Callable[[FrameInfo], bool] | None = None,
    ) -> Rule:
        """Re-encode matching frames as ``fn([kind, seq, re, body])`` (after renumbering)."""
        return self._arm("rewrite", kinds, count, skip, match, fn)

    def cut(
        self,
        kinds: int | Collection[int] | None = None,
        *,
        count: int | None = 1,
        skip: int = 0,
        match: Callable[[FrameInfo], bool] | None = None,
    ) -> Rule:
        """Forward the header and half the body of a matching frame, then hang up."""
        return self._arm("cut", kinds, count, skip, match)

    def clear(self) -> None:
        """Disarm every rule."""
        self.rules.clear()

    # -- gate ---------------------------------------------------------------------

    def stall(self) -> None:
        """Stop reading this direction (what was read but not sent is held too)."""
        if self._stalled is None:
            self._stalled = anyio.Event()

    def resume(self) -> None:
        """Undo :meth:`stall`."""
        ev, self._stalled = self._stalled, None
        if ev is not None:
            ev.set()

    @property
    def stalled(self) -> bool:
        """True while the direction is stalled."""
        return self._stalled is not None

    async def _gate(self) -> None:
        while (ev := self._stalled) is not None:
            await ev.wait()

    async def inject(self, data: bytes) -> int:
        """Write *data* as is to this direction's receivers now; how many got it."""
        assert self._proxy is not None
        n = 0
        for conn in list(self._proxy._conns):
            stream = conn.dst(self.name)
            with contextlib.suppress(
                anyio.BrokenResourceError, anyio.ClosedResourceError, OSError
            ):
                async with conn.locks[self.name]:
                    await stream.send(data)
                n += 1
        return n

    # -- log ----------------------------------------------------------------------

    def _log(self, info: FrameInfo) -> None:
        if len(self.frames) < _LOG_LIMIT:
            self.frames.append(info)
        ev, self._changed = self._changed, anyio.Event()
        ev.set()

    def find(
        self,
        kind: int | None = None,
        match: Callable[[FrameInfo], bool] | None = None,
        conn: int | None = None,
    ) -> list[FrameInfo]:
        """Logged frames of *kind* (any if ``None``) for which *match* holds."""
        return [
            f
            for f in self.frames
            if (kind is None or f.kind == kind)
            and (conn is None or f.conn == conn)
            and (match is None or match(f))
        ]

    async def wait_for(
        self,
        kind: int | None = None,
        n: int = 1,
        match: Callable[[FrameInfo], bool] | None = None,
        conn: int | None = None,
    ) -> list[FrameInfo]:
        """Wait until at least *n* frames like :meth:`find`'s were logged."""
        while True:
            got = self.find(kind, match, conn)
            if len(got) >= n:
                return got
            await self._changed.wait()


class _Conn:
    """One proxied connection and its renumbering state."""

    def __init__(
        self, n: int, client: anyio.abc.SocketStream, server: anyio.abc.SocketStream
    ) -> None:
        self.n = n
        self.client = client
        self.server = server
        self.locks = {C2S: anyio.Lock(), S2C: anyio.Lock()}
        # per direction: next seq to emit; emitted seq -> original; original -> emitted
        self.next_seq = {C2S: 1, S2C: 1}
        self.rev: dict[str, dict[int, int]] = {C2S: {}, S2C: {}}
        self.fwd: dict[str, dict[int, int]] = {C2S: {}, S2C: {}}
        self.scope: anyio.CancelScope | None = None
        self.cut: str | None = None
        self.killed = False
        self.done = anyio.Event()

    def src(self, d: str) -> anyio.abc.SocketStream:
        return self.client if d == C2S else self.server

    def dst(self, d: str) -> anyio.abc.SocketStream:
        return self.server if d == C2S else self.client


def _other(d: str) -> str:
    return S2C if d == C2S else C2S


def _abort(stream: anyio.abc.SocketStream) -> None:
    """Make the next close send RST instead of FIN."""
    with contextlib.suppress(OSError, anyio.TypedAttributeLookupError):
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def _close(stream: anyio.abc.SocketStream) -> None:
    with (
        anyio.CancelScope(shield=True),
        contextlib.suppress(OSError, anyio.BrokenResourceError),
    ):
        await stream.aclose()


class _Stop(Exception):
    """The connection was cut by a rule."""


class FaultProxy:
    """
    A TCP proxy on ``127.0.0.1:0`` forwarding to *target*, with faults on demand.

    Args:
        target: ``(host, port)`` to forward to; may be changed later (``.target``).
        raw: forward bytes without parsing frames (TLS).
        max_connections: connections beyond this many are reset.
        max_bytes: forwarded bytes beyond this many (both directions) reset everything.
        lifetime: seconds after which the proxy stops by itself.
        connect_timeout: seconds to reach the target before resetting the client.
    """

    def __init__(
        self,
        target: tuple[str, int],
        *,
        raw: bool = False,
        max_connections: int = 64,
        max_bytes: int = 256 << 20,
        lifetime: float = 30.0,
        connect_timeout: float = 2.0,
    ) -> None:
        self.target = target
        self.raw = raw
        self.max_connections = max_connections
        self.max_bytes = max_bytes
        self.lifetime = lifetime
        self.connect_timeout = connect_timeout
        self.c2s = Direction(C2S)
        self.s2c = Direction(S2C)
        self.c2s._proxy = self
        self.s2c._proxy = self
        #: Reset new connections right after accepting them.
        self.refuse = False
        #: Connections forwarded so far, and connections reset by ``refuse``/limits.
        self.accepted = 0
        self.refused = 0
        self.addr: tuple[str, int] = ("127.0.0.1", 0)
        self._conns: set[_Conn] = set()
        self._tg: anyio.abc.TaskGroup | None = None
        self._listener: anyio.abc.SocketListener | None = None
        self._changed = anyio.Event()

    def direction(self, name: str) -> Direction:
        """``c2s`` or ``s2c`` by name."""
        return self.c2s if name == C2S else self.s2c

    @property
    def live(self) -> int:
        """Connections open right now."""
        return len(self._conns)

    # -- lifecycle ----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        listener = multi.listeners[0]
        assert isinstance(listener, anyio.abc.SocketListener)
        self._listener = listener
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self.addr = ("127.0.0.1", int(port))
        tg = anyio.create_task_group()
        await tg.__aenter__()
        tg.cancel_scope.deadline = anyio.current_time() + self.lifetime
        self._tg = tg
        tg.start_soon(self._accept_loop, listener)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg = self._tg
        assert tg is not None
        self.c2s.resume()
        self.s2c.resume()
        tg.cancel_scope.cancel()
        try:
            return await tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            if self._listener is not None:
                with anyio.CancelScope(shield=True):
                    await self._listener.aclose()

    async def _accept_loop(self, listener: anyio.abc.SocketListener) -> None:
        assert self._tg is not None
        while True:
            stream = await listener.accept()
            self._tg.start_soon(self._handle, stream)

    # -- control ------------------------------------------------------------------

    async def kill_all(self) -> int:
        """Reset every live connection (RST both ways); how many there were."""
        conns = list(self._conns)
        for c in conns:
            c.killed = True
            if c.scope is not None:
                c.scope.cancel()
        for c in conns:
            await c.done.wait()
        return len(conns)

    async def wait_accepted(self, n: int) -> None:
        """Wait until *n* connections were forwarded in total."""
        while self.accepted < n:
            await self._changed.wait()

    def _notify(self) -> None:
        ev, self._changed = self._changed, anyio.Event()
        ev.set()

    # -- forwarding ---------------------------------------------------------------

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        total = self.c2s.bytes + self.s2c.bytes
        if (
            self.refuse
            or self.accepted >= self.max_connections
            or total > self.max_bytes
        ):
            self.refused += 1
            self._notify()
            _abort(client)
            await _close(client)
            return
        try:
            with anyio.fail_after(self.connect_timeout):
                server = await anyio.connect_tcp(*self.target)
        except (OSError, TimeoutError):
            self.refused += 1
            self._notify()
            _abort(client)
            await _close(client)
            return
        self.accepted += 1
        conn = _Conn(self.accepted, client, server)
        self._conns.add(conn)
        self._notify()
        try:
            async with anyio.create_task_group() as tg:
                conn.scope = tg.cancel_scope
                tg.start_soon(self._pump, conn, self.c2s)
                tg.start_soon(self._pump, conn, self.s2c)
        finally:
            self._conns.discard(conn)
            await self._finish(conn)
            conn.done.set()
            self._notify()

    async def _finish(self, conn: _Conn) -> None:
        if conn.killed:
            _abort(conn.client)
            _abort(conn.server)
        if conn.cut is not None and not conn.killed:
            # the sender of the cut frame is gone; the receiver got EOF after half a
            # frame: read (and discard) what it still says until it hangs up, so the
            # close is a FIN and not a reset
            await _close(conn.src(conn.cut))
            receiver = conn.dst(conn.cut)
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(2),
                contextlib.suppress(
                    OSError,
                    anyio.EndOfStream,
                    anyio.BrokenResourceError,
                    anyio.ClosedResourceError,
                ),
            ):
                while await receiver.receive(_CHUNK):
                    pass
            await _close(receiver)
            return
        await _close(conn.client)
        await _close(conn.server)

    async def _pump(self, conn: _Conn, d: Direction) -> None:
        src = conn.src(d.name)
        dst = conn.dst(d.name)
        buf = bytearray()
        raw = self.raw
        try:
            while True:
                await d._gate()
                try:
                    data = await src.receive(_CHUNK)
                except anyio.EndOfStream:
                    break
                await d._gate()
                d.bytes += len(data)
                if d.bytes + self.direction(_other(d.name)).bytes > self.max_bytes:
                    conn.killed = True
                    raise _Stop
                if raw:
                    await self._send(conn, d, data)
                    continue
                buf += data
                while len(buf) >= 4:
                    (length,) = _HEADER.unpack_from(buf)
                    if length == 0 or length > _PARSE_LIMIT:
                        raw = True  # not a stream we can frame any more
                        await self._send(conn, d, bytes(buf))
                        buf.clear()
                        break
                    if len(buf) < 4 + length:
                        break
                    frame = bytes(buf[: 4 + length])
                    del buf[: 4 + length]
                    await self._frame(conn, d, frame)
            # the sender closed its side: pass the EOF on, keep the other way open
            if buf:
                await self._send(conn, d, bytes(buf))
            with contextlib.suppress(
                OSError, anyio.BrokenResourceError, anyio.ClosedResourceError
            ):
                await dst.send_eof()
        except _Stop:
            if conn.scope is not None:
                conn.scope.cancel()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            # one side reset or vanished: the connection is over in both directions
            conn.killed = True
            if conn.scope is not None:
                conn.scope.cancel()

    async def _send(self, conn: _Conn, d: Direction, data: bytes) -> None:
        async with conn.locks[d.name]:
            await conn.dst(d.name).send(data)

    async def _frame(self, conn: _Conn, d: Direction, frame: bytes) -> None:
        payload = frame[4:]
        decoded = _decode(payload)
        if decoded is None:
            info = FrameInfo(conn.n, -1, -1, -1, None, len(payload))
        else:
            kind, seq, re, body = decoded
            assert isinstance(kind, int)
            assert isinstance(seq, int)
            assert isinstance(re, int)
            assert isinstance(body, dict)
            info = FrameInfo(conn.n, kind, seq, re, body, len(payload))
        d._log(info)
        rule = next((r for r in d.rules if r.matches(info)), None)
        action = "pass"
        if rule is not None:
            rule.hits += 1
            rule.fired.set()
            action = rule.action
        if action == "delay":
            assert rule is not None
            assert isinstance(rule.arg, (int, float))
            await anyio.sleep(rule.arg)
            action = "pass"
        if action == "drop":
            assert rule is not None
            if not rule.renumber:
                conn.next_seq[d.name] += 1  # the gap stays visible
            return
        if action == "cut":
            async with conn.locks[d.name]:
                dst = conn.dst(d.name)
                await dst.send(frame[: 4 + len(payload) // 2])
                with contextlib.suppress(OSError, anyio.BrokenResourceError):
                    await dst.send_eof()
            conn.cut = d.name
            raise _Stop
        if decoded is None:
            conn.next_seq[d.name] += 1
            await self._send(conn, d, self._mangle(action, rule, frame))
            return
        copies = 1
        if action == "dup":
            assert rule is not None
            copies = 2
            if not rule.renumber:
                out = self._renumber(conn, d.name, decoded, frame)
                await self._send(conn, d, out + out)
                return
        for _ in range(copies):
            out = self._renumber(conn, d.name, decoded, frame)
            if action == "rewrite":
                assert rule is not None
                fn: Callable[[Frame], Frame] = rule.arg  # type: ignore[assignment]
                out = _encode(fn(_decode(out[4:]) or []))
            else:
                out = self._mangle(action, rule, out)
            await self._send(conn, d, out)

    @staticmethod
    def _mangle(action: str, rule: Rule | None, frame: bytes) -> bytes:
        payload = frame[4:]
        if action == "truncate":
            assert rule is not None
            assert isinstance(rule.arg, int)
            payload = payload[: rule.arg]
        elif action == "corrupt":
            assert rule is not None
            fn: Callable[[bytes], bytes] = rule.arg  # type: ignore[assignment]
            payload = fn(payload)
        else:
            return frame
        return _HEADER.pack(len(payload)) + payload

    @staticmethod
    def _renumber(conn: _Conn, d: str, frame: Frame, original: bytes) -> bytes:
        """Give *frame* the next seq of *d*; map its ``re`` to the receiver's view."""
        kind, seq, re, body = frame
        assert isinstance(seq, int)
        assert isinstance(re, int)
        assert isinstance(body, dict)
        new_seq = conn.next_seq[d]
        conn.next_seq[d] += 1
        conn.rev[d][new_seq] = seq
        conn.fwd[d][seq] = new_seq
        new_re = conn.rev[_other(d)].get(re, re) if re else 0
        new_body = body
        if kind == WAIT and isinstance(body.get("cancel"), int):
            cancel = body["cancel"]
            new_body = dict(body, cancel=conn.fwd[d].get(cancel, cancel))
        if new_seq == seq and new_re == re and new_body is body:
            return original
        return _encode([kind, new_seq, new_re, new_body])


# -- helpers shared by the fault tests ---------------------------------------------


def new_source(id: str = "src", extra: Iterable[str] = ()) -> am.Machine:
    """A served machine: ``Foo`` requires ``Bar``; ``B`` is multi; ``X`` fails."""
    schema: dict[str, am.State] = {
        "Foo": am.State(require=["Bar"]),
        "Bar": am.State(),
        "B": am.State(multi=True),
        "D": am.State(),
        "X": am.State(),
        **am.rpc.STATE_SOURCE_SCHEMA,
    }
    for name in extra:
        schema[name] = am.State()
    return am.Machine(schema, id=id)


_RETRY_STATES = ("RetryingConn", "RetryingCall", "ConnRetryFailed", "CallRetryFailed")


def retry_states_clear(mach: am.Machine) -> bool:
    """True when none of the client's retry states is active."""
    return not mach.any_active(*([s] for s in _RETRY_STATES))


async def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = int(multi.listeners[0].extra(anyio.abc.SocketAttribute.local_port))
    await multi.aclose()
    return port


def fast_client(addr: tuple[str, int], **options: object) -> am.rpc.Client:
    """A client with test-sized timeouts and retry policies (overridable)."""
    kw: dict[str, object] = {
        "connect_timeout": 1.0,
        "call_timeout": 1.0,
        "call_retries": 3,
        "connect_retry": am.rpc.RetryPolicy(
            retries=3, delay=0.02, max_delay=0.05, total=3.0
        ),
        "reconnect_retry": am.rpc.RetryPolicy(
            retries=100, delay=0.02, max_delay=0.05, total=4.0
        ),
    }
    kw.update(options)
    return am.rpc.Client(addr, **kw)  # type: ignore[arg-type]


async def wait_handshakes(client: am.rpc.Client, n: int) -> None:
    """Wait until *client* has completed its *n*-th handshake (and is Ready)."""
    await client.mach.when_time(["HandshakeDone"], [2 * n - 1])
    await client.mach.when("Ready")
