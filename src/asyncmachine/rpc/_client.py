"""
The aRPC client: connects, mirrors the served machine, and keeps the mirror alive.

Rules:

- ``async with Client(addr)`` returns once the first handshake is done: the mirror
  (``client.netmach``) holds the server's clock and ``client.mach`` has ``Ready``. A
  refused token raises :class:`AuthError` from the ``async with`` line; a server that
  stays unreachable raises :class:`RpcConnectionError`.
- Later disconnects reconnect with exponential backoff; every reconnect repeats the
  handshake, so the mirror gets a full clock. Reads stay available (stale) meanwhile;
  local waits keep waiting and resolve against the fresh clock.
- A remote mutation carries a request id (``rid``); after a timeout or a lost
  connection it is retried with the same ``rid``, and the server answers a retry from
  its de-duplication cache, so it never applies twice. If the server restarted in the
  meantime (a new epoch) the outcome is unknown and the call returns CANCELED (or
  raises :class:`OutcomeUnknown` with ``strict=True``).
- The reply's clock is applied to the mirror before a mutation returns.
"""

from __future__ import annotations

import contextlib
import inspect
import secrets
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio

from .._context import Context
from .._core._mutation import Result
from .._machine import Machine
from ._clock import ApplyOutcome, ClockMirror
from ._codec import packb
from ._errors import (
    AuthError,
    CycleError,
    NotConnected,
    OutcomeUnknown,
    ProtocolError,
    RemoteError,
    RemoteProtocolError,
    RemoteTimeout,
    RpcConnectionError,
    RpcError,
    SchemaMismatch,
    VersionMismatch,
    WaitInterrupted,
)
from ._events import (
    Bye,
    Clock,
    ClockBody,
    Error,
    Event,
    Hello,
    Mutate,
    Op,
    Payload,
    Ping,
    Result as ResultEvent,
    Sync,
    Wait,
    WaitCancel,
    Welcome,
)
from ._netmach import NetMach
from ._protocol import MAX_FRAME, SUPPORTED_VERSIONS, error_frame_for
from ._states import CLIENT_SCHEMA
from ._transport import Link, Pending, close_task_group, collapse
from ._wire import schema_from_wire, schema_hash

if TYPE_CHECKING:
    from anyio.abc import ByteStream, TaskGroup

__all__ = ("Client", "RetryPolicy")

_ERR_STATES = ("ErrNetwork", "ErrNetworkTimeout", "ErrRpc", "ErrDelivery")
#: Invalid full clocks in a row before the connection is dropped and redone.
_MAX_BAD_SYNCS = 3


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: *retries* attempts, *delay* doubling up to *max_delay*."""

    retries: int = 5
    delay: float = 0.1
    max_delay: float = 1.0
    total: float = 10.0


class _ConnLost(RpcConnectionError):
    """Internal: the connection ended while a request was pending."""


class _Fatal(Exception):
    def __init__(self, exc: RpcError) -> None:
        super().__init__(str(exc))
        self.exc = exc


class Client:
    """
    A connection to a served machine, with its mirror (``netmach``).

    Args:
        addr: ``(host, port)`` of the server.
        token: the server's shared secret, if it has one.
        ssl_context: connect with TLS using this client-side context.
        id: the client id (``rc-<id>`` is its machine); random by default.
        tls_hostname: the host name to verify (defaults to the address' host).
        consumer: a machine with a ``ServerPayload`` state that receives payloads.
        on_payload: a callback (sync or async) called with each payload.
        connect_timeout: seconds for one TCP (+TLS) connect attempt.
        call_timeout: seconds a remote call may take before it is retried.
        call_retries: retries of a remote mutation (same request id).
        connect_retry: backoff for the first connection.
        reconnect_retry: backoff for reconnecting after a lost connection.
        reconnect: reconnect after a lost connection (default).
        ping_interval: send PING after this long without writing.
        idle_timeout: a connection with nothing received for this long is dead.
        strict: raise errors from remote mutations instead of returning CANCELED.
    """

    def __init__(
        self,
        addr: tuple[str, int],
        *,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        id: str | None = None,
        tls_hostname: str | None = None,
        consumer: Machine | None = None,
        on_payload: Callable[[Payload], object] | None = None,
        connect_timeout: float = 3.0,
        call_timeout: float = 3.0,
        call_retries: int = 5,
        connect_retry: RetryPolicy | None = None,
        reconnect_retry: RetryPolicy | None = None,
        reconnect: bool = True,
        ping_interval: float = 5.0,
        idle_timeout: float = 15.0,
        max_frame: int = MAX_FRAME,
        strict: bool = False,
        via: Sequence[str] = (),
    ) -> None:
        self.addr = (str(addr[0]), int(addr[1]))
        self.token = token
        self.ssl_context = ssl_context
        self.tls_hostname = tls_hostname
        name = id if id is not None else secrets.token_hex(3)
        #: The client id sent to the server.
        self.id = name
        #: The client's own machine (``rc-<id>``): Connected, Ready, Exception, ...
        self.mach = Machine(CLIENT_SCHEMA, id=f"rc-{name}")
        self.consumer = consumer
        self.on_payload = on_payload
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.call_retries = call_retries
        self.connect_retry = connect_retry or RetryPolicy()
        self.reconnect_retry = reconnect_retry or RetryPolicy(
            retries=50, delay=0.2, max_delay=5.0, total=300.0
        )
        self.reconnect = reconnect
        self.ping_interval = ping_interval
        self.idle_timeout = idle_timeout
        self.max_frame = max_frame
        self.strict = strict
        self.via = tuple(via)
        self._netmach: NetMach | None = None
        self._clock: ClockMirror | None = None
        self._schema_hash: str | None = None
        self._link: Link | None = None
        self._pending: dict[int, Pending] = {}
        self._tg: TaskGroup | None = None
        self._first = anyio.Event()
        self._first_error: BaseException | None = None
        self._closing = False
        self._dead: BaseException | None = None
        self._ready = anyio.Event()
        self._rid_prefix = secrets.randbits(31) << 32
        self._rid = 0
        self._sync_inflight = False
        self._handshaken = False
        self._bad_full_clocks = 0
        self._err: BaseException | None = None
        #: Statistics: reconnects, full syncs, checksum/gap failures, ...
        self.stats = {"reconnects": 0, "syncs": 0, "clock_errors": 0, "clocks": 0}

    # -- public -------------------------------------------------------------------

    @property
    def netmach(self) -> NetMach:
        """The mirror of the served machine (after the first handshake)."""
        if self._netmach is None:
            raise NotConnected("the client has not completed a handshake yet")
        return self._netmach

    def err(self) -> BaseException | None:
        """The last connection or call error."""
        return self._err

    async def sync(self) -> None:
        """Ask the server for a full clock and apply it."""
        await self._request(Sync, self.call_timeout)
        self.stats["syncs"] += 1
        self.mach.add("MetricSync")

    # -- lifecycle ----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.mach._bind_loop()
        self.mach.add("Start")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._supervise)
        try:
            await self._first.wait()
        except BaseException:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
            raise
        if self._first_error is not None:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
            self._tg = None
            raise self._first_error
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._closing = True
        link = self._link
        self.mach.add("Disconnecting")
        if link is not None:
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(0.5),
                contextlib.suppress(RpcError, ProtocolError),
            ):
                await link.send(Bye(code="stop", reconnect=False))
        tg = self._tg
        assert tg is not None
        try:
            await close_task_group(tg)
            return None
        finally:
            self._tg = None
            if link is not None:
                await link.aclose()
            self._fail_pending(NotConnected("client closed"))
            self.mach.add("Disconnected")
            self.mach.remove("Start")
            if self._netmach is not None:
                self._netmach._dispose()

    def _fail(self, exc: BaseException) -> None:
        self._err = exc
        self._dead = exc
        self.mach.add("ConnRetryFailed")  # removes Start: no more reconnects
        if not self._first.is_set():
            self._first_error = exc
            self._first.set()
        self._fail_pending(exc if isinstance(exc, RpcError) else NotConnected(str(exc)))

    def _fail_pending(self, exc: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for p in pending.values():
            p.error = exc
            p.event.set()

    async def _connect(self) -> ByteStream:
        host, port = self.addr
        with anyio.fail_after(self.connect_timeout):
            if self.ssl_context is not None:
                return await anyio.connect_tcp(
                    host,
                    port,
                    ssl_context=self.ssl_context,
                    tls_hostname=self.tls_hostname or host,
                    tls_standard_compatible=False,
                )
            return await anyio.connect_tcp(host, port)

    async def _supervise(self) -> None:
        policy = self.connect_retry
        attempt = 0
        delay = policy.delay
        started = time.monotonic()
        while not self._closing:
            self.mach.add("Connecting")
            try:
                stream = await self._connect()
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                err = RpcConnectionError(f"cannot connect to {self.addr}: {exc!r}")
                self._err = err
                self.mach.add_err_state("ErrNetwork", err)
                self.mach.add("Disconnected")
                attempt += 1
                if (
                    attempt > policy.retries
                    or time.monotonic() - started > policy.total
                ):
                    self._fail(err)
                    return
                self.mach.add("RetryingConn")
                await anyio.sleep(delay)
                delay = min(delay * 2, policy.max_delay)
                continue
            self.mach.add("Connected")
            self._handshaken = False
            try:
                await self._run_connection(stream)
            except _Fatal as f:
                self.mach.add_err_state("ErrRpc", f.exc)
                self.mach.add("ConnRetryFailed")
                self._fail(f.exc)
                return
            except (RemoteProtocolError, RpcConnectionError, TimeoutError) as exc:
                self._err = exc
                state = "ErrRpc" if isinstance(exc, ProtocolError) else "ErrNetwork"
                if isinstance(exc, TimeoutError):
                    state = "ErrNetworkTimeout"
                self.mach.add_err_state(state, exc)
            finally:
                self._on_disconnect()
            if self._closing:
                return
            if not self.reconnect:
                self._fail(NotConnected("disconnected (reconnect is off)"))
                return
            if self._handshaken:
                policy = self.reconnect_retry
                attempt = 0
                delay = policy.delay
                started = time.monotonic()
                self.stats["reconnects"] += 1
            else:
                attempt += 1
                if (
                    attempt > policy.retries
                    or time.monotonic() - started > policy.total
                ):
                    self._fail(RpcConnectionError(f"cannot handshake with {self.addr}"))
                    return
            self.mach.add("RetryingConn")
            await anyio.sleep(delay)
            delay = min(delay * 2, policy.max_delay)

    def _on_disconnect(self) -> None:
        self._link = None
        self._ready = anyio.Event()
        if self._netmach is not None:
            self._netmach._set_up(False)
        self._fail_pending(_ConnLost("connection lost"))
        if not self._closing:
            self.mach.add("Disconnected")

    async def _run_connection(self, stream: ByteStream) -> None:
        """Handshake and serve one connection (sets ``_handshaken`` on success)."""
        link = Link(stream, "client", max_frame=self.max_frame)
        try:
            self.mach.add("Handshaking")
            await link.send(
                Hello(
                    versions=tuple(SUPPORTED_VERSIONS),
                    id=self.id,
                    token=self.token,
                    schema_hash=self._schema_hash,
                    max_frame=self.max_frame,
                    via=self.via,
                )
            )
            with anyio.fail_after(self.call_timeout * 2):
                ev = await link.receive()
            if ev is None:
                raise RpcConnectionError("the server closed the connection")
            if isinstance(ev, Error):
                raise self._handshake_error(ev)
            if isinstance(ev, Bye):
                raise RpcConnectionError(f"the server said bye: {ev.code}")
            if not isinstance(ev, Welcome):
                raise RemoteProtocolError(f"expected WELCOME, got {type(ev).__name__}")
            self._install(ev)
            self._link = link
            for s in _ERR_STATES:
                if self.mach.is_active(s):
                    self.mach.remove(s)
            if self.mach.is_active("Exception"):
                self.mach.remove("Exception")
            self.mach.remove(["RetryingConn", "RetryingCall"])
            self.mach.add("HandshakeDone")
            self._handshaken = True
            self._ready.set()
            if not self._first.is_set():
                self._first.set()
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._heartbeat, link)
                    await self._read_loop(link)
                    tg.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                raise collapse(group) from None
        except RemoteProtocolError as exc:
            # tell the server why before closing (protocol.md: fatal ERROR, re 0)
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(0.5),
                contextlib.suppress(RpcError, ProtocolError, TypeError),
            ):
                await link.send(error_frame_for(exc))
            raise
        finally:
            await link.aclose()

    def _handshake_error(self, ev: Error) -> BaseException:
        cls: type[RpcError] | None = {
            "auth": AuthError,
            "acl": AuthError,
            "version": VersionMismatch,
            "cycle": CycleError,
            "schema": SchemaMismatch,
        }.get(ev.code)
        if cls is not None or not ev.retry:
            return _Fatal(
                (cls or RemoteError)(f"server refused the connection: {ev.msg}")
            )
        return RpcConnectionError(f"server error {ev.code}: {ev.msg}")

    def _install(self, ev: Welcome) -> None:
        names = list(ev.names)
        if ev.schema is not None:
            schema = schema_from_wire(ev.schema)
        elif self._netmach is not None:
            schema = dict(self._netmach.schema)
        else:
            raise RemoteProtocolError("WELCOME without a schema on the first handshake")
        if sorted(schema) != sorted(names):
            raise RemoteProtocolError("WELCOME names do not match its schema")
        nm = self._netmach
        if nm is None:
            nm = NetMach(self, f"rnm-{self.id}", ev.id, schema, names)
            self._netmach = nm
            self._clock = ClockMirror(len(names))
        elif nm.state_names() != names or dict(nm.schema) != schema:
            # A new schema: same NetMach object (servers re-serving it keep their
            # hooks), a new mirror; waiters on the old one resolve False.
            nm._replace_mirror(schema, names)
            self._clock = ClockMirror(len(names))
        self._schema_hash = schema_hash(schema)
        nm._remote_id = ev.id
        nm._lineage = list(ev.lineage)
        self._apply_clock(ev.clock)
        nm._set_up(ev.up is not False)

    # -- reading ------------------------------------------------------------------

    def _apply_clock(self, body: ClockBody) -> None:
        mirror = self._clock
        nm = self._netmach
        assert mirror is not None
        assert nm is not None
        if nm._epoch_base == "" and body.epoch:
            nm._epoch_base = body.epoch
        outcome = mirror.apply(body)
        if outcome in (ApplyOutcome.APPLIED, ApplyOutcome.RESET):
            self._bad_full_clocks = 0
            self.stats["clocks"] += 1
            if outcome is ApplyOutcome.RESET and body.epoch:
                nm._epoch_base = body.epoch
            if body.err is not None:
                nm._remote_err = (body.err[0], body.err[1], body.err[2])
            nm._apply(
                mirror.time, mirror.q, mirror.m, reset=outcome is ApplyOutcome.RESET
            )
            if body.up is not None:
                nm._set_up(body.up)
        elif outcome in (ApplyOutcome.GAP, ApplyOutcome.INVALID):
            self.stats["clock_errors"] += 1
            if body.time is not None:  # a full clock (a SYNC reply) failed
                self._bad_full_clocks += 1
                if self._bad_full_clocks >= _MAX_BAD_SYNCS:
                    self._bad_full_clocks = 0
                    raise RemoteProtocolError(
                        f"{_MAX_BAD_SYNCS} invalid full clocks in a row", "proto"
                    )
            self._request_sync()

    def _request_sync(self) -> None:
        if self._sync_inflight or self._tg is None:
            return
        self._sync_inflight = True

        async def run() -> None:
            try:
                with contextlib.suppress(RpcError, ProtocolError, TimeoutError):
                    await self.sync()
                    # a bad full clock asks again; the third in a row drops the
                    # connection (_apply_clock raises), ending this loop
                    while self._bad_full_clocks:
                        await self.sync()
            finally:
                self._sync_inflight = False

        self._tg.start_soon(run)

    async def _read_loop(self, link: Link) -> None:
        while True:
            ev = await link.receive()
            if ev is None:
                raise _ConnLost("the server closed the connection")
            if isinstance(ev, Clock):
                self._apply_clock(ev.clock)
            elif isinstance(ev, ResultEvent):
                if ev.clock is not None:
                    self._apply_clock(ev.clock)
                p = self._pending.pop(ev.re, None)
                if p is not None:
                    p.value = ev
                    p.event.set()
            elif isinstance(ev, Error):
                p = self._pending.pop(ev.re, None) if ev.re else None
                if p is not None:
                    p.error = RemoteError(ev.msg, ev.code)
                    p.event.set()
                elif ev.fatal:
                    raise RemoteProtocolError(
                        f"server error {ev.code}: {ev.msg}", ev.code
                    )
            elif isinstance(ev, Ping):
                await link.send(ResultEvent(time=ev.time, re=ev.seq))
            elif isinstance(ev, Payload):
                await self._on_payload(link, ev)
            elif isinstance(ev, Welcome):
                self._install(ev)
            elif isinstance(ev, Bye):
                if not ev.reconnect:
                    self.reconnect = False
                raise _ConnLost(f"the server said bye: {ev.code}")

    async def _on_payload(self, link: Link, ev: Payload) -> None:
        if ev.dest is not None and ev.dest != self.id:
            await link.send(
                Error(
                    code="dest",
                    msg=f"payload for {ev.dest!r}, this is {self.id!r}",
                    fatal=False,
                    retry=False,
                    re=ev.seq,
                )
            )
            return
        if self.consumer is None and self.on_payload is None:
            await link.send(
                Error(
                    code="no_consumer",
                    msg="no payload consumer",
                    fatal=False,
                    retry=False,
                    re=ev.seq,
                )
            )
            return
        args = {"name": ev.name, "payload": ev}
        self.mach.add("ServerPayload", args)
        if self.consumer is not None:
            self.consumer.add("ServerPayload", args)
        if self.on_payload is not None:
            r = self.on_payload(ev)
            if inspect.isawaitable(r):
                await r
        await link.send(ResultEvent(re=ev.seq))

    async def _heartbeat(self, link: Link) -> None:
        period = min(self.ping_interval, self.idle_timeout) / 2
        if link.write_timeout is not None:
            period = min(period, link.write_timeout / 2)
        while True:
            await anyio.sleep(period)
            now = anyio.current_time()
            if link.stalled(now):
                raise TimeoutError("a write to the server stalled")
            if now - link.last_received > self.idle_timeout:
                raise TimeoutError(f"nothing received for {self.idle_timeout}s")
            if now - link.last_sent >= self.ping_interval and not link.lock.locked():
                # never queue behind a blocked write: the stall check must run
                await link.send(Ping(time=time.time()))

    # -- requests -----------------------------------------------------------------

    async def _wait_ready(self, limit: float) -> bool:
        if self._dead is not None or self._closing:
            return False
        if self._link is not None and self._ready.is_set():
            return True
        with anyio.move_on_after(limit):
            await self._ready.wait()
            return self._link is not None
        return False

    async def _request(self, build: Callable[[], Event], limit: float) -> ResultEvent:
        link = self._link
        if link is None:
            raise _ConnLost("not connected")
        p = Pending()
        async with link.lock:
            frame = link.conn.send(build())
            seq = link.conn.sent_seq
            self._pending[seq] = p
            await link._write(frame)
        try:
            with anyio.fail_after(limit):
                await p.event.wait()
        except TimeoutError:
            self._pending.pop(seq, None)
            raise RemoteTimeout(f"no reply within {limit}s") from None
        if p.error is not None:
            raise p.error
        assert p.value is not None
        return p.value

    def _next_rid(self) -> int:
        self._rid += 1
        return self._rid_prefix | self._rid

    def _indexes(self, states: Sequence[str]) -> tuple[int, ...]:
        nm = self.netmach
        return tuple(nm.index(s) for s in states)

    async def _remote_mutate(
        self, op: int, states: tuple[str, ...], args: Mapping[str, object] | None
    ) -> Result:
        a = dict(args) if args else None
        if a is not None:
            packb(a)  # non-encodable args raise TypeError here; nothing is sent
        rid = self._next_rid()
        epoch = self._clock.epoch if self._clock is not None else None
        if self._link is None:
            # Not connected now: fail fast (Go returns canceled), do not queue up.
            err: RpcError = NotConnected("remote mutation while disconnected")
            self._err = err
            if self.strict:
                raise err
            return Result.CANCELED
        try:
            for attempt in range(self.call_retries + 1):
                if not await self._wait_ready(self.call_timeout):
                    break
                if attempt and self._clock is not None and self._clock.epoch != epoch:
                    if self.strict:
                        raise OutcomeUnknown("the server restarted during the call")
                    return Result.CANCELED
                idx = self._indexes(states)
                try:
                    r = await self._request(
                        partial(Mutate, op=Op(op), states=idx, rid=rid, args=a),
                        self.call_timeout,
                    )
                except (_ConnLost, RemoteTimeout, RpcConnectionError) as exc:
                    self._err = exc
                    if isinstance(exc, RemoteTimeout):
                        self.mach.add_err_state("ErrNetworkTimeout", exc)
                    self.mach.add("RetryingCall")
                    continue
                except RemoteError as exc:
                    self._err = exc
                    if self.strict:
                        raise
                    return Result.CANCELED
                return Result(r.result if r.result is not None else 1)
            self.mach.add("CallRetryFailed")
            err = RemoteTimeout("remote mutation failed after retries")
            self._err = err
            self.mach.add_err_state("ErrNetwork", err)
            if self.strict:
                raise err
            return Result.CANCELED
        finally:
            if self.mach.is_active("RetryingCall"):
                self.mach.remove("RetryingCall")

    def _remote_mutate_nowait(
        self, op: int, states: tuple[str, ...], args: Mapping[str, object] | None
    ) -> None:
        a = dict(args) if args else None
        if a is not None:
            packb(a)
        link = self._link
        if link is None or self._tg is None:
            self._err = NotConnected("add_ns while disconnected: dropped")
            return
        event = Mutate(
            op=Op(op),
            states=self._indexes(states),
            rid=self._next_rid(),
            args=a,
            no_reply=True,
        )
        # Encoded now (FrameTooLarge raises here, and the frame takes its seq now),
        # written before any frame encoded later: program order is kept.
        link.send_later(event, self._tg)

    async def _remote_when_args(
        self, state: str, args: Mapping[str, object], ctx: Context | None
    ) -> bool:
        packb(dict(args))
        if ctx is not None and ctx.expired:
            return False
        if not await self._wait_ready(self.call_timeout):
            raise NotConnected("not connected")
        link = self._link
        assert link is not None
        p = Pending()
        idx = self.netmach.index(state)
        async with link.lock:
            frame = link.conn.send(Wait(state=idx, args=dict(args)))
            seq = link.conn.sent_seq
            self._pending[seq] = p
            await link._write(frame)
        handle = None
        expired = False
        if ctx is not None:

            def on_expire(_c: Context) -> None:
                nonlocal expired
                expired = True
                p.event.set()

            handle = ctx.add_done_callback(on_expire)
        try:
            await p.event.wait()
        finally:
            if handle is not None and ctx is not None:
                ctx.remove_done_callback(handle)
            if not p.event.is_set() or expired:
                self._pending.pop(seq, None)
                with (
                    anyio.CancelScope(shield=True),
                    contextlib.suppress(RpcError, ProtocolError),
                ):
                    if self._link is link:
                        await link.send(WaitCancel(wait_seq=seq))
        if expired:
            return False
        if p.error is not None:
            if isinstance(p.error, RpcConnectionError):
                raise WaitInterrupted("the connection was lost while waiting") from None
            raise p.error
        assert p.value is not None
        return bool(p.value.result)
