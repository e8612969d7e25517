"""
Replay of the recorded conformance cases (``tests/data/conformance_cases.jsonl``).

The cases come from the Go original (see ``tests/data/CONFORMANCE_FORMAT.md``). Each
case builds a machine with one handler object that has every handler method, replays
mutation steps and compares results, active states, clocks, handler calls and
transitions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncmachine as am

CASES_PATH = Path(__file__).parent / "data" / "conformance_cases.jsonl"


def load_cases(path: Path = CASES_PATH) -> list[dict[str, Any]]:
    """All cases of a JSONL file."""
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


class Recorder:
    """The conformance handler object: records every call, behaves as the case says."""

    def __init__(self, names: list[str], spec: dict[str, Any]) -> None:
        self.calls: list[str] = []
        self.mach: am.Machine | None = None
        rej_enter = set(spec.get("reject_enter", ()))
        rej_exit = set(spec.get("reject_exit", ()))
        rej_self = set(spec.get("reject_self", ()))
        rej_pair = {tuple(p) for p in spec.get("reject_pair", ())}
        panic = set(spec.get("panic", ()))
        muts: dict[str, dict[str, Any]] = spec.get("state_mutations", {})

        def make(
            call: str, reject: bool, then: Callable[[], None] | None = None
        ) -> Any:
            def handler(e: am.Event) -> bool | None:
                self.calls.append(call)
                if call in panic:
                    raise RuntimeError(f"panic in {call}")
                if then is not None:
                    then()
                return False if reject else None

            return handler

        def mutation(op: str, states: list[str]) -> Callable[[], None]:
            def run() -> None:
                assert self.mach is not None
                getattr(self.mach, op)(states)

            return run

        for x in names:
            setattr(self, f"{x}_enter", make(f"{x}.enter", x in rej_enter))
            setattr(self, f"{x}_exit", make(f"{x}.exit", x in rej_exit))
            m = muts.get(x)
            then = mutation(m["op"], m["states"]) if m else None
            setattr(self, f"{x}_state", make(f"{x}.state", False, then))
            setattr(self, f"{x}_end", make(f"{x}.end", False))
            setattr(self, f"{x}_{x}", make(f"{x}.self", x in rej_self))
            for y in names:
                if y != x:
                    setattr(self, f"{x}_{y}", make(f"{x}>{y}", (x, y) in rej_pair))
        self.any_enter = make("any.enter", False)
        self.any_state = make("any.state", False)


class TxRecorder(am.TracerNoOp):
    """Records finished transitions in the corpus' ``tx`` format."""

    def __init__(self) -> None:
        self.txs: list[dict[str, Any]] = []

    def transition_end(self, tx: am.Transition) -> None:
        self.txs.append(
            {
                "type": str(tx.type),
                "called": list(tx.called),
                "auto": tx.is_auto,
                "accepted": tx.accepted,
            }
        )


def snapshot(
    mach: am.Machine, rec: Recorder, txr: TxRecorder, result: str | None
) -> dict[str, Any]:
    """The observable outcome of a step, in the corpus' format."""
    out: dict[str, Any] = {
        "active": mach.active_states(),
        "clock": mach.clock(),
        "calls": list(rec.calls),
        "tx": list(txr.txs),
    }
    if result is not None:
        out["result"] = result
    return out


def replay(
    case: dict[str, Any],
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """
    Replay one case; yields ``(label, expected, actual)`` for init and every step.

    ``expected`` holds only the keys the corpus records for that point.
    """
    schema = case["schema"]
    names = [*schema, "Exception"]
    rec = Recorder(names, case["handlers"])
    txr = TxRecorder()
    mach = am.Machine(schema, handlers=rec, names=names, id=case["id"], tracers=[txr])
    rec.mach = mach
    init = case["init"]
    yield "init", init, snapshot(mach, rec, txr, None)
    for i, (step, exp) in enumerate(zip(case["steps"], case["expect"], strict=True)):
        rec.calls.clear()
        txr.txs.clear()
        res = getattr(mach, step["op"])(step["states"])
        assert mach.queue_len() == 0
        assert mach.transition is None
        actual = snapshot(mach, rec, txr, str(res))
        yield f"step {i} {step['op']} {step['states']}", exp, actual


def compare(case: dict[str, Any]) -> list[str]:
    """Every difference between the recording and the replay (empty when equal)."""
    diffs: list[str] = []
    for label, exp, actual in replay(case):
        diffs.extend(
            f"{case['id']} {label}: {key}\n  expected {exp[key]}\n"
            f"  actual   {actual[key]}"
            for key in ("result", "active", "clock", "calls", "tx")
            if key in exp and exp[key] != actual[key]
        )
        if diffs:
            break
    return diffs


def is_neutral(case: dict[str, Any]) -> bool:
    """True if the case's handlers only record (no rejection, panic or mutation)."""
    h = case["handlers"]
    keys = ("reject_enter", "reject_exit", "reject_self", "reject_pair", "panic")
    return not any(h.get(k) for k in keys) and not h.get("state_mutations")


def compare_unobserved(case: dict[str, Any]) -> list[str]:
    """
    Replay a neutral case with no handler bound (the machine's fast path) and
    compare results, active states and clocks with the recording.
    """
    schema = case["schema"]
    names = [*schema, "Exception"]
    mach = am.Machine(schema, names=names, id=case["id"])
    diffs: list[str] = []
    for i, (step, exp) in enumerate(zip(case["steps"], case["expect"], strict=True)):
        res = getattr(mach, step["op"])(step["states"])
        actual = {
            "result": str(res),
            "active": mach.active_states(),
            "clock": mach.clock(),
        }
        diffs.extend(
            f"{case['id']} step {i} {step['op']} {step['states']}: {key}\n"
            f"  expected {exp[key]}\n  actual   {actual[key]}"
            for key in ("result", "active", "clock")
            if exp[key] != actual[key]
        )
        if diffs:
            break
    return diffs
