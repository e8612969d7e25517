"""
Limits and bad input over real sockets: frame sizes, encodability, remote-wait limits,
cancellation and lost connections (docs/protocol.md sections 1, 6 and 10; rpc.md 6.9,
6.14 and section 7).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Self

import anyio
import pytest
from anyio.abc import ByteStream, TaskGroup

import asyncmachine as am
from asyncmachine.rpc._events import (
    Error,
    Event,
    Hello,
    Kind,
    Mutate,
    Op,
    Result,
    Wait,
    WaitCancel,
    Welcome,
    event_from_body,
)
from asyncmachine.rpc._framing import MAX_FRAME_LIMIT, FrameDecoder, encode_frame

pytestmark = pytest.mark.anyio

TIMEOUT = 10
NAMES = ["A", "B", "Exception"]


def source(id: str = "src") -> am.Machine:
    return am.Machine({"A": {}, "B": am.State(multi=True)}, id=id, names=NAMES)


async def wait_until(cond: Callable[[], bool], what: str, limit: float = 3.0) -> None:
    """Poll *cond*: a bounded wait for background work, never a sleep-as-assert."""
    try:
        with anyio.fail_after(limit):
            while not cond():  # noqa: ASYNC110 - server internals have no events
                await anyio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"not within {limit}s: {what}") from None


def pending_waits(server: am.rpc.Server) -> int:
    """Remote waits the server is running for all its sessions."""
    return sum(len(s._waits) for s in server.sessions.values())


def client_link(client: am.rpc.Client) -> tuple[int, int]:
    """(frames sent, frames received) of the client's live connection."""
    link = client._link
    assert link is not None
    return link.frames_out, link.frames_in


def only_session(server: am.rpc.Server) -> am.rpc.Session:
    (session,) = server.sessions.values()
    return session


class RawPeer:
    """A hand-driven client connection that speaks frames (and garbage)."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.seq = 0
        self.decoder = FrameDecoder(MAX_FRAME_LIMIT)

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, addr: tuple[str, int]) -> AsyncIterator[RawPeer]:
        async with await anyio.connect_tcp(*addr) as stream:
            yield cls(stream)

    async def send(self, *events: Event) -> list[int]:
        """Send events with consecutive seqs in one write; return their seqs."""
        out, seqs = [], []
        for ev in events:
            self.seq += 1
            seqs.append(self.seq)
            out.append(
                encode_frame(
                    ev.KIND, self.seq, ev.re, ev.to_body(), max_frame=MAX_FRAME_LIMIT
                )
            )
        await self.stream.send(b"".join(out))
        return seqs

    async def hello(self, max_frame: int = 1 << 20) -> Welcome:
        await self.send(Hello(versions=(1,), id="rc-raw", max_frame=max_frame))
        welcome = await self.receive()
        assert isinstance(welcome, Welcome)
        return welcome

    async def receive(self) -> Event | None:
        """The next frame from the server, or None at EOF."""
        while (frame := self.decoder.next_frame()) is None:
            try:
                self.decoder.feed(await self.stream.receive())
            except anyio.EndOfStream:
                assert self.decoder.buffered == 0
                return None
        kind, seq, re, body = frame
        return event_from_body(Kind(kind), body, seq=seq, re=re)

    async def receive_all(self) -> list[Event]:
        """Frames until the server closes the connection."""
        events = []
        while (ev := await self.receive()) is not None:
            events.append(ev)
        return events


class Proxy:
    """A TCP relay on 127.0.0.1 in front of a server; ``cut()`` drops its connections."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.addr: tuple[str, int] = ("127.0.0.1", 0)
        self._scopes: list[anyio.CancelScope] = []
        self._tg: TaskGroup | None = None
        self._listener: anyio.abc.Listener[ByteStream] | None = None

    async def __aenter__(self) -> Self:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self._listener = listener
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self.addr = ("127.0.0.1", port)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(listener.serve, self._relay)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        assert self._listener is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        await self._listener.aclose()

    def cut(self) -> None:
        """Close every relayed connection (both sides see the connection drop)."""
        for scope in self._scopes:
            scope.cancel()

    async def _relay(self, down: ByteStream) -> None:
        async with down, await anyio.connect_tcp(*self.target) as up:
            with anyio.CancelScope() as scope:
                self._scopes.append(scope)

                async def pipe(a: ByteStream, b: ByteStream) -> None:
                    with contextlib.suppress(
                        anyio.EndOfStream, anyio.BrokenResourceError
                    ):
                        while True:
                            await b.send(await a.receive())
                    scope.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(pipe, down, up)
                    tg.start_soon(pipe, up, down)


# -- frame sizes --------------------------------------------------------------------


async def test_oversized_inbound_frame_is_refused_with_too_big() -> None:
    """A length above the server's max frame gets ERROR too_big and a close, body unread."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src, max_frame=1024) as server:
            for hello_first in (False, True):
                async with RawPeer.connect(server.addr) as peer:
                    if hello_first:
                        await peer.hello()
                    await peer.stream.send(struct.pack(">I", 1025) + b"\x94")
                    events = await peer.receive_all()
                assert len(events) == 1
                err = events[0]
                assert isinstance(err, Error)
                assert (err.code, err.fatal, err.retry, err.re) == (
                    "too_big",
                    True,
                    True,
                    0,
                )
            await wait_until(lambda: not server.sessions, "sessions closed")
            async with am.rpc.Client(server.addr) as client:
                assert await client.netmach.add("A") == am.Result.EXECUTED


async def test_frame_of_exactly_max_frame_is_accepted() -> None:
    """A frame whose payload is exactly the server's max frame passes (boundary)."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src, max_frame=1024) as server:
            async with RawPeer.connect(server.addr) as peer:
                await peer.hello()
                pad = 0
                while True:
                    ev = Mutate(op=Op.ADD, states=(0,), rid=1, args={"p": "x" * pad})
                    size = len(
                        encode_frame(ev.KIND, 2, 0, ev.to_body(), max_frame=1 << 20)
                    )
                    if size - 4 >= 1024:
                        break
                    pad += 1
                assert size - 4 == 1024
                (seq,) = await peer.send(ev)
                reply = await peer.receive()
                assert isinstance(reply, Result)
                assert (reply.re, reply.result) == (seq, 0)
            assert src.is_active("A")


@pytest.mark.parametrize("server_max", [512, 2048])
async def test_outbound_args_larger_than_peer_max_frame(server_max: int) -> None:
    """Oversized args raise FrameTooLarge locally; nothing is sent; the link stays up."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src, max_frame=server_max) as server,
            am.rpc.Client(server.addr) as client,
        ):
            nm = client.netmach
            big = {"blob": "x" * (server_max + 100)}
            sent = client_link(client)
            received = only_session(server).link.frames_in
            for call in (nm.add, nm.remove, nm.set, nm.toggle):
                with pytest.raises(am.rpc.FrameTooLarge):
                    await call("A", big)
            with pytest.raises(am.rpc.FrameTooLarge):
                await nm.when_args("A", big)
            assert client_link(client) == sent
            assert only_session(server).link.frames_in == received
            assert issubclass(am.rpc.FrameTooLarge, am.rpc.RpcError)
            assert await nm.add("A", {"small": 1}) == am.Result.EXECUTED
            assert nm.is_active("A")
            assert client.mach.is_active("Ready")


async def test_add_ns_with_oversized_args_raises() -> None:
    """add_ns refuses oversized args at the call, like the awaited mutations."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src, max_frame=2048) as server,
            am.rpc.Client(server.addr) as client,
        ):
            with pytest.raises(am.rpc.FrameTooLarge):
                client.netmach.add_ns("A", {"blob": "x" * 4096})


async def test_outbound_payload_larger_than_client_max_frame() -> None:
    """A payload above the client's max frame raises FrameTooLarge on the server only."""
    src = source()
    got: list[object] = []
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src) as server,
            am.rpc.Client(
                server.addr, id="small", max_frame=2048, on_payload=got.append
            ) as client,
        ):
            with pytest.raises(am.rpc.FrameTooLarge):
                await server.send_payload("big", b"x" * 4096, dst="small")
            await server.send_payload("ok", b"x" * 100, dst="small")
            assert [p.name for p in got] == ["ok"]  # type: ignore[attr-defined]
            assert await client.netmach.add("A") == am.Result.EXECUTED


async def test_welcome_too_big_for_the_client() -> None:
    """rpc.md 7.5: a WELCOME above the client's max frame gets ERROR too_big, no retry."""
    schema = {
        f"S{i:03d}": am.State(require=[f"S{(i + 1) % 100:03d}"]) for i in range(100)
    }
    src = am.Machine(schema, id="big")
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server:
            async with RawPeer.connect(server.addr) as peer:
                await peer.send(Hello(versions=(1,), id="rc-tiny", max_frame=1024))
                events = await peer.receive_all()
            assert len(events) == 1
            err = events[0]
            assert isinstance(err, Error)
            assert (err.code, err.fatal, err.retry) == ("too_big", True, False)
            with pytest.raises(am.rpc.RpcError):
                async with am.rpc.Client(server.addr, max_frame=1024):
                    pass
            async with am.rpc.Client(server.addr) as client:
                assert len(client.netmach.state_names()) == 101


# -- encodability -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        pytest.param({"x": object()}, id="object"),
        pytest.param({"x": {1, 2}}, id="set"),
        pytest.param({"x": {1: "a"}}, id="int-key"),
        pytest.param({"x": 1 << 64}, id="huge-int"),
        pytest.param({"x": "\ud800"}, id="lone-surrogate"),
    ],
)
async def test_non_encodable_args_raise_type_error_and_send_nothing(
    args: dict[str, object],
) -> None:
    """Args msgpack cannot carry raise TypeError at the call; no frame leaves."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src) as server,
            am.rpc.Client(server.addr) as client,
        ):
            nm = client.netmach
            sent = client_link(client)
            received = only_session(server).link.frames_in
            for call in (nm.add, nm.remove, nm.set, nm.toggle):
                with pytest.raises(TypeError):
                    await call("A", args)
            with pytest.raises(TypeError):
                nm.add_ns("A", args)
            with pytest.raises(TypeError):
                await nm.when_args("A", args)
            with pytest.raises(TypeError):
                await server.send_payload("p", args, dst=client.id)
            await anyio.wait_all_tasks_blocked()
            assert client_link(client) == sent
            assert only_session(server).link.frames_in == received
            assert src.tick("A") == 0
            assert await nm.add("A") == am.Result.EXECUTED


# -- bad state indexes from a raw peer ----------------------------------------------


async def test_unknown_state_index_gets_error_state() -> None:
    """MUTATE/WAIT with an index past the names get a non-fatal ERROR state."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server, RawPeer.connect(server.addr) as peer:
            welcome = await peer.hello()
            n = len(welcome.names)
            assert n == len(NAMES)
            seqs = await peer.send(
                Mutate(op=Op.ADD, states=(0, n), rid=1),
                Mutate(op=Op.SET, states=(99,), rid=2, no_reply=True),
                Wait(state=n, args={}),
                Mutate(op=Op.ADD, states=(0,), rid=3),
            )
            replies = [await peer.receive() for _ in range(3)]
            bad_mutate, bad_wait, ok = replies
            for err, seq in ((bad_mutate, seqs[0]), (bad_wait, seqs[2])):
                assert isinstance(err, Error)
                assert (err.code, err.fatal, err.retry, err.re) == (
                    "state",
                    False,
                    False,
                    seq,
                )
            assert isinstance(ok, Result)
            assert (ok.re, ok.result) == (seqs[3], 0)
            assert ok.clock is not None
            assert src.active_states() == ["A"]  # the bad ones changed nothing
            assert src.tick("A") == 1


# -- remote waits ---------------------------------------------------------------------


async def test_more_than_256_pending_waits_get_busy() -> None:
    """The 257th pending WAIT gets ERROR busy (non-fatal, retry); the session lives."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server, RawPeer.connect(server.addr) as peer:
            await peer.hello()
            seqs = await peer.send(*[Wait(state=0, args={"i": i}) for i in range(257)])
            err = await peer.receive()
            assert isinstance(err, Error)
            assert (err.code, err.fatal, err.retry, err.re) == (
                "busy",
                False,
                True,
                seqs[-1],
            )
            assert pending_waits(server) == 256
            (mseq,) = await peer.send(Mutate(op=Op.ADD, states=(1,), rid=7))
            reply = await peer.receive()
            assert isinstance(reply, Result)
            assert reply.re == mseq
            await peer.send(*[WaitCancel(wait_seq=s) for s in seqs[:-1]])
            await wait_until(lambda: pending_waits(server) == 0, "waits cancelled")
            (mseq,) = await peer.send(Mutate(op=Op.ADD, states=(0,), rid=8))
            reply = await peer.receive()  # no RESULT for any cancelled wait
            assert isinstance(reply, Result)
            assert reply.re == mseq


async def test_client_busy_wait_raises_remote_error_and_connection_survives() -> None:
    """Through the client: one of 257 remote waits fails with code busy, others live."""
    src = source()
    errors: list[am.rpc.RemoteError] = []
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server, am.rpc.Client(server.addr) as client:
            nm = client.netmach

            async def wait(i: int) -> None:
                try:
                    await nm.when_args("A", {"i": i})
                except am.rpc.RemoteError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                for i in range(257):
                    tg.start_soon(wait, i)
                await wait_until(lambda: len(errors) == 1, "one busy error")
                assert [e.code for e in errors] == ["busy"]
                assert pending_waits(server) == 256
                assert await nm.add("B") == am.Result.EXECUTED
                tg.cancel_scope.cancel()
            await wait_until(lambda: pending_waits(server) == 0, "waits cancelled")
            assert client.mach.is_active("Ready")
            assert await nm.add("B") == am.Result.EXECUTED


async def test_when_args_cancelled_by_move_on_after_sends_a_cancel() -> None:
    """A remote wait abandoned via move_on_after sends WAIT cancel; the count drops."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src, push_interval=None) as server,
            am.rpc.Client(server.addr) as client,
        ):
            nm = client.netmach
            scopes: list[anyio.CancelScope] = []
            results: list[bool] = []

            async def wait() -> None:
                with anyio.move_on_after(TIMEOUT) as scope:
                    scopes.append(scope)
                    results.append(await nm.when_args("A", {"x": 1}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await wait_until(lambda: pending_waits(server) == 1, "wait registered")
                sent, received = client_link(client)
                scopes[0].deadline = anyio.current_time()  # the timeout expires now
            assert scopes[0].cancelled_caught
            assert results == []
            await wait_until(lambda: pending_waits(server) == 0, "wait cancelled")
            assert client_link(client) == (sent + 1, received)  # the cancel, no reply
            src.add("A", {"x": 1})  # would have satisfied it: nothing is sent
            assert await nm.add("B") == am.Result.EXECUTED
            assert client_link(client) == (sent + 2, received + 1)
            assert nm.is_active(["A", "B"])


async def test_wait_interrupted_when_the_connection_drops() -> None:
    """A pending remote wait raises WaitInterrupted on a drop; the client reconnects."""
    src = source()
    outcome: list[BaseException] = []
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src) as server,
            Proxy(server.addr) as proxy,
            am.rpc.Client(proxy.addr) as client,
        ):
            nm = client.netmach

            async def wait() -> None:
                try:
                    await nm.when_args("A", {"x": 1})
                except am.rpc.RpcError as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await wait_until(lambda: pending_waits(server) == 1, "wait registered")
                proxy.cut()
            assert len(outcome) == 1
            assert isinstance(outcome[0], am.rpc.WaitInterrupted)
            await wait_until(lambda: pending_waits(server) == 0, "server dropped it")
            assert await client.mach.when("Ready")  # reconnected
            assert await nm.add("A", {"x": 1}) == am.Result.EXECUTED
            assert client.stats["reconnects"] == 1
            assert nm.clock() == src.clock()
            assert pending_waits(server) == 0  # not re-registered


async def test_client_exit_with_a_pending_remote_wait() -> None:
    """Leaving `async with Client` while when_args waits fails the wait promptly."""
    src = source()
    outcome: list[BaseException] = []
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server:
            async with (
                anyio.create_task_group() as tg,
                am.rpc.Client(server.addr) as client,
            ):

                async def wait() -> None:
                    try:
                        await client.netmach.when_args("A", {"x": 1})
                    except am.rpc.RpcError as exc:
                        outcome.append(exc)

                tg.start_soon(wait)
                await wait_until(lambda: pending_waits(server) == 1, "registered")
            assert len(outcome) == 1
            assert isinstance(outcome[0], am.rpc.WaitInterrupted | am.rpc.NotConnected)
            await wait_until(lambda: not server.sessions, "session closed")
            assert client.mach.is_active("Disconnected")
            with pytest.raises(am.rpc.RpcError):
                await client.netmach.when_args("A", {"x": 1})


# -- a disposed source ----------------------------------------------------------------


async def test_disposed_source_mutations_return_canceled() -> None:
    """Mutations on a disposed source return CANCELED; the server keeps running."""
    src = source()
    results: list[am.Result] = []
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server:
            async with am.rpc.Client(server.addr, call_timeout=1.0) as client:
                assert await client.netmach.add("A") == am.Result.EXECUTED
                src.dispose()
                results.append(await client.netmach.add("B"))
                results.append(await client.netmach.remove("A"))
            assert server.mach.is_active("Ready")
    assert results == [am.Result.CANCELED, am.Result.CANCELED]


async def test_when_args_ctx_expiry_returns_false_and_cancels() -> None:
    """A remote wait whose ctx expires returns False and is cancelled on the server."""
    src = source()
    owner = am.Machine({"Scope": {}}, id="owner")
    owner.add("Scope")
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server, am.rpc.Client(server.addr) as client:
            ctx = owner.new_state_ctx("Scope")
            results: list[bool] = []

            async def wait() -> None:
                results.append(await client.netmach.when_args("A", {"x": 1}, ctx=ctx))

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await wait_until(lambda: pending_waits(server) == 1, "registered")
                owner.remove("Scope")  # expires ctx
            assert results == [False]
            await wait_until(lambda: pending_waits(server) == 0, "wait cancelled")
            assert await client.netmach.when_args("A", {"x": 1}, ctx=ctx) is False
            assert pending_waits(server) == 0  # an expired ctx sends nothing


async def test_remote_wait_satisfied_by_the_same_clients_mutation() -> None:
    """when_args resolves from this client's own add; both calls see the new clock."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server, am.rpc.Client(server.addr) as client:
            nm = client.netmach
            got: list[tuple[bool, int]] = []

            async def wait() -> None:
                ok = await nm.when_args("B", {"x": 1})
                got.append((ok, nm.tick("B")))

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await wait_until(lambda: pending_waits(server) == 1, "registered")
                assert await nm.add("B", {"x": 2}) == am.Result.EXECUTED
                assert await nm.add("B", {"x": 1}) == am.Result.EXECUTED
            assert got == [(True, 3)]
            assert pending_waits(server) == 0


async def test_server_shutdown_interrupts_remote_waits() -> None:
    """Leaving the server's `async with` fails a client's remote wait (WaitInterrupted)."""
    src = source()
    outcome: list[BaseException] = []
    stop = anyio.Event()
    quick = am.rpc.RetryPolicy(retries=1, delay=0.05, total=1.0)

    async def run_server(*, task_status: anyio.abc.TaskStatus[am.rpc.Server]) -> None:
        async with am.rpc.serve(src) as server:
            task_status.started(server)
            await stop.wait()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as outer:
            server = await outer.start(run_server)
            async with (
                am.rpc.Client(server.addr, reconnect_retry=quick) as client,
                anyio.create_task_group() as tg,
            ):

                async def wait() -> None:
                    try:
                        await client.netmach.when_args("A", {"x": 1})
                    except am.rpc.RpcError as exc:
                        outcome.append(exc)

                tg.start_soon(wait)
                await wait_until(lambda: pending_waits(server) == 1, "registered")
                stop.set()  # the server leaves its `async with` (BYE shutdown)
            assert len(outcome) == 1
            assert isinstance(outcome[0], am.rpc.WaitInterrupted)
            assert not client.netmach.up
            assert not server.sessions
