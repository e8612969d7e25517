"""aRPC over real TCP sockets on 127.0.0.1: the basic flows."""

from __future__ import annotations

import anyio
import pytest

import asyncmachine as am

pytestmark = pytest.mark.anyio

TIMEOUT = 10


def source(id: str = "root") -> am.Machine:
    return am.Machine(
        {
            "Foo": am.State(require=["Bar"]),
            "Bar": {},
            "B": am.State(multi=True),
            **am.rpc.STATE_SOURCE_SCHEMA,
        },
        id=id,
    )


async def test_basic_remote_add() -> None:
    """Go TestBasic: after add returns, source and mirror both show the states."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server, am.rpc.Client(server.addr) as client:
            assert client.mach.is_active("Ready")
            nm = client.netmach
            assert nm.remote_id == "root"
            assert nm.state_names() == src.state_names()
            assert await nm.add(["Foo", "Bar"]) == am.Result.EXECUTED
            assert src.is_active(["Foo", "Bar"])
            assert nm.is_active(["Foo", "Bar"])
            assert nm.clock() == src.clock()
            assert await nm.add("Foo", None) == am.Result.EXECUTED
            assert await nm.remove("Bar") == am.Result.EXECUTED
            assert nm.not_active(["Foo", "Bar"])  # Foo lost its requirement
            assert not client.mach.is_err()
            assert not server.mach.is_err()


async def test_canceled_result_travels() -> None:
    """A remote mutation rejected by relations returns CANCELED."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server, am.rpc.Client(server.addr) as client:
            assert await client.netmach.add("Foo") == am.Result.CANCELED
            assert client.netmach.not_active("Foo")


async def test_source_changes_are_pushed() -> None:
    """Changes made on the source reach the mirror through pushes."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src, push_interval=0.01) as server,
            am.rpc.Client(server.addr) as client,
        ):
            src.add("B")
            assert await client.netmach.when("B")
            src.add("B")
            assert await client.netmach.when_ticks("B", 2)
            assert client.netmach.tick("B") == src.tick("B") == 3


async def test_replies_carry_the_clock() -> None:
    """Go TestWaiting: a local wait wakes from the reply; no push needed."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src, push_interval=None) as server,
            am.rpc.Client(server.addr) as client,
        ):
            nm = client.netmach
            woke: list[bool] = []
            async with anyio.create_task_group() as tg:

                async def wait() -> None:
                    woke.append(await nm.when(["Foo", "Bar"]))

                tg.start_soon(wait)
                await anyio.sleep(0.01)
                await nm.add(["Foo", "Bar"])
            assert woke == [True]
            session = next(iter(server.sessions.values()))
            # HELLO and one MUTATE from the client; WELCOME and RESULT back
            assert session.link.frames_in == 2
            assert session.link.frames_out == 2


async def test_remote_when_args() -> None:
    """when_args runs on the source; the mirror shows the transition on return."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server, am.rpc.Client(server.addr) as client:
            nm = client.netmach
            got: list[bool] = []
            async with anyio.create_task_group() as tg:

                async def wait() -> None:
                    got.append(await nm.when_args("B", {"x": 1}))

                tg.start_soon(wait)
                await anyio.sleep(0.05)
                src.add("B", {"x": 2})
                await anyio.sleep(0.05)
                assert got == []
                src.add("B", {"x": 1})
            assert got == [True]
            assert nm.tick("B") == 3


async def test_wrong_token_raises_auth_error_and_server_keeps_serving() -> None:
    """A wrong token raises AuthError from `async with`; other clients still work."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src, token="s3cret") as server:
            with pytest.raises(am.rpc.AuthError):
                async with am.rpc.Client(server.addr, token="wrong"):
                    pass
            with pytest.raises(am.rpc.AuthError):
                async with am.rpc.Client(server.addr):
                    pass
            async with am.rpc.Client(server.addr, token="s3cret") as client:
                assert await client.netmach.add("Bar") == am.Result.EXECUTED
    assert issubclass(am.rpc.AuthError, am.rpc.RpcError)
    assert issubclass(am.rpc.RpcError, am.AsyncMachineError)


async def test_unreachable_server_raises_connection_error() -> None:
    """A server that stays unreachable raises RpcConnectionError."""
    with anyio.fail_after(TIMEOUT):
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as lst:
            port = lst.extra(anyio.abc.SocketAttribute.local_port)
        with pytest.raises(am.rpc.RpcConnectionError) as info:
            async with am.rpc.Client(("127.0.0.1", port)):
                pass
    assert isinstance(info.value, ConnectionError)


async def test_unknown_state_raises_locally() -> None:
    """Unknown names raise before anything is sent."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server, am.rpc.Client(server.addr) as client:
            link = client._link
            assert link is not None
            sent = link.frames_out
            with pytest.raises(am.StateUnknownError):
                await client.netmach.add("Nope")
            with pytest.raises(TypeError):
                await client.netmach.add("B", {"x": {1, 2}})
            assert link.frames_out == sent


async def test_many_clients_see_one_change() -> None:
    """Go TestMux: three clients see a change made by one of them."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src, push_interval=0.01) as server,
            am.rpc.Client(server.addr, id="c1") as c1,
            am.rpc.Client(server.addr, id="c2") as c2,
            am.rpc.Client(server.addr, id="c3") as c3,
        ):
            assert server.mach.is_active("HasClients")
            await c1.netmach.add(["Foo", "Bar"])
            assert await c2.netmach.when("Foo")
            assert await c3.netmach.when("Foo")


async def test_add_err_from_client() -> None:
    """add_err sends Exception (and ErrOnClient) with a RemoteError as err."""
    errors: list[object] = []

    class H:
        def Exception_state(self, e: am.Event) -> None:
            errors.append(e.args.get("err"))

    src = source()
    src.bind_handlers(H())
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server, am.rpc.Client(server.addr) as client:
            await client.netmach.add_err(ValueError("bad input"))
            assert src.is_active(["Exception", "ErrOnClient"])
            assert client.netmach.is_err()
            assert isinstance(client.netmach.err(), ValueError)
    assert len(errors) == 1
    assert isinstance(errors[0], am.rpc.RemoteError)
    assert "ValueError: bad input" in str(errors[0])


async def test_errors_leave_async_with_unwrapped() -> None:
    """An AuthError raised inside nested serve/Client blocks is not an ExceptionGroup."""
    src = source()
    with anyio.fail_after(TIMEOUT), pytest.raises(am.rpc.AuthError):
        async with (
            am.rpc.serve(src, token="s3cret") as server,
            am.rpc.Client(server.addr, token="wrong"),
        ):
            pass
    with anyio.fail_after(TIMEOUT), pytest.raises(KeyError):
        async with am.rpc.serve(src) as server, am.rpc.Client(server.addr):
            raise KeyError("from the body")
    with anyio.fail_after(TIMEOUT), pytest.raises(ValueError, match="body"):
        async with src:
            raise ValueError("body")


async def test_remote_add_err_sets_the_source_error() -> None:
    """A client's add_err sets err() on the source and reaches other mirrors."""
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src, push_interval=0.01) as server,
            am.rpc.Client(server.addr, id="a") as c1,
            am.rpc.Client(server.addr, id="b") as c2,
        ):
            await c1.netmach.add_err(ValueError("bad input"))
            err = src.err()
            assert isinstance(err, am.rpc.RemoteError)
            assert "bad input" in str(err)
            assert await c2.netmach.when_err()
            while c2.netmach.err() is None:  # noqa: ASYNC110 - err() is not an event
                await anyio.sleep(0.005)
            assert "bad input" in str(c2.netmach.err())
