"""The public surface: exports, docstrings, and the purity of the core."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import pytest

import asyncmachine as am

SRC = Path(am.__file__).parent


def test_all_names_exist_and_are_unique() -> None:
    """Every name in ``__all__`` is importable and listed once."""
    assert len(set(am.__all__)) == len(am.__all__)
    for name in am.__all__:
        assert hasattr(am, name), name


def test_api_md_names_are_exported() -> None:
    """The core names fixed by api.md are reachable from ``asyncmachine``."""
    for name in (
        "Machine",
        "State",
        "Result",
        "StateUnknownError",
        "SchemaError",
        "AsyncMachineError",
        "ExceptionHandler",
        "TracerNoOp",
    ):
        assert name in am.__all__


def test_error_hierarchy() -> None:
    """Errors share one root and inherit the builtin they resemble."""
    assert issubclass(am.StateUnknownError, am.AsyncMachineError)
    assert issubclass(am.StateUnknownError, KeyError)
    assert issubclass(am.SchemaError, am.AsyncMachineError)
    assert issubclass(am.SchemaError, ValueError)
    assert issubclass(am.ExportError, ValueError)
    assert issubclass(am.HandlerTimeoutError, TimeoutError)


def _public_members(obj: type) -> list[tuple[str, object]]:
    return [
        (name, member)
        for name, member in vars(obj).items()
        if not name.startswith("_")
        and (callable(member) or isinstance(member, property))
    ]


@pytest.mark.parametrize("name", [n for n in am.__all__ if n[0].isupper()])
def test_public_classes_are_documented(name: str) -> None:
    """Public classes and their public methods carry docstrings."""
    obj = getattr(am, name)
    if not inspect.isclass(obj):
        return
    assert inspect.getdoc(obj), name
    for member_name, member in _public_members(obj):
        assert inspect.getdoc(member), f"{name}.{member_name}"


def test_public_functions_are_documented() -> None:
    """Public module-level functions carry docstrings."""
    for name in am.__all__:
        obj = getattr(am, name)
        if inspect.isfunction(obj):
            assert inspect.getdoc(obj), name


def test_py_typed_is_shipped() -> None:
    """The package is marked as typed (PEP 561)."""
    assert (SRC / "py.typed").is_file()


def test_core_imports_only_the_standard_library() -> None:
    """``_core`` is pure: it imports the stdlib and its own package only."""
    stdlib = sys.stdlib_module_names
    for path in (SRC / "_core").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in stdlib or root == "__future__", (path.name, root)


def test_machine_needs_no_event_loop() -> None:
    """Creating and mutating a machine works without any running loop."""
    mach = am.Machine({"A": {}, "B": am.State(require=["A"])})
    assert mach.add(["A", "B"]) == am.Result.EXECUTED
    assert mach.active_states() == ["A", "B"]


def test_lazy_subpackages_fail_clearly() -> None:
    """Unknown attributes raise AttributeError, not something obscure."""
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        am.nope  # noqa: B018 - the attribute access is the test
