"""Mutations from other threads (spec 13.4)."""

from __future__ import annotations

import threading

import anyio
import pytest

import asyncmachine as am

pytestmark = pytest.mark.anyio

TIMEOUT = 10
THREADS = 8
PER_THREAD = 200


async def test_eight_threads_lose_no_mutation() -> None:
    """8 threads mutate at once: nothing is lost, every clock stays consistent."""
    schema: dict[str, am.State] = {
        f"T{i}": am.State(multi=True) for i in range(THREADS)
    }
    schema["Flip"] = am.State()
    mach = am.Machine(schema)
    results: list[list[am.Result]] = [[] for _ in range(THREADS)]

    def worker(i: int) -> None:
        for n in range(PER_THREAD):
            results[i].append(mach.add_threadsafe(f"T{i}").result(TIMEOUT))
            if n % 2:
                mach.remove_threadsafe("Flip").result(TIMEOUT)
            else:
                mach.add_threadsafe("Flip").result(TIMEOUT)

    async with mach:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()

        def join_all() -> None:
            for t in threads:
                t.join()

        with anyio.fail_after(TIMEOUT * 3):
            await anyio.to_thread.run_sync(join_all)
    for i in range(THREADS):
        assert results[i] == [am.Result.EXECUTED] * PER_THREAD
        # a called multi state: 1 on the first add, +2 on every later one
        assert mach.tick(f"T{i}") == 2 * PER_THREAD - 1
    assert all(t % 2 == 1 for name, t in mach.clock().items() if name.startswith("T"))
    assert mach.tick("Flip") % 2 == int(mach.is_active("Flip"))
    assert mach.queue_len() == 0


async def test_plain_mutation_from_foreign_thread_raises() -> None:
    """Once bound to a loop, plain mutations from another thread raise RuntimeError."""
    mach = am.Machine({"A": {}})
    await mach.when_not("A")  # first async use binds the loop
    with pytest.raises(RuntimeError, match="add_threadsafe"):
        await anyio.to_thread.run_sync(lambda: mach.add("A"))
    with pytest.raises(RuntimeError, match="add_threadsafe"):
        await anyio.to_thread.run_sync(lambda: mach.can_add("A"))
    assert mach.not_active("A")


async def test_threadsafe_unknown_state_raises_in_caller() -> None:
    """Unknown names raise StateUnknownError in the calling thread at once."""
    mach = am.Machine({"A": {}})
    await mach.when_not("A")

    def call() -> None:
        mach.add_threadsafe("Nope")

    with pytest.raises(am.StateUnknownError):
        await anyio.to_thread.run_sync(call)


async def test_threadsafe_from_loop_thread_runs_now() -> None:
    """On the loop thread the threadsafe variants run at once."""
    mach = am.Machine({"A": {}})
    await mach.when_not("A")
    fut = mach.add_threadsafe("A")
    assert fut.done()
    assert fut.result() == am.Result.EXECUTED
    assert mach.is_active("A")


def test_threadsafe_needs_a_bound_loop() -> None:
    """Before any async use there is no loop to hand work to: RuntimeError."""
    mach = am.Machine({"A": {}})
    with pytest.raises(RuntimeError, match="not bound"):
        mach.add_threadsafe("A")


async def test_err_and_eval_threadsafe() -> None:
    """add_err_threadsafe and eval_threadsafe run on the loop thread."""
    mach = am.Machine({"A": {}})
    await mach.when_not("A")
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def call() -> tuple[am.Result, bool]:
        r = mach.add_err_threadsafe(ValueError("from thread")).result(TIMEOUT)
        ok = mach.eval_threadsafe(lambda: seen.append(threading.get_ident())).result(
            TIMEOUT
        )
        return r, ok

    with anyio.fail_after(TIMEOUT):
        r, ok = await anyio.to_thread.run_sync(call)
    assert r == am.Result.EXECUTED
    assert ok is True
    assert seen == [loop_thread]
    assert mach.is_err()


def test_threadsafe_recovers_after_a_closed_loop() -> None:
    """A failed hand-off to a closed loop does not wedge later threadsafe calls."""
    mach = am.Machine({"A": {}})

    async def bind() -> None:
        await mach.when_not("A")

    anyio.run(bind)  # binds the machine, then that loop closes

    def from_thread() -> BaseException | None:
        try:
            mach.add_threadsafe("A").result(TIMEOUT)
        except RuntimeError as exc:
            return exc
        return None

    results: list[BaseException | None] = []
    t = threading.Thread(target=lambda: results.append(from_thread()))
    t.start()
    t.join(TIMEOUT)
    assert isinstance(results[0], RuntimeError)

    async def rebound() -> am.Result:
        await mach.when_not("A")  # same thread, new loop: rebinds
        return await anyio.to_thread.run_sync(
            lambda: mach.add_threadsafe("A").result(TIMEOUT)
        )

    assert anyio.run(rebound) == am.Result.EXECUTED
    assert mach.is_active("A")
