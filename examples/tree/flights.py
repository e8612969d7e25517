"""
The flight-status schema of the tree demo, and its scripted source of changes.

A Python counterpart of asyncmachine-go's ``examples/tree_state_source`` schema: per
flight 14 states, in three mutually exclusive groups kept exclusive by ``remove``:

- status: ``Scheduled`` (auto), ``OnTime``, ``Delayed``, ``Departed``, ``Arrived``;
  ``Departed`` also removes ``GoToGate``;
- direction: ``Inbound``, ``Outbound``; ``GoToGate`` requires ``Outbound``;
- gate: ``GateUnknown`` (auto), ``Gate1`` ... ``Gate5``.

So at any moment every flight shows exactly one status and exactly one gate state
(after the first mutation; auto states need one), at most one direction, and
``GoToGate`` only with ``Outbound``. :func:`check_board` checks exactly that: the demo
runs it on every snapshot read over HTTP from a replicant, which shows that a mirror
never exposes a half-applied mutation.

:class:`Script` picks the changes: a seeded, reproducible sequence of ``add``
mutations of up to three states, for three different flights, each a plausible next
step of that flight's life (OnTime/Delayed -> Departed -> Arrived -> Scheduled again).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence

import asyncmachine as am

__all__ = (
    "DIRECTIONS",
    "GATES",
    "STATUSES",
    "Script",
    "check_board",
    "flight_states",
    "schema",
)

STATUSES = ("Scheduled", "OnTime", "Delayed", "Departed", "Arrived")
DIRECTIONS = ("Inbound", "Outbound")
GATES = ("GateUnknown", "Gate1", "Gate2", "Gate3", "Gate4", "Gate5")
#: Per-flight suffixes, in schema order.
SUFFIXES = (*STATUSES, *DIRECTIONS, "GoToGate", *GATES)
#: States outside the flights, on every node.
BASE_STATES = ("Ready",)

_NAME = re.compile(r"^Flight(\d+)([A-Za-z0-9]+)$")


def flight_states(n: int) -> list[str]:
    """The 14 state names of flight *n* (``Flight3Delayed``, ...)."""
    return [f"Flight{n}{s}" for s in SUFFIXES]


def schema(flights: int) -> dict[str, am.State]:
    """The root machine's schema: ``Ready`` plus 14 states for each of *flights*."""
    if flights < 1:
        raise ValueError(f"at least one flight is needed, got {flights}")
    out: dict[str, am.State] = {"Ready": am.State()}
    for n in range(1, flights + 1):
        f = f"Flight{n}"

        def others(group: Sequence[str], me: str, f: str = f) -> list[str]:
            return [f"{f}{s}" for s in group if s != me]

        for s in STATUSES:
            remove = others(STATUSES, s)
            if s == "Departed":
                remove.append(f"{f}GoToGate")
            out[f"{f}{s}"] = am.State(auto=s == "Scheduled", remove=remove)
        for s in DIRECTIONS:
            out[f"{f}{s}"] = am.State(remove=others(DIRECTIONS, s))
        out[f"{f}GoToGate"] = am.State(require=[f"{f}Outbound"])
        for s in GATES:
            out[f"{f}{s}"] = am.State(auto=s == "GateUnknown", remove=others(GATES, s))
    return out


def check_board(active: Iterable[str], flights: int) -> list[str]:
    """
    Problems with a snapshot of active states (empty when it is consistent).

    Every flight shows exactly one status and one gate state, at most one direction,
    and ``GoToGate`` only together with ``Outbound``.
    """
    per: dict[int, set[str]] = {n: set() for n in range(1, flights + 1)}
    problems: list[str] = []
    for name in active:
        m = _NAME.match(name)
        if m is None:
            if name not in BASE_STATES:
                problems.append(f"unexpected state {name}")
            continue
        n, suffix = int(m.group(1)), m.group(2)
        if n not in per or suffix not in SUFFIXES:
            problems.append(f"unknown state {name}")
            continue
        per[n].add(suffix)
    for n, got in per.items():
        statuses = got.intersection(STATUSES)
        gates = got.intersection(GATES)
        if len(statuses) != 1:
            problems.append(f"Flight{n}: {len(statuses)} statuses {sorted(statuses)}")
        if len(gates) != 1:
            problems.append(f"Flight{n}: {len(gates)} gate states {sorted(gates)}")
        if len(got.intersection(DIRECTIONS)) > 1:
            problems.append(f"Flight{n}: both directions")
        if "GoToGate" in got and "Outbound" not in got:
            problems.append(f"Flight{n}: GoToGate without Outbound")
    return problems


# What a status may change to; each pick is accepted by the schema's relations.
_NEXT_STATUS = {
    "Scheduled": ("OnTime", "Delayed"),
    "OnTime": ("Delayed", "Departed"),
    "Delayed": ("OnTime", "Departed"),
    "Departed": ("Arrived",),
    "Arrived": ("Scheduled",),
}


class Script:
    """
    A reproducible source of flight-board changes.

    Each :meth:`next` call reads the current board and returns the states of one
    ``add`` mutation: a next step for each of up to three different flights.
    """

    def __init__(self, flights: int, *, seed: int = 1, per_mutation: int = 3) -> None:
        self.flights = flights
        self.per_mutation = max(1, min(per_mutation, flights))
        self._rnd = random.Random(seed)

    def next(self, mach: am.Machine) -> list[str]:
        """The states to add next, given the board in *mach*."""
        rnd = self._rnd
        picked = rnd.sample(range(1, self.flights + 1), self.per_mutation)
        return [self._step(mach, n) for n in sorted(picked)]

    def _step(self, mach: am.Machine, n: int) -> str:
        f = f"Flight{n}"
        rnd = self._rnd
        kind = rnd.choices(("status", "direction", "gate"), weights=(5, 2, 3))[0]
        if kind == "direction":
            if mach.is_active(f"{f}Outbound") and mach.not_active(
                [f"{f}GoToGate", f"{f}Departed"]
            ):
                return f"{f}GoToGate"
            return f"{f}{rnd.choice(DIRECTIONS)}"
        if kind == "gate":
            current = [g for g in GATES if mach.is_active(f"{f}{g}")]
            return f"{f}{rnd.choice([g for g in GATES[1:] if g not in current])}"
        status = next((s for s in STATUSES if mach.is_active(f"{f}{s}")), "Scheduled")
        return f"{f}{rnd.choice(_NEXT_STATUS[status])}"
