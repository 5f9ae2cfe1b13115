"""SSE relay cost: /chat/stream (codegen_site.server, as `make run` starts it) against reading the same LLM stream directly.

    python bench/sse_relay.py [CHUNKS] [ROUNDS] [CONCURRENT]

The scripted LLM server (its own process) streams CHUNKS tiny chunks as fast as
it can. A client reads them (a) straight from the server's /api/chat and (b)
through the app's /chat/stream, alternating, ROUNDS times each; then CONCURRENT
streams run at once both ways. Prints chunks/s, time to first chunk and their
ratios (relay / direct). No assertions: these are figures to read.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

LLM_SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.fakes.llm_server import FakeLLMServer, Turn
server = FakeLLMServer().start()
# "paced": a model's real pace (20 tokens, 20 ms apart); anything else: a flood of tiny chunks.
server.responder = lambda body: (Turn(content=["x"] * 20, chunk_delay=0.02)
                                 if body["messages"][-1]["content"] == "paced" else Turn(content=["x"] * {chunks}))
print(server.url, flush=True)
while True:
    time.sleep(3600)
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited early ({process.returncode})")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"no answer from {url}")


# The raw readers count chunks by scanning the bytes rather than parsing them
# line by line in Python: on a 2-core machine a parsing client would compete
# with the server for CPU and measure itself as much as the relay.
CHAT_BODY = {"model": "qwen2.5-coder:7b", "stream": True}
CONTENT_EVENT = b"event: content\n"


async def count_lines(data: AsyncIterator[bytes], started: float) -> tuple[int, float, float]:
    """(chunks, seconds to first chunk, seconds in all) of Ollama's NDJSON:
    one line per chunk, and a last line with "done": true."""
    first = None
    lines = 0
    async for piece in data:
        if first is None:
            first = time.perf_counter() - started
        lines += piece.count(b"\n")
    return lines - 1, first or 0.0, time.perf_counter() - started


async def count_content_events(data: AsyncIterator[bytes], started: float) -> tuple[int, float, float]:
    """The same for /chat/stream: `content` events, until the stream ends."""
    first = None
    chunks = 0
    tail = b""
    async for piece in data:
        window = tail + piece
        found = window.count(CONTENT_EVENT)
        if found and first is None:
            first = time.perf_counter() - started
        chunks += found
        tail = window[-(len(CONTENT_EVENT) - 1):]
        if b"event: error" in window:
            raise RuntimeError(f"stream failed: {window[-300:]!r}")
    return chunks, first or 0.0, time.perf_counter() - started


async def read_direct(http: httpx.AsyncClient, llm_url: str, message: str = "go") -> tuple[int, float, float]:
    body = {**CHAT_BODY, "messages": [{"role": "user", "content": message}]}
    started = time.perf_counter()
    async with http.stream("POST", llm_url + "/api/chat", json=body) as response:
        return await count_lines(response.aiter_raw(), started)


async def read_relay(http: httpx.AsyncClient, app_url: str, message: str = "go") -> tuple[int, float, float]:
    started = time.perf_counter()
    async with http.stream("GET", app_url + "/chat/stream", params={"message": message}) as response:
        if response.status_code != 200:
            raise RuntimeError(f"/chat/stream answered {response.status_code}: {await response.aread()!r}")
        return await count_content_events(response.aiter_raw(), started)


async def read_direct_parsed(http: httpx.AsyncClient, llm_url: str) -> tuple[int, float, float]:
    """Like a real client: every NDJSON line decoded."""
    body = {**CHAT_BODY, "messages": [{"role": "user", "content": "go"}]}
    started = time.perf_counter()
    first = None
    chunks = 0
    async with http.stream("POST", llm_url + "/api/chat", json=body) as response:
        async for line in response.aiter_lines():
            if not line:
                continue
            item = json.loads(line)
            if item.get("done"):
                break
            chunks += 1
            if first is None:
                first = time.perf_counter() - started
    return chunks, first or 0.0, time.perf_counter() - started


async def read_relay_parsed(http: httpx.AsyncClient, app_url: str) -> tuple[int, float, float]:
    """Like an EventSource: every SSE line split and every data payload decoded."""
    started = time.perf_counter()
    first = None
    chunks = 0
    event = ""
    async with http.stream("GET", app_url + "/chat/stream", params={"message": "go"}) as response:
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                json.loads(line[5:])
                if event == "content":
                    chunks += 1
                    if first is None:
                        first = time.perf_counter() - started
                elif event == "done":
                    break
                elif event == "error":
                    raise RuntimeError(f"stream failed: {line}")
    return chunks, first or 0.0, time.perf_counter() - started


async def read_direct_c(http: aiohttp.ClientSession, llm_url: str) -> tuple[int, float, float]:
    """read_direct with aiohttp's C HTTP parser: the fastest direct reader at hand."""
    body = {**CHAT_BODY, "messages": [{"role": "user", "content": "go"}]}
    started = time.perf_counter()
    async with http.post(llm_url + "/api/chat", json=body) as response:
        return await count_lines(response.content.iter_any(), started)


async def read_relay_c(http: aiohttp.ClientSession, app_url: str) -> tuple[int, float, float]:
    """read_relay with aiohttp's C HTTP parser."""
    started = time.perf_counter()
    async with http.get(app_url + "/chat/stream", params={"message": "go"}) as response:
        if response.status != 200:
            raise RuntimeError(f"/chat/stream answered {response.status}: {await response.read()!r}")
        return await count_content_events(response.content.iter_any(), started)


READERS = {"raw": (read_direct, read_relay), "parsed": (read_direct_parsed, read_relay_parsed),
           "c": (read_direct_c, read_relay_c)}


async def sequential(llm_url: str, app_url: str, rounds: int, kind: str = "raw"
                     ) -> dict[str, list[tuple[int, float, float]]]:
    """Direct and relay in turn, the same client both ways."""
    direct, relay = READERS[kind]
    results: dict[str, list] = {"direct": [], "relay": []}
    client = (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) if kind == "c" else
              httpx.AsyncClient(timeout=120, trust_env=False))
    async with client as http:
        await direct(http, llm_url)  # warm both paths (connections, imports, DB)
        await relay(http, app_url)
        for _ in range(rounds):
            results["direct"].append(await direct(http, llm_url))
            results["relay"].append(await relay(http, app_url))
    return results


async def paced(llm_url: str, app_url: str, rounds: int) -> tuple[float, float]:
    """Median time to first chunk both ways when the model streams at a real pace."""
    direct, relay = [], []
    async with httpx.AsyncClient(timeout=120, trust_env=False) as http:
        await read_relay(http, app_url, "paced")
        for _ in range(rounds):
            direct.append((await read_direct(http, llm_url, "paced"))[1])
            relay.append((await read_relay(http, app_url, "paced"))[1])
    return statistics.median(direct), statistics.median(relay)


async def concurrent(reader, url: str, count: int) -> tuple[int, int, float]:
    """(streams completed, chunks in all, seconds) for `count` streams at once."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(timeout=300, limits=limits, trust_env=False) as http:
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(reader(http, url) for _ in range(count)), return_exceptions=True)
        elapsed = time.perf_counter() - started
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    for failure in [o for o in outcomes if isinstance(o, BaseException)][:3]:
        print(f"   failed: {failure!r}")
    return len(done), sum(o[0] for o in done), elapsed


def main() -> None:
    chunks = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 50

    workdir = Path(tempfile.mkdtemp(prefix="bench-sse-"))
    llm = subprocess.Popen([PYTHON, "-c", LLM_SERVER.format(root=str(ROOT), chunks=chunks)],
                           stdout=subprocess.PIPE, text=True)
    app = None
    try:
        llm_url = llm.stdout.readline().strip()
        port = free_port()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "codegen_site.settings",
               "CODEGEN_DATA_DIR": str(workdir / "data"), "CODEGEN_CONFIG_DIR": str(workdir / "config"),
               "CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__HOST": llm_url,
               # Room for every concurrent stream upstream, and no throttling of the bench itself.
               "CODEGEN_LLM__MAX_CONNECTIONS": str(max(count, 20)), "CODEGEN_OLLAMA__CONNECT_TIMEOUT": "30",
               "CODEGEN_SECURITY__RATE_ANON": "100000/minute", "CODEGEN_SECURITY__RATE_LLM": "100000/minute",
               "CODEGEN_LOGGING__LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
        env.pop("CODEGEN_API_TOKEN", None)
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
        log = (workdir / "daphne.log").open("wb")
        app = subprocess.Popen([PYTHON, "-P", "-m", "codegen_site.server", "-b", "127.0.0.1", "-p", str(port)],
                               cwd=ROOT, env=env, stdout=log, stderr=log)
        app_url = f"http://127.0.0.1:{port}"
        wait_http(app_url + "/health", app)

        print(f"{chunks} chunks per stream, {rounds} rounds each way, then {count} concurrent streams")
        titles = {"raw": "httpx clients that count raw bytes (the server's cost alone):",
                  "parsed": "httpx clients that decode every line (like EventSource):",
                  "c": "aiohttp clients (C HTTP parser) that count raw bytes: the fastest direct reading here"}
        for kind, title in titles.items():
            print("  " + title)
            results = asyncio.run(sequential(llm_url, app_url, rounds, kind))
            figures = {}
            for way, rows in results.items():
                seen = {row[0] for row in rows}
                rate = statistics.median(row[0] / row[2] for row in rows)
                ttfc = statistics.median(row[1] for row in rows) * 1000
                figures[way] = (rate, ttfc)
                print(f"    {way:6}  chunks/stream {sorted(seen)}  median {rate:9.0f} chunks/s  "
                      f"time to first chunk {ttfc:6.2f} ms")
            (direct_rate, direct_ttfc), (relay_rate, relay_ttfc) = figures["direct"], figures["relay"]
            print(f"    relay/direct throughput {relay_rate / direct_rate:.2f}x (goal >= 0.9x); "
                  f"added time to first chunk {relay_ttfc - direct_ttfc:+.2f} ms (goal <= 5 ms)")

        # The framework's own floor: a request that does no work.
        with httpx.Client(trust_env=False) as http:
            http.get(app_url + "/health")
            floor = []
            for _ in range(rounds * 4):
                started = time.perf_counter()
                http.get(app_url + "/health")
                floor.append(time.perf_counter() - started)
        print(f"  GET /health through daphne + middleware: median {statistics.median(floor) * 1000:.2f} ms")

        direct_first, relay_first = asyncio.run(paced(llm_url, app_url, rounds * 2))
        print(f"  at a model's pace (20 tokens, 20 ms apart): time to first chunk direct {direct_first * 1000:.2f} ms, "
              f"relay {relay_first * 1000:.2f} ms, added {(relay_first - direct_first) * 1000:+.2f} ms (goal <= 5 ms)")

        both = {}
        for way, reader, url in (("direct", read_direct, llm_url), ("relay", read_relay, app_url)):
            completed, total, elapsed = asyncio.run(concurrent(reader, url, count))
            both[way] = total / elapsed
            print(f"  {count} concurrent {way:6}: {completed}/{count} complete, {total} chunks in {elapsed:.2f} s "
                  f"({total / elapsed:.0f} chunks/s)")
        print(f"  concurrent relay/direct throughput {both['relay'] / both['direct']:.2f}x")
    finally:
        if app is not None:
            app.terminate()
            app.wait(timeout=10)
        llm.terminate()
        llm.wait(timeout=10)


if __name__ == "__main__":
    main()
