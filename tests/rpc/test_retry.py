"""Retries and de-duplication: the Go retry tests (rpc.md 1.16, 8) and exactly-once."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest
from faultproxy import (
    MUTATE,
    RESULT,
    FaultProxy,
    fast_client,
    free_port,
    new_source,
    retry_states_clear,
    wait_handshakes,
)

import asyncmachine as am

pytestmark = pytest.mark.anyio

LIMIT = 5  # seconds: every test body runs under this


def _rids(proxy: FaultProxy) -> list[object]:
    return [(f.body or {}).get("rid") for f in proxy.c2s.find(MUTATE)]


async def test_retry_call() -> None:
    """Go TestRetryCall: a lost connection, then a reply slower than call_timeout;
    both calls are retried (RetryingCall), succeed, and apply exactly once."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr, call_timeout=0.4) as client,
        ):
            nm = client.netmach
            # 1. a transient network error: the MUTATE never reaches the server
            cut = proxy.c2s.cut(MUTATE)
            assert await nm.add("B") == am.Result.EXECUTED
            assert cut.hits == 1
            assert src.tick("B") == 1
            assert client.mach.tick("RetryingCall") == 2
            # 2. a slow server: the first reply arrives after the call timed out
            proxy.s2c.delay(0.5, RESULT)
            assert await nm.add(["B", "D"]) == am.Result.EXECUTED
            assert src.tick("B") == 3  # one re-activation, not two
            assert src.is_active("D")
            assert nm.clock() == src.clock()
            assert client.mach.tick("RetryingCall") == 4
            rids = _rids(proxy)
            assert rids[-1] == rids[-2] != rids[0]
            assert client.mach.is_active("Ready")
            assert server.mach.is_active("Ready")
            assert retry_states_clear(client.mach)


async def test_retry_conn() -> None:
    """Go TestRetryConn: the server starts only after the client's second dial; both
    end Ready, a mutation works and no retry state is left."""
    port = await free_port()
    src = new_source()
    client = fast_client(
        ("127.0.0.1", port),
        connect_retry=am.rpc.RetryPolicy(retries=50, delay=0.02, max_delay=0.05),
    )
    stop = anyio.Event()

    async def serve_late(
        *, task_status: anyio.abc.TaskStatus[am.rpc.Server] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        await client.mach.when_time(["Connecting"], [3])  # the second attempt
        async with am.rpc.serve(src, port=port) as server:
            task_status.started(server)
            await stop.wait()

    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_late)
            async with client:
                assert client.mach.tick("Connecting") >= 3
                assert client.mach.tick("RetryingConn") >= 1
                assert client.mach.is_active("Ready")
                assert retry_states_clear(client.mach)
                assert await client.netmach.add("D") == am.Result.EXECUTED
                assert src.is_active("D")
            stop.set()


async def test_retry_err_network_timeout() -> None:
    """Go TestRetryErrNetworkTimeout: a reply slower than call_timeout adds
    ErrNetworkTimeout and RetryingCall; D ends active, nothing left retrying."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr, call_timeout=0.3) as client,
        ):
            proxy.s2c.delay(0.35, RESULT)
            assert await client.netmach.add("D") == am.Result.EXECUTED
            assert src.is_active("D")
            assert client.mach.tick("RetryingCall") == 2
            assert client.mach.tick("ErrNetworkTimeout") >= 1
            assert client.mach.is_active("Ready")
            assert retry_states_clear(client.mach)


async def _serve_until(
    src: am.Machine,
    port: int,
    stop: anyio.Event,
    *,
    task_status: anyio.abc.TaskStatus[am.rpc.Server] = anyio.TASK_STATUS_IGNORED,
) -> None:
    async with am.rpc.serve(src, port=port) as server:
        task_status.started(server)
        await stop.wait()


async def test_retry_closed_listener() -> None:
    """Go TestRetryClosedListener (rpc.md 7 row 9): closing the server leaves the
    source untouched; a new server on the same port serves the reconnecting client,
    which saw exactly one error (ErrNetwork, then cleared)."""
    src = new_source()
    port = await free_port()
    stop1, stop2 = anyio.Event(), anyio.Event()
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            s1 = await tg.start(_serve_until, src, port, stop1)
            async with fast_client(s1.addr) as client:
                nm = client.netmach
                assert await nm.add("Bar") == am.Result.EXECUTED
                clock = src.clock()
                stop1.set()
                await client.mach.when("Disconnected")
                await s1.mach.when_disposed()
                assert src.clock() == clock
                assert not src.is_err()
                assert s1._hook not in src._tracers
                assert await nm.add("D") == am.Result.CANCELED  # no waiting queue
                assert nm.is_active("Bar")  # stale mirror still readable
                s2 = await tg.start(_serve_until, src, port, stop2)
                assert s2.addr == s1.addr
                await wait_handshakes(client, 2)
                assert await nm.add("D") == am.Result.EXECUTED
                assert src.is_active(["Bar", "D"])
                assert nm.clock() == src.clock()
                assert client.mach.is_active("Ready")
                assert s2.mach.is_active("Ready")
                assert retry_states_clear(client.mach)
                assert client.mach.tick("Exception") == 2
                assert client.mach.tick("ErrNetwork") == 2
                assert client.mach.tick("ErrRpc") == 0
            stop2.set()


async def test_dropped_reply_is_retried_and_applied_once() -> None:
    """A lost RESULT: the call times out, is retried on the same connection with the
    same rid, and the server answers from its dedup cache (multi tick +2, not +4)."""
    src = new_source()
    src.add("B")
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=None) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr, call_timeout=0.3) as client,
        ):
            nm = client.netmach
            lost = proxy.s2c.drop(RESULT)
            assert await nm.add("B") == am.Result.EXECUTED
            assert lost.hits == 1
            assert src.tick("B") == 3
            rids = _rids(proxy)
            assert len(rids) == 2
            assert rids[0] == rids[1]
            assert len(proxy.s2c.find(RESULT)) == 2  # the original and the cached one
            assert proxy.accepted == 1
            assert client.mach.tick("RetryingCall") == 2
            # a new call is a new rid: it applies again
            assert await nm.add("B") == am.Result.EXECUTED
            assert src.tick("B") == 5
            assert retry_states_clear(client.mach)


async def test_retried_call_returns_with_the_mirror_updated() -> None:
    """protocol.md 9: a retry answered from the cache carries a fresh clock, so the
    mirror shows the mutation when the call returns."""
    src = new_source()
    src.add("B")
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=None) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr, call_timeout=0.3) as client,
        ):
            nm = client.netmach
            proxy.s2c.drop(RESULT)
            assert await nm.add("B") == am.Result.EXECUTED
            assert src.tick("B") == 3
            assert nm.tick("B") == 3
            assert nm.clock() == src.clock()


async def test_retry_after_reconnect_is_deduplicated_across_sessions() -> None:
    """A lost RESULT that also breaks the stream: the retry on the next session is
    answered from the source-wide cache; applied once."""
    src = new_source()
    src.add("B")
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=None) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr, call_timeout=0.3) as client,
        ):
            nm = client.netmach
            proxy.s2c.drop(RESULT, renumber=False)  # the next reply shows a seq gap
            assert await nm.add("B") == am.Result.EXECUTED
            assert src.tick("B") == 3
            assert proxy.accepted == 2
            rids = _rids(proxy)
            assert len(set(rids)) == 1
            assert {f.conn for f in proxy.c2s.find(MUTATE)} == {1, 2}
            await wait_handshakes(client, 2)
            assert nm.clock() == src.clock()


@pytest.mark.parametrize("strict", [False, True])
async def test_call_retries_exhausted(strict: bool) -> None:
    """Every reply lost: after call_retries the call gives up (CallRetryFailed,
    CANCELED or RemoteTimeout), yet the mutation ran exactly once."""
    src = new_source()
    src.add("B")
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=None) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(
                proxy.addr, call_timeout=0.15, call_retries=2, strict=strict
            ) as client,
        ):
            proxy.s2c.drop(RESULT, count=None)
            if strict:
                with pytest.raises(am.rpc.RemoteTimeout):
                    await client.netmach.add("B")
            else:
                assert await client.netmach.add("B") == am.Result.CANCELED
            assert len(_rids(proxy)) == 3
            assert len(set(_rids(proxy))) == 1
            assert src.tick("B") == 3
            assert client.mach.is_active(["CallRetryFailed", "ErrNetwork"])
            assert not client.mach.is_active("RetryingCall")
            assert isinstance(client.err(), am.rpc.RemoteTimeout)
            assert proxy.accepted == 1
            # the connection itself is fine: the next call works once replies flow
            proxy.s2c.clear()
            assert await client.netmach.add("D") == am.Result.EXECUTED


async def test_retry_waits_for_reconnect() -> None:
    """A call in flight when the link drops waits for the reconnect and completes."""
    src = new_source()
    with anyio.fail_after(LIMIT):
        async with (
            am.rpc.serve(src, push_interval=None) as server,
            FaultProxy(server.addr) as proxy,
            fast_client(proxy.addr, call_timeout=1.0) as client,
        ):
            lost = proxy.c2s.drop(MUTATE)  # swallowed by the proxy ...
            async with anyio.create_task_group() as tg:
                result: list[am.Result] = []

                async def mutate() -> None:
                    result.append(await client.netmach.add("D"))

                tg.start_soon(mutate)
                await lost.fired.wait()
                await proxy.kill_all()  # ... and lost with the connection
            assert result == [am.Result.EXECUTED]
            assert src.tick("D") == 1
            assert proxy.accepted == 2
