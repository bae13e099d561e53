"""The benchmark: anyws against the clients users would pick instead, in one run.

    python bench/run.py                 # 5 repetitions, the full counts
    python bench/run.py --quick         # 1 repetition, tiny counts (a smoke run)
    python bench/run.py --workloads w2 w4 --clients anyws-asyncio websockets-asyncio
    python bench/run.py --profile /tmp/profiles   # also a cProfile of every run

Starts a fast echo server (picows) and a permessage-deflate echo server (websockets) in
processes of their own, then runs every (workload, client) pair in a fresh client process,
interleaved (each repetition starting one client later), and prints markdown tables of the
median client CPU time per operation (with its ratio to `websockets` on asyncio), the
median throughput, the peak RSS, the cost of a round trip with K connections open at once,
and the memory per idle connection (`--markdown PATH` also writes them to a file,
`--chart PATH` draws the CPU ratios).

Two of the clients are floors, not libraries: `floor-asyncio` and `floor-trio` do W1-W4
with no WebSocket code at all (write a masked frame, wait for the echo's bytes, slice the
payload out), on a bare asyncio protocol and on a bare trio socket. They show what the
event loop and the kernel cost before any client does anything (`w5_floor.py` is W5's).
Three are the blocking APIs: `anyws-sync-asyncio`, `anyws-sync-trio` (`anyws.sync` with
that event loop behind it) and `websockets-sync`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CLIENTS = [
    "anyws-asyncio",
    "anyws-trio",
    "websockets-asyncio",
    "websockets-trio",
    "anyws-uvloop",
    "websockets-uvloop",
    "aiohttp",
    "trio-websocket",
    "httpx-ws",
    "picows",
    "floor-asyncio",
    "floor-trio",
    "anyws-sync-asyncio",
    "anyws-sync-trio",
    "websockets-sync",
]
BASELINE = "websockets-asyncio"
WORKLOADS = {
    # workload: (title, operations per run, server, clients without it)
    "w1": ("W1 32 B req/resp", 4000, "picows", set()),
    "w2": ("W2 32 B pipelined", 20000, "picows", set()),
    "w3": ("W3 1 MiB req/resp", 100, "picows", set()),
    "w4": ("W4 connect+close", 200, "picows", set()),
    "w5": (
        "W5 16 KiB JSON, deflate",
        1000,
        "websockets-deflate",
        {"trio-websocket", "httpx-ws", "picows", "floor-asyncio", "floor-trio"},
    ),
}
IDLE_CLIENTS = ["anyws-asyncio", "anyws-trio", "websockets-asyncio", "websockets-trio"]
IDLE_CONNECTIONS = 1000
# Concurrency: K connections open at once, each doing 32-byte round trips concurrently
# (ROUND_TRIPS in all); the clients that hold many connections.
CONCURRENCY = [1, 100, 1000, 3000]
ROUND_TRIPS = 30000
CONCURRENCY_CLIENTS = IDLE_CLIENTS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(kind: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "servers.py"), kind, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        sys.exit(f"the {kind} server didn't start")
    return process, f"ws://127.0.0.1:{port}/"


def run_client(
    client: str, workload: str, uri: str, count: int, profile: Path | None = None
) -> dict[str, float]:
    env = dict(os.environ)
    # Imports are timed as an installed package has them: from compiled bytecode, which a
    # source checkout gets only if Python may write it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        env["ANYWS_BENCH_PROFILE"] = str(profile / f"{client}-{workload}.pstats")
    result = subprocess.run(
        [sys.executable, str(HERE / "clients.py"), client, workload, uri, str(count)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )
    if result.returncode != 0:
        sys.exit(f"{client} {workload} failed:\n{result.stderr}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, tiny counts")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--clients", nargs="*", default=CLIENTS)
    workloads = [*WORKLOADS, "concurrency", "idle"]
    parser.add_argument("--workloads", nargs="*", default=workloads, choices=workloads)
    parser.add_argument(
        "--chart", type=Path, help="also draw the CPU ratios as a bar chart (SVG) at this path"
    )
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    parser.add_argument(
        "--profile",
        type=Path,
        help="write a cProfile of every run to this directory (CLIENT-WORKLOAD.pstats, the "
        "last repetition's; the CPU times measured under the profiler are inflated)",
    )
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    scale = 0.01 if args.quick else 1.0
    idle_connections = 20 if args.quick else IDLE_CONNECTIONS
    concurrency = [1, 10] if args.quick else CONCURRENCY

    servers = {kind: start_server(kind) for kind in ("picows", "websockets-deflate")}
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    concurrent: dict[tuple[int, str], list[dict[str, float]]] = {}
    idle: dict[str, list[dict[str, float]]] = {}
    started = time.monotonic()
    try:
        for repetition in range(repeat):
            # Where a run falls in the sequence moves its result (on this machine up to
            # 20 % in W4, whatever the client), so every repetition starts one client later.
            shift = repetition % len(args.clients)
            order = args.clients[shift:] + args.clients[:shift]
            for workload, (_title, count, server, without) in WORKLOADS.items():
                if workload not in args.workloads:
                    continue
                for client in order:
                    if client in without:
                        continue
                    result = run_client(
                        client,
                        workload,
                        servers[server][1],
                        max(2, int(count * scale)),
                        args.profile,
                    )
                    samples.setdefault((workload, client), []).append(result)
            for connections in concurrency:
                for client in order:
                    if client in CONCURRENCY_CLIENTS and "concurrency" in args.workloads:
                        concurrent.setdefault((connections, client), []).append(
                            run_client(
                                client,
                                f"c{connections}",
                                servers["picows"][1],
                                max(connections, int(ROUND_TRIPS * scale)),
                                args.profile,
                            )
                        )
            for client in order:
                if client in IDLE_CLIENTS and "idle" in args.workloads:
                    idle.setdefault(client, []).append(
                        run_client(client, "idle", servers["picows"][1], idle_connections)
                    )
            print(
                f"repetition {repetition + 1}/{repeat} done ({time.monotonic() - started:.0f} s)",
                file=sys.stderr,
            )
    finally:
        for process, _uri in servers.values():
            process.terminate()
            process.wait()
    text = report(samples, concurrent, idle, args.clients, repeat)
    print(text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
        print(f"tables: {args.markdown}", file=sys.stderr)
    if args.chart is not None:
        chart(samples, args.clients, repeat, args.chart)


def cpu_per_op(
    samples: dict[tuple[str, str], list[dict[str, float]]], workload: str, client: str
) -> float | None:
    """The median client CPU µs per operation, or None if not run."""
    runs = samples.get((workload, client))
    if not runs:
        return None
    return statistics.median(run["cpu"] / run["ops"] * 1e6 for run in runs)


def machine() -> str:
    return (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} cores; {platform.system()}"
    )


def chart(
    samples: dict[tuple[str, str], list[dict[str, float]]],
    clients: list[str],
    repeat: int,
    path: Path,
) -> None:
    """Grouped bars: each client's CPU per operation relative to the baseline, per workload."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file
    import matplotlib.pyplot as plt

    workloads = list(WORKLOADS)
    figure, axes = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(clients)
    for index, client in enumerate(clients):
        ratios = []
        for workload in workloads:
            value, base = (
                cpu_per_op(samples, workload, client),
                cpu_per_op(samples, workload, BASELINE),
            )
            ratios.append(value / base if value is not None and base else 0.0)
        positions = [w + (index - (len(clients) - 1) / 2) * width for w in range(len(workloads))]
        axes.bar(positions, ratios, width, label=client)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(workloads)), [WORKLOADS[w][0] for w in workloads], fontsize=8)
    axes.set_ylabel(f"CPU per operation / {BASELINE}")
    axes.set_title("Client CPU per operation, relative to websockets on asyncio (lower is better)")
    axes.legend(fontsize=8, ncols=2)
    figure.text(
        0.01,
        0.01,
        f"median of {repeat} runs; {machine()}; {time.strftime('%Y-%m-%d')}",
        fontsize=7,
    )
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)
    print(f"chart: {path}", file=sys.stderr)


def report(
    samples: dict[tuple[str, str], list[dict[str, float]]],
    concurrent: dict[tuple[int, str], list[dict[str, float]]],
    idle: dict[str, list[dict[str, float]]],
    clients: list[str],
    repeat: int,
) -> str:
    """The tables, as markdown."""
    lines: list[str] = []

    def cpu_us(workload: str, client: str) -> float | None:
        return cpu_per_op(samples, workload, client)

    def throughput(workload: str, client: str) -> float | None:
        runs = samples.get((workload, client))
        if not runs:
            return None
        return statistics.median(run["ops"] / run["wall"] for run in runs)

    lines.append(
        f"Client CPU µs per operation, median of {repeat} (ratio to {BASELINE}; lower is better)\n"
    )
    lines.append("| client | " + " | ".join(title for title, *_ in WORKLOADS.values()) + " |")
    lines.append("|---|" + "---:|" * len(WORKLOADS))
    for client in clients:
        cells = []
        for workload in WORKLOADS:
            value, base = cpu_us(workload, client), cpu_us(workload, BASELINE)
            if value is None:
                cells.append("n/a")
            elif base:
                cells.append(f"{value:,.1f} ({value / base:.2f})")
            else:
                cells.append(f"{value:,.1f}")
        lines.append(f"| {client} | " + " | ".join(cells) + " |")

    lines.append(f"\nThroughput, operations per second, median of {repeat} (higher is better)\n")
    lines.append(
        "| client | " + " | ".join(title for title, *_ in WORKLOADS.values()) + " | peak RSS |"
    )
    lines.append("|---|" + "---:|" * (len(WORKLOADS) + 1))
    for client in clients:
        cells = []
        for workload in WORKLOADS:
            value = throughput(workload, client)
            cells.append("n/a" if value is None else f"{value:,.0f}")
        peaks = [
            run["peak_rss"] for (_w, c), runs in samples.items() if c == client for run in runs
        ]
        peak = f"{max(peaks) / 2**20:.0f} MiB" if peaks else "n/a"
        lines.append(f"| {client} | " + " | ".join(cells) + f" | {peak} |")

    once = {client: samples[("w4", client)] for client in clients if ("w4", client) in samples}
    if once:
        lines.append(
            "\nPaid once per process, not counted in W4: the library's import and the first "
            f"connection (lazy imports included), client CPU ms, median of {repeat}\n"
        )
        lines.append("| client | import | first connection |")
        lines.append("|---|---:|---:|")
        for client, runs in once.items():
            imported = statistics.median(run["import"] for run in runs) * 1e3
            first = statistics.median(run["first"] for run in runs) * 1e3
            lines.append(f"| {client} | {imported:.1f} | {first:.1f} |")

    if concurrent:
        counts = sorted({connections for connections, _ in concurrent})
        shown = [client for client in clients if any(c == client for _, c in concurrent)]
        lines.append(
            "\nK connections open at once, 32-byte round trips on all of them concurrently: "
            f"client CPU µs per round trip, and peak RSS, median of {repeat}\n"
        )
        lines.append("| client | " + " | ".join(f"K = {count:,}" for count in counts) + " |")
        lines.append("|---|" + "---:|" * len(counts))
        for client in shown:
            cells = []
            for count in counts:
                runs = concurrent.get((count, client), [])
                if not runs:
                    cells.append("n/a")
                    continue
                cpu = statistics.median(run["cpu"] / run["ops"] * 1e6 for run in runs)
                peak_mib = max(run["peak_rss"] for run in runs) / 2**20
                cells.append(f"{cpu:,.1f} µs, {peak_mib:.0f} MiB")
            lines.append(f"| {client} | " + " | ".join(cells) + " |")

    if idle:
        lines.append(
            "\nMemory per idle connection, median: the Python heap (tracemalloc) and the "
            "RSS growth over the open connections\n"
        )
        lines.append("| client | heap KiB | RSS KiB |")
        lines.append("|---|---:|---:|")
        for client, runs in idle.items():
            heap = statistics.median(run["heap"] for run in runs)
            resident = statistics.median(run["rss"] for run in runs)
            lines.append(f"| {client} | {heap / 1024:.1f} | {resident / 1024:.1f} |")

    lines.append(f"\nMachine: {machine()}; {platform.platform()}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
