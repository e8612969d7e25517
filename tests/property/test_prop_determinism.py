"""The same schema, handlers and mutations give the same run, every time."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings, strategies as st
from prop_helpers import Case, cases, run_case

SRC = Path(__file__).resolve().parents[2] / "src"

_RUNNER = """
import hashlib, json, sys
from asyncmachine.testing import HandlerBehaviour
from prop_helpers import Case, run_case

digest = hashlib.sha256()
for raw in json.load(sys.stdin):
    b = raw["behaviour"]
    behaviour = HandlerBehaviour(
        states=tuple(b["states"]),
        reject=tuple(b["reject"]),
        raises=tuple(b["raises"]),
        mutate=tuple((h, k, tuple(s)) for h, k, s in b["mutate"]),
        max_raises=b["max_raises"],
        max_mutations=b["max_mutations"],
        record=b["record"],
    )
    steps = tuple((k, tuple(s), a) for k, s, a in raw["steps"])
    run = run_case(Case(raw["schema"], behaviour, steps), check=False)
    out = [run.results, run.clocks, run.active, run.orders, run.calls]
    digest.update(json.dumps(out).encode())
print(digest.hexdigest())
"""


@given(cases())
def test_two_runs_are_identical(case: Case) -> None:
    """Results, clocks, active states, internal order and handler calls match."""
    first = run_case(case)
    second = run_case(case)
    assert first.results == second.results
    assert first.clocks == second.clocks
    assert first.active == second.active
    assert first.orders == second.orders
    assert first.calls == second.calls


@given(cases(), st.data())
def test_state_order_only_reorders(case: Case, data: st.DataObject) -> None:
    """An explicit state order changes tie-breaking, never the invariants."""
    names = data.draw(st.permutations([*case.schema, "Exception"]))
    first = run_case(case, names=list(names))
    second = run_case(case, names=list(names))
    assert first.clocks == second.clocks
    assert first.calls == second.calls


@settings(max_examples=1)
@given(st.lists(cases(max_steps=15), min_size=20, max_size=20))
def test_hash_seed_changes_nothing(batch: list[Case]) -> None:
    """The same cases in two interpreters with different hash seeds (spec S1)."""
    payload = json.dumps([dataclasses.asdict(c) for c in batch])
    digests = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(Path(__file__).parent)])
        proc = subprocess.run(
            [sys.executable, "-c", _RUNNER],
            input=payload,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        digests.add(proc.stdout.strip())
    assert len(digests) == 1
