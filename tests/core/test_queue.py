"""The mutation queue (spec section 6): entry checks, de-duplication, queue ticks."""

from __future__ import annotations

from collections.abc import Callable

from core_helpers import Recorder, machine, no_rels, record_all

import asyncmachine as am

EXECUTED = am.Result.EXECUTED
CANCELED = am.Result.CANCELED
QUEUED = am.Result.QUEUED

Probe = Callable[[am.Event], dict[str, object]]


def run_in_a_state(m: am.Machine, probe: Probe) -> dict[str, object]:
    """Run *probe* inside A_state of ``add("A")`` and return what it recorded."""
    out: dict[str, object] = {}

    def a_state(e: am.Event) -> object:
        out.update(probe(e))
        return None

    m.bind_handlers(Recorder([], hooks={"A_state": a_state}))
    m.add("A")
    return out


# -- Q1 entry checks -------------------------------------------------------------------


def test_queue_limit() -> None:
    """Spec Q1.2: a full queue cancels add/remove/set/add_err with Exception carve-outs."""
    m = no_rels(queue_limit=2)

    def probe(e: am.Event) -> dict[str, object]:
        mach = e.machine
        r: dict[str, object] = {"fill": [mach.add("B"), mach.add("C")]}
        r["len"] = mach.queue_len()
        r["add"] = mach.add("D")
        r["set"] = mach.set(["D"])
        r["remove"] = mach.remove("B")
        r["add_err"] = mach.add_err(ValueError("full"))
        r["add_err_state"] = mach.add_err_state("D", ValueError("full"))
        r["remove_exc"] = mach.remove("Exception")
        r["ev_add_exc"] = mach.add("Exception", event=e)
        r["add_exc"] = mach.add(["Exception", "D"])
        r["len_after"] = mach.queue_len()
        return r

    r = run_in_a_state(m, probe)
    assert r["fill"] == [3, 4]
    assert r["len"] == 2
    for key in ("add", "set", "remove", "add_err", "add_err_state"):
        assert r[key] == CANCELED, key
    assert r["remove_exc"] == CANCELED  # Exception is not active
    assert r["ev_add_exc"] == CANCELED  # no carve-out for event= variants
    assert r["add_exc"] == 5  # one Exception can always get in
    assert r["len_after"] == 3
    assert m.err() is None
    assert m.active_states() == ["A", "B", "C", "D", "Exception"]


def test_queue_limit_remove_exception() -> None:
    """Spec Q1.2: with Exception active, a full queue still takes remove("Exception")."""
    m = no_rels(queue_limit=1)
    m.add_err(ValueError("e"))
    assert m.is_err()

    def probe(e: am.Event) -> dict[str, object]:
        mach = e.machine
        return {
            "tick": mach.queue_tick(),
            "fill": mach.add("B"),
            "add_exc": mach.add("Exception"),
            "ev_remove_exc": mach.remove("Exception", event=e),
            "remove_exc": mach.remove("Exception"),
        }

    r = run_in_a_state(m, probe)
    assert isinstance(r["tick"], int)
    assert r["fill"] == r["tick"] + 1
    assert r["add_exc"] == CANCELED
    assert r["ev_remove_exc"] == CANCELED
    assert r["remove_exc"] == r["tick"] + 2
    assert m.active_states() == ["A", "B"]


def test_queue_limit_counts_prepended() -> None:
    """Spec Q1.2: prepended items (checks) count against the queue limit."""
    m = no_rels(queue_limit=1)
    r = run_in_a_state(
        m, lambda e: {"check": e.machine.can_add("B"), "add": e.machine.add("C")}
    )
    assert r == {"check": QUEUED, "add": CANCELED}


def test_remove_shortcut() -> None:
    """Spec Q1.4: from a handler, removing inactive states with an empty queue is a no-op."""
    m = no_rels()
    rec = Recorder(["any_enter"])
    m.bind_handlers(rec)

    def probe(e: am.Event) -> dict[str, object]:
        res = e.machine.remove(["C", "D"])
        return {"res": res, "len": e.machine.queue_len()}

    qt = m.queue_tick()
    assert run_in_a_state(m, probe) == {"res": EXECUTED, "len": 0}
    assert len(rec.calls) == 1  # only add("A") ran a transition
    assert m.queue_tick() == qt + 1


def test_remove_outside_runs_transition() -> None:
    """Spec Q1.4 [GO]: from outside, removing an inactive state runs a no-op transition."""
    m = no_rels(["A"])
    rec = record_all(m)
    qt = m.queue_tick()
    assert m.remove("D") == EXECUTED
    assert rec.calls == ["any_enter", "any_state"]
    assert m.queue_tick() == qt + 1


def test_deduplication() -> None:
    """Spec Q1.5: a queued no-args mutation of the same type and set is skipped."""
    m = no_rels(extra={"M": am.State(multi=True)})

    def probe(e: am.Event) -> dict[str, object]:
        mach = e.machine
        return {
            "first": mach.add(["B", "C"]),
            "same_set": mach.add(["C", "B"]),
            "len1": mach.queue_len(),
            "other_type": mach.set(["B", "C"]),
            "subset": mach.add("B"),
            "with_args": mach.add(["B", "C"], {"x": 1}),
            "with_args2": mach.add(["B", "C"], {"x": 1}),
            "no_args_vs_args": mach.add("D", {"y": 1}),
            "no_args": mach.add("D"),
            "multi": mach.add("M"),
            "multi2": mach.add("M"),
            "len2": mach.queue_len(),
        }

    r = run_in_a_state(m, probe)
    assert r["first"] == 3
    assert r["same_set"] == EXECUTED
    assert r["len1"] == 1
    assert r["other_type"] == 4
    assert r["subset"] == 5
    assert r["with_args"] == 6
    assert r["with_args2"] == 7
    assert r["no_args_vs_args"] == 8
    assert r["no_args"] == 9
    assert r["multi"] == 10
    assert r["multi2"] == 11
    assert r["len2"] == 9


def test_deduplication_ignores_checks() -> None:
    """Spec Q1.5: queued checks are not used for de-duplication."""
    m = no_rels()

    def probe(e: am.Event) -> dict[str, object]:
        return {"check": e.machine.can_add("B"), "add": e.machine.add("B")}

    assert run_in_a_state(m, probe) == {"check": QUEUED, "add": 3}
    assert m.is_active("B")


def test_deduplication_counts_auto() -> None:
    """Spec Q1.5: an auto mutation sitting in the queue counts for de-duplication."""
    m = machine({"T": am.State(), "X": am.State(auto=True)})
    seen: list[tuple[am.Result, int]] = []

    class Tracer(am.TracerNoOp):
        def mutation_queued(self, mach: am.Machine, mutation: am.Mutation) -> None:
            if mutation.is_auto:
                seen.append((mach.add("X"), mach.queue_len()))

    m.add_tracer(Tracer())
    m.add("T")
    assert seen == [(EXECUTED, 1)]
    assert m.active_states() == ["T", "X"]


# -- Q2 results and queue ticks --------------------------------------------------------


def test_queue() -> None:
    """Go TestQueue: an add("C") inside B_enter returns queue tick 4; ends (B C)."""
    m = no_rels()
    assert m.set(["A"]) == EXECUTED
    assert m.queue_tick() == 2
    results: list[am.Result] = []
    ticks: list[int] = []

    def b_enter(e: am.Event) -> object:
        ticks.append(e.machine.queue_tick())
        results.append(e.machine.add("C"))
        return True

    m.bind_handlers(Recorder([], hooks={"B_enter": b_enter}))
    assert m.set(["B"]) == EXECUTED
    assert ticks == [3]
    assert results == [4]
    assert results[0].is_queued
    assert str(results[0]) == "queued"
    assert m.active_states() == ["B", "C"]
    assert m.queue_tick() == 4


def test_queue_example_q6() -> None:
    """Spec Q6: the results of mutations made inside A_state, exactly."""
    m = no_rels()

    def probe(e: am.Event) -> dict[str, object]:
        mach = e.machine
        res = [
            mach.add("B"),
            mach.add("B"),
            mach.add("C", {"x": 1}),
            mach.add("C", {"x": 1}),
            mach.remove("D"),
            mach.remove("B"),
            mach.set(["A"]),
            mach.set(["A"]),
        ]
        return {"res": res, "len": mach.queue_len(), "tick": mach.queue_tick()}

    r = run_in_a_state(m, probe)
    assert r["res"] == [3, EXECUTED, 4, 5, 6, 7, 8, EXECUTED]
    assert r["len"] == 6
    assert r["tick"] == 2
    assert m.string_all() == "(A:1) [B:2 C:2 D:0 Exception:0]"
    assert m.queue_tick() == 8


def test_queue_tick_prepended_items_do_not_count() -> None:
    """Spec C6: checks, auto mutations and the Exception after a handler error take no tick."""
    m = machine({"A": am.State(), "B": am.State(), "X": am.State(auto=True)})
    assert m.queue_tick() == 1
    m.can_add("A")
    assert m.queue_tick() == 1
    m.add("A")  # + auto X
    assert m.is_active("X")
    assert m.queue_tick() == 2
    m.bind_handlers(Recorder([], raises={"B_state": RuntimeError("b")}))
    m.add("B")  # + Exception + auto
    assert m.is_err()
    assert m.queue_tick() == 3


def test_prepend_most_recent_first() -> None:
    """Spec Q5: among several prepended items, the most recent runs first."""
    m = no_rels()
    rec = Recorder(["B_enter", "C_enter", "D_enter"])
    m.bind_handlers(rec)

    def probe(e: am.Event) -> dict[str, object]:
        mach = e.machine
        return {"r": [mach.add("D"), mach.can_add("B"), mach.can_add("C")]}

    assert run_in_a_state(m, probe) == {"r": [3, QUEUED, QUEUED]}
    assert rec.calls == ["C_enter", "B_enter", "D_enter"]
    assert [ev.is_check for ev in rec.events] == [True, True, False]


def test_nested_runs_after_canceled() -> None:
    """Spec Q4: the caller gets its own result; nested mutations run even if canceled."""
    m = no_rels()

    def a_enter(e: am.Event) -> object:
        e.machine.add("B")
        return False

    m.bind_handlers(Recorder([], hooks={"A_enter": a_enter}))
    assert m.add("A") == CANCELED
    assert m.active_states() == ["B"]
    assert m.transition is None
    assert m.queue_len() == 0


def test_transition_during_drain() -> None:
    """Spec Q3: mach.transition is the current one in handlers and None afterwards."""
    m = no_rels()
    r = run_in_a_state(
        m,
        lambda e: {"same": e.machine.transition is e.transition},
    )
    assert r == {"same": True}
    assert m.transition is None


def test_queue_checkable() -> None:
    """Go TestQueueCheckable: inspect the queue from A_state."""
    m = no_rels()

    def probe(e: am.Event) -> dict[str, object]:
        mach = e.machine
        mach.add("B")
        mach.add("C")
        mach.add("D")
        return {
            "len": mach.queue_len(),
            "c_index": mach.is_queued("add", ["C"]),
            "c_will_be": mach.will_be("C"),
            "a_index": mach.is_queued("add", ["A"]),
            "a_will_be": mach.will_be("A"),
            "a_removed": mach.will_be_removed("A"),
            "types": [str(mut.type) for mut in mach.queue()],
        }

    r = run_in_a_state(m, probe)
    assert r == {
        "len": 3,
        "c_index": 1,
        "c_will_be": True,
        "a_index": None,
        "a_will_be": False,
        "a_removed": False,
        "types": ["add", "add", "add"],
    }
    assert not m.is_err()


def test_nested_mutation() -> None:
    """Go TestNestedMutation: identical nested adds and removes are de-duplicated."""
    m = no_rels(["B"])

    def probe(e: am.Event) -> dict[str, object]:
        mach = e.machine
        mach.add("B")
        mach.add("B")
        mach.add("B")
        len1 = mach.queue_len()
        mach.remove("B")
        len2 = mach.queue_len()
        mach.remove("B")
        return {
            "lens": [len1, len2, mach.queue_len()],
            "removed": mach.will_be_removed("B"),
        }

    r = run_in_a_state(m, probe)
    assert r == {"lens": [1, 2, 2], "removed": True}
    assert m.active_states() == ["A"]


def test_ev_mutations() -> None:
    """Go TestEvMutations: event= records the source machine, transition and time."""
    m = no_rels(["D"], id="ev-mach")
    sources: dict[str, object] = {}

    def a_state(e: am.Event) -> object:
        sources["a_tx"] = e.transition_id
        sources["a_time_sum"] = sum(e.transition.time_before)
        e.machine.add("B", e.args, event=e)
        e.machine.remove("A", event=e)
        return None

    def b_state(e: am.Event) -> object:
        sources["b"] = e.mutation.source
        sources["b_args"] = e.args
        return None

    def c_state(e: am.Event) -> object:
        sources["c"] = e.mutation.source
        return None

    hooks = {"A_state": a_state, "B_state": b_state, "C_state": c_state}
    m.bind_handlers(Recorder([], hooks=hooks))
    m.add("A", {"k": "v"})
    assert sources["b"] == ("ev-mach", sources["a_tx"], sources["a_time_sum"])
    assert sources["a_time_sum"] == 1
    assert sources["b_args"] == {"k": "v"}
    assert m.active_states() == ["B", "D"]
    m.add("C")
    assert sources["c"] is None
