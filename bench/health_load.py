"""GET /health under 16 concurrent clients (issue #26: p99 <= 50 ms), this checkout against an
earlier commit's tree served the same way, in one run.

    python bench/health_load.py [--baseline REF] [--this REF] [--rounds 4] [--clients 16] [-n 50]

Both servers run at once (each with its own data dir); rounds alternate which is measured
first. In a round, `--clients` threads each send `-n` requests one after another on a kept-alive
connection. The answer comes from memory: the process's monitor probes the database and the
cache in its own thread (codegen_site.core.monitor). Prints p50/p99 per server and the ratio
this / baseline. No assertions.
"""

from __future__ import annotations

import argparse
import http.client
import os
import tempfile
import threading
import time
from pathlib import Path

from baseline import Server, describe, exported
from figures import percentile


def client_run(port: int, requests: int, samples: list[float], start: threading.Barrier) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    start.wait()
    for _ in range(requests):
        started = time.perf_counter()
        connection.request("GET", "/health")
        response = connection.getresponse()
        response.read()
        samples.append(time.perf_counter() - started)
        if response.status != 200:
            raise SystemExit(f"/health: {response.status}")
    connection.close()


def burst(server: Server, clients: int, requests: int) -> list[float]:
    samples: list[float] = []
    start = threading.Barrier(clients)
    threads = [threading.Thread(target=client_run, args=(server.port, requests, samples, start))
               for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="8aee7b3~1", help="commit to compare with (default: before the monitor)")
    parser.add_argument("--this", default=None, help="commit to measure (default: this checkout as it is)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("-n", type=int, default=50, help="requests per client per round")
    args = parser.parse_args()
    with exported(args.baseline) as old_tree, exported(args.this) as new_tree, \
            tempfile.TemporaryDirectory(prefix="bench-health-") as tmp:
        work = Path(tmp)
        with Server(old_tree, work / "baseline") as old, Server(new_tree, work / "this") as new:
            servers = {"baseline": old, "this": new}
            for server in servers.values():  # warm-up: the first requests import and probe
                burst(server, 2, 20)
            samples: dict[str, list[float]] = {name: [] for name in servers}
            for round_number in range(args.rounds):
                order = list(servers) if round_number % 2 == 0 else list(reversed(servers))
                for name in order:
                    samples[name] += burst(servers[name], args.clients, args.n)
    ms = {name: (percentile(values, .5) * 1000, percentile(values, .99) * 1000) for name, values in samples.items()}
    print(f"health_load: baseline {describe(args.baseline)}\n             this     {describe(args.this)}")
    print(f"{args.rounds} rounds x {args.clients} clients x {args.n} requests per server, alternating; load "
          f"average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'':12} {'p50 ms':>8} {'p99 ms':>8}")
    for name, (p50, p99) in ms.items():
        print(f"{name:12} {p50:8.2f} {p99:8.2f}")
    (old50, old99), (new50, new99) = ms["baseline"], ms["this"]
    print(f"this / baseline: p50 {new50 / old50:.2f}x, p99 {new99 / old99:.2f}x; goal p99 <= 50 ms: "
          f"{'met' if new99 <= 50 else 'not met'} ({new99:.1f} ms)")


if __name__ == "__main__":
    main()
