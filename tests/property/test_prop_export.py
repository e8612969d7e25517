"""Export/import round trips keep the clock, the active states and the order."""

from __future__ import annotations

import json
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs
import pytest
from hypothesis import given, strategies as st
from prop_helpers import Case, cases

import asyncmachine as am
from asyncmachine.testing import (
    InvariantMonitor,
    apply_mutation,
    check_invariants,
    watch,
)


def ran(case: Case, names: list[str], *, restored: bool = False) -> am.Machine:
    """A machine of *case* (explicit order) after all its steps."""
    schema: dict[str, Any] = dict(case.schema)
    if restored:
        schema["MachineRestored"] = {}
    mach = am.Machine(schema, handlers=case.behaviour.build(), names=names, id="m")
    watch(mach)
    for step in case.steps:
        apply_mutation(mach, step)
    check_invariants(mach)
    return mach


@st.composite
def exported(draw: st.DrawFn) -> tuple[Case, list[str]]:
    case = draw(cases())
    names = list(draw(st.permutations([*case.schema, "Exception"])))
    return case, names


@given(exported(), st.sampled_from(["json", "msgpack"]))
def test_round_trip_restores_the_machine(
    drawn: tuple[Case, list[str]], codec: str
) -> None:
    """from_export(export()) reads the same, through JSON or msgpack."""
    case, names = drawn
    mach = ran(case, names)
    data = mach.export()
    assert data["state_names"] == names
    wire: dict[str, Any] = (
        json.loads(json.dumps(data))
        if codec == "json"
        else msgpack.unpackb(msgpack.packb(data))
    )
    monitor = InvariantMonitor()
    copy = am.Machine.from_export(
        wire, case.schema, handlers=case.behaviour.build(), tracers=[monitor]
    )
    assert copy.state_names() == names
    assert copy.clock() == mach.clock()
    assert copy.active_states() == mach.active_states()
    assert copy.string_all() == mach.string_all()
    assert copy.machine_tick() == mach.machine_tick() + 1
    # the queue tick is not restored (spec 10.6): it is the new machine's own
    fresh = am.Machine(case.schema, handlers=case.behaviour.build(), names=names)
    assert copy.queue_tick() == fresh.queue_tick()
    # the import sets the internal order (spec 10.6) and suspends require/remove
    assert monitor.active_order == copy.active_states()
    assert not monitor.require_valid
    assert not monitor.remove_valid
    check_invariants(copy)
    again = copy.export()
    assert again["time"] == data["time"]
    assert again["machine_tick"] == copy.machine_tick() == mach.machine_tick() + 1


@given(exported())
def test_restored_machine_replays_like_the_original(
    drawn: tuple[Case, list[str]],
) -> None:
    """
    Split a run: a machine restored from the export in the middle and the original
    (after importing its own export, so both have the import's internal order) run
    the rest with the same results, clocks and handler calls.
    """
    case, names = drawn
    half = len(case.steps) // 2
    h1 = case.behaviour.build()
    mach = am.Machine(case.schema, handlers=h1, names=names, id="m")
    for step in case.steps[:half]:
        apply_mutation(mach, step)
    data = json.loads(json.dumps(mach.export()))
    h2 = case.behaviour.build()
    # Machine.from_export(), in two steps: construction may run handlers (spec S9)
    copy = am.Machine(case.schema, handlers=h2, id="m", names=names)
    h2.raised, h2.mutated = h1.raised, h1.mutated  # the same budgets left
    copy.import_(data)
    mach.import_(data)
    watch(mach)
    watch(copy)
    assert copy.clock() == mach.clock()
    for step in case.steps[half:]:
        h1.calls.clear()
        h2.calls.clear()
        assert apply_mutation(mach, step) == apply_mutation(copy, step)
        assert copy.clock() == mach.clock()
        assert h2.calls == h1.calls
        check_invariants(mach)
        check_invariants(copy)


@given(exported())
def test_machine_restored_is_added_after_import(drawn: tuple[Case, list[str]]) -> None:
    """A MachineRestored state is added by import_() (spec S4, DEV-12)."""
    case, names = drawn
    names = [*names, "MachineRestored"]
    mach = ran(case, names, restored=True)
    assert mach.tick("MachineRestored") == 0  # nothing calls it
    data = mach.export()
    schema = {**case.schema, "MachineRestored": {}}
    copy = am.Machine.from_export(data, schema)
    assert copy.tick("MachineRestored") == 1
    assert copy.is_active("MachineRestored")
    check_invariants(copy)


@given(exported())
def test_import_into_another_id_fails(drawn: tuple[Case, list[str]]) -> None:
    """Export data only fits a machine with the same id."""
    case, names = drawn
    data = ran(case, names).export()
    other = am.Machine(case.schema, id="other", names=names)
    before = other.clock()
    with pytest.raises(am.ExportError, match="does not match"):
        other.import_(data)
    assert other.clock() == before
