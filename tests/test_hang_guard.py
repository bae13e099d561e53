"""The hang guard's backstop ends a run that pytest-timeout's signal could not end, and
says which test hung. Not about a backend: the stuck test is a plain function."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STUCK_TEST = """
import threading

def test_stuck():
    never = threading.Event()
    while True:
        try:
            never.wait()
        except BaseException:  # swallows pytest-timeout's failure, as a dead event loop does
            pass

def test_after():
    pass
"""


def test_a_test_that_outlives_its_timeout_ends_the_run_with_its_id(tmp_path: Path) -> None:
    (tmp_path / "test_stuck.py").write_text(STUCK_TEST)
    result = subprocess.run(
        [
            sys.executable,
            *("-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "tests.hang_guard"),
            *("-o", "timeout=0.5", "test_stuck.py"),
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1
    assert "hang guard: test_stuck.py::test_stuck still runs 1 s after it started" in result.stderr
    assert "Stacks of all threads" in result.stderr
    assert "test_after" not in result.stdout + result.stderr  # the run ended there
