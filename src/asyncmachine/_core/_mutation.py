"""Value types of the queue: :class:`Result`, :class:`MutationType`, :class:`Mutation`."""

from __future__ import annotations

import enum
from typing import ClassVar, Final, Self

__all__ = ("Mutation", "MutationType", "Result")


class Result(int):
    """
    The result of a mutation: an ``int`` that can carry a queue tick.

    ``Result.EXECUTED == 0`` and ``Result.CANCELED == 1``. Any value ``>= 2`` means the
    mutation was queued (it was made while the queue was being processed, e.g. from a
    handler) and equals the queue tick it will run at; ``Result.QUEUED == 2`` is the
    smallest such value, so test for queued results with :attr:`is_queued`, not with
    ``== Result.QUEUED``.
    """

    __slots__ = ()

    EXECUTED: ClassVar[Result]
    CANCELED: ClassVar[Result]
    QUEUED: ClassVar[Result]

    def __new__(cls, value: int = 0) -> Self:
        if value < 0:
            raise ValueError(f"a Result is >= 0, got {value}")
        return super().__new__(cls, value)

    @property
    def is_queued(self) -> bool:
        """True for a queued result (any value >= 2)."""
        return self >= 2

    @property
    def is_executed(self) -> bool:
        """True for :attr:`EXECUTED`."""
        return self == 0

    @property
    def is_canceled(self) -> bool:
        """True for :attr:`CANCELED`."""
        return self == 1

    def __str__(self) -> str:
        if self == 0:
            return "executed"
        if self == 1:
            return "canceled"
        return "queued"

    def __repr__(self) -> str:
        if self == 0:
            return "Result.EXECUTED"
        if self == 1:
            return "Result.CANCELED"
        return f"Result({int(self)})"


Result.EXECUTED = Result(0)
Result.CANCELED = Result(1)
Result.QUEUED = Result(2)

EXECUTED: Final = Result.EXECUTED
CANCELED: Final = Result.CANCELED


class MutationType(enum.Enum):
    """The kind of a mutation; ``str()`` gives ``add``, ``remove`` or ``set``."""

    ADD = "add"
    REMOVE = "remove"
    SET = "set"

    # Members are singletons: identity hashing is exact and, unlike Enum's
    # Python-level __hash__, free (mutation types key the plan caches).
    __hash__ = object.__hash__

    def __str__(self) -> str:
        return self.value


class Mutation:
    """
    One queued request to change the active states.

    Attributes:
        type: ``add``, ``remove`` or ``set``.
        called: the called states, de-duplicated, in call order.
        args: the mutation's arguments (never None; the same dict reaches every handler).
        is_auto: an auto mutation built by the machine (section 5 of the spec).
        is_check: a ``can_add``/``can_remove`` check; nothing is applied.
        queue_tick: the queue tick this mutation runs at; 0 for prepended items.
        source: ``(machine_id, transition_id, time_sum)`` of the event it came from.
    """

    __slots__ = (
        "args",
        "called",
        "is_auto",
        "is_check",
        "queue_tick",
        "source",
        "type",
    )

    def __init__(
        self,
        type: MutationType,
        called: tuple[str, ...],
        args: dict[str, object],
        *,
        is_auto: bool = False,
        is_check: bool = False,
        queue_tick: int = 0,
        source: tuple[str, str, int] | None = None,
    ) -> None:
        self.type = type
        self.called = called
        self.args = args
        self.is_auto = is_auto
        self.is_check = is_check
        self.queue_tick = queue_tick
        self.source = source

    def __repr__(self) -> str:
        flags = "".join(
            f" {f}"
            for f, on in (("auto", self.is_auto), ("check", self.is_check))
            if on
        )
        return (
            f"<Mutation [{self.type}] {' '.join(self.called)}{flags}"
            f" queue_tick={self.queue_tick}>"
        )
