"""Several model servers and their caps (codegen_site.llm.endpoints), through /chat/stream.

    python bench/model_endpoints.py [ROUNDS] [STREAMS]

Scripted model servers (their own process; each answer 20 tokens about 1 ms apart) and three
app servers (codegen_site.server, as `make run` starts it):

- "two servers": Ollama at A plus llm.endpoints = [B], llm.max_concurrent = 10. STREAMS
  streams at once; printed: the most requests each server had at once (its cap is 10), how
  many streams each served, time to first content p50 / p99 and their spread.
- "defaults" and "fixed 20": one server C with room for STREAMS (beyond that it answers busy,
  as Ollama does), the app with the shipped settings against the app with the cap of 20 it had
  before (llm.max_connections = llm.max_concurrent = 20). Rounds alternate; printed: first
  content p50 / p99 of each and the ratio.
- the same two comparisons through the LLM layer alone (get_llm().stream in this process, no
  HTTP relay), with a model that takes 100 ms before its first token: on a busy machine the
  relay's own CPU hides what the caps do, and waves of requests show in a model's wait.

No assertions: figures to read, as ratios within the same run.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
from figures import percentile
from sse_relay import count_content_events, free_port, wait_http

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

MODEL_SERVERS = """
import sys, time
sys.path.insert(0, {root!r})
from tests.fakes.llm_server import FakeLLMServer, Turn
servers = [FakeLLMServer().start() for _ in range(3)]
servers[2].capacity = {room}
# "think ...": the model takes 100 ms before its first token (reading a prompt), as a real one does.
for server in servers:
    server.responder = lambda body: Turn(content=["tok "] * 20, chunk_delay=0.001, first_byte_delay=(
        0.1 if body["messages"][-1]["content"].startswith("think") else 0.0))
print(" ".join(server.url for server in servers), flush=True)
while True:
    time.sleep(3600)
"""


def start_app(workdir: Path, name: str, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    folder = workdir / name
    port = free_port()
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": "codegen_site.settings",
               "CODEGEN_DATA_DIR": str(folder / "data"), "CODEGEN_CONFIG_DIR": str(folder / "config"),
               "CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__CONNECT_TIMEOUT": "30",
               "CODEGEN_SECURITY__RATE_ANON": "100000/minute", "CODEGEN_SECURITY__RATE_LLM": "100000/minute",
               "CODEGEN_LOGGING__LEVEL": "WARNING", "PYTHONUNBUFFERED": "1", **env}
    environ.pop("CODEGEN_API_TOKEN", None)
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "server.log").open("wb")
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=environ, check=True,
                   stdout=log, stderr=log)
    app = subprocess.Popen([PYTHON, "-P", "-m", "codegen_site.server", "-b", "127.0.0.1", "-p", str(port)],
                           cwd=ROOT, env=environ, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health", app)
    return app, url


async def first_content(http: aiohttp.ClientSession, app_url: str, number: int) -> float:
    """Seconds from the request to its first content event."""
    started = time.perf_counter()
    async with http.get(app_url + "/chat/stream", params={"message": f"stream {number}"}) as response:
        if response.status != 200:
            raise RuntimeError(f"/chat/stream answered {response.status}: {await response.read()!r}")
        chunks, first, _ = await count_content_events(response.content.iter_any(), started)
    if not chunks:
        raise RuntimeError("a stream without content")
    return first


async def burst(app_url: str, count: int) -> list[float]:
    connector = aiohttp.TCPConnector(limit=count)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as http:
        await first_content(http, app_url, -1)  # warm: connections, the model's window
        return list(await asyncio.gather(*(first_content(http, app_url, number) for number in range(count))))


async def layer_first_delta(config: dict, number: int) -> float:
    from codegen_site.llm import get_llm

    started = time.perf_counter()
    chat = await get_llm(config).stream([{"role": "user", "content": f"think {number}"}], model="qwen2.5-coder:7b")
    first = None
    async for _ in chat:
        if first is None:
            first = time.perf_counter() - started
    return first or 0.0


async def layer_burst(config: dict, count: int) -> list[float]:
    await layer_first_delta(config, -1)
    return list(await asyncio.gather(*(layer_first_delta(config, number) for number in range(count))))


def layer_config(env: dict[str, str]) -> dict:
    from codegen_site.core.config import load_config

    return load_config(environ={"CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__CONNECT_TIMEOUT": "30", **env})


def stats(url: str, reset: bool = False) -> dict:
    if reset:
        httpx.post(url + "/_fake/stats/reset", json={}, trust_env=False)
        return {}
    return httpx.get(url + "/_fake/stats", trust_env=False).json()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    workdir = Path(tempfile.mkdtemp(prefix="bench-endpoints-"))
    models = subprocess.Popen([PYTHON, "-c", MODEL_SERVERS.format(root=str(ROOT), room=count)],
                              stdout=subprocess.PIPE, text=True)
    apps: list[subprocess.Popen] = []
    try:
        first, second, roomy = models.stdout.readline().split()
        two, two_url = start_app(workdir, "two", {
            "CODEGEN_OLLAMA__HOST": first, "CODEGEN_LLM__MAX_CONCURRENT": "10",
            "CODEGEN_LLM__ENDPOINTS": f'[{{provider = "ollama", url = "{second}"}}]'})
        default, default_url = start_app(workdir, "defaults", {"CODEGEN_OLLAMA__HOST": roomy})
        old, old_url = start_app(workdir, "fixed20", {"CODEGEN_OLLAMA__HOST": roomy, "CODEGEN_LLM__MAX_CONNECTIONS": "20",
                                                      "CODEGEN_LLM__MAX_CONCURRENT": "20"})
        apps += [two, default, old]

        print(f"{count} concurrent /chat/stream, {rounds} rounds; each answer 20 tokens about 1 ms apart")
        print(f"two model servers, a cap of 10 each (A {first}, B {second}):")
        firsts: list[float] = []
        for number in range(rounds):
            for url in (first, second):
                stats(url, reset=True)
            times = asyncio.run(burst(two_url, count))
            firsts += times
            a, b = stats(first), stats(second)
            print(f"  round {number + 1}: most at once A {a['max_in_flight']:2d}, B {b['max_in_flight']:2d}; "
                  f"streams served A {a['finished_streams']:2d}, B {b['finished_streams']:2d}; "
                  f"first content p50 {ms(percentile(times, 0.5))} p99 {ms(percentile(times, 0.99))}")
        p50, p99 = percentile(firsts, 0.5), percentile(firsts, 0.99)
        print(f"  all rounds: first content p50 {ms(p50)}, p99 {ms(p99)}, spread p99-p50 {ms(p99 - p50)} "
              f"(min {ms(min(firsts))}, max {ms(max(firsts))})")

        print(f"one model server with room for {count}: the shipped settings against the old fixed cap of 20")
        samples: dict[str, list[float]] = {"defaults": [], "fixed 20": []}
        for number in range(rounds):
            for name, url in (("defaults", default_url), ("fixed 20", old_url)):
                stats(roomy, reset=True)
                times = asyncio.run(burst(url, count))
                samples[name] += times
                seen = stats(roomy)
                print(f"  round {number + 1} {name:8}: most at once {seen['max_in_flight']:2d}, "
                      f"refused busy {seen['refused']}, first content p50 {ms(percentile(times, 0.5))} "
                      f"p99 {ms(percentile(times, 0.99))}")
        figures = {name: (percentile(times, 0.5), percentile(times, 0.99)) for name, times in samples.items()}
        for name, (p50, p99) in figures.items():
            print(f"  {name:8} all rounds: first content p50 {ms(p50)}, p99 {ms(p99)} "
                  f"(median {ms(statistics.median(samples[name]))})")
        print(f"  defaults / fixed 20: p50 {figures['defaults'][0] / figures['fixed 20'][0]:.2f}x, "
              f"p99 {figures['defaults'][1] / figures['fixed 20'][1]:.2f}x (issue #26 asks p99 <= 200 ms)")
        layer(rounds, count, first, second, roomy)
    finally:
        for app in apps:
            app.terminate()
            app.wait(timeout=10)
        models.terminate()
        models.wait(timeout=10)


def layer(rounds: int, count: int, first: str, second: str, roomy: str) -> None:
    """The same comparisons through the LLM layer in this process: first delta of each stream."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codegen_site.settings")
    os.environ.setdefault("CODEGEN_DATA_DIR", tempfile.mkdtemp(prefix="bench-endpoints-layer-"))
    import django

    django.setup()
    two = layer_config({"CODEGEN_OLLAMA__HOST": first, "CODEGEN_LLM__MAX_CONCURRENT": "10",
                        "CODEGEN_LLM__ENDPOINTS": f'[{{provider = "ollama", url = "{second}"}}]'})
    configs = {"defaults": layer_config({"CODEGEN_OLLAMA__HOST": roomy}),
               "fixed 20": layer_config({"CODEGEN_OLLAMA__HOST": roomy, "CODEGEN_LLM__MAX_CONNECTIONS": "20",
                                         "CODEGEN_LLM__MAX_CONCURRENT": "20"})}
    print("through the LLM layer alone (no HTTP relay), the model taking 100 ms before its first token:")
    firsts: list[float] = []
    most = {"A": 0, "B": 0}
    for _ in range(rounds):
        for url in (first, second):
            stats(url, reset=True)
        firsts += asyncio.run(layer_burst(two, count))
        most = {"A": max(most["A"], stats(first)["max_in_flight"]), "B": max(most["B"], stats(second)["max_in_flight"])}
    p50, p99 = percentile(firsts, 0.5), percentile(firsts, 0.99)
    print(f"  two servers, cap 10 each: most at once A {most['A']}, B {most['B']}; first delta p50 {ms(p50)}, "
          f"p99 {ms(p99)}, spread {ms(p99 - p50)}")
    samples: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(rounds):
        for name, config in configs.items():
            samples[name] += asyncio.run(layer_burst(config, count))
    figures = {name: (percentile(times, 0.5), percentile(times, 0.99)) for name, times in samples.items()}
    for name, (p50, p99) in figures.items():
        print(f"  one server with room for {count}, {name:8}: first delta p50 {ms(p50)}, p99 {ms(p99)}")
    print(f"  defaults / fixed 20: p50 {figures['defaults'][0] / figures['fixed 20'][0]:.2f}x, "
          f"p99 {figures['defaults'][1] / figures['fixed 20'][1]:.2f}x")


if __name__ == "__main__":
    main()
