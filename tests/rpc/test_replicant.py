"""Replicants: chains of mirrors that re-serve their parent (rpc.md 6.15)."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

import asyncmachine as am

pytestmark = pytest.mark.anyio

TIMEOUT = 10
PUSH = 0.01


def root_machine() -> am.Machine:
    return am.Machine(
        {
            "A": {},
            "B": am.State(multi=True),
            "C": am.State(remove=["A"]),
        },
        id="root",
    )


async def test_chain_mirrors_writes_and_waits() -> None:
    """root -> L1 -> L2 -> client: reads, writes and remote waits cross the chain."""
    root = root_machine()
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(root, push_interval=PUSH) as srv,
            am.rpc.Replicant(srv.addr, id="l1", push_interval=PUSH) as l1,
            am.rpc.Replicant(l1.addr, id="l2", push_interval=PUSH) as l2,
            am.rpc.Client(l2.addr, id="leaf") as leaf,
        ):
            nm = leaf.netmach
            assert nm._lineage == ["rnm-l2", "rnm-l1", "root"]
            assert nm.state_names() == root.state_names()
            root.add("A")
            assert await nm.when("A")
            assert await nm.add("C") == am.Result.EXECUTED
            assert root.active_states() == ["C"]
            assert nm.active_states() == ["C"]  # the reply already carried it
            assert l1.netmach.active_states() == ["C"]
            got: list[bool] = []
            async with anyio.create_task_group() as tg:

                async def wait() -> None:
                    got.append(await nm.when_args("B", {"k": 1}))

                tg.start_soon(wait)
                await anyio.sleep(0.05)
                root.add("B", {"k": 1})
            assert got == [True]
            assert nm.tick("B") == root.tick("B") == 1


async def test_multi_writes_apply_once_through_the_chain() -> None:
    """Each write from a leaf ticks the root exactly once."""
    root = root_machine()
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(root, push_interval=PUSH) as srv,
            am.rpc.Replicant(srv.addr, push_interval=PUSH) as l1,
            am.rpc.Client(l1.addr) as leaf,
        ):
            for _ in range(20):
                assert await leaf.netmach.add("B") == am.Result.EXECUTED
            assert root.tick("B") == 39
            assert leaf.netmach.tick("B") == 39


async def test_cycle_is_refused() -> None:
    """A replicant connecting to its own descendant raises CycleError."""
    root = root_machine()
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(root, push_interval=PUSH) as srv,
            am.rpc.Replicant(srv.addr, id="l1", push_interval=PUSH) as l1,
            am.rpc.Replicant(l1.addr, id="l2", push_interval=PUSH) as l2,
        ):
            with pytest.raises(am.rpc.CycleError):
                async with am.rpc.Replicant(l2.addr, id="l1"):
                    pass
            with pytest.raises(am.rpc.CycleError):
                async with am.rpc.Replicant(l2.addr, id="l2"):
                    pass
            # the chain still works
            root.add("A")
            assert await l2.netmach.when("A")


async def until(pred: Callable[[], bool]) -> None:
    """Poll a plain attribute (no event exists for it) until *pred* holds."""
    while not pred():  # noqa: ASYNC110 - `up` is an attribute, not an event
        await anyio.sleep(0.005)


async def run_replicant(
    parent: tuple[str, int],
    port: int,
    started: Callable[[tuple[str, int]], object],
    stop: anyio.Event,
) -> None:
    """Run an L1 replicant until *stop* is set."""
    async with am.rpc.Replicant(
        parent, id="l1", listen=("127.0.0.1", port), push_interval=PUSH
    ) as rep:
        started(rep.addr)
        await stop.wait()


async def test_stale_while_upstream_down_then_recovers() -> None:
    """Killing L1 marks L2 and its clients stale; restarting L1 resyncs them."""
    root = root_machine()
    fast_retry = am.rpc.RetryPolicy(retries=400, delay=0.02, max_delay=0.05, total=8)
    addrs: list[tuple[str, int]] = []
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(root, push_interval=PUSH) as srv,
            anyio.create_task_group() as tg,
        ):
            stop1 = anyio.Event()
            tg.start_soon(run_replicant, srv.addr, 0, addrs.append, stop1)
            await until(lambda: bool(addrs))
            async with (
                am.rpc.Replicant(
                    addrs[0], id="l2", reconnect_retry=fast_retry, push_interval=PUSH
                ) as l2,
                am.rpc.Client(l2.addr, id="leaf") as leaf,
            ):
                root.add("A")
                assert await leaf.netmach.when("A")
                assert l2.netmach.up
                stop1.set()  # L1 goes away
                assert await l2.client.mach.when_not("Ready")
                assert not l2.netmach.up
                await until(lambda: not leaf.netmach.up)  # `up: false` travels down
                # writes fail fast while the upstream is down
                assert await leaf.netmach.add("B") == am.Result.CANCELED
                assert root.tick("B") == 0
                root.add("C")  # missed while down
                stop2 = anyio.Event()
                tg.start_soon(run_replicant, srv.addr, addrs[0][1], addrs.append, stop2)
                assert await l2.client.mach.when("Ready")
                assert await leaf.netmach.when("C")
                await until(lambda: leaf.netmach.up)
                assert leaf.netmach.clock() == root.clock()
                assert root.not_active("A")
                stop2.set()
            assert srv.mach.is_active("Ready")
