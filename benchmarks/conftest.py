"""
pytest glue for the benchmarks: collect ``bench_*.py``, print their summaries.

- ``bench_*.py`` files are collected (pytest's default pattern is ``test_*.py``).
- A bench module may define ``summary() -> str | None``: its text is printed in the
  terminal summary, e.g. a table of figures with ratios measured in this run.
- Without pytest-benchmark (the ``bench`` extra), or with ``-p no:benchmark``, a
  minimal ``benchmark`` fixture stands in (``pedantic`` and ``extra_info`` only), so
  ``pytest benchmarks/`` still runs every scenario.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


def pytest_collect_file(
    file_path: Path, parent: pytest.Collector
) -> pytest.Module | None:
    """Collect ``bench_*.py`` files (pytest's default pattern is ``test_*.py``)."""
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("bench_")
        and not parent.session.isinitpath(file_path)  # named on the command line
    ):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the ``summary()`` of every bench module that has something to say."""
    for name, module in sorted(sys.modules.items()):
        short = name.rpartition(".")[2]
        if not short.startswith("bench_"):
            continue
        summary = getattr(module, "summary", None)
        text = summary() if callable(summary) else None
        if text:
            terminalreporter.section(short)
            terminalreporter.write_line(text)


class _Fallback:
    """The part of pytest-benchmark's fixture the benchmarks use: run once, no stats."""

    def __init__(self) -> None:
        self.extra_info: dict[str, object] = {}

    def pedantic(self, target: Callable[[], T], *, rounds: int, iterations: int) -> T:
        result = target()
        for _ in range(rounds * iterations - 1):
            result = target()
        return result


class _FallbackPlugin:
    @pytest.fixture
    def benchmark(self) -> _Fallback:
        """Stands in for pytest-benchmark's fixture when that plugin is not active."""
        return _Fallback()


def pytest_configure(config: pytest.Config) -> None:
    """Provide the ``benchmark`` fixture if pytest-benchmark is not active."""
    if not config.pluginmanager.hasplugin("benchmark"):
        config.pluginmanager.register(_FallbackPlugin(), "benchmark-fallback")
