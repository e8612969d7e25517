"""Waiting on states: ``when*`` (spec section 9), on asyncio and trio."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

import asyncmachine as am

pytestmark = pytest.mark.anyio

TIMEOUT = 5  # every wait runs under a timeout: nothing may hang


def norels() -> am.Machine:
    return am.Machine({"A": {}, "B": {}, "C": {}, "D": am.State(multi=True)})


async def test_when_resolves_after_later_adds() -> None:
    """Go TestWhen: when(B, C) resolves once both were added by a task."""
    mach = norels()
    async with mach:

        async def adder() -> None:
            await anyio.lowlevel.checkpoint()
            mach.add("B")
            await anyio.lowlevel.checkpoint()
            assert mach.is_active("B")
            mach.add("C")

        mach.go(adder)
        with anyio.fail_after(TIMEOUT):
            assert await mach.when(["B", "C"]) is True
        assert mach.is_active(["B", "C"])


async def test_when_already_active_returns_at_once() -> None:
    """Go TestWhenActive: resolves without waiting when already active."""
    mach = norels()
    mach.add("A")
    with anyio.fail_after(TIMEOUT):
        assert await mach.when("A") is True


async def test_two_overlapping_waiters() -> None:
    """Go TestWhen2 / TestWhenDups: overlapping waiters all resolve."""
    mach = norels()
    results: list[str] = []

    async def wait(states: list[str], label: str) -> None:
        assert await mach.when(states)
        results.append(label)

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, ["A", "B"], "ab")
            tg.start_soon(wait, ["A", "B"], "ab2")
            tg.start_soon(wait, ["B"], "b")
            await anyio.sleep(0.01)
            mach.add("A")
            assert results == []
            mach.add("B")
    assert sorted(results) == ["ab", "ab2", "b"]
    assert mach._wby == {}  # every waiter unregistered


async def test_when_not() -> None:
    """Go TestWhenNot / TestWhenNotActive: mirror image of when."""
    mach = norels()
    with anyio.fail_after(TIMEOUT):
        assert await mach.when_not("A") is True
    mach.add(["A", "B"])
    done: list[bool] = []
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                done.append(await mach.when_not(["A", "B"]))

            tg.start_soon(wait)
            await anyio.sleep(0.01)
            mach.remove("A")
            await anyio.sleep(0.01)
            assert done == []
            mach.remove("B")
    assert done == [True]


async def test_when_time_latches_on_all_ticks() -> None:
    """Go TestWhenTime: resolves only when every tick reaches its target."""
    mach = norels()
    done: list[bool] = []
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                done.append(await mach.when_time(["A", "B"], [3, 2]))

            tg.start_soon(wait)
            await anyio.sleep(0.01)
            mach.add("A")
            mach.remove("A")
            mach.add("A")  # A:3
            await anyio.sleep(0.01)
            assert done == []
            mach.add("B")  # B:1
            mach.remove("B")  # B:2
    assert done == [True]


async def test_when_time_validation() -> None:
    """Mismatched or empty tick lists raise ValueError (W3)."""
    mach = norels()
    with pytest.raises(ValueError, match="one tick per state"):
        await mach.when_time(["A", "B"], [1])
    with pytest.raises(ValueError, match="one tick per state"):
        await mach.when_time([], [])
    with anyio.fail_after(TIMEOUT):
        assert await mach.when_time(["A"], [0]) is True  # already met


async def test_when_ticks_counts_from_now() -> None:
    """when_ticks(state, n) waits for n more ticks of the state."""
    mach = norels()
    mach.add("D")
    done: list[bool] = []
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                done.append(await mach.when_ticks("D", 4))

            tg.start_soon(wait)
            await anyio.sleep(0.01)
            mach.add("D")  # multi: 3
            await anyio.sleep(0.01)
            assert done == []
            mach.add("D")  # 5
    assert done == [True]
    assert mach.tick("D") == 5


async def test_when_args_matches_only_equal_args() -> None:
    """Go TestWhenArgs: only an X_state event with matching args resolves."""
    mach = am.Machine({"B": am.State(multi=True)})
    done: list[bool] = []
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                done.append(await mach.when_args("B", {"foo": "bar"}))

            tg.start_soon(wait)
            await anyio.sleep(0.01)
            mach.add("B", {"foo": "foo"})
            await anyio.sleep(0.01)
            assert done == []
            mach.add("B", {"foo": "bar", "extra": 1})
    assert done == [True]
    assert mach._wargs == {}


async def test_when_args_missing_key_is_none_and_never_at_once() -> None:
    """A missing key counts as None; an active state does not resolve at once."""
    mach = am.Machine({"B": am.State(multi=True)})
    mach.add("B")
    done: list[bool] = []
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                done.append(await mach.when_args("B", {"k": None}))

            tg.start_soon(wait)
            await anyio.sleep(0.01)
            assert done == []
            mach.add("B", {"other": 1})
    assert done == [True]


async def test_when_args_resolves_even_if_state_handler_raises() -> None:
    """W5 [GO]: the waiter resolves although X_state raised and X rolled back."""

    class H:
        def B_state(self, e: am.Event) -> None:
            raise RuntimeError("boom")

    mach = am.Machine({"B": {}}, handlers=H())
    done: list[bool] = []
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                done.append(await mach.when_args("B", {"a": 1}))

            tg.start_soon(wait)
            await anyio.sleep(0.01)
            assert mach.add("B", {"a": 1}) == am.Result.CANCELED
    assert done == [True]
    assert mach.not_active("B")
    assert mach.is_err()


async def test_when_err() -> None:
    """when_err resolves once Exception is active."""
    mach = norels()
    done: list[bool] = []
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                done.append(await mach.when_err())

            tg.start_soon(wait)
            await anyio.sleep(0.01)
            mach.add_err(ValueError("x"))
    assert done == [True]
    assert isinstance(mach.err(), ValueError)


async def test_when_query() -> None:
    """Go TestWhenQuery: a clock predicate resolves only when true (A > 4*B)."""
    mach = am.Machine({"A": am.State(multi=True), "B": am.State(multi=True)})
    mach.add("B")  # B:1
    done: list[bool] = []
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                done.append(await mach.when_query(lambda c: c["A"] > 4 * c["B"]))

            tg.start_soon(wait)
            await anyio.sleep(0.01)
            mach.add("A")  # 1
            mach.add("A")  # 3
            await anyio.sleep(0.01)
            assert done == []
            mach.add("A")  # 5 > 4
    assert done == [True]


async def test_when_queue_and_queue_end() -> None:
    """Go TestWhenQueue / TestWhenQueueEnds: waits on queue ticks and drain end."""
    mach = norels()
    queued: list[am.Result] = []
    observed: list[bool] = []

    class H:
        def A_state(self, e: am.Event) -> None:
            queued.append(mach.add("B"))

    mach.bind_handlers(H())
    mach.add("A")
    assert queued[0].is_queued
    with anyio.fail_after(TIMEOUT):
        assert await mach.when_queue(queued[0]) is True
        assert await mach.when_queue_end() is True  # idle: at once
    assert mach.is_active("B")
    assert mach.queue_tick() >= queued[0]

    class Later:
        def C_state(self, e: am.Event) -> None:
            async def wait_end() -> None:
                observed.append(await mach.when_queue_end())
                observed.append(mach.is_active("D"))

            mach.go(wait_end)
            mach.add("D")

    mach.bind_handlers(Later())
    async with mach:
        with anyio.fail_after(TIMEOUT):
            mach.add("C")
            await anyio.sleep(0.05)
    assert observed == [True, True]


async def test_when_queue_checked_after_canceled_transition() -> None:
    """DEV-8: when_queue resolves even when the awaited mutation is canceled."""
    mach = am.Machine({"A": {}, "B": am.State(require=["X"]), "X": {}})
    ticks: list[am.Result] = []

    class H:
        def A_state(self, e: am.Event) -> None:
            ticks.append(mach.add("B"))  # will be canceled

    mach.bind_handlers(H())
    mach.add("A")
    with anyio.fail_after(TIMEOUT):
        assert await mach.when_queue(ticks[0]) is True
    assert mach.not_active("B")


async def test_ctx_expiry_releases_waiters() -> None:
    """Go TestWhenCtx + DEV-9: an expiring ctx resolves every kind of waiter False."""
    mach = norels()
    mach.add("B")
    ctx = mach.new_state_ctx("C")
    results: list[tuple[str, bool]] = []

    async def run(label: str, coro_fn: object) -> None:
        results.append((label, await coro_fn()))  # type: ignore[operator]

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "when", lambda: mach.when("A", ctx=ctx))
            tg.start_soon(run, "when_not", lambda: mach.when_not("B", ctx=ctx))
            tg.start_soon(run, "time", lambda: mach.when_time(["A"], [5], ctx=ctx))
            tg.start_soon(run, "ticks", lambda: mach.when_ticks("B", 3, ctx=ctx))
            tg.start_soon(run, "args", lambda: mach.when_args("D", {"x": 1}, ctx=ctx))
            tg.start_soon(run, "err", lambda: mach.when_err(ctx=ctx))
            tg.start_soon(
                run, "query", lambda: mach.when_query(lambda c: False, ctx=ctx)
            )
            await anyio.sleep(0.01)
            assert results == []
            mach.add("C")  # C's tick changes: the ctx expires
    assert ctx.expired
    assert sorted(results) == sorted(
        (label, False)
        for label in ("when", "when_not", "time", "ticks", "args", "err", "query")
    )
    assert mach._wby == {}
    assert mach._wargs == {}
    assert mach._wquery == []
    with anyio.fail_after(TIMEOUT):
        assert await mach.when("A", ctx=ctx) is False  # expired ctx: at once


async def test_cancelled_wait_unregisters() -> None:
    """Cancelling the awaiting task (fail_after) removes the waiter."""
    mach = norels()
    with anyio.move_on_after(0.02) as scope:
        await mach.when("A")
    assert scope.cancelled_caught
    assert mach._wby == {}
    with anyio.move_on_after(0.02):
        await mach.when_args("D", {"a": 1})
    assert mach._wargs == {}


async def test_unknown_state_raises_before_waiting() -> None:
    """Unknown names raise StateUnknownError from every wait."""
    mach = norels()
    with pytest.raises(am.StateUnknownError):
        await mach.when("Nope")
    with pytest.raises(am.StateUnknownError):
        await mach.when_not(["A", "Nope"])
    with pytest.raises(am.StateUnknownError):
        await mach.when_args("Nope", {})
    with pytest.raises(am.StateUnknownError):
        await mach.when_ticks("Nope", 1)


async def test_dispose_resolves_waiters_and_when_disposed() -> None:
    """W7: dispose resolves pending waiters False and when_disposed True."""
    mach = norels()
    results: dict[str, bool] = {}

    async def wait_a() -> None:
        results["when"] = await mach.when("A")

    async def wait_disposed() -> None:
        results["disposed"] = await mach.when_disposed()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_a)
            tg.start_soon(wait_disposed)
            await anyio.sleep(0.01)
            mach.dispose()
        assert results == {"when": False, "disposed": True}
        assert await mach.when("A") is False  # disposed: at once
        assert await mach.when_disposed() is True


async def test_reraised_handler_error_still_checks_waiters() -> None:
    """catch_exceptions=False: the failing transition is still a waiter check point."""

    class H:
        def B_state(self, e: am.Event) -> None:
            raise ValueError("boom")

    mach = am.Machine({"A": {}, "B": {}}, handlers=H(), catch_exceptions=False)
    mach.add("A")
    done: list[bool] = []
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                done.append(await mach.when_not("A"))

            tg.start_soon(wait)
            await anyio.sleep(0.01)
            with pytest.raises(ValueError, match="boom"):
                mach.set("B")
    assert done == [True]
    assert mach.active_states() == []


async def test_raising_ctx_callback_does_not_break_transition(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A done-callback that raises is logged; the transition completes normally."""
    ran: list[str] = []

    class H:
        def A_state(self, e: am.Event) -> None:
            ran.append("A_state")

    mach = am.Machine({"A": {}, "B": {}}, handlers=H())
    ctx_b = mach.new_state_ctx("B")
    mach.new_state_ctx("A").add_done_callback(lambda c: 1 / 0)
    with caplog.at_level("ERROR", logger="asyncmachine"):
        assert mach.add(["A", "B"]) == am.Result.EXECUTED
    assert ran == ["A_state"]
    assert ctx_b.expired
    assert "done-callback" in caplog.text
