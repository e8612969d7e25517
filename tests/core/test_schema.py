"""Schema: the State value object, validation, normalization (N1-N7) and topology."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from core_helpers import Recorder, machine

import asyncmachine as am

# -- State -----------------------------------------------------------------------------


def test_state_is_frozen() -> None:
    """api.md: State is a frozen value object."""
    st = am.State(require=["A"])
    with pytest.raises(AttributeError):
        st.auto = True
    with pytest.raises(AttributeError):
        del st.require
    assert st.require == ("A",)
    assert st == am.State(require=("A",))
    assert hash(st) == hash(am.State(require=["A"]))
    assert st != am.State(require=["B"])


def test_state_sets_stored_sorted() -> None:
    """Spec S1: set and frozenset arguments are stored as sorted tuples."""
    st = am.State(
        require={"C", "A", "B"},
        add=frozenset({"Z", "Y"}),
        remove={"Q", "P"},
        after={"N", "M"},
        tags={"t2", "t1"},
    )
    assert st.require == ("A", "B", "C")
    assert st.add == ("Y", "Z")
    assert st.remove == ("P", "Q")
    assert st.after == ("M", "N")
    assert st.tags == ("t1", "t2")
    # lists keep their order
    assert am.State(add=["C", "A", "B"]).add == ("C", "A", "B")


def test_state_dedupe() -> None:
    """Spec S2: relation lists are de-duplicated, the first occurrence kept."""
    st = am.State(add=["B", "A", "B"], require=("C", "C"), remove=["D", "E", "D"])
    assert st.add == ("B", "A")
    assert st.require == ("C",)
    assert st.remove == ("D", "E")


def test_state_single_str() -> None:
    """api.md: a single name is one relation entry."""
    assert am.State(require="Water").require == ("Water",)


def test_mapping_form() -> None:
    """api.md: the mapping form uses the State keys."""
    m = am.Machine({"A": {"require": ["B"], "auto": True}, "B": {}})
    assert m.schema["A"] == am.State(require=["B"], auto=True)
    assert m.schema["B"] == am.State()
    assert isinstance(m.schema["A"], am.State)
    m.add("B")
    assert m.active_states() == ["A", "B"]


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param({"A": {"requires": ["B"]}, "B": {}}, id="unknown-key"),
        pytest.param({"Any": am.State()}, id="any"),
        pytest.param({"foo": am.State()}, id="lowercase"),
        pytest.param({"A_B": am.State()}, id="underscore"),
        pytest.param({"": am.State()}, id="empty"),
        pytest.param({"A": 5}, id="int-value"),
        pytest.param({"A": "B"}, id="str-value"),
        pytest.param({"A": None}, id="none-value"),
        pytest.param({"A": ["B"]}, id="list-value"),
    ],
)
def test_schema_errors(schema: Mapping[str, object]) -> None:
    """api.md: invalid schemas raise SchemaError, a ValueError and AsyncMachineError."""
    with pytest.raises(am.SchemaError) as info:
        am.Machine(schema)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, am.AsyncMachineError)


def test_schema_error_bad_relation_values() -> None:
    """api.md: relation entries must be state names."""
    with pytest.raises(am.SchemaError):
        am.Machine({"A": {"require": [1]}})
    with pytest.raises(am.SchemaError):
        am.State(auto="yes")  # type: ignore[arg-type]


def test_schema_error_is_value_error() -> None:
    """api.md: SchemaError is both a ValueError and an AsyncMachineError."""
    assert issubclass(am.SchemaError, ValueError)
    assert issubclass(am.SchemaError, am.AsyncMachineError)
    assert issubclass(am.StateUnknownError, KeyError)
    assert issubclass(am.StateUnknownError, am.AsyncMachineError)


# -- S3 / normalization ----------------------------------------------------------------


def test_implicit_exception() -> None:
    """Spec S3: a missing Exception is added as multi with no relations."""
    m = machine({"A": am.State()})
    assert m.schema["Exception"] == am.State(multi=True)
    user = am.State(require=["A"])
    m = machine({"A": am.State(), "Exception": user})
    assert m.schema["Exception"] == user


def test_normalization_n1_self_remove() -> None:
    """Spec N1: a state's own name is dropped from remove."""
    m = machine({"A": am.State(remove=["A", "B"]), "B": am.State()})
    assert m.schema["A"].remove == ("B",)
    m.add("A")
    m.add("A")
    assert m.is_active("A")


def test_normalization_n2_add_beats_remove() -> None:
    """Spec N2: add beats remove inside one state; unknown add entries are dropped."""
    m = machine(
        {
            "A": am.State(add=["B", "Ghost"], remove=["B", "C"]),
            "B": am.State(),
            "C": am.State(),
        }
    )
    assert m.schema["A"].add == ("B",)
    assert m.schema["A"].remove == ("C",)
    m.add("C")
    m.add("A")
    assert m.active_states() == ["A", "B"]


def test_normalization_n3_self_after() -> None:
    """Spec N3: a state's own name is dropped from after."""
    m = machine({"A": am.State(after=["A", "B"]), "B": am.State()})
    assert m.schema["A"].after == ("B",)


def test_normalization_n4_conflict_lists_kept() -> None:
    """Spec N4/S9: a require-remove conflict leaves the lists as they are."""
    m = machine({"A": am.State(require=["B"], remove=["B"]), "B": am.State()})
    assert m.schema["A"].require == ("B",)
    assert m.schema["A"].remove == ("B",)
    assert m.is_err()


def test_normalization_n5_unknown_remove_after() -> None:
    """Spec N5: unknown names are dropped from remove and after."""
    m = machine(
        {"A": am.State(remove=["Ghost", "B"], after=["B", "Ghost"]), "B": am.State()}
    )
    assert m.schema["A"].remove == ("B",)
    assert m.schema["A"].after == ("B",)


def test_normalization_n6_require_not_cleaned() -> None:
    """Spec N6: require is never cleaned; a state needing an unknown name never activates."""
    m = machine({"A": am.State(require=["Ghost"]), "B": am.State()})
    assert m.schema["A"].require == ("Ghost",)
    assert not m.is_err()
    assert m.add("A") == am.Result.CANCELED
    assert m.not_active("A")


def test_dev16_relations_to_implicit_exception() -> None:
    """Spec DEV-16: relations naming an implicit Exception are kept."""
    m = machine(
        {
            "B": am.State(remove=["Exception"]),
            "C": am.State(add=["Exception"], after=["Exception"]),
        }
    )
    assert m.schema["B"].remove == ("Exception",)
    assert m.schema["C"].add == ("Exception",)
    assert m.schema["C"].after == ("Exception",)
    assert "    |Remove   Exception\n" in m.inspect(["B"])
    m.add_err(ValueError("x"))
    assert m.is_err()
    m.add("B")
    assert not m.is_err()
    m.set(["C"])
    assert m.active_states() == ["C", "Exception"]


def test_schema_is_read_only() -> None:
    """api.md: mach.schema is a read-only mapping of State objects."""
    m = machine({"A": am.State()})
    with pytest.raises(TypeError):
        m.schema["A"] = am.State(auto=True)  # type: ignore[index]
    assert set(m.schema) == {"A", "Exception"}


# -- S10 topology ----------------------------------------------------------------------


def enter_order(schema: Mapping[str, am.State], called: list[str]) -> list[str]:
    """The X_enter order of add(called) on a fresh machine."""
    m = machine(schema)
    rec = Recorder([f"{s}_enter" for s in schema])
    m.bind_handlers(rec)
    m.add(called)
    return [c.removesuffix("_enter") for c in rec.calls]


def test_require_topology_orders() -> None:
    """Spec S10/R8a: required states come before the states requiring them."""
    schema = {"Conn": am.State(require=["Net"]), "Net": am.State(), "X": am.State()}
    assert enter_order(schema, ["Conn", "X", "Net"]) == ["X", "Net", "Conn"]


def test_require_cycle_disables_ordering() -> None:
    """Spec S10/N7: a Require cycle (a self-require too) switches Require-ordering off."""
    base = {"Conn": am.State(require=["Net"]), "Net": am.State()}
    assert enter_order(base, ["Conn", "Net"]) == ["Net", "Conn"]
    cyclic = {
        **base,
        "X": am.State(require=["Y"]),
        "Y": am.State(require=["X"]),
    }
    assert enter_order(cyclic, ["Conn", "Net"]) == ["Conn", "Net"]
    self_req = {**base, "S": am.State(require=["S"])}
    assert enter_order(self_req, ["Conn", "Net"]) == ["Conn", "Net"]
    # a self-require is harmless in resolution
    m = machine(self_req)
    m.add("S")
    assert m.is_active("S")


def test_topology_uses_explicit_order() -> None:
    """Spec S8/S10/DEV-1: the topology visits sources in state_names order."""
    schema = {
        "A": am.State(require=["B"]),
        "B": am.State(),
        "C": am.State(require=["D"]),
        "D": am.State(),
    }
    called = ["A", "C", "B", "D"]
    m = machine(schema)
    rec = Recorder([f"{s}_enter" for s in schema])
    m.bind_handlers(rec)
    m.add(called)
    assert rec.calls == ["B_enter", "A_enter", "D_enter", "C_enter"]

    m = machine(schema, names=["C", "D", "A", "B", "Exception"])
    rec = Recorder([f"{s}_enter" for s in schema])
    m.bind_handlers(rec)
    m.add(called)
    assert rec.calls == ["D_enter", "C_enter", "B_enter", "A_enter"]
