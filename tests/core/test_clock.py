"""Clocks and time (spec section 2), Result, string formats, export/import, schema order."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from core_helpers import REL_SCHEMA, Recorder, machine, no_rels, rels

import asyncmachine as am

EXECUTED = am.Result.EXECUTED
CANCELED = am.Result.CANCELED
ABCD = ["A", "B", "C", "D"]
NO_RELS = {n: am.State() for n in ABCD}


def run_time_sequence(m: am.Machine) -> None:
    """The Go TestTime/TestClock mutation sequence, checked step by step."""
    steps: list[tuple[Callable[[], am.Result], list[str], list[int]]] = [
        (lambda: m.add(["A", "B"]), ["A", "B"], [1, 1, 0, 0]),
        (lambda: m.add(["A", "B"]), ["A", "B"], [1, 3, 0, 0]),
        (lambda: m.add(["A", "B", "C"]), ["A", "B", "C"], [1, 5, 1, 0]),
        (lambda: m.set(["D"]), ["D"], [2, 6, 2, 1]),
        (lambda: m.add(["D", "C"]), ["C", "D"], [2, 6, 3, 1]),
        (lambda: m.remove(["B", "C"]), ["D"], [2, 6, 4, 1]),
        (lambda: m.add(["A", "B"]), ["A", "B", "D"], [3, 7, 4, 1]),
    ]
    for i, (mutate, active, time) in enumerate(steps):
        assert mutate() == EXECUTED, i
        assert m.active_states() == active, i
        assert m.time(ABCD) == time, i


def test_time() -> None:
    """Go TestTime: the tick sequence of spec section 2, then comparisons and sum 16."""
    m = no_rels(extra={"B": am.State(multi=True)})
    run_time_sequence(m)
    before = m.time(ABCD)
    m.add("C")
    now = m.time(ABCD)
    assert m.active_states() == ["A", "B", "C", "D"]
    assert now == [3, 7, 5, 1]
    assert m.was_time(before, ABCD)
    assert not m.is_time(before, ABCD)
    assert m.is_time(now, ABCD)
    assert m.was_time(now, ABCD)
    assert not m.was_time([3, 7, 6, 1], ABCD)
    assert sum(m.time()) == 16


def test_clock() -> None:
    """Go TestClock: the same sequence, then clock(), a subset clock and tick("A")."""
    m = machine({**NO_RELS, "B": am.State(multi=True)}, names=[*ABCD, "Exception"])
    run_time_sequence(m)
    assert m.clock() == {"A": 3, "B": 7, "C": 4, "D": 1, "Exception": 0}
    assert list(m.clock()) == m.state_names()
    assert m.clock(["A", "B"]) == {"A": 3, "B": 7}
    assert list(m.clock(["B", "A"])) == ["B", "A"]
    assert m.tick("A") == 3
    assert m.time(["D", "A"]) == [1, 3]


def test_is_clock() -> None:
    """Go TestIsClock: is_clock is false after a change, true with the new tick."""
    m = no_rels()
    c_a = m.clock(["A"])
    c_all = m.clock()
    m.add(["A", "B"])
    assert not m.is_clock(c_all)
    assert not m.is_clock(c_a)
    c_a["A"] += 1
    assert m.is_clock(c_a)
    assert m.was_clock(c_all)
    assert m.was_clock({"A": 1, "B": 0})
    assert not m.was_clock({"A": 2})


def test_is_time() -> None:
    """Go TestIsTime: is_time is false after a change."""
    m = no_rels()
    t_a = m.time(["A"])
    t_all = m.time()
    assert m.is_time(t_a, ["A"])
    assert m.is_time(t_all)
    m.add(["A", "B"])
    assert not m.is_time(t_a, ["A"])
    assert not m.is_time(t_all)
    assert m.was_time(t_all)


def test_multi_ticks() -> None:
    """Spec C2/C3: an implied active multi state keeps its tick; a called one gets +2."""
    m = machine({"M": am.State(multi=True), "X": am.State(add=["M"])})
    m.add("M")
    m.add("X")
    assert m.clock(["M", "X"]) == {"M": 1, "X": 1}
    m.add("M")
    assert m.tick("M") == 3
    m.add("X")
    assert m.tick("M") == 3


def test_is_active_tick() -> None:
    """Go TestIsActiveTick: odd ticks are active."""
    assert am.is_active_tick(1)
    assert not am.is_active_tick(0)
    assert not am.is_active_tick(6548734)
    assert am.is_active_tick(6548735)


def test_next_active_inactive() -> None:
    """Spec C5: next_active and next_inactive give the next matching tick."""
    assert [am.next_active(t) for t in range(5)] == [1, 3, 3, 5, 5]
    assert [am.next_inactive(t) for t in range(5)] == [2, 2, 4, 4, 6]


def test_machine_and_queue_tick_start() -> None:
    """Spec C6/C7: the queue tick starts at 1, the machine tick at 0."""
    m = no_rels()
    assert m.queue_tick() == 1
    assert m.machine_tick() == 0
    m.add("A")
    m.add("B")
    assert m.queue_tick() == 3
    assert m.machine_tick() == 0


# -- Result ----------------------------------------------------------------------------


def test_result_string() -> None:
    """Go TestResultString: Result semantics and strings."""
    assert EXECUTED == 0
    assert CANCELED == 1
    assert am.Result.QUEUED == 2
    assert isinstance(EXECUTED, int)
    assert str(EXECUTED) == "executed"
    assert str(CANCELED) == "canceled"
    assert str(am.Result.QUEUED) == "queued"
    r = am.Result(7)
    assert r.is_queued
    assert str(r) == "queued"
    assert r != am.Result.QUEUED
    assert not EXECUTED.is_queued
    assert not CANCELED.is_queued
    assert am.Result.QUEUED.is_queued


def test_mutation_type_string() -> None:
    """Spec 10.8: mutation types print as add, remove and set."""
    assert [str(t) for t in am.MutationType] == ["add", "remove", "set"]


# -- strings ---------------------------------------------------------------------------


def test_string() -> None:
    """Go TestString: str() and string_all()."""
    m = no_rels(["A", "B"], names=[*ABCD, "Exception"])
    assert str(m) == "(A:1 B:1)"
    assert m.string_all() == "(A:1 B:1) [C:0 D:0 Exception:0]"
    m = machine({"A": am.State(), "B": am.State()})
    assert str(m) == "()"
    assert m.string_all() == "() [A:0 B:0 Exception:0]"
    m.add(["A", "B", "Exception"])
    assert m.string_all() == "(A:1 B:1 Exception:1) []"


INSPECT_1 = """\
1 A
    |Tick     1
    |Auto     true
    |Require  C
0 B
    |Tick     0
    |Multi    true
    |Add      C
1 C
    |Tick     1
    |After    D
0 D
    |Tick     0
    |Add      C B
0 Exception
    |Tick     0
    |Multi    true
"""

INSPECT_2 = """\
0 Exception
    |Tick     0
    |Multi    true
1 A
    |Tick     3
    |Auto     true
    |Require  C
1 B
    |Tick     1
    |Multi    true
    |Add      C
1 C
    |Tick     3
    |After    D
1 D
    |Tick     1
    |Add      C B
"""


def test_inspect() -> None:
    """Go TestInspect: the exact inspect() text, with names and another state order."""
    m = rels(["A", "C"])
    assert m.inspect(["A", "B", "C", "D", "Exception"]) == INSPECT_1
    assert m.inspect() == INSPECT_1
    m.remove("C")
    m.add("B")
    m.add("D")
    assert m.inspect(["Exception", *ABCD]) == INSPECT_2

    m2 = machine(REL_SCHEMA, ["A", "C"], names=["Exception", *ABCD])
    m2.remove("C")
    m2.add("B")
    m2.add("D")
    assert m2.inspect() == INSPECT_2
    assert m2.inspect(["C"]) == "1 C\n    |Tick     3\n    |After    D\n"


# -- export / import -------------------------------------------------------------------


def exported_machine() -> am.Machine:
    """Go TestExportImport's source machine: NoRels (A) with an explicit order."""
    m1 = no_rels(["A"], id="m1", names=["C", "B", "A", "D", "Exception"])
    m1.remove("B")
    m1.add("A")
    m1.add("B")
    m1.add("C")
    return m1


def test_export_import() -> None:
    """Go TestExportImport: a different id fails, the same id restores the clock."""
    m1 = exported_machine()
    data = m1.export()
    assert set(data) == {"id", "state_names", "time", "queue_tick", "machine_tick"}
    assert data == {
        "id": "m1",
        "state_names": ["C", "B", "A", "D", "Exception"],
        "time": [1, 1, 1, 0, 0],
        "queue_tick": 6,
        "machine_tick": 0,
    }
    assert json.loads(json.dumps(data)) == data

    other = machine(NO_RELS, id="other")
    with pytest.raises(am.ExportError):
        other.import_(data)
    assert other.time() == [0, 0, 0, 0, 0]

    m2 = machine(NO_RELS, id="m1")
    rec = Recorder(["any_enter", "any_state", "A_state"])
    m2.bind_handlers(rec)
    m2.import_(data)
    assert str(m2) == str(m1)
    assert m2.state_names() == ["C", "B", "A", "D", "Exception"]
    assert m2.active_states() == ["C", "B", "A"]
    assert m2.machine_tick() == 1
    assert m2.queue_tick() == 1  # not restored
    assert rec.calls == []  # no handlers run
    exported = m2.export()
    assert exported["time"] == data["time"]
    assert exported["machine_tick"] == 1


def test_import_active_order() -> None:
    """Spec 10.6: the imported active list follows the exported state order."""
    m = machine(NO_RELS, id="x")
    m.import_(
        {
            "id": "x",
            "state_names": ["D", "B", "A", "C", "Exception"],
            "time": [3, 1, 0, 5, 0],
            "queue_tick": 9,
            "machine_tick": 4,
        }
    )
    rec = Recorder(["any_enter"])
    m.bind_handlers(rec)
    m.add("A")
    assert rec.events[0].transition.states_before == ("D", "B", "C")
    assert m.machine_tick() == 5
    assert m.queue_tick() == 2


def test_from_export() -> None:
    """api.md: Machine.from_export builds a machine with the exported id and clock."""
    m1 = exported_machine()
    m2 = am.Machine.from_export(m1.export(), NO_RELS)
    assert m2.id == "m1"
    assert m2.string_all() == m1.string_all()
    assert m2.state_names() == m1.state_names()
    assert m2.machine_tick() == 1


def test_import_adds_machine_restored() -> None:
    """Spec 10.6/DEV-12: MachineRestored is added after a successful import."""
    schema = {**NO_RELS, "MachineRestored": am.State()}
    m1 = machine(schema, ["A"], id="r", names=[*ABCD, "Exception", "MachineRestored"])
    m2 = machine(schema, id="r")
    rec = Recorder(["MachineRestored_state"])
    m2.bind_handlers(rec)
    m2.import_(m1.export())
    assert rec.calls == ["MachineRestored_state"]
    assert m2.active_states() == ["A", "MachineRestored"]
    assert m2.queue_tick() == 2


def test_import_mismatched_states() -> None:
    """Spec 10.6: the schema must have the exported states."""
    m1 = machine({"A": am.State()}, ["A"], id="s", names=["A", "Exception"])
    m2 = machine(NO_RELS, id="s")
    with pytest.raises(am.ExportError):
        m2.import_(m1.export())


def test_export_requires_explicit_order() -> None:
    """Spec 10.6/S8: export() raises SchemaError without an explicit state order."""
    m = no_rels(["A"])
    with pytest.raises(am.SchemaError):
        m.export()


# -- state order -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(["A", "A", "B", "Err"], id="dup-and-unknown"),
        pytest.param(["A", "A"], id="dup"),
        pytest.param(["A", "B"], id="missing"),
        pytest.param(["A", "B", "C", "D"], id="missing-exception"),
        pytest.param(["A", "B", "C", "D", "Exception", "Exception"], id="dup-exc"),
        pytest.param(["A", "B", "C", "C", "Exception"], id="dup-hides-missing"),
    ],
)
def test_verify_states(names: list[str]) -> None:
    """Go TestVerifyStates: duplicated, unknown or missing names raise SchemaError."""
    with pytest.raises(am.SchemaError):
        am.Machine(NO_RELS, names=names)


def test_explicit_order() -> None:
    """Spec S7/S8: the default order is alphabetical, names= sets an explicit one."""
    assert machine({"Foo": am.State(), "Bar": am.State()}).state_names() == [
        "Bar",
        "Exception",
        "Foo",
    ]
    m = machine(NO_RELS, names=["D", "Exception", "B", "A", "C"])
    assert m.state_names() == ["D", "Exception", "B", "A", "C"]
    m.add(["A", "D"])
    assert m.time() == [1, 0, 0, 1, 0]
    assert m.active_states() == ["D", "A"]
    assert str(m) == "(D:1 A:1)"


def test_set_states() -> None:
    """Go TestSetStates: set_schema with a new state and relations; the machine works."""
    m = no_rels(["A", "C"])
    schema = {
        "A": am.State(multi=True),
        "B": am.State(remove=["C"]),
        "C": am.State(),
        "D": am.State(add=["E"]),
        "E": am.State(),
    }
    m.set_schema(schema, [*m.state_names(), "E"])
    assert m.state_names() == ["A", "B", "C", "D", "Exception", "E"]
    assert m.clock() == {"A": 1, "B": 0, "C": 1, "D": 0, "Exception": 0, "E": 0}
    assert m.schema["A"].multi
    assert m.set(["A", "B", "D"]) == EXECUTED
    assert m.active_states() == ["A", "B", "D", "E"]
    assert m.clock(["A", "C", "E"]) == {"A": 3, "C": 2, "E": 1}


def test_set_schema_errors() -> None:
    """Spec 10.7: set_schema needs more states; conflicts raise and keep the old schema."""
    m = no_rels(["A"])
    with pytest.raises(am.SchemaError):
        m.set_schema(NO_RELS)
    conflict = {**NO_RELS, "E": am.State(require=["A"], remove=["A"])}
    with pytest.raises(am.SchemaError):
        m.set_schema(conflict, [*m.state_names(), "E"])
    assert m.state_names() == ["A", "B", "C", "D", "Exception"]
    assert not m.is_err()
    with pytest.raises(am.SchemaError):
        m.set_schema({**NO_RELS, "E": am.State()}, ["A", "B", "E"])

    errors: list[BaseException] = []

    def b_state(e: am.Event) -> object:
        try:
            e.machine.set_schema({**NO_RELS, "E": am.State()})
        except RuntimeError as exc:
            errors.append(exc)
        return None

    m.bind_handlers(Recorder([], hooks={"B_state": b_state}))
    m.add("B")
    assert len(errors) == 1
    assert "E" not in m.state_names()
