"""Run the Autobahn|Testsuite fuzzing server against anyws, on trio and on asyncio.

    python tests/autobahn/run.py               # the CI selection (all but 9, 12, 13 + 12.1, 13.1)
    python tests/autobahn/run.py '*'           # all 517 cases
    python tests/autobahn/run.py 12.* 13.1.*   # a subset

Installs the suite on first use into .autobahn/ (CPython 2.7 from pyenv, a virtualenv made
by virtualenv<20.22, autobahntestsuite 25.10.1 with pinned dependencies), starts the fuzzing
server on 127.0.0.1, runs tests/autobahn/client.py as agent `anyws-trio` and `anyws-asyncio`,
prints what reports/clients/index.json says and exits non-zero unless every selected case
is acceptable for both agents.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORK = ROOT / ".autobahn"
VENV = WORK / "py27"
CI_CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*", "12.1.*", "13.1.*"]
AGENTS = {"anyws-trio": "trio", "anyws-asyncio": "asyncio"}
ACCEPTABLE = {"OK", "NON-STRICT", "INFORMATIONAL"}
STRICT = {"OK", "INFORMATIONAL"}
CLIENT_TIMEOUT = 45 * 60  # seconds; the full run takes far less (see README)


def find_python2() -> str:
    candidates = [os.environ.get("PYTHON2", ""), shutil.which("python2.7") or ""]
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(str(path) for path in root.glob("versions/2.7*/bin/python2.7"))
    for candidate in filter(None, candidates):
        result = subprocess.run(
            [candidate, "-c", "import sys; assert sys.version_info[:2] == (2, 7)"], check=False
        )
        if result.returncode == 0:
            return candidate
    sys.exit("blocked: no CPython 2.7 found (set PYTHON2=/path/to/python2.7)")


def install() -> None:
    if (VENV / "bin" / "wstest").exists():
        return
    python2 = find_python2()
    tools = WORK / "py3-tools"
    print(f"[autobahn] installing autobahntestsuite for {python2} into {VENV}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True)
    subprocess.run([tools / "bin" / "pip", "install", "-q", "virtualenv<20.22"], check=True)
    subprocess.run([tools / "bin" / "virtualenv", "-q", "-p", python2, str(VENV)], check=True)
    subprocess.run(
        [
            VENV / "bin" / "pip",
            "install",
            "-q",
            "-c",
            HERE / "constraints-py27.txt",
            "autobahntestsuite==25.10.1",
        ],
        check=True,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(cases: list[str], port: int) -> subprocess.Popen[bytes]:
    reports = WORK / "reports"
    shutil.rmtree(reports, ignore_errors=True)
    spec = {
        "url": f"ws://127.0.0.1:{port}",
        "outdir": "./reports/clients",
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    }
    (WORK / "fuzzingserver.json").write_text(json.dumps(spec))
    log = (WORK / "fuzzingserver.log").open("wb")
    server = subprocess.Popen(
        [
            VENV / "bin" / "python",
            HERE / "fuzzingserver.py",
            "-m",
            "fuzzingserver",
            "-s",
            "fuzzingserver.json",
            "-u",
            "0",
        ],
        cwd=WORK,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"[autobahn] the fuzzing server exited; see {WORK / 'fuzzingserver.log'}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.1)  # polling a process we don't control, not synchronising tests
            continue
        return server
    server.kill()
    sys.exit("[autobahn] the fuzzing server didn't start listening within 60 s")


def summarize(results: dict[str, dict[str, dict[str, str]]]) -> bool:
    all_acceptable = True
    for agent in AGENTS:
        cases = results.get(agent, {})
        behaviours = collections.Counter(case["behavior"] for case in cases.values())
        closes = collections.Counter(case["behaviorClose"] for case in cases.values())
        bad = sorted(
            (
                case_id
                for case_id, case in cases.items()
                if case["behavior"] not in ACCEPTABLE or case["behaviorClose"] not in STRICT
            ),
            key=lambda case_id: [int(part) for part in case_id.split(".")],
        )
        strict = sum(
            1
            for case in cases.values()
            if case["behavior"] in STRICT and case["behaviorClose"] in STRICT
        )
        print(f"\n{agent}: {len(cases)} cases, {len(cases) - len(bad)} acceptable, {strict} strict")
        print("  behavior:      " + ", ".join(f"{k} {v}" for k, v in sorted(behaviours.items())))
        print("  behaviorClose: " + ", ".join(f"{k} {v}" for k, v in sorted(closes.items())))
        for case_id in bad:
            case = cases[case_id]
            behavior, close = case["behavior"], case["behaviorClose"]
            print(f"  NOT ACCEPTABLE {case_id}: behavior={behavior} behaviorClose={close}")
        non_strict = [
            case_id for case_id, case in cases.items() if case["behavior"] == "NON-STRICT"
        ]
        if non_strict:
            print("  NON-STRICT: " + ", ".join(non_strict))
        if not cases or bad:
            all_acceptable = False
    return all_acceptable


def main(patterns: list[str]) -> int:
    cases = patterns or CI_CASES
    WORK.mkdir(exist_ok=True)
    install()
    port = free_port()
    server = start_server(cases, port)
    started = time.monotonic()
    try:
        for agent, backend in AGENTS.items():
            agent_start = time.monotonic()
            subprocess.run(
                [sys.executable, HERE / "client.py", f"ws://127.0.0.1:{port}", agent, backend],
                check=True,
                timeout=CLIENT_TIMEOUT,
            )
            print(f"[autobahn] {agent}: {time.monotonic() - agent_start:.0f} s", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"[autobahn] cases {cases}: {time.monotonic() - started:.0f} s for both agents")
    results = json.loads((WORK / "reports" / "clients" / "index.json").read_text())
    return 0 if summarize(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
