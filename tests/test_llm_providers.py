"""Every provider against the scripted server: streaming, thinking, errors, fallback."""

import asyncio
import time

import pytest

from codegen_site.llm import LLMModelNotFound, LLMUnavailable, LLMUpstreamError, get_llm, llm_resources
from codegen_site.llm.providers.http import BATCH_BYTES, FIRST_BATCH_BYTES
from tests.fakes.llm_server import Turn

MESSAGES = [{"role": "user", "content": "write hello world"}]


async def collect(llm, messages=MESSAGES, **kwargs):
    chat = await llm.stream(messages, **kwargs)
    deltas = [delta async for delta in chat]
    return chat, deltas


def joined(deltas, kind):
    return "".join(d.text for d in deltas if d.kind == kind)


DEFAULT_MODEL = {"ollama": "qwen2.5-coder:7b", "lm_studio": "local"}


@pytest.fixture(params=["ollama", "lm_studio"])
def backend(request):
    """Run a test against both wire formats; the server gets `.kind` and `.default_model`."""
    server = request.getfixturevalue(request.param)
    server.kind = request.param
    server.default_model = DEFAULT_MODEL[request.param]
    return server


async def test_streams_content_chunks_in_order(backend):
    backend.script(Turn(content=["def ", "hello", "():", " pass"]))
    chat, deltas = await collect(get_llm())
    assert [d.text for d in deltas] == ["def ", "hello", "():", " pass"]
    assert chat.model == backend.default_model
    sent = backend.chat_requests[0]
    assert sent["messages"] == MESSAGES and sent["stream"] is True


async def test_think_tag_split_across_chunks(backend):
    backend.script(Turn(content=["<thi", "nk>plan: ", "add</th", "ink>def add(a, b):", " return a + b"]))
    _, deltas = await collect(get_llm())
    assert joined(deltas, "thinking") == "plan: add"
    assert joined(deltas, "content") == "def add(a, b): return a + b"


async def test_native_reasoning_field_becomes_thinking(backend):
    # Ollama sends message.thinking, LM Studio delta.reasoning_content.
    backend.script(Turn(thinking=["let me ", "think"], content=["answer"]))
    _, deltas = await collect(get_llm())
    assert joined(deltas, "thinking") == "let me think"
    assert joined(deltas, "content") == "answer"
    assert deltas[0].kind == "thinking"


async def test_complete_collects_content_and_thinking(backend):
    backend.script(Turn(content=["<think>hmm</think>", "4"]))
    completion = await get_llm().complete([{"role": "user", "content": "2+2"}])
    assert (completion.content, completion.thinking) == ("4", "hmm")
    assert (completion.provider, completion.model) == (backend.kind, backend.default_model)


async def test_upstream_500_is_a_502_error_naming_provider_and_host(backend, set_config):
    set_config({"models": {"defaults": {"fallback": "qwen2.5-coder:7b"}, "lm_studio": {"fallback": "local"}}})
    backend.script(Turn(status=500, error="GPU on fire"), Turn(status=500, error="GPU on fire"))
    with pytest.raises(LLMUpstreamError) as caught:
        await collect(get_llm(), model=backend.default_model)
    assert caught.value.status_code == 502
    assert "GPU on fire" in caught.value.detail
    assert backend.url in caught.value.detail


async def test_disconnect_mid_stream_raises_after_partial_output(backend):
    backend.script(Turn(content=["one ", "two ", "three"], disconnect_after=2))
    received = []
    with pytest.raises(LLMUpstreamError) as caught:
        chat = await get_llm().stream(MESSAGES)
        async for delta in chat:
            received.append(delta.text)
    assert received == ["one ", "two "]
    assert caught.value.status_code == 502


async def test_unknown_model_falls_back_to_configured_fallback(backend):
    chat, deltas = await collect(get_llm(), model="no-such-model")
    assert chat.model == backend.default_model
    assert joined(deltas, "content") == "echo: write hello world"
    assert [r["model"] for r in backend.chat_requests] == ["no-such-model", chat.model]


async def test_unknown_model_without_usable_fallback_is_502(backend, set_config):
    set_config({"models": {"defaults": {"fallback": "missing-too"}, "lm_studio": {"fallback": "missing-too"}}})
    with pytest.raises(LLMModelNotFound) as caught:
        await collect(get_llm(), model="no-such-model")
    assert caught.value.status_code == 502
    assert "missing-too" in caught.value.detail


async def test_failure_after_first_chunk_is_not_retried_on_fallback(backend):
    backend.script(Turn(content=["partial", "rest"], disconnect_after=1))
    with pytest.raises(LLMUpstreamError):
        await collect(get_llm())
    assert len(backend.chat_requests) == 1


async def test_slow_first_byte_times_out_as_503_within_the_limit(backend, set_config):
    set_config({"ollama": {"timeout": 0.5}, "openai_compatible": {"timeout": 0.5}})
    backend.script(Turn(content="late", first_byte_delay=3.0))
    started = time.monotonic()
    with pytest.raises(LLMUnavailable) as caught:
        await collect(get_llm())
    assert time.monotonic() - started < 2.0
    assert caught.value.status_code == 503 and "did not answer" in caught.value.detail


async def test_unreachable_host_is_503(llm_unreachable):
    with pytest.raises(LLMUnavailable) as caught:
        await collect(get_llm())
    assert llm_unreachable in caught.value.detail and "Ollama" in caught.value.detail


async def test_list_models_and_embeddings(backend):
    llm = get_llm()
    assert await llm.list_models() == backend.models
    vectors = await llm.embed(["def add(a, b)", "class Foo"], model="nomic-embed-text")
    assert len(vectors) == 2 and len(vectors[0]) == backend.embed_dim
    assert vectors[0] != vectors[1]


async def test_auto_uses_ollama_when_it_answers(fake_llm, set_config):
    set_config({"llm": {"provider": "auto"}, "ollama": {"host": fake_llm.url}})
    health = await get_llm().health()
    assert health["llm_provider"] == "ollama" and health["llm_available"] is True


async def test_auto_falls_back_to_embedded_when_ollama_is_down(llm_unreachable, set_config):
    set_config({"llm": {"provider": "auto"}})
    health = await get_llm().health()
    assert health["llm_provider"] == "embedded"


async def test_routing_picks_tier_model(ollama, set_config):
    set_config({"models": {"defaults": {"simple": "qwen2.5-coder:7b", "complex": "qwen2.5-coder:32b"}}})
    llm = get_llm()
    await collect(llm, [{"role": "user", "content": "hello"}])
    await collect(llm, [{"role": "user", "content": "Design a distributed cache architecture with "
                                                   "consistent hashing and concurrency control"}])
    assert [r["model"] for r in ollama.chat_requests] == ["qwen2.5-coder:7b", "qwen2.5-coder:32b"]


async def test_finished_streams_leave_the_connection_for_reuse(backend):
    llm = get_llm()
    for _ in range(3):
        backend.script(Turn(content=["a", "b", "c"]))
        _, deltas = await collect(llm)
        assert joined(deltas, "content") == "abc"
    assert backend.connections == 1


async def test_a_flood_comes_in_bounded_batches_whole_and_in_order(backend):
    """What piles up is handed over in groups, but no group takes a whole flood:
    the first tokens go on while the rest is still being parsed."""
    pieces = [f"{i}," for i in range(3000)]
    backend.script(Turn(content=pieces))
    chat = await get_llm().stream(MESSAGES)
    batches = [batch async for batch in chat.batches()]
    assert [delta.text for batch in batches for delta in batch] == pieces
    # Every line of either wire format is longer than 50 bytes; the first batch is the smallest.
    assert len(batches[0]) <= FIRST_BATCH_BYTES // 50
    assert max(len(batch) for batch in batches) <= BATCH_BYTES // 50


def test_pools_of_ended_event_loops_are_closed_quietly(ollama, caplog):
    """Each asyncio.run (or async_to_sync call) has its own loop and so its own
    pools; once that loop is gone, its sockets are closed, with no
    'Unclosed client session' complaint."""
    import gc
    import warnings

    async def ask():
        chat = await get_llm().stream(MESSAGES)
        return asyncio.get_running_loop(), [delta.text async for delta in chat]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first_loop, answer = asyncio.run(ask())
        assert answer == ["echo: write hello world"]
        first = llm_resources().pools_of(first_loop)
        second_loop, answer = asyncio.run(ask())
        assert answer == ["echo: write hello world"]
        gc.collect()
    assert first.sessions and first.closed
    assert llm_resources().loops() == [second_loop]  # the ended loop's swept when the next loop asked
    unclosed = [str(w.message) for w in caught if "nclosed" in str(w.message)]
    assert not unclosed and "nclosed" not in caplog.text


async def test_shutdown_closes_the_pools_and_the_next_call_opens_new_ones(backend):
    """What the server does as it stops (codegen_site.asgi): the loop's connections are closed;
    the layer still works after it (a test's reset is the same close)."""
    await collect(get_llm())  # a stream: an aiohttp session
    await get_llm().list_models()  # a whole-JSON call: an httpx client
    loop = asyncio.get_running_loop()
    pools = llm_resources().pools_of(loop)
    assert pools.sessions and pools.clients and not pools.closed
    opened = backend.connections
    await llm_resources().aclose()
    assert pools.closed and llm_resources().pools_of(loop) is None
    _, deltas = await collect(get_llm())
    assert joined(deltas, "content") == "echo: write hello world"
    assert backend.connections == opened + 1  # the stream's pooled connection went with its pool


async def test_lm_studio_api_key_goes_with_streams_and_listings(lm_studio, set_config):
    set_config({"openai_compatible": {"api_key": "sk-local-123"}})
    _, deltas = await collect(get_llm())
    assert joined(deltas, "content") == "echo: write hello world"
    assert await get_llm().list_models() == lm_studio.models
    sent = {request.path: {k.lower(): v for k, v in request.headers.items()} for request in lm_studio.requests}
    assert sent["/v1/chat/completions"]["authorization"] == "Bearer sk-local-123"
    assert sent["/v1/models"]["authorization"] == "Bearer sk-local-123"
    assert sent["/v1/chat/completions"]["content-type"].startswith("application/json")


async def test_a_line_longer_than_a_read_arrives_whole(backend):
    """One chunk of 200 KB spans many reads (4 KB, then 64 KB at a time)."""
    big = "".join(chr(0x61 + i % 26) for i in range(200_000))
    backend.script(Turn(content=["start ", big, " end"]))
    _, deltas = await collect(get_llm())
    assert [d.text for d in deltas] == ["start ", big, " end"]


@pytest.mark.parametrize("kind", ["ollama", "lm_studio"])
async def test_an_address_with_a_stray_character_is_503_not_a_crash(set_config, kind):
    """A host saved with a control character (httpx refuses to build the URL) is an unreachable LLM."""
    address = "http://127.0.0.1:9/\x15v1"
    set_config({"llm": {"provider": kind}, "ollama": {"host": address}, "openai_compatible": {"base_url": address}})
    for call in (get_llm().list_models(), get_llm().embed(["text"], model="nomic-embed-text")):
        with pytest.raises(LLMUnavailable) as caught:
            await call
        assert caught.value.status_code == 503 and "not a valid URL" in caught.value.detail


# --- what each model can do (GET /models?details=true) --------------------------------------------
async def test_model_details_are_what_the_server_reports(backend):
    """Ollama's /api/show capabilities and LM Studio's model type: the embedding model is not a chat model."""
    backend.capabilities["qwen2.5-coder:7b"] = ["completion", "tools", "thinking"]
    details = {model.name: model for model in await get_llm().model_details()}
    assert list(details) == backend.models
    assert details["nomic-embed-text"].chat is False
    assert details["qwen2.5-coder:32b"].chat is True
    if backend.kind == "ollama":
        assert details["qwen2.5-coder:7b"].capabilities == ("completion", "tools", "thinking")
        assert details["nomic-embed-text"].capabilities == ("embedding",)


async def test_model_details_are_reused_briefly(ollama, set_config):
    await get_llm().model_details()
    shows = len(ollama.show_requests)
    assert shows == len(ollama.models)
    await get_llm().model_details()
    assert len(ollama.show_requests) == shows
    set_config({"llm": {"models_cache_seconds": 0.0}})
    await get_llm().model_details()
    assert len(ollama.show_requests) == 2 * shows


async def test_an_openai_compatible_server_that_says_nothing_leaves_capabilities_unknown(lm_studio):
    lm_studio.lm_studio_types = False
    details = await get_llm().model_details()
    assert [(model.name, model.capabilities, model.chat) for model in details] == [
        (name, None, None) for name in lm_studio.models]


@pytest.mark.django_db
def test_models_endpoint_with_details(client, ollama):
    plain = client.get("/models")
    assert plain.json() == ollama.models  # unchanged without the flag
    body = client.get("/models", {"details": "true"}).json()
    assert {"name": "nomic-embed-text", "capabilities": ["embedding"], "chat": False} in body
    assert {"name": "qwen2.5-coder:7b", "capabilities": ["completion"], "chat": True} in body
    response = client.get("/models", {"details": "maybe"})
    assert response.status_code == 400 and "details" in response.json()["detail"]


@pytest.mark.django_db
def test_models_details_with_llm_down_is_503_detail(client, llm_unreachable):
    response = client.get("/models", {"details": "true"})
    assert response.status_code == 503 and llm_unreachable.removeprefix("http://") in response.json()["detail"]


@pytest.mark.django_db
def test_models_details_say_null_where_the_server_says_nothing(client, lm_studio):
    lm_studio.lm_studio_types = False
    body = client.get("/models", {"details": "true"}).json()
    assert body == [{"name": name, "capabilities": None, "chat": None} for name in lm_studio.models]
