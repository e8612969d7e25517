"""
The network machine: a local mirror of a served machine.

Reads and waits are answered from a local copy of the clock (a plain
:class:`~asyncmachine.Machine` used as a mirror, so every reading and waiting method is
the core's own); mutations are coroutines sent to the server, and return its
:class:`~asyncmachine.Result` after the reply's clock was applied to the mirror.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from .._context import Context, StateContext
from .._core._mutation import MutationType, Result
from .._core._schema import EXCEPTION, State
from .._machine import Machine, StatesArg
from .._transition import Transition
from .._typed import DumpableArgs

__all__ = ("NetMach",)


class _Remote(Protocol):
    """What a NetMach needs from its client."""

    async def _remote_mutate(
        self, op: int, states: tuple[str, ...], args: Mapping[str, object] | None
    ) -> Result: ...

    def _remote_mutate_nowait(
        self, op: int, states: tuple[str, ...], args: Mapping[str, object] | None
    ) -> None: ...

    async def _remote_when_args(
        self, state: str, args: Mapping[str, object], ctx: Context | None
    ) -> bool: ...


_OP_ADD, _OP_REMOVE, _OP_SET = 0, 1, 2


class NetMach:
    """
    A mirror of a remote machine: local reads and waits, remote mutations.

    Made by :class:`Client` (``client.netmach``); there is no public constructor.
    Every reading and waiting method of :class:`~asyncmachine.Machine` exists here with
    the same name and result. Mutations (``add``, ``remove``, ``set``, ``toggle``,
    ``add_err``, ``add_err_state``) are coroutines returning the server's result;
    ``add_ns`` sends an ``add`` without waiting for a reply.
    """

    def __init__(
        self,
        remote: _Remote,
        id: str,
        remote_id: str,
        schema: Mapping[str, State],
        names: Sequence[str],
    ) -> None:
        self._remote = remote
        self._remote_id = remote_id
        self._mirror = Machine(schema, names=names, id=id)
        self._err: BaseException | None = None
        self._remote_err: tuple[str, str, str] | None = None
        self._up = True
        self._epoch_base = ""
        self._resets = 0
        #: Ids of the served machine and of every machine it mirrors (cycle checks).
        self._lineage: list[str] = [remote_id]
        self._tracers: list[object] = []
        self._status_listeners: list[Callable[[NetMach], object]] = []

    # -- identity -----------------------------------------------------------------

    @property
    def id(self) -> str:
        """The mirror's own id (``rnm-<client id>``)."""
        return self._mirror.id

    @property
    def remote_id(self) -> str:
        """The id of the served machine."""
        return self._remote_id

    @property
    def epoch(self) -> str:
        """This mirror's clock lineage: the upstream epoch plus a local reset count."""
        return f"{self._epoch_base}.{self._resets}"

    @property
    def up(self) -> bool:
        """False while the connection upstream is down: the mirror is stale."""
        return self._up

    def _set_up(self, up: bool) -> None:
        if up == self._up:
            return
        self._up = up
        for fn in list(self._status_listeners):
            fn(self)

    @property
    def mirror(self) -> Machine:
        """The local machine holding the mirrored clock (read it, do not mutate it)."""
        return self._mirror

    @property
    def schema(self) -> Mapping[str, State]:
        """The served machine's schema."""
        return self._mirror.schema

    # -- reading ------------------------------------------------------------------

    def state_names(self) -> list[str]:
        """See :meth:`Machine.state_names`."""
        return self._mirror.state_names()

    def is_active(self, states: StatesArg) -> bool:
        """See :meth:`Machine.is_active`."""
        return self._mirror.is_active(states)

    def not_active(self, states: StatesArg) -> bool:
        """See :meth:`Machine.not_active`."""
        return self._mirror.not_active(states)

    def any_active(self, *groups: StatesArg) -> bool:
        """See :meth:`Machine.any_active`."""
        return self._mirror.any_active(*groups)

    def active_states(self, states: StatesArg | None = None) -> list[str]:
        """See :meth:`Machine.active_states`."""
        return self._mirror.active_states(states)

    def has(self, states: StatesArg) -> bool:
        """See :meth:`Machine.has`."""
        return self._mirror.has(states)

    def index(self, state: str) -> int:
        """See :meth:`Machine.index`."""
        return self._mirror.index(state)

    def switch(self, *groups: StatesArg) -> str:
        """See :meth:`Machine.switch`."""
        return self._mirror.switch(*groups)

    def tick(self, state: str) -> int:
        """See :meth:`Machine.tick`."""
        return self._mirror.tick(state)

    def clock(self, states: StatesArg | None = None) -> dict[str, int]:
        """See :meth:`Machine.clock`."""
        return self._mirror.clock(states)

    def time(self, states: StatesArg | None = None) -> list[int]:
        """See :meth:`Machine.time`."""
        return self._mirror.time(states)

    def is_time(self, t: Sequence[int], states: StatesArg | None = None) -> bool:
        """See :meth:`Machine.is_time`."""
        return self._mirror.is_time(t, states)

    def was_time(self, t: Sequence[int], states: StatesArg | None = None) -> bool:
        """See :meth:`Machine.was_time`."""
        return self._mirror.was_time(t, states)

    def is_clock(self, clock: Mapping[str, int]) -> bool:
        """See :meth:`Machine.is_clock`."""
        return self._mirror.is_clock(clock)

    def was_clock(self, clock: Mapping[str, int]) -> bool:
        """See :meth:`Machine.was_clock`."""
        return self._mirror.was_clock(clock)

    def queue_tick(self) -> int:
        """The served machine's queue tick (mirrored)."""
        return self._mirror.queue_tick()

    def machine_tick(self) -> int:
        """The served machine's machine tick (mirrored)."""
        return self._mirror.machine_tick()

    def is_err(self) -> bool:
        """True while the served machine's ``Exception`` is active."""
        return self._mirror.is_err()

    def err(self) -> BaseException | None:
        """
        The last error added through this mirror, else the last error the server
        reported (as :class:`~asyncmachine.rpc.RemoteError`).
        """
        if self._err is not None:
            return self._err
        if self._remote_err is not None:
            from ._errors import RemoteError

            state, kind, msg = self._remote_err
            return RemoteError(f"{kind}: {msg} (state {state})")
        return None

    def string_all(self) -> str:
        """See :meth:`Machine.string_all`."""
        return self._mirror.string_all()

    def inspect(self, states: StatesArg | None = None) -> str:
        """See :meth:`Machine.inspect`."""
        return self._mirror.inspect(states)

    def export(self) -> dict[str, object]:
        """See :meth:`Machine.export` (the mirror's clock under the mirror's id)."""
        return self._mirror.export()

    def __str__(self) -> str:
        return str(self._mirror)

    def __repr__(self) -> str:
        return f"<NetMach id={self.id!r} of {self._remote_id!r} {self._mirror}>"

    # -- waiting ------------------------------------------------------------------

    def new_state_ctx(self, state: str) -> StateContext:
        """See :meth:`Machine.new_state_ctx` (expires on mirrored tick changes)."""
        return self._mirror.new_state_ctx(state)

    async def when(self, states: StatesArg, *, ctx: Context | None = None) -> bool:
        """See :meth:`Machine.when`; resolved when a clock update arrives."""
        return await self._mirror.when(states, ctx=ctx)

    async def when_not(self, states: StatesArg, *, ctx: Context | None = None) -> bool:
        """See :meth:`Machine.when_not`."""
        return await self._mirror.when_not(states, ctx=ctx)

    async def when_time(
        self, states: StatesArg, ticks: Sequence[int], *, ctx: Context | None = None
    ) -> bool:
        """See :meth:`Machine.when_time`."""
        return await self._mirror.when_time(states, ticks, ctx=ctx)

    async def when_ticks(
        self, state: str, n: int, *, ctx: Context | None = None
    ) -> bool:
        """See :meth:`Machine.when_ticks`."""
        return await self._mirror.when_ticks(state, n, ctx=ctx)

    async def when_err(self, *, ctx: Context | None = None) -> bool:
        """See :meth:`Machine.when_err`."""
        return await self._mirror.when_err(ctx=ctx)

    async def when_query(
        self, fn: Callable[[dict[str, int]], bool], *, ctx: Context | None = None
    ) -> bool:
        """See :meth:`Machine.when_query`."""
        return await self._mirror.when_query(fn, ctx=ctx)

    async def when_queue(self, tick: int, *, ctx: Context | None = None) -> bool:
        """See :meth:`Machine.when_queue` (the served machine's queue tick)."""
        return await self._mirror.when_queue(tick, ctx=ctx)

    async def when_queue_end(self, *, ctx: Context | None = None) -> bool:
        """Returns at once: the mirror never holds a queue."""
        return await self._mirror.when_queue_end(ctx=ctx)

    async def when_disposed(self) -> bool:
        """Wait until the mirror is disposed (its client closed)."""
        return await self._mirror.when_disposed()

    async def when_args(
        self,
        state: str,
        args: Mapping[str, object] | DumpableArgs,
        *,
        ctx: Context | None = None,
    ) -> bool:
        """
        Wait remotely for an ``X_state`` event of *state* with matching args.

        The server runs the wait on the served machine and answers with a clock, so
        the mirror already shows the triggering transition when this returns.

        Raises:
            WaitInterrupted: the connection was lost while waiting.
        """
        name = self._mirror._parse(state)[0]
        expected = dict(
            args if isinstance(args, Mapping) else args.model_dump(exclude_unset=True)
        )
        return await self._remote._remote_when_args(name, expected, ctx)

    # -- tracing and notification handlers ---------------------------------------

    def add_tracer(self, tracer: object) -> None:
        """Trace the mirror: every applied clock update is one synthetic transition."""
        self._tracers.append(tracer)
        self._mirror.add_tracer(tracer)

    def detach_tracer(self, tracer: object) -> None:
        """See :meth:`Machine.detach_tracer`."""
        self._tracers.remove(tracer)
        self._mirror.detach_tracer(tracer)

    def bind_handlers(self, obj: object) -> int:
        """
        Bind notification handlers (``X_state``, ``X_end``, ``any_state``) called
        when a clock update activates or deactivates states; they cannot veto.
        """
        return self._mirror.bind_handlers(obj)

    def detach_handlers(self, binding_id: int) -> None:
        """See :meth:`Machine.detach_handlers`."""
        self._mirror.detach_handlers(binding_id)

    # -- mutations ----------------------------------------------------------------

    async def add(
        self, states: StatesArg, args: Mapping[str, object] | None = None
    ) -> Result:
        """Add *states* on the served machine; its result, with the mirror updated."""
        return await self._remote._remote_mutate(
            _OP_ADD, self._mirror._parse(states), args
        )

    async def remove(
        self, states: StatesArg, args: Mapping[str, object] | None = None
    ) -> Result:
        """Remove *states* on the served machine."""
        return await self._remote._remote_mutate(
            _OP_REMOVE, self._mirror._parse(states), args
        )

    async def set(
        self, states: StatesArg, args: Mapping[str, object] | None = None
    ) -> Result:
        """Set *states* on the served machine."""
        return await self._remote._remote_mutate(
            _OP_SET, self._mirror._parse(states), args
        )

    async def toggle(
        self, states: StatesArg, args: Mapping[str, object] | None = None
    ) -> Result:
        """Remove if all *states* are active in the (possibly stale) mirror, else add."""
        called = self._mirror._parse(states)
        op = _OP_REMOVE if self._mirror.is_active(called) else _OP_ADD
        return await self._remote._remote_mutate(op, called, args)

    def add_ns(
        self, states: StatesArg, args: Mapping[str, object] | None = None
    ) -> None:
        """Add *states* remotely without waiting for a reply ("no sync")."""
        self._remote._remote_mutate_nowait(_OP_ADD, self._mirror._parse(states), args)

    async def add_err(
        self, err: BaseException, args: Mapping[str, object] | None = None
    ) -> Result:
        """Add ``Exception`` remotely with *err* described as ``{type, msg}``."""
        return await self.add_err_state(EXCEPTION, err, args)

    async def add_err_state(
        self, state: str, err: BaseException, args: Mapping[str, object] | None = None
    ) -> Result:
        """Add *state*, ``Exception`` (and ``ErrOnClient`` if defined) remotely."""
        self._err = err
        states = [state, EXCEPTION]
        if "ErrOnClient" in self._mirror.state_names():
            states.append("ErrOnClient")
        a = dict(args) if args else {}
        a["err"] = {"type": type(err).__name__, "msg": str(err)}
        return await self.add(states, a)

    # -- applying clocks (used by the client) -------------------------------------

    def _apply(
        self,
        time: Sequence[int],
        queue_tick: int,
        machine_tick: int,
        *,
        reset: bool = False,
        mutation_type: MutationType = MutationType.SET,
        called: Iterable[str] | None = None,
    ) -> Transition:
        if reset:
            self._resets += 1
        return self._mirror._apply_mirror(
            time,
            queue_tick,
            machine_tick,
            mutation_type=mutation_type,
            called=list(called) if called is not None else None,
        )

    def _replace_mirror(
        self, schema: Mapping[str, State], names: Sequence[str]
    ) -> None:
        """Install a new schema: a fresh mirror with the same tracers."""
        old = self._mirror
        new = Machine(schema, names=names, id=old.id)
        for t in self._tracers:
            new.add_tracer(t)
        self._mirror = new
        self._resets += 1
        old_schema = {n: st.to_dict() for n, st in old.schema.items()}
        old.dispose()
        for t in self._tracers:
            hook = getattr(t, "schema_change", None)
            if hook is not None:
                hook(new, old_schema)

    def _dispose(self) -> None:
        self._mirror.dispose()
