"""
Generated handler behaviour for stress tests: handlers that reject, raise or mutate.

Termination: the core has no loop guard. Two handlers that keep queueing mutations for
each other, or an auto state whose ``X_enter`` always raises (each ``Exception`` add
ticks, which retries the auto state), would never let a mutation call return. So a
:class:`HandlerBehaviour` has budgets: all its handlers together raise at most
``max_raises`` times and queue at most ``max_mutations`` mutations per handler object.
Rejecting needs no budget: a rejection ends a transition and an auto transition never
triggers another one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from hypothesis import strategies as st

import asyncmachine as am

from ._strategies import schema_state_names

__all__ = (
    "BehaviourHandlers",
    "HandlerBehaviour",
    "HandlerRaised",
    "all_handler_names",
    "handler_behaviours",
)

_NEGOTIATION_SUFFIXES: Final = ("enter", "exit")
_FINAL_SUFFIXES: Final = ("state", "end")
MUTATION_KINDS: Final = ("add", "remove", "set")


class HandlerRaised(RuntimeError):
    """The exception a raising handler of :class:`BehaviourHandlers` raises."""


def all_handler_names(
    states: Iterable[str], *, negotiation_only: bool = False
) -> list[str]:
    """
    Every handler name for *states*: ``X_enter``, ``X_exit``, ``X_X`` and the pairs
    ``X_Y``, ``any_enter``; unless *negotiation_only*, also ``X_state``, ``X_end``
    and ``any_state``.
    """
    names = list(states)
    out = ["any_enter"] if negotiation_only else ["any_enter", "any_state"]
    suffixes = (
        _NEGOTIATION_SUFFIXES
        if negotiation_only
        else (
            *_NEGOTIATION_SUFFIXES,
            *_FINAL_SUFFIXES,
        )
    )
    for x in names:
        out += [f"{x}_{s}" for s in suffixes]
        out += [f"{x}_{y}" for y in names]
    return out


@dataclass(frozen=True)
class HandlerBehaviour:
    """
    What the handlers of a machine do; :meth:`build` makes a fresh handler object.

    The ``repr`` is valid Python (import the class from ``asyncmachine.testing``), so
    a failing example prints as code.

    Attributes:
        states: the states to define handlers for (``Exception`` included).
        reject: negotiation handlers that return ``False``.
        raises: handlers that raise :class:`HandlerRaised` while the raise budget
            lasts.
        mutate: ``(handler, kind, states)``: the handler queues ``kind(states)``
            (``add``/``remove``/``set``) while the mutation budget lasts.
        max_raises: raises allowed per handler object, all handlers together.
        max_mutations: mutations allowed per handler object, all handlers together.
        record: define every handler of *states* (and record each call in
            ``calls``), not only those with a behaviour.
    """

    states: tuple[str, ...]
    reject: tuple[str, ...] = ()
    raises: tuple[str, ...] = ()
    mutate: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    max_raises: int = 2
    max_mutations: int = 4
    record: bool = True

    def build(self) -> BehaviourHandlers:
        """A fresh handler object with this behaviour (budgets full)."""
        return BehaviourHandlers(self)


class BehaviourHandlers:
    """
    A handler object made by :meth:`HandlerBehaviour.build`.

    Attributes:
        calls: the handler names called, in order.
        raised: raises so far.
        mutated: mutations queued so far.
    """

    def __init__(self, behaviour: HandlerBehaviour) -> None:
        self.behaviour = behaviour
        self.calls: list[str] = []
        self.raised = 0
        self.mutated = 0
        reject = set(behaviour.reject)
        raises = set(behaviour.raises)
        mutate: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        for name, kind, states in behaviour.mutate:
            if kind not in MUTATION_KINDS:
                raise ValueError(f"unknown mutation kind {kind!r} for {name}")
            mutate.setdefault(name, []).append((kind, states))
        names: list[str] = (
            all_handler_names(behaviour.states) if behaviour.record else []
        )
        for name in dict.fromkeys([*names, *reject, *raises, *mutate]):
            setattr(
                self,
                name,
                self._make(name, name in reject, name in raises, mutate.get(name, [])),
            )

    def _make(
        self,
        name: str,
        reject: bool,
        raises: bool,
        mutations: Sequence[tuple[str, tuple[str, ...]]],
    ) -> Callable[[am.Event], object]:
        budget = self.behaviour

        def handler(e: am.Event) -> object:
            self.calls.append(name)
            for kind, states in mutations:
                if self.mutated < budget.max_mutations:
                    self.mutated += 1
                    getattr(e.machine, kind)(list(states))
            if raises and self.raised < budget.max_raises:
                self.raised += 1
                raise HandlerRaised(f"{name} raised (planned)")
            return False if reject else None

        handler.__name__ = name
        return handler

    def __repr__(self) -> str:
        return f"<BehaviourHandlers {self.behaviour!r}>"


def handler_behaviours(
    schema: am.SchemaLike | type[am.Schema],
    *,
    reject: bool = True,
    raises: bool = True,
    mutate: bool = True,
    max_handlers: int = 3,
    max_raises: int = 2,
    max_mutations: int = 4,
    record: bool = True,
) -> st.SearchStrategy[HandlerBehaviour]:
    """
    Handler behaviours for machines of *schema*: some handlers reject, some raise,
    some queue mutations, all within budgets (see :class:`HandlerBehaviour`).

    Args:
        schema: a schema in dict form (or a typed :class:`am.Schema` class).
        reject: draw rejecting negotiation handlers.
        raises: draw raising handlers (any phase).
        mutate: draw mutating handlers (any phase).
        max_handlers: the most handlers of each kind.
        max_raises: the raise budget of each built handler object.
        max_mutations: the mutation budget of each built handler object.
        record: define (and record) every handler, not only those with a behaviour.
    """
    states = tuple(schema_state_names(schema))
    negotiation = st.sampled_from(all_handler_names(states, negotiation_only=True))
    every = st.sampled_from(all_handler_names(states))

    def names(on: bool, pool: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
        if not on:
            return st.just([])
        return st.lists(pool, max_size=max_handlers, unique=True)

    mutation = st.tuples(
        every,
        st.sampled_from(MUTATION_KINDS),
        st.lists(st.sampled_from(states), max_size=2).map(tuple),
    )
    return st.builds(
        HandlerBehaviour,
        states=st.just(states),
        reject=names(reject, negotiation).map(tuple),
        raises=names(raises, every).map(tuple),
        mutate=(
            st.lists(mutation, max_size=max_handlers).map(tuple)
            if mutate
            else st.just(())
        ),
        max_raises=st.just(max_raises),
        max_mutations=st.just(max_mutations),
        record=st.just(record),
    )
