"""
Invariants of a machine, checked between mutations.

Theory of operation: some invariants depend only on what a machine looks like now (tick
parity, the shape of the clock, an idle queue); others depend on its history (clocks
never go down, ticks change only as spec C2 says, ``require`` holds unless a rollback
happened since). For the second kind a tracer, :class:`InvariantMonitor`, watches every
transition, import and schema change of the machine. :func:`check_invariants` attaches
one the first time it sees a machine (:func:`watch` does it explicitly) and raises what
the monitor saw together with what is wrong now.

Tracer hooks must never raise (the machine would disable them), so the monitor records
violations and :func:`check_invariants` raises the first one.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from typing import Final

import asyncmachine as am

__all__ = (
    "INVARIANTS",
    "InvariantMonitor",
    "InvariantViolation",
    "check_invariants",
    "watch",
)

#: Every invariant :func:`check_invariants` checks, by the name its errors carry.
INVARIANTS: Final[Mapping[str, str]] = {
    "tick-parity": (
        "a state is active exactly when its tick is odd (C1); active_states(), "
        "is_active(), is_err() and str() agree with the clock"
    ),
    "clock-shape": (
        "clock() has one int tick >= 0 per state, in state_names() order, "
        "Exception included; time() lists the same ticks"
    ),
    "clock-monotonic": "no tick ever goes down (import_() excepted)",
    "clock-changes": (
        "ticks change only when a transition applies its target (exactly as C2 "
        "says), in an E4 rollback (the failed X_state's state and every state after "
        "it in the enter order, +1 each) and on import_(); checks change nothing"
    ),
    "queue-tick": (
        "queue_tick() goes up by exactly 1 for each appended mutation taken off the "
        "queue and equals that mutation's assigned tick while it runs; prepended "
        "ones (auto, checks, Exception after a handler error) do not count (C6); "
        "machine_tick() changes only on import_() (C7)"
    ),
    "active-order": (
        "a transition starts from the previous transition's target order (H10), "
        "minus the states an E4 rollback deactivated; after import_() from the "
        "state-name order (10.6)"
    ),
    "auto": (
        "after an accepted non-auto transition that changed a tick (and is not an "
        "add of only Heartbeat or Healthcheck), the next transition is the auto "
        "mutation calling every inactive auto state no active state removes, in "
        "state-name order, if there is one (A1, DEV-2); an auto transition follows "
        "nothing else, so auto never chains (A2)"
    ),
    "idle": (
        "between outside calls no transition is running and the queue is empty "
        "(except after a drain aborted by a re-raised handler error, E6)"
    ),
    "require": (
        "every active state's require list is active; guaranteed after any "
        "transition that applied its whole target, not after an E4 rollback, an "
        "import_() or a set_schema() (until the next fully applied transition)"
    ),
    "remove": (
        "no active state X that no state lists in its `add` relation has an active "
        "state in X's remove list; not guaranteed after an import_() or a "
        "set_schema() (until the next fully applied transition)"
    ),
    "outside-result": "a mutation called on an idle machine returns executed or "
    "canceled, never a queued Result",
    "disposed": "a disposed machine reads as empty (no states, no clock)",
}


class InvariantViolation(AssertionError):
    """
    An invariant of :data:`INVARIANTS` does not hold.

    Attributes:
        invariant: the invariant's name (a key of :data:`INVARIANTS`).
        states: the states involved.
        clock: the machine's clock when the violation was found.
    """

    def __init__(
        self,
        invariant: str,
        detail: str,
        states: Iterable[str],
        clock: Mapping[str, int],
        machine: str = "",
    ) -> None:
        self.invariant = invariant
        self.detail = detail
        self.states = tuple(states)
        self.clock = dict(clock)
        shown = " ".join(f"{k}:{v}" for k, v in self.clock.items())
        super().__init__(
            f"invariant {invariant!r} broken: {detail}\n"
            f"  states: {', '.join(self.states) or '-'}\n"
            f"  clock: {shown}" + (f"\n  machine: {machine}" if machine else "")
        )


class InvariantMonitor(am.TracerNoOp):
    """
    A tracer that follows one machine's history for :func:`check_invariants`.

    Attach it with :func:`watch` (or let the first :func:`check_invariants` call do
    it), or pass ``tracers=[InvariantMonitor()]`` to the constructor to also watch
    what the constructor does (spec S9).
    It checks every transition against spec C2/E4 as it ends and keeps what the
    history-dependent invariants need.

    Attributes:
        require_valid: the ``require`` invariant is guaranteed now.
        remove_valid: the ``remove`` invariant is guaranteed now.
        reason: why one of them is not (the event that suspended it).
        active_order: the machine's internal active order (the order the next
            transition's handlers see, spec H10), or ``None`` while unknown (a
            monitor attached late to 2+ active states).
        transitions: the number of transitions seen.
    """

    def __init__(self, mach: am.Machine | None = None) -> None:
        self.last_clock: dict[str, int] = {}
        self.last_queue_tick = 1
        self.last_machine_tick = 0
        self.pending: list[InvariantViolation] = []
        self.drain_aborted = False
        self.transitions = 0
        self.active_order: list[str] | None = []
        self.expect_auto: tuple[str, ...] | None = None
        self._applied: am.Transition | None = None
        self.require_valid = self.remove_valid = True
        self.reason = ""
        if mach is not None:
            self._start(mach)

    def _start(self, mach: am.Machine) -> None:
        self.last_clock = mach.clock()
        self.last_queue_tick = mach.queue_tick()
        self.last_machine_tick = mach.machine_tick()
        active = mach.active_states()
        # the internal order of 2+ active states is unknown unless we saw it made
        self.active_order = active if len(active) < 2 else None
        # What happened before the monitor came is unknown; these are the only
        # events that can break `require` (a rollback needs a handler error or a
        # timeout) or `remove` (an import).
        no_import = mach.machine_tick() == 0
        timeouts = any(isinstance(e, am.HandlerTimeoutError) for e in mach.err_internal)
        full = mach.err_internal.maxlen == len(mach.err_internal)
        self.require_valid = no_import and mach.err() is None and not (timeouts or full)
        self.remove_valid = no_import
        self.reason = (
            ""
            if self.require_valid
            else "the history before the monitor was attached is unknown (an error, "
            "a handler timeout or an import happened)"
        )

    # -- hooks (never raise: a raising hook gets disabled by the machine) ----------

    def machine_init(self, mach: am.Machine) -> None:
        """Passed as ``tracers=[InvariantMonitor()]``: watch from the constructor on."""
        self._start(mach)
        _MONITORS[mach] = self

    def transition_finals(self, tx: am.Transition) -> None:
        """*tx* applied its target (H10); its final handlers run next."""
        self._applied = tx

    def transition_end(self, tx: am.Transition) -> None:
        """Check the transition against C2/E4 and update the history."""
        try:
            self._transition_end(tx)
        except Exception as exc:  # noqa: BLE001 - a hook must not raise
            self._fail(tx.machine, "monitor", f"monitor error {exc!r}", ())

    def verify_states(self, mach: am.Machine) -> None:
        """An import: any clock is possible, history-dependent checks restart."""
        self.expect_auto = None
        self.last_clock = mach.clock()
        self.last_machine_tick = mach.machine_tick()
        self.active_order = mach.active_states()
        self.require_valid = self.remove_valid = False
        self.reason = "import_() may set any clock"

    def schema_change(self, mach: am.Machine, old_schema: dict[str, object]) -> None:
        """``set_schema``: old ticks stay, new states start at 0."""
        now = mach.clock()
        changed = [s for s, t in self.last_clock.items() if now.get(s) != t]
        new = [s for s in now if s not in self.last_clock and now[s] != 0]
        if changed or new:
            self._fail(
                mach,
                "clock-changes",
                "set_schema() changed ticks",
                changed + new,
            )
        self.last_clock = now
        self.require_valid = self.remove_valid = False
        self.reason = "set_schema() may add relations the active states break"

    def queue_end(self, mach: am.Machine) -> None:
        """A drain ended; with states left in the queue it was aborted (E6)."""
        self.drain_aborted = mach.queue_len() > 0

    # -- internals -----------------------------------------------------------------

    def _fail(
        self, mach: am.Machine, invariant: str, detail: str, states: Iterable[str]
    ) -> None:
        self.pending.append(
            InvariantViolation(
                invariant, detail, states, mach.clock(), machine=mach.string_all()
            )
        )

    def _transition_end(self, tx: am.Transition) -> None:
        mach = tx.machine
        self.transitions += 1
        now = mach.clock()
        before = tx.clock_before
        self._check_between(tx, now)
        self.last_clock = now
        if tx.is_check:
            if now != before:
                ticked = [s for s in now if now[s] != before.get(s)]
                self._fail(mach, "clock-changes", f"the check {tx!r} ticked", ticked)
            return
        changed = now != before
        applied, self._applied = self._applied is tx, None
        if not applied:  # canceled before the apply step (H9): nothing changes
            if changed:
                ticked = [s for s in now if now[s] != before.get(s)]
                self._fail(mach, "clock-changes", f"the canceled {tx!r} ticked", ticked)
            return
        active = {s for s, t in now.items() if t % 2 == 1}
        target = list(tx.target)
        tset = set(target)
        schema = mach.schema
        before_set = set(tx.states_before)
        called = set(tx.mutation.called)
        enters = [
            s
            for s in target
            if s not in before_set or (schema[s].multi and s in called)
        ]
        exits = [s for s in tx.states_before if s not in tset]
        expected = dict(before)
        for s in exits:
            expected[s] += 1
        for s in enters:
            expected[s] += 2 if s in before_set else 1
        if active == tset:
            wrong = [s for s in now if now[s] != expected[s]]
            if wrong:
                detail = ", ".join(
                    f"{s} {before[s]}->{now[s]} (C2 says {expected[s]})" for s in wrong
                )
                self._fail(mach, "clock-changes", f"{tx!r}: {detail}", wrong)
            self.require_valid = self.remove_valid = True
            self.reason = ""
        else:
            rolled = tset - active
            extra = active - tset
            ok = not tx.accepted and bool(rolled) and not extra
            if ok:
                first = min(enters.index(s) if s in enters else -1 for s in rolled)
                ok = first >= 0 and set(enters[first:]) == rolled
            if ok:
                ok = all(now[s] == expected[s] + (1 if s in rolled else 0) for s in now)
            if not ok:
                self._fail(
                    mach,
                    "clock-changes",
                    f"{tx!r}: the active states are neither the target nor an E4 "
                    f"rollback of it (rolled back {sorted(rolled)}, "
                    f"extra {sorted(extra)})",
                    sorted(rolled | extra),
                )
            self.require_valid = False
            self.reason = f"{tx!r} was rolled back (E4)"
        self.active_order = [s for s in target if s in active]
        mut = tx.mutation
        health = mut.type is am.MutationType.ADD and mut.called in (
            ("Heartbeat",),
            ("Healthcheck",),
        )
        if tx.accepted and changed and not mut.is_auto and not health:
            removed = {r for s in active for r in schema[s].remove}
            auto = tuple(
                s
                for s in mach.state_names()
                if schema[s].auto and s not in active and s not in removed
            )
            self.expect_auto = auto or None

    def _check_between(self, tx: am.Transition, now: dict[str, int]) -> None:
        """What must hold from the previous transition to this one."""
        mach = tx.machine
        before = tx.clock_before
        if before != self.last_clock:
            diff = [s for s in before if self.last_clock.get(s) != before[s]]
            self._fail(
                mach,
                "clock-changes",
                f"ticks changed between transitions (before {tx!r})",
                diff,
            )
        lower = [s for s in now if now[s] < before.get(s, 0)]
        if lower:
            self._fail(mach, "clock-monotonic", f"a tick went down in {tx!r}", lower)
        qt = mach.queue_tick()
        assigned = tx.mutation.queue_tick
        if (assigned and qt != assigned) or qt != self.last_queue_tick + bool(assigned):
            self._fail(
                mach,
                "queue-tick",
                f"{tx!r} (assigned tick {assigned}) ran at queue tick {qt}, "
                f"after {self.last_queue_tick}",
                tx.mutation.called,
            )
        self.last_queue_tick = qt
        if self.active_order is not None and list(tx.states_before) != (
            self.active_order
        ):
            self._fail(
                mach,
                "active-order",
                f"{tx!r} started from {list(tx.states_before)}, the last transition "
                f"left {self.active_order}",
                tx.states_before,
            )
        expected, self.expect_auto = self.expect_auto, None
        if expected is not None and not (
            tx.is_auto and tuple(tx.mutation.called) == expected
        ):
            self._fail(
                mach,
                "auto",
                f"{tx!r} ran where the auto mutation of {list(expected)} was due",
                expected,
            )
        elif expected is None and tx.is_auto:
            self._fail(mach, "auto", f"{tx!r} followed no trigger", tx.called)


_MONITORS: weakref.WeakKeyDictionary[am.Machine, InvariantMonitor] = (
    weakref.WeakKeyDictionary()
)


def watch(mach: am.Machine) -> InvariantMonitor:
    """
    Attach an :class:`InvariantMonitor` to *mach* (once) and return it.

    Call it right after creating the machine, before any mutation, so that every
    history-dependent invariant is checked from the start. :func:`check_invariants`
    calls it on its first use.
    """
    monitor = _MONITORS.get(mach)
    if monitor is None:
        monitor = InvariantMonitor(mach)
        mach.add_tracer(monitor)
        _MONITORS[mach] = monitor
    return monitor


def check_invariants(mach: am.Machine) -> None:
    """
    Check every invariant the spec guarantees; raise :class:`InvariantViolation`.

    Call it between mutations (never from a handler): after each outside call, at the
    end of a test, from a Hypothesis ``@invariant()``. The error is an
    ``AssertionError`` whose message names the invariant (a key of
    :data:`INVARIANTS`), the states involved and the clock.

    What is checked, and when it is guaranteed (:data:`INVARIANTS` has the full
    descriptions):

    - ``tick-parity``, ``clock-shape``, ``idle``: always. ``idle`` allows a
      non-empty queue only after a drain that a re-raised handler exception aborted
      (``catch_exceptions=False``, spec E6) and until the next drain.
    - ``clock-monotonic``, ``clock-changes``, ``queue-tick``, ``active-order`` and
      ``auto``: from the first call on (or from :func:`watch`, or from the
      constructor with ``tracers=[InvariantMonitor()]``). Each transition is checked
      as it ends: one canceled before the apply step and a check change nothing; an
      applied one changes ticks exactly as C2 says, and if a final handler failed in
      ``X_state`` (an exception or a timeout, E4) additionally deactivates a suffix of
      its enter order (+1 each); nothing changes between transitions; the queue tick
      follows C6; each transition starts from the order the previous one left
      (H10); the auto mutation follows exactly where A1/A2 say. ``import_()`` may set
      any clock: it restarts these checks (the order becomes the state-name order).
      ``active-order`` is skipped while the order is unknown (a monitor attached
      late to two or more active states).
    - ``require`` (every active state's ``require`` list is active): holds after each
      transition that applied its whole target, including one whose ``X_end`` or
      ``any_state`` failed (no rollback). It is **not** checked after an E4 rollback
      (with an ``after`` relation that puts a dependent before its requirement, a
      Require cycle, or a re-entered multi requirement, a rollback can leave a state
      active without its requirement), after ``import_()`` or ``set_schema()``; the
      next fully applied transition restores it. Canceled transitions and checks
      change nothing, so they keep the current status.
    - ``remove``: for an active state X that **no state names in its `add`
      relation**, none of X's ``remove`` list is active. A state that is the target
      of an ``add`` relation can be brought in by the second ``add`` pass of the
      resolver (spec R6), after remove-blocking ran, so it can be active next to a
      state it removes: the spec guarantees nothing for such removers. Rollbacks
      only deactivate states and keep this invariant; ``import_()`` and
      ``set_schema()`` suspend it until the next fully applied transition.

    If the first call finds a machine that already ran mutations, its history is
    unknown: ``require`` is then checked only if no error, handler timeout or import
    ever happened (``err()`` is None, no ``HandlerTimeoutError`` in
    ``err_internal``, ``machine_tick() == 0``) and ``remove`` only if no import
    happened; ``set_schema()`` calls before the first check are not detected. A
    disposed machine must read as empty (``disposed``). ``outside-result`` is checked
    by :meth:`MachineRules.apply`, not here.

    Raises:
        InvariantViolation: an ``AssertionError`` naming the invariant.
    """
    if mach.is_disposed:
        if mach.active_states() or mach.clock() or str(mach):
            raise InvariantViolation(
                "disposed",
                "a disposed machine still reports states",
                mach.active_states(),
                {},
            )
        return
    monitor = watch(mach)
    # idle (first: from a handler everything else is in flux)
    if mach.transition is not None:
        raise InvariantViolation(
            "idle",
            f"a transition is still running: {mach.transition!r} (do not call "
            "check_invariants() from a handler)",
            mach.transition.called,
            mach.clock(),
        )
    if mach.queue_len() and not monitor.drain_aborted:
        raise InvariantViolation(
            "idle",
            f"the queue is not empty after the outside call: {mach.queue()}",
            [s for m in mach.queue() for s in m.called],
            mach.clock(),
        )

    if monitor.pending:
        err = monitor.pending[0]
        monitor.pending.clear()
        raise err
    names = mach.state_names()
    clock = mach.clock()
    extra = mach.string_all()

    def fail(invariant: str, detail: str, states: Iterable[str]) -> InvariantViolation:
        return InvariantViolation(invariant, detail, states, clock, machine=extra)

    # clock-shape
    if list(clock) != names:
        raise fail("clock-shape", "clock() keys differ from state_names()", names)
    if am.EXCEPTION not in clock:
        raise fail("clock-shape", "there is no Exception state", names)
    bad = [s for s, t in clock.items() if not isinstance(t, int) or t < 0]
    if bad:
        raise fail("clock-shape", "ticks must be ints >= 0", bad)
    if mach.time() != list(clock.values()):
        raise fail("clock-shape", "time() differs from clock()", names)

    # tick-parity
    odd = [s for s in names if clock[s] % 2 == 1]
    wrong = [s for s in names if mach.is_active(s) != (clock[s] % 2 == 1)]
    if wrong:
        raise fail("tick-parity", "is_active() disagrees with the tick's parity", wrong)
    if mach.active_states() != odd:
        raise fail(
            "tick-parity",
            f"active_states() is {mach.active_states()}, the odd ticks are {odd}",
            odd,
        )
    if mach.is_err() != (clock[am.EXCEPTION] % 2 == 1):
        raise fail("tick-parity", "is_err() disagrees with Exception", [am.EXCEPTION])
    shown = "(" + " ".join(f"{s}:{clock[s]}" for s in odd) + ")"
    if str(mach) != shown:
        raise fail("tick-parity", f"str() is {mach}, expected {shown}", odd)

    # clock-monotonic / clock-changes (between the last transition and now)
    last = monitor.last_clock
    lower = [s for s in names if s in last and clock[s] < last[s]]
    if lower:
        raise fail("clock-monotonic", "a tick went down", lower)
    moved = [s for s in names if last.get(s, 0) != clock[s]]
    if moved:
        raise fail("clock-changes", "ticks changed outside of any transition", moved)

    # queue-tick
    qt = mach.queue_tick()
    if qt < 1 or qt != monitor.last_queue_tick:
        raise fail(
            "queue-tick",
            f"queue_tick() went from {monitor.last_queue_tick} to {qt} outside of "
            "any transition",
            [],
        )
    if mach.machine_tick() != monitor.last_machine_tick:
        raise fail(
            "queue-tick",
            f"machine_tick() went from {monitor.last_machine_tick} to "
            f"{mach.machine_tick()} without an import",
            [],
        )

    active = set(odd)
    schema = mach.schema
    # require
    if monitor.require_valid:
        for s in odd:
            missing = [r for r in schema[s].require if r not in active]
            if missing:
                raise fail(
                    "require",
                    f"active {s!r} requires {', '.join(map(repr, missing))}, "
                    "which is not active",
                    [s, *missing],
                )
    # remove
    if monitor.remove_valid:
        add_targets = {a for st in schema.values() for a in st.add}
        for s in odd:
            if s in add_targets:
                continue
            removed = [r for r in schema[s].remove if r in active]
            if removed:
                raise fail(
                    "remove",
                    f"active {s!r} removes {', '.join(map(repr, removed))}, "
                    "which is active too",
                    [s, *removed],
                )
