"""State contexts and the machine's tasks (spec sections 8 and 10.9)."""

from __future__ import annotations

import anyio
import pytest

import asyncmachine as am

pytestmark = pytest.mark.anyio

TIMEOUT = 5


def machine(handlers: object = None) -> am.Machine:
    return am.Machine({"A": {}, "B": {}, "M": am.State(multi=True)}, handlers=handlers)


def test_state_ctx_expires_on_deactivation() -> None:
    """Go TestStateCtx: a ctx made while A is active expires after remove(A)."""
    mach = machine()
    mach.add("A")
    ctx = mach.new_state_ctx("A")
    assert not ctx.expired
    assert (ctx.state, ctx.tick, ctx.machine_id) == ("A", 1, mach.id)
    mach.add("B")  # unrelated
    assert not ctx.expired
    mach.remove("A")
    assert ctx.expired
    assert ctx.reason is not None
    assert "'A'" in ctx.reason


def test_state_ctx_of_inactive_state_lives_until_activation() -> None:
    """Go TestStateCtxBasic (X1): an inactive state's ctx stays live until it activates."""
    mach = machine()
    ctx = mach.new_state_ctx("B")
    assert not ctx.expired
    mach.add("A")
    assert not ctx.expired
    mach.add("B")
    assert ctx.expired


def test_one_live_ctx_per_state() -> None:
    """X2: the same live ctx is returned until it expires."""
    mach = machine()
    first = mach.new_state_ctx("A")
    assert mach.new_state_ctx("A") is first
    mach.add("A")
    second = mach.new_state_ctx("A")
    assert second is not first
    assert not second.expired


def test_ctx_expired_before_state_handler_runs() -> None:
    """X3: inside A_state an older ctx of A is expired, a new one is live."""
    seen: list[tuple[bool, bool]] = []
    old: list[am.StateContext] = []

    class H:
        def A_state(self, e: am.Event) -> None:
            fresh = e.machine.new_state_ctx("A")
            seen.append((old[0].expired, fresh.expired))

    mach = machine(H())
    old.append(mach.new_state_ctx("A"))
    mach.add("A")
    assert seen == [(True, False)]


def test_multi_and_non_multi_readd() -> None:
    """X4: re-adding active non-multi keeps its ctx; a called multi state expires it."""
    mach = machine()
    mach.add(["A", "M"])
    a = mach.new_state_ctx("A")
    m = mach.new_state_ctx("M")
    mach.add("A")
    assert not a.expired
    mach.add("M")
    assert m.expired


def test_canceled_transition_expires_nothing() -> None:
    """X3: a canceled transition leaves contexts alone."""

    class H:
        def A_exit(self, e: am.Event) -> bool:
            return False

    mach = machine(H())
    mach.add("A")
    ctx = mach.new_state_ctx("A")
    assert mach.remove("A") == am.Result.CANCELED
    assert not ctx.expired


def test_rollback_expires_contexts() -> None:
    """DEV-10: states rolled back after a final-handler exception expire their ctx."""
    ctxs: list[am.StateContext] = []

    class H:
        def A_state(self, e: am.Event) -> None:
            ctxs.append(e.machine.new_state_ctx("A"))
            raise RuntimeError("boom")

    mach = machine(H())
    mach.add("A")
    assert mach.not_active("A")
    assert ctxs[0].expired


def test_dispose_expires_everything() -> None:
    """Dispose expires all contexts; new ones are born expired (DEV-11)."""
    mach = machine()
    ctx = mach.new_state_ctx("A")
    mach.dispose()
    assert ctx.expired
    assert mach.new_state_ctx("B").expired


def test_context_callbacks_and_children() -> None:
    """Done-callbacks run once, in order; a child expires with its parent."""
    root = am.Context.background()
    child = am.Context(root)
    calls: list[str] = []
    root.add_done_callback(lambda c: calls.append("root1"))
    handle = root.add_done_callback(lambda c: calls.append("removed"))
    child.add_done_callback(lambda c: calls.append(f"child:{c.reason}"))
    root.remove_done_callback(handle)
    root.expire("stop")
    root.expire("again")
    # the child hooked itself on the root when it was made, before "root1"
    assert calls == ["child:stop", "root1"]
    assert child.expired
    late: list[str] = []
    root.add_done_callback(lambda c: late.append("late"))
    assert late == ["late"]
    assert am.Context(root).expired


async def test_scope_cancels_body_on_expiry() -> None:
    """``async with ctx.scope()`` ends its body without an exception."""
    mach = machine()
    mach.add("A")
    ctx = mach.new_state_ctx("A")
    reached: list[str] = []
    async with mach:

        async def work() -> None:
            async with ctx.scope() as scope:
                reached.append("start")
                await anyio.sleep(TIMEOUT * 2)
                reached.append("never")
            reached.append(f"after:{scope.cancelled_caught}")

        mach.go(work)
        with anyio.fail_after(TIMEOUT):
            await anyio.sleep(0.01)
            mach.remove("A")
            await ctx.wait()
            await anyio.sleep(0.01)
    assert reached == ["start", "after:True"]


async def test_scope_of_expired_ctx_skips_body_awaits() -> None:
    """A scope over an already expired ctx is cancelled at its first await."""
    ctx = am.Context()
    ctx.expire()
    reached: list[str] = []
    async with ctx.scope():
        reached.append("in")
        await anyio.sleep(TIMEOUT)
        reached.append("never")
    assert reached == ["in"]


async def test_go_and_fork_need_runtime() -> None:
    """go/fork outside ``async with mach:`` raise RuntimeError."""
    mach = machine()

    async def noop() -> None:
        pass

    with pytest.raises(RuntimeError, match="async with mach"):
        mach.go(noop)


async def test_task_cancelled_with_its_ctx() -> None:
    """A task started with ctx= is cancelled when the ctx expires."""
    mach = machine()
    mach.add("A")
    ctx = mach.new_state_ctx("A")
    state: list[str] = []
    async with mach:

        async def work() -> None:
            state.append("started")
            try:
                await anyio.sleep(TIMEOUT * 2)
            finally:
                state.append("cancelled")

        assert mach.go(work, ctx=ctx) is True
        with anyio.fail_after(TIMEOUT):
            await anyio.sleep(0.01)
            mach.remove("A")
            await anyio.sleep(0.01)
        assert mach.go(work, ctx=ctx) is False  # expired: skipped
    assert state == ["started", "cancelled"]


async def test_task_exception_becomes_exception_state() -> None:
    """E7: an exception in a task becomes add_err, the runtime keeps running."""
    mach = machine()
    async with mach:

        async def fail() -> None:
            raise ValueError("task failed")

        mach.go(fail)
        with anyio.fail_after(TIMEOUT):
            assert await mach.when_err()
    assert isinstance(mach.err(), ValueError)


async def test_fork_skips_stale_events_and_passes_args() -> None:
    """fork runs only for a valid event; extra args reach the task."""
    got: list[object] = []
    events: list[am.Event] = []

    class H:
        def A_state(self, e: am.Event) -> None:
            events.append(e)
            e.machine.fork(e, record, "x", 2)

    async def record(a: str, b: int) -> None:
        got.append((a, b))

    mach = machine(H())
    async with mach:
        mach.add("A")
        with anyio.fail_after(TIMEOUT):
            await anyio.sleep(0.01)
        assert got == [("x", 2)]
        assert not events[0].is_valid()
        assert mach.fork(events[0], record, "y", 3) is False


async def test_leaving_runtime_cancels_tasks() -> None:
    """Leaving ``async with mach:`` cancels and awaits every task."""
    mach = machine()
    state: list[str] = []

    async def forever() -> None:
        try:
            await anyio.sleep(TIMEOUT * 10)
        finally:
            state.append("cancelled")

    with anyio.fail_after(TIMEOUT):
        async with mach:
            mach.go(forever)
            await anyio.sleep(0.01)
    assert state == ["cancelled"]


async def test_dispose_cancels_tasks() -> None:
    """dispose() cancels the machine's tasks (their root ctx expires)."""
    mach = machine()
    state: list[str] = []

    async def forever() -> None:
        try:
            await anyio.sleep(TIMEOUT * 10)
        finally:
            state.append("cancelled")

    async with mach:
        mach.go(forever)
        with anyio.fail_after(TIMEOUT):
            await anyio.sleep(0.01)
            mach.dispose()
            await anyio.sleep(0.01)
        assert state == ["cancelled"]


async def test_catch_err() -> None:
    """``with mach.catch_err(state)`` turns an exception into add_err_state."""
    mach = am.Machine({"ErrIO": am.State(require=["Exception"])})
    with mach.catch_err("ErrIO"):
        raise OSError("disk")
    assert mach.is_active(["ErrIO", "Exception"])
    assert isinstance(mach.err(), OSError)


async def test_eval_runs_when_idle_and_refuses_nesting() -> None:
    """10.1: eval runs at once when idle; nested in a handler it returns False."""
    nested: list[bool] = []

    class H:
        def A_state(self, e: am.Event) -> None:
            nested.append(e.machine.eval(lambda: None))

    mach = machine(H())
    ran: list[int] = []
    assert mach.eval(lambda: ran.append(1)) is True
    assert ran == [1]
    mach.add("A")
    assert nested == [False]
    assert not mach.is_err()
    mach.detect_eval = True
    mach.remove("A")
    mach.add("A")
    assert nested == [False, False]
    assert mach.is_err()
