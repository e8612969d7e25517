"""Transitions (the processing of one mutation) and handler events."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from ._core._mutation import Mutation, MutationType
from ._typed import args_as

M = TypeVar("M")

if TYPE_CHECKING:
    from ._machine import Machine

__all__ = ("Event", "Transition")


class Transition:
    """
    The processing of one mutation, as seen by handlers and tracers.

    Read-only for users. ``target`` is what the relations made of the called states;
    ``exits`` and ``enters`` are the states leaving and entering, in handler order.
    """

    __slots__ = (
        "_seq",
        "accepted",
        "clock_after",
        "clock_before",
        "enters",
        "exits",
        "is_completed",
        "machine",
        "mutation",
        "states_before",
        "target",
    )

    def __init__(
        self,
        machine: Machine,
        seq: int,
        mutation: Mutation,
        states_before: tuple[str, ...],
        clock_before: dict[str, int],
    ) -> None:
        self.machine = machine
        self._seq = seq
        self.mutation = mutation
        #: The active states when the transition started, in the machine's internal
        #: (handler) order.
        self.states_before = states_before
        self.clock_before = clock_before
        self.clock_after: dict[str, int] | None = None
        self.target: list[str] = []
        self.exits: list[str] = []
        self.enters: list[str] = []
        self.accepted = True
        self.is_completed = False

    @property
    def id(self) -> str:
        """Unique within the machine: ``"<machine id>:<sequence number>"``."""
        return f"{self.machine.id}:{self._seq}"

    @property
    def type(self) -> MutationType:
        """The mutation type."""
        return self.mutation.type

    @property
    def called(self) -> tuple[str, ...]:
        """The called states."""
        return self.mutation.called

    @property
    def args(self) -> dict[str, object]:
        """The mutation args (the same dict every handler sees)."""
        return self.mutation.args

    @property
    def is_auto(self) -> bool:
        """True for an auto transition."""
        return self.mutation.is_auto

    @property
    def is_check(self) -> bool:
        """True for a ``can_add``/``can_remove`` check."""
        return self.mutation.is_check

    @property
    def time_before(self) -> list[int]:
        """Ticks before the transition, in state-name order."""
        return [self.clock_before[n] for n in self.machine.state_names()]

    @property
    def time_after(self) -> list[int]:
        """Ticks after the transition (before it completes: the predicted ticks)."""
        clock = self.clock_after if self.clock_after is not None else self._predicted()
        return [clock[n] for n in self.machine.state_names()]

    def _predicted(self) -> dict[str, int]:
        clock = dict(self.clock_before)
        if self.accepted and not self.mutation.is_check:
            before = self.states_before
            for s in self.exits:
                clock[s] += 1
            for s in self.enters:
                clock[s] += 2 if s in before else 1
        return clock

    @property
    def has_changed(self) -> bool:
        """True once the transition completed and changed at least one tick."""
        return self.clock_after is not None and self.clock_after != self.clock_before

    def __repr__(self) -> str:
        state = "accepted" if self.accepted else "canceled"
        done = " completed" if self.is_completed else ""
        return (
            f"<Transition {self.id} [{self.type}] {' '.join(self.called)}"
            f" -> ({' '.join(self.target)}) {state}{done}>"
        )


class Event:
    """
    What every handler receives.

    Attributes:
        name: the handler's method name (``Foo_enter``, ``Foo_Bar``, ``any_state``).
        transition: the running :class:`Transition`.
    """

    __slots__ = ("name", "transition")

    def __init__(self, name: str, transition: Transition) -> None:
        self.name = name
        self.transition = transition

    @property
    def machine(self) -> Machine:
        """The machine running the transition."""
        return self.transition.machine

    @property
    def args(self) -> dict[str, object]:
        """The mutation's args: a dict, never None, shared by the whole transition."""
        return self.transition.mutation.args

    @property
    def mutation(self) -> Mutation:
        """The mutation being processed."""
        return self.transition.mutation

    @property
    def machine_id(self) -> str:
        """The machine's id."""
        return self.transition.machine.id

    @property
    def transition_id(self) -> str:
        """The transition's id."""
        return self.transition.id

    @property
    def is_check(self) -> bool:
        """True inside a ``can_add``/``can_remove`` check [DEV-13]."""
        return self.transition.mutation.is_check

    def args_as(self, model: type[M]) -> M:
        """The args as an instance of *model* (a pydantic model class)."""
        return args_as(model, self.transition.mutation.args)

    def is_valid(self) -> bool:
        """
        True while this event's transition is the machine's current one, not completed
        and still accepted; forked work uses it to notice it went stale.
        """
        tx = self.transition
        return tx.machine.transition is tx and not tx.is_completed and tx.accepted

    def __repr__(self) -> str:
        return f"<Event {self.name} tx={self.transition.id}>"
