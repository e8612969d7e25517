"""
The machine: states, clocks, the mutation queue and the transition engine.

Theory of operation (``spec/machine.md``, rule ids in brackets):

- Every state has a tick; odd means active [C1]. Ticks change only when a transition
  applies its target [C2], when a final handler fails (rollback, E4) and on import.
- Mutations (``add``/``remove``/``set``) go through one queue [Q1]. A call made while
  the queue is idle drains it synchronously and returns the result of its own
  transition; a call made while it drains (from a handler, a tracer or a check) is
  queued and returns its queue tick (a :class:`Result` ``>= 2``). Nothing nests.
- A transition resolves the target [R1-R8], runs the negotiation handlers (exit,
  enter, self, pair, ``any_enter``; any may reject), applies the ticks, runs the final
  handlers (end, state, ``any_state``) and, when something changed, prepends the auto
  mutation [H5-H13, A1-A4].
- A handler that raises never crashes the caller: the transition is canceled (or, in
  the final phase, partly rolled back) and ``Exception`` is prepended [E3-E5].

The machine is synchronous and deterministic; it needs no event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import secrets
import threading
import time as _time
import traceback
import types
from collections import deque
from collections.abc import (
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Self, TypeAlias, TypeVar

import anyio

from ._context import Context, StateContext
from ._core._mutation import CANCELED, EXECUTED, Mutation, MutationType, Result
from ._core._relations import Relations
from ._core._schema import (
    EXCEPTION,
    State,
    normalize_schema,
    resolve_names,
)
from ._errors import (
    ExportError,
    HandlerTimeoutError,
    SchemaError,
    StateUnknownError,
)
from ._handlers import Handler, scan_handlers
from ._tracing import hook_failed, tracer_hooks
from ._transition import Event, Transition
from ._typed import ArgsModel, DumpableArgs, Schema, validate_args
from ._waiting import EventLike, LoopEvent, Waiter

if TYPE_CHECKING:
    from types import TracebackType

    from anyio.abc import TaskGroup

T = TypeVar("T")

__all__ = (
    "Machine",
    "SchemaLike",
    "StatesArg",
    "is_active_tick",
    "new_args_mapper",
    "next_active",
    "next_inactive",
)

#: A single state name or any iterable of names.
StatesArg: TypeAlias = str | Iterable[str]
#: What :class:`Machine` accepts as a schema.
SchemaLike: TypeAlias = Mapping[str, State | Mapping[str, object]]

ADD: Final = MutationType.ADD
REMOVE: Final = MutationType.REMOVE
SET: Final = MutationType.SET

_logger = logging.getLogger("asyncmachine")
_PY_LEVELS: Final = {1: logging.INFO, 2: logging.INFO, 3: logging.DEBUG}
_HEALTH: Final = (("Heartbeat",), ("Healthcheck",))
_DEFAULT_LOG_ARGS: Final = ("name", "id", "port", "addr", "err", "path", "url", "uri")


def is_active_tick(tick: int) -> bool:
    """True for an odd tick (an active state) [C5]."""
    return tick % 2 == 1


def next_active(tick: int) -> int:
    """The next tick at which a state with *tick* is active [C5]."""
    return tick + 2 if tick % 2 == 1 else tick + 1


def next_inactive(tick: int) -> int:
    """The next tick at which a state with *tick* is inactive [C5]."""
    return tick + 2 if tick % 2 == 0 else tick + 1


def new_args_mapper(
    names: Iterable[str] = _DEFAULT_LOG_ARGS, max_len: int = 20
) -> Callable[[Mapping[str, object]], dict[str, str]]:
    """
    Build a log-args mapper: it keeps the keys in *names* and cuts each value to
    *max_len* characters (longer values end in ``...``) [10.10].
    """
    keep = frozenset(names)

    def mapper(args: Mapping[str, object]) -> dict[str, str]:
        out = {}
        for k, v in args.items():
            if k in keep:
                s = str(v)
                if len(s) > max_len:
                    # too short for an ellipsis: cut hard
                    s = s[: max_len - 3] + "..." if max_len > 3 else s[:max_len]
                out[k] = s
        return out

    return mapper


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


_DEFAULT_MAPPER: Final = new_args_mapper()
#: Shared empty tables of machines without handlers or tracers; never mutated.
_NO_TABLE: Final[Mapping[str, Any]] = types.MappingProxyType({})
_NO_HOOKS: Final[dict[str, list[Callable[..., object]]]] = {}
_NO_NAMES: Final[Mapping[str, tuple[str, str, str, str, str]]] = types.MappingProxyType(
    {}
)


@functools.lru_cache(maxsize=256)
def _handler_names(
    names: tuple[str, ...],
) -> Mapping[str, tuple[str, str, str, str, str]]:
    """Handler method names per state, shared by machines with the same states."""
    return types.MappingProxyType(
        {
            s: (f"{s}_enter", f"{s}_exit", f"{s}_state", f"{s}_end", f"{s}_{s}")
            for s in names
        }
    )


_Shape: TypeAlias = tuple[dict[str, State], list[str], dict[str, int], Relations]
_SHAPES: dict[tuple[object, ...], _Shape] = {}
_SHAPES_MAX: Final = 256


def _shape(schema: dict[str, State], names: list[str]) -> _Shape:
    """
    The read-only tables of a schema in a state order, shared between machines.

    Machines never mutate these in place (a schema change or an import assigns new
    ones), so 10,000 machines of one schema hold one copy, and one plan cache.
    """
    key = (tuple(schema.items()), tuple(names))
    shape = _SHAPES.get(key)
    if shape is None:
        if len(_SHAPES) >= _SHAPES_MAX:
            _SHAPES.clear()
        shape = (
            schema,
            names,
            {n: i for i, n in enumerate(names)},
            Relations(schema, names),
        )
        _SHAPES[key] = shape
    return shape


class _HandlerFailed(Exception):
    """Internal: a handler raised (``exc``) or ran over the timeout (``exc is None``)."""

    def __init__(self, name: str, exc: BaseException | None) -> None:
        super().__init__(name)
        self.name = name
        self.exc = exc


class _Binding:
    __slots__ = ("fns", "id", "obj")

    def __init__(self, bid: int, obj: object, fns: dict[str, Handler]) -> None:
        self.id = bid
        self.obj = obj
        self.fns = fns


_Fns: TypeAlias = tuple[tuple[int, Handler], ...]
#: (target, rejected called states, exits, enters) of a resolved mutation.
_Plan: TypeAlias = tuple[
    tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]
]
#: Resolved mutations cached per schema (cleared when full).
_PLAN_CACHE: Final = 16384
#: (negotiation calls (name, fns, log kind), final calls (name, fns, enters index)).
_CallPlan: TypeAlias = tuple[
    tuple[tuple[str, "_Fns", str], ...], tuple[tuple[str, "_Fns", int], ...]
]
# `Machine.set` shadows the builtin inside the class body, so annotations use this.
_StrSet: TypeAlias = set[str] | frozenset[str]
_EMPTY_SET: Final[frozenset[str]] = frozenset()


class Machine:
    """
    A relational, multi-state, clock-based state machine.

    Args:
        schema: state names mapped to :class:`State` (or mappings with the same keys).
        handlers: one object or a sequence of objects whose methods are handlers.
        id: the machine id; random hex by default.
        names: explicit state order (every state, ``Exception`` included); default
            alphabetical.
        parent: the parent machine (or its id).
        tags: free-form tags.
        tracers: tracer objects (see :class:`TracerNoOp`).
        handler_timeout: seconds a handler may run; an overrun negotiation handler
            counts as a rejection, an overrun final handler as a failure. ``None``
            (default) disables the check.
        catch_exceptions: turn handler exceptions into the ``Exception`` state
            (default); ``False`` re-raises them from the mutation call.
        queue_limit: maximum queued mutations; beyond it mutations are canceled.
        log_level: 0 (nothing) to 5 (everything); default from ``AM_LOG`` or 0.

    Raises:
        SchemaError: the schema or *names* is invalid.
        TypeError: a handler is a coroutine function.
    """

    __slots__ = (
        "__weakref__",
        "_active",
        "_active_set",
        "_args_models",
        "_binding_seq",
        "_bindings",
        "_call_plans",
        "_changed",
        "_clock",
        "_clock_shared",
        "_dispose_deferred",
        "_disposed",
        "_disposing",
        "_epoch",
        "_err",
        "_err_internal",
        "_ever_bound",
        "_explicit_names",
        "_foreign",
        "_handler_timeout",
        "_hmap",
        "_hn",
        "_id",
        "_id5",
        "_index",
        "_log_level",
        "_loop_key",
        "_machine_tick",
        "_names",
        "_new_event",
        "_on_dispose",
        "_owner",
        "_pairs",
        "_parent",
        "_parent_id",
        "_pending",
        "_processing",
        "_queue",
        "_queue_tick",
        "_rel",
        "_root_ctx_",
        "_schema",
        "_state_ctxs",
        "_tags",
        "_tg",
        "_tr",
        "_tracers",
        "_transition",
        "_tx_seq",
        "_wake",
        "_wake_scheduled",
        "_wargs",
        "_wby",
        "_wdisposed",
        "_wqend",
        "_wquery",
        "_wtick",
        "catch_exceptions",
        "detect_eval",
        "log_args",
        "logger",
        "on_change",
        "on_error",
        "queue_limit",
    )

    def __init__(
        self,
        schema: SchemaLike | type[Schema],
        *,
        handlers: object | Sequence[object] | None = None,
        id: str | None = None,
        names: Iterable[str] | None = None,
        parent: Machine | str | None = None,
        tags: Iterable[str] = (),
        tracers: Iterable[object] = (),
        handler_timeout: float | None = None,
        catch_exceptions: bool = True,
        queue_limit: int = 1000,
        log_level: int | None = None,
    ) -> None:
        if os.environ.get("AM_DEBUG"):
            handler_timeout = None
            catch_exceptions = False
        self._id = id if id is not None else secrets.token_hex(8)
        if not isinstance(self._id, str) or not self._id:
            raise ValueError(f"a machine id must be a non-empty str, got {id!r}")
        self._id5 = self._id[:5]
        if isinstance(parent, Machine):
            self._parent: Machine | None = parent
            self._parent_id: str | None = parent.id
        else:
            self._parent = None
            self._parent_id = parent
        self._tags = tuple(tags)
        self._handler_timeout = handler_timeout
        self.catch_exceptions = catch_exceptions
        if queue_limit < 1:
            raise ValueError(f"queue_limit must be >= 1, got {queue_limit}")
        self.queue_limit = queue_limit
        env_level = _env_int("AM_LOG")
        self._log_level = 0
        if log_level is None:
            log_level = min(max(env_level or 0, 0), 5)
        self.log_level = log_level
        #: The :mod:`logging` logger the machine writes to.
        self.logger: logging.Logger = _logger
        #: Maps mutation args to the ``(k=v)`` part of log lines.
        self.log_args: Callable[[Mapping[str, object]], Mapping[str, str]] = (
            _DEFAULT_MAPPER
        )
        #: Called as ``on_error(mach, err)`` whenever an error is added.
        self.on_error: Callable[[Machine, BaseException], object] | None = None
        #: Called as ``on_change(mach, time_before, time_after)`` after each
        #: non-check transition.
        self.on_change: Callable[[Machine, list[int], list[int]], object] | None = None
        self._err_internal: deque[BaseException] | None = None

        # schema
        schema, self._args_models = _unpack_schema(schema)
        normalized, conflicts = normalize_schema(schema)
        # Machines with the same schema and order share its read-only tables.
        self._schema, self._names, self._index, self._rel = _shape(
            normalized, resolve_names(normalized, names)
        )
        self._explicit_names = names is not None

        # clocks and active states
        self._clock: dict[str, int] = dict.fromkeys(self._names, 0)
        #: True while a Transition references ``_clock`` (copy before mutating it).
        self._clock_shared = False
        #: Internal active order: the target order of the last transition [H10].
        self._active: list[str] = []
        self._active_set: _StrSet = _EMPTY_SET
        self._machine_tick = 0
        #: Names the lineage of this machine's clocks; changes whenever ticks may go
        #: backwards (an import), so mirrors know a delta would be meaningless.
        self._epoch: str | None = None

        # queue
        # A list: queues are short, and a list is 10x smaller than a deque.
        self._queue: list[Mutation] = []
        self._queue_tick = 1  # [C6]
        self._pending = 0  # appended items still in the queue
        self._processing = False
        self._transition: Transition | None = None
        self._tx_seq = 0
        self._err: BaseException | None = None

        # handlers
        self._bindings: dict[int, _Binding] = {}
        self._binding_seq = 0
        self._ever_bound = False
        # Shared empty tables until handlers are bound (always replaced, never
        # mutated in place).
        self._hmap: Mapping[str, _Fns] = _NO_TABLE
        self._pairs: Mapping[str, dict[str, tuple[str, _Fns]]] = _NO_TABLE
        self._hn: Mapping[str, tuple[str, str, str, str, str]] = _NO_NAMES
        self._call_plans: dict[tuple[object, ...], _CallPlan] | None = None

        # tracers
        self._tracers: tuple[object, ...] = tuple(tracers)
        self._tr: dict[str, list[Callable[..., object]]] = (
            tracer_hooks(list(self._tracers)) if self._tracers else _NO_HOOKS
        )

        # lifecycle
        self._disposing = False
        self._disposed = False
        self._dispose_deferred = False
        self._on_dispose: list[Callable[[str], object]] | None = None

        # async runtime: contexts, waiters, tasks, threads
        #: Expires on dispose; state contexts and tasks are its children.
        self._root_ctx_: Context | None = None
        #: At most one live context per state [X2].
        self._state_ctxs: dict[str, StateContext] = {}
        self._wby: dict[str, list[Waiter]] = {}
        self._wtick: list[tuple[Waiter, int]] = []
        self._wquery: list[Waiter] = []
        self._wargs: dict[str, list[tuple[Waiter, dict[str, object]]]] = {}
        self._wqend: list[Waiter] = []
        self._wdisposed: list[Waiter] = []
        #: States whose tick changed in the last transition (exits, enters).
        self._changed: tuple[Sequence[str], Sequence[str]] | None = None
        #: The thread of the event loop the machine is bound to [13.4].
        self._owner: int | None = None
        self._loop_key: object = None
        self._wake: Callable[[], object] | None = None
        self._wake_scheduled = False
        #: Work submitted by other threads, drained on the loop thread.
        self._foreign: (
            deque[tuple[Callable[[], object], concurrent.futures.Future[object]]] | None
        ) = None
        self._tg: TaskGroup | None = None
        #: Makes the running backend's native events (set when the loop binds).
        self._new_event: Callable[[], EventLike] = anyio.Event
        #: Report nested ``eval()`` calls as errors (Go ``DetectEval``).
        self.detect_eval = False

        for fn in list(self._tr.get("machine_init", ())):
            try:
                fn(self)
            except Exception as exc:  # noqa: BLE001 - user code: errors become state
                self._disable_hook("machine_init", fn, exc)
        if self._parent is not None:
            for fn in list(self._parent._tr.get("new_submachine", ())):
                try:
                    fn(self._parent, self)
                except Exception as exc:  # noqa: BLE001 - user code: errors become state
                    self._parent._disable_hook("new_submachine", fn, exc)

        # A require-remove conflict does not raise: the machine starts in
        # Exception, as the Go original does [S9].
        for msg in conflicts:
            self._log(2, "[error] %s", msg)
        if conflicts:
            self.add_err(SchemaError("; ".join(conflicts)))

        if handlers is not None:
            if isinstance(handlers, list | tuple):
                for h in handlers:
                    self.bind_handlers(h)
            else:
                self.bind_handlers(handlers)

    # ------------------------------------------------------------------ identity

    @property
    def id(self) -> str:
        """The machine id."""
        return self._id

    @property
    def parent_id(self) -> str | None:
        """The parent machine's id, if any."""
        return self._parent_id

    @property
    def tags(self) -> list[str]:
        """The machine's tags (a copy)."""
        return list(self._tags)

    def set_tags(self, tags: Iterable[str]) -> None:
        """Replace the machine's tags."""
        self._tags = tuple(tags)

    @property
    def log_level(self) -> int:
        """The log level, 0 (nothing) to 5 (everything)."""
        return self._log_level

    @log_level.setter
    def log_level(self, level: int) -> None:
        if not 0 <= level <= 5:
            raise ValueError(f"log level is 0..5, got {level}")
        self._log_level = level

    @property
    def handler_timeout(self) -> float | None:
        """Seconds a handler may run before it counts as failed; ``None`` = no limit."""
        return self._handler_timeout

    @property
    def schema(self) -> Mapping[str, State]:
        """The normalized schema (read-only), ``Exception`` included."""
        return types.MappingProxyType(self._schema)

    @property
    def err_internal(self) -> deque[BaseException]:
        """Handler timeouts and other errors that do not become ``Exception``."""
        if self._err_internal is None:
            self._err_internal = deque(maxlen=100)
        return self._err_internal

    def _internal(self, exc: BaseException) -> None:
        self.err_internal.append(exc)

    def _root(self) -> Context:
        """The machine's root context (expires on dispose), made on first use."""
        ctx = self._root_ctx_
        if ctx is None:
            ctx = self._root_ctx_ = Context()
            if self._disposing:
                ctx.expire(f"machine {self._id!r} disposed")
        return ctx

    @property
    def epoch(self) -> str:
        """The clock lineage id; it changes when ticks may go backwards (import)."""
        if self._epoch is None:
            self._epoch = secrets.token_hex(4)
        return self._epoch

    @property
    def transition(self) -> Transition | None:
        """The transition being processed, or ``None`` outside of a drain."""
        return self._transition

    @property
    def is_disposed(self) -> bool:
        """True once :meth:`dispose` ran."""
        return self._disposed

    # ------------------------------------------------------------------ names

    def state_names(self) -> list[str]:
        """All state names in the machine's order (``Exception`` included)."""
        return list(self._names)

    def _parse(self, states: StatesArg) -> tuple[str, ...]:
        """Validate and de-duplicate state names [M1, M2]."""
        index = self._index
        if isinstance(states, str):
            if states not in index:
                raise StateUnknownError(states, self._id)
            return (states,)
        try:
            names = tuple(dict.fromkeys(states))
        except TypeError:
            raise TypeError(
                f"states must be a state name or an iterable of names, got {states!r}"
            ) from None
        unknown = [n for n in names if n not in index]
        if unknown:
            bad = [n for n in unknown if not isinstance(n, str)]
            if bad:
                raise TypeError(f"state names must be str, got {bad[0]!r}")
            raise StateUnknownError(unknown, self._id)
        return names

    def has(self, states: StatesArg) -> bool:
        """True if every named state is defined (unknown names give False)."""
        if self._disposed:
            return False
        if isinstance(states, str):
            return states in self._index
        return all(s in self._index for s in states)

    def index(self, state: str) -> int:
        """Position of *state* in :meth:`state_names`, or -1."""
        if self._disposed:
            return -1
        return self._index.get(state, -1)

    # ------------------------------------------------------------------ reading

    def is_active(self, states: StatesArg) -> bool:
        """True if all the named states are active."""
        if self._disposed:
            return False
        active = self._active_set
        if isinstance(states, str):
            if states not in self._index:
                raise StateUnknownError(states, self._id)
            return states in active
        return all(s in active for s in self._parse(states))

    def not_active(self, states: StatesArg) -> bool:
        """True if none of the named states is active."""
        if self._disposed:
            return False
        active = self._active_set
        return not any(s in active for s in self._parse(states))

    def any_active(self, *groups: StatesArg) -> bool:
        """True if any group has all its states active (each group is ``states``)."""
        if self._disposed:
            return False
        return any(self.is_active(g) for g in groups)

    def is_err(self) -> bool:
        """True while ``Exception`` is active."""
        return not self._disposed and EXCEPTION in self._active_set

    def err(self) -> BaseException | None:
        """The last error added (kept after ``Exception`` is removed)."""
        return self._err

    def active_states(self, states: StatesArg | None = None) -> list[str]:
        """The active states in state-name order, or those of *states* in its order."""
        if self._disposed:
            return []
        active = self._active_set
        if states is None:
            return [n for n in self._names if n in active]
        return [n for n in self._parse(states) if n in active]

    def switch(self, *groups: StatesArg) -> str:
        """The first active state among the given states/groups, or ``""``."""
        if self._disposed:
            return ""
        for g in groups:
            for s in self._parse(g):
                if s in self._active_set:
                    return s
        return ""

    def tick(self, state: str) -> int:
        """The tick of one state."""
        if self._disposed:
            return 0
        if state not in self._index:
            raise StateUnknownError(state, self._id)
        return self._clock[state]

    def clock(self, states: StatesArg | None = None) -> dict[str, int]:
        """Ticks as a dict, in state-name order or the order of *states* [C4]."""
        if self._disposed:
            return {}
        if states is None:
            return dict(self._clock)
        clock = self._clock
        return {s: clock[s] for s in self._parse(states)}

    def time(self, states: StatesArg | None = None) -> list[int]:
        """Ticks as a list, in state-name order or the order of *states* [C4]."""
        if self._disposed:
            return []
        if states is None:
            return list(self._clock.values())
        clock = self._clock
        return [clock[s] for s in self._parse(states)]

    def is_time(self, t: Sequence[int], states: StatesArg | None = None) -> bool:
        """True if every tick equals the one in *t* [C5]."""
        now = self.time(states)
        return len(now) == len(t) and all(a == b for a, b in zip(now, t, strict=True))

    def was_time(self, t: Sequence[int], states: StatesArg | None = None) -> bool:
        """True if every tick is ``>=`` the one in *t* [C5]."""
        now = self.time(states)
        return len(now) == len(t) and all(a >= b for a, b in zip(now, t, strict=True))

    def is_clock(self, clock: Mapping[str, int]) -> bool:
        """True if every state of *clock* has exactly that tick [C5]."""
        now = self.clock(list(clock))
        return all(now[s] == t for s, t in clock.items())

    def was_clock(self, clock: Mapping[str, int]) -> bool:
        """True if every state of *clock* has at least that tick [C5]."""
        now = self.clock(list(clock))
        return all(now[s] >= t for s, t in clock.items())

    def queue_tick(self) -> int:
        """The queue tick: starts at 1, +1 per appended mutation taken off the queue."""
        return self._queue_tick

    def machine_tick(self) -> int:
        """The machine tick: 0, or the imported machine tick + 1 after an import."""
        return self._machine_tick

    # ------------------------------------------------------------------ queue info

    def queue(self) -> list[Mutation]:
        """A copy of the queue."""
        return list(self._queue)

    def queue_len(self) -> int:
        """The number of queued mutations."""
        return len(self._queue)

    def is_queued(
        self,
        mutation_type: MutationType | str,
        states: StatesArg,
        *,
        without_args_only: bool = False,
        strict_equal: bool = False,
        min_queue_tick: int = 0,
        is_check: bool = False,
        position: int | None = None,
    ) -> int | None:
        """
        The index of the first queued mutation matching the filter, or ``None``.

        A mutation matches when it has the given type, its called states include
        *states* (or equal them as a set with ``strict_equal``), it has no args when
        ``without_args_only``, its queue tick is at least ``min_queue_tick``, its check
        flag equals ``is_check``, and (with ``position``) it sits at that index.
        """
        mtype = MutationType(mutation_type)
        wanted = set(self._parse(states))
        for i, m in enumerate(self._queue):
            if m.type is not mtype or m.is_check != is_check:
                continue
            if position is not None and i != position:
                continue
            if without_args_only and m.args:
                continue
            if min_queue_tick and m.queue_tick < min_queue_tick:
                continue
            called = set(m.called)
            if (called == wanted) if strict_equal else wanted <= called:
                return i
        return None

    def is_queued_above(
        self, n: int, mutation_type: MutationType | str, states: StatesArg
    ) -> bool:
        """True if more than *n* queued mutations match (type, states included)."""
        mtype = MutationType(mutation_type)
        wanted = set(self._parse(states))
        count = sum(
            1 for m in self._queue if m.type is mtype and wanted <= set(m.called)
        )
        return count > n

    def will_be(self, states: StatesArg) -> bool:
        """True if a queued ``add``/``set`` calls all of *states*."""
        wanted = set(self._parse(states))
        return any(
            not m.is_check and m.type is not REMOVE and wanted <= set(m.called)
            for m in self._queue
        )

    def will_be_removed(self, states: StatesArg) -> bool:
        """True if a queued ``remove`` calls all of *states*."""
        wanted = set(self._parse(states))
        return any(
            not m.is_check and m.type is REMOVE and wanted <= set(m.called)
            for m in self._queue
        )

    # ------------------------------------------------------------------ relations

    def relations_of(self, state: str) -> list[str]:
        """The kinds of relation *state* has, in the order add, require, remove, after."""
        st = self._schema[self._parse(state)[0]]
        return [k for k in ("add", "require", "remove", "after") if getattr(st, k)]

    def relations_between(self, from_state: str, to_state: str) -> list[str]:
        """The kinds of relation from *from_state* to *to_state* (fixed kind order)."""
        a = self._parse(from_state)[0]
        b = self._parse(to_state)[0]
        st = self._schema[a]
        return [k for k in ("add", "require", "remove", "after") if b in getattr(st, k)]

    # ------------------------------------------------------------------ mutations

    def add(
        self,
        states: StatesArg,
        args: Mapping[str, object] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """
        Activate *states* (keeping the active ones), resolving relations first.

        Returns:
            ``EXECUTED``, ``CANCELED`` or a queued :class:`Result` (``>= 2``) when called
            while the queue is being processed.

        Raises:
            StateUnknownError: a name is not in the schema (nothing is queued).
        """
        return self._enqueue(ADD, states, args, event)

    def remove(
        self,
        states: StatesArg,
        args: Mapping[str, object] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Deactivate *states*; same results and errors as :meth:`add`."""
        return self._enqueue(REMOVE, states, args, event)

    def set(
        self,
        states: StatesArg,
        args: Mapping[str, object] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Make *states* the active states; same results and errors as :meth:`add`."""
        return self._enqueue(SET, states, args, event)

    def toggle(
        self,
        states: StatesArg,
        args: Mapping[str, object] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """``remove`` if all *states* are active, else ``add`` (decided now) [10.5]."""
        if self._disposing:
            return CANCELED
        called = self._parse(states)
        active = self._active_set
        mtype = REMOVE if all(s in active for s in called) else ADD
        return self._enqueue(mtype, called, args, event)

    def add_err(
        self,
        err: BaseException | None,
        args: Mapping[str, object] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """Add the ``Exception`` state carrying *err* [E1]."""
        return self.add_err_state(EXCEPTION, err, args, event=event)

    def add_err_state(
        self,
        state: str,
        err: BaseException | None,
        args: Mapping[str, object] | None = None,
        *,
        event: Event | None = None,
    ) -> Result:
        """
        Add *state* together with ``Exception``, carrying *err* [E1].

        The args handlers see hold ``err`` (the exception) and ``err_trace`` (its
        formatted traceback). Returns CANCELED for ``None``, for task cancellation
        errors and while disposing.
        """
        if self._owner is not None and self._owner != threading.get_ident():
            self._foreign_thread_error()
        if self._disposing or err is None or _is_cancellation(err):
            return CANCELED
        called = self._parse((state, EXCEPTION))
        if len(self._queue) >= self.queue_limit:
            return CANCELED
        self._err = err
        self._call_on_error(err)
        a = dict(args) if args else {}
        a["err"] = err
        a["err_trace"] = "".join(traceback.format_exception(err))
        return self._enqueue(
            ADD, called, a, event, limit_carveout=False, validate=False
        )

    def can_add(
        self, states: StatesArg, args: Mapping[str, object] | None = None
    ) -> Result:
        """
        Check whether ``add(states)`` would be accepted, without applying anything.

        The check resolves relations and runs the negotiation handlers (their own
        mutations really happen). From a handler it is queued next (returns 2).
        """
        return self._check(ADD, states, args)

    def can_remove(
        self, states: StatesArg, args: Mapping[str, object] | None = None
    ) -> Result:
        """Check whether ``remove(states)`` would be accepted; see :meth:`can_add`."""
        return self._check(REMOVE, states, args)

    def can_set(
        self, states: StatesArg, args: Mapping[str, object] | None = None
    ) -> Result:
        """Check whether ``set(states)`` would be accepted; see :meth:`can_add`."""
        return self._check(SET, states, args)

    def _check(
        self, mtype: MutationType, states: StatesArg, args: Mapping[str, object] | None
    ) -> Result:
        if self._owner is not None and self._owner != threading.get_ident():
            self._foreign_thread_error()
        if self._disposing:
            return CANCELED
        called = self._parse(states)
        if self._args_models and mtype is not REMOVE:
            args = self._validate_args(called, args)
        mut = Mutation(mtype, called, dict(args) if args else {}, is_check=True)
        return self._prepend(mut)

    def _enqueue(
        self,
        mtype: MutationType,
        states: StatesArg,
        args: Mapping[str, object] | None,
        event: Event | None,
        *,
        limit_carveout: bool = True,
        validate: bool = True,
    ) -> Result:
        """Entry checks, de-duplication, append and drain [Q1]."""
        if self._owner is not None and self._owner != threading.get_ident():
            self._foreign_thread_error()
        if self._disposing:
            return CANCELED
        queue = self._queue
        if len(queue) >= self.queue_limit:
            # One Exception can always get in (and out) [Q1.2].
            named = [states] if isinstance(states, str) else list(states)
            has_exc = EXCEPTION in named
            exc_active = EXCEPTION in self._active_set
            if not (
                limit_carveout
                and event is None
                and has_exc
                and (
                    (mtype is ADD and not exc_active)
                    or (mtype is REMOVE and exc_active)
                )
            ):
                self._log(3, "[queue:limit] %s canceled", mtype)
                return CANCELED
        called = self._parse(states)
        if self._args_models and validate and mtype is not REMOVE:
            args = self._validate_args(called, args)
        if (
            not queue
            and not self._processing
            and not args
            and event is None
            and not self._hmap
            and not self._tr
            and self._log_level < 2
            and self.on_change is None
            and not self._wargs
            and not self._wqend
        ):
            return self._run_bare(mtype, called)
        active = self._active_set
        if (
            mtype is REMOVE
            and self._processing
            and not queue
            and not any(s in active for s in called)
        ):
            # The remove shortcut: nothing to remove, called from a handler [Q1.4].
            return EXECUTED
        if not args:
            multi = self._rel.multi
            if queue and not any(s in multi for s in called):
                # De-duplication [Q1.5].
                cset = set(called)
                for m in queue:
                    if (
                        m.type is mtype
                        and not m.args
                        and not m.is_check
                        and set(m.called) == cset
                    ):
                        if self._log_level >= 3:
                            self._log(
                                3,
                                "[queue:skipped] Duplicate detected for [%s] %s",
                                mtype,
                                " ".join(called),
                            )
                        return EXECUTED
            margs: dict[str, object] = {}
        else:
            margs = dict(args)
        self._pending += 1
        tick = self._queue_tick + self._pending
        source = None
        if event is not None:
            tx = event.transition
            source = (tx.machine.id, tx.id, sum(tx.clock_before.values()))
        mut = Mutation(mtype, called, margs, queue_tick=tick, source=source)
        queue.append(mut)
        if self._log_level >= 3:
            self._log(
                3, "[queue:%s] %s%s", mtype, " ".join(called), self._fmt_args(margs)
            )
        if "mutation_queued" in self._tr:
            self._trace("mutation_queued", self, mut)
        if self._processing:
            if self._log_level >= 3:
                n = len(queue)
                self._log(
                    3, "[postpone] queue running (%d item%s)", n, "" if n == 1 else "s"
                )
            return Result(tick)
        return self._drain()

    def _run_bare(self, mtype: MutationType, called: tuple[str, ...]) -> Result:
        """
        The fast path of one mutation on an idle, unobserved machine.

        "Unobserved": no handlers, tracers, ``when_args`` waiters, ``on_change`` or
        logging, so no Transition or Mutation object can be seen and none is made.
        State, tick and query waiters are checked here as after any transition
        [Q3, W1]. Everything else is
        the queued path's behaviour: the queue tick advances as if the mutation was
        appended and taken off [C6], the relations resolve to the same (cached) plan,
        ticks apply by C2, the active order becomes the target order [H10], state
        contexts expire [X3], the result is computed as in H13, and then the auto
        mutation runs [A1]. ``tests/test_conformance.py`` replays the recorded cases
        that need no handler behaviour through this path too.
        """
        self._queue_tick += 1
        self._tx_seq += 1
        before_set = self._active_set
        before_t = tuple(self._active)
        rel = self._rel
        plan = rel.plans.get((mtype, called, before_t))
        if plan is None:
            plan = self._plan(mtype, called, before_t, before_set, None, False)
        target_t, rejected, exits_t, enters_t = plan
        if rejected:  # [R10]
            if self._wtick:  # the queue tick moved: when_queue waiters [DEV-8]
                self._check_waiters()
            return CANCELED
        self._active = list(target_t)
        if exits_t or enters_t:
            if self._clock_shared:  # a Transition holds this dict: copy on write
                self._clock = dict(self._clock)
                self._clock_shared = False
            clock = self._clock
            for s in exits_t:
                clock[s] += 1
            for s in enters_t:
                clock[s] += 2 if s in before_set else 1
            active: _StrSet = set(target_t)
            self._active_set = active
            if self._state_ctxs:
                # done-callbacks are user code: their mutations queue, not nest
                self._processing = True
                try:
                    self._expire_state_ctxs(exits_t)
                    self._expire_state_ctxs(enters_t)
                finally:
                    self._processing = False
        else:
            active = before_set
        if mtype is REMOVE:
            res = EXECUTED if active.isdisjoint(called) else CANCELED
        else:
            res = EXECUTED if active.issuperset(target_t) else CANCELED
        if self._wby or self._wtick or self._wquery:  # a check point [Q3, W1]
            self._changed = (exits_t, enters_t) if exits_t or enters_t else None
            self._check_waiters()
        if (
            (exits_t or enters_t)
            and rel.auto_names
            and not (mtype is ADD and called in _HEALTH)
        ):
            self._queue_auto()  # prepends and drains
        if self._queue or self._dispose_deferred:
            self._drain()
        return res

    def _validate_args(
        self, called: tuple[str, ...], args: Mapping[str, object] | None
    ) -> Mapping[str, object] | None:
        """Validate args against the args models of the called states."""
        models = self._args_models
        for s in called:
            model = models.get(s)
            if model is not None:
                args = validate_args(s, model, args or {})
        return args

    def _prepend(self, mut: Mutation) -> Result:
        """Put *mut* at the head of the queue and drain, or return QUEUED [Q5]."""
        self._queue.insert(0, mut)
        if "mutation_queued" in self._tr:
            self._trace("mutation_queued", self, mut)
        if self._processing:
            return Result.QUEUED
        return self._drain()

    def _drain(self) -> Result:
        """Process the queue until it is empty; the first item's result [Q3]."""
        self._processing = True
        queue = self._queue
        first: Result | None = None
        try:
            while queue:
                mut = queue.pop(0)
                if mut.queue_tick:
                    self._queue_tick += 1
                    self._pending -= 1
                res = self._transition_run(mut)
                if first is None:
                    first = res
                if self._wby or self._wtick or self._wquery:
                    self._check_waiters()
        finally:
            self._transition = None
            self._processing = False
            if self._changed is not None and (self._wby or self._wtick or self._wquery):
                # e.g. catch_exceptions=False re-raised mid-drain: still a check point
                self._check_waiters()
            self._changed = None
            if "queue_end" in self._tr:
                self._trace("queue_end", self)
            if self._wqend:
                ws, self._wqend = self._wqend, []
                for w in ws:
                    w.resolve(True)
            if self._dispose_deferred:
                self._dispose_deferred = False
                self._do_dispose()
        return first if first is not None else EXECUTED

    # ------------------------------------------------------------------ transitions

    def _transition_run(self, mut: Mutation) -> Result:
        """Run one transition [H5-H13]."""
        rel = self._rel
        mtype = mut.type
        called = mut.called
        is_auto = mut.is_auto
        is_check = mut.is_check
        before = self._active
        before_set = self._active_set
        before_t = tuple(before)
        self._tx_seq += 1
        # Copy-on-write clocks: the transition keeps the current dict as its
        # clock_before; applying builds a new one (the dict is then never mutated).
        tx = Transition(self, self._tx_seq, mut, before_t, self._clock)
        self._clock_shared = True
        self._transition = tx
        log_level = self._log_level

        # H5: setup
        rlog = None
        if log_level >= 3:
            self._log_tx_start(mut)
            rlog = self._log_resolver
        target_t, rejected, exits_t, enters_t = self._plan(
            mtype, called, before_t, before_set, rlog, is_auto
        )
        target = list(target_t)
        accepted = True
        if rejected:
            if is_auto:
                accepted = len(rejected) < len(called)
            elif is_check:
                multi = rel.multi
                accepted = any(c in multi for c in called)
            else:
                accepted = False
            if not accepted and log_level >= 3:
                self._log(3, "[cancel:reject] %s", " ".join(rejected))
        tx.target = target
        tx.accepted = accepted
        if accepted:
            tx.exits = list(exits_t)
            tx.enters = list(enters_t)
        tr = self._tr
        if tr:
            if "transition_init" in tr:
                self._trace("transition_init", tx)
            if "transition_start" in tr:
                self._trace("transition_start", tx)

        failed: _HandlerFailed | None = None
        calls: _CallPlan | None = None
        # H6: negotiation
        if accepted:
            try:
                if self._hmap and not is_auto:
                    calls = self._call_plan(mtype, called, before_t, tx)
                    accepted = self._negotiate_planned(tx, calls[0])
                else:
                    accepted = self._negotiate(tx)
            except _HandlerFailed as f:
                accepted = False
                failed = f
            tx.accepted = accepted

        if is_check:  # H7
            return self._complete(tx, EXECUTED if accepted else CANCELED, failed)

        if is_auto and accepted:  # H8
            tset = set(tx.target)
            clean = tuple(c for c in called if c in tset)
            # Auto states called here are inactive, so re-resolving with only the
            # surviving called states gives the same enters as with all of them.
            target_t, _, exits_t, enters_t = self._plan(
                ADD, clean, before_t, before_set, rlog, is_auto
            )
            tx.target = list(target_t)
            tx.exits = list(exits_t)
            tx.enters = list(enters_t)

        has_changed = False
        if accepted:
            # H10: apply
            target = tx.target
            exits = tx.exits
            enters = tx.enters
            clock = self._clock = dict(self._clock)
            for s in exits:
                clock[s] += 1
            for s in enters:
                clock[s] += 2 if s in before_set else 1
            self._active = list(target)
            self._active_set = set(target)
            has_changed = bool(exits or enters)
            if has_changed:
                self._changed = (exits, enters)
                if self._state_ctxs:
                    self._expire_state_ctxs(exits)
                    self._expire_state_ctxs(enters)
            if log_level >= 2 and has_changed:
                self._log_changes(tx)
            if "transition_finals" in tr:
                self._trace("transition_finals", tx)
            # H11: final handlers (also run for when_args waiters [W5])
            if self._hmap or self._wargs:
                try:
                    if calls is not None and not self._wargs:
                        self._finals_planned(tx, calls[1])
                    else:
                        self._finals(tx)
                except _HandlerFailed as f:
                    failed = f
                    accepted = tx.accepted = False
            # the rollback (E4) only ever touches this transition's own new dict
            tx.clock_after = self._clock

        # H12
        if self.on_change is not None:  # also for canceled transitions [H12]
            try:
                self.on_change(self, tx.time_before, tx.time_after)
            except Exception as exc:  # noqa: BLE001 - user code: errors become state
                self._internal(exc)
                self._log(2, "[error] on_change raised %r", exc)
        if (
            accepted
            and has_changed
            and not is_auto
            and not (mtype is ADD and called in _HEALTH)
            and rel.auto_names
        ):
            self._queue_auto()

        # H13
        if not accepted:
            res = CANCELED
        elif mtype is REMOVE:
            active = self._active_set
            res = EXECUTED if active.isdisjoint(called) else CANCELED
        elif is_auto:
            res = EXECUTED if len(tx.target) > len(before) else CANCELED
        else:
            active = self._active_set
            res = EXECUTED if active.issuperset(tx.target) else CANCELED
        return self._complete(tx, res, failed)

    def _complete(
        self, tx: Transition, res: Result, failed: _HandlerFailed | None
    ) -> Result:
        tx.is_completed = True
        if tx.clock_after is None:
            tx.clock_after = tx.clock_before
        if "transition_end" in self._tr:
            self._trace("transition_end", tx)
        if failed is not None:
            self._handler_failed(tx, failed)
        return res

    def _plan(
        self,
        mtype: MutationType,
        called: tuple[str, ...],
        before: tuple[str, ...],
        before_set: _StrSet,
        log: Callable[[int, str], None] | None,
        is_auto: bool,
    ) -> _Plan:
        """
        Resolve a mutation: ``(target, rejected, exits, enters)`` [H5, R1-R11].

        The result depends only on the schema and on (type, called states, active
        states in order), so it is cached per schema; a workload that cycles through
        a few situations resolves each once. Logging runs uncached, as it reports the
        resolver's reasoning.
        """
        key = (mtype, called, before)
        rel = self._rel
        if log is None:
            plan = rel.plans.get(key)
            if plan is not None:
                return plan
        if mtype is ADD:
            to_set: list[str] = [*called, *before]
        elif mtype is REMOVE:
            to_set = [s for s in before if s not in called]
        else:
            to_set = list(called)
        target = rel.resolve(mtype is REMOVE, called, before_set, to_set, log, is_auto)
        tset = set(target)
        rejected = () if mtype is REMOVE else tuple(c for c in called if c not in tset)
        exits = [s for s in before if s not in tset]
        if len(exits) > 1:
            rel.sort_states(exits)
        multi = rel.multi
        enters = tuple(
            s for s in target if s not in before_set or (s in multi and s in called)
        )
        plan = (tuple(target), rejected, tuple(exits), enters)
        if log is None:
            if len(rel.plans) >= _PLAN_CACHE:
                rel.plans.clear()
            rel.plans[key] = plan
        else:
            implied = [s for s in target if s not in to_set]
            if implied:
                self._log(3, "[implied] %s", " ".join(implied))
        return plan

    def _negotiate(self, tx: Transition) -> bool:
        """Negotiation handlers [H6]; False when canceled."""
        hmap = self._hmap
        mut = tx.mutation
        is_auto = mut.is_auto
        target = tx.target
        if not hmap:
            return not (is_auto and not target)
        auto = self._rel.auto_names
        hn = self._hn
        call = self._caller()
        # 1. exits
        for s in tx.exits:
            fns = hmap.get(hn[s][1])
            if fns and not call(tx, hn[s][1], fns):
                return self._cancel(tx, hn[s][1])
        # 2. enters
        for s in tx.enters:
            fns = hmap.get(hn[s][0])
            if fns and not call(tx, hn[s][0], fns):
                if is_auto and s in auto:
                    if s in target:
                        target.remove(s)
                    continue
                return self._cancel(tx, hn[s][0])
        before = tx.states_before
        # 3. self handlers
        if mut.type is not REMOVE and before:
            for s in list(target):
                if s not in before:
                    continue
                name = hn[s][4]
                fns = hmap.get(name)
                if fns and not call(tx, name, fns):
                    if is_auto and s in auto:
                        if s in target:
                            target.remove(s)
                        continue
                    return self._cancel(tx, name, ":self")
        # 4. pairs
        pairs = self._pairs
        if pairs and before:
            snapshot = list(target)
            for b in before:
                pm = pairs.get(b)
                if not pm:
                    continue
                for t in snapshot:
                    if t == b:
                        continue
                    entry = pm.get(t)
                    if entry and not call(tx, entry[0], entry[1]):
                        if is_auto and t in auto:
                            if t in target:
                                target.remove(t)
                            continue
                        return self._cancel(tx, entry[0])
        # 5. an auto transition with nothing left
        if is_auto and not target:
            return False
        # 6. any_enter
        fns = hmap.get("any_enter")
        if fns and not call(tx, "any_enter", fns):
            return self._cancel(tx, "any_enter")
        return True

    def _call_plan(
        self,
        mtype: MutationType,
        called: tuple[str, ...],
        before: tuple[str, ...],
        tx: Transition,
    ) -> _CallPlan:
        """
        The handlers a non-auto transition calls, in order [H6, H11].

        Outside auto transitions nothing changes the target during negotiation, so
        the calls follow from the resolved plan and the bound handlers alone; they
        are cached with the plan's key until handlers are (un)bound or the schema
        changes. Only methods that exist are listed.
        """
        cache = self._call_plans
        if cache is None:
            cache = self._call_plans = {}
        key = (mtype, called, before)
        plan = cache.get(key)
        if plan is not None:
            return plan
        hmap = self._hmap
        hn = self._hn
        neg: list[tuple[str, _Fns, str]] = []
        for s in tx.exits:
            name = hn[s][1]
            if name in hmap:
                neg.append((name, hmap[name], ""))
        for s in tx.enters:
            name = hn[s][0]
            if name in hmap:
                neg.append((name, hmap[name], ""))
        target = tx.target
        if mtype is not REMOVE:
            for s in target:
                name = hn[s][4]
                if s in before and name in hmap:
                    neg.append((name, hmap[name], ":self"))
        for b in before:
            pm = self._pairs.get(b)
            if pm:
                for t in target:
                    entry = pm.get(t) if t != b else None
                    if entry:
                        neg.append((entry[0], entry[1], ""))
        if "any_enter" in hmap:
            neg.append(("any_enter", hmap["any_enter"], ""))
        fin: list[tuple[str, _Fns, int]] = []
        for s in tx.exits:
            name = hn[s][3]
            if name in hmap:
                fin.append((name, hmap[name], -1))
        for i, s in enumerate(tx.enters):
            name = hn[s][2]
            if name in hmap:
                fin.append((name, hmap[name], i))
        if "any_state" in hmap:
            fin.append(("any_state", hmap["any_state"], -1))
        plan = (tuple(neg), tuple(fin))
        if len(cache) >= _PLAN_CACHE:
            cache.clear()
        cache[key] = plan
        return plan

    def _negotiate_planned(
        self, tx: Transition, calls: tuple[tuple[str, _Fns, str], ...]
    ) -> bool:
        """Negotiation of a non-auto transition from its call plan [H6]."""
        call = self._caller()
        for name, fns, kind in calls:
            if not call(tx, name, fns):
                return self._cancel(tx, name, kind)
        return True

    def _finals_planned(
        self, tx: Transition, calls: tuple[tuple[str, _Fns, int], ...]
    ) -> None:
        """Final handlers from the call plan; rollback as in :meth:`_finals` [E4]."""
        call = self._caller()
        for name, fns, i in calls:
            try:
                call(tx, name, fns)
            except _HandlerFailed:
                if i >= 0:
                    self._rollback(tx, tx.enters[i:])
                raise

    def _cancel(self, tx: Transition, by: str, kind: str = "") -> bool:
        if self._log_level >= 3:
            self._log(3, "[cancel%s] (%s) by %s", kind, " ".join(tx.target), by)
        return False

    def _finals(self, tx: Transition) -> None:
        """Final handlers [H11]; raises _HandlerFailed after a rollback [E4]."""
        hmap = self._hmap
        hn = self._hn
        call = self._caller()
        for s in tx.exits:
            name = hn[s][3]
            fns = hmap.get(name)
            if fns:
                call(tx, name, fns)
        enters = tx.enters
        wargs = self._wargs
        for i, s in enumerate(enters):
            name = hn[s][2]
            fns = hmap.get(name)
            try:
                if fns:
                    call(tx, name, fns)
            except _HandlerFailed:
                if wargs and s in wargs:
                    self._check_args_waiters(s, tx.mutation.args)  # [W5, GO]
                self._rollback(tx, enters[i:])
                raise
            if wargs and s in wargs:
                self._check_args_waiters(s, tx.mutation.args)
        fns = hmap.get("any_state")
        if fns:
            call(tx, "any_state", fns)

    def _rollback(self, tx: Transition, states: list[str]) -> None:
        """Deactivate *states* again after a failed ``X_state`` [E4, DEV-5]."""
        clock = self._clock
        gone = set()
        for s in states:
            if s in self._active_set:
                clock[s] += 1
                gone.add(s)
        self._active = [s for s in self._active if s not in gone]
        self._active_set = self._active_set - gone
        if self._state_ctxs:
            self._expire_state_ctxs(gone)  # [DEV-10]
        if self._log_level >= 2 and gone:
            self._log(
                2, "[rollback] %s", " ".join("-" + s for s in states if s in gone)
            )

    def _caller(self) -> Callable[[Transition, str, _Fns], bool]:
        """The handler-calling function: the plain one unless something observes."""
        if self._tr or self._handler_timeout is not None or self._log_level >= 4:
            return self._call
        return self._call_plain

    @staticmethod
    def _call_plain(tx: Transition, name: str, fns: _Fns) -> bool:
        """:meth:`_call` without tracers, timeouts or logging to serve."""
        for _bid, fn in fns:
            try:
                ret = fn(Event(name, tx))
            except Exception as exc:  # noqa: BLE001 - user code: errors become state
                raise _HandlerFailed(name, exc) from None
            if ret is False:
                return False
        return True

    def _call(self, tx: Transition, name: str, fns: _Fns) -> bool:
        """Call every handler bound as *name*; False on the first rejection [H1, H3]."""
        tr = self._tr
        timeout = self._handler_timeout
        if self._log_level >= 4:
            self._log(4, "[handler] %s", name)
        for bid, fn in fns:
            ev = Event(name, tx)
            if tr and "handler_start" in tr:
                self._trace("handler_start", tx, bid, name)
            t0 = _time.monotonic() if timeout is not None else 0.0
            try:
                ret = fn(ev)
            except Exception as exc:  # noqa: BLE001 - user code: errors become state
                if tr and "handler_end" in tr:
                    self._trace("handler_end", tx, bid, name)
                raise _HandlerFailed(name, exc) from None
            if tr and "handler_end" in tr:
                self._trace("handler_end", tx, bid, name)
            if timeout is not None and _time.monotonic() - t0 > timeout:
                raise _HandlerFailed(name, None)
            if ret is False:
                return False
        return True

    def _handler_failed(self, tx: Transition, failed: _HandlerFailed) -> None:
        """Handle a handler exception or timeout once *tx* is complete [E3-E6]."""
        if failed.exc is None:
            err = HandlerTimeoutError(
                f"handler {failed.name!r} ran over {self._handler_timeout}s"
            )
            self._internal(err)
            self._log(3, "[cancel] (%s) by timeout", " ".join(tx.target))
            return
        exc = failed.exc
        self._err = exc
        self._log(3, "[cancel] (%s) by recover", " ".join(tx.target))
        if not self.catch_exceptions:
            # E6: keep the queue, end the drain, re-raise from the draining call.
            raise exc
        self._call_on_error(exc)
        mut = tx.mutation
        if EXCEPTION in mut.called:
            # No nested Exception: cancel/rollback and keep working [E5, DEV-6].
            self._log(
                2, "[error] %s raised while adding Exception: %r", failed.name, exc
            )
            return
        args: dict[str, object] = {
            "err": exc,
            "err_trace": "".join(traceback.format_exception(exc)),
            "panic": {
                "called_states": list(mut.called),
                "states_before": list(tx.states_before),
                "transition": tx,
                "handler": failed.name,
            },
        }
        self._prepend(Mutation(ADD, (EXCEPTION,), args))

    def _queue_auto(self) -> None:
        """Prepend the auto mutation, if any auto state can activate [A1, A2]."""
        active = self._active_set
        removed_by = self._rel.removed_by
        called = tuple(
            s
            for s in self._rel.auto_names
            if s not in active and not any(b in active for b in removed_by.get(s, ()))
        )
        if not called:
            return
        if self._log_level >= 3:
            self._log(3, "[auto] %s", " ".join(called))
        self._prepend(Mutation(ADD, called, {}, is_auto=True))

    # ------------------------------------------------------------------ errors

    def _call_on_error(self, err: BaseException) -> None:
        if self.on_error is None:
            return
        try:
            self.on_error(self, err)
        except Exception as exc:  # noqa: BLE001 - user code: errors become state
            self._internal(exc)
            self._log(2, "[error] on_error raised %r", exc)

    # ------------------------------------------------------------------ handlers

    def bind_handlers(self, obj: object) -> int:
        """
        Bind the handler methods of *obj*; returns a binding id for
        :meth:`detach_handlers`.

        Raises:
            TypeError: a handler is a coroutine function.
        """
        fns = scan_handlers(obj, self._index)
        self._binding_seq += 1
        bid = self._binding_seq
        self._bindings[bid] = _Binding(bid, obj, fns)
        self._rebuild_handlers()
        first = not self._ever_bound
        self._ever_bound = True
        if self._log_level >= 3:
            self._log(3, "[bind] %s (%d handlers)", type(obj).__name__, len(fns))
        if first and self._err is not None and EXCEPTION in self._active_set:
            # Go's first binding re-adds the pending error [S9].
            self.add_err(self._err)
        return bid

    def detach_handlers(self, binding_id: int) -> None:
        """Unbind the handlers bound under *binding_id*."""
        if self._bindings.pop(binding_id, None) is None:
            raise KeyError(f"no handler binding {binding_id}")
        self._rebuild_handlers()

    def _build_handler_names(self) -> None:
        self._hn = _handler_names(tuple(self._names))

    def _rebuild_handlers(self) -> None:
        self._build_handler_names()
        self._call_plans = None
        hmap: dict[str, list[tuple[int, Handler]]] = {}
        for b in self._bindings.values():
            for name, fn in b.fns.items():
                hmap.setdefault(name, []).append((b.id, fn))
        self._hmap = {k: tuple(v) for k, v in hmap.items()}
        pairs: dict[str, dict[str, tuple[str, _Fns]]] = {}
        index = self._index
        for name, fns in self._hmap.items():
            head, _, tail = name.partition("_")
            if tail in index and head != tail:
                pairs.setdefault(head, {})[tail] = (name, fns)
        self._pairs = pairs

    # ------------------------------------------------------------------ tracers

    def add_tracer(self, tracer: object) -> None:
        """Attach a tracer (see :class:`TracerNoOp` for the hooks)."""
        if tracer not in self._tracers:
            self._tracers = (*self._tracers, tracer)
            self._tr = tracer_hooks(list(self._tracers))

    bind_tracer = add_tracer

    def detach_tracer(self, tracer: object) -> None:
        """Detach a tracer."""
        if tracer not in self._tracers:
            raise ValueError(f"{tracer!r} is not a tracer of machine {self._id!r}")
        self._tracers = tuple(t for t in self._tracers if t is not tracer)
        self._tr = tracer_hooks(list(self._tracers)) if self._tracers else _NO_HOOKS

    @property
    def tracers(self) -> list[object]:
        """The attached tracers (a copy)."""
        return list(self._tracers)

    def _trace(self, hook: str, *args: object) -> None:
        for fn in list(self._tr.get(hook, ())):
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - user code: errors become state
                self._disable_hook(hook, fn, exc)

    def _disable_hook(
        self, hook: str, fn: Callable[..., object], exc: BaseException
    ) -> None:
        hook_failed(fn, exc)
        self._internal(exc)
        fns = self._tr.get(hook)
        if fns and fn in fns:
            fns.remove(fn)
            if not fns:
                del self._tr[hook]

    # ------------------------------------------------------------------ logging

    def log(self, msg: str, *args: object) -> None:
        """Log an external message (level 1, prefixed ``[exter]``)."""
        if self._log_level >= 1:
            self._log(1, "[exter] " + msg, *args)

    def _log(self, level: int, msg: str, *args: object) -> None:
        if level <= self._log_level:
            self.logger.log(
                _PY_LEVELS.get(level, logging.DEBUG), "[%s] " + msg, self._id5, *args
            )

    def _log_resolver(self, level: int, msg: str) -> None:
        self._log(level, "%s", msg)

    def _fmt_args(self, args: Mapping[str, object]) -> str:
        if not args:
            return ""
        mapped = self.log_args(args)
        if not mapped:
            return ""
        return " (" + " ".join(f"{k}={mapped[k]}" for k in sorted(mapped)) + ")"

    def _log_tx_start(self, mut: Mutation) -> None:
        kind = f"{mut.type}:auto" if mut.is_auto else str(mut.type)
        if mut.is_check:
            kind += ":check"
        level = 4 if mut.is_auto else 3
        self._log(
            level, "[%s] %s%s", kind, " ".join(mut.called), self._fmt_args(mut.args)
        )

    def _log_changes(self, tx: Transition) -> None:
        prefix = "auto_" if tx.mutation.is_auto else "state"
        parts = [f"+{s}" for s in tx.enters] + [f"-{s}" for s in tx.exits]
        self._log(2, "[%s] %s%s", prefix, " ".join(parts), self._fmt_args(tx.args))

    # ------------------------------------------------------------------ strings

    def __str__(self) -> str:
        if self._disposed:
            return ""
        active = self._active_set
        clock = self._clock
        return (
            "(" + " ".join(f"{n}:{clock[n]}" for n in self._names if n in active) + ")"
        )

    def string_all(self) -> str:
        """Active states in ``()``, then inactive ones in ``[]``, with ticks."""
        if self._disposed:
            return ""
        active = self._active_set
        clock = self._clock
        on = " ".join(f"{n}:{clock[n]}" for n in self._names if n in active)
        off = " ".join(f"{n}:{clock[n]}" for n in self._names if n not in active)
        return f"({on}) [{off}]"

    def inspect(self, states: StatesArg | None = None) -> str:
        """A multi-line dump of states, ticks and relations [10.8]."""
        if self._disposed:
            return ""
        names = self._names if states is None else list(self._parse(states))
        out = []
        for n in names:
            st = self._schema[n]
            out.append(f"{1 if n in self._active_set else 0} {n}\n")
            out.append(f"    |{'Tick'.ljust(9)}{self._clock[n]}\n")
            if st.auto:
                out.append(f"    |{'Auto'.ljust(9)}true\n")
            if st.multi:
                out.append(f"    |{'Multi'.ljust(9)}true\n")
            for label, rel in (
                ("Add", st.add),
                ("Require", st.require),
                ("Remove", st.remove),
                ("After", st.after),
            ):
                if rel:
                    out.append(f"    |{label.ljust(9)}{' '.join(rel)}\n")
        return "".join(out)

    def __repr__(self) -> str:
        return f"<Machine id={self._id!r} {self}>"

    # ------------------------------------------------------------------ export

    def export(self) -> dict[str, object]:
        """
        The machine's clocks as a JSON/msgpack-friendly dict with the keys ``id``,
        ``state_names``, ``time``, ``queue_tick`` and ``machine_tick`` [10.6].

        Raises:
            SchemaError: the state order is not explicit (pass ``names=`` to the
                constructor or ``set_schema``, or import first), as in the Go original:
                exported ticks are only meaningful against a fixed order.
        """
        if not self._explicit_names:
            raise SchemaError(
                f"machine {self._id!r}: export() needs an explicit state order; "
                "pass names= to the constructor (call VerifyStates first, in Go terms)"
            )
        return {
            "id": self._id,
            "state_names": list(self._names),
            "time": list(self._clock.values()),
            "queue_tick": self._queue_tick,
            "machine_tick": self._machine_tick,
        }

    @classmethod
    def from_export(
        cls,
        data: Mapping[str, object],
        schema: SchemaLike,
        *,
        handlers: object | Sequence[object] | None = None,
        **options: object,
    ) -> Machine:
        """
        Build a machine from :meth:`export` data and a schema; the id and state order
        come from *data*, *options* are passed to the constructor.
        """
        names = _export_names(data)
        mid = data.get("id")
        if not isinstance(mid, str):
            raise ExportError(f"export data needs a str 'id', got {mid!r}")
        try:
            mach = cls(schema, handlers=handlers, id=mid, names=names, **options)  # type: ignore[arg-type]
        except SchemaError as exc:
            raise ExportError(f"export data does not fit the schema: {exc}") from exc
        mach.import_(data)
        return mach

    def import_(self, data: Mapping[str, object]) -> None:
        """
        Restore clocks exported by :meth:`export` into this machine [10.6].

        Sets every tick, activates the states with odd ticks (in the exported order),
        adopts the exported state order and sets the machine tick to the exported one
        + 1. The queue tick is kept. No handlers run; a ``MachineRestored`` state, if
        defined, is added afterwards.

        Raises:
            ExportError: the data is malformed, its id differs or its states do not
                match the schema.
            RuntimeError: called during a transition.
        """
        if self._processing:
            raise RuntimeError("import_() cannot run during a transition")
        mid = data.get("id")
        if mid != self._id:
            raise ExportError(
                f"export id {mid!r} does not match machine id {self._id!r}"
            )
        names = _export_names(data)
        ticks = data.get("time")
        if (
            not isinstance(ticks, list | tuple)
            or len(ticks) != len(names)
            or not all(
                isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ticks
            )
        ):
            raise ExportError("export 'time' must list one tick (int >= 0) per state")
        mtick = data.get("machine_tick", 0)
        if not isinstance(mtick, int) or isinstance(mtick, bool) or mtick < 0:
            raise ExportError(
                f"export 'machine_tick' must be an int >= 0, got {mtick!r}"
            )
        if len(names) != len(self._schema):
            raise ExportError(
                f"export has {len(names)} states, the schema has {len(self._schema)}"
            )
        try:
            order = resolve_names(self._schema, names)
        except SchemaError as exc:
            raise ExportError(str(exc)) from exc
        self._set_order(order)
        self._clock = {n: int(t) for n, t in zip(order, ticks, strict=True)}
        self._clock = {n: self._clock[n] for n in self._names}
        self._active = [n for n in order if self._clock[n] % 2 == 1]
        self._active_set = set(self._active)
        self._machine_tick = mtick + 1
        self._epoch = secrets.token_hex(4)
        self._log(2, "[import] %s", self)
        if self._state_ctxs:
            self._expire_state_ctxs(list(self._state_ctxs))
        if self._wby or self._wquery:
            self._changed = ([], list(self._names))
            self._check_waiters()
            self._changed = None
        if "verify_states" in self._tr:
            self._trace("verify_states", self)
        if "MachineRestored" in self._index:
            self.add("MachineRestored")

    def _set_order(self, order: list[str]) -> None:
        self._names = order
        self._explicit_names = True
        self._index = {n: i for i, n in enumerate(order)}
        self._clock = {n: self._clock.get(n, 0) for n in order}
        self._rel = Relations(self._schema, order)
        self._build_handler_names()
        self._call_plans = None

    # ------------------------------------------------------------------ mirrors

    def _apply_mirror(
        self,
        time: Sequence[int],
        queue_tick: int,
        machine_tick: int,
        *,
        mutation_type: MutationType = SET,
        called: Sequence[str] | None = None,
    ) -> Transition:
        """
        Overwrite the clocks with *time* (state-name order), as a mirror does.

        Runs one synthetic transition: tracers see it (``type`` ``set`` and the active
        states as called, unless given), bound ``X_end``/``X_state``/``any_state``
        handlers are notified (they cannot veto; their errors are only logged), state
        contexts of changed states expire and waiters are checked. Ticks may go down
        (a reset). No relations are resolved and nothing is queued.

        Raises:
            RuntimeError: called while the queue is being processed.
            ValueError: *time* does not have one tick per state.
        """
        if self._processing:
            raise RuntimeError("a mirror cannot be updated during a transition")
        names = self._names
        if len(time) != len(names):
            raise ValueError(f"expected {len(names)} ticks, got {len(time)}")
        before = tuple(self._active)
        before_set = self._active_set
        clock_before = self._clock  # replaced below, never mutated
        queue_reset = queue_tick < self._queue_tick
        new_clock = dict(zip(names, (int(t) for t in time), strict=True))
        changed = [n for n in names if new_clock[n] != clock_before[n]]
        active = [n for n in names if new_clock[n] % 2 == 1]
        exits = [n for n in changed if n in before_set and new_clock[n] % 2 == 0]
        enters = [n for n in changed if new_clock[n] % 2 == 1]
        self._tx_seq += 1
        mut = Mutation(
            mutation_type, tuple(called) if called is not None else tuple(active), {}
        )
        tx = Transition(self, self._tx_seq, mut, before, clock_before)
        tx.target = active
        tx.exits = exits
        tx.enters = enters
        self._processing = True
        self._transition = tx
        try:
            self._clock = new_clock
            self._active = active
            self._active_set = set(active)
            self._queue_tick = queue_tick
            self._machine_tick = machine_tick
            tx.clock_after = dict(new_clock)
            tr = self._tr
            for hook in ("transition_init", "transition_start", "transition_finals"):
                if hook in tr:
                    self._trace(hook, tx)
            if self._state_ctxs and changed:
                self._expire_state_ctxs(changed)
            if self._hmap:
                self._notify_mirror_handlers(tx)
            tx.is_completed = True
            if "transition_end" in tr:
                self._trace("transition_end", tx)
            if changed and self._log_level >= 2:
                self._log_changes(tx)
        finally:
            self._transition = None
            self._processing = False
        if queue_reset and self._wtick:
            # the mirrored queue tick went down (a reset): flush its waiters
            ws, self._wtick = self._wtick, []
            for w, _tick in ws:
                w.resolve(True)
        if self._wby or self._wtick or self._wquery:
            self._changed = (changed, [])
            self._check_waiters()
        return tx

    def _notify_mirror_handlers(self, tx: Transition) -> None:
        hmap = self._hmap
        hn = self._hn
        names = [hn[s][3] for s in tx.exits] + [hn[s][2] for s in tx.enters]
        for name in [*names, "any_state"]:
            fns = hmap.get(name)
            if not fns:
                continue
            try:
                self._call(tx, name, fns)
            except _HandlerFailed as f:
                err = f.exc if f.exc is not None else HandlerTimeoutError(name)
                self._internal(err)
                self._log(2, "[error] mirror handler %s raised %r", name, err)

    # ------------------------------------------------------------------ schema change

    def set_schema(
        self, schema: SchemaLike | type[Schema], names: Iterable[str] | None = None
    ) -> None:
        """
        Replace the schema with one that has more states [10.7].

        Existing ticks and active states are kept; new states start at tick 0. *names*
        is the new state order (every state, ``Exception`` included); by default the
        current order followed by the new states alphabetically.

        Raises:
            SchemaError: the new schema is invalid, has a require-remove conflict, drops
                a state or does not grow; the old schema stays in place.
            RuntimeError: called during a transition.
        """
        if self._processing:
            raise RuntimeError("set_schema() cannot run during a transition")
        schema, models = _unpack_schema(schema)
        normalized, conflicts = normalize_schema(schema)
        if conflicts:
            raise SchemaError("; ".join(conflicts))
        missing = [n for n in self._schema if n not in normalized]
        if missing:
            raise SchemaError(
                f"set_schema cannot drop states: missing {', '.join(map(repr, missing))}"
            )
        if len(normalized) <= len(self._schema):
            raise SchemaError(
                "set_schema needs more states than the current schema "
                f"({len(normalized)} <= {len(self._schema)})"
            )
        if names is None:
            new = sorted(n for n in normalized if n not in self._index)
            order = [*self._names, *new]
        else:
            order = resolve_names(normalized, names)
        old = {n: st.to_dict() for n, st in self._schema.items()}
        self._schema = normalized
        self._args_models = models
        self._set_order(order)
        self._explicit_names = names is not None or self._explicit_names
        for b in self._bindings.values():
            b.fns = scan_handlers(b.obj, self._index)
        self._rebuild_handlers()
        self._log(2, "[schema] %d states", len(order))
        if "schema_change" in self._tr:
            self._trace("schema_change", self, old)

    # ------------------------------------------------------------------ event loop

    def _foreign_thread_error(self) -> None:
        raise RuntimeError(
            f"machine {self._id!r} belongs to the event loop of another thread; "
            "from this thread use add_threadsafe() and the other *_threadsafe methods"
        )

    def _bind_loop(self) -> None:
        """
        Bind the machine to the running event loop (first async use) [api.md].

        Raises:
            RuntimeError: no event loop runs here, or the machine belongs to the loop
                of another thread.
        """
        ident = threading.get_ident()
        if self._owner is not None and self._owner != ident:
            self._foreign_thread_error()
        if self._foreign is None:
            self._foreign = deque()
        key: object
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            try:
                import trio
            except ImportError:  # pragma: no cover - trio is optional
                raise RuntimeError(
                    "asyncmachine's async API needs a running event loop"
                ) from None
            try:
                token = trio.lowlevel.current_trio_token()
            except RuntimeError:
                raise RuntimeError(
                    "asyncmachine's async API needs a running event loop"
                ) from None
            if token is not self._loop_key:
                self._loop_key = token
                self._wake = partial(token.run_sync_soon, self._run_foreign)
                self._wake_scheduled = False
                self._new_event = trio.Event
        else:
            key = loop
            if key is not self._loop_key:
                self._loop_key = key
                self._wake = partial(loop.call_soon_threadsafe, self._run_foreign)
                self._wake_scheduled = False
                self._new_event = partial(LoopEvent, loop)
        self._owner = ident

    # ------------------------------------------------------------------ contexts

    def new_state_ctx(self, state: str) -> StateContext:
        """
        A context that expires the next time *state*'s tick changes [X1-X6].

        There is at most one live context per state: while it lives, the same object
        is returned. For an inactive state it stays live until the state activates.
        After disposal the returned context is already expired [DEV-11].
        """
        name = self._parse(state)[0]
        ctx = self._state_ctxs.get(name)
        if ctx is not None:
            return ctx
        if self._disposing:
            ctx = StateContext(self, name, 0, None)
            ctx.expire(f"machine {self._id!r} disposed")
            return ctx
        ctx = StateContext(self, name, self._clock[name], self._root())
        self._state_ctxs[name] = ctx
        return ctx

    def _expire_state_ctxs(self, states: Iterable[str]) -> None:
        ctxs = self._state_ctxs
        for s in states:
            ctx = ctxs.pop(s, None)
            if ctx is not None:
                ctx.expire(
                    f"state {s!r} changed at tick {self._clock[s]} "
                    f"(context of tick {ctx.tick})"
                )

    # ------------------------------------------------------------------ waiting

    def _check_waiters(self) -> None:
        """Resolve waiters whose condition holds now [W1]."""
        changed = self._changed
        self._changed = None
        wby = self._wby
        if changed is not None and wby:
            for states in changed:
                for s in states:
                    ws = wby.get(s)
                    if ws:
                        for w in list(ws):
                            if not w.done and w.check is not None and w.check():
                                w.resolve(True)
        if self._wtick:
            qt = self._queue_tick
            for w, tick in list(self._wtick):
                if qt >= tick:
                    w.resolve(True)
        if self._wquery:
            for w in list(self._wquery):
                if not w.done and w.check is not None and w.check():
                    w.resolve(True)

    def _check_args_waiters(self, state: str, args: Mapping[str, object]) -> None:
        for w, expected in list(self._wargs.get(state, ())):
            if all(args.get(k) == v for k, v in expected.items()):
                w.resolve(True)

    def _resolve_all_waiters(self) -> None:
        waiters: list[Waiter] = [w for ws in self._wby.values() for w in ws]
        waiters += [w for w, _ in self._wtick]
        waiters += self._wquery
        waiters += [w for ws in self._wargs.values() for w, _ in ws]
        waiters += self._wqend
        for w in waiters:
            w.resolve(False)

    async def _await(
        self, w: Waiter, ctx: Context | None, remove: Callable[[], None]
    ) -> bool:
        w.bind_ctx(ctx)
        try:
            await w.event.wait()
        finally:
            w.resolve(False)  # no-op when resolved; detaches the ctx callback
            remove()
        return w.result

    def _wait_states(
        self, states: tuple[str, ...], check: Callable[[], bool], ctx: Context | None
    ) -> Awaitable[bool]:
        w = Waiter(check, states, self._new_event())
        wby = self._wby
        for s in states:
            wby.setdefault(s, []).append(w)

        def remove() -> None:
            for s in states:
                ws = wby.get(s)
                if ws is not None:
                    with contextlib.suppress(ValueError):
                        ws.remove(w)
                    if not ws:
                        del wby[s]

        return self._await(w, ctx, remove)

    def _wait_gate(
        self, states: StatesArg | None, ctx: Context | None
    ) -> tuple[str, ...] | bool:
        """Common entry of the waits: parse, bind, disposed and ctx checks."""
        names = self._parse(states) if states is not None else ()
        self._bind_loop()
        if self._disposing or (ctx is not None and ctx.expired):
            return False
        return names

    async def when(self, states: StatesArg, *, ctx: Context | None = None) -> bool:
        """
        Wait until all *states* are active [W2].

        Returns:
            ``True`` when they are (at once if they already are); ``False`` if *ctx*
            expired or the machine was disposed.

        Raises:
            StateUnknownError: a name is not in the schema.
        """
        names = self._parse(states)
        self._bind_loop()
        if self._disposing or (ctx is not None and ctx.expired):
            return False
        if self._active_set.issuperset(names):
            return True

        def check() -> bool:
            return self._active_set.issuperset(names)

        return await self._wait_states(names, check, ctx)

    async def when_not(self, states: StatesArg, *, ctx: Context | None = None) -> bool:
        """Wait until none of *states* is active; see :meth:`when` [W2]."""
        names = self._wait_gate(states, ctx)
        if names is False or names is True:
            return False

        def check() -> bool:
            active = self._active_set
            return not any(s in active for s in names)

        if check():
            return True
        return await self._wait_states(names, check, ctx)

    async def when_time(
        self, states: StatesArg, ticks: Sequence[int], *, ctx: Context | None = None
    ) -> bool:
        """
        Wait until ``tick(states[i]) >= ticks[i]`` for every i [W3].

        Raises:
            ValueError: the lists are empty or differ in length.
            StateUnknownError: a name is not in the schema.
        """
        names = self._parse(states)
        wanted = list(ticks)
        if not names or len(names) != len(wanted):
            raise ValueError(
                f"when_time needs one tick per state: {len(names)} states, "
                f"{len(wanted)} ticks"
            )
        gate = self._wait_gate(names, ctx)
        if gate is False:
            return False
        clock = self._clock
        pairs = tuple(zip(names, wanted, strict=True))

        def check() -> bool:
            clock = self._clock
            return all(clock[s] >= t for s, t in pairs)

        if all(clock[s] >= t for s, t in pairs):
            return True
        return await self._wait_states(names, check, ctx)

    async def when_ticks(
        self, state: str, n: int, *, ctx: Context | None = None
    ) -> bool:
        """Wait until *state*'s tick grew by *n* from now [W3]."""
        name = self._parse(state)[0]
        return await self.when_time((name,), (self._clock[name] + n,), ctx=ctx)

    async def when_err(self, *, ctx: Context | None = None) -> bool:
        """Wait until ``Exception`` is active [E2, W6]."""
        return await self.when(EXCEPTION, ctx=ctx)

    async def when_args(
        self,
        state: str,
        args: Mapping[str, object] | DumpableArgs,
        *,
        ctx: Context | None = None,
    ) -> bool:
        """
        Wait for an ``X_state`` event of *state* whose args contain *args* [W5].

        Every expected key must be present with an equal value (a missing key counts
        as ``None``); extra keys are fine. Never resolves at once, even if the state
        is active.
        """
        name = self._parse(state)[0]
        expected = dict(
            args if isinstance(args, Mapping) else args.model_dump(exclude_unset=True)
        )
        if self._wait_gate(None, ctx) is False:
            return False
        w = Waiter(None, (name,), self._new_event())
        entry = (w, expected)
        if self._hn is _NO_NAMES:
            self._build_handler_names()  # the final phase runs for these waiters
        self._wargs.setdefault(name, []).append(entry)

        def remove() -> None:
            ws = self._wargs.get(name)
            if ws is not None:
                with contextlib.suppress(ValueError):
                    ws.remove(entry)
                if not ws:
                    del self._wargs[name]

        return await self._await(w, ctx, remove)

    async def when_query(
        self, fn: Callable[[dict[str, int]], bool], *, ctx: Context | None = None
    ) -> bool:
        """Wait until ``fn(clock)`` is true at a check point (not checked now) [W4]."""
        if self._wait_gate(None, ctx) is False:
            return False
        w = Waiter(lambda: bool(fn(dict(self._clock))), (), self._new_event())
        self._wquery.append(w)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._wquery.remove(w)

        return await self._await(w, ctx, remove)

    async def when_queue(self, tick: int, *, ctx: Context | None = None) -> bool:
        """Wait until the queue tick reaches *tick* (e.g. a queued :class:`Result`) [Q8]."""
        if self._wait_gate(None, ctx) is False:
            return False
        if self._queue_tick >= tick:
            return True
        w = Waiter(None, (), self._new_event())
        entry = (w, int(tick))
        self._wtick.append(entry)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._wtick.remove(entry)

        return await self._await(w, ctx, remove)

    async def when_queue_end(self, *, ctx: Context | None = None) -> bool:
        """Wait until the running drain empties the queue (at once if idle) [Q8]."""
        if self._wait_gate(None, ctx) is False:
            return False
        if not self._processing:
            return True
        w = Waiter(None, (), self._new_event())
        self._wqend.append(w)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._wqend.remove(w)

        return await self._await(w, ctx, remove)

    async def when_disposed(self) -> bool:
        """Wait until the machine is disposed; returns ``True`` [W6]."""
        self._bind_loop()
        if self._disposed:
            return True
        w = Waiter(None, (), self._new_event())
        self._wdisposed.append(w)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._wdisposed.remove(w)

        return await self._await(w, None, remove)

    # ------------------------------------------------------------------ tasks

    async def __aenter__(self) -> Self:
        """Start the machine's runtime: a task group for :meth:`fork` and :meth:`go`."""
        self._bind_loop()
        if self._tg is not None:
            raise RuntimeError(f"machine {self._id!r} is already running")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Cancel and await every task of the machine."""
        tg = self._tg
        assert tg is not None
        tg.cancel_scope.cancel(f"machine {self._id!r} runtime exited")
        # The body's exception is not handed to the task group, so it leaves
        # `async with mach:` as it was raised, never inside an ExceptionGroup.
        try:
            await tg.__aexit__(None, None, None)
            return None
        except BaseExceptionGroup as group:
            leaves = group.exceptions
            if len(leaves) == 1 and isinstance(leaves[0], Exception):
                raise leaves[0] from None
            raise
        finally:
            self._tg = None
            self._run_foreign()

    def go(
        self,
        fn: Callable[..., Awaitable[object]],
        *args: object,
        ctx: Context | None = None,
    ) -> bool:
        """
        Run ``fn(*args)`` as a task of the machine (inside ``async with mach:``).

        The task is skipped if *ctx* already expired and cancelled when it expires or
        the machine is disposed; its exceptions become ``add_err`` [E7, 10.9].

        Returns:
            ``True`` if the task was started.

        Raises:
            RuntimeError: outside ``async with mach:``.
        """
        if self._owner is not None and self._owner != threading.get_ident():
            self._foreign_thread_error()
        tg = self._tg
        if tg is None:
            raise RuntimeError(
                f"machine {self._id!r} has no runtime: use `async with mach:` "
                "before mach.go() / mach.fork()"
            )
        if self._disposing or (ctx is not None and ctx.expired):
            return False
        tg.start_soon(
            self._run_task, fn, args, ctx, name=getattr(fn, "__qualname__", None)
        )
        return True

    def fork(
        self,
        e: Event,
        fn: Callable[..., Awaitable[object]],
        *args: object,
        ctx: Context | None = None,
    ) -> bool:
        """Like :meth:`go`, but skipped when the event *e* is no longer valid [10.9]."""
        if self._tg is None:
            return self.go(fn, *args, ctx=ctx)  # raises the RuntimeError
        if not e.is_valid():
            return False
        return self.go(fn, *args, ctx=ctx)

    async def _run_task(
        self,
        fn: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
        ctx: Context | None,
    ) -> None:
        with anyio.CancelScope() as cs:
            handles: list[tuple[Context, int]] = []
            for c in (self._root(), ctx):
                if c is None:
                    continue
                if c.expired:
                    return
                handles.append((c, c.add_done_callback(lambda c: cs.cancel(c.reason))))
            try:
                await fn(*args)
            except Exception as exc:  # noqa: BLE001 - task errors become state [E7]
                if not self._disposing:
                    self.add_err(exc)
            finally:
                for c, h in handles:
                    c.remove_done_callback(h)

    @contextlib.contextmanager
    def catch_err(self, state: str = EXCEPTION) -> Generator[None]:
        """
        ``with mach.catch_err():`` turns an exception of the block into
        ``add_err_state(state, err)`` instead of raising it [E7].
        """
        name = self._parse(state)[0]
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - errors become state [E7]
            self.add_err_state(name, exc)

    # ------------------------------------------------------------------ eval

    def eval(self, fn: Callable[[], object]) -> bool:
        """
        Run *fn* between transitions, on the loop thread [10.1].

        Returns:
            ``True`` if *fn* ran (the machine was idle); ``False`` during a transition
            (a nested eval; with ``detect_eval`` also an error) or after disposal.
        """
        if self._owner is not None and self._owner != threading.get_ident():
            self._foreign_thread_error()
        if self._disposing:
            return False
        if self._processing:
            if self.detect_eval:
                self.add_err(
                    RuntimeError("nested eval: eval() called during a transition")
                )
            return False
        fn()
        return True

    # ------------------------------------------------------------------ threads

    def _submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run *fn* on the loop thread; a future of its result [13.4]."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        owner = self._owner
        if owner is None:
            raise RuntimeError(
                f"machine {self._id!r} is not bound to an event loop yet: the "
                "*_threadsafe methods need `async with mach:` or an await on it first"
            )
        if owner == threading.get_ident():
            fut.set_running_or_notify_cancel()
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - delivered to the caller
                fut.set_exception(exc)
            return fut
        # deque.append is atomic: the hand-off itself needs no lock.
        q = self._foreign
        assert q is not None  # made by _bind_loop, which set the owner
        q.append((fn, fut))  # type: ignore[arg-type]
        if not self._wake_scheduled:
            self._wake_scheduled = True
            wake = self._wake
            try:
                assert wake is not None
                wake()
            except RuntimeError:  # the loop is closed
                self._wake_scheduled = False
                self._fail_foreign(RuntimeError("the machine's event loop is closed"))
        return fut

    def _run_foreign(self) -> None:
        """Drain work submitted by other threads (on the loop thread)."""
        self._wake_scheduled = False
        q = self._foreign
        while q:
            fn, fut = q.popleft()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - delivered to the caller
                fut.set_exception(exc)

    def _fail_foreign(self, exc: BaseException) -> None:
        q = self._foreign
        while q:
            _fn, fut = q.popleft()
            if fut.set_running_or_notify_cancel():
                fut.set_exception(exc)

    def add_threadsafe(
        self, states: StatesArg, args: Mapping[str, object] | None = None
    ) -> concurrent.futures.Future[Result]:
        """:meth:`add` from any thread; a future of the result [13.4]."""
        called = self._parse(states)
        a = dict(args) if args else None
        return self._submit(lambda: self._enqueue(ADD, called, a, None))

    def remove_threadsafe(
        self, states: StatesArg, args: Mapping[str, object] | None = None
    ) -> concurrent.futures.Future[Result]:
        """:meth:`remove` from any thread; a future of the result [13.4]."""
        called = self._parse(states)
        a = dict(args) if args else None
        return self._submit(lambda: self._enqueue(REMOVE, called, a, None))

    def set_threadsafe(
        self, states: StatesArg, args: Mapping[str, object] | None = None
    ) -> concurrent.futures.Future[Result]:
        """:meth:`set` from any thread; a future of the result [13.4]."""
        called = self._parse(states)
        a = dict(args) if args else None
        return self._submit(lambda: self._enqueue(SET, called, a, None))

    def add_err_threadsafe(
        self, err: BaseException, args: Mapping[str, object] | None = None
    ) -> concurrent.futures.Future[Result]:
        """:meth:`add_err` from any thread; a future of the result [13.4]."""
        a = dict(args) if args else None
        return self._submit(lambda: self.add_err(err, a))

    def eval_threadsafe(
        self, fn: Callable[[], object]
    ) -> concurrent.futures.Future[bool]:
        """:meth:`eval` from any thread; a future of its result [10.1]."""
        return self._submit(lambda: self.eval(fn))

    # ------------------------------------------------------------------ dispose

    def on_dispose(self, fn: Callable[[str], object]) -> None:
        """Register *fn(machine_id)* to run when the machine is disposed."""
        if self._on_dispose is None:
            self._on_dispose = []
        self._on_dispose.append(fn)

    def dispose(self) -> None:
        """
        Dispose the machine: from now on mutations are canceled and readers return
        empty values; every context expires, every waiter resolves (``False``) and
        ``when_disposed()`` returns. Called from a handler, it runs once the queue has
        drained.
        """
        if self._owner is not None and self._owner != threading.get_ident():
            self._foreign_thread_error()
        if self._disposing:
            return
        if self._processing:
            self._dispose_deferred = True
            return
        self._do_dispose()

    def _do_dispose(self) -> None:
        if self._disposing:
            return
        if "Start" in self._active_set:
            self.remove("Start")
        self._disposing = True
        self._log(3, "[dispose]")
        if "machine_dispose" in self._tr:
            self._trace("machine_dispose", self._id)
        self._bindings.clear()
        self._rebuild_handlers()
        self._queue.clear()
        self._pending = 0
        self._disposed = True
        self._root().expire(f"machine {self._id!r} disposed")
        self._state_ctxs.clear()
        self._resolve_all_waiters()
        for fn in self._on_dispose or ():
            try:
                fn(self._id)
            except Exception as exc:  # noqa: BLE001 - user code: errors become state
                self._internal(exc)
                self._log(2, "[error] on_dispose raised %r", exc)
        ws, self._wdisposed = self._wdisposed, []
        for w in ws:
            w.resolve(True)


def _unpack_schema(
    schema: SchemaLike | type[Schema],
) -> tuple[SchemaLike, dict[str, ArgsModel]]:
    """A typed :class:`Schema` class gives its states and args models."""
    if isinstance(schema, type) and issubclass(schema, Schema):
        return schema.schema(), schema.args_models()
    return schema, {}


def _export_names(data: Mapping[str, object]) -> list[str]:
    if not isinstance(data, Mapping):
        raise ExportError(f"export data must be a mapping, got {type(data).__name__}")
    names = data.get("state_names")
    if not isinstance(names, list | tuple) or not all(
        isinstance(n, str) for n in names
    ):
        raise ExportError("export data needs 'state_names', a list of str")
    return list(names)


def _is_cancellation(err: BaseException) -> bool:
    """Task cancellation is not an error (Go ignores context.Canceled) [E1]."""
    import asyncio

    if isinstance(err, asyncio.CancelledError):
        return True
    cls = type(err)
    return cls.__name__ == "Cancelled" and cls.__module__.startswith("trio")
