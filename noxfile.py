"""Sessions: `nox` runs tests on every Python this machine has (each on both backends, with
branch coverage held at 100 %), the suite once more on the pure-Python fallback, its
asyncio tests once more on uvloop, lint, typecheck, the docs build, the Autobahn selection
and a benchmark smoke run. `nox -s demo` runs the demo, `nox -s bench` the benchmark (its
tables and chart go to the docs)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = [
    "tests",
    "coverage",
    "tests_pure_python",
    "tests_uvloop",
    "lint",
    "typecheck",
    "docs",
    "autobahn",
    "bench_smoke",
]
nox.options.error_on_missing_interpreters = os.environ.get("CI") == "true"

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
ROOT = Path(__file__).parent


def pyenv_versions() -> None:
    """Make pyenv's `python3.X` shims answer: they do only for the versions named in
    PYENV_VERSION, so add every installed 3.10-3.13 to what is already there."""
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    versions = Path(root) / "versions"
    if not versions.is_dir():
        return
    active = [name for name in os.environ.get("PYENV_VERSION", "").split(":") if name]
    for path in sorted(versions.iterdir()):
        if any(path.name.startswith(f"{v}.") for v in PYTHONS) and path.name not in active:
            active.append(path.name)
    os.environ["PYENV_VERSION"] = ":".join(active)


pyenv_versions()


def install_group(session: nox.Session, group: str) -> None:
    """Install the project (its C accelerator must build here) and a PEP 735 group."""
    session.install("--upgrade", "pip>=25.1")
    session.install("-e", ".", "--group", group, env={"ANYWS_REQUIRE_SPEEDUPS": "1"})


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite on asyncio and trio, measuring branch coverage."""
    install_group(session, "test")
    session.run(
        "coverage",
        "run",
        "-m",
        "pytest",
        *session.posargs,
        env={"COVERAGE_FILE": str(ROOT / f".coverage.{session.python}")},
    )


@nox.session(python="3.11")
def tests_pure_python(session: nox.Session) -> None:
    """The suite with the pure-Python fallback instead of the C accelerator (as installed
    without a compiler), on both backends."""
    install_group(session, "test")
    session.run("pytest", "-q", *session.posargs, env={"ANYWS_NO_SPEEDUPS": "1"})


@nox.session(python="3.11")
def tests_uvloop(session: nox.Session) -> None:
    """The suite's asyncio tests once more on uvloop's event loop."""
    install_group(session, "test")
    session.run("pytest", "-q", *session.posargs, env={"ANYWS_TEST_UVLOOP": "1"})


@nox.session(python="3.11")
def coverage(session: nox.Session) -> None:
    """Combine the coverage of every test run; fail under 100 % of branches."""
    session.install("coverage[toml]>=7.5")
    data = [str(path) for path in ROOT.glob(".coverage.*")]
    if not data:
        session.error("no coverage data: run the tests session first")
    session.run(
        "coverage", "combine", "--keep", *data, env={"COVERAGE_FILE": str(ROOT / ".coverage")}
    )
    session.run("coverage", "report", env={"COVERAGE_FILE": str(ROOT / ".coverage")})


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    install_group(session, "lint")
    session.run("ruff", "check", "anyws", "tests", "examples", "bench", "noxfile.py")
    session.run("ruff", "format", "--check", "anyws", "tests", "examples", "bench", "noxfile.py")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the library, the tests and the examples."""
    install_group(session, "type")
    session.install("nox", "--group", "bench")
    session.run("mypy", "--strict")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the documentation site (MkDocs, API reference from the docstrings) with
    warnings as errors: broken internal links and docstrings fail it."""
    install_group(session, "docs")
    site = Path(session.create_tmp()) / "site"
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", str(site), env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session(python="3.11")
def autobahn(session: nox.Session) -> None:
    """The Autobahn|Testsuite fuzzing server against anyws on trio and asyncio.

    Without arguments: every case but 9.*, 12.*, 13.* (large messages and deflate
    variants), plus 12.1.* and 13.1.*; `nox -s autobahn -- '*'` runs all 517.
    """
    session.install("-e", ".[trio]", env={"ANYWS_REQUIRE_SPEEDUPS": "1"})
    session.run("python", "tests/autobahn/run.py", *session.posargs)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """The side-by-side benchmark: prints the tables and writes them with the chart to the
    documentation (bench/results.md, docs/img/bench.svg); `-- --quick` for a smoke
    run, which writes nothing."""
    install_group(session, "bench")
    outputs = (
        []
        if "--quick" in session.posargs
        else ["--chart", "docs/img/bench.svg", "--markdown", "bench/results.md"]
    )
    session.run("python", "bench/run.py", *outputs, *session.posargs)


@nox.session(python="3.11")
def bench_smoke(session: nox.Session) -> None:
    """The benchmark driver with tiny counts: it still runs (no timing is judged)."""
    install_group(session, "bench")
    tmp = Path(session.create_tmp())  # the chart and table writers run too
    session.run(
        "python",
        "bench/run.py",
        "--quick",
        "--chart",
        str(tmp / "bench.svg"),
        "--markdown",
        str(tmp / "bench.md"),
    )


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """Install anyws and talk to an embedded local echo server on asyncio and trio."""
    session.install("-e", ".[trio]")
    session.run("python", "examples/demo.py")


@nox.session(python="3.11")
def clean(session: nox.Session) -> None:
    """Remove coverage data and build leftovers."""
    for path in ROOT.glob(".coverage*"):
        path.unlink()
    shutil.rmtree(ROOT / "htmlcov", ignore_errors=True)
