"""The context budget: every request fits its model's window, says what it left out, and asks Ollama for a
context size (num_ctx) that holds its prompt and answer; against the scripted LLM server, whose /api/show
gives a context length the test chooses, and the bundled model's tokenizer for the estimate's calibration."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from chat.models import Conversation, Message
from chat.services.context import CITE_INSTRUCTION, left_out_note
from codegen_site.llm import ContextTooLarge, get_llm
from codegen_site.llm.budget import ESTIMATE, context_size, estimate_tokens
from codegen_site.llm.providers import EmbeddedProvider
from tests.fakes.llm_server import Turn
from tests.sse import parse_sse

SYSTEM = "You are a test assistant."
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def small_window(ollama, set_config):
    """Ollama whose model holds 2048 tokens, answers of 256 tokens, every stored message readable."""
    ollama.context_length = 2048
    set_config({"chat": {"system_prompt": SYSTEM}, "llm": {"max_tokens": 256},
                "persistence": {"max_context_messages": 500}})
    return ollama


def post_chat(client, **body):
    return client.post("/chat", json.dumps(body), content_type="application/json")


def conversation_of(turns: int) -> tuple[Conversation, list[dict]]:
    """A stored conversation of `turns` questions and answers, each long enough that a few fill 2048 tokens."""
    conversation = Conversation.objects.create(title="long talk")
    history = []
    for number in range(turns):
        history.append({"role": "user", "content": f"question {number}: " + "why does the loop stop early? " * 5})
        history.append({"role": "assistant", "content": f"answer {number}: " + "the index is off by one here. " * 10})
    Message.objects.bulk_create(Message(conversation=conversation, **item) for item in history)
    return conversation, history


# --- chat history within the window -------------------------------------------------------
@pytest.mark.django_db
def test_a_60_turn_conversation_sends_the_newest_turns_that_fit_and_says_how_many_it_left_out(client, small_window):
    conversation, history = conversation_of(60)
    body = post_chat(client, message="and now?", conversation_id=str(conversation.id)).json()

    sent = small_window.prompts[-1]
    context = body["context"]
    left_out = context["history_left_out"]
    kept = sent[1:-1]
    assert 0 < len(kept) < len(history) and left_out == len(history) - len(kept)
    # The newest stretch, in order, after the system prompt with the note; the question last.
    assert kept == history[-len(kept):]
    assert sent[0] == {"role": "system", "content": f"{SYSTEM}\n\n{left_out_note(left_out)}"}
    assert sent[-1] == {"role": "user", "content": "and now?"}
    # Within the window with the answer's share, and as full as it could be: the next older message would not fit.
    assert context["window"] == 2048 and context["answer_tokens"] == 256 and context["exact"] is False
    assert context["prompt_tokens"] == ESTIMATE.prompt(sent)
    assert context["prompt_tokens"] + context["answer_tokens"] <= context["window"]
    assert context["prompt_tokens"] + ESTIMATE.message(history[-len(kept) - 1]) > 2048 - 256
    assert context["chunks_left_out"] == 0 and body["sources"] == []
    # Ollama is asked for a context that holds prompt and answer, no more than the model has.
    assert context["prompt_tokens"] + 256 <= small_window.num_ctx[-1] <= 2048
    # Nothing is deleted: the window limits what the model sees.
    assert Message.objects.filter(conversation=conversation).count() == 122


@pytest.mark.django_db
def test_the_message_count_cap_still_applies_and_its_cut_is_counted_too(client, small_window, set_config):
    set_config({"persistence": {"max_context_messages": 4}})
    conversation, history = conversation_of(60)
    body = post_chat(client, message="and now?", conversation_id=str(conversation.id)).json()
    assert small_window.prompts[-1][1:-1] == history[-4:]
    assert body["context"]["history_left_out"] == 116


@pytest.mark.django_db(transaction=True)
async def test_the_stream_done_event_carries_the_same_accounting(async_client, small_window):
    from asgiref.sync import sync_to_async

    conversation, history = await sync_to_async(conversation_of)(60)
    response = await async_client.get("/chat/stream", query_params={"message": "and now?",
                                                                    "conversation_id": str(conversation.id)})
    events = parse_sse(b"".join([part async for part in response.streaming_content]).decode())
    kind, done = events[-1]
    assert kind == "done"
    kept = small_window.prompts[-1][1:-1]
    assert done["context"]["history_left_out"] == len(history) - len(kept) > 0
    assert done["context"]["prompt_tokens"] == ESTIMATE.prompt(small_window.prompts[-1])
    assert done["context"]["window"] == 2048


@pytest.mark.django_db
def test_a_client_history_for_a_new_conversation_is_fitted_the_same_way(client, small_window):
    history = [{"role": "user" if number % 2 == 0 else "assistant", "content": f"m{number} " + "word " * 120}
               for number in range(40)]
    body = post_chat(client, message="now", history=history).json()
    kept = small_window.prompts[-1][1:-1]
    assert kept == history[-len(kept):] and body["context"]["history_left_out"] == 40 - len(kept) > 0
    # The whole client history is stored all the same.
    assert Message.objects.filter(conversation_id=body["conversation_id"]).count() == 42


# --- a message that cannot fit -----------------------------------------------------------
def over_by(message: str, window: int = 2048, answer: int = 256) -> int:
    base = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": message}]
    return ESTIMATE.prompt(base) - (window - answer)


@pytest.mark.django_db
def test_a_message_too_long_for_the_window_is_413_saying_by_how_many_tokens(client, small_window):
    message = "explain this code: " + "x = compute(x) + 1\n" * 400
    response = post_chat(client, message=message)
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert f"{over_by(message):,} tokens over" in detail and "2,048" in detail
    # Refused before anything is stored or asked.
    assert small_window.chat_requests == [] and not Message.objects.exists()


@pytest.mark.django_db(transaction=True)
async def test_a_message_too_long_for_the_stream_is_a_413_json_answer_before_streaming(async_client, small_window):
    message = "Привет! " * 1500  # Cyrillic: about a token a letter
    response = await async_client.post("/chat/stream", {"message": message}, content_type="application/json")
    assert response.status_code == 413 and response["Content-Type"] == "application/json"
    assert f"{over_by(message):,} tokens over" in response.json()["detail"]
    assert small_window.chat_requests == []


@pytest.mark.django_db
def test_a_message_that_fits_alone_goes_with_no_history(client, small_window):
    conversation, _ = conversation_of(3)
    # Room for the message, none for any earlier one (each takes more than 40 tokens).
    message = next(message for lines in range(1000) if -40 < over_by(message := "explain: " + "y = f(y)\n" * lines) < 0)
    body = post_chat(client, message=message, conversation_id=str(conversation.id)).json()
    assert body["context"]["history_left_out"] == 6
    assert [item["role"] for item in small_window.prompts[-1]] == ["system", "user"]


# --- @codebase chunks within the window ------------------------------------------------------
@pytest.fixture
def shop(set_config):
    """Six modules of one function each, alike in size and all about shipping, indexed with the scripted
    embedder (Ollama's /api/embed)."""
    root = Path(settings.WORKSPACE_ROOT) / f"shop-{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True)
    for number in range(6):
        body = "".join(f"    cost += rate_{line} * weight  # shipping step {line}\n" for line in range(14))
        (root / f"shipping_{number}.py").write_text(
            f'def shipping_cost_{number}(weight):\n    """Shipping cost, variant {number}."""\n'
            f"    cost = 0\n{body}    return cost\n")
    # No relevance cut-off (rag.min_score 0): the scripted embedder's vectors mean nothing, the budget is the point.
    set_config({"rag": {"collection": f"test-{uuid.uuid4().hex[:12]}", "chroma_url": "", "top_k": 6, "min_score": 0},
                "embeddings": {"provider": "ollama", "model": "nomic-embed-text"}})
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.django_db(transaction=True)
def test_codebase_chunks_beyond_the_budget_are_left_out_whole_best_first_and_counted(client, small_window, shop,
                                                                                     set_config):
    from rag import services as rag

    rag.index_path(shop.relative_to(settings.WORKSPACE_ROOT).as_posix())
    question = "how is the shipping cost computed?"
    ranked = rag.retrieve(question, 6)
    assert len(ranked) == 6
    small_window.context_length = 1024  # a few of the six fit
    set_config({"llm": {"max_tokens": 128}})

    body = post_chat(client, message=f"@codebase {question}").json()
    sources, context = body["sources"], body["context"]
    assert 0 < len(sources) < 6 and context["chunks_left_out"] == 6 - len(sources)
    # The best ones, in their order; each whole, with its path:line header.
    assert [source["path"] for source in sources] == [chunk["path"] for chunk in ranked[:len(sources)]]
    code = small_window.prompts[-1][-2]
    assert code["role"] == "system" and code["content"].startswith(CITE_INSTRUCTION)
    for chunk in ranked[:len(sources)]:
        assert f"# {chunk['path']}:{chunk['start_line']}-{chunk['end_line']}\n{chunk['content'].strip()}" in code["content"]
    for chunk in ranked[len(sources):]:
        assert chunk["path"] not in code["content"]
    assert context["prompt_tokens"] + context["answer_tokens"] <= context["window"] == 1024


# --- the LLM layer: every request, whoever makes it -------------------------------------------
MESSAGES = [{"role": "user", "content": "write hello world"}]


async def test_ollama_requests_carry_a_num_ctx_that_holds_prompt_and_answer(ollama, set_config):
    ollama.context_length = 131072
    set_config({"ollama": {"min_context_tokens": 4096, "max_context_tokens": 32768}})
    llm = get_llm()
    sizes = []
    for chars in (100, 200, 30_000, 60_000):
        message = [{"role": "user", "content": "y" * chars}]
        chat = await llm.stream(message, max_tokens=1024)
        assert [delta async for delta in chat]
        report = chat.context
        sizes.append(ollama.num_ctx[-1])
        assert report.num_ctx == ollama.num_ctx[-1]
        assert report.prompt_tokens == ESTIMATE.prompt(message) and report.answer_tokens == 1024
        assert report.prompt_tokens + 1024 <= report.num_ctx <= report.window == 32768
        assert ollama.chat_requests[-1]["options"]["num_predict"] == 1024
    # Sizes double from the smallest, so short requests share one (Ollama reloads a model whose size changes).
    assert sizes == [4096, 4096, 16384, 32768]
    # The model's context length is asked once.
    assert len(ollama.show_requests) == 1 and ollama.show_requests[0]["model"] == "qwen2.5-coder:7b"


@pytest.mark.parametrize("length, window", [(8192, 8192), (131072, 32768), (None, 4096)])
async def test_the_window_is_the_models_context_length_capped_by_the_setting(ollama, set_config, length, window):
    ollama.context_length = length
    set_config({"ollama": {"min_context_tokens": 4096, "max_context_tokens": 32768}})
    budget = await get_llm().budget()
    assert budget.window == window and budget.model == "qwen2.5-coder:7b"


async def test_a_failed_show_is_asked_again_and_meanwhile_the_smallest_size_is_assumed(ollama, set_config):
    set_config({"ollama": {"min_context_tokens": 2048}})
    ollama.show_status = 500
    assert (await get_llm().budget()).window == 2048
    ollama.show_status = 200
    assert (await get_llm().budget()).window == 32768
    assert len(ollama.show_requests) == 2


async def test_the_layer_leaves_out_the_oldest_messages_and_says_so(ollama):
    ollama.context_length = 1024
    history = []
    for number in range(20):
        history += [{"role": "user", "content": f"q{number} " + "a" * 300},
                    {"role": "assistant", "content": f"a{number} " + "b" * 300}]
    messages = [{"role": "system", "content": "Be brief."}, *history, {"role": "user", "content": "last"}]
    completion = await get_llm().complete(messages, max_tokens=200)
    sent = ollama.prompts[-1]
    report = completion.context
    assert sent[0] == messages[0] and sent[-1] == messages[-1]
    assert sent[1:-1] == history[len(history) - len(sent) + 2:]
    assert report.messages_left_out == len(messages) - len(sent) > 0
    assert report.prompt_tokens == ESTIMATE.prompt(sent) and report.prompt_tokens + 200 <= 1024


async def test_a_prompt_that_cannot_fit_is_413_and_is_never_sent(backend_kind, request):
    server = request.getfixturevalue(backend_kind)
    server.context_length = 1024
    request.getfixturevalue("set_config")({"openai_compatible": {"context_tokens": 1024}})
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "z" * 9000}]
    with pytest.raises(ContextTooLarge) as caught:
        await get_llm().complete(messages, max_tokens=100)
    over = ESTIMATE.prompt(messages) + 100 - 1024
    assert caught.value.status_code == 413 and caught.value.over == over
    assert f"{over:,} tokens over" in caught.value.detail
    assert server.chat_requests == []


@pytest.fixture(params=["ollama", "lm_studio"])
def backend_kind(request):
    return request.param


async def test_lm_studio_is_fitted_to_the_configured_window_and_asked_for_no_size(lm_studio, set_config):
    set_config({"openai_compatible": {"context_tokens": 3000}})
    chat = await get_llm().stream(MESSAGES, max_tokens=500)
    assert [delta async for delta in chat]
    assert chat.context.window == 3000 and chat.context.num_ctx is None and chat.context.answer_tokens == 500
    body = lm_studio.chat_requests[-1]
    assert "num_ctx" not in json.dumps(body) and body["max_tokens"] == 500
    assert not lm_studio.show_requests


async def test_a_fallback_model_is_fitted_to_its_own_window(ollama, set_config):
    set_config({"models": {"defaults": {"fallback": "qwen2.5-coder:32b"}}})
    ollama.context_lengths = {"qwen2.5-coder:32b": 2048}
    ollama.script(Turn(status=404, error="model 'qwen2.5-coder:7b' not found"))
    chat = await get_llm().stream(MESSAGES, model="qwen2.5-coder:7b", max_tokens=100)
    assert [delta async for delta in chat]
    assert chat.model == "qwen2.5-coder:32b" and chat.context.window == 2048
    assert ollama.num_ctx == [4096, 2048]


# --- the estimate's calibration ---------------------------------------------------------------
def corpus(*patterns: str) -> list[str]:
    return [path.read_text(encoding="utf-8") for pattern in patterns for path in sorted(ROOT.glob(pattern))]


@pytest.mark.parametrize("kind, patterns", [
    ("code", ("codegen_site/**/*.py", "chat/**/*.py", "workflow/**/*.py", "static/**/*.js")),
    ("prose", ("docs/*.md", "README.md")),
])
def test_the_estimate_errs_high_against_the_bundled_models_tokenizer(kind, patterns):
    """The HTTP providers' models cannot be run here; the estimate stays above a small vocabulary's count
    (SmolLM2, 49 K tokens, 3.4 characters a token on code) and within half again of it."""
    counter = EmbeddedProvider().exact_counter()
    assert counter.exact
    texts = corpus(*patterns)
    assert len(texts) > 3
    estimated = sum(estimate_tokens(text) for text in texts)
    exact = sum(counter.text(text) for text in texts)
    assert exact < estimated < 1.5 * exact, (kind, estimated / exact)


def test_the_estimate_counts_non_ascii_by_its_bytes():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abc" * 10) == 10
    assert estimate_tokens("Привет") == 6  # 12 bytes, 2 a token
    assert estimate_tokens("日本語") == 5  # 9 bytes
    assert estimate_tokens("x\ud800y") == 2  # a lone surrogate is counted, not an error


def test_context_sizes_double_from_the_smallest_and_stop_at_the_window():
    assert context_size(100, 32768, 4096) == 4096
    assert context_size(4097, 32768, 4096) == 8192
    assert context_size(20000, 16384, 4096) == 16384
    assert context_size(100, 2048, 4096) == 2048


# --- the settings ---------------------------------------------------------------------------
@pytest.mark.django_db
def test_the_window_settings_are_editable_within_their_ranges(client):
    patch = {"ollama": {"min_context_tokens": 2048, "max_context_tokens": 8192},
             "openai_compatible": {"context_tokens": 16384}}
    response = client.patch("/config", json.dumps(patch), content_type="application/json")
    assert response.status_code == 200, response.content
    shown = client.get("/config").json()
    assert shown["ollama"]["max_context_tokens"] == 8192 and shown["openai_compatible"]["context_tokens"] == 16384
    for bad in ({"ollama": {"max_context_tokens": 10}}, {"openai_compatible": {"context_tokens": 10**9}},
                {"ollama": {"min_context_tokens": "big"}}):
        response = client.patch("/config", json.dumps(bad), content_type="application/json")
        assert response.status_code == 400, bad
