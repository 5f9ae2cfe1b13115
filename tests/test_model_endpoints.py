"""Several model servers per provider (llm.endpoints) against two scripted servers: each server's
cap per model holds, the least busy one gets the request, a server that is down is skipped, every
one down is a 503 and every one full a 429 (JSON with a detail), the wait is first come first
served, and a cap that follows the server learns what it accepts or takes what it reports."""

from __future__ import annotations

import asyncio
import threading

import pytest

from codegen_site.core import config as app_config
from codegen_site.llm import LLMUnavailable, get_llm, llm_resources
from codegen_site.llm.errors import LLMBusy
from tests.fakes.llm_server import FakeLLMServer, Turn
from tests.polling import wait_for

MESSAGES = [{"role": "user", "content": "hello"}]
MODEL = "qwen2.5-coder:7b"


@pytest.fixture
def second_llm():
    with FakeLLMServer() as server:
        yield server


def point_at(set_config, primary: str, *others: str, **llm) -> None:
    set_config({"llm": {"provider": "ollama", "endpoints": [{"provider": "ollama", "url": url} for url in others],
                        **llm},
                "ollama": {"host": primary, "timeout": 10.0, "connect_timeout": 1.0}})


class Gate:
    """A responder that holds every chat request until opened (the scripted servers' threads wait)."""

    def __init__(self, *servers: FakeLLMServer):
        self.open = threading.Event()
        for server in servers:
            server.responder = self

    def __call__(self, body: dict) -> Turn:
        self.open.wait(30)
        return Turn(content=["held ", body["messages"][-1]["content"]])


async def answer(text: str = "hello", model: str = MODEL) -> str:
    chat = await get_llm().stream([{"role": "user", "content": text}], model=model)
    return "".join([delta.text async for delta in chat])


async def until(condition, what: str) -> None:
    await asyncio.to_thread(wait_for, condition, 20, what, 0.02)


async def test_no_server_over_its_cap_and_the_load_is_shared(fake_llm, second_llm, set_config):
    point_at(set_config, fake_llm.url, second_llm.url, max_concurrent=3)
    gate = Gate(fake_llm, second_llm)
    tasks = [asyncio.create_task(answer(f"m{number}")) for number in range(14)]
    # The last requests may still be on their way to the queue when both servers fill up.
    await until(lambda: fake_llm.in_flight == 3 and second_llm.in_flight == 3
                and len(llm_resources().dispatcher._waiting) == 8, "both servers at their cap, 8 queued")
    gate.open.set()
    answers = await asyncio.gather(*tasks)
    assert answers == [f"held m{number}" for number in range(14)]
    assert fake_llm.max_in_flight == 3 and second_llm.max_in_flight == 3
    served = [len(fake_llm.chat_requests), len(second_llm.chat_requests)]
    assert sum(served) == 14 and min(served) >= 3, served


async def test_a_cap_per_model_on_one_server(fake_llm, second_llm, set_config):
    set_config({"llm": {"provider": "ollama", "max_concurrent": 5, "endpoints": [
                    {"provider": "ollama", "url": second_llm.url, "model_max_concurrent": {MODEL: 1},
                     "models": [MODEL]}]},
                "ollama": {"host": fake_llm.url, "timeout": 10.0, "connect_timeout": 1.0}})
    gate = Gate(fake_llm, second_llm)
    tasks = [asyncio.create_task(answer(f"m{number}")) for number in range(8)]
    await until(lambda: fake_llm.in_flight + second_llm.in_flight == 6, "six requests upstream")
    assert (fake_llm.in_flight, second_llm.in_flight) == (5, 1)
    gate.open.set()
    await asyncio.gather(*tasks)
    # another model goes only where it is served
    assert await answer("other", model="qwen2.5-coder:32b") == "held other"
    assert second_llm.max_in_flight == 1 and [body["model"] for body in fake_llm.chat_requests][-1] == "qwen2.5-coder:32b"


async def test_a_down_server_is_skipped(fake_llm, set_config, unused_port):
    down = f"http://127.0.0.1:{unused_port}"
    point_at(set_config, down, fake_llm.url, endpoint_retry_seconds=60.0)
    assert await answer("first") == "echo: first"  # tried the down one first, then the other
    assert await answer("second") == "echo: second"
    assert len(fake_llm.chat_requests) == 2
    assert await get_llm().list_models() == fake_llm.models
    assert (await get_llm().health())["llm_available"] is True


async def test_every_server_down_is_503_naming_each(set_config, unused_port):
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        second = other.getsockname()[1]
    urls = [f"http://127.0.0.1:{unused_port}", f"http://127.0.0.1:{second}"]
    point_at(set_config, *urls)
    for _ in range(2):  # the first request finds them down, the next knows it
        with pytest.raises(LLMUnavailable) as caught:
            await answer()
        assert caught.value.status_code == 503
    assert "any of its 2 servers" in caught.value.detail and all(url in caught.value.detail for url in urls)


@pytest.mark.django_db
def test_every_server_down_is_a_503_json_answer(client, set_config, unused_port, fake_llm):
    stopped = fake_llm.url
    fake_llm.stop()
    point_at(set_config, f"http://127.0.0.1:{unused_port}", stopped)
    response = client.post("/chat", {"message": "hi"}, content_type="application/json")
    assert response.status_code == 503
    assert "not reachable" in response.json()["detail"]


async def test_every_server_full_and_no_place_to_wait_is_429(fake_llm, second_llm, set_config):
    point_at(set_config, fake_llm.url, second_llm.url, max_concurrent=1, max_waiting=0)
    gate = Gate(fake_llm, second_llm)
    held = [asyncio.create_task(answer(f"m{number}")) for number in range(2)]
    await until(lambda: fake_llm.in_flight == 1 and second_llm.in_flight == 1, "both servers busy")
    with pytest.raises(LLMBusy) as caught:
        await answer("third")
    gate.open.set()
    assert await asyncio.gather(*held) == ["held m0", "held m1"]
    assert caught.value.status_code == 429 and "each of its 2 servers is at its cap" in caught.value.detail


@pytest.mark.django_db
def test_every_server_full_is_a_429_json_answer(client, fake_llm, second_llm, set_config):
    point_at(set_config, fake_llm.url, second_llm.url, max_concurrent=1, queue_timeout=0.2)
    gate = Gate(fake_llm, second_llm)
    holders = [threading.Thread(target=asyncio.run, args=(answer(f"m{number}"),)) for number in range(2)]
    for holder in holders:
        holder.start()
    try:
        wait_for(lambda: fake_llm.in_flight == 1 and second_llm.in_flight == 1, 20, "both servers busy", 0.02)
        response = client.post("/chat", {"message": "hi"}, content_type="application/json")
        assert response.status_code == 429
        assert "no room" in response.json()["detail"] and "llm.queue_timeout" in response.json()["detail"]
    finally:
        gate.open.set()
        for holder in holders:
            holder.join(30)


async def test_waiting_requests_go_first_come_first_served(fake_llm, set_config):
    point_at(set_config, fake_llm.url, max_concurrent=1)
    first = threading.Event()

    def responder(body):
        if body["messages"][-1]["content"] == "m0":
            first.wait(30)
        return Turn(content="ok")

    fake_llm.responder = responder
    waiting = llm_resources().dispatcher._waiting
    tasks = [asyncio.create_task(answer("m0"))]
    await until(lambda: fake_llm.in_flight == 1, "the first request upstream")
    for number in range(1, 6):
        tasks.append(asyncio.create_task(answer(f"m{number}")))
        await until(lambda count=number: len(waiting) == count, f"request {number} waiting")
    first.set()
    await asyncio.gather(*tasks)
    assert [body["messages"][-1]["content"] for body in fake_llm.chat_requests] == [f"m{n}" for n in range(6)]


async def test_a_cap_that_follows_the_server_learns_what_it_accepts(fake_llm, set_config):
    """The server takes 4 at once and answers the rest busy (as Ollama does past its queue): every
    request is answered, none refused to the caller; the next burst is sent no more than the cap
    learnt, so fewer are refused."""
    point_at(set_config, fake_llm.url, max_concurrent=0)
    fake_llm.capacity = 4
    state = llm_resources().dispatcher.state("ollama", fake_llm.url)
    refused, learnt = [], []
    for _ in range(2):
        learnt.append(state.learnt.get(MODEL, 64))
        gate = Gate(fake_llm)
        fake_llm.refused = 0
        tasks = [asyncio.create_task(answer(f"m{number}")) for number in range(12)]
        await until(lambda: fake_llm.in_flight == 4 and len(llm_resources().dispatcher._waiting) == 8,
                    "the server full, the rest waiting")
        refused.append(fake_llm.refused)
        gate.open.set()
        assert await asyncio.gather(*tasks) == [f"held m{number}" for number in range(12)]
    assert refused[0] >= 1 and 4 <= learnt[1] < 64
    assert refused[1] <= learnt[1] - 4, (refused, learnt)


async def test_a_cap_that_follows_the_server_takes_its_reported_slots(lm_studio, set_config):
    set_config({"llm": {"max_concurrent": 0}})
    lm_studio.slots = 2
    gate = Gate(lm_studio)
    tasks = [asyncio.create_task(answer(f"m{number}", model="local")) for number in range(6)]
    await until(lambda: lm_studio.in_flight == 2, "two requests upstream")
    assert len(llm_resources().dispatcher._waiting) == 4
    gate.open.set()
    await asyncio.gather(*tasks)
    assert lm_studio.max_in_flight == 2


def test_endpoints_come_from_the_environment_and_are_checked(set_config):
    merged = app_config.load_config(environ={
        "CODEGEN_LLM__ENDPOINTS": '[{provider = "ollama", url = "http://gpu-2:11434", max_concurrent = 4}]'})
    assert merged["llm"]["endpoints"] == [{"provider": "ollama", "url": "http://gpu-2:11434", "max_concurrent": 4}]
    set_config({"llm": {"provider": "ollama", "endpoints": merged["llm"]["endpoints"]},
                "ollama": {"host": "http://gpu-1:11434"}})
    provider = get_llm().ollama()
    assert [(endpoint.url, endpoint.max_concurrent) for endpoint in provider.endpoints] == [
        ("http://gpu-1:11434", 0), ("http://gpu-2:11434", 4)]
    set_config({"llm": {"endpoints": [{"provider": "vllm", "url": "http://gpu-3:8000"}]}})
    with pytest.raises(ValueError, match="provider must be one of ollama, lm_studio"):
        get_llm().ollama()
