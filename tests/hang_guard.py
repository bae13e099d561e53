"""The hang guard's backstop: a test still running at twice its timeout ends the run.

pytest-timeout (its signal method) fails a test that outlives its timeout by raising from a
SIGALRM handler, wherever the main thread happens to be. On trio that is often inside the
event loop: anyio's test runner drives trio as a guest run whose ticks run on the main
thread, and an exception that leaves a tick kills the guest run. The next call into it (the
test's or a fixture's teardown) then waits on a queue nothing will fill again, and the run
hangs with no report: seen with a shielded loop that never yielded, where a 30 s timeout
let the run live past 250 s. A busy loop that catches everything defeats the signal too.

The backstop is a timer thread, as in pytest-timeout's thread method, that only fires when
the signal did not end the test: it prints the test's id and every thread's stack, then
exits the process with status 1, so CI fails at once and says where instead of idling until
its own limit. Like pytest-timeout, it stands down for good once someone debugs (pytest's
pdb, `breakpoint()`, or a debugger registered with `sys.monitoring`): a pdb session may
take longer than any timeout.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from collections.abc import Generator

import pytest

#: The backstop fires at this multiple of the test's timeout.
BACKSTOP_FACTOR = 2


def _timeout(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getoption("timeout", None) or item.config.getini("timeout") or 0)


_debugger_entered = False


def pytest_enter_pdb() -> None:
    """pytest's pdb started (`--pdb`, `breakpoint()`): no backstop from now on."""
    global _debugger_entered
    _debugger_entered = True


def _debugging() -> bool:
    monitoring = getattr(sys, "monitoring", None)  # Python 3.12+
    return _debugger_entered or (
        monitoring is not None and monitoring.get_tool(monitoring.DEBUGGER_ID) is not None
    )


def _end_the_run(item: pytest.Item, after: float) -> None:
    if _debugging():
        return
    capture = item.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=True)
    sys.stderr.write(
        f"\n+++ hang guard: {item.nodeid} still runs {after:g} s after it started, past its "
        "timeout; pytest-timeout's signal did not end it. Stacks of all threads:\n"
    )
    sys.stderr.flush()
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(1)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    """Arm the backstop around the whole test: setup, call and teardown, which is what
    pytest-timeout's timeout covers too.
    """
    timeout = _timeout(item)
    if timeout <= 0:
        return (yield)
    after = timeout * BACKSTOP_FACTOR
    timer = threading.Timer(after, _end_the_run, (item, after))
    timer.daemon = True
    timer.start()
    try:
        return (yield)
    finally:
        timer.cancel()
