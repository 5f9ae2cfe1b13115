"""GET /files/read and POST /files/write through the server (as `make run` starts it), this
checkout against an earlier commit's tree (`git archive`) served the same way, in one run.

    python bench/files_io.py [--baseline REF] [--this REF] [--rounds 6] [-n 60]

Both servers run at once, each with its own data dir and workspace on the same disk; rounds
alternate which is measured first. Each round times, one request at a time on a kept-alive
connection: GET /health (the framework's own floor), GET /files/read of a 4 KB file, POST
/files/write of 4 KB of new content (so every write backs up the version it replaces) and
the same with create_backup=false; and, on the same disk, a bare write + fsync + rename (what
durability costs on its own) and a bare open().read(). Prints p50/p99 per server, the ratio
this ÷ baseline, and the goals of issue #26: a read's p50 within 1 ms of /health's, a write's
p50 within 2x the bare durable write plus /health's p50. No assertions.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import tempfile
import time
from pathlib import Path

from baseline import Server, describe, exported
from figures import percentile

SIZE = 4 * 1024
KINDS = ("health", "read", "write", "write_no_backup")
LABELS = {"health": "GET /health", "read": "GET /files/read (4 KB)", "write": "POST /files/write (4 KB, backup)",
          "write_no_backup": "POST /files/write (4 KB, no backup)"}


def payload(index: int) -> str:
    line = "x = 1  # some source code\n"
    body = (line * (SIZE // len(line) + 1))[: SIZE - 16]
    return body + f"# {index:13d}\n"


class Client:
    def __init__(self, server: Server):
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        self.counter = 0

    def call(self, method: str, path: str, body: dict | None = None) -> float:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        started = time.perf_counter()
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        answer = response.read()
        seconds = time.perf_counter() - started
        if response.status != 200:
            raise SystemExit(f"{method} {path}: {response.status} {answer[:300]!r}")
        return seconds

    def run(self, kind: str) -> float:
        self.counter += 1
        if kind == "health":
            return self.call("GET", "/health")
        if kind == "read":
            return self.call("GET", "/files/read?path=src/pkg/module.py")
        return self.call("POST", "/files/write", {"path": f"src/pkg/{kind}.py", "content": payload(self.counter),
                                                   "create_backup": kind == "write"})


def bare_write(directory: Path, index: int) -> float:
    temp, target = directory / ".bare.tmp", directory / "bare.py"
    data = payload(index).encode()
    started = time.perf_counter()
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, target)
    return time.perf_counter() - started


def bare_read(path: Path) -> float:
    started = time.perf_counter()
    with open(path, "rb") as handle:
        handle.read().decode("utf-8")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD", help="the commit to compare with (default HEAD)")
    parser.add_argument("--this", default=None, help="the commit measured against it (default: the working tree)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("-n", type=int, default=60, help="requests of each kind per server per round")
    args = parser.parse_args()

    with exported(args.baseline) as old_tree, exported(args.this) as new_tree, \
            tempfile.TemporaryDirectory(prefix="bench-files-") as tmp:
        work = Path(tmp)
        with Server(old_tree, work / "baseline") as old, Server(new_tree, work / "this") as new:
            servers = {"baseline": old, "this": new}
            for server in servers.values():
                (server.workspace / "src/pkg").mkdir(parents=True)
                (server.workspace / "src/pkg/module.py").write_text(payload(0))
            clients = {name: Client(server) for name, server in servers.items()}
            samples = {name: {kind: [] for kind in KINDS} for name in servers}
            bare = {"write + fsync + rename": [], "open().read() + decode": []}
            for client in clients.values():  # warm-up: first requests import and connect
                for kind in KINDS:
                    for _ in range(5):
                        client.run(kind)
            for round_number in range(args.rounds):
                order = list(servers) if round_number % 2 == 0 else list(reversed(servers))
                for name in order:
                    for kind in KINDS:
                        samples[name][kind] += [clients[name].run(kind) for _ in range(args.n)]
                bare["write + fsync + rename"] += [bare_write(new.workspace, index) for index in range(args.n)]
                bare["open().read() + decode"] += [bare_read(new.workspace / "src/pkg/module.py")
                                                   for _ in range(args.n)]
            for client in clients.values():
                client.connection.close()

    ms = {name: {kind: (percentile(values, .5) * 1000, percentile(values, .99) * 1000)
                 for kind, values in by_kind.items()} for name, by_kind in samples.items()}
    print(f"files_io: baseline {describe(args.baseline)}\n          this     {describe(args.this)}")
    print(f"{args.rounds} rounds x {args.n} requests of each kind per server, alternating; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'':38} {'baseline p50':>12} {'p99':>8} {'this p50':>9} {'p99':>8} {'this/baseline p50':>18}")
    for kind in KINDS:
        (old50, old99), (new50, new99) = ms["baseline"][kind], ms["this"][kind]
        print(f"{LABELS[kind]:38} {old50:12.2f} {old99:8.2f} {new50:9.2f} {new99:8.2f} {new50 / old50:17.2f}x")
    for label, values in bare.items():
        print(f"{'bare ' + label:38} {percentile(values, .5) * 1000:12.2f} {percentile(values, .99) * 1000:8.2f}"
              "   (same disk, no server)")
    floor_write = percentile(bare["write + fsync + rename"], .5) * 1000
    for name in servers:
        health, read, write = (ms[name][kind][0] for kind in ("health", "read", "write"))
        goal = 2 * floor_write + health
        print(f"{name:>8}: read p50 - /health p50 = {read - health:+.2f} ms (goal <= 1 ms); write p50 "
              f"{write:.2f} ms vs 2 x bare durable write + /health p50 = {goal:.2f} ms: {write / goal:.2f}x "
              "(goal <= 1)")


if __name__ == "__main__":
    main()
