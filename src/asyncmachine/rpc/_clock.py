"""
Clock synchronisation without I/O: the exporter (server side) and the mirror (client).

Theory of operation (``docs/protocol.md``, "Clocks"):

- The exporter remembers what its peer was last sent: version ``n``, epoch, time vector,
  queue tick and machine tick. Every clock-bearing frame is computed from that record
  and the source's *current* clock at the moment it is written, so a frame can never be
  based on an older state than one written before it, and a slow peer simply gets
  fewer, larger deltas (coalescing for free).
- A delta carries the changed indexes and their non-negative increments, plus queue and
  machine tick increments. A *full* clock is sent instead whenever a delta cannot
  express the change: first contact, a new epoch, a tick or counter that went down, a
  different number of states, or an explicit request (SYNC).
- Every clock carries a version ``n`` (a delta applies only on top of ``n - 1``) and a
  checksum ``k = (sum(time) + q + m) mod 65536`` of the state after applying it.
- The mirror applies a full clock unconditionally (a new epoch or a tick that went down
  is a *reset*), ignores duplicates, and refuses deltas with a gap, bad indexes or a
  checksum mismatch: the caller then asks for a full clock (SYNC).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from ._events import ClockBody

__all__ = ("ApplyOutcome", "ClockExporter", "ClockMirror", "checksum")

_K_MOD = 65536


def checksum(time: Sequence[int], queue_tick: int, machine_tick: int) -> int:
    """The clock checksum: ``(sum(time) + queue_tick + machine_tick) mod 65536``."""
    return (sum(time) + queue_tick + machine_tick) % _K_MOD


class ClockExporter:
    """What one peer was last sent, and how to bring it up to date."""

    __slots__ = ("epoch", "m", "n", "q", "time")

    def __init__(self) -> None:
        self.n = 0
        self.epoch: str | None = None
        self.time: list[int] | None = None
        self.q = 0
        self.m = 0

    def full(
        self, epoch: str, time: Sequence[int], queue_tick: int, machine_tick: int
    ) -> ClockBody:
        """A full clock, recorded as sent."""
        self.n += 1
        self.epoch = epoch
        self.time = list(time)
        self.q = queue_tick
        self.m = machine_tick
        return ClockBody(
            n=self.n,
            q=queue_tick,
            m=machine_tick,
            k=checksum(time, queue_tick, machine_tick),
            epoch=epoch,
            time=tuple(time),
        )

    def update(
        self,
        epoch: str,
        time: Sequence[int],
        queue_tick: int,
        machine_tick: int,
        *,
        force: bool = False,
    ) -> ClockBody | None:
        """
        The delta from the last sent clock, a full clock when a delta cannot express
        the change, or ``None`` when nothing changed (an empty delta with *force*).
        """
        old = self.time
        if (
            old is None
            or epoch != self.epoch
            or len(old) != len(time)
            or queue_tick < self.q
            or machine_tick < self.m
            or any(t < o for t, o in zip(time, old, strict=True))
        ):
            return self.full(epoch, time, queue_tick, machine_tick)
        idx = [i for i, (t, o) in enumerate(zip(time, old, strict=True)) if t != o]
        if not idx and queue_tick == self.q and machine_tick == self.m and not force:
            return None
        self.n += 1
        body = ClockBody(
            n=self.n,
            q=queue_tick - self.q,
            m=machine_tick - self.m,
            k=checksum(time, queue_tick, machine_tick),
            indexes=tuple(idx),
            deltas=tuple(time[i] - old[i] for i in idx),
        )
        self.time = list(time)
        self.q = queue_tick
        self.m = machine_tick
        return body


class ApplyOutcome(enum.Enum):
    """What :meth:`ClockMirror.apply` did with a clock."""

    APPLIED = "applied"
    #: A full clock with a new epoch or a tick that went down.
    RESET = "reset"
    #: An old or repeated delta; ignored.
    DUPLICATE = "duplicate"
    #: A delta that does not follow the local version; ask for a full clock.
    GAP = "gap"
    #: A delta with bad indexes, lengths or checksum; ask for a full clock.
    INVALID = "invalid"


class ClockMirror:
    """The client's copy of a remote clock."""

    __slots__ = ("epoch", "m", "n", "q", "size", "time")

    def __init__(self, size: int) -> None:
        self.size = size
        self.n = 0
        self.epoch: str | None = None
        self.time: list[int] = [0] * size
        self.q = 0
        self.m = 0

    def apply(self, body: ClockBody) -> ApplyOutcome:
        """Apply *body* if it is valid and next in line; see :class:`ApplyOutcome`."""
        if body.time is not None:
            if len(body.time) != self.size or any(t < 0 for t in body.time):
                return ApplyOutcome.INVALID
            if checksum(body.time, body.q, body.m) != body.k:
                return ApplyOutcome.INVALID
            reset = self.epoch is not None and (
                body.epoch != self.epoch
                or any(t < o for t, o in zip(body.time, self.time, strict=True))
                or body.q < self.q
                or body.m < self.m
            )
            self.n = body.n
            self.epoch = body.epoch
            self.time = list(body.time)
            self.q = body.q
            self.m = body.m
            return ApplyOutcome.RESET if reset else ApplyOutcome.APPLIED
        if body.n <= self.n:
            return ApplyOutcome.DUPLICATE
        if self.epoch is None or body.n != self.n + 1:
            return ApplyOutcome.GAP
        idx = body.indexes or ()
        deltas = body.deltas or ()
        if len(idx) != len(deltas) or body.q < 0 or body.m < 0:
            return ApplyOutcome.INVALID
        time = list(self.time)
        for i, d in zip(idx, deltas, strict=True):
            if not 0 <= i < self.size or d < 0:
                return ApplyOutcome.INVALID
            time[i] += d
        q = self.q + body.q
        m = self.m + body.m
        if checksum(time, q, m) != body.k:
            return ApplyOutcome.INVALID
        self.n = body.n
        self.time = time
        self.q = q
        self.m = m
        return ApplyOutcome.APPLIED
