"""
The exception hierarchy of asyncmachine, in one module.

Every error has one root, :class:`AsyncMachineError`, and also inherits the builtin it
resembles, so ``except KeyError`` keeps working for unknown state names and
``except ValueError`` for invalid schemas.
"""

from __future__ import annotations

__all__ = (
    "AsyncMachineError",
    "ExportError",
    "HandlerTimeoutError",
    "SchemaError",
    "StateUnknownError",
)


class AsyncMachineError(Exception):
    """Base class of every exception raised by asyncmachine."""


class StateUnknownError(AsyncMachineError, KeyError):
    """Raised when a state name is not part of the machine's schema."""

    def __init__(self, names: str | list[str], machine_id: str | None = None) -> None:
        self.names = [names] if isinstance(names, str) else list(names)
        self.machine_id = machine_id
        super().__init__(self.names[0] if len(self.names) == 1 else self.names)

    def __str__(self) -> str:
        where = f" in machine {self.machine_id!r}" if self.machine_id else ""
        joined = ", ".join(repr(n) for n in self.names)
        noun = "state" if len(self.names) == 1 else "states"
        return f"unknown {noun} {joined}{where}"


class SchemaError(AsyncMachineError, ValueError):
    """Raised for an invalid schema, an invalid state order or a bad schema change."""


class ExportError(AsyncMachineError, ValueError):
    """Raised when exported data does not fit the machine it is imported into."""


class HandlerTimeoutError(AsyncMachineError, TimeoutError):
    """A handler ran longer than the machine's ``handler_timeout``."""
