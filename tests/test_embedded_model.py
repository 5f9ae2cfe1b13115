"""The bundled model really generates: it is what a new user gets with no Ollama."""

import asyncio

import pytest

from codegen_site.llm import get_llm
from codegen_site.llm.providers import EmbeddedProvider, bundled_model_path


def test_bundled_gguf_is_found_in_the_installed_package():
    path = bundled_model_path()
    assert path and path.endswith(".gguf")


@pytest.fixture
def embedded(set_config):
    set_config({"llm": {"provider": "embedded"}, "embedded": {"max_tokens": 16}})


async def test_embedded_model_streams_a_short_answer(embedded):
    chat = await get_llm().stream([{"role": "user", "content": "Say hello in one word."}], max_tokens=8)
    deltas = [delta async for delta in chat]
    text = "".join(d.text for d in deltas if d.kind == "content")
    assert deltas and text.strip()
    assert chat.provider_name == "embedded" and chat.model == "smollm2-135m-instruct"


async def test_embedded_calls_are_serialised_and_both_complete(embedded):
    llm = get_llm()
    messages = [{"role": "user", "content": "Name a colour."}]
    first, second = await asyncio.gather(llm.complete(messages, max_tokens=6), llm.complete(messages, max_tokens=6))
    assert first.content.strip() and second.content.strip()


async def test_stopping_early_frees_the_model_for_the_next_call(embedded):
    llm = get_llm()
    chat = await llm.stream([{"role": "user", "content": "Count from one to fifty."}], max_tokens=16)
    async for _ in chat:
        break  # the consumer leaves after the first delta
    completion = await llm.complete([{"role": "user", "content": "Say yes."}], max_tokens=4)
    assert completion.content.strip()


def test_embedded_lists_its_model():
    provider = EmbeddedProvider()
    assert asyncio.run(provider.list_models()) == ["smollm2-135m-instruct"]
