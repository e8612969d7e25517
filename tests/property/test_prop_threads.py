"""
Mutations from other threads (``*_threadsafe``) into a machine bound to a loop.

Worker threads submit random mutations at once; the loop thread runs them in some
order. The invariants hold on the loop thread, every future gets the result the
mutation had, and replaying the order the loop ran them (as recorded by a
:class:`CallLog`) on a fresh machine gives the same clock.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import anyio
from hypothesis import given, strategies as st
from prop_helpers import Case, cases

import asyncmachine as am
from asyncmachine.testing import (
    ADD_ERR_MESSAGE,
    CallLog,
    MutationTuple,
    apply_mutation,
    check_invariants,
    mutations,
    watch,
)

TIMEOUT = 10
KINDS = ("add", "remove", "set", "add_err")


class Order(am.TracerNoOp):
    """The tags ``(thread, index)`` of the outside calls, in the order they ran."""

    def __init__(self) -> None:
        self.tags: list[tuple[int, int]] = []

    def mutation_queued(self, mach: am.Machine, mutation: am.Mutation) -> None:
        if mach.transition is None and not mutation.is_auto:
            t, i = mutation.args["t"], mutation.args["i"]
            assert isinstance(t, int)
            assert isinstance(i, int)
            self.tags.append((t, i))


def submit(
    mach: am.Machine, mutation: MutationTuple
) -> concurrent.futures.Future[am.Result]:
    """The threadsafe variant of a mutation drawn by mutations()."""
    kind, states, args = mutation
    if kind == "add_err":
        return mach.add_err_threadsafe(RuntimeError(ADD_ERR_MESSAGE), args)
    fn = {
        "add": mach.add_threadsafe,
        "remove": mach.remove_threadsafe,
        "set": mach.set_threadsafe,
    }[kind]
    return fn(list(states), args)


@st.composite
def plans(draw: st.DrawFn) -> tuple[Case, list[list[MutationTuple]]]:
    """A case (for its schema and handlers) and 1-4 threads' mutations, tagged."""
    case = draw(cases(max_steps=0))
    muts = mutations(case.schema, kinds=KINDS, args=st.just({}))
    threads = draw(st.lists(st.lists(muts, max_size=8), min_size=1, max_size=4))
    # add_err_threadsafe has no state argument: add_err mutations call none
    tagged: list[list[MutationTuple]] = [
        [
            (k, () if k == "add_err" else s, {"t": t, "i": i})
            for i, (k, s, _) in enumerate(plan)
        ]
        for t, plan in enumerate(threads)
    ]
    return case, tagged


@given(plans())
def test_threads_replay_in_loop_order(
    drawn: tuple[Case, list[list[MutationTuple]]],
) -> None:
    """Concurrent threadsafe mutations equal their loop-order replay."""
    case, threads = drawn
    mach = am.Machine(case.schema, handlers=case.behaviour.build())
    watch(mach)
    log = CallLog()
    order = Order()
    mach.add_tracer(log)
    mach.add_tracer(order)
    results: dict[tuple[int, int], am.Result] = {}
    loop_thread: list[int] = []
    barrier = threading.Barrier(len(threads))

    def worker(t: int) -> None:
        barrier.wait(TIMEOUT)  # start together
        for i, m in enumerate(threads[t]):
            results[t, i] = submit(mach, m).result(TIMEOUT)

    async def main() -> None:
        async with mach:  # binds the machine to this loop
            loop_thread.append(threading.get_ident())
            with anyio.fail_after(TIMEOUT * 2):
                async with anyio.create_task_group() as tg:
                    for t in range(len(threads)):
                        tg.start_soon(anyio.to_thread.run_sync, worker, t)
            check_invariants(mach)

    anyio.run(main)
    assert len(results) == sum(len(p) for p in threads)
    assert sorted(order.tags) == sorted(results)
    for t, plan in enumerate(threads):  # each thread's calls ran in its order
        mine = [tag for tag in order.tags if tag[0] == t]
        assert mine == [(t, i) for i in range(len(plan))]

    replay = am.Machine(case.schema, handlers=case.behaviour.build())
    for t, i in order.tags:
        assert apply_mutation(replay, threads[t][i]) == results[t, i]
    assert replay.clock() == mach.clock()

    again = am.Machine(case.schema, handlers=case.behaviour.build())
    namespace: dict[str, Any] = {"mach": again}
    for line in log.lines:
        exec(line, namespace)  # noqa: S102 - replaying the log is the test
    assert again.clock() == mach.clock()


@given(plans())
def test_plain_mutations_from_threads_are_refused(
    drawn: tuple[Case, list[list[MutationTuple]]],
) -> None:
    """Once bound, the plain methods raise in other threads and change nothing."""
    case, threads = drawn
    mach = am.Machine(case.schema)
    errors: list[BaseException] = []

    def worker() -> None:
        for m in threads[0]:
            try:
                apply_mutation(mach, m)
            except RuntimeError as err:
                errors.append(err)

    async def main() -> None:
        await mach.when_not([])  # the first async use binds the loop
        before = mach.clock()
        await anyio.to_thread.run_sync(worker)
        assert mach.clock() == before

    anyio.run(main)
    assert len(errors) == len(threads[0])
    assert all("add_threadsafe" in str(e) for e in errors)
