"""Shared strategies and runners of the property tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

import asyncmachine as am
from asyncmachine.testing import (
    HandlerBehaviour,
    InvariantMonitor,
    MutationTuple,
    SchemaDict,
    apply_mutation,
    check_invariants,
    handler_behaviours,
    mutations,
    schemas,
    watch,
)


@dataclass(frozen=True)
class Case:
    """A random schema, handler behaviour and outside mutations."""

    schema: SchemaDict
    behaviour: HandlerBehaviour
    steps: tuple[MutationTuple, ...]


@st.composite
def cases(
    draw: st.DrawFn, /, *, max_states: int = 6, max_steps: int = 25, **schema_kw: Any
) -> Case:
    """A :class:`Case`; ``schema_kw`` goes to :func:`schemas`."""
    schema = draw(schemas(max_states=max_states, **schema_kw))
    behaviour = draw(handler_behaviours(schema))
    steps = draw(st.lists(mutations(schema), max_size=max_steps))
    return Case(schema, behaviour, tuple(steps))


@dataclass
class Run:
    """Everything observable about one run of a :class:`Case`."""

    results: list[am.Result] = field(default_factory=list)
    clocks: list[dict[str, int]] = field(default_factory=list)
    active: list[list[str]] = field(default_factory=list)
    orders: list[list[str]] = field(default_factory=list)
    calls: list[list[str]] = field(default_factory=list)


def run_case(case: Case, *, names: list[str] | None = None, check: bool = True) -> Run:
    """Run *case* on a fresh machine; check the invariants after every step."""
    handlers = case.behaviour.build()
    monitor = InvariantMonitor()  # watches from the constructor on
    mach = am.Machine(case.schema, handlers=handlers, names=names, tracers=[monitor])
    assert watch(mach) is monitor
    run = Run()
    if check:
        check_invariants(mach)
    for step in case.steps:
        handlers.calls.clear()
        run.results.append(apply_mutation(mach, step))
        if check:
            check_invariants(mach)
        run.clocks.append(mach.clock())
        run.active.append(mach.active_states())
        assert monitor.active_order is not None
        run.orders.append(list(monitor.active_order))
        run.calls.append(list(handlers.calls))
    return run
