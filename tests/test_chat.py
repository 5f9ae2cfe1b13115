"""POST /chat, /chat/stream (in-process ASGI), /conversations, trimming, admin, schema."""

import json
import uuid

import pytest
from django.test import override_settings
from rest_framework.settings import api_settings

from chat.models import Conversation, Message
from chat.services.context import left_out_note
from tests.fakes.llm_server import Turn
from tests.sse import parse_sse

pytestmark = pytest.mark.django_db

SYSTEM = "You are a test assistant."


@pytest.fixture
def chat_llm(ollama, set_config):
    """Scripted Ollama plus a known system prompt."""
    set_config({"chat": {"system_prompt": SYSTEM}})
    return ollama


def post_chat(client, **body):
    return client.post("/chat", json.dumps(body), content_type="application/json")


def sent_messages(llm, index=-1):
    return [(m["role"], m["content"]) for m in llm.chat_requests[index]["messages"]]


# --- POST /chat ----------------------------------------------------------------
def test_chat_answers_and_stores_both_sides(client, chat_llm):
    chat_llm.script(Turn(content=["Recursion is ", "a function calling itself."]))
    response = post_chat(client, message="Explain recursion")
    assert response.status_code == 200
    body = response.json()
    assert body["content"] == "Recursion is a function calling itself."
    assert body["model"] == chat_llm.chat_requests[0]["model"]
    conversation = Conversation.objects.get(id=body["conversation_id"])
    assert conversation.title == "Explain recursion"
    stored = [(m.role, m.content, m.finished) for m in conversation.messages.all()]
    assert stored == [("user", "Explain recursion", True),
                      ("assistant", "Recursion is a function calling itself.", True)]
    assert sent_messages(chat_llm) == [("system", SYSTEM), ("user", "Explain recursion")]


def test_history_persists_across_calls(client, chat_llm):
    first = post_chat(client, message="My name is Ada").json()
    second = post_chat(client, message="What is my name?", conversation_id=first["conversation_id"]).json()
    assert second["conversation_id"] == first["conversation_id"]
    assert sent_messages(chat_llm) == [
        ("system", SYSTEM), ("user", "My name is Ada"), ("assistant", "echo: My name is Ada"),
        ("user", "What is my name?")]
    third = client.get(f"/conversations/{first['conversation_id']}").json()
    assert [m["content"] for m in third["messages"]] == [
        "My name is Ada", "echo: My name is Ada", "What is my name?", "echo: What is my name?"]


def test_client_history_is_used_for_a_new_conversation_and_kept(client, chat_llm):
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}]
    body = post_chat(client, message="Explain recursion", history=history).json()
    assert sent_messages(chat_llm) == [("system", SYSTEM), ("user", "Hi"), ("assistant", "Hello! How can I help?"),
                                       ("user", "Explain recursion")]
    conversation = Conversation.objects.get(id=body["conversation_id"])
    assert conversation.title == "Hi"  # the first user message of the conversation
    assert conversation.messages.count() == 4


def test_client_history_is_ignored_for_a_stored_conversation(client, chat_llm):
    first = post_chat(client, message="stored question").json()
    post_chat(client, message="next", conversation_id=first["conversation_id"],
              history=[{"role": "user", "content": "forged"}])
    contents = [content for _, content in sent_messages(chat_llm)]
    assert "forged" not in contents
    assert contents == [SYSTEM, "stored question", "echo: stored question", "next"]


def test_unknown_well_formed_conversation_id_starts_that_conversation(client, chat_llm):
    chosen = str(uuid.uuid4())
    body = post_chat(client, message="hello", conversation_id=chosen).json()
    assert body["conversation_id"] == chosen
    assert Conversation.objects.filter(id=chosen).exists()


def test_history_sent_to_llm_is_trimmed_to_budget_keeping_system_prompt(client, chat_llm, set_config):
    set_config({"persistence": {"max_context_messages": 3}})
    conversation_id = None
    for number in range(4):
        body = post_chat(client, message=f"q{number}", conversation_id=conversation_id).json()
        conversation_id = body["conversation_id"]
    # Six stored messages before q3; the newest three go along with it, and the model is told of the rest.
    assert sent_messages(chat_llm) == [("system", f"{SYSTEM}\n\n{left_out_note(3)}"), ("assistant", "echo: q1"),
                                       ("user", "q2"), ("assistant", "echo: q2"), ("user", "q3")]
    assert body["context"]["history_left_out"] == 3
    # Nothing is deleted: trimming only limits what the model sees.
    assert Message.objects.filter(conversation_id=conversation_id).count() == 8


def test_client_history_is_trimmed_too(client, chat_llm, set_config):
    set_config({"persistence": {"max_context_messages": 2}})
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(6)]
    body = post_chat(client, message="now", history=history).json()
    assert sent_messages(chat_llm) == [("system", f"{SYSTEM}\n\n{left_out_note(4)}"), ("user", "m4"),
                                       ("assistant", "m5"), ("user", "now")]
    assert body["context"]["history_left_out"] == 4


def test_chat_splits_thinking_from_content(client, chat_llm):
    chat_llm.script(Turn(content=["<thi", "nk>weigh it</th", "ink>The answer"]))
    body = post_chat(client, message="think first").json()
    assert body["content"] == "The answer"
    assert body["thinking"] == "weigh it"
    answer = Message.objects.get(conversation_id=body["conversation_id"], role="assistant")
    assert (answer.content, answer.thinking) == ("The answer", "weigh it")


@pytest.mark.parametrize("body, field", [
    ({"message": ""}, "message"),
    ({"message": "   \n\t"}, "message"),
    ({}, "message"),
    ({"message": 42}, "message"),
    ({"message": "hi", "history": [{"role": "user", "content": ["x"]}]}, "history"),
    ({"message": "hi", "conversation_id": "not-a-uuid"}, "conversation_id"),
    ({"message": "hi", "conversation_id": 12}, "conversation_id"),
    ({"message": "hi", "history": "nope"}, "history"),
    ({"message": "hi", "history": [{"role": "robot", "content": "x"}]}, "history"),
    ({"message": "hi", "history": [{"role": "user"}]}, "history"),
])
def test_chat_bad_input_is_400_with_detail(client, chat_llm, body, field):
    response = post_chat(client, **body)
    assert response.status_code == 400
    payload = response.json()
    assert isinstance(payload["detail"], str) and payload["detail"]
    if field:
        assert field in payload["errors"]
    assert chat_llm.chat_requests == []
    assert not Conversation.objects.exists()


def test_chat_non_json_body_is_400(client, chat_llm):
    response = client.post("/chat", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "detail" in response.json()


def test_chat_message_longer_than_limit_is_400(client, chat_llm, set_config):
    set_config({"chat": {"max_message_chars": 10}})
    response = post_chat(client, message="x" * 11)
    assert response.status_code == 400
    assert "10" in response.json()["detail"]


def test_chat_with_llm_down_is_503_and_keeps_the_question(client, llm_unreachable):
    response = post_chat(client, message="anyone there?")
    assert response.status_code == 503
    assert llm_unreachable in response.json()["detail"]
    assert list(Message.objects.values_list("role", "content")) == [("user", "anyone there?")]


def test_chat_upstream_error_is_502(client, chat_llm):
    chat_llm.script(Turn(status=500, error="kaboom"), Turn(status=500, error="kaboom"))
    response = post_chat(client, message="hi")
    assert response.status_code == 502
    assert "kaboom" in response.json()["detail"]


def test_chat_works_with_lm_studio_wire_format(client, lm_studio):
    lm_studio.script(Turn(content=["from ", "LM Studio"], thinking=["reasoning"]))
    body = post_chat(client, message="hi").json()
    assert (body["content"], body["thinking"], body["model"]) == ("from LM Studio", "reasoning", "local")


def test_chat_is_rate_limited(client, chat_llm):
    rates = {**api_settings.DEFAULT_THROTTLE_RATES, "llm": "2/minute"}
    with override_settings(REST_FRAMEWORK={**_rest_framework(), "DEFAULT_THROTTLE_RATES": rates}):
        api_settings.reload()
        try:
            codes = [post_chat(client, message="hi").status_code for _ in range(3)]
        finally:
            api_settings.reload()
    assert codes == [200, 200, 429]


def _rest_framework():
    from django.conf import settings

    return settings.REST_FRAMEWORK


# --- /conversations ------------------------------------------------------------
def test_conversations_list_newest_first_with_title_and_count(client, chat_llm):
    older = post_chat(client, message="first topic").json()["conversation_id"]
    post_chat(client, message="more", conversation_id=older)
    newer = post_chat(client, message="second topic").json()["conversation_id"]
    rows = client.get("/conversations").json()
    assert [row["id"] for row in rows] == [newer, older]
    assert {row["id"]: (row["title"], row["message_count"]) for row in rows} == {
        older: ("first topic", 4), newer: ("second topic", 2)}
    assert all(row["created_at"].endswith("Z") for row in rows)
    assert [row["id"] for row in client.get("/conversations?limit=1&offset=1").json()] == [older]


@pytest.mark.parametrize("query, field", [("limit=zero", "limit"), ("offset=7908935515579686584320", "offset"),
                                          ("offset=-1", "offset")])
def test_conversations_list_bad_paging_is_400(client, query, field):
    response = client.get(f"/conversations?{query}")
    assert response.status_code == 400 and field in response.json()["detail"]


def test_conversation_detail_shape(client, chat_llm):
    conversation_id = post_chat(client, message="hi").json()["conversation_id"]
    body = client.get(f"/conversations/{conversation_id}").json()
    assert body["id"] == conversation_id
    assert [(m["role"], m["content"]) for m in body["messages"]] == [("user", "hi"), ("assistant", "echo: hi")]
    assert body["messages"][1]["finished"] is True and body["messages"][1]["model"]


@pytest.mark.parametrize("path, detail", [(f"/conversations/{uuid.uuid4()}", "Conversation not found"),
                                          ("/conversations/not-a-uuid", "Not found")])  # no route matches
def test_unknown_conversation_is_404_detail(client, path, detail):
    for response in (client.get(path), client.delete(path)):
        assert response.status_code == 404
        assert response.json() == {"detail": detail}


def test_delete_conversation_removes_its_messages(client, chat_llm):
    conversation_id = post_chat(client, message="hi").json()["conversation_id"]
    assert client.delete(f"/conversations/{conversation_id}").status_code == 204
    assert not Message.objects.exists()
    again = client.delete(f"/conversations/{conversation_id}")
    assert again.status_code == 404 and again.json() == {"detail": "Conversation not found"}


def test_rename_conversation_sets_its_title(client, chat_llm):
    conversation_id = post_chat(client, message="hi").json()["conversation_id"]
    before = Conversation.objects.get(id=conversation_id).updated_at
    response = client.patch(f"/conversations/{conversation_id}", {"title": "  Greetings  "},
                            content_type="application/json")
    assert response.status_code == 200
    assert response.json()["title"] == "Greetings" and response.json()["id"] == conversation_id
    renamed = Conversation.objects.get(id=conversation_id)
    assert renamed.title == "Greetings" and renamed.updated_at > before
    assert client.get("/conversations").json()[0]["title"] == "Greetings"


@pytest.mark.parametrize("body, field", [({"title": ""}, "title"), ({"title": "x" * 121}, "title"),
                                         ({"title": 5}, "title"), ({"title": "  "}, "title")])
def test_rename_with_a_bad_title_is_400(client, chat_llm, body, field):
    conversation_id = post_chat(client, message="hi").json()["conversation_id"]
    response = client.patch(f"/conversations/{conversation_id}", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["detail"].startswith(field)
    assert Conversation.objects.get(id=conversation_id).title == "hi"


def test_patch_without_a_title_changes_nothing(client, chat_llm):
    conversation_id = post_chat(client, message="hi").json()["conversation_id"]
    response = client.patch(f"/conversations/{conversation_id}", {}, content_type="application/json")
    assert response.status_code == 200 and response.json()["title"] == "hi"


def test_rename_unknown_conversation_is_404(client):
    response = client.patch(f"/conversations/{uuid.uuid4()}", {"title": "x"}, content_type="application/json")
    assert response.status_code == 404 and response.json() == {"detail": "Conversation not found"}


def test_chosen_model_answers_the_turn(client, chat_llm):
    chat_llm.models.append("picked-model")
    body = post_chat(client, message="hi", model="picked-model").json()
    assert chat_llm.chat_requests[-1]["model"] == "picked-model" and body["model"] == "picked-model"
    post_chat(client, message="hi again", model="")  # blank: the table's choice
    assert chat_llm.chat_requests[-1]["model"] != "picked-model"


# --- admin, schema ---------------------------------------------------------------
def test_admin_pages_load_for_superuser(client, chat_llm, django_user_model):
    user = django_user_model.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    conversation_id = post_chat(client, message="How do closures work?").json()["conversation_id"]
    other = post_chat(client, message="Unrelated").json()["conversation_id"]
    changelist = client.get("/admin/chat/conversation/")
    assert changelist.status_code == 200
    assert "How do closures work?" in changelist.content.decode()
    # Search reaches message text too (the assistant's echo here).
    found = client.get("/admin/chat/conversation/", {"q": "echo: How do closures"}).content.decode()
    assert conversation_id in found and other not in found
    this_year = str(Conversation.objects.get(id=other).created_at.year)
    by_year = client.get("/admin/chat/conversation/", {"created_at__year": this_year})
    assert by_year.status_code == 200 and other in by_year.content.decode()
    change = client.get(f"/admin/chat/conversation/{conversation_id}/change/")
    assert change.status_code == 200 and "echo: How do closures work?" in change.content.decode()
    assert client.get("/admin/chat/message/").status_code == 200


def test_admin_requires_login(client):
    response = client.get("/admin/chat/conversation/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_schema_lists_chat_endpoints(client):
    paths = client.get("/api/schema", HTTP_ACCEPT="application/json").json()["paths"]
    assert {"/chat", "/chat/stream", "/conversations", "/conversations/{conversation_id}"} <= set(paths)
    assert {"get", "post"} <= set(paths["/chat/stream"])
    assert "delete" in paths["/conversations/{conversation_id}"]


# --- /chat/stream in-process (ASGI handler, async client) ----------------------------
async def read_stream(async_client, path, **kwargs):
    response = await async_client.get(path, **kwargs)
    assert response.status_code == 200, response
    assert response["Content-Type"].startswith("text/event-stream")
    body = b"".join([part async for part in response.streaming_content])
    return parse_sse(body.decode())


@pytest.mark.django_db(transaction=True)
async def test_stream_sends_chunks_then_done_and_stores_answer(async_client, chat_llm):
    chat_llm.script(Turn(content=["Hel", "lo", " there"], thinking=["hmm ", "ok"]))
    events = await read_stream(async_client, "/chat/stream", query_params={"message": "greet me"},
                               headers={"Accept": "text/event-stream"})
    assert events[:5] == [("thinking", "hmm "), ("thinking", "ok"), ("content", "Hel"), ("content", "lo"),
                          ("content", " there")]
    kind, done = events[-1]
    assert kind == "done" and len(events) == 6
    assert done["model"] == chat_llm.chat_requests[0]["model"]
    conversation = (await async_client.get(f"/conversations/{done['conversation_id']}")).json()
    assert [(m["role"], m["content"], m["thinking"], m["finished"]) for m in conversation["messages"]] == [
        ("user", "greet me", "", True), ("assistant", "Hello there", "hmm ok", True)]


@pytest.mark.django_db(transaction=True)
async def test_stream_continues_a_conversation(async_client, chat_llm):
    first = await read_stream(async_client, "/chat/stream", query_params={"message": "one"})
    conversation_id = first[-1][1]["conversation_id"]
    second = await read_stream(async_client, "/chat/stream",
                               query_params={"message": "two", "conversation_id": conversation_id})
    kind, done = second[-1]
    assert kind == "done" and done.pop("context")["history_left_out"] == 0
    assert done == {"conversation_id": conversation_id, "model": chat_llm.chat_requests[1]["model"], "sources": []}
    assert sent_messages(chat_llm) == [("system", SYSTEM), ("user", "one"), ("assistant", "echo: one"),
                                       ("user", "two")]


@pytest.mark.django_db(transaction=True)
async def test_stream_splits_think_tags_across_chunks(async_client, chat_llm):
    chat_llm.script(Turn(content=["<th", "ink>let me", " see</thi", "nk>42"]))
    events = await read_stream(async_client, "/chat/stream", query_params={"message": "answer?"})
    thinking = "".join(text for kind, text in events if kind == "thinking")
    content = "".join(text for kind, text in events if kind == "content")
    assert (thinking, content) == ("let me see", "42")


@pytest.mark.django_db(transaction=True)
async def test_stream_upstream_500_is_an_error_event(async_client, chat_llm):
    chat_llm.script(Turn(status=500, error="GPU on fire"), Turn(status=500, error="GPU on fire"))
    events = await read_stream(async_client, "/chat/stream", query_params={"message": "hi"})
    assert [kind for kind, _ in events] == ["error"]
    error = events[0][1]
    assert error["status"] == 502 and "GPU on fire" in error["detail"]
    conversation = (await async_client.get(f"/conversations/{error['conversation_id']}")).json()
    # The question is kept; no empty answer is invented.
    assert [(m["role"], m["content"]) for m in conversation["messages"]] == [("user", "hi")]


@pytest.mark.django_db(transaction=True)
async def test_stream_upstream_disconnect_mid_way_is_error_and_partial_answer_is_unfinished(async_client,
                                                                                            chat_llm):
    chat_llm.script(Turn(content=["par", "tial", "never"], disconnect_after=2))
    events = await read_stream(async_client, "/chat/stream", query_params={"message": "hi"})
    assert [kind for kind, _ in events] == ["content", "content", "error"]
    error = events[-1][1]
    assert error["status"] == 502
    conversation = (await async_client.get(f"/conversations/{error['conversation_id']}")).json()
    answer = conversation["messages"][-1]
    assert (answer["role"], answer["content"], answer["finished"]) == ("assistant", "partial", False)


@pytest.mark.django_db(transaction=True)
async def test_stream_llm_unreachable_is_error_event_503(async_client, llm_unreachable):
    events = await read_stream(async_client, "/chat/stream", query_params={"message": "hi"})
    assert [kind for kind, _ in events] == ["error"] and events[0][1]["status"] == 503


@pytest.mark.django_db(transaction=True)
async def test_stream_post_takes_the_chat_body(async_client, chat_llm):
    history = [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "noted"}]
    response = await async_client.post("/chat/stream", {"message": "now", "history": history},
                                       content_type="application/json")
    assert response.status_code == 200
    events = parse_sse(b"".join([part async for part in response.streaming_content]).decode())
    assert "".join(text for kind, text in events if kind == "content") == "echo: now"
    assert sent_messages(chat_llm)[1:] == [("user", "earlier"), ("assistant", "noted"), ("user", "now")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("query, field", [({}, "message"), ({"message": " "}, "message"),
                                          ({"message": "hi", "conversation_id": "xyz"}, "conversation_id")])
async def test_stream_bad_input_is_400_json_before_streaming(async_client, chat_llm, query, field):
    response = await async_client.get("/chat/stream", query_params=query, headers={"Accept": "text/event-stream"})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert field in response.json()["errors"]
    assert chat_llm.chat_requests == []


@pytest.mark.django_db(transaction=True)
async def test_stream_unknown_well_formed_id_starts_that_conversation(async_client, chat_llm):
    chosen = str(uuid.uuid4())
    events = await read_stream(async_client, "/chat/stream", query_params={"message": "hi", "conversation_id": chosen})
    assert events[-1][0] == "done" and events[-1][1]["conversation_id"] == chosen
    assert (await async_client.get(f"/conversations/{chosen}")).status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_stream_names_the_fallback_model_that_answered(async_client, chat_llm, set_config):
    set_config({"models": {"ollama": {"simple": "missing-model", "medium": "missing-model",
                                      "complex": "missing-model", "fallback": "qwen2.5-coder:7b"}}})
    events = await read_stream(async_client, "/chat/stream", query_params={"message": "hi"})
    assert [body["model"] for body in chat_llm.chat_requests] == ["missing-model", "qwen2.5-coder:7b"]
    done = events[-1][1]
    assert done["model"] == "qwen2.5-coder:7b"
    conversation = (await async_client.get(f"/conversations/{done['conversation_id']}")).json()
    assert conversation["messages"][-1]["model"] == "qwen2.5-coder:7b"


def test_chat_with_the_bundled_model(client, set_config):
    """A real (tiny) generation through the embedded llama.cpp model."""
    set_config({"llm": {"provider": "embedded", "max_tokens": 8}})
    body = post_chat(client, message="Say hello.").json()
    assert body["model"] == "smollm2-135m-instruct"
    assert body["content"].strip()
    answer = Message.objects.get(conversation_id=body["conversation_id"], role="assistant")
    assert answer.content == body["content"] and answer.finished
