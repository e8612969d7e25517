"""
:class:`MachineRules`: a Hypothesis ``RuleBasedStateMachine`` for one machine.

Theory of operation: each subclass gets its own ``mutate`` rule, built in
``__init_subclass__`` from the subclass's ``schema`` (Hypothesis rules take their
strategies at class creation). An ``@invariant()`` runs :func:`check_invariants` after
every step and marks the step boundary for the :class:`CallLog`, a tracer that turns
every outside call on the machine into a line of Python. ``teardown`` hands those lines
to Hypothesis' ``note()``, which prints them for the minimal failing example only.
"""

from __future__ import annotations

import builtins
import functools
import inspect
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from hypothesis import control, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import asyncmachine as am

from ._invariants import (
    InvariantMonitor,
    InvariantViolation,
    check_invariants,
    watch,
)
from ._strategies import MutationTuple, apply_mutation, mutations

__all__ = ("CallLog", "LoopGuard", "MachineRules", "RunawayError")

REPRO_HEADER = "# asyncmachine.testing: the failing run as plain calls"


def _err_repr(err: BaseException) -> tuple[str, str]:
    """An expression that rebuilds *err*, and a comment for the line's end."""
    cls = type(err)
    if cls.__module__ == "builtins" and getattr(builtins, cls.__name__, None) is cls:
        return repr(err), ""
    return f"RuntimeError({str(err)!r})", f"  # was {cls.__qualname__}"


class RunawayError(SystemExit):
    """
    A mutation call did not settle: its drain ran more transitions than allowed.

    The core has no loop guard, so handlers that keep mutating each other, or an auto
    state whose handler always raises, never let a mutation call return.
    :class:`LoopGuard` turns that into this error. It is a ``SystemExit`` because the
    machine swallows ``Exception`` subclasses raised by tracers; Hypothesis treats
    ``SystemExit`` as a test failure and shrinks it like one.
    """


class LoopGuard(am.TracerNoOp):
    """
    A tracer that raises :class:`RunawayError` when one drain (an outside call with
    everything it queued) runs more than *limit* transitions.

    The machine is left mid-drain afterwards (its queue is not empty): use it only
    to end a test.
    """

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self.count = 0
        self._last: deque[am.Transition] = deque(maxlen=5)

    def transition_end(self, tx: am.Transition) -> None:
        """Count the transition; raise after *limit* in one drain."""
        self.count += 1
        self._last.append(tx)
        if self.count > self.limit:
            self.count = 0
            last = "\n  ".join(map(repr, self._last))
            raise RunawayError(
                f"one mutation call ran more than {self.limit} transitions; handlers "
                f"probably loop forever. The last ones:\n  {last}"
            )

    def queue_end(self, mach: am.Machine) -> None:
        """A drain ended: start counting again."""
        self.count = 0


class CallLog(am.TracerNoOp):
    """
    A tracer that records every *outside* call on a machine as a line of Python.

    Outside calls are mutations made while no transition runs: ``add``, ``remove``,
    ``set`` (``toggle`` shows as the one it chose), ``add_err``/``add_err_state``,
    ``can_add``/``can_remove``/``can_set``, the ``*_threadsafe`` variants (as the
    plain call, in the order the loop ran them) and ``dispose()``. Mutations queued
    by handlers, auto and ``Exception`` mutations are not outside calls. An
    ``import_()`` shows as a comment: it cannot be replayed from the log.

    Attributes:
        steps: the lines, grouped in steps (see :meth:`new_step`).
    """

    def __init__(self) -> None:
        self.steps: list[list[str]] = [[]]
        self._skip_restored = False

    def new_step(self) -> None:
        """Start a new group of lines (MachineRules: after each Hypothesis step)."""
        if self.steps[-1]:
            self.steps.append([])

    @property
    def lines(self) -> list[str]:
        """All lines, in order."""
        return [line for step in self.steps for line in step]

    def mutation_queued(self, mach: am.Machine, mutation: am.Mutation) -> None:
        """Record an outside call."""
        if mach.transition is not None or mutation.is_auto:
            return  # queued by a handler, or made by the machine itself
        called = list(mutation.called)
        if self._skip_restored:
            self._skip_restored = False
            if called == ["MachineRestored"]:
                return
        args = dict(mutation.args)
        err = args.get("err")
        if (
            isinstance(err, BaseException)
            and "err_trace" in args
            and not mutation.is_check
            and called[-1:] == [am.EXCEPTION]
        ):
            rest = {k: v for k, v in args.items() if k not in ("err", "err_trace")}
            tail = f", {rest!r}" if rest else ""
            expr, comment = _err_repr(err)
            if len(called) == 1:
                line = f"mach.add_err({expr}{tail}){comment}"
            else:
                line = f"mach.add_err_state({called[0]!r}, {expr}{tail}){comment}"
        else:
            kind = f"can_{mutation.type}" if mutation.is_check else str(mutation.type)
            tail = f", {args!r}" if args else ""
            line = f"mach.{kind}({called!r}{tail})"
        self.steps[-1].append(line)

    def verify_states(self, mach: am.Machine) -> None:
        """An import: not replayable, noted as a comment."""
        self.steps[-1].append("# mach.import_(...) ran here (not replayed)")
        self._skip_restored = True

    def machine_dispose(self, machine_id: str) -> None:
        """``dispose()`` (its own ``remove("Start")`` is part of it)."""
        step = self.steps[-1]
        if step and step[-1] == "mach.remove(['Start'])":
            step.pop()
        step.append("mach.dispose()")


def _handlers_attr(cls: type) -> object:
    """The raw ``handlers`` class attribute (a plain function is not bound)."""
    for klass in cls.__mro__:
        if "handlers" in vars(klass):
            raw = vars(klass)["handlers"]
            if isinstance(raw, staticmethod | classmethod):
                return raw.__get__(None, cls)
            return raw
    return None


def _is_factory(obj: object) -> bool:
    return (
        isinstance(obj, type)
        or inspect.isroutine(obj)
        or isinstance(obj, functools.partial)
    )


class MachineRules(RuleBasedStateMachine):
    """
    A Hypothesis rule-based state machine that tests one :class:`am.Machine`.

    Subclass it with a schema and handlers; Hypothesis then runs random mutations
    (the ``mutate`` rule, drawn by :func:`mutations`) and checks
    :func:`check_invariants` after every step. Add your own checks with Hypothesis'
    ``@invariant()`` and your own steps with ``@rule()``; the machine is
    ``self.mach``, the handler object ``self.handler_obj``::

        class TestKettle(MachineRules):
            schema = {"Water": {}, "Heating": {"require": ["Water"]}}
            handlers = KettleHandlers  # a class or zero-argument factory: fresh per run
            handler_obj: KettleHandlers  # (optional) its type, for type checkers

            @invariant()
            def never_dry_heating(self) -> None:
                litres = self.handler_obj.litres
                assert not self.mach.is_active("Heating") or litres > 0

        TestKettleCase = TestKettle.TestCase  # for pytest / unittest

    On failure, next to Hypothesis' own steps, the minimal run is printed as plain
    calls on the machine (see :meth:`reproduction`).

    Class attributes:
        schema: the schema (dict form, ``am.State`` values or a typed
            :class:`am.Schema` class). Required.
        handlers: ``None``, a handler object (shared by every run), or a class or
            zero-argument function that makes a fresh one per run (recommended).
        names: an explicit state order, or ``None`` for the default.
        machine_options: more keyword arguments for :class:`am.Machine`.
        mutation_kinds: the kinds ``mutate`` draws (see :func:`mutations`).
        mutation_args: a strategy of args for ``mutate`` (default: see
            :func:`mutations`).
        max_called: the most states one drawn mutation calls.
        max_transitions: transitions one mutation call may run before
            :class:`RunawayError` ends the run (the core has no loop guard).

    Instance attributes:
        mach: the machine under test (a new one per run).
        handler_obj: the handler object bound to it (or ``None``).
        monitor: the :class:`InvariantMonitor` watching it.
        guard: the :class:`LoopGuard` stopping endless mutation calls.
        log: the :class:`CallLog` recording its outside calls.
        results: ``(mutation, result)`` of every ``mutate`` step.
    """

    schema: ClassVar[am.SchemaLike | type[am.Schema]]
    handlers: ClassVar[Any] = None
    names: ClassVar[Sequence[str] | None] = None
    machine_options: ClassVar[Mapping[str, Any]] = {}
    mutation_kinds: ClassVar[Sequence[str] | None] = None
    mutation_args: ClassVar[st.SearchStrategy[Mapping[str, object]] | None] = None
    max_called: ClassVar[int] = 3
    max_transitions: ClassVar[int] = 1000

    mach: am.Machine
    handler_obj: Any
    guard: LoopGuard
    monitor: InvariantMonitor
    log: CallLog

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        schema = getattr(cls, "schema", None)
        if schema is None or "mutate" in vars(cls):
            return
        strategy = mutations(
            schema,
            kinds=cls.mutation_kinds,
            max_states=cls.max_called,
            args=cls.mutation_args,
        )

        def mutate(self: MachineRules, mutation: MutationTuple) -> None:
            self.apply(mutation)

        mutate.__doc__ = "Apply one random mutation (drawn by mutations(schema))."
        cls.mutate = rule(mutation=strategy)(mutate)

    def __init__(self) -> None:
        super().__init__()
        raw = _handlers_attr(type(self))
        self.handler_obj = raw() if _is_factory(raw) else raw  # type: ignore[operator]
        self.results: list[tuple[MutationTuple, am.Result]] = []
        self.guard = LoopGuard(self.max_transitions)
        self.mach = self.new_machine()
        self.monitor = watch(self.mach)
        self.log = CallLog()
        self.mach.add_tracer(self.log)
        self.mach.add_tracer(self.guard)  # a no-op if new_machine() passed it

    def new_machine(self) -> am.Machine:
        """
        Make the machine under test (override for full control); the default passes
        ``schema``, the handler object, ``names`` and ``machine_options`` to
        :class:`am.Machine`, with ``self.guard`` among the tracers.
        """
        options = dict(self.machine_options)
        # the loop guard watches the constructor too (it may run handlers, spec S9)
        options["tracers"] = [self.guard, *options.get("tracers", ())]
        return am.Machine(
            self.schema,
            handlers=self.handler_obj,
            names=self.names,
            **options,
        )

    def apply(self, mutation: MutationTuple) -> am.Result:
        """
        Apply *mutation* (see :func:`apply_mutation`) from outside; the result must
        not be a queued one (``outside-result``).
        """
        result = apply_mutation(self.mach, mutation)
        self.results.append((mutation, result))
        if result.is_queued:
            raise InvariantViolation(
                "outside-result",
                f"{mutation!r} returned {result!r} on an idle machine",
                mutation[1],
                self.mach.clock(),
            )
        return result

    @invariant()
    def check_machine(self) -> None:
        """Every invariant of :func:`check_invariants`; also ends a log step."""
        self.log.new_step()
        check_invariants(self.mach)

    def verify(self) -> None:
        """Run every ``@invariant()`` of this class (yours included) once."""
        for inv in self.invariants:
            if all(pre(self) for pre in inv.preconditions):
                inv.function(self)

    def reproduction(self) -> str:
        """
        This run as a short Python snippet: the outside calls on ``self.mach``, step
        by step, each step followed by :meth:`verify`.

        It replays what changed the machine; assertions inside your own rules are not
        in it (Hypothesis' own printout has those steps). Args are written with
        ``repr()``, so exotic values may need an edit.
        """
        cls = type(self)
        qualname = cls.__qualname__
        lines = [REPRO_HEADER]
        if cls.__module__ == "__main__" or "<locals>" in qualname:
            lines.append(f"# define {qualname} first (it is not importable)")
            qualname = cls.__name__
        else:
            lines.append(f"from {cls.__module__} import {qualname.split('.')[0]}")
        lines += ["", f"state = {qualname}()", "mach = state.mach"]
        lines.append("state.verify()")
        for step in self.log.steps:
            if step:
                lines += step
                lines.append("state.verify()")
        return "\n".join(lines)

    def teardown(self) -> None:
        """Print :meth:`reproduction` for the minimal failing example (``note()``)."""
        if control.currently_in_test_context():
            control.note(self.reproduction())
