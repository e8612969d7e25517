"""
Helpers for async machines: virtual time and rules that await.

Theory of operation: :class:`FakeClock` makes an asyncio event loop whose ``time()`` is
virtual. Its selector never sleeps while a timer is pending: when nothing is ready it
moves the virtual time to the next timer instead (trio's ``MockClock`` with
``autojump_threshold=0`` does the same). So ``asyncio.sleep(3600)``, ``call_later``,
``anyio.sleep``/``fail_after`` and timeouts of waits finish at once, in a
deterministic order. Real I/O and wake-ups from other threads still work, but only
while no timer is pending: otherwise the loop jumps to the timer instead of waiting for
them. ``time.monotonic()`` (used by ``handler_timeout``) is not affected.

:class:`AsyncMachineRules` keeps one such loop per run (an :class:`asyncio.Runner`), so
the machine binds to it once and plain mutations keep working from the rules' thread.
"""

from __future__ import annotations

import asyncio
import functools
import selectors
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, ClassVar, TypeAlias, TypeVar, cast

import anyio
from hypothesis import strategies as st
from hypothesis.stateful import rule

import asyncmachine as am

from ._rules import MachineRules
from ._strategies import MutationTuple

__all__ = ("AsyncMachineRules", "FakeClock", "async_rule", "run_async")

T = TypeVar("T")
_RuleFactory: TypeAlias = Callable[
    ..., Callable[[Callable[..., None]], Callable[..., None]]
]


class _AutojumpSelector(selectors.BaseSelector):
    """A selector that turns "sleep until the next timer" into a time jump."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._sel = selectors.DefaultSelector()

    def register(
        self, fileobj: Any, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._sel.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._sel.unregister(fileobj)

    def modify(
        self, fileobj: Any, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._sel.modify(fileobj, events, data)

    def select(
        self, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._sel.select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:  # no timer pending: wait for I/O or another thread
            return self._sel.select(None)
        self._clock.advance(timeout)
        return []

    def close(self) -> None:
        self._sel.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._sel.get_map()


class _FakeClockLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__(_AutojumpSelector(clock))
        self._fake_clock = clock

    def time(self) -> float:
        return self._fake_clock.now


class FakeClock:
    """
    Virtual time for asyncio: loops made by :meth:`new_event_loop` read it, and jump
    it forward to the next timer whenever they would otherwise sleep.

    Args:
        start: the initial virtual time, in seconds.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def time(self) -> float:
        """The virtual time, in seconds."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the virtual time forward (timers that become due run next)."""
        if seconds < 0:
            raise ValueError(f"time does not go back: {seconds}")
        self.now += seconds

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """A new asyncio event loop that runs on this clock."""
        return _FakeClockLoop(self)


def run_async(
    fn: Callable[..., Awaitable[T]],
    *args: object,
    backend: str = "asyncio",
    fake_time: bool = True,
) -> T:
    """
    Run ``await fn(*args)`` in a new event loop and return its result.

    With *fake_time* the loop runs on virtual time (asyncio: a :class:`FakeClock`;
    trio: ``trio.testing.MockClock(autojump_threshold=0)``), so sleeps and timeouts
    take no real time.
    """
    options: dict[str, object] = {}
    if fake_time and backend == "asyncio":
        options["loop_factory"] = FakeClock().new_event_loop
    elif fake_time and backend == "trio":
        import trio.testing

        options["clock"] = trio.testing.MockClock(autojump_threshold=0)
    return anyio.run(fn, *args, backend=backend, backend_options=options)


class AsyncMachineRules(MachineRules):
    """
    :class:`MachineRules` with an event loop: rules can await the machine.

    Each run owns an asyncio loop (on a :class:`FakeClock` unless ``fake_clock`` is
    False) that lives until ``teardown``; the machine is bound to it when the run
    starts. The ``mutate`` rule mutates inside the loop; do the same in your own rules
    when handlers start tasks (``mach.fork()`` needs a running loop): write the rule
    as a coroutine with :func:`async_rule`, or use :meth:`run` (await something) and
    :meth:`call` (call a plain function)::

        class TestKettle(AsyncMachineRules):
            schema = {"Water": {}, "Boiling": {"require": ["Water"]}}

            @async_rule()
            async def boil(self) -> None:
                self.mach.add(["Water", "Boiling"])
                assert await self.mach.when("Boiling")

    Class attributes:
        fake_clock: run the loop on virtual time (default True).
        runtime: keep ``async with self.mach:`` open for the whole run, so handlers
            can use ``mach.fork()``/``mach.go()`` (default False).

    Instance attributes:
        clock: the run's :class:`FakeClock` (``None`` without ``fake_clock``).
    """

    fake_clock: ClassVar[bool] = True
    runtime: ClassVar[bool] = False

    def __init__(self) -> None:
        self.clock: FakeClock | None = FakeClock() if self.fake_clock else None
        factory = self.clock.new_event_loop if self.clock is not None else None
        self._runner = asyncio.Runner(loop_factory=factory)
        self._stop: asyncio.Event | None = None
        self._runtime_task: asyncio.Task[None] | None = None
        super().__init__()
        self.run(self.mach.when_not([]))  # the first async use binds the loop
        if self.runtime:
            started = asyncio.Event()
            self._stop = asyncio.Event()
            loop = self._runner.get_loop()
            self._runtime_task = loop.create_task(self._hold_runtime(started))
            self.run(started.wait())

    async def _hold_runtime(self, started: asyncio.Event) -> None:
        assert self._stop is not None
        async with self.mach:
            started.set()
            await self._stop.wait()

    def run(
        self,
        aw: Awaitable[T] | Callable[[], Awaitable[T]],
        *,
        timeout: float | None = None,
    ) -> T:
        """
        Run an awaitable (or a zero-argument async function) on the run's loop and
        return its result; *timeout* is in (virtual) seconds and raises
        ``TimeoutError``.
        """
        target = aw() if callable(aw) else aw

        async def main() -> T:
            if timeout is None:
                return await target
            with anyio.fail_after(timeout):
                return await target

        return self._runner.run(main())

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """
        Call a plain function inside the run's loop (e.g. a mutation whose handlers
        use ``mach.fork()``, which needs a running loop) and return its result.
        """

        async def main() -> T:
            return fn(*args)

        return self._runner.run(main())

    def apply(self, mutation: MutationTuple) -> am.Result:
        """:meth:`MachineRules.apply`, inside the run's loop."""
        return self.call(super().apply, mutation)

    def teardown(self) -> None:
        """Print the reproduction, stop the runtime, dispose, close the loop."""
        try:
            super().teardown()
        finally:
            try:
                if self._stop is not None and self._runtime_task is not None:
                    self._stop.set()
                    task = self._runtime_task
                    self._runner.run(_await_task(task))
                self.call(self.mach.dispose)
            finally:
                self._runner.close()


async def _await_task(task: asyncio.Task[None]) -> None:
    await task


def async_rule(
    **strategies: st.SearchStrategy[Any],
) -> Callable[[Callable[..., Coroutine[Any, Any, None]]], Callable[..., None]]:
    """
    Like Hypothesis' ``@rule(**strategies)``, for an ``async def`` rule of an
    :class:`AsyncMachineRules` subclass: the coroutine runs on the run's loop.
    """

    def decorate(
        fn: Callable[..., Coroutine[Any, Any, None]],
    ) -> Callable[..., None]:
        @functools.wraps(fn)
        def wrapper(self: AsyncMachineRules, **kwargs: Any) -> None:
            self.run(fn(self, **kwargs))

        make_rule = cast(_RuleFactory, rule)
        return make_rule(**strategies)(wrapper)

    return decorate
