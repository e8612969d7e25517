"""The sans-IO connection: events, sequencing, validation and the sticky error state."""

from __future__ import annotations

import ast
import dataclasses
import struct
from pathlib import Path

import msgpack  # type: ignore[import-untyped]  # no stubs; only used to craft input
import pytest

import asyncmachine
from asyncmachine.rpc._errors import (
    FrameTooLarge,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from asyncmachine.rpc._events import (
    NO_RETRY_CODES,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    Bye,
    ByeCode,
    Clock,
    ClockBody,
    Error,
    ErrorCode,
    Event,
    Hello,
    Kind,
    Mutate,
    Op,
    Payload,
    Ping,
    Result,
    StateSchema,
    Sync,
    Wait,
    WaitCancel,
    Welcome,
    event_from_body,
)
from asyncmachine.rpc._protocol import (
    CLOSED,
    MAX_FRAME,
    MAX_FRAME_LIMIT,
    NEED_DATA,
    Connection,
    ConnectionState,
    NextEvent,
    error_frame_for,
)

SRC = Path(asyncmachine.__file__).parent

FULL = ClockBody(n=1, q=2, m=3, k=8, epoch="ep1", time=(1, 0, 2))
DELTA = ClockBody(n=2, q=1, m=1, k=11, indexes=(1,), deltas=(1,))
HELLO = Hello(versions=(1,), id="rc-cli", max_frame=4096)
WELCOME = Welcome(
    version=1,
    id="root",
    session_id="rs-1",
    names=("A", "B", "Exception"),
    clock=FULL,
    push_interval=250,
    max_frame=8192,
)


def frame(kind: int, seq: int, re: int, body: object) -> bytes:
    """A frame packed with plain msgpack, bypassing every check of ours."""
    payload: bytes = msgpack.packb([kind, seq, re, body], use_bin_type=True)
    return struct.pack(">I", len(payload)) + payload


HELLO_FRAME = frame(1, 1, 0, {"v": [1], "id": "rc-cli", "mf": 4096})


def event(conn: Connection) -> Event:
    """The next event, which must be there."""
    ev = conn.next_event()
    assert not isinstance(ev, NextEvent), ev
    return ev


def deliver(src: Connection, dst: Connection, ev: Event) -> Event:
    """Send *ev* from *src*, feed it to *dst* and return what *dst* decodes."""
    dst.receive_data(src.send(ev))
    out = event(dst)
    assert dst.next_event() is NEED_DATA
    return out


def handshake() -> tuple[Connection, Connection]:
    """A client and a server that have exchanged HELLO and WELCOME."""
    client, server = Connection("client"), Connection("server")
    deliver(client, server, HELLO)
    deliver(server, client, WELCOME)
    return client, server


def server_after_hello() -> Connection:
    server = Connection("server")
    server.receive_data(HELLO_FRAME)
    assert isinstance(event(server), Hello)
    return server


def client_after_welcome() -> Connection:
    client = Connection("client")
    client.send(HELLO)
    client.receive_data(frame(2, 1, 1, WELCOME.to_body()))
    assert isinstance(event(client), Welcome)
    return client


def drain(conn: Connection) -> list[Event]:
    """Every event *conn* can produce from what it has buffered."""
    out: list[Event] = []
    while not isinstance(ev := conn.next_event(), NextEvent):
        out.append(ev)
    return out


def expect_remote(
    conn: Connection, data: bytes, match: str, code: str = "proto"
) -> None:
    """Feeding *data* makes *conn* raise RemoteProtocolError and enter ERROR."""
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=match) as info:
        drain(conn)
    assert info.value.code == code
    assert conn.state is ConnectionState.ERROR


def narrowing(conn: Connection) -> int:
    """Type-level check (mypy): ``is`` on the sentinels narrows to ``Event``."""
    ev = conn.next_event()
    if ev is NEED_DATA or ev is CLOSED:
        return 0
    return ev.seq


class TestConstants:
    def test_versions_and_codes(self) -> None:
        assert PROTOCOL_VERSION == 1
        assert SUPPORTED_VERSIONS == (1,)
        assert {k.name: int(k) for k in Kind} == {
            "HELLO": 1,
            "WELCOME": 2,
            "CLOCK": 3,
            "MUTATE": 4,
            "SYNC": 5,
            "WAIT": 6,
            "PAYLOAD": 7,
            "PING": 8,
            "RESULT": 9,
            "ERROR": 10,
            "BYE": 11,
        }
        assert [int(op) for op in (Op.ADD, Op.REMOVE, Op.SET)] == [0, 1, 2]

    def test_error_codes(self) -> None:
        assert {c.value for c in ErrorCode} == {
            "proto",
            "version",
            "auth",
            "acl",
            "too_big",
            "schema",
            "state",
            "args",
            "busy",
            "slow",
            "timeout",
            "no_conn",
            "dest",
            "no_consumer",
            "cycle",
            "internal",
        }
        assert set(NO_RETRY_CODES) == {"version", "auth", "acl", "cycle"}
        assert {c.value for c in ByeCode} == {"stop", "shutdown", "restart", "kicked"}


class TestRoundTrip:
    @pytest.mark.parametrize(
        "ev",
        [
            pytest.param(Mutate(Op.ADD, (0, 2), rid=7), id="mutate-min"),
            pytest.param(
                Mutate(
                    Op.SET,
                    (),
                    rid=(1 << 64) - 1,
                    args={"id": 1, "x": [b"\x00", None, {"y": 1.5}]},
                    no_reply=True,
                    event=("m1", "tx1"),
                ),
                id="mutate-full",
            ),
            pytest.param(Sync(), id="sync"),
            pytest.param(Wait(state=1, args={"id": "a"}), id="wait"),
            pytest.param(WaitCancel(wait_seq=1), id="wait-cancel"),
            pytest.param(Ping(time=12.5), id="ping"),
            pytest.param(Result(time=3, re=1), id="result-pong"),
            pytest.param(Result(re=1), id="result-ack"),
            pytest.param(Error("no_consumer", "none", re=1), id="error"),
            pytest.param(Bye("stop", reconnect=False), id="bye"),
            pytest.param(
                Bye(ByeCode.STOP, msg="leaving", reconnect=True), id="bye-msg"
            ),
        ],
    )
    def test_client_to_server(self, ev: Event) -> None:
        client, server = handshake()
        received = deliver(client, server, ev)
        assert received == dataclasses.replace(ev, seq=2)
        assert type(received) is type(ev)
        assert client.sent_seq == server.received_seq == 2

    @pytest.mark.parametrize(
        "ev",
        [
            pytest.param(Clock(DELTA), id="clock-delta"),
            pytest.param(Clock(FULL), id="clock-full"),
            pytest.param(Clock(ClockBody(n=3, q=0, m=1, k=12)), id="clock-empty-delta"),
            pytest.param(
                Clock(
                    ClockBody(
                        n=4,
                        q=0,
                        m=1,
                        k=13,
                        epoch="ep1",
                        indexes=(2,),
                        deltas=(1,),
                        err=("A", "ValueError", "boom"),
                        up=False,
                    )
                ),
                id="clock-err-up",
            ),
            pytest.param(
                Payload("report", {"rows": [1, 2]}, "tok1", "root", "tx9", "rc-cli"),
                id="payload",
            ),
            pytest.param(Payload("p", None, "t"), id="payload-nil-data"),
            pytest.param(Ping(time=1), id="ping"),
            pytest.param(Result(result=1, clock=DELTA, re=1), id="result-clock"),
            pytest.param(Result(result=-1, data={"a": [1]}, re=1), id="result-data"),
            pytest.param(
                Error("state", "unknown", fatal=False, retry=False, re=1), id="error"
            ),
            pytest.param(Error("slow", "too slow", fatal=True, retry=True), id="fatal"),
            pytest.param(Bye("shutdown", reconnect=True), id="bye"),
            pytest.param(
                dataclasses.replace(
                    WELCOME,
                    schema={
                        "A": StateSchema(auto=True, require=("B",)),
                        "B": StateSchema(),
                        "Exception": StateSchema(multi=True, tags=("err",)),
                    },
                    up=True,
                    push_interval=None,
                ),
                id="welcome-again",
            ),
        ],
    )
    def test_server_to_client(self, ev: Event) -> None:
        client, server = handshake()
        received = deliver(server, client, ev)
        assert received == dataclasses.replace(ev, seq=2)
        assert server.sent_seq == client.received_seq == 2

    def test_handshake(self) -> None:
        client, server = Connection("client"), Connection("server")
        assert deliver(client, server, HELLO) == dataclasses.replace(HELLO, seq=1)
        hello_full = Hello(
            versions=(1, 2),
            id="rc-x",
            token="s3cret",
            schema_hash="abc",
            max_frame=MAX_FRAME_LIMIT,
            via=("rep-1", "root"),
        )
        assert Hello.from_body(hello_full.to_body()) == hello_full
        assert deliver(server, client, WELCOME) == dataclasses.replace(
            WELCOME, seq=1, re=0
        )

    def test_wait_dispatch(self) -> None:
        assert isinstance(event_from_body(Kind.WAIT, {"cancel": 3}), WaitCancel)
        assert isinstance(event_from_body(Kind.WAIT, {"s": 0, "a": {}}), Wait)

    def test_event_from_body_sets_seq_and_re(self) -> None:
        ev = event_from_body(Kind.PING, {"t": 1}, seq=5, re=2)
        assert (ev.seq, ev.re) == (5, 2)


class TestWireBodies:
    """The exact wire keys: another implementation relies on them."""

    def test_hello_minimal(self) -> None:
        assert Hello((1,), "rc-a").to_body() == {
            "v": [1],
            "id": "rc-a",
            "mf": MAX_FRAME,
        }

    def test_hello_full(self) -> None:
        body = Hello((1,), "a", "t", "h", 10, ("x",)).to_body()
        assert body == {
            "v": [1],
            "id": "a",
            "tok": "t",
            "hash": "h",
            "mf": 10,
            "via": ["x"],
        }

    def test_welcome(self) -> None:
        body = dataclasses.replace(
            WELCOME, schema={"A": StateSchema(remove=("B",), after=("B",))}, up=False
        ).to_body()
        assert body == {
            "v": 1,
            "id": "root",
            "sid": "rs-1",
            "names": ["A", "B", "Exception"],
            "schema": {"A": {"rem": ["B"], "after": ["B"]}},
            "clk": {"n": 1, "ep": "ep1", "t": [1, 0, 2], "q": 2, "m": 3, "k": 8},
            "pi": 250,
            "mf": 8192,
            "up": False,
        }

    def test_welcome_pi_is_sent_as_nil(self) -> None:
        assert dataclasses.replace(WELCOME, push_interval=None).to_body()["pi"] is None

    def test_clock_delta(self) -> None:
        assert DELTA.to_body() == {"n": 2, "i": [1], "d": [1], "q": 1, "m": 1, "k": 11}
        assert not DELTA.is_full
        assert FULL.is_full

    def test_mutate(self) -> None:
        ev = Mutate(
            Op.REMOVE, (1,), rid=9, args={"a": 1}, no_reply=True, event=("m", "t")
        )
        assert ev.to_body() == {
            "op": 1,
            "s": [1],
            "a": {"a": 1},
            "rid": 9,
            "nr": True,
            "ev": ["m", "t"],
        }
        assert Mutate(Op.ADD, (0,), rid=1).to_body() == {"op": 0, "s": [0], "rid": 1}

    def test_others(self) -> None:
        assert Sync().to_body() == {}
        assert Wait(2, {"k": 1}).to_body() == {"s": 2, "a": {"k": 1}}
        assert WaitCancel(4).to_body() == {"cancel": 4}
        assert Ping(1.5).to_body() == {"t": 1.5}
        assert Result().to_body() == {}
        assert Result(result=1, clock=DELTA, time=2, data="x").to_body() == {
            "res": 1,
            "clk": DELTA.to_body(),
            "t": 2,
            "data": "x",
        }
        assert Payload("n", [1], "tok", "s", "tx", "d").to_body() == {
            "name": "n",
            "data": [1],
            "tok": "tok",
            "src": "s",
            "tx": "tx",
            "dst": "d",
        }
        assert Error("busy", "full", retry=True).to_body() == {
            "code": "busy",
            "msg": "full",
            "fatal": False,
            "retry": True,
        }
        assert Bye("kicked").to_body() == {"code": "kicked", "reconnect": False}

    def test_state_schema_leaves_defaults_out(self) -> None:
        assert StateSchema().to_body() == {}
        full = StateSchema(True, True, ("a",), ("b",), ("c",), ("d",), ("e",))
        assert full.to_body() == {
            "auto": True,
            "multi": True,
            "add": ["a"],
            "rem": ["b"],
            "req": ["c"],
            "after": ["d"],
            "tags": ["e"],
        }
        assert StateSchema.from_body(full.to_body()) == full

    def test_unknown_keys_are_ignored(self) -> None:
        body = {**HELLO.to_body(), "future": [1, 2], "x": {"y": None}}
        assert Hello.from_body(body) == HELLO
        clock = {**DELTA.to_body(), "mu": []}
        assert ClockBody.from_body(clock) == DELTA

    def test_worked_examples(self) -> None:
        """The hex dumps in docs/protocol.md come from this code."""
        client = Connection("client")
        hello = Hello(
            (1,), "rc-cli", token="s3cret", schema_hash="9f2c", max_frame=MAX_FRAME
        )
        assert client.send(hello).hex(" ") == (
            "00 00 00 30 94 01 01 00 85 a1 76 91 01 a2 69 64 a6 72 63 2d 63 6c 69 a3 "
            "74 6f 6b a6 73 33 63 72 65 74 a4 68 61 73 68 a4 39 66 32 63 a2 6d 66 ce "
            "00 10 00 00"
        )
        client.receive_data(frame(2, 1, 1, WELCOME.to_body()))
        event(client)
        mutate = Mutate(Op.ADD, (0, 2), rid=42, args={"id": 1})
        assert client.send(mutate).hex(" ") == (
            "00 00 00 1a 94 04 02 00 84 a2 6f 70 00 a1 73 92 00 02 a1 61 81 a2 69 64 "
            "01 a3 72 69 64 2a"
        )


BAD_BODIES = [
    # HELLO
    (Kind.HELLO, {"id": "a", "mf": 1}, "missing required key 'v'"),
    (Kind.HELLO, {"v": 1, "id": "a", "mf": 1}, "'v' must be a list"),
    (Kind.HELLO, {"v": ["1"], "id": "a", "mf": 1}, "'v' must be a list"),
    (Kind.HELLO, {"v": [1], "id": 5, "mf": 1}, "'id' must be a str"),
    (Kind.HELLO, {"v": [1], "id": "a"}, "missing required key 'mf'"),
    (Kind.HELLO, {"v": [1], "id": "a", "mf": 0}, "'mf' must be an int >= 1"),
    (Kind.HELLO, {"v": [1], "id": "a", "mf": 1, "tok": None}, "'tok' must be a str"),
    (Kind.HELLO, {"v": [1], "id": "a", "mf": 1, "hash": 1}, "'hash' must be a str"),
    (Kind.HELLO, {"v": [1], "id": "a", "mf": 1, "via": [1]}, "'via' must be a list"),
    # WELCOME
    (Kind.WELCOME, {**WELCOME.to_body(), "clk": None}, "'clk' must be a map"),
    (Kind.WELCOME, {**WELCOME.to_body(), "clk": DELTA.to_body()}, "full clock"),
    (Kind.WELCOME, {**WELCOME.to_body(), "v": 0}, "'v' must be an int >= 1"),
    (Kind.WELCOME, {**WELCOME.to_body(), "names": "AB"}, "'names' must be a list"),
    (Kind.WELCOME, {**WELCOME.to_body(), "pi": "1"}, "'pi' must be an int"),
    (Kind.WELCOME, {**WELCOME.to_body(), "mf": True}, "'mf' must be an int"),
    (Kind.WELCOME, {**WELCOME.to_body(), "schema": []}, "'schema' must be a map"),
    (Kind.WELCOME, {**WELCOME.to_body(), "schema": {"A": 1}}, "map of str to maps"),
    (Kind.WELCOME, {**WELCOME.to_body(), "schema": {"A": {"auto": 1}}}, "'auto'"),
    (Kind.WELCOME, {**WELCOME.to_body(), "schema": {"A": {"req": "B"}}}, "'req'"),
    (Kind.WELCOME, {**WELCOME.to_body(), "up": 0}, "'up' must be a bool"),
    (Kind.WELCOME, {k: v for k, v in WELCOME.to_body().items() if k != "pi"}, "'pi'"),
    (Kind.WELCOME, {k: v for k, v in WELCOME.to_body().items() if k != "sid"}, "'sid'"),
    # CLOCK
    (Kind.CLOCK, {"q": 0, "m": 0, "k": 0}, "missing required key 'n'"),
    (Kind.CLOCK, {"n": -1, "q": 0, "m": 0, "k": 0}, "'n' must be an int >= 0"),
    (Kind.CLOCK, {"n": 1, "q": 0, "m": 0, "k": 65536}, r"'k' must be an int in \[0"),
    (Kind.CLOCK, {"n": 1, "q": 0.5, "m": 0, "k": 0}, "'q' must be an int"),
    (Kind.CLOCK, {"n": 1, "q": 0, "m": 0, "k": 0, "t": [1]}, "'ep'"),
    (Kind.CLOCK, {"n": 1, "q": 0, "m": 0, "k": 0, "t": [True], "ep": "e"}, "'t'"),
    (
        Kind.CLOCK,
        {"n": 1, "q": 0, "m": 0, "k": 0, "t": [1], "ep": "e", "i": [0], "d": [1]},
        "must not carry",
    ),
    (Kind.CLOCK, {"n": 1, "q": 0, "m": 0, "k": 0, "i": [0]}, "both present"),
    (Kind.CLOCK, {"n": 1, "q": 0, "m": 0, "k": 0, "i": [0], "d": [1, 1]}, "'i' has 1"),
    (Kind.CLOCK, {"n": 1, "q": 0, "m": 0, "k": 0, "i": [0], "d": [-1]}, "'d' must"),
    (Kind.CLOCK, {"n": 1, "q": 0, "m": 0, "k": 0, "er": ["a", "b"]}, "'er' must"),
    (Kind.CLOCK, {"n": 1, "q": 0, "m": 0, "k": 0, "er": ["a", "b", 3]}, "'er' must"),
    (Kind.CLOCK, {"n": 1, "q": 0, "m": 0, "k": 0, "ep": 1}, "'ep' must be a str"),
    # MUTATE
    (Kind.MUTATE, {"op": 3, "s": [0], "rid": 1}, r"'op' must be an int in \[0, 2\]"),
    (Kind.MUTATE, {"op": False, "s": [0], "rid": 1}, "'op' must be an int"),
    (Kind.MUTATE, {"op": 0, "s": ["A"], "rid": 1}, "'s' must be a list"),
    (Kind.MUTATE, {"op": 0, "s": [-1], "rid": 1}, "'s' must be a list"),
    (Kind.MUTATE, {"op": 0, "s": [0]}, "missing required key 'rid'"),
    (Kind.MUTATE, {"op": 0, "s": [0], "rid": -1}, "'rid' must be an int >= 0"),
    (Kind.MUTATE, {"op": 0, "s": [0], "rid": 1, "a": [1]}, "'a' must be a map"),
    (Kind.MUTATE, {"op": 0, "s": [0], "rid": 1, "nr": 1}, "'nr' must be a bool"),
    (
        Kind.MUTATE,
        {"op": 0, "s": [0], "rid": 1, "ev": ["a"]},
        "'ev' must be a list of 2",
    ),
    # WAIT
    (Kind.WAIT, {"a": {}}, "missing required key 's'"),
    (Kind.WAIT, {"s": 0}, "missing required key 'a'"),
    (Kind.WAIT, {"s": 0, "a": None}, "'a' must be a map"),
    (Kind.WAIT, {"cancel": 2, "s": 0}, "cannot be combined"),
    (Kind.WAIT, {"cancel": 0}, "'cancel' must be an int >= 1"),
    (Kind.WAIT, {"cancel": "2"}, "'cancel' must be an int"),
    # PAYLOAD
    (Kind.PAYLOAD, {"data": 1, "tok": "t"}, "missing required key 'name'"),
    (Kind.PAYLOAD, {"name": "n", "tok": "t"}, "missing required key 'data'"),
    (Kind.PAYLOAD, {"name": "n", "data": 1}, "missing required key 'tok'"),
    (Kind.PAYLOAD, {"name": "n", "data": 1, "tok": "t", "src": 1}, "'src' must be"),
    # PING
    (Kind.PING, {}, "missing required key 't'"),
    (Kind.PING, {"t": "1"}, "'t' must be a number"),
    (Kind.PING, {"t": True}, "'t' must be a number"),
    # RESULT
    (Kind.RESULT, {"res": "1"}, "'res' must be an int"),
    (Kind.RESULT, {"clk": []}, "'clk' must be a map"),
    (Kind.RESULT, {"clk": {"n": 1}}, "RESULT clk: missing required key"),
    (Kind.RESULT, {"t": None}, "'t' must be a number"),
    # ERROR
    (
        Kind.ERROR,
        {"code": "x", "msg": "m", "fatal": True},
        "missing required key 'retry'",
    ),
    (Kind.ERROR, {"code": "x", "msg": "m", "fatal": 1, "retry": True}, "'fatal' must"),
    (Kind.ERROR, {"code": 1, "msg": "m", "fatal": True, "retry": True}, "'code' must"),
    (Kind.ERROR, {"code": "x", "fatal": True, "retry": True}, "'msg'"),
    # BYE
    (Kind.BYE, {"code": "stop"}, "missing required key 'reconnect'"),
    (Kind.BYE, {"reconnect": True}, "missing required key 'code'"),
    (Kind.BYE, {"code": "stop", "reconnect": True, "msg": 1}, "'msg' must be a str"),
]


class TestBodyValidation:
    @pytest.mark.parametrize(
        ("kind", "body", "match"),
        [
            pytest.param(k, b, m, id=f"{k.name}-{i}")
            for i, (k, b, m) in enumerate(BAD_BODIES)
        ],
    )
    def test_bad_body(self, kind: Kind, body: dict[str, object], match: str) -> None:
        with pytest.raises(RemoteProtocolError, match=match) as info:
            event_from_body(kind, body)
        assert info.value.code == "proto"
        assert kind.name in str(info.value)

    def test_body_must_be_a_map(self) -> None:
        with pytest.raises(RemoteProtocolError, match="body must be a map"):
            Sync.from_body([])  # type: ignore[arg-type]

    def test_bad_body_over_the_wire(self) -> None:
        """A server fed a MUTATE with a string state index fails and says why."""
        server = server_after_hello()
        bad = frame(4, 2, 0, {"op": 0, "s": ["A"], "rid": 1})
        expect_remote(server, bad, "MUTATE: key 's' must be a list")


class TestReceiveRules:
    def test_canned_stream_split_everywhere(self) -> None:
        """Every split of a 4-frame stream yields the same events."""
        stream = (
            HELLO_FRAME
            + frame(4, 2, 0, {"op": 0, "s": [1], "rid": 5})
            + frame(5, 3, 0, {})
            + frame(8, 4, 0, {"t": 1.25})
        )
        expected = [
            dataclasses.replace(HELLO, seq=1),
            Mutate(Op.ADD, (1,), rid=5, seq=2),
            Sync(seq=3),
            Ping(1.25, seq=4),
        ]
        for cut in range(1, len(stream)):
            server = Connection("server")
            got: list[Event] = []
            for chunk in (stream[:cut], stream[cut:]):
                server.receive_data(chunk)
                got += drain(server)
            assert got == expected, cut
            assert server.received_seq == 4

    def test_need_data_until_complete(self) -> None:
        server = Connection("server")
        assert server.next_event() is NEED_DATA
        server.receive_data(HELLO_FRAME[:-1])
        assert server.next_event() is NEED_DATA
        assert server.buffered == len(HELLO_FRAME) - 1
        server.receive_data(HELLO_FRAME[-1:])
        assert isinstance(server.next_event(), Hello)
        assert server.buffered == 0

    def test_eof_at_boundary(self) -> None:
        """Frames before EOF are delivered, then CLOSED on every call."""
        server = Connection("server")
        server.receive_data(HELLO_FRAME)
        server.receive_data(b"")
        assert isinstance(server.next_event(), Hello)
        assert server.next_event() is CLOSED
        assert server.next_event() is CLOSED
        assert server.state is ConnectionState.CLOSED
        server.receive_data(b"")  # a second EOF is harmless

    def test_eof_before_anything(self) -> None:
        server = Connection("server")
        server.receive_data(b"")
        assert server.next_event() is CLOSED

    def test_send_after_eof_is_allowed(self) -> None:
        server = server_after_hello()
        server.receive_data(b"")
        assert server.next_event() is CLOSED
        assert server.send(Bye("shutdown")).startswith(b"\x00\x00\x00")

    @pytest.mark.parametrize("cut", [1, 4, 10, len(HELLO_FRAME) - 1])
    def test_eof_mid_frame(self, cut: int) -> None:
        server = Connection("server")
        server.receive_data(HELLO_FRAME[:cut])
        server.receive_data(b"")
        with pytest.raises(RemoteProtocolError, match="middle of a frame") as info:
            server.next_event()
        assert info.value.code == "proto"
        assert server.state is ConnectionState.ERROR

    def test_data_after_eof(self) -> None:
        server = Connection("server")
        server.receive_data(b"")
        with pytest.raises(LocalProtocolError, match="after EOF"):
            server.receive_data(HELLO_FRAME)
        assert server.next_event() is CLOSED

    def test_zero_length(self) -> None:
        expect_remote(Connection("server"), b"\0\0\0\0", "length is 0")

    def test_oversize_before_body(self) -> None:
        server = Connection("server", max_frame=32)
        expect_remote(server, struct.pack(">I", 33), "exceeds max frame", "too_big")
        assert server.buffered == 4

    def test_trailing_garbage_in_frame(self) -> None:
        payload = msgpack.packb([1, 1, 0, HELLO.to_body()]) + b"\xc0"
        data = struct.pack(">I", len(payload)) + payload
        expect_remote(Connection("server"), data, "trailing bytes")

    def test_ext_type_in_body(self) -> None:
        body = {"v": [1], "id": msgpack.ExtType(3, b"x"), "mf": 1}
        expect_remote(Connection("server"), frame(1, 1, 0, body), "extension type 3")

    def test_non_str_key_in_body(self) -> None:
        body = {"v": [1], "id": "a", "mf": 1, "x": {2: 3}}
        expect_remote(Connection("server"), frame(1, 1, 0, body), "malformed msgpack")

    @pytest.mark.parametrize("kind", [0, 12, 255])
    def test_unknown_kind(self, kind: int) -> None:
        expect_remote(
            server_after_hello(), frame(kind, 2, 0, {}), f"unknown frame kind {kind}"
        )

    @pytest.mark.parametrize("kind", [Kind.WELCOME, Kind.CLOCK, Kind.PAYLOAD])
    def test_server_refuses_server_kinds(self, kind: Kind) -> None:
        expect_remote(
            server_after_hello(), frame(kind, 2, 0, {}), "client may not send"
        )

    @pytest.mark.parametrize("kind", [Kind.HELLO, Kind.MUTATE, Kind.SYNC, Kind.WAIT])
    def test_client_refuses_client_kinds(self, kind: Kind) -> None:
        expect_remote(
            client_after_welcome(), frame(kind, 2, 0, {}), "server may not send"
        )

    @pytest.mark.parametrize("kind", [Kind.MUTATE, Kind.PING, Kind.BYE, Kind.ERROR])
    def test_server_first_frame_must_be_hello(self, kind: Kind) -> None:
        expect_remote(
            Connection("server"), frame(kind, 1, 0, {}), "first frame must be HELLO"
        )

    def test_hello_only_once(self) -> None:
        data = frame(1, 2, 0, HELLO.to_body())
        expect_remote(server_after_hello(), data, "HELLO may only be the first frame")

    @pytest.mark.parametrize("kind", [Kind.CLOCK, Kind.PING, Kind.RESULT, Kind.PAYLOAD])
    def test_client_wants_welcome_first(self, kind: Kind) -> None:
        client = Connection("client")
        client.send(HELLO)
        expect_remote(client, frame(kind, 1, 1, {"t": 1}), "before WELCOME")

    @pytest.mark.parametrize(
        "ev",
        [
            pytest.param(Error("auth", "bad token", fatal=True), id="error"),
            pytest.param(Bye("shutdown"), id="bye"),
        ],
    )
    def test_client_accepts_error_or_bye_first(self, ev: Event) -> None:
        client = Connection("client")
        client.send(HELLO)
        client.receive_data(frame(ev.KIND, 1, 1, ev.to_body()))
        assert event(client) == dataclasses.replace(ev, seq=1, re=1)

    def test_welcome_may_come_again(self) -> None:
        client = client_after_welcome()
        client.receive_data(frame(2, 2, 0, WELCOME.to_body()))
        assert event(client).seq == 2

    @pytest.mark.parametrize(
        ("seq", "match"),
        [
            (3, "gap in seq: got 3, expected 2"),
            (1, "repeated seq: got 1"),
            (0, "repeated"),
        ],
    )
    def test_seq_must_be_next(self, seq: int, match: str) -> None:
        expect_remote(server_after_hello(), frame(5, seq, 0, {}), match)

    def test_first_seq_is_one(self) -> None:
        expect_remote(
            Connection("server"), frame(1, 2, 0, HELLO.to_body()), "gap in seq"
        )

    def test_re_beyond_sent(self) -> None:
        server = server_after_hello()
        server.send(WELCOME)
        expect_remote(server, frame(9, 2, 2, {}), "re=2, but only 1 frames were sent")

    def test_re_within_sent(self) -> None:
        server = server_after_hello()
        server.send(WELCOME)
        server.receive_data(frame(9, 2, 1, {}))
        assert event(server) == Result(seq=2, re=1)

    def test_result_must_answer(self) -> None:
        expect_remote(server_after_hello(), frame(9, 2, 0, {}), "RESULT with re=0")

    def test_wait_cancel_names_an_earlier_frame(self) -> None:
        expect_remote(
            server_after_hello(), frame(6, 2, 0, {"cancel": 2}), "names no earlier"
        )

    @pytest.mark.parametrize(
        "final",
        [
            pytest.param(Bye("stop").to_body(), id="bye"),
            pytest.param(Error("proto", "x", fatal=True).to_body(), id="fatal-error"),
        ],
    )
    def test_nothing_after_goodbye(self, final: dict[str, object]) -> None:
        server = server_after_hello()
        kind = Kind.BYE if "reconnect" in final else Kind.ERROR
        server.receive_data(frame(kind, 2, 0, final))
        assert event(server).KIND is kind
        expect_remote(server, frame(5, 3, 0, {}), "after the peer's BYE or fatal ERROR")

    def test_non_fatal_error_is_not_goodbye(self) -> None:
        server = server_after_hello()
        server.receive_data(frame(10, 2, 0, Error("args", "x").to_body()))
        server.receive_data(frame(5, 3, 0, {}))
        assert isinstance(event(server), Error)
        assert isinstance(event(server), Sync)

    def test_peer_max_frame_learned_from_handshake(self) -> None:
        client, server = handshake()
        assert server.peer_max_frame == HELLO.max_frame
        assert client.peer_max_frame == WELCOME.max_frame

    def test_huge_announced_max_frame_is_capped(self) -> None:
        server = Connection("server")
        server.receive_data(frame(1, 1, 0, {"v": [1], "id": "a", "mf": 1 << 40}))
        event(server)
        assert server.peer_max_frame == MAX_FRAME_LIMIT


class TestStickyError:
    def broken(self) -> Connection:
        server = server_after_hello()
        expect_remote(server, frame(5, 5, 0, {}), "gap in seq")
        return server

    def test_every_receive_call_raises(self) -> None:
        server = self.broken()
        for _ in range(2):
            with pytest.raises(
                RemoteProtocolError, match="ERROR state after: gap"
            ) as info:
                server.next_event()
            assert info.value.code == "proto"
        with pytest.raises(RemoteProtocolError, match="ERROR state"):
            server.receive_data(frame(5, 2, 0, {}))
        with pytest.raises(RemoteProtocolError, match="ERROR state"):
            server.receive_data(b"")
        assert server.state is ConnectionState.ERROR
        assert server.received_seq == 1

    def test_code_is_kept(self) -> None:
        server = Connection("server", max_frame=8)
        expect_remote(server, HELLO_FRAME, "exceeds", "too_big")
        with pytest.raises(RemoteProtocolError) as info:
            server.next_event()
        assert info.value.code == "too_big"

    def test_one_final_error_frame_may_be_sent(self) -> None:
        server = self.broken()
        with pytest.raises(LocalProtocolError, match="in the ERROR state"):
            server.send(WELCOME)
        with pytest.raises(LocalProtocolError, match="in the ERROR state"):
            server.send(Error("proto", "x", fatal=False))
        with pytest.raises(RemoteProtocolError) as info:
            server.next_event()
        data = server.send(error_frame_for(info.value))
        client = Connection("client")
        client.send(HELLO)
        client.receive_data(data)
        err = event(client)
        assert isinstance(err, Error)
        assert (err.code, err.fatal, err.retry) == ("proto", True, True)
        with pytest.raises(LocalProtocolError, match="already sent"):
            server.send(Bye("shutdown"))

    def test_bye_may_be_the_final_frame(self) -> None:
        server = self.broken()
        server.send(Bye("kicked", msg="broken stream"))
        with pytest.raises(LocalProtocolError, match="already sent"):
            server.send(error_frame_for(RemoteProtocolError("x")))


class TestSendRules:
    def test_seq_is_assigned(self) -> None:
        client, _server = handshake()
        assert (client.sent_seq, client.next_seq) == (1, 2)
        client.send(Ping(1, seq=99))  # the event's own seq is ignored
        assert (client.sent_seq, client.next_seq) == (2, 3)

    @pytest.mark.parametrize(
        ("role", "ev"),
        [
            pytest.param("client", WELCOME, id="client-welcome"),
            pytest.param("client", Clock(DELTA), id="client-clock"),
            pytest.param("client", Payload("n", 1, "t"), id="client-payload"),
            pytest.param("server", HELLO, id="server-hello"),
            pytest.param("server", Mutate(Op.ADD, (0,), rid=1), id="server-mutate"),
            pytest.param("server", Sync(), id="server-sync"),
            pytest.param("server", Wait(0, {}), id="server-wait"),
        ],
    )
    def test_kind_not_allowed_for_role(self, role: str, ev: Event) -> None:
        client, server = handshake()
        conn = client if role == "client" else server
        with pytest.raises(LocalProtocolError, match=f"a {role} may not send"):
            conn.send(ev)
        assert conn.sent_seq == 1

    def test_client_first_frame_must_be_hello(self) -> None:
        client = Connection("client")
        with pytest.raises(LocalProtocolError, match="first frame must be HELLO"):
            client.send(Ping(1))
        client.send(HELLO)
        with pytest.raises(LocalProtocolError, match="HELLO may only be the first"):
            client.send(HELLO)

    def test_server_handshake_order(self) -> None:
        server = Connection("server")
        with pytest.raises(LocalProtocolError, match="before receiving HELLO"):
            server.send(WELCOME)
        server = server_after_hello()
        for ev in (Clock(DELTA), Ping(1), Result(re=1), Payload("n", 1, "t")):
            with pytest.raises(LocalProtocolError, match="before WELCOME"):
                server.send(ev)
        server.send(WELCOME)
        server.send(Clock(DELTA))
        assert server.sent_seq == 2

    def test_server_may_refuse_before_hello(self) -> None:
        server = Connection("server")
        server.send(Error("busy", "full", fatal=True, retry=True))
        assert server.sent_seq == 1

    def test_re_must_name_a_received_frame(self) -> None:
        client, _server = handshake()
        with pytest.raises(LocalProtocolError, match=r"re=2 must be in \[0, 1\]"):
            client.send(Error("args", "x", re=2))
        with pytest.raises(LocalProtocolError, match=r"re=True must be in \[0, 1\]"):
            client.send(Result(re=True))
        with pytest.raises(LocalProtocolError, match="RESULT needs re"):
            client.send(Result())
        client.send(Result(re=1))

    def test_wait_cancel_must_name_a_sent_frame(self) -> None:
        client, _server = handshake()
        with pytest.raises(LocalProtocolError, match="names no frame sent"):
            client.send(WaitCancel(5))

    @pytest.mark.parametrize(
        "ev",
        [
            pytest.param(Mutate(Op.ADD, ("A",), rid=1), id="str-index"),  # type: ignore[arg-type]
            pytest.param(Mutate(Op.ADD, (0,), rid=-1), id="negative-rid"),
            pytest.param(Ping("now"), id="str-time"),  # type: ignore[arg-type]
            pytest.param(Error("x", None), id="nil-msg"),  # type: ignore[arg-type]
            pytest.param(
                Clock(ClockBody(n=1, q=0, m=0, k=0, time=(1,))), id="no-epoch"
            ),
        ],
    )
    def test_invalid_event_is_refused(self, ev: Event) -> None:
        client, server = handshake()
        conn = server if isinstance(ev, Clock) else client
        with pytest.raises(LocalProtocolError, match=f"invalid {ev.KIND.name} event"):
            conn.send(ev)
        assert conn.sent_seq == 1
        assert conn.state is ConnectionState.OPEN

    def test_nothing_after_our_goodbye(self) -> None:
        client, _server = handshake()
        client.send(Bye("stop"))
        with pytest.raises(LocalProtocolError, match="already sent"):
            client.send(Ping(1))
        client2, _ = handshake()
        client2.send(Error("internal", "x", fatal=True))
        with pytest.raises(LocalProtocolError, match="already sent"):
            client2.send(Bye("stop"))

    def test_frame_too_large_leaves_connection_usable(self) -> None:
        """A refused frame uses no seq: the next frame follows without a gap."""
        client, server = handshake()
        server.peer_max_frame = 64
        with pytest.raises(FrameTooLarge, match="exceeds the peer's max frame"):
            server.send(Payload("big", b"x" * 100, "tok"))
        assert server.sent_seq == 1
        assert server.state is ConnectionState.OPEN
        received = deliver(server, client, Payload("small", b"x", "tok"))
        assert received.seq == 2

    def test_too_large_for_client_max_frame(self) -> None:
        client, server = handshake()
        client.peer_max_frame = 30
        with pytest.raises(FrameTooLarge):
            client.send(Mutate(Op.ADD, (0,), rid=1, args={"x": "y" * 30}))
        assert deliver(client, server, Sync()).seq == 2

    def test_unencodable_args_leave_connection_usable(self) -> None:
        client, server = handshake()
        with pytest.raises(TypeError, match="type 'set'"):
            client.send(Mutate(Op.ADD, (0,), rid=1, args={"x": {1, 2}}))
        with pytest.raises(TypeError, match="map keys must be str"):
            client.send(Wait(0, {"x": {1: 2}}))
        assert client.sent_seq == 1
        assert deliver(client, server, Sync()).seq == 2

    def test_peer_max_frame_setter(self) -> None:
        conn = Connection("client")
        assert conn.peer_max_frame == MAX_FRAME
        conn.peer_max_frame = MAX_FRAME_LIMIT + 1
        assert conn.peer_max_frame == MAX_FRAME_LIMIT
        with pytest.raises(ValueError, match="max_frame must be"):
            conn.peer_max_frame = 0


class TestConnection:
    def test_init(self) -> None:
        conn = Connection("server", max_frame=100)
        assert (conn.role, conn.max_frame, conn.state) == (
            "server",
            100,
            ConnectionState.OPEN,
        )
        assert (conn.sent_seq, conn.received_seq, conn.buffered) == (0, 0, 0)
        assert "role=server" in repr(conn)

    def test_bad_role(self) -> None:
        with pytest.raises(ValueError, match="role must be"):
            Connection("peer")  # type: ignore[arg-type]

    @pytest.mark.parametrize("max_frame", [0, MAX_FRAME_LIMIT + 1])
    def test_bad_max_frame(self, max_frame: int) -> None:
        with pytest.raises(ValueError, match="max_frame must be"):
            Connection("client", max_frame=max_frame)

    def test_typed_narrowing(self) -> None:
        server = Connection("server")
        assert narrowing(server) == 0
        server.receive_data(HELLO_FRAME)
        assert narrowing(server) == 1


class TestErrorFrameFor:
    @pytest.mark.parametrize(
        ("code", "retry"),
        [
            ("proto", True),
            ("too_big", True),
            ("version", False),
            ("auth", False),
            ("cycle", False),
            ("acl", False),
        ],
    )
    def test_retry_by_code(self, code: str, retry: bool) -> None:
        err = error_frame_for(RemoteProtocolError("bad", code))
        assert err == Error(code, "bad", fatal=True, retry=retry)
        assert err.re == 0

    def test_from_frame_too_large(self) -> None:
        err = error_frame_for(FrameTooLarge("frame of 9 bytes"))
        assert (err.code, err.retry) == ("too_big", True)

    def test_long_message_is_cut(self) -> None:
        err = error_frame_for(ProtocolError("x" * 5000))
        assert len(err.msg) == 1000
        assert err.msg.endswith("...")


class TestPurity:
    MODULES = ("_codec.py", "_framing.py", "_events.py", "_protocol.py")

    @staticmethod
    def imports(path: Path) -> set[str]:
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        return names

    @pytest.mark.parametrize("name", MODULES)
    def test_sans_io_modules_do_not_import_anyio(self, name: str) -> None:
        assert "anyio" not in self.imports(SRC / "rpc" / name)

    def test_only_the_codec_imports_msgpack(self) -> None:
        importers = {
            str(p.relative_to(SRC))
            for p in SRC.rglob("*.py")
            if "msgpack" in self.imports(p)
        }
        assert importers == {"rpc/_codec.py"}
