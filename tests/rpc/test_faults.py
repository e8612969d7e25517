"""
aRPC under injected faults: tests for the rows of rpc.md section 7.

Rows 9 (listener closed) and 21 (call timeouts, dedup) are in ``test_retry.py``; TLS
failures in ``test_tls.py``; rows 28-29 (worker pools) do not apply to aRPC.
"""

from __future__ import annotations

import contextlib
import errno
import struct
from collections.abc import Callable
from functools import partial

import anyio
import anyio.abc
import pytest
from faultproxy import (
    BYE,
    CLOCK,
    ERROR,
    HELLO,
    MUTATE,
    PAYLOAD,
    RESULT,
    SYNC,
    WAIT,
    WELCOME,
    FaultProxy,
    Frame,
    FrameInfo,
    fast_client,
    free_port,
    new_source,
    retry_states_clear,
    wait_handshakes,
)

import asyncmachine as am
from asyncmachine.rpc import _server as rpc_server

pytestmark = pytest.mark.anyio

LIMIT = 5  # seconds: every test body runs under this


async def _serve_until(
    src: am.Machine,
    stop: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[am.rpc.Server] = anyio.TASK_STATUS_IGNORED,
    **options: object,
) -> None:
    """Serve *src* in a task of its own until *stop* is set (a server that can go
    away while the test's other contexts stay open)."""
    async with am.rpc.serve(src, **options) as server:  # type: ignore[arg-type]
        task_status.started(server)
        await stop.wait()


def _body(f: FrameInfo) -> dict[str, object]:
    assert f.body is not None
    return f.body


def _is_proto_error(f: FrameInfo, code: str = "proto") -> bool:
    b = f.body or {}
    return b.get("code") == code and b.get("fatal") is True and f.re == 0


# -- row 1: peer vanishes mid-frame ----------------------------------------------


async def test_vanish_mid_reply_retries_once_and_reconnects() -> None:
    """A RESULT cut mid-frame: the client reconnects and the retry applies once."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=None) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            nm = client.netmach
            src.add("B")
            assert await nm.add("D") == am.Result.EXECUTED  # mirror knows B
            before = src.tick("B")
            cut = proxy.s2c.cut(RESULT)
            assert await nm.add("B") == am.Result.EXECUTED
            assert cut.hits == 1
            assert src.tick("B") == before + 2  # one re-activation of a multi state
            assert nm.tick("B") == src.tick("B")
            assert proxy.accepted == 2
            assert client.stats["reconnects"] == 1
            # the retry went out on the new connection with the same rid
            muts = [_body(f)["rid"] for f in proxy.c2s.find(MUTATE)]
            assert muts[-1] == muts[-2]
            assert client.mach.tick("RetryingCall") == 2
            assert client.mach.is_active("Ready")
            assert retry_states_clear(client.mach)
            assert not src.is_err()


async def test_vanish_mid_frame_fails_remote_waits_keeps_mirror() -> None:
    """Mid-frame loss: remote waits fail, the stale mirror stays readable, the server
    drops the session and its waits, the source is untouched."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=0) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            nm = client.netmach
            assert await nm.add("Bar") == am.Result.EXECUTED
            errors: list[BaseException] = []

            async def wait() -> None:
                try:
                    await nm.when_args("B", {"x": 1})
                except am.rpc.RpcError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await proxy.c2s.wait_for(WAIT)
                session = next(iter(server.sessions.values()))
                # no event tells that the wait reached the source: poll
                while not src._wargs.get("B"):  # noqa: ASYNC110
                    await anyio.sleep(0.005)
                proxy.refuse = True  # keep the client away after the cut
                proxy.s2c.cut(CLOCK)
                src.add("D")  # pushes a CLOCK, which is cut in half
            assert len(errors) == 1
            assert isinstance(errors[0], am.rpc.WaitInterrupted)
            await client.mach.when("Disconnected")
            # stale but readable
            assert nm.is_active("Bar")
            assert not nm.is_active("D")
            assert not nm.up
            await server.mach.when_not("HasClients")
            assert session.n not in server.sessions
            assert not src._wargs.get("B")  # the session's wait was cancelled
            assert src.is_active(["Bar", "D"])
            assert not src.is_err()
            proxy.refuse = False
            await wait_handshakes(client, 2)
            assert nm.up
            assert nm.clock() == src.clock()


async def test_vanish_mid_frame_is_tagged_err_network() -> None:
    """rpc.md 7 row 1: a peer vanishing mid-frame is a network error (ErrNetwork)."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=0) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            proxy.s2c.cut(CLOCK)
            src.add("Bar")
            await wait_handshakes(client, 2)
            assert client.mach.tick("ErrNetwork") == 2
            assert client.mach.tick("ErrRpc") == 0


async def test_client_vanishes_mid_frame_server_unharmed() -> None:
    """A MUTATE cut mid-frame never runs; the server keeps serving; the retry runs once."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            before = src.time()
            cut = proxy.c2s.cut(MUTATE)
            assert await client.netmach.add("D") == am.Result.EXECUTED
            assert cut.hits == 1
            assert src.tick("D") == before[src.index("D")] + 1
            assert proxy.accepted == 2
            assert not src.is_err()
            assert server.mach.is_active("Ready")


# -- row 2: peer vanishes silently (half-open) -----------------------------------


async def test_half_open_client_detects_idle() -> None:
    """Nothing arrives for idle_timeout: ErrNetworkTimeout, reconnect, fresh clock."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, ping_interval=10, idle_timeout=10) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(
                proxy.addr, ping_interval=0.05, idle_timeout=0.3, call_timeout=0.3
            ) as client,
        ):
            nm = client.netmach
            proxy.c2s.stall()
            proxy.s2c.stall()
            src.add("Bar")  # the client cannot see it
            await client.mach.when("ErrNetworkTimeout")
            assert client.mach.is_active("Disconnected")
            assert not nm.is_active("Bar")  # stale, still readable
            proxy.c2s.resume()
            proxy.s2c.resume()
            await wait_handshakes(client, 2)
            assert nm.is_active("Bar")
            assert not client.mach.is_active("ErrNetworkTimeout")
            assert client.mach.tick("ErrNetworkTimeout") == 2


async def test_half_open_server_detects_idle() -> None:
    """The server closes a session that sent nothing for idle_timeout; source untouched."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, ping_interval=0.05, idle_timeout=0.3) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr, ping_interval=10, idle_timeout=10) as client,
        ):
            clock = src.clock()
            first = next(iter(server.sessions))
            errs: list[str] = []

            class Spy:
                def transition_end(self, tx: am.Transition) -> None:
                    errs.extend(s for s in tx.enters if s.startswith("Err"))

            server.sessions[first].mach.add_tracer(Spy())
            proxy.c2s.stall()
            await server.mach.when_not("HasClients")
            assert errs == ["ErrNetworkTimeout"]
            assert src.clock() == clock
            proxy.c2s.resume()
            await wait_handshakes(client, 2)
            assert await client.netmach.add("D") == am.Result.EXECUTED


# -- row 3: malformed frames -------------------------------------------------------


def _kind(kind: int) -> Callable[[Frame], Frame]:
    def fn(frame: Frame) -> Frame:
        return [kind, *frame[1:]]

    return fn


def _shape(frame: Frame) -> Frame:
    return [frame[0], frame[1], frame[2]]  # three items, no body


def _arm_bad(proxy: FaultProxy, direction: str, fault: str, kind: int) -> None:
    d = proxy.direction(direction)
    if fault == "malformed":
        d.truncate(3, kind)
    elif fault == "garbage":
        d.corrupt(lambda b: b"\xc1" + b[1:], kind)  # 0xc1 is never valid msgpack
    elif fault == "shape":
        d.rewrite(_shape, kind)
    elif fault == "kind0":
        d.rewrite(_kind(0), kind)
    elif fault == "kind99":
        d.rewrite(_kind(99), kind)
    elif fault == "repeat_seq":
        d.duplicate(kind, renumber=False)
    elif fault == "seq_gap":
        d.drop(kind, renumber=False)
    else:  # pragma: no cover
        raise AssertionError(fault)


BAD_FRAMES = ["malformed", "garbage", "shape", "kind0", "kind99", "repeat_seq"]


@pytest.mark.parametrize("fault", BAD_FRAMES)
async def test_bad_frame_to_client_reconnects(fault: str) -> None:
    """A broken frame from the server: ErrRpc, reconnect, the mirror catches up."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=0) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            _arm_bad(proxy, "s2c", fault, CLOCK)
            src.add("Bar")
            await wait_handshakes(client, 2)
            assert client.mach.tick("ErrRpc") == 2  # added once, cleared on handshake
            assert client.netmach.clock() == src.clock()
            assert await client.netmach.add("D") == am.Result.EXECUTED
            assert not src.is_err()


@pytest.mark.parametrize("fault", [*BAD_FRAMES, "seq_gap"])
async def test_bad_frame_to_server_gets_proto_error(fault: str) -> None:
    """A broken frame from the client: ERROR proto (fatal), close; the server goes on
    and the client's retried mutation applies once."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr, call_timeout=0.3) as client,
        ):
            before = src.tick("B")
            _arm_bad(proxy, "c2s", fault, MUTATE)
            assert await client.netmach.add("B") == am.Result.EXECUTED
            # (a repeated seq fails only after the first copy ran and was answered)
            errors = await proxy.s2c.wait_for(ERROR, conn=1)
            await wait_handshakes(client, 2)
            assert len(errors) == 1
            assert _is_proto_error(errors[0])
            assert _body(errors[0])["retry"] is True
            # the ERROR was the server's last frame on that connection
            assert proxy.s2c.find(conn=1)[-1] is errors[0]
            assert src.tick("B") == before + 1
            assert proxy.accepted == 2
            assert not src.is_err()


@pytest.mark.parametrize(
    ("fault", "code"), [("garbage", "proto"), ("too_big", "too_big")]
)
async def test_client_answers_violation_with_fatal_error(fault: str, code: str) -> None:
    """protocol.md 7: the client sends ERROR (code, fatal, re 0) before closing."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=0) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr, max_frame=4096) as client,
        ):
            if fault == "too_big":
                await proxy.s2c.inject(struct.pack(">I", 1 << 20))
            else:
                _arm_bad(proxy, "s2c", fault, CLOCK)
                src.add("Bar")
            await wait_handshakes(client, 2)
            errors = proxy.c2s.find(ERROR, conn=1)
            assert len(errors) == 1
            assert _is_proto_error(errors[0], code)


async def test_repeated_proto_errors_exhaust_connect_retries() -> None:
    """Every WELCOME broken: each attempt counts, then RpcConnectionError."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with am.rpc.serve(src) as server, FaultProxy(server.addr) as proxy:
            proxy.s2c.truncate(3, WELCOME, count=None)
            client = fast_client(
                proxy.addr,
                connect_retry=am.rpc.RetryPolicy(retries=2, delay=0.01, total=3),
            )
            with pytest.raises(am.rpc.RpcConnectionError):
                async with client:
                    pass
            assert proxy.accepted == 3
            assert client.mach.tick("ErrRpc") >= 1
            async with fast_client(server.addr) as ok:  # the server is fine
                assert await ok.netmach.add("D") == am.Result.EXECUTED


# -- row 4: oversized frame inbound ------------------------------------------------


async def test_oversized_inbound_frame_refused_before_body() -> None:
    """A length above the server's max frame: ERROR too_big at once, no body read."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, max_frame=4096) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            # only the 4 header bytes: the server must not wait for the body
            assert await proxy.c2s.inject(struct.pack(">I", 5000)) == 1
            errors = await proxy.s2c.wait_for(ERROR)
            assert _is_proto_error(errors[0], "too_big")
            await wait_handshakes(client, 2)
            assert await client.netmach.add("D") == am.Result.EXECUTED
            assert not src.is_err()


async def test_oversized_inbound_frame_to_client_reconnects() -> None:
    """A length above the client's max frame drops the connection; it reconnects."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr, max_frame=4096) as client,
        ):
            await proxy.s2c.inject(struct.pack(">I", 5000))
            await wait_handshakes(client, 2)
            assert client.mach.tick("ErrRpc") == 2
            assert await client.netmach.add("D") == am.Result.EXECUTED


# -- row 5: oversized frame outbound -----------------------------------------------


async def test_oversized_args_raise_and_connection_stays() -> None:
    """Args too big for the server's max frame: FrameTooLarge, nothing sent, link up."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, max_frame=2048) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            sent = len(proxy.c2s.frames)
            with pytest.raises(am.rpc.FrameTooLarge):
                await client.netmach.add("D", {"blob": "x" * 4096})
            assert len(proxy.c2s.frames) == sent
            assert await client.netmach.add("D", {"blob": "x" * 100}) == (
                am.Result.EXECUTED
            )
            assert proxy.accepted == 1
            assert not client.mach.is_err()


async def test_oversized_payload_raises_and_session_stays() -> None:
    """A payload too big for the client's max frame: FrameTooLarge, session up."""
    src = new_source()
    got: list[am.rpc.Payload] = []
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr, max_frame=2048, on_payload=got.append) as client,
        ):
            with pytest.raises(am.rpc.FrameTooLarge):
                await server.send_payload("big", b"x" * 4096, dst=client.id)
            assert proxy.s2c.find(PAYLOAD) == []
            await server.send_payload("small", b"x" * 100, dst=client.id)
            assert [p.name for p in got] == ["small"]
            assert proxy.accepted == 1


async def test_welcome_too_big_for_client_is_refused_without_retry() -> None:
    """A WELCOME above the client's max frame: ERROR too_big, no retry, server lives."""
    src = new_source(extra=[f"State{i:03d}WithALongName" for i in range(60)])
    with anyio.fail_after(LIMIT):
        async with am.rpc.serve(src) as server, FaultProxy(server.addr) as proxy:
            with pytest.raises(am.rpc.RpcError):
                async with fast_client(proxy.addr, max_frame=1024):
                    pass
            assert proxy.accepted == 1  # not retried
            errors = proxy.s2c.find(ERROR)
            assert [_body(e)["code"] for e in errors] == ["too_big"]
            assert _body(errors[0])["retry"] is False
            async with fast_client(server.addr) as ok:
                assert await ok.netmach.add("D") == am.Result.EXECUTED


# -- row 6: slow consumer ----------------------------------------------------------


async def _flood_stalled_client(
    ping_interval: float, write_timeout: float
) -> tuple[bool, bool]:
    """Stall a client's reads while the server writes ~20 MB of payloads; returns
    whether the session was closed and whether the reconnected mirror is exact."""
    src = new_source()
    async with (
        am.rpc.serve(
            src,
            ping_interval=ping_interval,
            write_timeout=write_timeout,
            idle_timeout=10,
        ) as server,
        FaultProxy(server.addr) as proxy,
        fast_client(
            proxy.addr,
            on_payload=lambda p: None,
            idle_timeout=10,
            ping_interval=0.1,
            call_timeout=0.3,
        ) as client,
    ):
        session = next(iter(server.sessions.values()))
        proxy.s2c.stall()

        async def send() -> None:
            with contextlib.suppress(am.rpc.RpcError, TimeoutError):
                await session.send_payload("p", b"x" * 900_000, timeout=3)

        closed = False
        async with anyio.create_task_group() as tg:
            for _ in range(24):
                tg.start_soon(send)
            with anyio.move_on_after(1.5):
                await server.mach.when_not("HasClients")
                closed = True
            tg.cancel_scope.cancel()
        for _ in range(20):
            src.add("B")  # while stalled: the next full clock must carry all of it
        proxy.s2c.resume()
        await proxy.kill_all()  # drop whatever was buffered for the old session
        await wait_handshakes(client, 2)
        return closed, client.netmach.clock() == src.clock()


async def test_slow_consumer_closed_after_write_timeout() -> None:
    """A write blocked past write_timeout closes the session; the client recovers."""
    with anyio.fail_after(LIMIT):
        closed, synced = await _flood_stalled_client(
            ping_interval=1.0, write_timeout=0.3
        )
    assert closed
    assert synced


async def test_slow_consumer_detected_with_default_ratio() -> None:
    """Same with ping_interval < write_timeout (5 s / 10 s by default)."""
    with anyio.fail_after(LIMIT):
        closed, _ = await _flood_stalled_client(ping_interval=0.1, write_timeout=0.2)
    assert closed


# -- row 7: server restart on the same address -------------------------------------


@pytest.mark.parametrize("strict", [False, True])
async def test_server_restart_resets_mirror_and_drops_unknown_outcomes(
    strict: bool,
) -> None:
    """A restarted server (new epoch): the mirror resets, an in-flight mutation is not
    retried (CANCELED, or OutcomeUnknown when strict), remote waits fail."""
    src1 = new_source()
    src1.add("Bar")
    src2 = new_source()  # same id, new epoch
    src2.add("D")
    stop = anyio.Event()
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as servers:
            s1 = await servers.start(
                partial(_serve_until, src1, stop, push_interval=None)
            )
            async with (
                FaultProxy(s1.addr) as proxy,
                fast_client(proxy.addr, strict=strict) as client,
                am.rpc.serve(src2, push_interval=None) as s2,
            ):
                nm = client.netmach
                epoch = nm.epoch
                outcome: list[object] = []

                async def mutate() -> None:
                    try:
                        outcome.append(await nm.add("B"))
                    except am.rpc.RpcError as exc:
                        outcome.append(exc)

                async def wait() -> None:
                    with pytest.raises(am.rpc.WaitInterrupted):
                        await nm.when_args("Foo", {})

                lost = proxy.s2c.drop(RESULT)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(wait)
                    await proxy.c2s.wait_for(WAIT)
                    tg.start_soon(mutate)
                    await lost.fired.wait()  # B ran on src1, its reply is gone
                    proxy.target = s2.addr
                    stop.set()  # server 1 goes away (BYE shutdown)
                assert src1.tick("B") == 1
                assert src2.tick("B") == 0  # never retried on the new server
                if strict:
                    assert isinstance(outcome[0], am.rpc.OutcomeUnknown)
                else:
                    assert outcome == [am.Result.CANCELED]
                await wait_handshakes(client, 2)
                assert nm.epoch != epoch
                assert nm.clock() == src2.clock()
                assert nm.is_active("D")
                assert not nm.is_active("Bar")


async def test_server_restart_propagates_through_replicant() -> None:
    """A root restart reaches a replicant's clients as a reset to the new clock."""
    root1 = new_source("root")
    root1.add("Bar")
    root2 = new_source("root")
    root2.add("D")
    stop = anyio.Event()
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as servers:
            s1 = await servers.start(
                partial(_serve_until, root1, stop, push_interval=0)
            )
            async with (
                FaultProxy(s1.addr) as proxy,
                am.rpc.Replicant(
                    proxy.addr,
                    push_interval=0,
                    reconnect_retry=am.rpc.RetryPolicy(delay=0.02, max_delay=0.05),
                ) as rep,
                fast_client(rep.addr) as leaf,
                am.rpc.serve(root2, push_interval=0) as s2,
            ):
                nm = leaf.netmach
                assert nm.is_active("Bar")
                epoch = nm.epoch
                proxy.target = s2.addr
                stop.set()
                await nm.when("D")
                assert nm.epoch != epoch
                assert nm.clock() == root2.clock()
                assert await nm.add("B") == am.Result.EXECUTED
                assert root2.tick("B") == 1


# -- row 8: server unreachable at start --------------------------------------------


async def test_unreachable_at_start_retries_then_raises() -> None:
    """Each failed dial: Connecting, Disconnected, RetryingConn; then a plain
    RpcConnectionError after the policy's retries."""
    port = await free_port()
    client = fast_client(
        ("127.0.0.1", port),
        connect_retry=am.rpc.RetryPolicy(retries=2, delay=0.01, max_delay=0.02),
    )
    with anyio.fail_after(LIMIT), pytest.raises(am.rpc.RpcConnectionError) as info:
        async with client:
            pass
    assert isinstance(info.value, ConnectionError)
    assert client.mach.tick("Connecting") == 6  # 3 attempts, each ended
    assert client.mach.tick("RetryingConn") >= 1
    assert client.mach.is_active(["Disconnected", "ErrNetwork"])


async def test_unreachable_at_start_ends_in_conn_retry_failed() -> None:
    """rpc.md 7 row 8: exhausted retries add ConnRetryFailed, which removes Start."""
    port = await free_port()
    client = fast_client(
        ("127.0.0.1", port),
        connect_retry=am.rpc.RetryPolicy(retries=1, delay=0.01, max_delay=0.02),
    )
    with anyio.fail_after(LIMIT), pytest.raises(am.rpc.RpcConnectionError):
        async with client:
            pass
    assert client.mach.is_active("ConnRetryFailed")
    assert not client.mach.is_active("Start")


# -- row 10: accept errors ---------------------------------------------------------


async def test_accept_errors_back_off_and_recover(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EMFILE from accept: ErrNetwork on the server, backoff (no hot loop), then the
    next client is served; connected clients are unaffected."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with am.rpc.serve(src) as server, fast_client(server.addr) as first:
            listener = server._listeners[0]
            cls = type(listener)
            original = cls.accept
            calls: list[float] = []
            third = anyio.Event()
            failing = True

            async def accept(self: anyio.abc.SocketListener) -> anyio.abc.SocketStream:
                if self is listener and failing:
                    calls.append(anyio.current_time())
                    if len(calls) == 3:
                        third.set()
                    raise OSError(errno.EMFILE, "Too many open files")
                return await original(self)

            monkeypatch.setattr(cls, "accept", accept)
            # the accept already waiting takes this connection; the next ones fail
            async with await anyio.connect_tcp(*server.addr):
                await third.wait()
            assert server.mach.is_active(["ErrNetwork", "Exception"])
            assert calls[2] - calls[0] >= 0.25  # 0.1 s then 0.2 s of backoff
            assert await first.netmach.add("D") == am.Result.EXECUTED
            failing = False
            async with fast_client(server.addr) as second:
                assert await second.netmach.add("Bar") == am.Result.EXECUTED
            assert len(calls) <= 4


# -- rows 11-14: clock faults ------------------------------------------------------


async def test_duplicate_delta_is_ignored() -> None:
    """A delta delivered twice is ignored: no SYNC, no error, mirror exact."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=0) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            nm = client.netmach
            dup = proxy.s2c.duplicate(CLOCK)
            src.add("Bar")
            await nm.when("Bar")
            src.add("B")
            await nm.when("B")
            assert dup.hits == 1
            assert len(proxy.s2c.find(CLOCK)) == 2
            assert client.stats["clock_errors"] == 0
            assert proxy.c2s.find(SYNC) == []
            assert nm.clock() == src.clock()
            assert proxy.accepted == 1


async def test_clock_gap_sends_one_sync() -> None:
    """A lost delta: later deltas are refused, exactly one SYNC, then exact again."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=0) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            nm = client.netmach
            lost = proxy.s2c.drop(CLOCK)
            src.add("Bar")
            await lost.fired.wait()
            proxy.c2s.stall()  # hold the SYNC while more gapped deltas arrive
            for n in range(2, 5):
                src.add("B")
                await proxy.s2c.wait_for(CLOCK, n)
            proxy.c2s.resume()
            await nm.when_time(["B"], [src.tick("B")])
            assert len(proxy.c2s.find(SYNC)) == 1
            assert client.stats["clock_errors"] == 3
            assert nm.clock() == src.clock()
            assert proxy.accepted == 1
            assert not client.mach.is_err()


def _bad_checksum(frame: Frame) -> Frame:
    body = dict(frame[3])  # type: ignore[call-overload]
    body["k"] = (body["k"] + 1) % 65536
    return [*frame[:3], body]


def _bad_index(frame: Frame) -> Frame:
    body = dict(frame[3])  # type: ignore[call-overload]
    body["i"] = [999]
    body["d"] = [1]
    return [*frame[:3], body]


@pytest.mark.parametrize("fault", [_bad_checksum, _bad_index])
async def test_invalid_delta_is_dropped_and_resynced(
    fault: Callable[[Frame], Frame],
) -> None:
    """A delta with a wrong checksum or index: dropped, one SYNC, mirror exact."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=0) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            nm = client.netmach
            bad = proxy.s2c.rewrite(fault, CLOCK)
            src.add("Bar")
            await bad.fired.wait()
            await proxy.c2s.wait_for(SYNC)
            await nm.when("Bar")
            assert len(proxy.c2s.find(SYNC)) == 1
            assert client.stats["clock_errors"] == 1
            assert nm.clock() == src.clock()
            assert proxy.accepted == 1


async def test_negative_increment_is_a_protocol_error() -> None:
    """A negative increment breaks the body types (protocol.md 4): reconnect, exact."""
    src = new_source()

    def negative(frame: Frame) -> Frame:
        body = dict(frame[3])  # type: ignore[call-overload]
        body["d"] = [-1 for _ in body["d"]]
        return [*frame[:3], body]

    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=0) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            proxy.s2c.rewrite(negative, CLOCK)
            src.add("Bar")
            await wait_handshakes(client, 2)
            assert client.mach.tick("ErrRpc") == 2
            assert client.netmach.clock() == src.clock()


def _is_full_clock_reply(f: FrameInfo) -> bool:
    clk = (f.body or {}).get("clk")
    return isinstance(clk, dict) and "t" in clk


def _bad_full_checksum(frame: Frame) -> Frame:
    body = dict(frame[3])  # type: ignore[call-overload]
    clk = dict(body["clk"])
    clk["k"] = (clk["k"] + 1) % 65536
    body["clk"] = clk
    return [*frame[:3], body]


async def test_three_failed_syncs_close_and_reconnect() -> None:
    """protocol.md 8: three invalid SYNC replies in a row close with proto, then the
    reconnect's WELCOME makes the mirror exact."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=0) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr, call_timeout=0.3) as client,
        ):
            proxy.s2c.rewrite(_bad_checksum, CLOCK)
            proxy.s2c.rewrite(
                _bad_full_checksum, RESULT, count=None, match=_is_full_clock_reply
            )
            src.add("Bar")
            with anyio.move_on_after(1.5):
                await wait_handshakes(client, 2)
            assert client.netmach.clock() == src.clock()
            assert 1 <= len(proxy.c2s.find(SYNC, conn=1)) <= 3


async def test_backwards_full_clock_is_a_reset() -> None:
    """A full clock with a lower tick and the same epoch resets the mirror; the
    mirror then converges on the source again."""
    src = new_source()
    src.add("B")
    src.add("B")  # tick 3

    def lower_b(frame: Frame) -> Frame:
        body = dict(frame[3])  # type: ignore[call-overload]
        clk = dict(body["clk"])
        t = list(clk["t"])
        t[src.index("B")] = 1
        clk["t"] = t
        clk["k"] = (sum(t) + clk["q"] + clk["m"]) % 65536
        body["clk"] = clk
        return [*frame[:3], body]

    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=0) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            nm = client.netmach
            assert nm.tick("B") == 3
            epoch = nm.epoch
            proxy.s2c.rewrite(lower_b, RESULT, match=_is_full_clock_reply)
            await client.sync()
            assert nm.tick("B") == 1
            assert nm.is_active("B")
            assert nm.epoch != epoch
            src.add("D")
            await nm.when("D")
            await nm.when_time(["B"], [3])
            assert nm.clock() == src.clock()
            assert proxy.accepted == 1


# -- row 15: schema mismatch at handshake ------------------------------------------


async def test_schema_mismatch_on_reconnect_installs_server_schema() -> None:
    """Reconnecting to a source with another schema installs it on the same NetMach
    (tracers see a schema change); a known schema hash skips the schema."""
    src1 = new_source()
    src2 = new_source(extra=["New"])
    changes: list[list[str]] = []

    class Spy:
        def schema_change(self, mach: am.Machine, old: dict[str, object]) -> None:
            changes.append(mach.state_names())

    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src1) as s1,
            am.rpc.serve(src2) as s2,
            FaultProxy(s1.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            nm = client.netmach
            nm.add_tracer(Spy())
            await proxy.kill_all()
            await wait_handshakes(client, 2)
            welcomes = proxy.s2c.find(WELCOME)
            hellos = proxy.c2s.find(HELLO)
            assert "schema" in _body(welcomes[0])
            assert _body(hellos[1])["hash"]  # the client knows the schema now
            assert "schema" not in _body(welcomes[1])
            proxy.target = s2.addr
            await proxy.kill_all()
            await wait_handshakes(client, 3)
            assert "schema" in _body(proxy.s2c.find(WELCOME)[2])
            assert client.netmach is nm
            assert nm.state_names() == src2.state_names()
            assert changes == [src2.state_names()]
            assert await nm.add("New") == am.Result.EXECUTED
            assert src2.is_active("New")


# -- rows 16 and 23: refused locally, nothing sent ---------------------------------


async def test_local_refusals_send_nothing() -> None:
    """Unknown states and non-encodable args or payload data raise locally; nothing
    is sent and the connection is unaffected."""
    src = new_source()
    got: list[am.rpc.Payload] = []
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr, on_payload=got.append) as client,
        ):
            nm = client.netmach
            c2s, s2c = len(proxy.c2s.frames), len(proxy.s2c.frames)
            with pytest.raises(am.StateUnknownError):
                await nm.add("Nope")
            with pytest.raises(am.StateUnknownError):
                nm.add_ns(["D", "Nope"])
            with pytest.raises(TypeError):
                await nm.add("D", {"x": {1, 2}})
            with pytest.raises(TypeError):
                nm.add_ns("D", {"x": object()})
            with pytest.raises(TypeError):
                await nm.when_args("D", {"x": b"ok", "y": {3}})
            with pytest.raises(TypeError):
                await server.send_payload("p", {1, 2}, dst=client.id)
            assert (len(proxy.c2s.frames), len(proxy.s2c.frames)) == (c2s, s2c)
            assert await nm.add("D") == am.Result.EXECUTED
            await server.send_payload("p", [1, 2], dst=client.id)
            assert [p.data for p in got] == [[1, 2]]
            assert proxy.accepted == 1
            assert not client.mach.is_err()


# -- row 17: schema change mid-session ---------------------------------------------


@pytest.mark.parametrize(
    "push_interval",
    [
        0.05,
        None,
    ],
)
async def test_schema_change_mid_session(push_interval: float | None) -> None:
    """set_schema on the source: an unsolicited WELCOME replaces names, schema and
    clock on the same NetMach; the new state can be used."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=push_interval) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            nm = client.netmach
            changed = anyio.Event()

            class Spy:
                def schema_change(self, mach: am.Machine, old: object) -> None:
                    changed.set()

            nm.add_tracer(Spy())
            assert await nm.add("Bar") == am.Result.EXECUTED
            schema = dict(src.schema)
            schema["New"] = am.State(require=["Bar"])
            src.set_schema(schema)
            with anyio.move_on_after(1):
                await changed.wait()
            assert len(proxy.s2c.find(WELCOME)) == 2
            assert nm.state_names() == src.state_names()
            assert nm.clock() == src.clock()
            assert await nm.add("New") == am.Result.EXECUTED
            assert src.is_active("New")
            assert proxy.accepted == 1


# -- rows 18-20: refusals and handshake timeouts -----------------------------------


async def test_version_mismatch_is_fatal_without_retry() -> None:
    """No common version: VersionMismatch from `async with`, one attempt only."""
    src = new_source()

    def future_only(frame: Frame) -> Frame:
        return [*frame[:3], dict(frame[3], v=[99])]  # type: ignore[call-overload]

    with anyio.fail_after(LIMIT):
        async with am.rpc.serve(src) as server, FaultProxy(server.addr) as proxy:
            proxy.c2s.rewrite(future_only, HELLO, count=None)
            client = fast_client(proxy.addr)
            with pytest.raises(am.rpc.VersionMismatch):
                async with client:
                    pass
            assert proxy.accepted == 1
            (err,) = proxy.s2c.find(ERROR)
            assert _body(err)["code"] == "version"
            assert _body(err)["retry"] is False
            assert client.mach.is_active("ConnRetryFailed")
            assert not client.mach.is_active("Start")


@pytest.mark.parametrize("refusal", ["auth", "cycle"])
async def test_refused_handshake_is_fatal_without_retry(refusal: str) -> None:
    """A refused token or a cycle: the error from `async with`, one attempt only,
    ConnRetryFailed; the server keeps serving."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, token="s3cret") as server,
            FaultProxy(server.addr) as proxy,
        ):
            if refusal == "auth":
                client = fast_client(proxy.addr, token="wrong")
                exc: type[am.rpc.RpcError] = am.rpc.AuthError
            else:
                client = fast_client(proxy.addr, token="s3cret", via=[src.id])
                exc = am.rpc.CycleError
            with pytest.raises(exc):
                async with client:
                    pass
            assert proxy.accepted == 1
            assert client.mach.is_active("ConnRetryFailed")
            assert not client.mach.is_active("Start")
            (err,) = proxy.s2c.find(ERROR)
            assert _body(err)["code"] == refusal
            assert _body(err)["fatal"] is True
            async with fast_client(proxy.addr, token="s3cret") as ok:
                assert await ok.netmach.add("D") == am.Result.EXECUTED


async def test_refused_reconnect_stops_retrying() -> None:
    """A reconnect refused (token changed): ConnRetryFailed, no more attempts,
    mutations cancel at once."""
    src1 = new_source()
    src2 = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src1, token="a") as s1,
            am.rpc.serve(src2, token="b") as s2,
            FaultProxy(s1.addr) as proxy,
            fast_client(proxy.addr, token="a") as client,
        ):
            proxy.target = s2.addr
            await proxy.kill_all()
            await client.mach.when("ConnRetryFailed")
            assert isinstance(client.err(), am.rpc.AuthError)
            assert not client.mach.is_active("Start")
            assert await client.netmach.add("D") == am.Result.CANCELED
            assert proxy.accepted == 2
            assert not src2.is_active("D")


async def test_server_closes_silent_connection_after_hello_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No HELLO in time: the server closes without a word and keeps serving."""
    monkeypatch.setattr(rpc_server, "HELLO_TIMEOUT", 0.2)
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with am.rpc.serve(src) as server:
            async with await anyio.connect_tcp(*server.addr) as raw:
                await server.mach.when("HasClients")
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await raw.receive()
            await server.mach.when_not("HasClients")
            async with fast_client(server.addr) as client:
                assert await client.netmach.add("D") == am.Result.EXECUTED


async def test_client_counts_missing_welcome_as_failed_attempt() -> None:
    """No WELCOME in time: ErrNetworkTimeout, a new attempt, then Ready."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with am.rpc.serve(src) as server, FaultProxy(server.addr) as proxy:
            proxy.s2c.drop(WELCOME)
            async with fast_client(proxy.addr, call_timeout=0.2) as client:
                assert proxy.accepted == 2
                assert client.mach.tick("ErrNetworkTimeout") == 2
                assert client.mach.is_active("Ready")
                assert retry_states_clear(client.mach)
            proxy.s2c.drop(WELCOME, count=None)
            client = fast_client(
                proxy.addr,
                call_timeout=0.1,
                connect_retry=am.rpc.RetryPolicy(retries=1, delay=0.01),
            )
            with pytest.raises(am.rpc.RpcConnectionError):
                async with client:
                    pass
            assert proxy.accepted == 4


# -- row 22: a handler raises on the source ----------------------------------------


async def test_source_handler_error_travels_to_the_mirror() -> None:
    """A failing handler: CANCELED, Exception in the mirror, the error in nm.err()."""
    src = new_source()

    class Handlers:
        def X_enter(self, e: am.Event) -> bool:
            raise ValueError("boom")

    src.bind_handlers(Handlers())
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            nm = client.netmach
            assert await nm.add("X") == am.Result.CANCELED
            assert src.is_err()
            assert nm.is_err()
            assert not nm.is_active("X")
            err = nm.err()
            assert isinstance(err, am.rpc.RemoteError)
            assert "ValueError" in str(err)
            assert "boom" in str(err)
            (reply,) = proxy.s2c.find(RESULT)
            clk = _body(reply)["clk"]
            assert isinstance(clk, dict)
            assert clk["er"][1:] == ["ValueError", "boom"]
            assert not client.mach.is_err()  # the connection is fine


# -- row 24: payload delivery failures ---------------------------------------------


async def test_payload_delivery_failures() -> None:
    """Wrong dst, no consumer and a gone client raise DestinationMismatch,
    NoConsumer and NotConnected; the session survives the first two."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with am.rpc.serve(src) as server:
            async with fast_client(server.addr) as client:
                session = server.session_for(client.id)
                with pytest.raises(am.rpc.DestinationMismatch):
                    await server.send_payload("p", 1, dst="nobody")
                with pytest.raises(am.rpc.NoConsumer):
                    await server.send_payload("p", 1, dst=client.id)
                assert await client.netmach.add("D") == am.Result.EXECUTED
            with pytest.raises(am.rpc.NotConnected):
                await session.send_payload("p", 1)


async def test_payload_failure_adds_err_delivery() -> None:
    """rpc.md 7 row 24: the server adds ErrDelivery when a delivery fails."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with am.rpc.serve(src) as server, fast_client(server.addr) as client:
            with pytest.raises(am.rpc.NoConsumer):
                await server.send_payload("p", 1, dst=client.id)
            assert server.mach.is_active("ErrDelivery")


async def test_payload_for_another_client_is_refused() -> None:
    """protocol.md 11: a PAYLOAD whose dst names another client gets ERROR dest."""
    src = new_source()
    got: list[am.rpc.Payload] = []

    def elsewhere(frame: Frame) -> Frame:
        return [*frame[:3], dict(frame[3], dst="someone-else")]  # type: ignore[call-overload]

    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr, on_payload=got.append) as client,
        ):
            proxy.s2c.rewrite(elsewhere, PAYLOAD)
            with pytest.raises(am.rpc.RpcError) as info:
                await server.send_payload("p", 1, dst=client.id)
            assert isinstance(info.value, am.rpc.DestinationMismatch) or (
                isinstance(info.value, am.rpc.RemoteError) and info.value.code == "dest"
            )
            assert got == []
            (err,) = proxy.c2s.find(ERROR)
            assert _body(err)["code"] == "dest"


# -- row 25: request floods --------------------------------------------------------


async def test_wait_flood_gets_busy_and_session_survives() -> None:
    """Past 256 pending remote waits: ERROR busy; the session stays up."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            nm = client.netmach
            async with anyio.create_task_group() as tg:
                for i in range(rpc_server.MAX_PENDING_WAITS):
                    tg.start_soon(nm.when_args, "B", {"i": i})
                await proxy.c2s.wait_for(WAIT, rpc_server.MAX_PENDING_WAITS)
                with pytest.raises(am.rpc.RemoteError) as info:
                    await nm.when_args("B", {"i": -1})
                assert info.value.code == "busy"
                assert await nm.add("D") == am.Result.EXECUTED
                tg.cancel_scope.cancel()
            busy = proxy.s2c.find(ERROR)
            assert [_body(b)["code"] for b in busy] == ["busy"]
            assert _body(busy[0])["retry"] is True
            assert _body(busy[0])["fatal"] is False
            assert proxy.accepted == 1


async def test_no_reply_flood_applies_every_mutation() -> None:
    """300 pipelined add_ns of a multi state all apply, in one session."""
    src = new_source()
    n = 300
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=0.01) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr) as client,
        ):
            nm = client.netmach
            for _ in range(n):
                nm.add_ns("B")
            await nm.when_time(["B"], [2 * n - 1])
            assert src.tick("B") == 2 * n - 1
            assert len(proxy.c2s.find(MUTATE)) == n
            assert proxy.s2c.find(ERROR) == []
            assert proxy.s2c.find(RESULT) == []
            assert proxy.accepted == 1


# -- row 26: a replicant's upstream is lost ----------------------------------------


async def test_replicant_upstream_lost_fails_fast_and_resumes() -> None:
    """Upstream down: the replicant's clients see up=False and their mutations cancel
    at once; on return they are exact again."""
    root = new_source("root")
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(root, push_interval=0) as server,
            FaultProxy(server.addr) as proxy,
            am.rpc.Replicant(
                proxy.addr,
                push_interval=0,
                reconnect_retry=am.rpc.RetryPolicy(delay=0.02, max_delay=0.05),
            ) as rep,
            fast_client(rep.addr, call_timeout=2) as leaf,
        ):
            nm = leaf.netmach
            assert nm.up
            proxy.refuse = True
            await proxy.kill_all()
            while nm.up:  # noqa: ASYNC110 - no event exists for the flag
                await anyio.sleep(0.01)
            with anyio.fail_after(0.5):  # fast: no call_timeout wait
                assert await nm.add("D") == am.Result.CANCELED
            assert not root.is_active("D")
            root.add("Bar")
            proxy.refuse = False
            await nm.when("Bar")
            assert nm.up
            assert nm.clock() == root.clock()
            assert await nm.add("D") == am.Result.EXECUTED


# -- row 27: client closed with calls pending --------------------------------------


async def test_client_closed_with_calls_pending() -> None:
    """Closing a client: pending mutations cancel, remote waits fail, BYE stop is
    sent, and the client ends Disconnected without Start."""
    src = new_source()
    results: list[object] = []
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src) as server,
            FaultProxy(server.addr) as proxy,
        ):
            client = fast_client(proxy.addr, call_timeout=3)

            async def mutate() -> None:
                results.append(await client.netmach.add("D"))

            async def wait() -> None:
                try:
                    await client.netmach.when_args("B", {})
                except am.rpc.RpcError as exc:
                    results.append(type(exc))

            # the calls' task group outlives the client
            async with anyio.create_task_group() as tg, client:
                proxy.s2c.drop(RESULT)
                tg.start_soon(wait)
                tg.start_soon(mutate)
                await proxy.c2s.wait_for(MUTATE)
                await proxy.c2s.wait_for(WAIT)
            assert am.Result.CANCELED in results
            assert any(
                isinstance(r, type)
                and issubclass(r, am.rpc.RpcConnectionError | am.rpc.WaitInterrupted)
                for r in results
            )
            byes = await proxy.c2s.wait_for(BYE)
            assert _body(byes[0])["code"] == "stop"
            assert client.mach.is_active("Disconnected")
            assert not client.mach.is_active("Start")
            await server.mach.when_not("HasClients")
            assert src.is_active("D")  # it ran; only the reply was lost
