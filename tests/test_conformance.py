"""Replays all 1,056 recorded conformance cases of the Go original."""

from __future__ import annotations

from typing import Any

import pytest

from conformance import compare, compare_unobserved, is_neutral, load_cases

CASES = load_cases()


def test_corpus_is_complete() -> None:
    """The copied corpus holds every recorded case, hand-written ones included."""
    ids = [c["id"] for c in CASES]
    assert len(ids) == 1056
    assert len(set(ids)) == len(ids)
    assert sum(1 for i in ids if i.startswith("h")) == 56


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in CASES])
def test_case(case: dict[str, Any]) -> None:
    """Results, active states, clocks, handler calls and transitions match Go."""
    diffs = compare(case)
    assert not diffs, "\n".join(diffs)


NEUTRAL = [c for c in CASES if is_neutral(c) and not c["init"]["calls"]]


def test_neutral_cases_exist() -> None:
    """Enough cases need no handler behaviour to cover the unobserved fast path."""
    assert len(NEUTRAL) > 200


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in NEUTRAL])
def test_case_without_handlers(case: dict[str, Any]) -> None:
    """The same results and clocks with no handler bound (the fast path)."""
    diffs = compare_unobserved(case)
    assert not diffs, "\n".join(diffs)
