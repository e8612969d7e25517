"""Relations and ordering: resolution (R1-R8), the 3.6 worked examples, Go SliceStable."""

from __future__ import annotations

import itertools
import random

import pytest
from core_helpers import (
    Recorder,
    capture_logs,
    log_text,
    machine,
    no_rels,
    record_all,
    track,
)

import asyncmachine as am
from asyncmachine._core._sort import go_stable_sort

EXECUTED = am.Result.EXECUTED
CANCELED = am.Result.CANCELED

# -- relation getters ------------------------------------------------------------------


def test_get_state_relations() -> None:
    """Go TestGetStateRelations: the relation kinds of A are [add, require]."""
    m = machine({"A": am.State(add=["B"], require=["B"], auto=True), "B": am.State()})
    assert m.relations_of("A") == ["add", "require"]
    assert m.relations_of("B") == []


def test_get_relations_between_states() -> None:
    """Go TestGetRelationsBetweenStates: the relations between A and B are [add]."""
    m = machine(
        {
            "A": am.State(add=["B"], require=["C"], auto=True),
            "B": am.State(),
            "C": am.State(),
        }
    )
    assert m.relations_between("A", "B") == ["add"]
    assert m.relations_between("A", "C") == ["require"]


def test_get_relations_between() -> None:
    """Go TestGetRelationsBetween: relation kinds per pair; unknown names raise."""
    m = no_rels(
        extra={
            "A": am.State(add=["B", "C"], after=["B"]),
            "B": am.State(remove=["C"], add=["A"]),
            "C": am.State(after=["D"]),
            "D": am.State(require=["A"]),
        }
    )
    assert m.relations_between("A", "B") == ["add", "after"]
    assert m.relations_between("B", "C") == ["remove"]
    assert m.relations_between("C", "D") == ["after"]
    assert m.relations_between("D", "A") == ["require"]
    with pytest.raises(am.StateUnknownError):
        m.relations_between("Unknown1", "A")
    with pytest.raises(am.StateUnknownError):
        m.relations_between("A", "Unknown1")


# -- remove ----------------------------------------------------------------------------


def test_remove_relation() -> None:
    """Go TestRemoveRelation: C removes the active D on add("C")."""
    m = no_rels(["D"], extra={"C": am.State(remove=["D"])})
    assert m.add("C") == EXECUTED
    assert m.active_states() == ["C"]


def test_remove_relation_simultaneous(caplog: pytest.LogCaptureFixture) -> None:
    """Go TestRemoveRelationSimultaneous: set(["C","D"]) with C(remove=[D]) cancels."""
    m = no_rels(["D"], extra={"C": am.State(remove=["D"])}, log_level=5)
    capture_logs(caplog)
    assert m.set(["C", "D"]) == CANCELED
    assert m.active_states() == ["D"]
    assert m.clock(["C", "D"]) == {"C": 0, "D": 1}
    text = log_text(caplog)
    assert "[rel:remove] D by C" in text
    assert "[cancel:reject] D" in text


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param([("set", "C")], [["C"]], id="set-deactivates-old"),
        pytest.param([("set", "C"), ("set", "D")], [["C"], ["D"]], id="set-both-ways"),
        pytest.param([("add", "C")], [["C"]], id="add-deactivates-old"),
        pytest.param([("add", "C"), ("add", "D")], [["C"], ["D"]], id="add-both-ways"),
    ],
)
def test_remove_relation_cross_blocking(
    steps: list[tuple[str, str]], expected: list[list[str]]
) -> None:
    """Go TestRemoveRelationCrossBlocking: with mutual remove the called state wins."""
    m = no_rels(["D"], extra={"C": am.State(remove=["D"]), "D": am.State(remove=["C"])})
    for (kind, state), active in zip(steps, expected, strict=True):
        res = m.set([state]) if kind == "set" else m.add(state)
        assert res == EXECUTED
        assert m.active_states() == active


# -- add / require ---------------------------------------------------------------------


def test_add_relation() -> None:
    """Go TestAddRelation: C(add=[D]) gives (C D); A(remove=[D]) then blocks D."""
    m = no_rels(extra={"A": am.State(remove=["D"]), "C": am.State(add=["D"])})
    m.set(["C"])
    assert m.active_states() == ["C", "D"]
    assert m.set(["A", "C"]) == EXECUTED
    assert m.active_states() == ["A", "C"]


def test_require_relation() -> None:
    """Go TestRequireRelation: set(["C","D"]) with C(require=[D]) activates both."""
    m = no_rels(["A"], extra={"C": am.State(require=["D"])})
    assert m.set(["C", "D"]) == EXECUTED
    assert m.active_states() == ["C", "D"]


def test_require_relation_when_required_isnt_active(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Go TestRequireRelationWhenRequiredIsntActive: set(["C","A"]) is canceled."""
    m = no_rels(["A"], extra={"C": am.State(require=["D"])}, log_level=5)
    capture_logs(caplog)
    assert m.set(["C", "A"]) == CANCELED
    assert m.active_states() == ["A"]
    assert m.tick("C") == 0
    text = log_text(caplog)
    assert "[reject] C(-D)" in text
    assert "[cancel:reject] C" in text


def test_remove_multi_implied() -> None:
    """Go TestRemoveMultiImplied: removing B, added by the active multi A, works."""
    m = no_rels(
        ["A", "B", "C"],
        extra={
            "A": am.State(multi=True, add=["B"], require=["C"]),
            "B": am.State(require=["C"]),
        },
    )
    assert m.active_states() == ["A", "B", "C"]
    assert m.remove("B") == EXECUTED
    assert m.active_states() == ["A", "C"]


def test_remove_follows_add_of_active_multi() -> None:
    """Spec R2 [GO]: a remove follows the add of active multi states (B comes back)."""
    m = machine(
        {"M": am.State(multi=True, add=["B"]), "B": am.State(), "C": am.State()}
    )
    m.add("M")
    m.remove("B")
    assert m.active_states() == ["M"]
    assert m.remove("C") == EXECUTED
    assert m.active_states() == ["B", "M"]
    assert m.tick("B") == 3


def test_active_non_multi_does_not_reimply_add() -> None:
    """Spec R2: re-adding an active non-multi A does not bring back a removed B."""
    m = machine({"A": am.State(add=["B"]), "B": am.State()})
    m.add("A")
    assert m.active_states() == ["A", "B"]
    m.remove("B")
    assert m.add("A") == EXECUTED
    assert m.active_states() == ["A"]


def test_regression_remove_cross_blocked_by_implied() -> None:
    """Go TestRegressionRemoveCrossBlockedByImplied: set(["Z"]) gives (Z B)."""
    m = machine(
        {
            "A": am.State(remove=["B"]),
            "B": am.State(remove=["A"]),
            "Z": am.State(add=["B"]),
        }
    )
    assert m.set(["Z"]) == EXECUTED
    assert m.active_states() == ["B", "Z"]


WET_DRY_WATER = {
    "Wet": am.State(require=["Water"]),
    "Dry": am.State(remove=["Wet"]),
    "Water": am.State(add=["Wet"], remove=["Dry"]),
}


def test_regression_implied_block_by_being_removed() -> None:
    """Go TestRegressionImpliedBlockByBeingRemoved: Wet/Dry/Water ends (Water Wet)."""
    m = machine(WET_DRY_WATER)
    m.set(["Dry"])
    m.set(["Water"])
    assert m.active_states() == ["Water", "Wet"]


# -- 3.6 worked examples ---------------------------------------------------------------


def test_example_3_6a_wet_dry_water() -> None:
    """Spec 3.6-a: the Wet/Dry/Water example gives the exact results, strings, calls."""
    m = machine(WET_DRY_WATER)
    rec = record_all(m)

    assert m.add("Dry") == EXECUTED
    assert m.string_all() == "(Dry:1) [Exception:0 Water:0 Wet:0]"

    rec.clear()
    assert m.add("Water") == EXECUTED
    assert m.string_all() == "(Water:1 Wet:1) [Dry:2 Exception:0]"
    assert rec.calls == [
        "Dry_exit",
        "Water_enter",
        "Wet_enter",
        "Dry_Water",
        "Dry_Wet",
        "any_enter",
        "Dry_end",
        "Water_state",
        "Wet_state",
        "any_state",
    ]

    rec.clear()
    assert m.add("Dry") == CANCELED
    assert rec.calls == []
    assert m.string_all() == "(Water:1 Wet:1) [Dry:2 Exception:0]"

    rec.clear()
    assert m.set(["Water"]) == EXECUTED
    assert m.string_all() == "(Water:1) [Dry:2 Exception:0 Wet:2]"
    assert rec.calls == [
        "Wet_exit",
        "Water_Water",
        "Wet_Water",
        "any_enter",
        "Wet_end",
        "any_state",
    ]
    # the active order after add("Water") was [Water, Wet]
    assert rec.events[0].transition.states_before == ("Water", "Wet")


def test_example_3_6b_cross_remove() -> None:
    """Spec 3.6-b: mutual remove with an implied state, and the called state wins."""
    m = machine(
        {
            "A": am.State(remove=["B"]),
            "B": am.State(remove=["A"]),
            "Z": am.State(add=["B"]),
        }
    )
    m.set(["Z"])
    assert str(m) == "(B:1 Z:1)"

    m = machine(
        {"C": am.State(remove=["D"]), "D": am.State(remove=["C"])}, initial=["D"]
    )
    assert m.add("C") == EXECUTED
    assert m.active_states() == ["C"]
    assert m.add("D") == EXECUTED
    assert m.active_states() == ["D"]

    m = machine({"C": am.State(remove=["D"]), "D": am.State()})
    assert m.set(["C", "D"]) == CANCELED
    assert m.active_states() == []


def test_example_3_6c_add_depth() -> None:
    """Spec 3.6-c: add is followed two levels, A->B->C but not D, order [C, A, B]."""
    m = machine(
        {
            "A": am.State(add=["B"]),
            "B": am.State(add=["C"]),
            "C": am.State(add=["D"]),
            "D": am.State(add=["E"]),
            "E": am.State(),
        }
    )
    rec = record_all(m)
    assert m.add("A") == EXECUTED
    assert m.active_states() == ["A", "B", "C"]
    assert rec.calls == [
        "C_enter",
        "A_enter",
        "B_enter",
        "any_enter",
        "C_state",
        "A_state",
        "B_state",
        "any_state",
    ]


def test_example_3_6d_require_order() -> None:
    """Spec 3.6-d: required states come first, and removing Net cascades."""
    m = machine(
        {
            "Net": am.State(),
            "Conn": am.State(require=["Net"]),
            "Auth": am.State(require=["Conn"]),
        }
    )
    rec = record_all(m)
    assert m.add(["Auth", "Conn", "Net"]) == EXECUTED
    assert rec.calls == [
        "Net_enter",
        "Conn_enter",
        "Auth_enter",
        "any_enter",
        "Net_state",
        "Conn_state",
        "Auth_state",
        "any_state",
    ]
    rec.clear()
    assert m.remove("Net") == EXECUTED
    assert rec.calls == [
        "Net_exit",
        "Conn_exit",
        "Auth_exit",
        "any_enter",
        "Net_end",
        "Conn_end",
        "Auth_end",
        "any_state",
    ]
    assert m.active_states() == []


def test_example_3_6e_cascading_remove() -> None:
    """Spec 3.6-e (Go TestInspect): removing C also deactivates A(auto, require C)."""
    m = machine({"A": am.State(auto=True, require=["C"]), "C": am.State()}, ["A", "C"])
    assert m.active_states() == ["A", "C"]
    assert m.remove("C") == EXECUTED
    assert m.clock(["A", "C"]) == {"A": 2, "C": 2}
    assert m.active_states() == []


# -- ordering --------------------------------------------------------------------------


def test_require_order() -> None:
    """Go TestRequireOrder: required states' handlers run first, any_* run twice."""
    schema = {
        "A": am.State(auto=True, require=["B", "C"]),
        "B": am.State(auto=True, require=["D"]),
        "C": am.State(auto=True),
        "D": am.State(auto=True),
        "Start": am.State(),
    }
    m = machine(schema)
    rec = track(m)
    assert m.add("Start") == EXECUTED
    assert m.active_states() == ["A", "B", "C", "D", "Start"]
    states = [c for c in rec.calls if c.endswith("_state") and c != "any_state"]
    assert states == ["D_state", "B_state", "C_state", "A_state"]
    counts = rec.counts()
    assert counts["any_enter"] == 2
    assert counts["any_state"] == 2
    assert all(n == 1 for name, n in counts.items() if not name.startswith("any_"))

    # sort_states of any permutation of A-D gives [D, B, C, A]
    for perm in itertools.permutations(["A", "B", "C", "D"]):
        m = machine(schema)
        rec = Recorder([f"{s}_enter" for s in "ABCD"])
        m.bind_handlers(rec)
        m.set(list(perm))
        assert rec.calls == ["D_enter", "B_enter", "C_enter", "A_enter"], perm


AFTER_EXTRA = {"C": am.State(after=["D"]), "A": am.State(after=["B"])}


def after_machine() -> am.Machine:
    """NoRels with AFTER_EXTRA and the active order [A, B], as in the Go tests.

    Go activates A and B before it adds the After relations; building the schema up
    front would sort them [B, A], so the state is restored with import_ (10.6), which
    keeps the exported order for the active list.
    """
    m = no_rels(extra=AFTER_EXTRA, id="after")
    m.import_(
        {
            "id": "after",
            "state_names": ["A", "B", "C", "D", "Exception"],
            "time": [1, 1, 0, 0, 0],
            "queue_tick": 1,
            "machine_tick": 0,
        }
    )
    return m


def test_after_relation_when_entering() -> None:
    """Go TestAfterRelationWhenEntering: C(after=[D]) enters D before C."""
    m = after_machine()
    rec = track(m)
    assert m.set(["C", "D"]) == EXECUTED
    assert m.active_states() == ["C", "D"]
    expected = ["D_enter", "C_enter", "A_D", "A_C"]
    assert [c for c in rec.calls if c in expected] == expected
    assert set(rec.counts().values()) == {1}


def test_after_relation_when_exiting() -> None:
    """Go TestAfterRelationWhenExiting: A(after=[B]) exits B before A."""
    m = after_machine()
    rec = track(m)
    m.set(["C", "D"])
    assert rec.calls == [
        "B_exit",
        "A_exit",
        "D_enter",
        "C_enter",
        "A_D",
        "A_C",
        "B_D",
        "B_C",
        "any_enter",
        "B_end",
        "A_end",
        "D_state",
        "C_state",
        "any_state",
    ]


def test_after_enforced_only_between_neighbours() -> None:
    """Spec 3.4 [GO]: after is enforced only between states that end up adjacent."""
    schema = {"A": am.State(after=["B"]), "B": am.State(), "X": am.State()}
    m = machine(schema)
    rec = Recorder(["A_enter", "B_enter", "X_enter"])
    m.bind_handlers(rec)
    m.set(["A", "X", "B"])
    assert rec.calls == ["A_enter", "X_enter", "B_enter"]

    m = machine(schema)
    rec = Recorder(["A_enter", "B_enter", "X_enter"])
    m.bind_handlers(rec)
    m.set(["A", "B", "X"])
    assert rec.calls == ["B_enter", "A_enter", "X_enter"]


def test_go_stable_sort_matches_reference() -> None:
    """Spec appendix A: go_stable_sort is a stable sort for a strict-order comparator."""
    rnd = random.Random(7)
    for n in [*range(45), 60, 64, 81, 90, 128, 200]:
        for _ in range(5):
            data = [(rnd.randrange(max(n // 3, 1)), i) for i in range(n)]
            expected = sorted(data, key=lambda x: x[0])
            got = list(data)
            go_stable_sort(got, lambda x, y: x[0] < y[0])
            assert got == expected, n


def test_after_ordering_more_than_20_states() -> None:
    """Spec R8b: with more than 20 states a strict After order is applied exactly."""
    names = [f"S{i:02d}" for i in range(30)]
    schema = {n: am.State(after=names[:i]) for i, n in enumerate(names)}
    m = machine(schema)
    rec = Recorder([f"{n}_enter" for n in names])
    m.bind_handlers(rec)
    rnd = random.Random(3)
    called = list(names)
    rnd.shuffle(called)
    assert m.set(called) == EXECUTED
    assert rec.calls == [f"{n}_enter" for n in names]
