"""Dev sessions; run them through ``python3 run.py <command>`` (or ``nox -s``)."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PYPROJECT = ROOT / "pyproject.toml"
EXAMPLE_TIMEOUT = 120  # seconds, per example script

nox.options.reuse_venv = "yes"


def install(session: nox.Session, extras: str = "dev") -> None:
    """Install the project editable with ``extras``, once per venv and pyproject."""
    stamp = Path(session.virtualenv.location) / ".asyncmachine-installed"
    key = f"{extras}:{hashlib.sha256(PYPROJECT.read_bytes()).hexdigest()}"
    if stamp.is_file() and stamp.read_text() == key:
        return
    session.install("-e", f".[{extras}]")
    stamp.write_text(key)


@nox.session
def lint(session: nox.Session) -> None:
    """Run ruff's linter and formatter check."""
    install(session)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Run mypy --strict over the paths configured in pyproject.toml."""
    install(session)
    configured = tomllib.loads(PYPROJECT.read_text())["tool"]["mypy"]["files"]
    # mypy fails on a configured path that does not exist (yet): pass only real ones.
    paths = [str(p) for p in configured if (ROOT / p).exists()]
    session.run("mypy", *paths)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite with pytest (posargs go to pytest)."""
    install(session)
    session.run("pytest", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the demo: examples/tree/demo.py, else examples/quickstart.py."""
    install(session)
    for script in ("examples/tree/demo.py", "examples/quickstart.py"):
        if (ROOT / script).is_file():
            session.run("python", script, *session.posargs)
            return
    session.skip("no demo script in examples/ yet")


@nox.session
def examples(session: nox.Session) -> None:
    """Run every examples/*.py, each with a timeout."""
    install(session)
    scripts = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("examples/*.py"))
    if not scripts:
        session.skip("no examples/*.py yet")
    runner = (
        "import subprocess, sys; "
        "sys.exit(subprocess.run([sys.executable, sys.argv[1]], "
        "timeout=float(sys.argv[2])).returncode)"
    )
    for script in scripts:
        session.run("python", "-c", runner, script, str(EXAMPLE_TIMEOUT))


@nox.session(name="property")
def property_tests(session: nox.Session) -> None:
    """Run the property tests in tests/property with the long Hypothesis profile."""
    if not (ROOT / "tests" / "property").is_dir():
        session.skip("no tests/property yet")
    install(session)
    session.run(
        "pytest",
        "tests/property",
        "--timeout=0",  # 5000 examples per test can take minutes
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": "long"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks in benchmarks/ (run.py: table, docs/benchmarks.md, chart)."""
    if not (ROOT / "benchmarks" / "run.py").is_file():
        session.skip("no benchmarks/run.py yet")
    install(session, "dev,bench")
    # posargs go to run.py, e.g. `nox -s bench -- --quick`; the rpc and tree
    # suites (benchmarks/bench_*.py) are called from run.py when they exist.
    session.run(
        "python", "benchmarks/run.py", "--out", "docs/benchmarks.md", *session.posargs
    )
