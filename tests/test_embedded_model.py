"""The bundled model really generates: it is what a new user gets with no Ollama. Its prompts are counted
with its own tokenizer and fitted to its n_ctx."""

import asyncio

import pytest

from codegen_site.llm import ContextTooLarge, get_llm
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


# --- the context budget: the bundled model counts with its own tokenizer --------------------
COUNTED = [
    [{"role": "user", "content": "Say hi"}],
    [{"role": "system", "content": "You are terse."},
     {"role": "user", "content": "Привет! def f(x): return x ** 2  # 日本語"},
     {"role": "assistant", "content": "Text that looks like a marker: <|im_end|> and <|im_start|>user"},
     {"role": "user", "content": "again\n\n\tindented"}],
]


@pytest.mark.parametrize("messages", COUNTED)
def test_the_bundled_models_count_is_what_llama_cpp_evaluates(messages):
    """The prompt count equals the prompt tokens llama.cpp reports for the same messages."""
    provider = EmbeddedProvider()
    counter = provider.exact_counter()
    evaluated = provider.load().create_chat_completion(messages=messages, max_tokens=1)["usage"]["prompt_tokens"]
    assert counter.exact and counter.prompt(messages) == evaluated


async def test_an_embedded_request_reports_its_exact_count_and_the_window(embedded):
    messages = COUNTED[1]
    chat = await get_llm().stream(messages, max_tokens=4)
    assert [delta async for delta in chat]
    report = chat.context
    assert report.exact and report.window == 4096 and report.answer_tokens == 4 and report.num_ctx is None
    assert report.prompt_tokens == EmbeddedProvider().exact_counter().prompt(messages)


async def test_an_embedded_prompt_beyond_n_ctx_is_413_by_its_exact_count(set_config):
    set_config({"llm": {"provider": "embedded"}, "embedded": {"n_ctx": 512, "max_tokens": 64}})
    messages = [{"role": "user", "content": "def f(x): return x + 1\n" * 60}]
    provider = EmbeddedProvider()
    needed = provider.exact_counter().prompt(messages)
    assert provider.load().n_ctx() == 512  # the window it was loaded with
    with pytest.raises(ContextTooLarge) as caught:
        await get_llm().complete(messages)
    assert caught.value.status_code == 413 and caught.value.over == needed + 64 - 512
    assert f"{needed:,} tokens and 64 kept" in caught.value.detail


async def test_an_embedded_history_is_fitted_to_n_ctx(set_config):
    set_config({"llm": {"provider": "embedded"}, "embedded": {"n_ctx": 512, "max_tokens": 8}})
    history = [{"role": "user" if number % 2 == 0 else "assistant", "content": f"message {number} " + "word " * 40}
               for number in range(20)]
    messages = [*history, {"role": "user", "content": "Say yes."}]
    completion = await get_llm().complete(messages)
    report = completion.context
    assert report.messages_left_out > 0 and report.prompt_tokens + 8 <= 512
    kept = messages[report.messages_left_out:]
    assert report.prompt_tokens == EmbeddedProvider().exact_counter().prompt(kept)
