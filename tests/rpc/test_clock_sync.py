"""
Clock synchronisation: the exporter/mirror pair without I/O, then over real sockets.

Unit tests pin the rules of docs/protocol.md section 8 (versions, checksums, full clocks
on a new epoch / a decrease / a length change, resets). The loopback tests port Go's
TestAddMany, TestAddManyNoSync, TestAddManyInstantClock and TestHighInstantClocks
(rpc.md 1.16 and 8) with frame counters instead of call counts, and a scripted fake
server checks the client's recovery from bad, missing and repeated clocks.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence

import anyio
import pytest
from anyio.abc import SocketStream
from hypothesis import given, strategies as st

import asyncmachine as am
from asyncmachine.rpc._clock import ApplyOutcome, ClockExporter, ClockMirror, checksum
from asyncmachine.rpc._events import (
    Clock,
    ClockBody,
    Error,
    Event,
    Hello,
    Mutate,
    Ping,
    Result,
    StateSchema,
    Sync,
    Welcome,
)
from asyncmachine.rpc._protocol import CLOSED, NEED_DATA, Connection, NextEvent

pytestmark = pytest.mark.anyio

TIMEOUT = 10
APPLIED, RESET = ApplyOutcome.APPLIED, ApplyOutcome.RESET
GAP, INVALID, DUPLICATE = ApplyOutcome.GAP, ApplyOutcome.INVALID, ApplyOutcome.DUPLICATE


def state_of(m: ClockMirror) -> tuple[str | None, list[int], int, int]:
    return m.epoch, list(m.time), m.q, m.m


# -- ClockExporter ----------------------------------------------------------------------


def test_exporter_first_update_is_full_then_nothing() -> None:
    """The first update is a full clock; an unchanged source gives None."""
    ex = ClockExporter()
    body = ex.update("e1", [1, 0, 3], 2, 0)
    assert body is not None
    assert body.is_full
    assert (body.n, body.epoch, body.time, body.q, body.m) == (1, "e1", (1, 0, 3), 2, 0)
    assert body.k == checksum([1, 0, 3], 2, 0) == 6
    assert body.indexes is None
    assert ex.update("e1", [1, 0, 3], 2, 0) is None
    assert ex.n == 1


def test_exporter_deltas() -> None:
    """Changes become deltas: indexes, increments, q/m increments, checksum after."""
    ex = ClockExporter()
    ex.update("e1", [1, 0, 3], 2, 5)
    body = ex.update("e1", [2, 0, 7], 4, 5)
    assert body is not None
    assert not body.is_full
    assert (body.n, body.indexes, body.deltas, body.q, body.m) == (
        2,
        (0, 2),
        (1, 4),
        2,
        0,
    )
    assert body.epoch is None
    assert body.k == checksum([2, 0, 7], 4, 5)
    only_q = ex.update("e1", [2, 0, 7], 5, 5)
    assert only_q is not None
    assert (only_q.n, only_q.indexes, only_q.deltas, only_q.q, only_q.m) == (
        3,
        (),
        (),
        1,
        0,
    )


@pytest.mark.parametrize(
    ("epoch", "time", "q", "m"),
    [
        pytest.param("e2", [1, 0, 3], 2, 5, id="new-epoch"),
        pytest.param("e1", [1, 0, 2], 2, 5, id="tick-down"),
        pytest.param("e1", [1, 0, 3], 1, 5, id="queue-tick-down"),
        pytest.param("e1", [1, 0, 3], 2, 4, id="machine-tick-down"),
        pytest.param("e1", [1, 0, 3, 0], 2, 5, id="length-change"),
    ],
)
def test_exporter_sends_full_when_a_delta_cannot_express_it(
    epoch: str, time: list[int], q: int, m: int
) -> None:
    """A new epoch, any decrease or a length change yields a full clock."""
    ex = ClockExporter()
    ex.update("e1", [1, 0, 3], 2, 5)
    body = ex.update(epoch, time, q, m)
    assert body is not None
    assert body.is_full
    assert (body.n, body.epoch, body.time) == (2, epoch, tuple(time))
    assert body.k == checksum(time, q, m)
    assert ex.update(epoch, time, q, m) is None  # recorded as sent


def test_exporter_checksum_wraps() -> None:
    """The checksum is taken modulo 65536, so huge ticks keep it 16-bit."""
    ex = ClockExporter()
    body = ex.update("e", [10**6, 65535], 1, 1)
    assert body is not None
    assert body.k == (10**6 + 65535 + 2) % 65536


# -- ClockMirror ------------------------------------------------------------------------


def full(
    n: int, time: Sequence[int], q: int = 1, m: int = 0, epoch: str = "e1"
) -> ClockBody:
    return ClockBody(
        n=n, q=q, m=m, k=checksum(time, q, m), epoch=epoch, time=tuple(time)
    )


def delta(
    n: int,
    after: Sequence[int],
    idx: Sequence[int],
    d: Sequence[int],
    q: int = 0,
    m: int = 0,
    *,
    q_after: int = 1,
    m_after: int = 0,
    k: int | None = None,
) -> ClockBody:
    return ClockBody(
        n=n,
        q=q,
        m=m,
        k=checksum(after, q_after, m_after) if k is None else k,
        indexes=tuple(idx),
        deltas=tuple(d),
    )


def test_mirror_applies_full_then_deltas() -> None:
    """A first full clock is applied (no reset); then deltas in version order."""
    mir = ClockMirror(3)
    assert mir.apply(full(1, [1, 0, 2])) is APPLIED
    assert state_of(mir) == ("e1", [1, 0, 2], 1, 0)
    assert mir.apply(delta(2, [2, 0, 5], [0, 2], [1, 3], q=1, q_after=2)) is APPLIED
    assert state_of(mir) == ("e1", [2, 0, 5], 2, 0)
    assert mir.n == 2


def test_mirror_refuses_bad_deltas_and_keeps_its_state() -> None:
    """Duplicate, gap, checksum, index, length and sign errors change nothing."""
    mir = ClockMirror(3)
    mir.apply(full(5, [1, 0, 2]))
    before = state_of(mir)
    cases = [
        (delta(5, [2, 0, 2], [0], [1]), DUPLICATE),
        (delta(4, [2, 0, 2], [0], [1]), DUPLICATE),
        (delta(7, [2, 0, 2], [0], [1]), GAP),
        (delta(6, [2, 0, 2], [0], [1], k=999), INVALID),
        (delta(6, [1, 0, 2], [3], [1]), INVALID),
        (delta(6, [1, 0, 2], [0, 1], [1]), INVALID),
        (delta(6, [0, 0, 2], [0], [-1]), INVALID),
        (ClockBody(n=6, q=-1, m=0, k=0, indexes=(), deltas=()), INVALID),
        (full(6, [1, 0]), INVALID),
        (full(6, [1, 0, 2, 0]), INVALID),
        (ClockBody(n=6, q=1, m=0, k=999, epoch="e1", time=(1, 0, 2)), INVALID),
        (full(6, [1, -1, 2]), INVALID),
    ]
    for body, outcome in cases:
        assert mir.apply(body) is outcome, body
        assert state_of(mir) == before
        assert mir.n == 5
    assert mir.apply(delta(6, [2, 0, 2], [0], [1])) is APPLIED


def test_mirror_delta_before_any_full_is_a_gap() -> None:
    """Without a full clock there is nothing to apply a delta to."""
    mir = ClockMirror(2)
    assert mir.apply(delta(1, [1, 0], [0], [1])) is GAP
    assert mir.epoch is None


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        pytest.param(full(9, [3, 1, 2], epoch="e2"), RESET, id="new-epoch"),
        pytest.param(full(9, [0, 1, 2]), RESET, id="tick-down"),
        pytest.param(full(9, [3, 1, 2], q=0), RESET, id="queue-tick-down"),
        pytest.param(full(2, [3, 1, 2], q=2), APPLIED, id="same-epoch-no-decrease"),
        pytest.param(full(9, [4, 1, 2], q=3, m=1), APPLIED, id="forward"),
    ],
)
def test_mirror_reset_detection(body: ClockBody, outcome: ApplyOutcome) -> None:
    """A full clock with a new epoch or any decrease is a reset; it sets the version."""
    mir = ClockMirror(3)
    mir.apply(full(4, [3, 1, 2], q=2))
    assert mir.apply(body) is outcome
    assert state_of(mir) == (body.epoch, list(body.time or ()), body.q, body.m)
    assert mir.n == body.n
    follow = delta(body.n + 1, [t + 1 for t in body.time or ()], [0, 1, 2], [1, 1, 1])
    follow = dataclasses.replace(
        follow, k=checksum([t + 1 for t in body.time or ()], body.q, body.m)
    )
    assert mir.apply(follow) is APPLIED


@st.composite
def clock_histories(draw: st.DrawFn) -> list[tuple[str, list[int], int, int, bool]]:
    """Source clocks over time (epoch, ticks, q, m) and whether each frame is lost."""
    size = draw(st.integers(1, 6))
    epoch, time, q, m = "e0", [0] * size, 1, 0
    out = []
    for i in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["tick", "tick", "tick", "same", "reset", "big"]))
        if kind == "tick":
            idx = draw(st.sets(st.integers(0, size - 1), max_size=size))
            time = [
                t + (draw(st.integers(1, 3)) if j in idx else 0)
                for j, t in enumerate(time)
            ]
            q += draw(st.integers(0, 2))
        elif kind == "reset":
            epoch = f"e{i}"
            time = draw(st.lists(st.integers(0, 5), min_size=size, max_size=size))
            q, m = draw(st.integers(0, 3)), m + 1
        elif kind == "big":
            time = [t + draw(st.integers(0, 10**9)) for t in time]
        out.append((epoch, list(time), q, m, draw(st.booleans())))
    return out


@given(history=clock_histories())
def test_exporter_and_mirror_stay_in_sync(
    history: list[tuple[str, list[int], int, int, bool]],
) -> None:
    """Whatever the history and losses, the mirror equals the source after recovery."""
    ex, mir = ClockExporter(), ClockMirror(len(history[0][1]))
    lost = False
    for epoch, time, q, m, drop in history:
        body = ex.update(epoch, time, q, m)
        if body is None:
            assert lost or state_of(mir) == (epoch, time, q, m)
            continue
        if drop:
            lost = True
            continue
        prev_epoch, prev_time, prev_q, prev_m = state_of(mir)
        outcome = mir.apply(body)
        if lost and not body.is_full:
            assert outcome is GAP
            body = ex.full(epoch, time, q, m)  # what SYNC answers
            outcome = mir.apply(body)
        lost = False
        went_down = (
            any(t < o for t, o in zip(time, prev_time, strict=True))
            or q < prev_q
            or m < prev_m
        )
        want_reset = prev_epoch is not None and (epoch != prev_epoch or went_down)
        assert outcome is (RESET if body.is_full and want_reset else APPLIED)
        assert state_of(mir) == (epoch, time, q, m)
        assert mir.n == ex.n


# -- loopback -------------------------------------------------------------------------

REL_SCHEMA = {
    "A": am.State(auto=True, require=["C"]),
    "B": am.State(multi=True, add=["C"]),
    "C": am.State(after=["D"]),
    "D": am.State(add=["C", "B"]),
    **am.rpc.STATE_SOURCE_SCHEMA,
}
REL_NAMES = ["A", "B", "C", "D", "Exception", "ErrOnClient"]


def rels(id: str = "src") -> am.Machine:
    """Go's "rels" machine with an explicit order (so it can be imported)."""
    return am.Machine(REL_SCHEMA, id=id, names=REL_NAMES)


@dataclasses.dataclass
class Rig:
    src: am.Machine
    server: am.rpc.Server
    client: am.rpc.Client

    @property
    def nm(self) -> am.rpc.NetMach:
        return self.client.netmach

    @property
    def session(self) -> am.rpc.Session:
        (session,) = self.server.sessions.values()
        return session

    def client_in(self) -> int:
        """Frames the client has received on its connection."""
        link = self.client._link
        assert link is not None
        return link.frames_in

    def bytes_total(self) -> int:
        link = self.session.link
        return link.bytes_in + link.bytes_out


@contextlib.asynccontextmanager
async def connected(src: am.Machine, **serve_opts: object) -> AsyncIterator[Rig]:
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src, **serve_opts) as server,  # type: ignore[arg-type]
            am.rpc.Client(server.addr) as client,
        ):
            yield Rig(src, server, client)
            assert client.mach.tick("Exception") == 0


async def wait_until(cond: Callable[[], bool], what: str, limit: float = 3.0) -> None:
    """Poll *cond*: a bounded wait for background work, never a sleep-as-assert."""
    try:
        with anyio.fail_after(limit):
            while not cond():  # noqa: ASYNC110 - server internals have no events
                await anyio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"not within {limit}s: {what}") from None


#: Bytes of Go's TestAddMany scenario (501 round trips plus the handshake), measured
#: with this encoding and pinned with +-10 % (rpc.md section 8).
ADD_MANY_BYTES = 37_460


@pytest.mark.parametrize("push_interval", [0.25, 0.0], ids=["default", "instant"])
async def test_add_many_gets_no_pushes(push_interval: float) -> None:
    """Go TestAddMany / TestAddManyInstantClock: a sole mutator gets 0 CLOCK frames."""
    async with connected(rels(), push_interval=push_interval) as rig:
        nm = rig.nm
        for _ in range(500):
            assert await nm.add(["A", "C"]) == am.Result.EXECUTED
        assert await nm.add("D") == am.Result.EXECUTED
        assert await nm.when("D")
        assert nm.clock() == rig.src.clock()
        link = rig.session.link
        assert link.frames_in == 1 + 501  # HELLO + MUTATEs
        assert link.frames_out == 1 + 501  # WELCOME + RESULTs: no CLOCK at all
        assert rig.client_in() == 1 + 501
        assert abs(rig.bytes_total() - ADD_MANY_BYTES) <= ADD_MANY_BYTES // 10


async def test_push_interval_zero_coalesces_a_burst() -> None:
    """200 source changes in one synchronous burst reach the mirror as one CLOCK."""
    async with connected(rels(), push_interval=0) as rig:
        before = rig.client_in()
        for _ in range(100):
            rig.src.add("B")
            rig.src.remove("B")
        await wait_until(lambda: rig.nm.clock() == rig.src.clock(), "mirror caught up")
        assert rig.client_in() == before + 1
        assert rig.nm.tick("B") == 200


async def test_push_interval_paces_pushes() -> None:
    """With a push interval, a stream of changes yields few merged CLOCK frames."""
    async with connected(rels(), push_interval=0.05) as rig:
        before = rig.client_in()
        start = anyio.current_time()
        for _ in range(20):
            rig.src.add("B")
            await anyio.sleep(0.005)
        await wait_until(lambda: rig.nm.clock() == rig.src.clock(), "mirror caught up")
        elapsed = anyio.current_time() - start
        pushes = rig.client_in() - before
        assert 1 <= pushes <= int(elapsed / 0.05) + 2


async def test_no_pushes_when_disabled() -> None:
    """push_interval=None: source changes reach the mirror only with a reply or sync."""
    async with connected(rels(), push_interval=None) as rig:
        nm = rig.nm
        rig.src.add("B")
        before = rig.client_in()
        await anyio.wait_all_tasks_blocked()
        assert nm.tick("B") == 0
        await rig.client.sync()
        assert nm.tick("B") == 1
        assert rig.client_in() == before + 1


async def test_sync_applies_a_full_clock() -> None:
    """client.sync() fetches a full clock; MetricSync ticks on both sides."""
    async with connected(rels(), push_interval=None) as rig:
        rig.src.add("D")
        session = rig.session
        await rig.client.sync()
        assert rig.nm.clock() == rig.src.clock()
        assert rig.nm.queue_tick() == rig.src.queue_tick()
        assert rig.client.stats["syncs"] == 1
        assert rig.client.mach.tick("MetricSync") == 1
        assert session.mach.tick("MetricSync") == 1
        await rig.client.sync()  # nothing changed: still a full clock, same values
        assert rig.client.stats["syncs"] == 2
        assert rig.nm.clock() == rig.src.clock()


async def test_add_many_no_sync_then_sync() -> None:
    """Go TestAddManyNoSync: 501 add_ns, then sync(): D active, one RESULT only."""
    async with connected(rels(), push_interval=None) as rig:
        nm = rig.nm
        for _ in range(500):
            nm.add_ns(["A", "C"])
        nm.add_ns("D")
        await wait_until(lambda: rig.src.is_active("D"), "the source ran them")
        assert nm.not_active("D")
        assert rig.client_in() == 1  # WELCOME only: no-reply adds get nothing
        await rig.client.sync()
        assert nm.is_active("D")
        assert nm.clock() == rig.src.clock()
        assert rig.client_in() == 2  # the SYNC's RESULT


async def test_add_ns_is_ordered_before_a_later_sync() -> None:
    """add_ns(X) followed by await sync() reflects X: frames keep program order."""
    async with connected(rels(), push_interval=None) as rig:
        rig.nm.add_ns("D")
        await rig.client.sync()
        assert rig.nm.is_active("D")


async def _bytes_for_high_clocks(preset: int) -> tuple[int, list[int]]:
    src = rels()
    time = [preset, 0, preset, 0, 0, 0]
    src.import_(
        {"id": "src", "state_names": REL_NAMES, "time": time, "machine_tick": 0}
    )
    async with connected(src) as rig:
        nm = rig.nm
        for _ in range(500):
            await nm.add(["A", "C"])
            await nm.remove(["A", "C"])
        await nm.add("D")
        assert nm.clock() == src.clock()
        assert rig.session.link.frames_out == 1 + 1001
        return rig.bytes_total(), nm.time(["A", "C"])


async def test_high_instant_clocks_cost_the_same() -> None:
    """Go TestHighInstantClocks: traffic does not depend on tick magnitude (< 5 %)."""
    low, low_ticks = await _bytes_for_high_clocks(0)
    high, high_ticks = await _bytes_for_high_clocks(10**6)
    assert low_ticks == [1001, 1001]
    assert high_ticks == [10**6 + 1001, 10**6 + 1001]
    assert abs(high - low) < low * 0.05, (low, high)


async def test_import_on_the_source_resets_the_mirror() -> None:
    """import_ (a new epoch, ticks down) reaches the mirror as a full clock: a reset."""
    src = rels()
    async with connected(src, push_interval=None) as rig:
        nm = rig.nm
        assert await nm.add("D") == am.Result.EXECUTED
        epoch = nm.epoch
        seen: list[am.Transition] = []

        class Tracer(am.TracerNoOp):
            def transition_end(self, tx: am.Transition) -> None:
                seen.append(tx)

        nm.add_tracer(Tracer())
        src_epoch = src.epoch
        src.import_({"id": "src", "state_names": REL_NAMES, "time": [2, 0, 0, 0, 0, 0]})
        assert src.epoch != src_epoch
        assert await nm.add("B") == am.Result.EXECUTED  # the reply carries a full clock
        assert nm.clock() == src.clock()
        assert nm.epoch != epoch
        assert nm.epoch.startswith(src.epoch + ".")
        assert rig.client.stats["clock_errors"] == 0
        assert len(seen) == 1
        assert seen[0].clock_before["D"] == 1
        assert seen[0].clock_after == src.clock()
        epoch = nm.epoch
        src.import_({"id": "src", "state_names": REL_NAMES, "time": [0, 0, 0, 0, 0, 0]})
        await rig.client.sync()
        assert nm.epoch != epoch
        assert nm.clock() == src.clock()


async def test_import_on_the_source_is_pushed() -> None:
    """With pushes on, an import_ on the source reaches an idle mirror by itself."""
    src = rels()
    src.add("D")
    async with connected(src, push_interval=0.01) as rig:
        epoch = rig.nm.epoch
        src.import_({"id": "src", "state_names": REL_NAMES, "time": [0, 1, 0, 0, 0, 0]})
        await wait_until(lambda: rig.nm.epoch != epoch, "the new epoch pushed", 0.5)
        assert rig.nm.clock() == src.clock()


# -- a scripted fake server -------------------------------------------------------------

FAKE_NAMES = ("A", "B", "Exception")
FAKE_SCHEMA = {
    "A": StateSchema(),
    "B": StateSchema(),
    "Exception": StateSchema(multi=True),
}


class FakeSession:
    """One server-side connection driven by the test, speaking real frames."""

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.conn = Connection("server")

    async def send(self, ev: Event) -> None:
        await self.stream.send(self.conn.send(ev))

    async def receive(self) -> Event | None:
        while True:
            ev = self.conn.next_event()
            if ev is CLOSED:
                return None
            if ev is not NEED_DATA:
                assert not isinstance(ev, NextEvent)
                return ev
            try:
                self.conn.receive_data(await self.stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                self.conn.receive_data(b"")

    async def handshake(self, clock: ClockBody) -> None:
        hello = await self.receive()
        assert isinstance(hello, Hello)
        await self.send(
            Welcome(
                version=1,
                id="fake",
                session_id="rs-fake-1",
                names=FAKE_NAMES,
                clock=clock,
                push_interval=None,
                schema=FAKE_SCHEMA,
            )
        )

    async def expect(self, kind: type[Event]) -> Event:
        """The next frame, skipping PINGs and their echoes; it must be *kind*."""
        while True:
            ev = await self.receive()
            assert ev is not None, f"connection closed, expected {kind.__name__}"
            if isinstance(ev, Ping) or (isinstance(ev, Result) and ev.time is not None):
                continue
            assert isinstance(ev, kind), f"got {ev}, expected {kind.__name__}"
            return ev


FULL_1 = full(1, [0, 0, 0], q=1)


@contextlib.asynccontextmanager
async def fake_client_pair() -> AsyncIterator[tuple[FakeSession, am.rpc.Client]]:
    """A one-connection fake server, and a client connected to it (no reconnects)."""
    sessions: list[FakeSession] = []
    with anyio.fail_after(TIMEOUT):
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            first = listener.listeners[0]
            assert isinstance(first, anyio.abc.SocketListener)
            async with anyio.create_task_group() as tg:

                async def accept() -> None:
                    session = FakeSession(await first.accept())
                    sessions.append(session)
                    await session.handshake(FULL_1)

                tg.start_soon(accept)
                try:
                    async with am.rpc.Client(
                        ("127.0.0.1", port), reconnect=False
                    ) as client:
                        (session,) = sessions
                        yield session, client
                finally:
                    with anyio.CancelScope(shield=True):
                        for s in sessions:
                            await s.stream.aclose()


async def test_fake_server_checksum_mismatch_triggers_sync() -> None:
    """A delta with a wrong checksum is dropped and answered with SYNC."""
    async with fake_client_pair() as (s, client):
        nm = client.netmach
        await s.send(Clock(clock=delta(2, [1, 0, 0], [0], [1], k=12345)))
        sync = await s.expect(Sync)
        assert nm.time() == [0, 0, 0]
        await s.send(Result(clock=full(3, [1, 0, 0], q=1), re=sync.seq))
        assert await nm.when("A")
        assert nm.time() == [1, 0, 0]
        assert client.stats["clock_errors"] == 1
        await wait_until(lambda: client.stats["syncs"] == 1, "the sync finished")
        await s.send(Clock(clock=delta(4, [1, 1, 0], [1], [1])))
        assert await nm.when("B")  # deltas continue on top of the full clock


async def test_fake_server_gap_triggers_sync_and_duplicates_are_ignored() -> None:
    """A version gap asks for a full clock; a repeated delta is ignored silently."""
    async with fake_client_pair() as (s, client):
        nm = client.netmach
        await s.send(Clock(clock=delta(2, [1, 0, 0], [0], [1])))
        assert await nm.when("A")
        await s.send(Clock(clock=delta(2, [2, 0, 0], [0], [1])))  # duplicate n
        await s.send(Clock(clock=delta(4, [1, 1, 0], [1], [1])))  # gap: n 3 missing
        sync = await s.expect(Sync)
        assert nm.time() == [1, 0, 0]  # neither the duplicate nor the gap applied
        await s.send(Result(clock=full(5, [3, 1, 0], q=1), re=sync.seq))
        assert await nm.when_time(["A", "B"], [3, 1])
        assert client.stats["clock_errors"] == 1
        results: list[am.Result] = []
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                results.append(await nm.add("B"))

            tg.start_soon(call)
            req = await s.expect(Mutate)  # the duplicate caused no SYNC
            await s.send(Result(result=0, re=req.seq))
        assert results == [am.Result.EXECUTED]


async def test_fake_server_bad_index_triggers_sync() -> None:
    """A delta naming an index past the names is a clock-layer error: SYNC."""
    async with fake_client_pair() as (s, client):
        await s.send(Clock(clock=delta(2, [0, 0, 0, 1], [3], [1])))
        sync = await s.expect(Sync)
        await s.send(Result(clock=full(3, [0, 1, 0], q=1), re=sync.seq))
        assert await client.netmach.when("B")


async def test_fake_server_three_failed_syncs_close_with_proto() -> None:
    """A server that keeps sending invalid clocks is dropped with ERROR proto."""
    async with fake_client_pair() as (s, _client):
        await s.send(Clock(clock=delta(2, [1, 0, 0], [0], [1], k=1)))
        syncs = 0
        with anyio.fail_after(1.5):
            while True:
                ev = await s.receive()
                if isinstance(ev, Sync):
                    syncs += 1
                    bad = ClockBody(
                        n=10 + syncs, q=1, m=0, k=0, epoch="e1", time=(5, 0, 0)
                    )
                    await s.send(Result(clock=bad, re=ev.seq))
                elif isinstance(ev, Error):
                    assert (ev.code, ev.fatal) == ("proto", True)
                    break
                else:
                    assert ev is not None, "closed without ERROR proto"
        assert 1 <= syncs <= 4


async def test_fake_server_queue_tick_going_down_flushes_queue_waiters() -> None:
    """rpc.md 1.3: a reset to a lower queue tick releases the mirror's queue waiters."""
    async with fake_client_pair() as (s, client):
        nm = client.netmach
        done: list[bool] = []
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                done.append(await nm.when_queue(20))

            tg.start_soon(wait)
            await s.send(Clock(clock=full(2, [1, 0, 0], q=5)))
            assert await nm.when("A")
            assert not done
            await s.send(Clock(clock=full(3, [1, 0, 0], q=0, epoch="e2")))
            await wait_until(lambda: nm.epoch.startswith("e2."), "the reset applied")
            await wait_until(lambda: len(done) == 1, "the queue waiter flushed", 0.5)
