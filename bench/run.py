"""The benchmark: anyws against the clients users would pick instead, in one run.

    python bench/run.py                 # 5 repetitions, the full counts
    python bench/run.py --quick         # 1 repetition, tiny counts (a smoke run)
    python bench/run.py --workloads w2 w4 --clients anyws-asyncio websockets-asyncio

Starts a fast echo server (picows) and a permessage-deflate echo server (websockets) in
processes of their own, then runs every (workload, client) pair in a fresh client process,
interleaved, and prints markdown tables of the median client CPU time per operation (with
its ratio to `websockets` on asyncio), the median throughput, the peak RSS, and the memory
per idle connection.
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
    "aiohttp",
    "trio-websocket",
    "httpx-ws",
    "picows",
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
        {"trio-websocket", "httpx-ws", "picows"},
    ),
}
IDLE_CLIENTS = ["anyws-asyncio", "anyws-trio", "websockets-asyncio", "websockets-trio"]
IDLE_CONNECTIONS = 1000


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


def run_client(client: str, workload: str, uri: str, count: int) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, str(HERE / "clients.py"), client, workload, uri, str(count)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"{client} {workload} failed:\n{result.stderr}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, tiny counts")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--clients", nargs="*", default=CLIENTS)
    workloads = [*WORKLOADS, "idle"]
    parser.add_argument("--workloads", nargs="*", default=workloads, choices=workloads)
    parser.add_argument(
        "--chart", type=Path, help="also draw the CPU ratios as a bar chart (SVG) at this path"
    )
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    scale = 0.01 if args.quick else 1.0
    idle_connections = 20 if args.quick else IDLE_CONNECTIONS

    servers = {kind: start_server(kind) for kind in ("picows", "websockets-deflate")}
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    idle: dict[str, list[dict[str, float]]] = {}
    started = time.monotonic()
    try:
        for repetition in range(repeat):
            for workload, (_title, count, server, without) in WORKLOADS.items():
                if workload not in args.workloads:
                    continue
                for client in args.clients:
                    if client in without:
                        continue
                    result = run_client(
                        client, workload, servers[server][1], max(2, int(count * scale))
                    )
                    samples.setdefault((workload, client), []).append(result)
            for client in IDLE_CLIENTS:
                if client in args.clients and "idle" in args.workloads:
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
    report(samples, idle, args.clients, repeat)
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
    idle: dict[str, list[dict[str, float]]],
    clients: list[str],
    repeat: int,
) -> None:
    def cpu_us(workload: str, client: str) -> float | None:
        return cpu_per_op(samples, workload, client)

    def throughput(workload: str, client: str) -> float | None:
        runs = samples.get((workload, client))
        if not runs:
            return None
        return statistics.median(run["ops"] / run["wall"] for run in runs)

    print(f"\nClient CPU µs per operation, median of {repeat}", end=" ")
    print(f"(ratio to {BASELINE}; lower is better)\n")
    print("| client | " + " | ".join(title for title, *_ in WORKLOADS.values()) + " |")
    print("|---|" + "---:|" * len(WORKLOADS))
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
        print(f"| {client} | " + " | ".join(cells) + " |")

    print(f"\nThroughput, operations per second, median of {repeat} (higher is better)\n")
    print("| client | " + " | ".join(title for title, *_ in WORKLOADS.values()) + " | peak RSS |")
    print("|---|" + "---:|" * (len(WORKLOADS) + 1))
    for client in clients:
        cells = []
        for workload in WORKLOADS:
            value = throughput(workload, client)
            cells.append("n/a" if value is None else f"{value:,.0f}")
        peaks = [
            run["peak_rss"] for (_w, c), runs in samples.items() if c == client for run in runs
        ]
        peak = f"{max(peaks) / 2**20:.0f} MiB" if peaks else "n/a"
        print(f"| {client} | " + " | ".join(cells) + f" | {peak} |")

    if idle:
        print("\nMemory per idle connection (RSS growth over the open connections, median)\n")
        print("| client | KiB per connection |")
        print("|---|---:|")
        for client, runs in idle.items():
            value = statistics.median(run["bytes_per_connection"] for run in runs)
            print(f"| {client} | {value / 1024:.1f} |")

    print(f"\nMachine: {machine()}; {platform.platform()}")


if __name__ == "__main__":
    main()
