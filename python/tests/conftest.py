"""Shared fixtures: a fresh store path, the CLI binary, and child-process helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# The test helpers (functions a spawned process must import) live beside the tests.
sys.path.insert(0, str(HERE))


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "job.redb"


def cli_path() -> Path:
    path = Path(os.environ.get("RESUMABLE_CLI", REPO / "target" / "release" / "resumable"))
    if not path.exists():
        pytest.fail(f"the CLI binary {path} is missing: run `cargo build --release` at the repo root (python/test.sh does)")
    return path


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the operator CLI; returns the completed process (text mode)."""
    proc = subprocess.run([str(cli_path()), *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"resumable {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def cli_json(*args: str) -> dict:
    return json.loads(cli(*args, "--json").stdout)


def run_child(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh Python process with the test dir on sys.path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, env=env)
