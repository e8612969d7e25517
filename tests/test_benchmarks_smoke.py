"""
Smoke pass over the benchmark scenarios (``benchmarks/scenarios.py``, ``peers.py``).

Every asyncmachine scenario runs a few ops and checks its final state; the check
must also notice one op too few. Nothing is timed: CI never asserts on speed (the
figures come from ``nox -s bench``). The peer libraries are not in the ``dev``
extra, so peers run only if they import; the raw Python floor always does.

``benchmarks/`` is not an installed package: it is imported from its path.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
#: Ops per scenario: enough to run every op path a few times, fast enough for CI.
N_OPS = 25
#: Ops per peer scenario (some peers need ~1 ms per transition).
N_PEER_OPS = 5


def _import(name: str) -> ModuleType:
    """Import ``benchmarks.<name>`` from its path, whether or not it is a package."""
    if "benchmarks" not in sys.modules:
        package = ModuleType("benchmarks")
        package.__path__ = [str(BENCHMARKS)]
        sys.modules["benchmarks"] = package
    return importlib.import_module(f"benchmarks.{name}")


scenarios = _import("scenarios")
ALL: list[Any] = list(scenarios.ALL)


def test_every_scenario_is_listed() -> None:
    ids = [s.id for s in ALL]
    want = ["B1", "B2", "B3", "B4", "B5", "B6"]
    want += ["S1", "S1cb", "S2", "S3", "S3cb", "S4", "S4p", "C1"]
    assert ids == want


@pytest.mark.parametrize("scenario", ALL, ids=[s.id for s in ALL])
def test_scenario_checks_its_final_state(scenario: Any) -> None:
    bench = scenario.make()
    scenarios.run_ops(bench, N_OPS)
    bench.check(N_OPS)
    with pytest.raises(scenarios.CheckError):
        bench.check(N_OPS + 1)  # one op short: a skipped op must not pass


def test_check_fails_on_a_broken_op() -> None:
    """A fast path that does nothing is caught by the final-state check."""
    bench = scenarios.b1_toggle()
    bench.op = lambda: None
    scenarios.run_ops(bench, N_OPS)
    with pytest.raises(scenarios.CheckError, match="B1"):
        bench.check(N_OPS)


def test_peers_that_import_run() -> None:
    peers_mod = _import("peers")
    peers, skipped = peers_mod.load_peers()
    assert peers[0].library == "raw"
    assert all("not installed" in s for s in skipped)
    for peer in peers:
        for sid, make in peer.scenarios.items():
            bench = make()
            scenarios.run_ops(bench, N_PEER_OPS)
            bench.check(N_PEER_OPS)
            assert bench.units >= 1, (peer.label, sid)
