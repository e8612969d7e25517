"""
Random cases in the conformance format (``tests/data/CONFORMANCE_FORMAT.md``).

A random case is recorded by running it, written as JSON and replayed by the
conformance harness (``tests/conformance.py``): it must replay exactly. Then the case
is split: the first part runs, the machine is exported, and the rest runs on a machine
restored from the export; it must replay like the original.

Import defines the machine's internal active order (state-name order, spec 10.6),
which shows in handler order and can decide ties in the resolver. So the restored
machine is compared with the original after the original imported its own export
(same internal order); and where the original's internal order already was the
state-name order, also with the uninterrupted recording.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, reject, strategies as st

import asyncmachine as am
from asyncmachine.testing import InvariantMonitor, check_invariants, schemas, watch
from conformance import Recorder, TxRecorder, compare, snapshot

STEP_LIMIT = 200  # transitions per step; the corpus drops cases beyond that


class Runaway(BaseException):
    """A step that never settles (ping-pong handler mutations, spec format 6)."""


class Guard(am.TracerNoOp):
    """Aborts a step after STEP_LIMIT transitions (a BaseException passes through)."""

    def __init__(self) -> None:
        self.count = 0

    def transition_end(self, tx: am.Transition) -> None:
        self.count += 1
        if self.count > STEP_LIMIT:
            raise Runaway


@st.composite
def raw_cases(draw: st.DrawFn) -> dict[str, Any]:
    """A case without ``init``/``expect``: schema, handlers and steps."""
    schema = draw(schemas(max_states=5, exception_refs=False))
    names = list(schema)
    pool = st.sampled_from(names)
    some = st.lists(pool, max_size=2, unique=True)
    non_auto = [n for n in names if not schema[n]["auto"]]
    panic = (
        draw(
            st.lists(
                st.tuples(
                    st.sampled_from(non_auto),
                    st.sampled_from(["enter", "exit", "state", "end"]),
                ).map(".".join),
                max_size=2,
                unique=True,
            )
        )
        if non_auto
        else []
    )
    ops = st.sampled_from(["add", "remove", "set"])
    step_ops = st.sampled_from(["add", "add", "add", "remove", "set"])  # mostly add
    muts = draw(
        st.dictionaries(
            pool,
            st.fixed_dictionaries({"op": ops, "states": some}),
            max_size=2,
        )
    )
    handlers = {
        "reject_enter": draw(some),
        "reject_exit": draw(some),
        "reject_self": draw(some),
        "reject_pair": [
            list(p) for p in draw(st.lists(st.tuples(pool, pool), max_size=2))
        ],
        "panic": panic,
        "state_mutations": muts,
    }
    steps = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "op": step_ops,
                    "states": st.lists(
                        st.sampled_from([*names, "Exception"]), max_size=3
                    ),
                }
            ),
            min_size=2,
            max_size=10,
        )
    )
    return {"id": "prop", "schema": schema, "handlers": handlers, "steps": steps}


def build(case: dict[str, Any]) -> tuple[am.Machine, Recorder, TxRecorder, Guard]:
    """The machine of *case*, set up as the conformance harness does it."""
    names = [*case["schema"], "Exception"]
    rec = Recorder(names, case["handlers"])
    txr = TxRecorder()
    guard = Guard()
    mach = am.Machine(
        case["schema"],
        handlers=rec,
        names=names,
        id=case["id"],
        tracers=[txr, guard, InvariantMonitor()],  # watched from the constructor on
    )
    rec.mach = mach
    return mach, rec, txr, guard


def step(
    mach: am.Machine, rec: Recorder, txr: TxRecorder, guard: Guard, s: dict[str, Any]
) -> dict[str, Any]:
    """Run one step; its snapshot in the corpus' format."""
    rec.calls.clear()
    txr.txs.clear()
    guard.count = 0
    res = getattr(mach, s["op"])(s["states"])
    return snapshot(mach, rec, txr, str(res))


def record(raw: dict[str, Any]) -> dict[str, Any]:
    """Run *raw* and fill in ``init`` and ``expect``; runaway steps are cut off."""
    try:
        mach, rec, txr, guard = build(raw)
    except Runaway:
        reject()  # the constructor never settles (its Exception retries an auto state)
    case = dict(raw)
    case["init"] = snapshot(mach, rec, txr, None)
    expect = []
    for i, s in enumerate(raw["steps"]):
        try:
            expect.append(step(mach, rec, txr, guard, s))
        except Runaway:
            case["steps"] = raw["steps"][:i]
            return record(case)
    case["expect"] = expect
    return case


@given(raw_cases())
def test_recorded_case_replays_through_the_harness(raw: dict[str, Any]) -> None:
    """A recorded random case, written as JSON, replays without a difference."""
    case = json.loads(json.dumps(record(raw)))
    assert len(case["expect"]) == len(case["steps"])
    assert compare(case) == []


@given(raw_cases(), st.data())
def test_case_replays_the_same_after_export_import(
    raw: dict[str, Any], data: st.DataObject
) -> None:
    """Steps after an export/import replay like the original machine's."""
    case = record(raw)
    steps = case["steps"]
    k = data.draw(
        st.sampled_from(range(min(1, len(steps)), len(steps) + 1)), label="split"
    )
    original, rec1, txr1, guard1 = build(case)
    monitor = watch(original)  # the one passed to the constructor
    for s in steps[:k]:
        step(original, rec1, txr1, guard1, s)
        check_invariants(original)
    canonical = monitor.active_order == original.active_states()
    exported = json.loads(json.dumps(original.export()))

    names = [*case["schema"], "Exception"]
    rec2 = Recorder(names, case["handlers"])
    txr2 = TxRecorder()
    guard2 = Guard()
    restored = am.Machine.from_export(
        exported, case["schema"], handlers=rec2, tracers=[txr2, guard2]
    )
    rec2.mach = restored
    assert restored.clock() == original.clock()
    assert restored.active_states() == original.active_states()
    original.import_(exported)  # now both have the import's internal order
    assert original.clock() == restored.clock()

    for i, s in enumerate(steps[k:], start=k):
        want = step(original, rec1, txr1, guard1, s)
        got = step(restored, rec2, txr2, guard2, s)
        assert got == want, f"step {i} {s}"
        if canonical:
            # the import changed nothing: the uninterrupted recording holds too
            assert got == case["expect"][i], f"step {i} {s} (vs the recording)"
