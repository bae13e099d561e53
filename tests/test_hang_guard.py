"""The hang guard's backstop ends a run that pytest-timeout's signal could not end, and
says which test hung; it stands down while someone debugs. Not about a backend: the tests
it runs are plain functions, in a pytest of their own (a subprocess)."""

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

DEBUGGED_TEST = """
import threading

def test_debugged(request):
    # What pytest does when its pdb starts (`--pdb`, `breakpoint()`).
    request.config.hook.pytest_enter_pdb(config=request.config, pdb=None)
    threading.Event().wait(1.5)  # a debugging session: longer than the backstop's 1 s
"""


def run_pytest(tmp_path: Path, test: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_guarded.py").write_text(test)
    return subprocess.run(
        [
            sys.executable,
            *("-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "tests.hang_guard"),
            *("-o", "timeout=0.5", "test_guarded.py"),
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_a_test_that_outlives_its_timeout_ends_the_run_with_its_id(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, STUCK_TEST)
    assert result.returncode == 1
    assert "hang guard: test_guarded.py::test_stuck still runs 1 s after it started" in (
        result.stderr
    )
    assert "Stacks of all threads" in result.stderr
    assert "test_after" not in result.stdout + result.stderr  # the run ended there


def test_a_debugging_session_is_not_cut_short(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, DEBUGGED_TEST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "hang guard" not in result.stderr
