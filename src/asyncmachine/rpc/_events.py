"""
The frames of ``amrp/1`` as frozen value objects, one class per kind.

Each event converts to its wire body with :meth:`to_body` and back with the
classmethod :meth:`from_body`, which checks every known key strictly: a missing
required key or a value of the wrong type raises
:exc:`~asyncmachine.rpc.RemoteProtocolError` (code ``proto``); unknown keys are
ignored, so newer peers can add optional keys within a protocol version. Absent
optional keys are ``None`` (or ``False`` / ``()`` where noted); a present key holding
``nil`` where a type is expected is an error, not "absent".

Every event also carries the ``seq`` and ``re`` of its frame (keyword-only, default
0). :class:`~._protocol.Connection` fills both in for received events; for sent events
the caller sets ``re`` and the connection assigns ``seq`` (the event's own ``seq`` is
ignored on send).

Values of type ``object`` (arguments, payload data) are whatever the codec decodes:
``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, ``list`` and ``dict`` with
``str`` keys. Validating state indexes against the session's names is left to the clock
and session layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import ClassVar, Final, NoReturn, Self, TypeAlias, final

from ._errors import RemoteProtocolError
from ._framing import MAX_FRAME

__all__ = (
    "CHECKSUM_MOD",
    "NO_RETRY_CODES",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "Bye",
    "ByeCode",
    "Clock",
    "ClockBody",
    "Error",
    "ErrorCode",
    "Event",
    "Hello",
    "Kind",
    "Mutate",
    "Op",
    "Payload",
    "Ping",
    "Result",
    "StateSchema",
    "Sync",
    "Wait",
    "WaitCancel",
    "Welcome",
    "event_from_body",
)

#: The protocol version this implementation speaks best.
PROTOCOL_VERSION: Final = 1
#: Every protocol version this implementation speaks, ascending.
SUPPORTED_VERSIONS: Final = (1,)
#: The clock checksum ``k`` is taken modulo this.
CHECKSUM_MOD: Final = 65536


class Kind(IntEnum):
    """Frame kind codes."""

    HELLO = 1
    """c→s: opens the session."""
    WELCOME = 2
    """s→c: accepts the session (also re-sent when the schema changes)."""
    CLOCK = 3
    """s→c: a pushed clock, delta or full."""
    MUTATE = 4
    """c→s: add / remove / set."""
    SYNC = 5
    """c→s: ask for a full clock."""
    WAIT = 6
    """c→s: register or cancel a remote wait."""
    PAYLOAD = 7
    """s→c: data for the client's consumer."""
    PING = 8
    """both: liveness and round-trip time."""
    RESULT = 9
    """both: the generic reply."""
    ERROR = 10
    """both: a failed request, or a fatal connection error."""
    BYE = 11
    """both: graceful close."""


class Op(IntEnum):
    """Mutation operation codes of :class:`Mutate`."""

    ADD = 0
    REMOVE = 1
    SET = 2


class ErrorCode(StrEnum):
    """The ``code`` values of :class:`Error` defined by ``amrp/1``."""

    PROTO = "proto"
    VERSION = "version"
    AUTH = "auth"
    ACL = "acl"
    TOO_BIG = "too_big"
    SCHEMA = "schema"
    STATE = "state"
    ARGS = "args"
    BUSY = "busy"
    SLOW = "slow"
    TIMEOUT = "timeout"
    NO_CONN = "no_conn"
    DEST = "dest"
    NO_CONSUMER = "no_consumer"
    CYCLE = "cycle"
    INTERNAL = "internal"


#: Error codes for which reconnecting or retrying cannot help (``retry`` is false).
NO_RETRY_CODES: Final = frozenset(
    {ErrorCode.VERSION, ErrorCode.AUTH, ErrorCode.ACL, ErrorCode.CYCLE}
)


class ByeCode(StrEnum):
    """The ``code`` values of :class:`Bye` defined by ``amrp/1``."""

    STOP = "stop"
    SHUTDOWN = "shutdown"
    RESTART = "restart"
    KICKED = "kicked"


# --- body readers ----------------------------------------------------------------------


def _fail(where: str, msg: str) -> NoReturn:
    raise RemoteProtocolError(f"{where}: {msg}", "proto")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Reader:
    """Typed access to the keys of one body; every failure names the body and key."""

    __slots__ = ("_body", "_where")

    def __init__(self, body: object, where: str) -> None:
        if not isinstance(body, Mapping):
            _fail(where, f"body must be a map, got {type(body).__name__}")
        self._body: Mapping[object, object] = body
        self._where = where

    def has(self, key: str) -> bool:
        return key in self._body

    def fail(self, key: str, expected: str) -> NoReturn:
        if key not in self._body:
            _fail(self._where, f"missing required key {key!r} ({expected})")
        got = _short(self._body[key])
        _fail(self._where, f"key {key!r} must be {expected}, got {got}")

    def _get(self, key: str, expected: str) -> object:
        if key not in self._body:
            self.fail(key, expected)
        return self._body[key]

    def get_int(self, key: str, *, lo: int = 0, hi: int | None = None) -> int:
        value = self._get(key, "an int")
        if not _is_int(value):
            self.fail(key, "an int")
        assert isinstance(value, int)  # for mypy; _is_int checked it
        if value < lo or (hi is not None and value > hi):
            bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            self.fail(key, f"an int {bounds}")
        return value

    def opt_int(self, key: str, *, lo: int = 0, hi: int | None = None) -> int | None:
        return self.get_int(key, lo=lo, hi=hi) if key in self._body else None

    def nullable_int(self, key: str, *, lo: int = 0) -> int | None:
        if self._get(key, "an int or nil") is None:
            return None
        return self.get_int(key, lo=lo)

    def number(self, key: str) -> float:
        value = self._get(key, "a number")
        if not (_is_int(value) or isinstance(value, float)):
            self.fail(key, "a number")
        assert isinstance(value, (int, float))
        return value

    def opt_number(self, key: str) -> float | None:
        return self.number(key) if key in self._body else None

    def get_str(self, key: str) -> str:
        value = self._get(key, "a str")
        if not isinstance(value, str):
            self.fail(key, "a str")
        return value

    def opt_str(self, key: str) -> str | None:
        return self.get_str(key) if key in self._body else None

    def get_bool(self, key: str) -> bool:
        value = self._get(key, "a bool")
        if not isinstance(value, bool):
            self.fail(key, "a bool")
        return value

    def opt_bool(self, key: str) -> bool | None:
        return self.get_bool(key) if key in self._body else None

    def ints(self, key: str) -> tuple[int, ...]:
        expected = "a list of non-negative ints"
        value = self._get(key, expected)
        if not isinstance(value, (list, tuple)):
            self.fail(key, expected)
        for item in value:
            if not _is_int(item) or item < 0:
                self.fail(key, expected)
        return tuple(value)

    def opt_ints(self, key: str) -> tuple[int, ...] | None:
        return self.ints(key) if key in self._body else None

    def strs(self, key: str, *, length: int | None = None) -> tuple[str, ...]:
        expected = "a list of str" if length is None else f"a list of {length} str"
        value = self._get(key, expected)
        if not isinstance(value, (list, tuple)) or (
            length is not None and len(value) != length
        ):
            self.fail(key, expected)
        for item in value:
            if not isinstance(item, str):
                self.fail(key, expected)
        return tuple(value)

    def opt_strs(self, key: str) -> tuple[str, ...] | None:
        return self.strs(key) if key in self._body else None

    def get_map(self, key: str) -> dict[str, object]:
        value = self._get(key, "a map")
        if not isinstance(value, dict):
            self.fail(key, "a map")
        return value

    def opt_map(self, key: str) -> dict[str, object] | None:
        return self.get_map(key) if key in self._body else None

    def get_any(self, key: str) -> object:
        return self._get(key, "a value")

    def opt_any(self, key: str) -> object:
        return self._body.get(key)


def _put(body: dict[str, object], key: str, value: object) -> None:
    """Set an optional key only when it has a value."""
    if value is not None:
        body[key] = value


# --- shared bodies ---------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class ClockBody:
    """
    A clock update: the ``clk`` of WELCOME / RESULT and the body of CLOCK.

    It is *full* when :attr:`time` is set (then :attr:`epoch` is required and
    :attr:`indexes` / :attr:`deltas` must be unset), a *delta* otherwise (then
    :attr:`indexes` and :attr:`deltas` are both set, with equal lengths, or both
    unset, meaning "no state ticked").

    Args:
        n: clock version; a delta applies only on top of version ``n - 1``.
        q: queue tick (absolute in a full clock, increment in a delta).
        m: machine tick (absolute in a full clock, increment in a delta).
        k: checksum, ``(sum of ticks + q + m) % 65536`` *after* applying.
        epoch: the lineage of the source's clock (``ep``).
        time: every state's tick, in the order of the session's names (``t``).
        indexes: indexes of the states that ticked (``i``).
        deltas: their non-negative tick increments (``d``).
        err: ``(state, error type, message)`` when ``Exception`` ticked (``er``).
        up: ``False`` while a replicant's upstream is down (``up``).
    """

    n: int
    q: int
    m: int
    k: int
    epoch: str | None = None
    time: tuple[int, ...] | None = None
    indexes: tuple[int, ...] | None = None
    deltas: tuple[int, ...] | None = None
    err: tuple[str, str, str] | None = None
    up: bool | None = None

    @property
    def is_full(self) -> bool:
        """``True`` for a full clock (``t`` present), ``False`` for a delta."""
        return self.time is not None

    def to_body(self) -> dict[str, object]:
        """Return the wire map (``n``, ``ep``, ``t``, ``i``, ``d``, ``q``, ``m``, ...)."""
        body: dict[str, object] = {"n": self.n}
        _put(body, "ep", self.epoch)
        if self.time is not None:
            body["t"] = list(self.time)
        if self.indexes is not None:
            body["i"] = list(self.indexes)
        if self.deltas is not None:
            body["d"] = list(self.deltas)
        body["q"] = self.q
        body["m"] = self.m
        body["k"] = self.k
        if self.err is not None:
            body["er"] = list(self.err)
        _put(body, "up", self.up)
        return body

    @classmethod
    def from_body(cls, body: Mapping[str, object], where: str = "clock") -> Self:
        """
        Build a clock from its wire map.

        Args:
            body: the decoded map.
            where: names the body in error messages.

        Raises:
            RemoteProtocolError: (``proto``) for a missing or mistyped key, a full
                clock without ``ep`` or with ``i``/``d``, or ``i``/``d`` of unequal
                lengths, or a negative number.
        """
        r = _Reader(body, where)
        time = r.opt_ints("t")
        epoch = r.opt_str("ep")
        indexes = r.opt_ints("i")
        deltas = r.opt_ints("d")
        if time is not None:
            if epoch is None:
                r.fail("ep", "a str (required in a full clock)")
            if indexes is not None or deltas is not None:
                _fail(where, "a full clock ('t') must not carry 'i' or 'd'")
        elif (indexes is None) != (deltas is None):
            _fail(where, "'i' and 'd' must be both present or both absent")
        elif indexes is not None and deltas is not None and len(indexes) != len(deltas):
            _fail(where, f"'i' has {len(indexes)} items but 'd' has {len(deltas)}")
        err = r.strs("er", length=3) if r.has("er") else None
        return cls(
            n=r.get_int("n"),
            q=r.get_int("q"),
            m=r.get_int("m"),
            k=r.get_int("k", hi=CHECKSUM_MOD - 1),
            epoch=epoch,
            time=time,
            indexes=indexes,
            deltas=deltas,
            err=(err[0], err[1], err[2]) if err is not None else None,
            up=r.opt_bool("up"),
        )


@final
@dataclass(frozen=True, slots=True)
class StateSchema:
    """
    One state of the schema sent in :class:`Welcome` (only the relations that travel).

    Args:
        auto: ``auto``.
        multi: ``multi``.
        add: states this one adds (``add``).
        remove: states this one removes (``rem``).
        require: states this one requires (``req``).
        after: states this one's handlers run after (``after``).
        tags: free-form tags (``tags``).
    """

    auto: bool = False
    multi: bool = False
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    require: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def to_body(self) -> dict[str, object]:
        """Return the wire map; ``False`` flags and empty lists are left out."""
        body: dict[str, object] = {}
        if self.auto:
            body["auto"] = True
        if self.multi:
            body["multi"] = True
        for key, names in (
            ("add", self.add),
            ("rem", self.remove),
            ("req", self.require),
            ("after", self.after),
            ("tags", self.tags),
        ):
            if names:
                body[key] = list(names)
        return body

    @classmethod
    def from_body(cls, body: Mapping[str, object], where: str = "schema") -> Self:
        """
        Build a state schema from its wire map.

        Raises:
            RemoteProtocolError: (``proto``) for a mistyped key.
        """
        r = _Reader(body, where)
        return cls(
            auto=bool(r.opt_bool("auto")),
            multi=bool(r.opt_bool("multi")),
            add=r.opt_strs("add") or (),
            remove=r.opt_strs("rem") or (),
            require=r.opt_strs("req") or (),
            after=r.opt_strs("after") or (),
            tags=r.opt_strs("tags") or (),
        )


# --- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _EventBase:
    """Fields every event has: the frame's ``seq`` and ``re``."""

    KIND: ClassVar[Kind]

    #: The frame's sequence number (set on receive; ignored on send).
    seq: int = field(default=0, kw_only=True)
    #: The ``seq`` of the peer's frame this one answers, or 0.
    re: int = field(default=0, kw_only=True)


@final
@dataclass(frozen=True, slots=True)
class Hello(_EventBase):
    """
    HELLO (c→s): the client's first frame.

    Args:
        versions: protocol versions the client speaks (``v``).
        id: the client machine's id (``id``).
        token: the shared secret, if any (``tok``).
        schema_hash: hash of the schema the client already has (``hash``); the server
            then leaves the schema out of WELCOME when it matches.
        max_frame: the client's max frame in bytes (``mf``).
        via: ids of the replicant chain this client belongs to (``via``).
    """

    KIND: ClassVar[Kind] = Kind.HELLO

    versions: tuple[int, ...]
    id: str
    token: str | None = None
    schema_hash: str | None = None
    max_frame: int = MAX_FRAME
    via: tuple[str, ...] = ()

    def to_body(self) -> dict[str, object]:
        """Return the wire body."""
        body: dict[str, object] = {"v": list(self.versions), "id": self.id}
        _put(body, "tok", self.token)
        _put(body, "hash", self.schema_hash)
        body["mf"] = self.max_frame
        if self.via:
            body["via"] = list(self.via)
        return body

    @classmethod
    def from_body(
        cls, body: Mapping[str, object], *, seq: int = 0, re: int = 0
    ) -> Self:
        """
        Build the event from a decoded body.

        Raises:
            RemoteProtocolError: (``proto``) for a missing or mistyped key.
        """
        r = _Reader(body, "HELLO")
        return cls(
            versions=r.ints("v"),
            id=r.get_str("id"),
            token=r.opt_str("tok"),
            schema_hash=r.opt_str("hash"),
            max_frame=r.get_int("mf", lo=1),
            via=r.opt_strs("via") or (),
            seq=seq,
            re=re,
        )


@final
@dataclass(frozen=True, slots=True)
class Welcome(_EventBase):
    """
    WELCOME (s→c): the server accepts the session.

    Also sent again, unsolicited, when the source's schema changes.

    Args:
        version: the protocol version chosen (``v``).
        id: the source machine's id (``id``).
        session_id: the server session machine's id (``sid``).
        names: state names, defining the index space of the session (``names``).
        clock: the full clock (``clk``); must be full.
        push_interval: push interval in ms, ``None`` when pushes are off (``pi``).
        max_frame: the server's max frame in bytes (``mf``).
        schema: name → relations; ``None`` when left out (``schema``).
        up: ``False`` while a replicant source is cut off from its parent (``up``).
        lineage: ids of the source and of every machine it mirrors, nearest first
            (``lin``); clients of replicants send them back in HELLO ``via`` to
            detect cycles.
    """

    KIND: ClassVar[Kind] = Kind.WELCOME

    version: int
    id: str
    session_id: str
    names: tuple[str, ...]
    clock: ClockBody
    push_interval: int | None
    max_frame: int = MAX_FRAME
    schema: Mapping[str, StateSchema] | None = None
    up: bool | None = None
    lineage: tuple[str, ...] = ()

    def to_body(self) -> dict[str, object]:
        """Return the wire body."""
        body: dict[str, object] = {
            "v": self.version,
            "id": self.id,
            "sid": self.session_id,
            "names": list(self.names),
        }
        if self.schema is not None:
            body["schema"] = {n: s.to_body() for n, s in self.schema.items()}
        body["clk"] = self.clock.to_body()
        body["pi"] = self.push_interval
        body["mf"] = self.max_frame
        _put(body, "up", self.up)
        if self.lineage:
            body["lin"] = list(self.lineage)
        return body

    @classmethod
    def from_body(
        cls, body: Mapping[str, object], *, seq: int = 0, re: int = 0
    ) -> Self:
        """
        Build the event from a decoded body.

        Raises:
            RemoteProtocolError: (``proto``) for a missing or mistyped key, or a
                delta clock.
        """
        r = _Reader(body, "WELCOME")
        raw_schema = r.opt_map("schema")
        schema: dict[str, StateSchema] | None = None
        if raw_schema is not None:
            schema = {}
            for name, entry in raw_schema.items():
                if not isinstance(name, str) or not isinstance(entry, dict):
                    r.fail("schema", "a map of str to maps")
                schema[name] = StateSchema.from_body(entry, f"WELCOME schema[{name!r}]")
        clock = ClockBody.from_body(r.get_map("clk"), "WELCOME clk")
        if not clock.is_full:
            r.fail("clk", "a full clock (with 't')")
        return cls(
            version=r.get_int("v", lo=1),
            id=r.get_str("id"),
            session_id=r.get_str("sid"),
            names=r.strs("names"),
            clock=clock,
            push_interval=r.nullable_int("pi"),
            max_frame=r.get_int("mf", lo=1),
            schema=schema,
            up=r.opt_bool("up"),
            lineage=r.opt_strs("lin") or (),
            seq=seq,
            re=re,
        )


@final
@dataclass(frozen=True, slots=True)
class Clock(_EventBase):
    """
    CLOCK (s→c): a pushed clock update.

    Args:
        clock: the update, delta or full; its keys are the frame body.
    """

    KIND: ClassVar[Kind] = Kind.CLOCK

    clock: ClockBody

    def to_body(self) -> dict[str, object]:
        """Return the wire body (the clock's own map)."""
        return self.clock.to_body()

    @classmethod
    def from_body(
        cls, body: Mapping[str, object], *, seq: int = 0, re: int = 0
    ) -> Self:
        """
        Build the event from a decoded body.

        Raises:
            RemoteProtocolError: (``proto``) as :meth:`ClockBody.from_body`.
        """
        return cls(clock=ClockBody.from_body(body, "CLOCK"), seq=seq, re=re)


@final
@dataclass(frozen=True, slots=True)
class Mutate(_EventBase):
    """
    MUTATE (c→s): add, remove or set states on the source.

    Args:
        op: :class:`Op` (``op``).
        states: indexes of the called states (``s``).
        rid: client-unique request id, reused on retries for dedup (``rid``).
        args: arguments for the transition (``a``).
        no_reply: the client wants no RESULT (``nr``).
        event: ``(machine id, transition id)`` of the calling event (``ev``).
    """

    KIND: ClassVar[Kind] = Kind.MUTATE

    op: Op
    states: tuple[int, ...]
    rid: int
    args: Mapping[str, object] | None = None
    no_reply: bool = False
    event: tuple[str, str] | None = None

    def to_body(self) -> dict[str, object]:
        """Return the wire body."""
        body: dict[str, object] = {"op": int(self.op), "s": list(self.states)}
        if self.args is not None:
            body["a"] = dict(self.args)
        body["rid"] = self.rid
        if self.no_reply:
            body["nr"] = True
        if self.event is not None:
            body["ev"] = list(self.event)
        return body

    @classmethod
    def from_body(
        cls, body: Mapping[str, object], *, seq: int = 0, re: int = 0
    ) -> Self:
        """
        Build the event from a decoded body.

        Raises:
            RemoteProtocolError: (``proto``) for a missing or mistyped key or an
                unknown op.
        """
        r = _Reader(body, "MUTATE")
        event = r.strs("ev", length=2) if r.has("ev") else None
        return cls(
            op=Op(r.get_int("op", hi=max(Op))),
            states=r.ints("s"),
            rid=r.get_int("rid"),
            args=r.opt_map("a"),
            no_reply=bool(r.opt_bool("nr")),
            event=(event[0], event[1]) if event is not None else None,
            seq=seq,
            re=re,
        )


@final
@dataclass(frozen=True, slots=True)
class Sync(_EventBase):
    """SYNC (c→s): ask for a full clock, answered by RESULT with ``clk``."""

    KIND: ClassVar[Kind] = Kind.SYNC

    def to_body(self) -> dict[str, object]:
        """Return the wire body (empty)."""
        return {}

    @classmethod
    def from_body(
        cls, body: Mapping[str, object], *, seq: int = 0, re: int = 0
    ) -> Self:
        """
        Build the event from a decoded body.

        Raises:
            RemoteProtocolError: (``proto``) if *body* is not a map.
        """
        _Reader(body, "SYNC")
        return cls(seq=seq, re=re)


@final
@dataclass(frozen=True, slots=True)
class Wait(_EventBase):
    """
    WAIT (c→s): a remote ``when_args``, answered by RESULT once satisfied.

    Args:
        state: index of the awaited state (``s``).
        args: the argument subset to match (``a``).
    """

    KIND: ClassVar[Kind] = Kind.WAIT

    state: int
    args: Mapping[str, object]

    def to_body(self) -> dict[str, object]:
        """Return the wire body."""
        return {"s": self.state, "a": dict(self.args)}

    @classmethod
    def from_body(
        cls, body: Mapping[str, object], *, seq: int = 0, re: int = 0
    ) -> Self:
        """
        Build the event from a decoded body.

        Raises:
            RemoteProtocolError: (``proto``) for a missing or mistyped key, or a
                ``cancel`` key (that makes it a :class:`WaitCancel`).
        """
        r = _Reader(body, "WAIT")
        if r.has("cancel"):
            _fail("WAIT", "'cancel' cannot be combined with 's' / 'a'")
        return cls(state=r.get_int("s"), args=r.get_map("a"), seq=seq, re=re)


@final
@dataclass(frozen=True, slots=True)
class WaitCancel(_EventBase):
    """
    WAIT with ``cancel`` (c→s): cancel a pending remote wait; no reply.

    Args:
        wait_seq: the ``seq`` of the WAIT frame to cancel (``cancel``).
    """

    KIND: ClassVar[Kind] = Kind.WAIT

    wait_seq: int

    def to_body(self) -> dict[str, object]:
        """Return the wire body."""
        return {"cancel": self.wait_seq}

    @classmethod
    def from_body(
        cls, body: Mapping[str, object], *, seq: int = 0, re: int = 0
    ) -> Self:
        """
        Build the event from a decoded body.

        Raises:
            RemoteProtocolError: (``proto``) for a missing or mistyped ``cancel``, or
                ``s`` / ``a`` next to it.
        """
        r = _Reader(body, "WAIT")
        if r.has("s") or r.has("a"):
            _fail("WAIT", "'cancel' cannot be combined with 's' / 'a'")
        return cls(wait_seq=r.get_int("cancel", lo=1), seq=seq, re=re)


@final
@dataclass(frozen=True, slots=True)
class Payload(_EventBase):
    """
    PAYLOAD (s→c): data for the client's consumer, acknowledged by RESULT.

    Args:
        name: the payload's name (``name``).
        data: the payload itself, any wire value (``data``).
        token: the token the client matches it with (``tok``).
        source: id of the machine that sent it (``src``).
        source_tx: id of the transition that sent it (``tx``).
        dest: id of the intended client (``dst``).
    """

    KIND: ClassVar[Kind] = Kind.PAYLOAD

    name: str
    data: object
    token: str
    source: str | None = None
    source_tx: str | None = None
    dest: str | None = None

    def to_body(self) -> dict[str, object]:
        """Return the wire body."""
        body: dict[str, object] = {"name": self.name, "data": self.data}
        body["tok"] = self.token
        _put(body, "src", self.source)
        _put(body, "tx", self.source_tx)
        _put(body, "dst", self.dest)
        return body

    @classmethod
    def from_body(
        cls, body: Mapping[str, object], *, seq: int = 0, re: int = 0
    ) -> Self:
        """
        Build the event from a decoded body.

        Raises:
            RemoteProtocolError: (``proto``) for a missing or mistyped key.
        """
        r = _Reader(body, "PAYLOAD")
        return cls(
            name=r.get_str("name"),
            data=r.get_any("data"),
            token=r.get_str("tok"),
            source=r.opt_str("src"),
            source_tx=r.opt_str("tx"),
            dest=r.opt_str("dst"),
            seq=seq,
            re=re,
        )


@final
@dataclass(frozen=True, slots=True)
class Ping(_EventBase):
    """
    PING (both): liveness probe, answered by RESULT echoing ``t``.

    Args:
        time: the sender's timestamp, echoed back (``t``).
    """

    KIND: ClassVar[Kind] = Kind.PING

    time: float

    def to_body(self) -> dict[str, object]:
        """Return the wire body."""
        return {"t": self.time}

    @classmethod
    def from_body(
        cls, body: Mapping[str, object], *, seq: int = 0, re: int = 0
    ) -> Self:
        """
        Build the event from a decoded body.

        Raises:
            RemoteProtocolError: (``proto``) for a missing or non-numeric ``t``.
        """
        return cls(time=_Reader(body, "PING").number("t"), seq=seq, re=re)


@final
@dataclass(frozen=True, slots=True)
class Result(_EventBase):
    """
    RESULT (both): the generic reply; ``re`` names the request (never 0).

    Args:
        result: the core result value, for MUTATE (``res``).
        clock: a clock update to apply before the result (``clk``).
        time: the echoed ``t`` of a PING (``t``).
        data: extra reply data (``data``); ``None`` and absent are the same.
    """

    KIND: ClassVar[Kind] = Kind.RESULT

    result: int | None = None
    clock: ClockBody | None = None
    time: float | None = None
    data: object = None

    def to_body(self) -> dict[str, object]:
        """Return the wire body."""
        body: dict[str, object] = {}
        _put(body, "res", self.result)
        if self.clock is not None:
            body["clk"] = self.clock.to_body()
        _put(body, "t", self.time)
        _put(body, "data", self.data)
        return body

    @classmethod
    def from_body(
        cls, body: Mapping[str, object], *, seq: int = 0, re: int = 0
    ) -> Self:
        """
        Build the event from a decoded body.

        Raises:
            RemoteProtocolError: (``proto``) for a mistyped key.
        """
        r = _Reader(body, "RESULT")
        raw_clock = r.opt_map("clk")
        return cls(
            result=r.opt_int("res", lo=-(1 << 63)),
            clock=None
            if raw_clock is None
            else ClockBody.from_body(raw_clock, "RESULT clk"),
            time=r.opt_number("t"),
            data=r.opt_any("data"),
            seq=seq,
            re=re,
        )


@final
@dataclass(frozen=True, slots=True)
class Error(_EventBase):
    """
    ERROR (both): a failed request (``re`` != 0) or a connection error (``re`` == 0).

    Args:
        code: an :class:`ErrorCode` value, or a newer code (``code``).
        msg: human-readable details (``msg``).
        fatal: the sender closes the connection after this frame (``fatal``).
        retry: whether retrying or reconnecting can help (``retry``).
    """

    KIND: ClassVar[Kind] = Kind.ERROR

    code: str
    msg: str
    fatal: bool = False
    retry: bool = False

    def to_body(self) -> dict[str, object]:
        """Return the wire body."""
        return {
            "code": self.code,
            "msg": self.msg,
            "fatal": self.fatal,
            "retry": self.retry,
        }

    @classmethod
    def from_body(
        cls, body: Mapping[str, object], *, seq: int = 0, re: int = 0
    ) -> Self:
        """
        Build the event from a decoded body.

        Raises:
            RemoteProtocolError: (``proto``) for a missing or mistyped key.
        """
        r = _Reader(body, "ERROR")
        return cls(
            code=r.get_str("code"),
            msg=r.get_str("msg"),
            fatal=r.get_bool("fatal"),
            retry=r.get_bool("retry"),
            seq=seq,
            re=re,
        )


@final
@dataclass(frozen=True, slots=True)
class Bye(_EventBase):
    """
    BYE (both): graceful close; the sender sends nothing after it.

    Args:
        code: a :class:`ByeCode` value, or a newer code (``code``).
        msg: human-readable details (``msg``).
        reconnect: whether the client should reconnect (``reconnect``).
    """

    KIND: ClassVar[Kind] = Kind.BYE

    code: str
    msg: str | None = None
    reconnect: bool = False

    def to_body(self) -> dict[str, object]:
        """Return the wire body."""
        body: dict[str, object] = {"code": self.code}
        _put(body, "msg", self.msg)
        body["reconnect"] = self.reconnect
        return body

    @classmethod
    def from_body(
        cls, body: Mapping[str, object], *, seq: int = 0, re: int = 0
    ) -> Self:
        """
        Build the event from a decoded body.

        Raises:
            RemoteProtocolError: (``proto``) for a missing or mistyped key.
        """
        r = _Reader(body, "BYE")
        return cls(
            code=r.get_str("code"),
            msg=r.opt_str("msg"),
            reconnect=r.get_bool("reconnect"),
            seq=seq,
            re=re,
        )


#: Any event :class:`~._protocol.Connection` can send or receive.
Event: TypeAlias = (
    Hello
    | Welcome
    | Clock
    | Mutate
    | Sync
    | Wait
    | WaitCancel
    | Payload
    | Ping
    | Result
    | Error
    | Bye
)

_CLASSES: Final[dict[Kind, type[Event]]] = {
    Kind.HELLO: Hello,
    Kind.WELCOME: Welcome,
    Kind.CLOCK: Clock,
    Kind.MUTATE: Mutate,
    Kind.SYNC: Sync,
    Kind.WAIT: Wait,
    Kind.PAYLOAD: Payload,
    Kind.PING: Ping,
    Kind.RESULT: Result,
    Kind.ERROR: Error,
    Kind.BYE: Bye,
}


def event_from_body(
    kind: Kind, body: Mapping[str, object], *, seq: int = 0, re: int = 0
) -> Event:
    """
    Build the event of *kind* from a decoded body.

    A WAIT body with a ``cancel`` key becomes a :class:`WaitCancel`, any other WAIT
    body a :class:`Wait`.

    Args:
        kind: the frame's kind.
        body: the decoded body map.
        seq: the frame's ``seq``.
        re: the frame's ``re``.

    Raises:
        RemoteProtocolError: (``proto``) if the body does not fit the kind.
    """
    cls: type[Event] = _CLASSES[kind]
    if cls is Wait and "cancel" in body:
        cls = WaitCancel
    return cls.from_body(body, seq=seq, re=re)
