"""
Go netmach_test.go over real sockets: the core's behaviour observed through the mirror.

Every test mutates through ``client.netmach`` (``await nm.add/remove/set/toggle``) and
asserts the mirror's view. Where it helps, the same steps also run on a local reference
machine with the same schema, and results, active states and clocks must be identical
on the mirror, the reference and the source. The TestPartial* tests are left out:
partial sync is not part of ``amrp/1`` v1.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence

import anyio
import pytest

import asyncmachine as am

pytestmark = pytest.mark.anyio

TIMEOUT = 10
ABCD = ["A", "B", "C", "D"]
EXECUTED = am.Result.EXECUTED
CANCELED = am.Result.CANCELED


def no_rels(**extra: am.State) -> dict[str, am.State]:
    """Go ``NewNoRels``: A-D without relations, plus the state-source mixin."""
    schema: dict[str, am.State] = {n: am.State() for n in ABCD}
    schema.update(extra)
    return {**schema, **am.rpc.STATE_SOURCE_SCHEMA}


@dataclasses.dataclass
class Rig:
    src: am.Machine
    ref: am.Machine
    server: am.rpc.Server
    client: am.rpc.Client

    @property
    def nm(self) -> am.rpc.NetMach:
        return self.client.netmach

    def assert_same(self) -> None:
        """Mirror, source and reference agree on every tick and counter."""
        nm = self.nm
        assert nm.clock() == self.src.clock() == self.ref.clock()
        assert nm.active_states() == self.src.active_states()
        assert nm.queue_tick() == self.src.queue_tick() == self.ref.queue_tick()
        assert nm.machine_tick() == self.src.machine_tick()

    async def step(
        self,
        op: str,
        states: am.StatesArg,
        expected: Sequence[str] | None = None,
        result: am.Result | None = None,
    ) -> am.Result:
        """Run one mutation remotely and on the reference; compare everything."""
        local = getattr(self.ref, op)(states)
        remote = await getattr(self.nm, op)(states)
        assert isinstance(remote, am.Result)
        assert remote == local, f"{op}({states}): remote {remote}, local {local}"
        if result is not None:
            assert remote == result
        if expected is not None:
            assert self.nm.active_states() == list(expected)
        self.assert_same()
        return remote


@contextlib.asynccontextmanager
async def mirrored(
    schema: Mapping[str, am.State],
    *,
    names: Sequence[str] | None = None,
    handlers: object | None = None,
    push_interval: float | None = 0.25,
) -> AsyncIterator[Rig]:
    """Serve a source, connect a client; no RPC machine may ever enter Exception."""
    src = am.Machine(schema, id="src", names=names, handlers=handlers)
    ref = am.Machine(schema, id="ref", names=names)
    with anyio.fail_after(TIMEOUT):
        async with (
            am.rpc.serve(src, push_interval=push_interval) as server,
            am.rpc.Client(server.addr) as client,
        ):
            assert client.mach.is_active("Ready")
            rig = Rig(src, ref, server, client)
            rig.assert_same()
            yield rig
            assert client.mach.tick("Exception") == 0
            assert server.mach.tick("Exception") == 0
            for session in server.sessions.values():
                assert session.mach.tick("Exception") == 0


class Bg:
    """A wait running in the background whose completion can be checked."""

    def __init__(self) -> None:
        self.result: bool | None = None
        self.seen: list[str] = []

    @property
    def done(self) -> bool:
        return self.result is not None


async def settle() -> None:
    """Let woken tasks run (every other task is blocked on the network)."""
    await anyio.wait_all_tasks_blocked()


# -- states and relations -----------------------------------------------------------


async def test_single_state_active() -> None:
    """Go TestSingleStateActive: an add is reflected on the mirror."""
    async with mirrored(no_rels()) as rig:
        await rig.step("add", "A", ["A"], EXECUTED)


async def test_multiple_states_active() -> None:
    """Go TestMultipleStatesActive: two adds give (A B)."""
    async with mirrored(no_rels()) as rig:
        await rig.step("add", ["A"], ["A"])
        await rig.step("add", ["B"], ["A", "B"])


async def test_expose_all_state_names() -> None:
    """Go TestExposeAllStateNames: names, order, indexes and the schema travel."""
    async with mirrored(
        no_rels(), names=["D", "C", "B", "A", "Exception", "ErrOnClient"]
    ) as rig:
        nm = rig.nm
        assert nm.state_names() == ["D", "C", "B", "A", "Exception", "ErrOnClient"]
        assert nm.index("A") == rig.src.index("A") == 3
        assert nm.has(ABCD)
        assert not nm.has("Z")
        assert dict(nm.schema) == dict(rig.src.schema)
        assert nm.remote_id == "src"
        with pytest.raises(am.StateUnknownError):
            await nm.add("Z")


async def test_state_set() -> None:
    """Go TestStateSet: from (A), set B gives (B)."""
    async with mirrored(no_rels()) as rig:
        await rig.step("set", "A", ["A"])
        await rig.step("set", "B", ["B"], EXECUTED)
        assert rig.nm.clock(["A", "B"]) == {"A": 2, "B": 1}


async def test_state_add() -> None:
    """Go TestStateAdd: from (A), add B gives (A B)."""
    async with mirrored(no_rels()) as rig:
        await rig.step("set", "A", ["A"])
        await rig.step("add", "B", ["A", "B"], EXECUTED)


async def test_state_remove() -> None:
    """Go TestStateRemove: from (B C), remove C gives (B)."""
    async with mirrored(no_rels()) as rig:
        await rig.step("set", ["B", "C"], ["B", "C"])
        await rig.step("remove", "C", ["B"], EXECUTED)


async def test_remove_relation() -> None:
    """Go TestRemoveRelation: C removes D; from (D), add C gives (C)."""
    async with mirrored(no_rels(C=am.State(remove=["D"]))) as rig:
        await rig.step("set", "D", ["D"])
        await rig.step("add", "C", ["C"], EXECUTED)


async def test_remove_relation_simultaneous() -> None:
    """Go TestRemoveRelationSimultaneous: set(C, D) with C removing D is canceled."""
    async with mirrored(no_rels(C=am.State(remove=["D"]))) as rig:
        await rig.step("set", "D", ["D"])
        await rig.step("set", ["C", "D"], ["D"], CANCELED)
        assert rig.nm.clock(["C", "D"]) == {"C": 0, "D": 1}


@pytest.mark.parametrize(
    ("first", "then"),
    [
        pytest.param("set", "set", id="set-set"),
        pytest.param("set", "add", id="set-add"),
        pytest.param("add", "set", id="add-set"),
        pytest.param("add", "add", id="add-add"),
    ],
)
async def test_remove_relation_cross_blocking(first: str, then: str) -> None:
    """Go TestRemoveRelationCrossBlocking: with mutual removes the last call wins."""
    schema = no_rels(C=am.State(remove=["D"]), D=am.State(remove=["C"]))
    async with mirrored(schema) as rig:
        await rig.step("set", "D", ["D"])
        await rig.step(first, "C", ["C"], EXECUTED)
        await rig.step(then, "D", ["D"], EXECUTED)
        await rig.step(first, "C", ["C"], EXECUTED)


async def test_add_relation() -> None:
    """Go TestAddRelation: C adds D, A removes D."""
    async with mirrored(
        no_rels(A=am.State(remove=["D"]), C=am.State(add=["D"]))
    ) as rig:
        await rig.step("set", "C", ["C", "D"])
        await rig.step("set", ["A", "C"], ["A", "C"], EXECUTED)


async def test_require_relation() -> None:
    """Go TestRequireRelation: set(C, D) with C requiring D activates both."""
    async with mirrored(no_rels(C=am.State(require=["D"]))) as rig:
        await rig.step("set", "A", ["A"])
        await rig.step("set", ["C", "D"], ["C", "D"], EXECUTED)


async def test_require_relation_when_required_isnt_active() -> None:
    """Go TestRequireRelationWhenRequiredIsntActive: set(C, A) is canceled."""
    async with mirrored(no_rels(C=am.State(require=["D"]))) as rig:
        await rig.step("set", "A", ["A"])
        await rig.step("set", ["C", "A"], ["A"], CANCELED)
        assert rig.nm.tick("C") == 0


async def test_auto_states() -> None:
    """Go TestAutoStates: B is auto and requires A; add A gives (A B) in one reply."""
    async with mirrored(no_rels(B=am.State(auto=True, require=["A"]))) as rig:
        await rig.step("add", "A", ["A", "B"], EXECUTED)


async def test_partial_auto() -> None:
    """Go TestPartialAuto: auto states requiring an inactive B stay off."""
    schema = no_rels(
        C=am.State(auto=True, require=["B"]), D=am.State(auto=True, require=["B"])
    )
    async with mirrored(schema) as rig:
        await rig.step("add", "A", ["A"], EXECUTED)
        await rig.step("add", "B", ["A", "B", "C", "D"], EXECUTED)


async def test_switch() -> None:
    """Go TestSwitch: the first active state of the groups, or an empty string."""
    async with mirrored(no_rels()) as rig:
        await rig.step("set", "B", ["B"])
        nm = rig.nm
        assert nm.switch(["A", "B"]) == "B"
        assert nm.switch(["C"], ["D", "B", "A"]) == "B"
        assert nm.switch(["A", "C", "D"]) == ""
        await rig.step("add", "A", ["A", "B"])
        assert nm.switch(["A", "B"]) == "A"


async def test_toggle() -> None:
    """Toggle decides from the mirror: add when inactive, remove when all active."""
    async with mirrored(no_rels()) as rig:
        await rig.step("toggle", "A", ["A"])
        await rig.step("toggle", ["A", "B"], ["A", "B"])
        await rig.step("toggle", ["A", "B"], [])
        assert rig.nm.clock(["A", "B"]) == {"A": 2, "B": 2}


async def test_regression_remove_cross_blocked_by_implied() -> None:
    """Go TestRegressionRemoveCrossBlockedByImplied: set(Z) gives (B Z)."""
    schema = {
        "A": am.State(remove=["B"]),
        "B": am.State(remove=["A"]),
        "Z": am.State(add=["B"]),
        **am.rpc.STATE_SOURCE_SCHEMA,
    }
    async with mirrored(schema) as rig:
        await rig.step("set", "A", ["A"])
        await rig.step("set", "Z", ["B", "Z"], EXECUTED)


async def test_regression_implied_block_by_being_removed() -> None:
    """Go TestRegressionImpliedBlockByBeingRemoved: Dry then Water gives (Water Wet)."""
    schema = {
        "Wet": am.State(require=["Water"]),
        "Dry": am.State(remove=["Wet"]),
        "Water": am.State(add=["Wet"], remove=["Dry"]),
        **am.rpc.STATE_SOURCE_SCHEMA,
    }
    async with mirrored(schema) as rig:
        await rig.step("set", "Dry", ["Dry"])
        await rig.step("set", "Water", ["Water", "Wet"], EXECUTED)


async def test_nested_mutation() -> None:
    """Go TestNestedMutation: nested add/remove of B in A's handler; mirror ends (A)."""
    results: list[am.Result] = []

    class Handlers:
        def A_state(self, e: am.Event) -> None:
            results.append(e.machine.add("B"))
            results.append(e.machine.remove("B"))

    async with mirrored(no_rels(), handlers=Handlers()) as rig:
        q = rig.nm.queue_tick()
        assert await rig.nm.add("A") == EXECUTED
        assert rig.nm.active_states() == ["A"]
        assert rig.nm.clock(["A", "B"]) == {"A": 1, "B": 2}
        assert all(r >= am.Result.QUEUED for r in results)
        assert rig.nm.queue_tick() == rig.src.queue_tick() == q + 3
        assert await rig.nm.when_queue(max(results))


# -- checks ------------------------------------------------------------------------


async def test_is_not_any() -> None:
    """Go TestIs / TestNot / TestAny: boolean checks incl. partial matches."""
    async with mirrored(no_rels()) as rig:
        await rig.step("set", ["A", "B"], ["A", "B"])
        nm = rig.nm
        assert nm.is_active(["A", "B"])
        assert nm.is_active("A")
        assert not nm.is_active(["A", "C"])
        assert not nm.is_active("C")
        assert nm.not_active(["C", "D"])
        assert not nm.not_active(["A", "C"])
        assert not nm.not_active(["A", "B"])
        assert nm.any_active(["A"], ["C"])
        assert nm.any_active(["C"], ["A", "B"])
        assert not nm.any_active(["A", "C"], ["D"])
        assert not nm.is_err()


async def test_time() -> None:
    """Go TestTime: exact tick vectors (B multi) after each step, then comparisons."""
    async with mirrored(no_rels(B=am.State(multi=True))) as rig:
        nm = rig.nm
        steps: list[tuple[str, list[str], list[str], list[int]]] = [
            ("add", ["A", "B"], ["A", "B"], [1, 1, 0, 0]),
            ("add", ["A", "B"], ["A", "B"], [1, 3, 0, 0]),
            ("add", ["A", "B", "C"], ["A", "B", "C"], [1, 5, 1, 0]),
            ("set", ["D"], ["D"], [2, 6, 2, 1]),
            ("add", ["D", "C"], ["C", "D"], [2, 6, 3, 1]),
            ("remove", ["B", "C"], ["D"], [2, 6, 4, 1]),
            ("add", ["A", "B"], ["A", "B", "D"], [3, 7, 4, 1]),
        ]
        for op, states, active, time in steps:
            await rig.step(op, states, active, EXECUTED)
            assert nm.time(ABCD) == time, (op, states)
        before = nm.time(ABCD)
        await rig.step("add", "C", ["A", "B", "C", "D"])
        now = nm.time(ABCD)
        assert now == [3, 7, 5, 1]
        assert nm.was_time(before, ABCD)
        assert not nm.is_time(before, ABCD)
        assert nm.is_time(now, ABCD)
        assert not nm.was_time([3, 7, 6, 1], ABCD)
        assert sum(nm.time()) == 16


async def test_clock() -> None:
    """Go TestClock: TestTime's sequence, then the clock map, a subset and a tick."""
    schema = no_rels(B=am.State(multi=True))
    async with mirrored(schema, names=[*ABCD, "Exception", "ErrOnClient"]) as rig:
        for op, states in [
            ("add", ["A", "B"]),
            ("add", ["A", "B"]),
            ("add", ["A", "B", "C"]),
            ("set", ["D"]),
            ("add", ["D", "C"]),
            ("remove", ["B", "C"]),
            ("add", ["A", "B"]),
        ]:
            await rig.step(op, states)
        nm = rig.nm
        assert nm.clock() == {
            "A": 3,
            "B": 7,
            "C": 4,
            "D": 1,
            "Exception": 0,
            "ErrOnClient": 0,
        }
        assert nm.clock(["B", "A"]) == {"B": 7, "A": 3}
        assert list(nm.clock(["B", "A"])) == ["B", "A"]
        assert nm.tick("A") == 3
        assert nm.time(["D", "A"]) == [1, 3]


async def test_is_clock_and_is_time() -> None:
    """Go TestIsClock / TestIsTime: snapshots from before a mutation stop matching."""
    async with mirrored(no_rels()) as rig:
        nm = rig.nm
        c_a, c_all = nm.clock(["A"]), nm.clock()
        t_a, t_all = nm.time(["A"]), nm.time()
        assert nm.is_clock(c_all)
        assert nm.is_time(t_a, ["A"])
        await rig.step("add", ["A", "B"])
        assert not nm.is_clock(c_all)
        assert not nm.is_clock(c_a)
        assert not nm.is_time(t_a, ["A"])
        assert not nm.is_time(t_all)
        assert nm.was_clock(c_all)
        assert nm.was_time(t_all)
        assert nm.is_clock({"A": 1, "B": 1})
        assert not nm.was_clock({"A": 2})


async def test_string() -> None:
    """Go TestString: str() and string_all() of the mirror."""
    names = ["Exception", *ABCD, "ErrOnClient"]
    async with mirrored(no_rels(), names=names) as rig:
        await rig.step("add", ["A", "B"])
        assert str(rig.nm) == "(A:1 B:1)"
        assert rig.nm.string_all() == "(A:1 B:1) [Exception:0 C:0 D:0 ErrOnClient:0]"


async def test_inspect() -> None:
    """Go TestInspect: the mirror's dump shows activity, ticks and relations."""
    schema = {
        "A": am.State(auto=True, require=["C"]),
        "B": am.State(multi=True, add=["C"]),
        "C": am.State(after=["D"]),
        "D": am.State(add=["C", "B"]),
        **am.rpc.STATE_SOURCE_SCHEMA,
    }
    async with mirrored(schema, names=[*ABCD, "Exception", "ErrOnClient"]) as rig:
        await rig.step("add", "C", ["A", "C"])
        text = rig.nm.inspect()
        assert text == rig.src.inspect()
        assert text.startswith("1 A\n    |Tick     1\n    |Auto     true\n")
        assert "0 B\n    |Tick     0\n    |Multi    true\n    |Add      C\n" in text
        assert "0 ErrOnClient\n    |Tick     0\n    |Require  Exception\n" in text
        assert rig.nm.inspect(["C"]) == "1 C\n    |Tick     1\n    |After    D\n"


# -- waiting -------------------------------------------------------------------------


async def test_when_two_waiters_and_when_active() -> None:
    """Go TestWhen2 / TestWhenActive: both waiters wake; an active state returns now."""
    async with mirrored(no_rels()) as rig:
        nm = rig.nm
        waits = [Bg(), Bg()]

        async def wait(bg: Bg) -> None:
            bg.result = await nm.when(["A", "B"])
            bg.seen = nm.active_states()

        async with anyio.create_task_group() as tg:
            for bg in waits:
                tg.start_soon(wait, bg)
            await settle()
            await rig.step("add", "A")
            await settle()
            assert not any(bg.done for bg in waits)
            await rig.step("add", "B")
        assert [(bg.result, bg.seen) for bg in waits] == [(True, ["A", "B"])] * 2
        link = rig.client._link
        assert link is not None
        sent = link.frames_out
        assert await nm.when("A")
        assert await nm.when(["A", "B"])
        assert link.frames_out == sent  # answered locally


async def test_when_not_two_waiters_and_when_not_active() -> None:
    """Go TestWhenNot2 / TestWhenNotActive: both wake on removal; inactive returns."""
    async with mirrored(no_rels()) as rig:
        nm = rig.nm
        await rig.step("add", ["A", "B"])
        waits = [Bg(), Bg()]

        async def wait(bg: Bg) -> None:
            bg.result = await nm.when_not(["A", "B"])
            bg.seen = nm.active_states()

        async with anyio.create_task_group() as tg:
            for bg in waits:
                tg.start_soon(wait, bg)
            await settle()
            await rig.step("remove", "A")
            await settle()
            assert not any(bg.done for bg in waits)
            await rig.step("remove", "B")
        assert [(bg.result, bg.seen) for bg in waits] == [(True, [])] * 2
        assert await nm.when_not("C")


async def test_when_time() -> None:
    """Go TestWhenTime: A >= 5 and B >= 2 resolves only once both hold."""
    async with mirrored(no_rels(A=am.State(multi=True))) as rig:
        nm = rig.nm
        bg = Bg()

        async def wait() -> None:
            bg.result = await nm.when_time(["A", "B"], [5, 2])
            bg.seen = [str(t) for t in nm.time(["A", "B"])]

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            for op, state in [("add", "A"), ("add", "A"), ("add", "A"), ("add", "B")]:
                await rig.step(op, state)
                await settle()
                assert not bg.done, nm.time(["A", "B"])
            await rig.step("remove", "B")
        assert bg.result is True
        assert bg.seen == ["5", "2"]


async def test_when_ticks_and_when_err() -> None:
    """when_ticks and when_err on the mirror resolve from remote changes."""
    async with mirrored(no_rels(A=am.State(multi=True)), push_interval=0.01) as rig:
        nm = rig.nm
        async with anyio.create_task_group() as tg:
            results: list[bool] = []

            async def ticks() -> None:
                results.append(await nm.when_ticks("A", 3))

            async def err() -> None:
                results.append(await nm.when_err())

            tg.start_soon(ticks)
            tg.start_soon(err)
            await settle()
            for _ in range(3):
                await rig.step("add", "A")
            rig.src.add_err(ValueError("boom"))  # a source-side change, pushed
        assert results == [True, True]
        assert nm.is_err()
        err_obj = nm.err()
        assert isinstance(err_obj, am.rpc.RemoteError)
        assert "ValueError" in str(err_obj)
        assert "boom" in str(err_obj)


async def test_when_query() -> None:
    """Go TestWhenQuery: a predicate over the clock fires when it first holds."""
    async with mirrored(no_rels(A=am.State(multi=True))) as rig:
        nm = rig.nm
        await rig.step("add", "B")
        bg = Bg()

        async def wait() -> None:
            bg.result = await nm.when_query(lambda c: c["A"] > 4 * c["B"])
            bg.seen = [str(nm.tick("A"))]

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await settle()
            for _ in range(2):
                await rig.step("add", "A")  # A: 1, then 3
                await settle()
                assert not bg.done
            await rig.step("add", "A")  # A: 5 > 4 * B
        assert bg.result is True
        assert bg.seen == ["5"]


async def test_when_queue() -> None:
    """Go TestWhenQueue: a mirror observer adds B, C, D after A; queue tick 5 shows all."""
    async with mirrored(no_rels(), push_interval=0.01) as rig:
        nm = rig.nm

        class Observer:
            def A_state(self, e: am.Event) -> None:
                for s in ("B", "C", "D"):
                    nm.add_ns(s)  # handlers on a mirror must not await

        nm.bind_handlers(Observer())
        assert nm.queue_tick() == 1
        assert await nm.add("A") == EXECUTED
        assert nm.queue_tick() == 2
        assert await nm.when_queue(5)
        assert nm.active_states() == ABCD
        assert nm.queue_tick() == rig.src.queue_tick() == 5
        assert await nm.when_queue(3)  # already passed: at once


async def test_pipes() -> None:
    """Go TestPipes: mirror notifications piped into a local machine."""
    local = am.Machine(no_rels(), id="local")

    class Pipe:
        def A_state(self, e: am.Event) -> None:
            local.add("A")

        def B_state(self, e: am.Event) -> None:
            local.add("B")

        def A_end(self, e: am.Event) -> None:
            local.remove("A")

    async with mirrored(no_rels(), push_interval=0.01) as rig:
        rig.nm.bind_handlers(Pipe())
        rig.src.add(["A", "B"])  # on the source: reaches the mirror by a push
        assert await local.when(["A", "B"])
        await rig.nm.remove("A")
        assert local.active_states() == ["B"]


async def test_state_ctx_expires_on_mirrored_changes() -> None:
    """State contexts of the mirror expire when the mirrored tick changes."""
    async with mirrored(no_rels(), push_interval=0.01) as rig:
        nm = rig.nm
        inactive = nm.new_state_ctx("A")
        assert not inactive.expired
        await rig.step("add", "A")
        assert inactive.expired  # taken while inactive: expires on activation
        active = nm.new_state_ctx("A")
        other = nm.new_state_ctx("B")
        assert not active.expired
        await rig.step("add", "B")
        assert not active.expired
        assert other.expired
        rig.src.remove("A")  # a source-side change, pushed
        await active.wait()
        assert active.expired
        assert nm.not_active("A")


async def test_tracer_sees_one_synthetic_transition_per_update() -> None:
    """A tracer on the mirror sees each applied clock as one synthetic set transition."""
    ends: list[am.Transition] = []
    calls: list[str] = []

    class Tracer(am.TracerNoOp):
        def transition_end(self, tx: am.Transition) -> None:
            ends.append(tx)

    class Notes:
        def A_enter(self, e: am.Event) -> bool:
            calls.append("A_enter")
            return False  # negotiation handlers do not run on a mirror

        def A_state(self, e: am.Event) -> None:
            calls.append("A_state")

        def A_end(self, e: am.Event) -> None:
            calls.append("A_end")

        def any_state(self, e: am.Event) -> None:
            calls.append("any_state")

    async with mirrored(no_rels()) as rig:
        nm = rig.nm
        nm.add_tracer(Tracer())
        nm.bind_handlers(Notes())
        await rig.step("add", ["A", "B"], ["A", "B"])
        assert len(ends) == 1
        tx = ends[0]
        assert tx.type is am.MutationType.SET
        assert tx.called == ("A", "B")
        assert tx.enters == ["A", "B"]
        assert tx.exits == []
        assert tx.is_completed
        assert tx.clock_after == nm.clock()
        assert calls == ["A_state", "any_state"]
        await rig.step("remove", "A", ["B"])
        assert len(ends) == 2
        assert ends[1].exits == ["A"]
        assert ends[1].called == ("B",)
        assert calls[2:] == ["A_end", "any_state"]


async def test_mirror_is_disposed_when_the_client_leaves() -> None:
    """Leaving the client's block disposes the mirror: pending local waits end False."""
    results: list[bool] = []
    with anyio.fail_after(TIMEOUT):
        src = am.Machine(no_rels(), id="src")
        async with am.rpc.serve(src) as server:
            async with (
                anyio.create_task_group() as tg,
                am.rpc.Client(server.addr) as client,
            ):
                nm = client.netmach

                async def wait() -> None:
                    results.append(await nm.when("A"))

                tg.start_soon(wait)
                await settle()
                assert not results
            assert results == [False]
            assert await nm.when_disposed()
            assert await nm.when("A") is False
