"""
Property-based testing of asyncmachine machines, built on Hypothesis.

Install it with the ``testing`` extra (``pip install 'asyncmachine[testing]'``)::

    from asyncmachine.testing import schemas, mutations, check_invariants, MachineRules

- strategies: :func:`schemas`, :func:`state_names`, :func:`mutations` (apply one
  with :func:`apply_mutation`) and :func:`handler_behaviours` (handlers that reject,
  raise or mutate, within budgets, for stress tests);
- :func:`check_invariants`: every invariant the spec guarantees (listed in
  :data:`INVARIANTS`), raising :class:`InvariantViolation`, an ``AssertionError``;
- :class:`MachineRules`: a Hypothesis ``RuleBasedStateMachine`` base class for one
  machine; :class:`AsyncMachineRules` adds an event loop on virtual time
  (:class:`FakeClock`), :func:`async_rule` and :func:`run_async` help with awaits.
"""

from __future__ import annotations

try:
    import hypothesis as _hypothesis  # noqa: F401 - fail early, with a clear message
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "asyncmachine.testing needs Hypothesis, which comes with the 'testing' extra: "
        "pip install 'asyncmachine[testing]'"
    ) from exc

from ._async import AsyncMachineRules, FakeClock, async_rule, run_async
from ._behaviour import (
    BehaviourHandlers,
    HandlerBehaviour,
    HandlerRaised,
    all_handler_names,
    handler_behaviours,
)
from ._invariants import (
    INVARIANTS,
    InvariantMonitor,
    InvariantViolation,
    check_invariants,
    watch,
)
from ._rules import CallLog, LoopGuard, MachineRules, RunawayError
from ._strategies import (
    ADD_ERR_MESSAGE,
    KINDS,
    MutationTuple,
    SchemaDict,
    apply_mutation,
    mutations,
    schema_state_names,
    schemas,
    state_names,
)

__all__ = (
    "ADD_ERR_MESSAGE",
    "INVARIANTS",
    "KINDS",
    "AsyncMachineRules",
    "BehaviourHandlers",
    "CallLog",
    "FakeClock",
    "HandlerBehaviour",
    "HandlerRaised",
    "InvariantMonitor",
    "InvariantViolation",
    "LoopGuard",
    "MachineRules",
    "MutationTuple",
    "RunawayError",
    "SchemaDict",
    "all_handler_names",
    "apply_mutation",
    "async_rule",
    "check_invariants",
    "handler_behaviours",
    "mutations",
    "run_async",
    "schema_state_names",
    "schemas",
    "state_names",
    "watch",
)
