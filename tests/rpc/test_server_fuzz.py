"""
Hypothesis against a real server on 127.0.0.1: hostile peers cannot hurt it.

One server and one well-behaved client live for the whole test. Every example opens a
raw TCP connection, writes arbitrary bytes, msgpack values or frames with random fields
(before or after a valid HELLO) and reads everything the server answers. A sans-IO
:class:`Connection` fed the same bytes is the oracle for what the server must do.

Properties: the server's output is a valid ``amrp/1`` stream; a peer that broke the
protocol gets a fatal ERROR with the oracle's code and is closed without help; every
request before the break is answered exactly once; the session is gone soon after the
connection closes; the good client's round trips keep working; the server's ``async
with`` exits cleanly. ``HYPOTHESIS_PROFILE=dev`` or ``long`` runs more examples.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Callable

import anyio
import anyio.from_thread
import anyio.to_thread
import msgpack  # type: ignore[import-untyped]  # no stubs; only used to craft input
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import asyncmachine as am
from asyncmachine.rpc import _server
from asyncmachine.rpc._errors import RemoteProtocolError
from asyncmachine.rpc._events import (
    Bye,
    Error,
    Event,
    Hello,
    Kind,
    Mutate,
    Op,
    Ping,
    Result,
    Sync,
    Wait,
    WaitCancel,
    Welcome,
    event_from_body,
)
from asyncmachine.rpc._framing import MAX_FRAME_LIMIT, FrameDecoder, encode_frame
from asyncmachine.rpc._protocol import NEED_DATA, Connection, NextEvent

pytestmark = pytest.mark.anyio

TIMEOUT = 10
#: Seconds a misbehaving connection may stay open once the server has all its bytes.
CLOSE_BOUND = 3.0
#: The server's max frame: small, so that random lengths hit both sides of it.
SERVER_MAX = 4096
SOURCE_ID = "src"
NAMES = ["A", "B", "C", "D", "Exception", "Probe"]
FUZZ_EXAMPLES = 50 if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else 400
SERVER_KINDS = {Kind.WELCOME, Kind.CLOCK, Kind.PAYLOAD, Kind.PING}
SERVER_KINDS |= {Kind.RESULT, Kind.ERROR, Kind.BYE}


def source() -> am.Machine:
    return am.Machine(
        {
            "A": {},
            "B": am.State(multi=True),
            "C": am.State(require=["A"]),
            "D": am.State(remove=["A"]),
            "Probe": am.State(multi=True),
        },
        id=SOURCE_ID,
        names=NAMES,
    )


def wrap(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def raw_frame(kind: int, seq: int, re: int, body: object) -> bytes:
    return wrap(msgpack.packb([kind, seq, re, body], use_bin_type=True))


HELLO = raw_frame(1, 1, 0, {"v": [1], "id": "rc-fuzz", "mf": 1 << 20})


# -- strategies ---------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
#: State indexes: valid ones (0-5), just past the end, and huge ones.
indexes = st.integers(0, 7) | st.sampled_from([99, 1 << 31, (1 << 64) - 1])
arg_maps = st.dictionaries(st.sampled_from(["x", "err", "name"]), values, max_size=2)
FIELDS = {
    "v": st.lists(st.integers(0, 3), max_size=3) | values,
    "id": st.sampled_from(["", "rc-fuzz", SOURCE_ID]) | values,
    "tok": st.text(max_size=4) | values,
    "hash": st.text(max_size=4) | values,
    "mf": st.integers(0, 1 << 33) | values,
    "via": st.lists(st.sampled_from([SOURCE_ID, "other"]), max_size=2) | values,
    "op": st.integers(0, 3) | values,
    "s": st.lists(indexes, max_size=4) | indexes | values,
    "a": arg_maps | values,
    "rid": st.integers(0, (1 << 64) - 1) | values,
    "nr": st.booleans() | values,
    "cancel": st.integers(0, 8) | values,
    "t": st.floats() | st.integers(0, 1 << 40) | values,
    "code": st.sampled_from(["proto", "busy", "zzz"]) | values,
    "msg": st.text(max_size=8) | values,
    "fatal": st.booleans() | values,
    "retry": st.booleans() | values,
    "reconnect": st.booleans() | values,
    "res": st.integers(-2, 3) | values,
    "clk": values,
    "data": values,
    "name": st.text(max_size=4) | values,
}
bodies = st.fixed_dictionaries({}, optional=FIELDS) | values
kinds = st.sampled_from([1, 4, 5, 6, 8, 9, 10, 11]) | st.integers(0, 12)
#: A frame of random fields; ``seq`` None means "the correct next seq".
frame_specs = st.tuples(
    kinds,
    st.none() | st.none() | st.integers(0, (1 << 64) - 1),
    st.integers(0, 3) | st.integers(0, (1 << 64) - 1),
    bodies,
)
#: Events that pass the protocol layer, so the session's own checks get exercised.
typed_events: st.SearchStrategy[Event] = st.one_of(
    st.builds(
        Mutate,
        op=st.sampled_from(Op),
        states=st.lists(indexes, max_size=3).map(tuple),
        rid=st.integers(0, (1 << 64) - 1),
        args=st.none() | arg_maps,
        no_reply=st.booleans(),
    ),
    st.builds(Wait, state=indexes, args=arg_maps),
    st.builds(WaitCancel, wait_seq=st.integers(1, 6)),
    st.just(Sync()),
    st.builds(Ping, time=st.floats(allow_nan=False) | st.integers(0, 1 << 53)),
    st.builds(Result, re=st.integers(1, 3), data=values),
    st.builds(
        Error,
        code=st.sampled_from(["proto", "zzz"]),
        msg=st.text(max_size=8),
        fatal=st.booleans(),
        retry=st.booleans(),
    ),
    st.builds(Bye, code=st.sampled_from(["stop", "zzz"]), reconnect=st.booleans()),
    st.builds(
        Hello,
        versions=st.lists(st.integers(0, 3), max_size=3).map(tuple),
        id=st.sampled_from(["", "rc-fuzz2"]),
        max_frame=st.integers(1, 1 << 30),
        via=st.lists(st.sampled_from([SOURCE_ID, "other"]), max_size=2).map(tuple),
    ),
)
Part = bytes | tuple[int, int | None, int, object] | Event
parts: st.SearchStrategy[list[Part]] = st.one_of(
    # arbitrary bytes
    st.binary(min_size=1, max_size=64).map(lambda b: [b]),
    # arbitrary msgpack values in valid length prefixes
    st.lists(
        values.map(lambda v: wrap(msgpack.packb(v, use_bin_type=True))),
        min_size=1,
        max_size=3,
    ),
    # frames with random fields, typed events, lying or huge lengths
    st.lists(
        frame_specs
        | typed_events
        | st.sampled_from([0, SERVER_MAX, SERVER_MAX + 1, (1 << 32) - 1]).map(
            lambda n: struct.pack(">I", n) + b"\x94"
        ),
        min_size=1,
        max_size=5,
    ),
)


@dataclasses.dataclass(frozen=True)
class Case:
    hello: bool
    parts: list[Part]

    def encode(self) -> bytes:
        out = [HELLO] if self.hello else []
        seq = 2 if self.hello else 1
        for p in self.parts:
            if isinstance(p, bytes):
                out.append(p)
                continue
            if isinstance(p, tuple):
                kind, fseq, re, body = p
                out.append(raw_frame(kind, seq if fseq is None else fseq, re, body))
            else:
                body = p.to_body()
                out.append(encode_frame(p.KIND, seq, p.re, body, max_frame=1 << 30))
            seq += 1
        return b"".join(out)


cases = st.builds(Case, hello=st.booleans(), parts=parts)


# -- the oracle ---------------------------------------------------------------------


@dataclasses.dataclass
class Expect:
    """What the server must do with a given byte string."""

    #: It closes the connection on its own (the peer broke the rules or said bye).
    closes: bool = False
    #: The code of the fatal ERROR that must be its last frame (None: no ERROR).
    error: str | None = None
    #: The ERROR may be missing (the peer's max frame is too small for it).
    error_optional: bool = False
    #: A HELLO was accepted: WELCOME must be the first frame.
    welcomed: bool = False
    #: An incomplete frame is left over (EOF then means a protocol error).
    partial: bool = False
    #: Seqs of requests that must get exactly one RESULT or ERROR.
    answered: list[int] = dataclasses.field(default_factory=list)
    #: Seqs of requests that may get one (valid remote waits).
    maybe: list[int] = dataclasses.field(default_factory=list)
    #: The outcome depends on timing (a ``re`` that may or may not exist yet).
    uncertain: bool = False


def hello_refusal(ev: Hello) -> str | None:
    """The ERROR code the server answers this HELLO with, or None (accepted)."""
    if 1 not in ev.versions:
        return "version"
    if SOURCE_ID in ev.via:
        return "cycle"
    if not ev.id:
        return "proto"
    return None


def _step(conn: Connection) -> Event | NextEvent | str:
    try:
        return conn.next_event()
    except RemoteProtocolError as exc:
        return exc.code


def predict(data: bytes, *, pushes: bool = False) -> Expect:
    """
    Run the bytes through two server-side sans-IO connections in lockstep.

    The server's own frames (WELCOME, replies) make later ``re`` values valid. One
    oracle counts the frames the server has surely sent, the other adds the replies
    valid remote waits may have produced (and, with *pushes*, any number of CLOCK
    frames once the peer mutated the source); where they disagree the outcome is
    uncertain.
    """
    lo = Connection("server", max_frame=SERVER_MAX)
    hi = Connection("server", max_frame=SERVER_MAX)
    lo.receive_data(data)
    hi.receive_data(data)
    exp = Expect()
    mutated = False
    while True:
        ev, ev_hi = _step(lo), _step(hi)
        if ev != ev_hi:
            exp.uncertain = True
            return exp
        if isinstance(ev, str):
            exp.closes, exp.error = True, ev
            return exp
        if ev is NEED_DATA:
            exp.partial = lo.buffered > 0
            return exp
        assert not isinstance(ev, NextEvent)  # no EOF was fed: never CLOSED
        if isinstance(ev, Hello):
            code = hello_refusal(ev)
            if code is not None:
                exp.closes, exp.error = True, code
                exp.error_optional = ev.max_frame < 1024
                return exp
            if ev.max_frame < 1024:
                exp.uncertain = True  # the WELCOME may not fit the peer's max frame
                return exp
            exp.welcomed = True
        elif isinstance(ev, Mutate | Sync | Ping):
            if not (isinstance(ev, Mutate) and ev.no_reply):
                exp.answered.append(ev.seq)
        elif isinstance(ev, Wait):
            (exp.maybe if ev.state < len(NAMES) else exp.answered).append(ev.seq)
        elif isinstance(ev, Bye) or (isinstance(ev, Error) and ev.fatal):
            exp.closes = True
            return exp
        # what the server has sent by now: WELCOME, then one frame per reply
        lo._sent_seq = int(exp.welcomed) + len(exp.answered)
        hi._sent_seq = lo._sent_seq + len(exp.maybe)
        if pushes and isinstance(ev, Mutate):
            mutated = True
        if mutated:
            hi._sent_seq += 1 << 32


# -- the real exchange --------------------------------------------------------------


async def exchange(addr: tuple[str, int], data: bytes, *, eof: bool) -> bytes:
    """Write *data* (then EOF if asked) and read until the server closes."""
    received = bytearray()
    async with await anyio.connect_tcp(*addr) as stream:
        if data:
            await stream.send(data)
        if eof:
            await stream.send_eof()
        try:
            with anyio.fail_after(CLOSE_BOUND):
                while True:
                    received += await stream.receive()
        except anyio.EndOfStream:
            pass
        except TimeoutError:
            raise AssertionError(
                f"the server kept the connection open; it sent {bytes(received)!r}"
            ) from None
    return bytes(received)


def parse_server_stream(data: bytes) -> list[Event]:
    """Decode what the server sent, checking framing, kinds, seqs and bodies."""
    dec = FrameDecoder(MAX_FRAME_LIMIT)
    dec.feed(data)
    events: list[Event] = []
    while (frame := dec.next_frame()) is not None:
        kind, seq, re, body = frame
        assert Kind(kind) in SERVER_KINDS, f"the server sent kind {kind}"
        assert seq == len(events) + 1, f"server seq {seq} after {len(events)} frames"
        events.append(event_from_body(Kind(kind), body, seq=seq, re=re))
    assert dec.buffered == 0, "the server's stream ends in the middle of a frame"
    return events


def check_stream(events: list[Event], exp: Expect, *, eof: bool) -> None:
    """The server's answer fits the oracle's expectation."""
    final = [
        i
        for i, ev in enumerate(events)
        if isinstance(ev, Bye) or (isinstance(ev, Error) and ev.fatal)
    ]
    assert final in ([], [len(events) - 1]), f"frames after a final frame: {events}"
    assert all(not isinstance(ev, Welcome) for ev in events[1:])
    if exp.welcomed:
        assert events, "no WELCOME for a valid HELLO"
        assert isinstance(events[0], Welcome)
        assert list(events[0].names) == NAMES
    else:
        assert not any(isinstance(ev, Welcome) for ev in events)
    want_error, optional = exp.error, exp.error_optional
    if want_error is None and eof and exp.partial:
        # EOF in the middle of a frame: the peer vanished; ERROR proto is optional
        want_error, optional = "proto", True
    if want_error is not None and not (optional and not final):
        last = events[-1] if events else None
        assert isinstance(last, Error), f"no ERROR {want_error}: {events}"
        assert last.fatal
        assert last.code == want_error, f"ERROR {last.code}, expected {want_error}"
    else:
        assert not final, f"unexpected final frame {events[-1]}"
    replies = [ev.re for ev in events if isinstance(ev, Result | Error) and ev.re]
    for seq in exp.answered:
        assert replies.count(seq) == 1, f"request {seq} answered {replies.count(seq)}x"
    allowed = set(exp.answered) | set(exp.maybe)
    assert set(replies) <= allowed, f"replies {replies} to nothing (allowed {allowed})"
    assert len(replies) == len(set(replies)), f"a request answered twice: {replies}"


async def wait_until(cond: Callable[[], bool], what: str, limit: float = 2.0) -> None:
    """Poll *cond* (a bounded wait for background clean-up, not a sleep-as-assert)."""
    try:
        with anyio.fail_after(limit):
            while not cond():  # noqa: ASYNC110 - server internals have no events
                await anyio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"not within {limit}s: {what}") from None


# -- tests --------------------------------------------------------------------------


async def _one_example(
    server: am.rpc.Server, good: am.rpc.Client, src: am.Machine, case: Case
) -> None:
    data = case.encode()
    exp = predict(data, pushes=server.push_interval is not None)
    with anyio.fail_after(TIMEOUT):
        raw = await exchange(server.addr, data, eof=not exp.closes)
        check_stream(parse_server_stream(raw), exp, eof=not exp.closes)
        good_sessions = {n for n, s in server.sessions.items() if s.client_id == "good"}
        await wait_until(
            lambda: set(server.sessions) == good_sessions,
            f"sessions back to the good client's: {list(server.sessions)}",
        )
        assert len(good_sessions) == 1
        nm = good.netmach
        tick = src.tick("Probe")
        assert await nm.add("Probe") == am.Result.EXECUTED
        assert src.tick("Probe") == tick + (2 if tick % 2 else 1)  # multi
        assert nm.time() == src.time()
        assert good.mach.is_active("Ready")


@pytest.mark.parametrize("push_interval", [None, 0.0], ids=["no-pushes", "pushes"])
async def test_hostile_peers_cannot_hurt_the_server(
    push_interval: float | None,
) -> None:
    """Garbage before and after HELLO: ERROR or close, no leaks, good client fine."""
    src = source()
    seen: list[Case] = []
    pushes = push_interval is not None
    with anyio.fail_after(50):
        async with am.rpc.serve(
            src, push_interval=push_interval, max_frame=SERVER_MAX
        ) as srv:
            async with am.rpc.Client(srv.addr, id="good") as good:

                @settings(
                    max_examples=FUZZ_EXAMPLES,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow],
                )
                @given(case=cases)
                def prop(case: Case) -> None:
                    assume(not predict(case.encode(), pushes=pushes).uncertain)
                    seen.append(case)
                    anyio.from_thread.run(_one_example, srv, good, src, case)

                await anyio.to_thread.run_sync(prop, abandon_on_cancel=True)
                assert not good.mach.is_err()
            await wait_until(lambda: not srv.sessions, "all sessions closed")
        assert not srv.mach.is_err()
    assert len(seen) >= min(FUZZ_EXAMPLES, 20)
    kinds_seen = {type(p) for c in seen for p in c.parts}
    assert kinds_seen >= {bytes, tuple}


async def test_many_garbage_connections_at_once() -> None:
    """Twenty concurrent hostile peers are all closed; the good client keeps working."""
    src = source()
    payloads = [
        b"\x00\x00\x00\x00",  # length 0
        struct.pack(">I", SERVER_MAX + 1),  # too big
        wrap(b"\xc1"),  # never-used msgpack byte
        HELLO + raw_frame(4, 5, 0, {}),  # seq gap
        raw_frame(4, 1, 0, {"op": 0, "s": [0], "rid": 1}),  # no HELLO first
    ]
    codes = ["proto", "too_big", "proto", "proto", "proto"]
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src, max_frame=SERVER_MAX) as server,
            am.rpc.Client(server.addr, id="good") as good,
        ):
            answers: list[tuple[int, list[Event]]] = []

            async def hostile(i: int) -> None:
                raw = await exchange(server.addr, payloads[i % 5], eof=False)
                answers.append((i, parse_server_stream(raw)))

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(hostile, i)
                assert await good.netmach.add("A") == am.Result.EXECUTED
            assert len(answers) == 20
            for i, events in answers:
                last = events[-1]
                assert isinstance(last, Error)
                assert last.fatal
                assert last.code == codes[i % 5]
            await wait_until(lambda: len(server.sessions) == 1, "one session left")
            assert await good.netmach.add("Probe") == am.Result.EXECUTED
            assert good.netmach.is_active(["A", "Probe"])


async def test_silent_peer_is_dropped_after_the_hello_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer that connects and sends nothing (or half a HELLO) is closed in time."""
    monkeypatch.setattr(_server, "HELLO_TIMEOUT", 0.2)
    src = source()
    with anyio.fail_after(TIMEOUT):
        async with am.rpc.serve(src) as server:
            for data in (b"", HELLO[:7]):
                async with await anyio.connect_tcp(*server.addr) as stream:
                    if data:
                        await stream.send(data)
                    await wait_until(lambda: len(server.sessions) == 1, "session open")
                    received = bytearray()
                    with pytest.raises(anyio.EndOfStream):  # noqa: PT012
                        while True:
                            received += await stream.receive()
                    assert received == b""  # no frame, just a close
                await wait_until(lambda: not server.sessions, "session closed")
            async with am.rpc.Client(server.addr) as client:
                assert await client.netmach.add("A") == am.Result.EXECUTED
