"""
Go TestPayload over real sockets: a source handler sends data to one client.

The source's ``C_state`` handler forks a task (``mach.fork`` inside ``async with
mach:``) that calls ``await server.send_payload(name, data, dst=client_id)``; the
client delivers it to ``on_payload`` (sync or async) and to a ``consumer`` machine's
``ServerPayload`` state, then acknowledges it, and only then does ``send_payload``
return.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable

import anyio
import pytest

import asyncmachine as am

pytestmark = pytest.mark.anyio

TIMEOUT = 10
DATA = {"text": "Hello", "n": [1, 2.5, None, True], "raw": b"\x00\xff"}


@dataclasses.dataclass
class Sender:
    """The source's handlers: C removes itself and forks the payload delivery."""

    server: am.rpc.Server | None = None
    dst: str = ""
    data: object = dataclasses.field(default_factory=lambda: DATA)
    #: What each delivery did: "returned", or the exception it raised.
    outcomes: list[object] = dataclasses.field(default_factory=list)
    delivered: anyio.Event = dataclasses.field(default_factory=anyio.Event)

    def C_state(self, e: am.Event) -> None:
        e.machine.remove("C")
        name = str(e.args["name"])
        e.machine.fork(e, self.deliver, name)

    async def deliver(self, name: str) -> None:
        assert self.server is not None
        try:
            await self.server.send_payload(name, self.data, dst=self.dst)
        except am.rpc.RpcError as exc:
            self.outcomes.append(exc)
        else:
            self.outcomes.append("returned")
        self.delivered.set()


def source(sender: Sender) -> am.Machine:
    schema = {
        "A": am.State(auto=True, require=["C"]),
        "B": am.State(multi=True),
        "C": am.State(),
        **am.rpc.STATE_SOURCE_SCHEMA,
    }
    return am.Machine(schema, id="src", handlers=sender)


@contextlib.asynccontextmanager
async def rig(
    sender: Sender, **client_opts: object
) -> AsyncIterator[tuple[am.Machine, am.rpc.Server, am.rpc.Client]]:
    """A running source (its task group open), a server and a client with an id."""
    src = source(sender)
    with anyio.fail_after(TIMEOUT):
        async with (
            src,
            am.rpc.serve(src) as server,
            am.rpc.Client(server.addr, id="cli", **client_opts) as client,  # type: ignore[arg-type]
        ):
            sender.server = server
            sender.dst = client.id
            yield src, server, client


def consumer_machine(received: list[tuple[str, am.rpc.Payload]]) -> am.Machine:
    class Consumer:
        def ServerPayload_state(self, e: am.Event) -> None:
            payload = e.args["payload"]
            assert isinstance(payload, am.rpc.Payload)
            received.append((str(e.args["name"]), payload))

    return am.Machine(
        {"ServerPayload": am.State(multi=True)}, id="consumer", handlers=Consumer()
    )


async def test_payload_reaches_on_payload_and_send_returns_after_the_ack() -> None:
    """Go TestPayload: the name comes from the mutation's args; data arrives intact."""
    sender = Sender()
    got: list[am.rpc.Payload] = []
    returned_before_callback: list[bool] = []

    def on_payload(p: am.rpc.Payload) -> None:
        returned_before_callback.append(sender.delivered.is_set())
        got.append(p)

    async with rig(sender, on_payload=on_payload) as (src, _server, client):
        assert await client.netmach.add("C", {"name": "report"}) == am.Result.EXECUTED
        assert client.netmach.not_active("C")  # the handler removed it
        await sender.delivered.wait()
        assert sender.outcomes == ["returned"]
        assert returned_before_callback == [False]
        assert len(got) == 1
        p = got[0]
        assert p.name == "report"
        assert p.data == DATA
        assert p.source == "src"
        assert p.dest == "cli"
        assert p.token
        assert client.mach.tick("ServerPayload") == 1
        assert not src.is_err()


async def test_async_on_payload_is_awaited_before_the_ack() -> None:
    """send_payload waits for an async on_payload to finish before returning."""
    sender = Sender()
    entered = anyio.Event()
    release = anyio.Event()
    got: list[str] = []

    async def on_payload(p: am.rpc.Payload) -> None:
        entered.set()
        await release.wait()
        got.append(p.name)

    async with rig(sender, on_payload=on_payload) as (_src, _server, client):
        await client.netmach.add("C", {"name": "slow"})
        await entered.wait()
        await anyio.wait_all_tasks_blocked()
        assert not sender.delivered.is_set()  # no ack while the callback runs
        release.set()
        await sender.delivered.wait()
        assert got == ["slow"]
        assert sender.outcomes == ["returned"]


async def test_consumer_machine_gets_server_payload() -> None:
    """A consumer machine's ServerPayload state receives name and payload."""
    sender = Sender()
    received: list[tuple[str, am.rpc.Payload]] = []
    consumer = consumer_machine(received)
    async with rig(sender, consumer=consumer) as (_src, _server, client):
        for name in ("one", "two"):
            await client.netmach.add("C", {"name": name})
            await sender.delivered.wait()
            sender.delivered = anyio.Event()
        assert sender.outcomes == ["returned", "returned"]
        assert [n for n, _ in received] == ["one", "two"]
        assert all(p.data == DATA for _, p in received)
        assert consumer.tick("ServerPayload") == 3  # multi: 1, then 3


async def test_consumer_and_callback_together() -> None:
    """With both a consumer and on_payload, each delivery reaches both once."""
    sender = Sender(data=None)
    received: list[tuple[str, am.rpc.Payload]] = []
    consumer = consumer_machine(received)
    names: list[str] = []
    async with rig(
        sender, consumer=consumer, on_payload=lambda p: names.append(p.name)
    ) as (_src, _server, client):
        await client.netmach.add("C", {"name": "nil-data"})
        await sender.delivered.wait()
        assert names == ["nil-data"]
        assert [(n, p.data) for n, p in received] == [("nil-data", None)]


async def test_direct_send_payload_from_the_test() -> None:
    """send_payload can also be awaited directly; it returns once acknowledged."""
    got: list[am.rpc.Payload] = []
    sender = Sender()
    async with rig(sender, on_payload=got.append) as (_src, server, client):
        for i in range(5):
            await server.send_payload(f"p{i}", i, dst=client.id)
            assert [p.data for p in got] == list(range(i + 1))


async def test_no_consumer_raises_on_the_server() -> None:
    """A client with neither on_payload nor consumer makes send_payload raise NoConsumer."""
    sender = Sender()
    async with rig(sender) as (src, server, client):
        with pytest.raises(am.rpc.NoConsumer):
            await server.send_payload("x", 1, dst=client.id)
        await client.netmach.add("C", {"name": "via-handler"})
        await sender.delivered.wait()
        (outcome,) = sender.outcomes
        assert isinstance(outcome, am.rpc.NoConsumer)
        assert not src.is_err()
        assert await client.netmach.add("B") == am.Result.EXECUTED  # still connected
        assert client.mach.tick("ServerPayload") == 0


async def test_unknown_destination_raises_destination_mismatch() -> None:
    """A dst naming no connected client raises DestinationMismatch; nothing is sent."""
    got: list[am.rpc.Payload] = []
    sender = Sender()
    async with rig(sender, on_payload=got.append) as (_src, server, client):
        (session,) = server.sessions.values()
        sent = session.link.frames_out
        with pytest.raises(am.rpc.DestinationMismatch):
            await server.send_payload("x", 1, dst="nobody")
        with pytest.raises(am.rpc.DestinationMismatch):
            await server.send_payload("x", 1, dst=f"rc-{client.id}")
        assert session.link.frames_out == sent
        sender.dst = "nobody"
        await client.netmach.add("C", {"name": "lost"})
        await sender.delivered.wait()
        (outcome,) = sender.outcomes
        assert isinstance(outcome, am.rpc.DestinationMismatch)
        assert got == []


async def test_payload_to_one_of_two_clients() -> None:
    """Behind one server, dst picks the client; the other one gets nothing."""
    src = source(Sender())
    got: dict[str, list[object]] = {"one": [], "two": []}

    def collect(name: str) -> Callable[[am.rpc.Payload], None]:
        return lambda p: got[name].append(p.data)

    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src) as server,
            am.rpc.Client(server.addr, id="one", on_payload=collect("one")),
            am.rpc.Client(server.addr, id="two", on_payload=collect("two")),
        ):
            await server.send_payload("x", 1, dst="two")
            await server.send_payload("x", 2, dst="one")
            await server.send_payload("x", 3, dst="two")
    assert got == {"one": [2], "two": [1, 3]}


async def test_delivery_timeout_raises_timeout_error() -> None:
    """No acknowledgement within the delivery timeout raises TimeoutError."""
    release = anyio.Event()

    async def on_payload(p: am.rpc.Payload) -> None:
        await release.wait()

    sender = Sender()
    async with rig(sender, on_payload=on_payload) as (_src, server, client):
        start = anyio.current_time()
        with pytest.raises(TimeoutError):
            await server.send_payload("late", 1, dst=client.id, timeout=0.2)
        assert anyio.current_time() - start >= 0.2
        release.set()
        assert await client.netmach.add("B") == am.Result.EXECUTED


async def test_client_leaving_during_delivery_raises_not_connected() -> None:
    """A client that leaves before acknowledging makes send_payload raise NotConnected."""
    entered = anyio.Event()
    outcome: list[BaseException] = []

    async def on_payload(p: am.rpc.Payload) -> None:
        entered.set()
        await anyio.sleep_forever()

    src = source(Sender())
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server:
            async with (
                anyio.create_task_group() as tg,
                am.rpc.Client(server.addr, id="gone", on_payload=on_payload),
            ):

                async def deliver() -> None:
                    try:
                        await server.send_payload("x", 1, dst="gone")
                    except am.rpc.RpcError as exc:
                        outcome.append(exc)

                tg.start_soon(deliver)
                await entered.wait()
            assert len(outcome) == 1
            assert isinstance(outcome[0], am.rpc.NotConnected)
            with pytest.raises(am.rpc.DestinationMismatch):
                await server.send_payload("x", 1, dst="gone")


async def test_failed_delivery_adds_err_delivery_on_the_server() -> None:
    """rpc.md 7.24: NoConsumer is raised and the server side marks ErrDelivery."""
    sender = Sender()
    async with rig(sender) as (_src, server, client):
        (session,) = server.sessions.values()
        with pytest.raises(am.rpc.NoConsumer):
            await server.send_payload("x", 1, dst=client.id)
        ticks = server.mach.tick("ErrDelivery") + session.mach.tick("ErrDelivery")
        assert ticks > 0
