"""Shared fixtures: the repository root as the working directory, and the `convc` binary
the Python results are compared with."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _binary() -> Path:
    """`$CONVC_BIN`, else the release build, else the debug build of the repository."""
    env = os.environ.get("CONVC_BIN")
    if env:
        return Path(env)
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / "convc"
        if p.exists():
            return p
    found = shutil.which("convc")
    if found:
        return Path(found)
    pytest.skip("no convc binary: run `cargo build --release` (or set CONVC_BIN)")


@pytest.fixture(autouse=True)
def at_repo(monkeypatch):
    """Every test runs in the repository root, so relative paths read as in the README."""
    monkeypatch.chdir(REPO)


@pytest.fixture(scope="session")
def cli():
    """Runs the `convc` binary with these arguments in the repository root; returns the
    completed process (stdout, stderr as text)."""
    exe = _binary()

    def run(*args, check=True):
        p = subprocess.run(
            [str(exe), *map(str, args)], cwd=REPO, capture_output=True, text=True
        )
        if check and p.returncode != 0:
            raise AssertionError(f"convc {' '.join(map(str, args))} failed:\n{p.stderr}")
        return p

    return run
