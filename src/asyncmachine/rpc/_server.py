"""
Serving a machine over aRPC: one listener, one session per client connection.

Rules:

- The source is any machine: a local :class:`~asyncmachine.Machine` or a
  :class:`NetMach` (which is how replicants re-serve a mirror). The server hooks the
  source with a tracer; every finished transition marks all sessions *dirty*.
- A session processes its client's requests one at a time, in arrival order. Every
  reply that may change the client's view carries the clock delta computed at write
  time; the push task sends a CLOCK at most once per ``push_interval`` and only when
  something changed, so clients that keep mutating receive no pushes at all.
- Mutations are de-duplicated by ``(client id, rid)`` across sessions, so a retry after
  a lost reply never applies twice.
- Bad input (malformed frames, wrong token, unknown states, floods) ends in an ERROR
  frame and, when fatal, a closed session; other sessions and the source are unharmed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import inspect
import itertools
import secrets
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

import anyio
from anyio.abc import SocketAttribute, SocketListener
from anyio.streams.tls import TLSStream

from .._core._schema import EXCEPTION, State
from .._errors import AsyncMachineError
from .._machine import Machine
from .._tracing import TracerNoOp
from .._transition import Transition
from ._clock import ClockExporter
from ._errors import (
    DestinationMismatch,
    FrameTooLarge,
    NoConsumer,
    NotConnected,
    ProtocolError,
    RemoteError,
    RemoteProtocolError,
    RpcConnectionError,
    RpcError,
)
from ._events import (
    Bye,
    Clock,
    ClockBody,
    Error,
    Hello,
    Mutate,
    Payload,
    Ping,
    Result as ResultEvent,
    Sync,
    Wait,
    WaitCancel,
    Welcome,
)
from ._protocol import MAX_FRAME, SUPPORTED_VERSIONS
from ._states import SERVER_SCHEMA, SESSION_SCHEMA
from ._transport import Link, Pending, close_task_group, collapse
from ._wire import schema_hash, schema_to_wire

if TYPE_CHECKING:
    from anyio.abc import ByteStream, TaskGroup

__all__ = ("Server", "Session", "serve")

HELLO_TIMEOUT = 5.0
MAX_PENDING_WAITS = 256
DEDUP_ENTRIES = 1024
DEDUP_TTL = 60.0


class Source(Protocol):
    """What a server needs from the machine it serves (a Machine or a NetMach)."""

    @property
    def id(self) -> str: ...

    @property
    def epoch(self) -> str: ...

    @property
    def schema(self) -> Mapping[str, State]: ...

    def state_names(self) -> list[str]: ...

    def time(self) -> list[int]: ...

    def queue_tick(self) -> int: ...

    def machine_tick(self) -> int: ...

    def err(self) -> BaseException | None: ...

    def add_tracer(self, tracer: object) -> None: ...

    def detach_tracer(self, tracer: object) -> None: ...

    async def when_args(self, state: str, args: Mapping[str, object]) -> bool: ...


def lineage(source: object) -> list[str]:
    """Ids of *source* and of every machine it mirrors, nearest first."""
    ids = [str(getattr(source, "id", ""))]
    upstream = getattr(source, "_lineage", None)
    if upstream:
        ids.extend(upstream)
    return ids


class _Dedup:
    """Results of recent mutations by ``(client id, rid)``, shared by all sessions."""

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, int], tuple[float, _Once]] = OrderedDict()

    def get_or_start(self, key: tuple[str, int]) -> tuple[_Once, bool]:
        now = time.monotonic()
        entries = self._entries
        while entries:
            k, (t, _o) = next(iter(entries.items()))
            if now - t <= DEDUP_TTL and len(entries) <= DEDUP_ENTRIES:
                break
            del entries[k]
        hit = entries.get(key)
        if hit is not None:
            return hit[1], False
        once = _Once()
        entries[key] = (now, once)
        return once, True

    def forget(self, key: tuple[str, int]) -> None:
        self._entries.pop(key, None)


class _Once:
    """A result computed once and awaited by retries of the same request."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.value = 0

    def set(self, value: int) -> None:
        self.value = value
        self.event.set()

    async def get(self) -> int:
        await self.event.wait()
        return self.value


class _SourceHook(TracerNoOp):
    def __init__(self, server: Server) -> None:
        self.server = server

    def transition_end(self, tx: Transition) -> None:
        self.server._source_changed()

    def schema_change(self, mach: Machine, old_schema: dict[str, object]) -> None:
        self.server._schema_changed()

    def verify_states(self, mach: Machine) -> None:
        # an import_ (new ticks, new epoch) happens without a transition
        self.server._source_changed()


class Session:
    """One client connection of a :class:`Server`."""

    def __init__(self, server: Server, link: Link, n: int) -> None:
        self.server = server
        self.link = link
        self.n = n
        #: The session's own state machine (``rs-<source id>-<n>``).
        self.mach = Machine(SESSION_SCHEMA, id=f"rs-{server.source.id}-{n}")
        self.client_id: str | None = None
        self._exporter = ClockExporter()
        self._dirty = anyio.Event()
        self._last_clock = 0.0
        self._waits: dict[int, anyio.CancelScope] = {}
        self._pending: dict[int, Pending] = {}
        self._tg: TaskGroup | None = None
        self._welcomed = False
        self._version = 1
        self._schema_dirty = False
        self._status_dirty = False

    # -- clocks -------------------------------------------------------------------

    def _clock_update(
        self, full: bool = False, force: bool = False
    ) -> ClockBody | None:
        src = self.server.source
        args = (src.epoch, src.time(), src.queue_tick(), src.machine_tick())
        if full:
            body: ClockBody | None = self._exporter.full(*args)
        else:
            body = self._exporter.update(*args, force=force)
        if body is not None:
            self._last_clock = anyio.current_time()
            body = self.server._decorate_clock(body)
        return body

    def _full_clock_reply(self, re: int) -> ResultEvent:
        return ResultEvent(clock=self._clock_update(full=True), re=re)

    def _result_reply(self, result: int, re: int, full: bool = False) -> ResultEvent:
        return ResultEvent(result=result, clock=self._clock_update(full=full), re=re)

    def mark_dirty(self) -> None:
        self._dirty.set()

    def mark_status_dirty(self) -> None:
        self._status_dirty = True
        self._dirty.set()

    def mark_schema_dirty(self) -> None:
        self._schema_dirty = True
        self._dirty.set()

    # -- lifecycle ----------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends; never raises (but cancellation)."""
        self.mach.add(["Start", "ClientConnected"])
        try:
            if not await self._handshake():
                return
            try:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    tg.start_soon(self._push_loop)
                    tg.start_soon(self._heartbeat)
                    await self._read_loop()
                    tg.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                raise collapse(group) from None
        except FrameTooLarge as exc:
            # e.g. a WELCOME bigger than the client accepts: retrying cannot help
            self.mach.add_err_state("ErrRpc", exc)
            await self._send_error("too_big", str(exc), fatal=True, retry=False)
        except RemoteProtocolError as exc:
            self.mach.add_err_state("ErrRpc", exc)
            await self._send_error(exc.code, str(exc), fatal=True, retry=True)
        except RpcConnectionError as exc:
            self.mach.add_err_state("ErrNetwork", exc)
        except Exception as exc:  # noqa: BLE001 - one session never takes the server down
            self.mach.add_err_state("Exception", exc)
            await self._send_error("internal", repr(exc), fatal=True, retry=True)
        finally:
            for p in self._pending.values():
                p.error = NotConnected("session closed")
                p.event.set()
            self.mach.remove("ClientConnected")
            await self.link.aclose()
            self.mach.dispose()

    async def _send_error(
        self, code: str, msg: str, *, fatal: bool, retry: bool, re: int = 0
    ) -> None:
        with contextlib.suppress(RpcError, ProtocolError):
            await self.link.send(
                Error(code=code, msg=msg, fatal=fatal, retry=retry, re=re)
            )

    async def _handshake(self) -> bool:
        server = self.server
        self.mach.add("Handshaking")
        ev: object = None
        with anyio.move_on_after(HELLO_TIMEOUT):
            ev = await self.link.receive()
        if not isinstance(ev, Hello):
            return False
        common = set(ev.versions) & set(SUPPORTED_VERSIONS)
        if not common:
            await self._send_error(
                "version",
                f"no common protocol version: server {list(SUPPORTED_VERSIONS)}",
                fatal=True,
                retry=False,
            )
            return False
        if server.token is not None and not hmac.compare_digest(
            (ev.token or "").encode(), server.token.encode()
        ):
            await self._send_error(
                "auth", "wrong or missing token", fatal=True, retry=False
            )
            return False
        if set(ev.via) & set(lineage(server.source)):
            await self._send_error(
                "cycle",
                "the client mirrors this server's source",
                fatal=True,
                retry=False,
            )
            return False
        if not ev.id:
            await self._send_error("proto", "empty client id", fatal=True, retry=False)
            return False
        self.client_id = ev.id
        # the Connection adopted the client's `mf` from HELLO
        self._version = max(common)
        await self.link.send(partial(self._welcome, self._version, ev.schema_hash))
        self._welcomed = True
        self.mach.add("HandshakeDone")
        return True

    def _welcome(self, version: int, client_hash: str | None) -> Welcome:
        server = self.server
        src = server.source
        send_schema = client_hash != server.schema_hash
        clk = self._clock_update(full=True)
        assert clk is not None
        pi = server.push_interval
        return Welcome(
            version=version,
            id=src.id,
            session_id=self.mach.id,
            names=tuple(src.state_names()),
            schema=schema_to_wire(src.schema) if send_schema else None,
            clock=clk,
            push_interval=None if pi is None else round(pi * 1000),
            max_frame=server.max_frame,
            up=server._source_up(),
            lineage=tuple(lineage(src)),
        )

    # -- reading ------------------------------------------------------------------

    async def _read_loop(self) -> None:
        link = self.link
        while True:
            ev = await link.receive()
            if ev is None:
                return
            if isinstance(ev, Mutate):
                await self._on_mutate(ev)
            elif isinstance(ev, Sync):
                self.mach.add("MetricSync")
                await link.send(partial(self._full_clock_reply, ev.seq))
            elif isinstance(ev, Ping):
                await link.send(ResultEvent(time=ev.time, re=ev.seq))
            elif isinstance(ev, Wait):
                await self._on_wait(ev)
            elif isinstance(ev, WaitCancel):
                scope = self._waits.get(ev.wait_seq)
                if scope is not None:
                    scope.cancel()
            elif isinstance(ev, ResultEvent | Error):
                p = self._pending.pop(ev.re, None)
                if p is not None:
                    if isinstance(ev, Error):
                        p.error = (
                            NoConsumer(ev.msg)
                            if ev.code == "no_consumer"
                            else RemoteError(ev.msg, ev.code)
                        )
                    else:
                        p.value = ev
                    p.event.set()
                elif isinstance(ev, Error) and ev.fatal:
                    return
            elif isinstance(ev, Bye):
                return

    async def _on_mutate(self, ev: Mutate) -> None:
        server = self.server
        src = server.source
        names = src.state_names()
        try:
            called = [names[i] for i in ev.states]
            if any(i < 0 for i in ev.states):
                raise IndexError
        except IndexError:
            if not ev.no_reply:
                await self._send_error(
                    "state",
                    f"state index out of range: {list(ev.states)}",
                    fatal=False,
                    retry=False,
                    re=ev.seq,
                )
            return
        key = (self.client_id or "", ev.rid)
        once, first = server._dedup.get_or_start(key)
        if first:
            try:
                res = await server._run_mutation(ev.op, called, ev.args)
            except AsyncMachineError as exc:
                server._dedup.forget(key)
                once.set(-1)
                if not ev.no_reply:
                    code = "args" if "args" in type(exc).__name__.lower() else "state"
                    await self._send_error(
                        code, str(exc), fatal=False, retry=False, re=ev.seq
                    )
                return
            except BaseException:
                server._dedup.forget(key)
                once.set(-1)
                raise
            once.set(res)
            full = False
        else:
            res = await once.get()
            if res < 0:
                return
            # A retry: the lost reply's delta never arrived, so send a full clock.
            full = True
        if not ev.no_reply:
            await self.link.send(partial(self._result_reply, res, ev.seq, full))

    async def _on_wait(self, ev: Wait) -> None:
        names = self.server.source.state_names()
        if not 0 <= ev.state < len(names):
            await self._send_error(
                "state",
                f"state index out of range: {ev.state}",
                fatal=False,
                retry=False,
                re=ev.seq,
            )
            return
        if len(self._waits) >= MAX_PENDING_WAITS:
            await self._send_error(
                "busy",
                f"more than {MAX_PENDING_WAITS} pending waits",
                fatal=False,
                retry=True,
                re=ev.seq,
            )
            return
        assert self._tg is not None
        scope = anyio.CancelScope()
        self._waits[ev.seq] = scope
        self._tg.start_soon(
            self._run_wait, ev.seq, names[ev.state], dict(ev.args), scope
        )

    async def _run_wait(
        self, seq: int, state: str, args: dict[str, object], scope: anyio.CancelScope
    ) -> None:
        ok = False
        try:
            with scope:
                ok = await self.server.source.when_args(state, args)
        finally:
            self._waits.pop(seq, None)
        if scope.cancelled_caught:
            return
        with contextlib.suppress(RpcError, ProtocolError):
            await self.link.send(partial(self._result_reply, int(ok), seq))

    # -- writing ------------------------------------------------------------------

    async def _push_loop(self) -> None:
        # Runs even with pushes off: schema changes (WELCOME) and upstream status
        # changes must still reach the client.
        pushes = self.server.push_interval is not None
        interval = self.server.push_interval or 0.0
        while True:
            await self._dirty.wait()
            self._dirty = anyio.Event()
            if self._schema_dirty:
                self._schema_dirty = False
                self._exporter = ClockExporter()
                await self.link.send(partial(self._welcome, self._version, None))
                continue
            if not pushes and not self._status_dirty:
                continue
            wait = self._last_clock + interval - anyio.current_time()
            if wait > 0:
                await anyio.sleep(wait)
            await self.link.send(self._clock_frame)

    def _clock_frame(self) -> Clock | None:
        force = self._status_dirty
        self._status_dirty = False
        body = self._clock_update(force=force)
        return None if body is None else Clock(clock=body)

    async def _heartbeat(self) -> None:
        server = self.server
        link = self.link
        period = (
            min(server.ping_interval, server.idle_timeout, server.write_timeout) / 2
        )
        while True:
            await anyio.sleep(period)
            now = anyio.current_time()
            if link.stalled(now):
                self.mach.add_err_state("ErrNetwork", TimeoutError("slow client"))
                await link.aclose()
                return
            if now - link.last_received > server.idle_timeout:
                self.mach.add_err_state(
                    "ErrNetworkTimeout", TimeoutError("client idle for too long")
                )
                await link.aclose()
                return
            if now - link.last_sent >= server.ping_interval and not link.lock.locked():
                # never queue behind a blocked write: the stall check must run
                await link.send(Ping(time=time.time()))

    async def send_payload(
        self,
        name: str,
        data: object,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a delivery deadline
    ) -> None:
        """
        Send *data* to this session's client and wait for its acknowledgement.

        Raises:
            NotConnected: the session is closed.
            NoConsumer: the client has no consumer for payloads.
            FrameTooLarge: the payload exceeds the client's frame limit.
            TimeoutError: no acknowledgement within the delivery timeout.
        """
        if not self._welcomed or self.link.closed:
            raise NotConnected(f"session {self.mach.id} is not connected")
        p = Pending()
        payload = Payload(
            name=name,
            data=data,
            token=secrets.token_hex(8),
            source=self.server.source.id,
            dest=self.client_id,
        )
        seq = 0
        try:
            async with self.link.lock:
                frame = self.link.conn.send(payload)  # FrameTooLarge: nothing sent
                seq = self.link.conn.sent_seq
                self._pending[seq] = p
                await self.link._write(frame)
            timeout = timeout if timeout is not None else self.server.delivery_timeout
            with anyio.fail_after(timeout):
                await p.event.wait()
            if p.error is not None:
                raise p.error
        except Exception as exc:
            # [rpc.md 7, row 24]: on the session and on the server's machine
            self.mach.add_err_state("ErrDelivery", exc)
            self.server.mach.add_err_state("ErrDelivery", exc)
            raise
        finally:
            self._pending.pop(seq, None)


class Server:
    """
    Serves one machine to many clients over TCP (optionally TLS).

    Use :func:`serve` (or ``async with Server(...)``). Attributes after entering:
    ``addr`` (the bound ``(host, port)``), ``mach`` (the server's own machine with
    ``Ready``, ``HasClients`` and ``ClientConnected``) and ``sessions``.
    """

    def __init__(
        self,
        source: Machine | Source,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        push_interval: float | None = 0.25,
        max_frame: int = MAX_FRAME,
        ping_interval: float = 5.0,
        idle_timeout: float = 15.0,
        write_timeout: float = 10.0,
        delivery_timeout: float = 5.0,
        insecure: bool = False,
    ) -> None:
        if (
            host in ("0.0.0.0", "::", "")
            and token is None
            and ssl_context is None
            and not insecure
        ):
            raise ValueError(
                "refusing to listen on all interfaces without a token or TLS; "
                "pass insecure=True to override"
            )
        self.source: Source = source
        self.host = host
        self.port = port
        self.token = token
        self.ssl_context = ssl_context
        self.push_interval = push_interval
        self.max_frame = max_frame
        self.ping_interval = ping_interval
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.delivery_timeout = delivery_timeout
        #: The server's own machine (``rm-<source id>``).
        self.mach = Machine(SERVER_SCHEMA, id=f"rm-{source.id}")
        self.sessions: dict[int, Session] = {}
        self.addr: tuple[str, int] = (host, port)
        self.schema_hash = schema_hash(source.schema)
        self._dedup = _Dedup()
        self._hook = _SourceHook(self)
        self._tg: TaskGroup | None = None
        self._listeners: list[SocketListener] = []
        self._count = itertools.count(1)

    # -- source -------------------------------------------------------------------

    def _source_changed(self) -> None:
        for s in self.sessions.values():
            s.mark_dirty()

    def _schema_changed(self) -> None:
        self.schema_hash = schema_hash(self.source.schema)
        for s in self.sessions.values():
            s.mark_schema_dirty()

    def _source_status_changed(self, _source: object = None) -> None:
        for s in self.sessions.values():
            s.mark_status_dirty()

    def _source_up(self) -> bool | None:
        up = getattr(self.source, "up", None)
        return None if up is None else bool(up)

    def _decorate_clock(self, body: ClockBody) -> ClockBody:
        """Attach the source's error and upstream status where they apply."""
        up = self._source_up()
        err_info = None
        names = self.source.state_names()
        if EXCEPTION in names:
            i = names.index(EXCEPTION)
            ticked = (body.time is not None and body.time[i] % 2 == 1) or (
                body.indexes is not None and i in body.indexes
            )
            err = self.source.err() if ticked else None
            if err is not None:
                err_info = (EXCEPTION, type(err).__name__, str(err)[:500])
        if up is None and err_info is None:
            return body
        return dataclasses.replace(body, err=err_info, up=up)

    async def _run_mutation(
        self, op: int, called: Sequence[str], args: Mapping[str, object] | None
    ) -> int:
        src = self.source
        fn: Callable[..., object] = getattr(src, ("add", "remove", "set")[op])
        a = dict(args) if args else None
        if a is not None:
            err = a.get("err")
            if isinstance(err, dict) and "type" in err and "msg" in err:
                remote = RemoteError(f"{err['type']}: {err['msg']}", "client")
                a["err"] = remote
                if EXCEPTION in called and isinstance(src, Machine):
                    # a client's add_err: the source's err() reports it [E1]
                    src._err = remote
                    src._call_on_error(remote)
        res = fn(list(called), a)
        if inspect.isawaitable(res):
            res = await res
        if not isinstance(res, int):
            raise RemoteError(f"the source returned {res!r}, not a Result", "internal")
        return int(res)

    # -- lifecycle ----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        bind = getattr(self.source, "_bind_loop", None)
        if bind is not None:
            bind()
        multi = await anyio.create_tcp_listener(
            local_host=self.host, local_port=self.port
        )
        self._listeners = [
            lst for lst in multi.listeners if isinstance(lst, SocketListener)
        ]
        sock_addr = self._listeners[0].extra(SocketAttribute.local_address)
        self.addr = (str(sock_addr[0]), int(sock_addr[1]))
        self.source.add_tracer(self._hook)
        listeners = getattr(self.source, "_status_listeners", None)
        if listeners is not None:
            listeners.append(self._source_status_changed)
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        for lst in self._listeners:
            tg.start_soon(self._accept_loop, lst)
        self.mach.add(["Start", "Ready"])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.mach.remove("Ready")
        with anyio.CancelScope(shield=True):
            for s in list(self.sessions.values()):
                with (
                    anyio.move_on_after(0.5),
                    contextlib.suppress(RpcError, ProtocolError),
                ):
                    await s.link.send(Bye(code="shutdown", reconnect=True))
        with contextlib.suppress(ValueError):
            self.source.detach_tracer(self._hook)
        listeners = getattr(self.source, "_status_listeners", None)
        if listeners is not None and self._source_status_changed in listeners:
            listeners.remove(self._source_status_changed)
        assert self._tg is not None
        try:
            await close_task_group(self._tg)
            return None
        finally:
            self._tg = None
            with anyio.CancelScope(shield=True):
                for lst in self._listeners:
                    await lst.aclose()
            self.mach.dispose()

    async def _accept_loop(self, listener: SocketListener) -> None:
        assert self._tg is not None
        delay = 0.1
        while True:
            try:
                stream: ByteStream = await listener.accept()
            except (OSError, anyio.BrokenResourceError) as exc:
                # accept errors (EMFILE, ...) never spin the loop
                self.mach.add_err_state("ErrNetwork", exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            delay = 0.1
            self._tg.start_soon(self._serve_one, stream)

    async def _serve_one(self, stream: ByteStream) -> None:
        if self.ssl_context is not None:
            try:
                with anyio.fail_after(HELLO_TIMEOUT):
                    stream = await TLSStream.wrap(
                        stream,
                        server_side=True,
                        ssl_context=self.ssl_context,
                        standard_compatible=False,
                    )
            except (
                OSError,
                ssl.SSLError,
                TimeoutError,
                anyio.BrokenResourceError,
                anyio.EndOfStream,
            ) as exc:
                # a failed TLS handshake only costs that connection
                self.mach.add_err_state("ErrNetwork", exc)
                with anyio.CancelScope(shield=True):
                    await stream.aclose()
                return
        n = next(self._count)
        link = Link(
            stream, "server", max_frame=self.max_frame, write_timeout=self.write_timeout
        )
        session = Session(self, link, n)
        self.sessions[n] = session
        self.mach.add(["ClientConnected", "HasClients"])
        try:
            await session.run()
        finally:
            self.sessions.pop(n, None)
            if not self.sessions:
                self.mach.remove("HasClients")

    # -- payloads -----------------------------------------------------------------

    def session_for(self, client_id: str) -> Session:
        """The live session of *client_id*.

        Raises:
            DestinationMismatch: no connected client has that id.
        """
        for s in self.sessions.values():
            if s.client_id == client_id:
                return s
        raise DestinationMismatch(f"no connected client {client_id!r}")

    async def send_payload(
        self,
        name: str,
        data: object,
        *,
        dst: str,
        timeout: float | None = None,  # noqa: ASYNC109 - a delivery deadline
    ) -> None:
        """Send a payload to the client *dst* and wait for its acknowledgement."""
        await self.session_for(dst).send_payload(name, data, timeout=timeout)


def serve(
    mach: Machine | Source,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    push_interval: float | None = 0.25,
    **options: object,
) -> Server:
    """
    Serve *mach* on ``host:port``; use as ``async with am.rpc.serve(mach) as server:``.

    Args:
        mach: the machine to serve (a local machine or a mirror).
        host: the interface to bind; ``127.0.0.1`` by default.
        port: the port; 0 picks a free one (see ``server.addr``).
        token: a shared secret clients must present (compared in constant time).
        ssl_context: serve over TLS with this server-side context.
        push_interval: seconds between clock pushes (0 = as soon as possible,
            ``None`` = never; clients then learn changes from replies only).
        options: further :class:`Server` options (``max_frame``, ``ping_interval``,
            ``idle_timeout``, ``write_timeout``, ``delivery_timeout``, ``insecure``).
    """
    return Server(
        mach,
        host,
        port,
        token=token,
        ssl_context=ssl_context,
        push_interval=push_interval,
        **options,  # type: ignore[arg-type]
    )
