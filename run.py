#!/usr/bin/env python3
"""Bootstrap the dev tooling and run a nox session; stdlib only.

Usage: python3 run.py [tests|demo|lint|typecheck|bench|examples] [-- NOX_POSARGS...]

Creates .venv/ with nox in it when missing, then runs nox from there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
EXE = ".exe" if os.name == "nt" else ""

COMMANDS: dict[str, list[str]] = {
    # lint and typecheck first, so that CI fails on them too.
    "tests": ["lint", "typecheck", "tests"],
    "demo": ["demo"],
    "lint": ["lint"],
    "typecheck": ["typecheck"],
    "bench": ["bench"],
    "examples": ["examples"],
}


def main(argv: list[str]) -> int:
    posargs: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, posargs = argv[:split], argv[split + 1 :]
    command = argv[0] if argv else "tests"
    if command not in COMMANDS or len(argv) > 1:
        print(__doc__, file=sys.stderr)
        return 2

    python = BIN / f"python{EXE}"
    nox = BIN / f"nox{EXE}"
    if not python.exists():
        print(f"run.py: creating {VENV}", file=sys.stderr)
        venv.create(VENV, with_pip=True)
    if not nox.exists():
        print("run.py: installing nox into .venv", file=sys.stderr)
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--upgrade", "pip", "nox"],
            check=True,
        )

    cmd = [str(nox), "-f", str(ROOT / "noxfile.py"), "--reuse-venv=yes"]
    cmd += ["-s", *COMMANDS[command]]
    if posargs:
        cmd += ["--", *posargs]
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(ROOT)
    if os.name == "posix":
        os.execv(cmd[0], cmd)  # nox's exit code becomes ours
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
