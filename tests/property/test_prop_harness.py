"""The harness itself: strategies, the call log, MachineRules and its helpers."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from hypothesis.stateful import invariant, rule, run_state_machine_as_test

import asyncmachine as am
from asyncmachine.testing import (
    KINDS,
    BehaviourHandlers,
    CallLog,
    HandlerBehaviour,
    LoopGuard,
    MachineRules,
    MutationTuple,
    RunawayError,
    SchemaDict,
    all_handler_names,
    apply_mutation,
    check_invariants,
    handler_behaviours,
    mutations,
    schemas,
    state_names,
)

FIND = settings(
    database=None, max_examples=2000, suppress_health_check=list(HealthCheck)
)

# -- strategies ------------------------------------------------------------------------


@given(schemas(min_states=2, max_states=5))
def test_schemas_are_valid_and_complete(schema: SchemaDict) -> None:
    """Every drawn schema builds a machine; every state has all six keys."""
    assert 2 <= len(schema) <= 5
    for st_def in schema.values():
        assert list(st_def) == ["auto", "multi", "require", "add", "remove", "after"]
    mach = am.Machine(schema)
    assert mach.state_names() == sorted([*schema, "Exception"])


@given(schemas(cycles=False, contradictions=False, auto=False, multi=False))
def test_schema_options_are_respected(schema: SchemaDict) -> None:
    """No cycles, no contradictions, no flags, when asked."""
    names = list(schema)
    for i, (name, d) in enumerate(schema.items()):
        assert set(d["require"]) <= {*names[:i], "Exception"}
        assert name not in d["remove"]
        assert not set(d["remove"]) & (set(d["require"]) | set(d["add"]))
        assert not d["auto"]
        assert not d["multi"]
    mach = am.Machine(schema)
    assert not mach.is_err()  # no require-remove conflict (spec S9)


@given(schemas(density=0))
def test_density_zero_means_no_relations(schema: SchemaDict) -> None:
    """density=0: every relation list is empty."""
    for d in schema.values():
        assert d["require"] == d["add"] == d["remove"] == d["after"] == []


SAMPLE = settings(
    max_examples=50,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_schemas_reach_every_feature() -> None:
    """The default strategy draws every relation kind, flag and contradiction."""
    seen: Counter[str] = Counter()

    @SAMPLE
    @given(schemas())
    def sample(schema: SchemaDict) -> None:
        seen["schemas"] += 1
        defs = schema.values()
        seen["self-require cycle"] += any(n in d["require"] for n, d in schema.items())
        seen["require-remove conflict"] += am.Machine(schema).is_err()
        seen["relation to Exception"] += any("Exception" in d["remove"] for d in defs)
        for key in ("auto", "multi", "require", "add", "remove", "after"):
            seen[key] += any(d[key] for d in defs)

    sample()
    assert seen["schemas"] == 50
    assert len(seen) == 10
    assert min(seen.values()) >= 5, seen  # each in at least 10% of the schemas


@given(state_names(max_size=6, special=True))
def test_state_names_are_valid(names: list[str]) -> None:
    """Distinct, valid, never Any or Exception: a machine accepts them."""
    assert len(set(names)) == len(names)
    assert not {"Any", "Exception"} & set(names)
    am.Machine({n: {} for n in names})


def test_state_names_can_be_special() -> None:
    """special=True also draws names the core treats specially (spec S4)."""
    specials = {"Start", "Ready", "Disposing", "MachineRestored", "Heartbeat"}
    specials.add("Healthcheck")
    seen: set[str] = set()

    @SAMPLE
    @given(state_names(special=True))
    def sample(names: list[str]) -> None:
        seen.update(specials & set(names))
        am.Machine({n: {} for n in names})

    sample()
    assert len(seen) >= 3, seen


@given(st.data())
def test_mutations_fit_the_schema(data: st.DataObject) -> None:
    """Kinds, states and args as documented; every one applies."""
    schema = data.draw(schemas(max_states=4))
    kinds = data.draw(st.lists(st.sampled_from(list(KINDS)), min_size=1, unique=True))
    mach = am.Machine(schema)
    for _ in range(5):
        kind, states, args = data.draw(mutations(schema, kinds=kinds, max_states=2))
        assert kind in kinds
        assert set(states) <= {*schema, "Exception"}
        assert len(states) <= (1 if kind == "add_err" else 2)
        assert isinstance(args, dict)
        result = apply_mutation(mach, (kind, states, args))
        assert not result.is_queued


def test_mutations_reject_unknown_kinds() -> None:
    """A typo in kinds is an error, not a silently empty strategy."""
    with pytest.raises(ValueError, match="unknown"):
        mutations({"A": {}}, kinds=["ad"])
    with pytest.raises(ValueError, match="unknown mutation kind"):
        apply_mutation(am.Machine({"A": {}}), ("flip", ("A",), {}))


def test_mutations_accept_typed_schemas() -> None:
    """A typed am.Schema class works like its dict form."""

    class Kettle(am.Schema):
        Water = am.state()
        Boiling = am.state(require=[Water])

    seen: set[str] = set()

    @SAMPLE
    @given(mutations(Kettle))
    def sample(m: MutationTuple) -> None:
        seen.update(m[1])
        apply_mutation(am.Machine(Kettle), m)

    sample()
    assert seen == {"Water", "Boiling", "Exception"}


@given(st.data())
def test_behaviours_are_valid_python_and_bounded(data: st.DataObject) -> None:
    """repr() rebuilds the behaviour; raises and mutations stay within budget."""
    schema = data.draw(schemas(max_states=4))
    behaviour = data.draw(handler_behaviours(schema, max_raises=1, max_mutations=2))
    assert eval(repr(behaviour), {"HandlerBehaviour": HandlerBehaviour}) == behaviour
    handlers = behaviour.build()
    mach = am.Machine(schema, handlers=handlers)
    for m in data.draw(st.lists(mutations(schema), max_size=10)):
        apply_mutation(mach, m)
        check_invariants(mach)
    assert handlers.raised <= 1
    assert handlers.mutated <= 2
    names = set(all_handler_names(behaviour.states))
    assert set(handlers.calls) <= names


def test_behaviour_without_record_defines_only_its_handlers() -> None:
    """record=False: only handlers with a behaviour exist."""
    b = HandlerBehaviour(states=("A", "Exception"), reject=("A_enter",), record=False)
    handlers = b.build()
    assert hasattr(handlers, "A_enter")
    assert not hasattr(handlers, "A_exit")
    mach = am.Machine({"A": {}}, handlers=handlers)
    assert mach.add("A") == am.Result.CANCELED
    assert handlers.calls == ["A_enter"]


# -- the call log ----------------------------------------------------------------------


class Echo:
    """Handlers: A_state queues an add of B (not an outside call)."""

    def A_state(self, e: am.Event) -> None:
        e.machine.add("B")


def test_call_log_writes_outside_calls_as_python() -> None:
    """
    Each outside call becomes a line: toggle as what it chose, errors as add_err,
    dispose() without its own remove("Start"); handler and auto mutations do not.
    """
    schema = {"A": {}, "B": {"auto": True}, "Start": {}, "ErrX": {}}
    mach = am.Machine(schema, handlers=Echo())
    log = CallLog()
    mach.add_tracer(log)
    mach.add("A", {"n": 1})
    mach.toggle("A")
    mach.set(["B"])
    mach.remove("B")
    mach.add_err(ValueError("boom"))
    mach.add_err_state("ErrX", KeyError("k"), {"why": "test"})
    mach.can_add("A")
    mach.add("Start")
    mach.dispose()
    assert log.lines == [
        "mach.add(['A'], {'n': 1})",
        "mach.remove(['A'])",
        "mach.set(['B'])",
        "mach.remove(['B'])",
        "mach.add_err(ValueError('boom'))",
        "mach.add_err_state('ErrX', KeyError('k'), {'why': 'test'})",
        "mach.can_add(['A'])",
        "mach.add(['Start'])",
        "mach.dispose()",
    ]


def test_call_log_replays_to_the_same_clock() -> None:
    """exec() of the lines on a fresh machine reproduces the clock."""
    schema = {"A": {}, "B": {"auto": True, "require": ["A"]}, "ErrX": {}}
    mach = am.Machine(schema, handlers=Echo())
    log = CallLog()
    mach.add_tracer(log)
    mach.add("A", {"n": 1})
    mach.toggle("B")
    mach.add_err_state("ErrX", KeyError("k"))
    mach.remove(["A", "Exception"])
    again = am.Machine(schema, handlers=Echo())
    for line in log.lines:
        exec(line, {"mach": again})  # noqa: S102 - replaying the log is the test
    assert again.clock() == mach.clock()


def test_call_log_marks_imports() -> None:
    """An import cannot be replayed: a comment, and no line for MachineRestored."""
    names = ["A", "MachineRestored", "Exception"]
    mach = am.Machine({"A": {}, "MachineRestored": {}}, id="m", names=names)
    log = CallLog()
    mach.add_tracer(log)
    mach.import_({"id": "m", "state_names": names, "time": [1, 0, 0]})
    mach.add("A")
    assert log.lines == [
        "# mach.import_(...) ran here (not replayed)",
        "mach.add(['A'])",
    ]


def test_custom_exception_types_replay_as_runtime_errors() -> None:
    """An error class the snippet cannot import becomes a RuntimeError line."""

    class PowerError(Exception):
        pass

    mach = am.Machine({"A": {}})
    log = CallLog()
    mach.add_tracer(log)
    mach.add_err(PowerError("fuse"))
    (line,) = log.lines
    assert line.startswith("mach.add_err(RuntimeError('fuse'))  # was ")
    exec(line, {"mach": am.Machine({"A": {}})})  # noqa: S102 - the line must run


def test_loop_guard_stops_an_endless_drain() -> None:
    """Handlers that ping-pong forever end in RunawayError after the limit."""

    class PingPong:
        def A_state(self, e: am.Event) -> None:
            e.machine.set("B")

        def B_state(self, e: am.Event) -> None:
            e.machine.set("A")

    guard = LoopGuard(50)
    mach = am.Machine({"A": {}, "B": {}}, handlers=PingPong(), tracers=[guard])
    with pytest.raises(RunawayError, match="more than 50 transitions") as info:
        mach.add("A")
    assert isinstance(info.value, SystemExit)  # Hypothesis shrinks SystemExit
    assert "[set] B" in str(info.value)


def test_loop_guard_counts_per_drain() -> None:
    """The count restarts with each outside call."""
    guard = LoopGuard(2)
    mach = am.Machine({"A": {}}, tracers=[guard])
    for _ in range(10):
        mach.toggle("A")
    assert guard.count == 0


def test_loop_guard_watches_the_constructor() -> None:
    """MachineRules passes its guard to the constructor, which may loop too (S9)."""

    class Nagger:
        def Exception_state(self, e: am.Event) -> None:
            e.machine.add_err(RuntimeError("again"))  # every error adds another

    class Rules(MachineRules):
        # a require-remove conflict: binding the handlers adds the error again
        schema = CONFLICT
        handlers = Nagger
        max_transitions = 50

    with pytest.raises(RunawayError, match="more than 50"):
        Rules()


# -- MachineRules ----------------------------------------------------------------------

ONE: SchemaDict = {"A": {}}
TWO: SchemaDict = {"A": {}, "B": {}}
KETTLE: SchemaDict = {"Heating": {}, "Boiling": {"require": ["Heating"]}}

CONFLICT: SchemaDict = {"B": {"require": ["C"], "remove": ["C"]}, "C": {}}
RICH: SchemaDict = {
    "A": {"auto": True, "require": ["B"]},
    "B": {"multi": True, "add": ["C"], "remove": ["D"]},
    "C": {"after": ["D"], "require": ["C"]},  # a self-require: no Require ordering
    "D": {"remove": ["B"], "add": ["A"]},
    "E": {"require": ["F"], "remove": ["F"]},  # a require-remove conflict
    "F": {"auto": True, "add": ["E"]},
}


def stress_handlers() -> BehaviourHandlers:
    """Rejecting, raising and mutating handlers for RICH."""
    return HandlerBehaviour(
        states=("A", "B", "C", "D", "E", "F", "Exception"),
        reject=("C_enter", "B_D"),
        raises=("D_state", "any_enter"),
        mutate=(("B_state", "add", ("D",)), ("F_end", "set", ("B", "C"))),
        max_raises=5,
        max_mutations=8,
    ).build()


class RichRules(MachineRules):
    """Random mutations on a schema with every feature, under stress handlers."""

    schema = RICH
    handlers = stress_handlers
    handler_obj: BehaviourHandlers
    names = ("F", "E", "D", "C", "B", "A", "Exception")

    @invariant()
    def budgets_hold(self) -> None:
        assert self.handler_obj.raised <= 5
        assert self.handler_obj.mutated <= 8

    @rule()
    def clear_errors(self) -> None:
        self.mach.remove("Exception")


TestRichRules = RichRules.TestCase


def test_rules_bind_the_configured_machine() -> None:
    """schema, handlers (a factory: fresh per run), names and options are used."""
    first, second = RichRules(), RichRules()
    assert first.handler_obj is not second.handler_obj
    assert first.mach.state_names() == list(RichRules.names or ())
    assert first.mach.is_err()  # the E/F conflict starts it in Exception (S9)

    shared = object()

    class Shared(MachineRules):
        schema = ONE
        handlers = shared
        machine_options = MappingProxyType({"id": "fixed"})

    assert Shared().handler_obj is shared
    assert Shared().mach.id == "fixed"


def test_rules_record_results_and_reject_queued_results() -> None:
    """apply() keeps results; a queued result from outside is a violation."""

    class Queued(am.Machine):
        def add(self, states: am.StatesArg, args: Any = None, **kw: Any) -> am.Result:
            super().add(states, args, **kw)
            return am.Result(7)

    class Rules(MachineRules):
        schema = ONE

        def new_machine(self) -> am.Machine:
            return Queued(self.schema)

    state = Rules()
    assert state.apply(("remove", ("A",), {})) == am.Result.EXECUTED
    assert state.results == [(("remove", ("A",), {}), am.Result.EXECUTED)]
    with pytest.raises(AssertionError, match="outside-result"):
        state.apply(("add", ("A",), {}))


def test_verify_runs_every_invariant() -> None:
    """verify() runs the built-in and the user's invariants."""
    seen: list[str] = []

    class Rules(MachineRules):
        schema = ONE

        @invariant()
        def mine(self) -> None:
            seen.append("mine")

    Rules().verify()
    assert seen == ["mine"]


def test_reproduction_of_a_local_class_says_so() -> None:
    """A class defined in a function cannot be imported: the snippet tells."""

    class Rules(MachineRules):
        schema = ONE

    state = Rules()
    state.mach.add("A")
    state.check_machine()
    text = state.reproduction()
    assert "# define test_reproduction_of_a_local_class_says_so.<locals>.Rules" in text
    assert "\nstate = Rules()\n" in text
    assert text.endswith("mach.add(['A'])\nstate.verify()")
    compile(text, "<snippet>", "exec")
    state.teardown()  # outside a Hypothesis run: no note, no error


def test_failing_rules_print_the_snippet_in_the_notes() -> None:
    """Hypothesis' failure carries the plain-calls reproduction."""

    class Rules(MachineRules):
        schema = TWO

        @invariant()
        def never_both(self) -> None:
            assert not self.mach.is_active(["A", "B"]), "both"

    with pytest.raises(AssertionError, match="both") as info:
        run_state_machine_as_test(
            Rules,
            settings=settings(
                max_examples=200, database=None, phases=[Phase.generate, Phase.shrink]
            ),
        )
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "# asyncmachine.testing: the failing run as plain calls" in notes
    assert "state.verify()" in notes


# -- async helpers ---------------------------------------------------------------------


def test_fake_clock_jumps_over_sleeps() -> None:
    """An hour of sleeping takes no real time; the virtual clock moved an hour."""
    import asyncio

    from asyncmachine.testing import FakeClock

    clock = FakeClock()

    async def main() -> float:
        await asyncio.sleep(3600)
        return asyncio.get_running_loop().time()

    start = time.monotonic()
    with asyncio.Runner(loop_factory=clock.new_event_loop) as runner:
        assert runner.run(main()) >= 3600
    assert time.monotonic() - start < 5
    assert clock.time() >= 3600
    with pytest.raises(ValueError, match="back"):
        clock.advance(-1)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_async_waits_on_virtual_time(backend: str) -> None:
    """run_async: a when() wait with a 1-day timeout ends at once."""
    import anyio

    mach = am.Machine({"A": {}})

    async def main() -> bool:
        with anyio.move_on_after(86400):
            return await mach.when("A")
        return False

    start = time.monotonic()
    assert am.testing.run_async(main, backend=backend) is False
    assert time.monotonic() - start < 5


class Kettle:
    """Handlers: boiling takes 5 minutes (in a task of the machine)."""

    def Heating_state(self, e: am.Event) -> None:
        import anyio

        async def boil() -> None:
            await anyio.sleep(300)
            e.machine.add("Boiling")

        e.machine.fork(e, boil)


class KettleRules(am.testing.AsyncMachineRules):
    """Async rules: wait for the kettle on virtual time."""

    schema = KETTLE
    handlers = Kettle
    runtime = True
    mutation_kinds = ("add", "remove")

    @am.testing.async_rule()
    async def boil(self) -> None:
        self.mach.add("Heating")
        assert await self.mach.when("Boiling")
        assert self.clock is not None
        assert self.clock.time() >= 300

    @rule()
    def wait_forever_times_out(self) -> None:
        self.call(self.mach.remove, "Heating")
        with pytest.raises(TimeoutError):
            self.run(self.mach.when("Boiling"), timeout=3600)


def test_async_rules_run_on_virtual_time() -> None:
    """A whole stateful run with awaits and tasks takes little real time."""
    start = time.monotonic()
    run_state_machine_as_test(
        KettleRules, settings=settings(max_examples=10, stateful_step_count=10)
    )
    assert time.monotonic() - start < 30


# -- packaging -------------------------------------------------------------------------


def test_missing_hypothesis_names_the_extra() -> None:
    """Without Hypothesis the import fails with a message naming the extra."""
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "try:\n"
        "    import asyncmachine.testing\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "asyncmachine[testing]" in out
    assert "'testing' extra" in out


def test_reachable_as_am_testing() -> None:
    """import asyncmachine as am; am.testing works lazily."""
    assert am.testing.check_invariants is check_invariants
