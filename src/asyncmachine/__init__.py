"""
asyncmachine: relational, multi-state, clock-based state machines for async Python.

Users write ``import asyncmachine as am``. The sub-packages ``am.rpc``,
``am.telemetry`` and ``am.testing`` are imported lazily on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._context import (
    Context as Context,
    ContextScope as ContextScope,
    StateContext as StateContext,
)
from ._core._mutation import (
    Mutation as Mutation,
    MutationType as MutationType,
    Result as Result,
)
from ._core._schema import EXCEPTION as EXCEPTION, State as State
from ._errors import (
    AsyncMachineError as AsyncMachineError,
    ExportError as ExportError,
    HandlerTimeoutError as HandlerTimeoutError,
    SchemaError as SchemaError,
    StateUnknownError as StateUnknownError,
)
from ._handlers import ExceptionHandler as ExceptionHandler
from ._machine import (
    Machine as Machine,
    SchemaLike as SchemaLike,
    StatesArg as StatesArg,
    is_active_tick as is_active_tick,
    new_args_mapper as new_args_mapper,
    next_active as next_active,
    next_inactive as next_inactive,
)
from ._tracing import TracerNoOp as TracerNoOp
from ._transition import Event as Event, Transition as Transition
from ._typed import (
    ArgsError as ArgsError,
    Schema as Schema,
    StateDecl as StateDecl,
    state as state,
)

if TYPE_CHECKING:
    from types import ModuleType

    # Lazily imported at runtime (__getattr__); visible to type checkers.
    from . import rpc as rpc

__version__ = "0.1.0"

__all__ = (
    "EXCEPTION",
    "ArgsError",
    "AsyncMachineError",
    "Context",
    "ContextScope",
    "Event",
    "ExceptionHandler",
    "ExportError",
    "HandlerTimeoutError",
    "Machine",
    "Mutation",
    "MutationType",
    "Result",
    "Schema",
    "SchemaError",
    "SchemaLike",
    "State",
    "StateContext",
    "StateDecl",
    "StateUnknownError",
    "StatesArg",
    "TracerNoOp",
    "Transition",
    "__version__",
    "is_active_tick",
    "new_args_mapper",
    "next_active",
    "next_inactive",
    "state",
)

_LAZY = frozenset({"rpc", "telemetry", "testing"})


def __getattr__(name: str) -> ModuleType:
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
