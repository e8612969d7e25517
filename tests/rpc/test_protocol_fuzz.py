"""
Hypothesis against the receive path: hostile bytes can only yield events or ProtocolError.

Whatever arrives, :class:`Connection` returns events, ``NEED_DATA`` or ``CLOSED``, or
raises :exc:`ProtocolError` (then stays in ERROR); never another exception. After
``NEED_DATA`` it holds less than ``4 + max_frame`` bytes.
"""

from __future__ import annotations

import dataclasses
import itertools
import struct
import typing

import msgpack  # type: ignore[import-untyped]  # no stubs; only used to craft input
import pytest
from hypothesis import given, strategies as st

from asyncmachine.rpc._errors import RemoteProtocolError
from asyncmachine.rpc._events import (
    Bye,
    Clock,
    ClockBody,
    Error,
    Event,
    Hello,
    Kind,
    Mutate,
    Op,
    Payload,
    Ping,
    Result,
    Sync,
    Wait,
    WaitCancel,
    Welcome,
)
from asyncmachine.rpc._framing import HEADER_SIZE
from asyncmachine.rpc._protocol import (
    CLOSED,
    NEED_DATA,
    Connection,
    ConnectionState,
    Role,
)

EVENT_TYPES = typing.get_args(Event)
MAX = 512  # small, so that random lengths often hit both sides of the limit

HELLO = msgpack.packb([1, 1, 0, {"v": [1], "id": "rc-f", "mf": 4096}])
HELLO_FRAME = struct.pack(">I", len(HELLO)) + HELLO


def wrap(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def pump(conn: Connection, out: list[Event]) -> None:
    """Drain *conn* into *out*, checking the buffer bound whenever it asks for data."""
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA:
            assert conn.buffered < HEADER_SIZE + conn.max_frame
            return
        if ev is CLOSED:
            assert conn.buffered == 0
            return
        assert isinstance(ev, EVENT_TYPES)
        out.append(ev)


def run(
    conn: Connection, chunks: list[bytes], *, eof: bool, first: int = 1
) -> list[Event]:
    """Feed *chunks* (then EOF); stop at the first error, which must be sticky."""
    events: list[Event] = []
    error: RemoteProtocolError | None = None
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            pump(conn, events)
        if eof:
            conn.receive_data(b"")
            pump(conn, events)
            assert conn.next_event() is CLOSED
    except RemoteProtocolError as exc:
        error = exc
    if error is not None:
        assert conn.state is ConnectionState.ERROR
        with pytest.raises(RemoteProtocolError) as again:
            conn.next_event()
        assert again.value.code == error.code
    # Whatever got through is a gapless sequence starting at 1.
    assert [e.seq for e in events] == list(range(first, first + len(events)))
    assert conn.received_seq == first - 1 + len(events)
    return events


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """Split *data* at *cuts* (positions modulo its length), dropping empty pieces."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


# --- raw bytes -------------------------------------------------------------------------


@given(
    prefix=st.booleans(),
    data=st.binary(max_size=600),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
    eof=st.booleans(),
)
def test_arbitrary_bytes(prefix: bool, data: bytes, cuts: list[int], eof: bool) -> None:
    """Random bytes, optionally after a valid HELLO, split at random points."""
    stream = (HELLO_FRAME if prefix else b"") + data
    run(Connection("server", max_frame=MAX), chunked(stream, cuts), eof=eof)


@given(
    lengths=st.lists(st.integers(min_value=0, max_value=2 * MAX), max_size=4),
    filler=st.binary(min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0), max_size=6),
)
def test_arbitrary_lengths(lengths: list[int], filler: bytes, cuts: list[int]) -> None:
    """Headers around the limit followed by junk bodies: refused or buffered, bounded."""
    stream = HELLO_FRAME + b"".join(
        struct.pack(">I", n) + (filler * (n // len(filler) + 1))[:n] for n in lengths
    )
    run(Connection("server", max_frame=MAX), chunked(stream, cuts), eof=True)


# --- msgpack values in valid frames ----------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4))
    | st.builds(msgpack.Timestamp, st.integers(0, 1 << 32))
)
_keys = st.text(max_size=4) | st.integers(-3, 3) | st.binary(max_size=2)
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(_keys, children, max_size=4)
    ),
    max_leaves=16,
)


@given(
    values=st.lists(_values, min_size=1, max_size=4),
    prefix=st.booleans(),
    bin_type=st.booleans(),
)
def test_arbitrary_msgpack_values(
    values: list[object], prefix: bool, bin_type: bool
) -> None:
    """Any msgpack value as a frame payload, with a correct length prefix."""
    stream = (HELLO_FRAME if prefix else b"") + b"".join(
        wrap(msgpack.packb(v, use_bin_type=bin_type)) for v in values
    )
    run(Connection("server", max_frame=1 << 16), [stream], eof=True)


# --- well-formed frames with hostile bodies --------------------------------------------

_KEYS = [
    "v",
    "id",
    "tok",
    "hash",
    "mf",
    "via",
    "sid",
    "names",
    "schema",
    "clk",
    "pi",
    "up",
    "n",
    "ep",
    "t",
    "i",
    "d",
    "q",
    "m",
    "k",
    "er",
    "op",
    "s",
    "a",
    "rid",
    "nr",
    "ev",
    "cancel",
    "name",
    "data",
    "src",
    "tx",
    "dst",
    "res",
    "code",
    "msg",
    "fatal",
    "retry",
    "reconnect",
]
_body_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-2, max_value=70000)
    | st.floats(allow_nan=False, width=32)
    | st.sampled_from(["", "A", "ep", "stop", "proto"])
    | st.binary(max_size=2),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_KEYS), children, max_size=6)
    ),
    max_leaves=12,
)
_CLOCK_DELTA = ClockBody(n=2, q=1, m=1, k=5, indexes=(0,), deltas=(1,))
_CLOCK_FULL = ClockBody(n=1, q=0, m=0, k=0, epoch="e", time=(0, 0))
#: A valid body for every kind each role may receive (after the handshake).
_TEMPLATES: dict[Role, list[Event]] = {
    "server": [
        Mutate(Op.SET, (0, 1), rid=3, args={"x": [1]}, no_reply=True, event=("m", "t")),
        Sync(),
        Wait(1, {"x": 1}),
        WaitCancel(1),
        Ping(1.5),
        Result(result=0, clock=_CLOCK_DELTA, time=1, data="d", re=1),
        Error("state", "no", fatal=True, retry=False),
        Bye("stop", msg="bye", reconnect=False),
    ],
    "client": [
        Welcome(1, "r", "rs", ("A", "B"), _CLOCK_FULL, 100, up=True),
        Clock(_CLOCK_DELTA),
        Clock(_CLOCK_FULL),
        Payload("p", {"k": b"v"}, "tok", "src", "tx", "dst"),
        Ping(2),
        Result(clock=_CLOCK_FULL, re=1),
        Error("busy", "full", fatal=False, retry=True, re=1),
        Bye("kicked", reconnect=True),
    ],
}


@st.composite
def _mutated_frame(draw: st.DrawFn, role: Role, seq: int) -> bytes:
    """A valid frame for *role*, then damaged: keys dropped or overwritten, bad seq/re."""
    template = draw(st.sampled_from(_TEMPLATES[role]))
    body = template.to_body()
    if draw(st.booleans()):
        body["clk" if "clk" in body else "x"] = draw(_body_values)
    keys = st.sampled_from(sorted(body) or ["x"]) | st.sampled_from(_KEYS)
    for key, value, drop in draw(
        st.lists(st.tuples(keys, _body_values, st.booleans()), max_size=3)
    ):
        if drop:
            body.pop(key, None)
        else:
            body[key] = value
    kind = draw(st.just(int(template.KIND)) | st.integers(0, 12))
    seq = draw(st.just(seq) | st.integers(0, seq + 1))
    re = draw(st.just(template.re) | st.integers(0, 3))
    return wrap(msgpack.packb([kind, seq, re, body], use_bin_type=True))


@pytest.mark.parametrize("role", ["server", "client"])
@given(data=st.data(), cuts=st.lists(st.integers(min_value=0), max_size=4))
def test_damaged_frames(role: Role, data: st.DataObject, cuts: list[int]) -> None:
    """Valid frames of every kind, damaged at random, after a completed handshake."""
    conn = Connection(role, max_frame=1 << 16)
    if role == "server":
        conn.receive_data(HELLO_FRAME)
        assert isinstance(conn.next_event(), Hello)
        conn.send(Welcome(1, "r", "rs", ("A", "B"), _CLOCK_FULL, None))
    else:
        conn.send(Hello((1,), "rc-f"))
        welcome = Welcome(1, "r", "rs", ("A", "B"), _CLOCK_FULL, None).to_body()
        conn.receive_data(wrap(msgpack.packb([2, 1, 1, welcome])))
        assert isinstance(conn.next_event(), Welcome)
    count = data.draw(st.integers(1, 6))
    stream = b"".join(
        data.draw(_mutated_frame(role, seq)) for seq in range(2, count + 2)
    )
    events = run(conn, chunked(stream, cuts), eof=data.draw(st.booleans()), first=2)
    for ev in events:
        # What got through re-encodes to an equal event: validation was complete.
        assert type(ev).from_body(ev.to_body(), seq=ev.seq, re=ev.re) == ev


# --- sent events come back equal -------------------------------------------------------

_args = st.dictionaries(
    st.text(max_size=5),
    st.none() | st.integers(0, 1 << 40) | st.text(max_size=5) | st.binary(max_size=5),
    max_size=3,
)
_uint = st.integers(min_value=0, max_value=(1 << 64) - 1)
_from_client = st.one_of(
    st.builds(
        Mutate,
        op=st.sampled_from(Op),
        states=st.lists(st.integers(0, 200), max_size=5).map(tuple),
        rid=_uint,
        args=st.none() | _args,
        no_reply=st.booleans(),
        event=st.none() | st.tuples(st.text(max_size=4), st.text(max_size=4)),
    ),
    st.builds(Wait, state=st.integers(0, 200), args=_args),
    st.builds(Ping, time=st.floats(allow_nan=False) | st.integers(0, 1 << 53)),
)


@st.composite
def _clocks(draw: st.DrawFn) -> ClockBody:
    small = st.integers(0, 1000)
    if draw(st.booleans()):
        return ClockBody(
            n=draw(small),
            q=draw(small),
            m=draw(small),
            k=draw(st.integers(0, 65535)),
            epoch=draw(st.text(max_size=6)),
            time=tuple(draw(st.lists(small, max_size=6))),
            up=draw(st.none() | st.booleans()),
        )
    count = draw(st.integers(0, 5))
    ticked = count > 0 or draw(st.booleans())  # i=[] d=[] and no i/d are both valid
    ticks = st.lists(small, min_size=count, max_size=count).map(tuple)
    return ClockBody(
        n=draw(small),
        q=draw(small),
        m=draw(small),
        k=draw(st.integers(0, 65535)),
        indexes=draw(ticks) if ticked else None,
        deltas=draw(ticks) if ticked else None,
        err=draw(st.none() | st.tuples(st.text(), st.text(), st.text())),
    )


_from_server = st.one_of(
    st.builds(
        Payload,
        name=st.text(max_size=5),
        data=st.none() | _args | st.lists(st.integers(0, 9), max_size=3),
        token=st.text(max_size=5),
        source=st.none() | st.text(max_size=5),
    ),
    st.builds(
        Result,
        result=st.none() | st.integers(-5, 5),
        clock=st.none() | _clocks(),
        time=st.none() | st.floats(allow_nan=False),
        re=st.just(1),
    ),
)


@given(ev=_from_client)
def test_client_events_round_trip(ev: Event) -> None:
    client, server = Connection("client"), Connection("server")
    server.receive_data(client.send(Hello((1,), "rc-f")))
    assert isinstance(server.next_event(), Hello)
    server.receive_data(client.send(ev))
    assert server.next_event() == dataclasses.replace(ev, seq=2)


@given(ev=_from_server)
def test_server_events_round_trip(ev: Event) -> None:
    client, server = Connection("client"), Connection("server")
    server.receive_data(client.send(Hello((1,), "rc-f")))
    assert isinstance(server.next_event(), Hello)
    welcome = Welcome(1, "root", "rs", ("A",), ClockBody(1, 0, 0, 0, "e", (0,)), None)
    client.receive_data(server.send(welcome))
    assert isinstance(client.next_event(), Welcome)
    client.receive_data(server.send(ev))
    assert client.next_event() == dataclasses.replace(ev, seq=2)


def test_kinds_cover_event_types() -> None:
    """Every kind has an event class the fuzzers can produce."""
    kinds = {cls.KIND for cls in EVENT_TYPES}
    assert kinds == set(Kind)
