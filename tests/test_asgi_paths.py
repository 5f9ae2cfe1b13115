"""The server's own request paths (codegen_site.asgi): GET /health answered in front of Django's
handler with the view's body and the same edge checks; async views without a thread per request."""

from __future__ import annotations

import asyncio
import threading

import httpx
from django.core.signals import request_started


async def asgi_get(application, path: str) -> list[dict]:
    """The messages `application` sends for a GET of `path`; the client stays until answered."""
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"host", b"testserver")], "server": ("testserver", 80), "client": ("127.0.0.1", 5000),
             "scheme": "http", "http_version": "1.1", "asgi": {"version": "3.0"}, "root_path": ""}
    sent, asked = [], asyncio.Event()

    async def receive():
        if asked.is_set():
            await asyncio.Event().wait()  # no disconnect: the request ends with its response
        asked.set()
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await application(scope, receive, send)
    return sent


def test_health_from_memory_answers_as_the_view_with_the_same_edge_checks(live_asgi, client):
    server = live_asgi()
    answer = httpx.get(server.url + "/health", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["allow"] == "GET, HEAD, OPTIONS"
    body = answer.json()
    # The same fields, in the same order, as the view gives the test client (which never takes the front path).
    assert list(body) == list(client.get("/health").json())
    assert body["status"] == "ok" and body["service"] == "codegen-ai" and body["down"] == {}

    refused = httpx.get(server.url + "/health", headers={"Host": "evil.example"}, timeout=10)
    assert refused.status_code == 400 and "Host" in refused.json()["detail"]
    foreign = httpx.get(server.url + "/health", headers={"Origin": "http://evil.example"}, timeout=10)
    assert foreign.status_code == 403 and "cross-origin" in foreign.json()["detail"]
    assert httpx.get(server.url + "/health", headers={"Origin": server.url}, timeout=10).status_code == 200

    # What the front path does not take goes to Django, which answers as for any path.
    for accept in ("application/json", "*/*", "text/html, application/*;q=0.5"):
        assert httpx.get(server.url + "/health", headers={"Accept": accept}, timeout=10).status_code == 200
    for accept in ("text/html", "image/png, text/*"):
        answer = httpx.get(server.url + "/health", headers={"Accept": accept}, timeout=10)
        assert answer.status_code == 406 and "detail" in answer.json()
    assert httpx.get(server.url + "/health?format=json", timeout=10).status_code == 200
    assert httpx.get(server.url + "/health?format=xml", timeout=10).status_code == 404
    head = httpx.head(server.url + "/health", timeout=10)
    assert head.status_code == 200 and head.content == b""
    wrong = httpx.delete(server.url + "/health", timeout=10)
    assert wrong.status_code == 405 and "DELETE" in wrong.json()["detail"]


def test_health_stays_open_when_the_api_needs_a_token(live_asgi):
    server = live_asgi({"CODEGEN_API_TOKEN": "s3cret-token-for-tests"})
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200
    assert httpx.get(server.url + "/models", timeout=10).status_code == 401


def test_async_views_share_one_thread_and_sync_views_keep_one_per_request(db, settings):
    """Django's handler starts a thread per request for sync work; an async view's request-signal
    work runs on one shared thread instead (codegen_site.routes.async_paths)."""
    from codegen_site.asgi import CodegenASGIHandler
    from codegen_site.routes import async_paths

    api = {path for path in async_paths().exact if path != "/" and not path.startswith("/ui/")}
    assert api == {"/health", "/models", "/files/read", "/files/write", "/chat", "/chat/stream", "/workflow",
                   "/code/run", "/improve/analyze", "/improve/run", "/improve/change", "/improve/queue/events"}
    assert "/ui/chat" in async_paths()  # the UI's pages are async views too
    assert async_paths().prefixes == ()
    assert "/config" not in async_paths() and "/files/tree" not in async_paths()

    threads: list[str] = []

    def record(**kwargs):
        threads.append(threading.current_thread().name)

    handler = CodegenASGIHandler()

    async def requests(path: str) -> list[str]:
        threads.clear()
        assert [(await asgi_get(handler, path))[0]["status"] for _ in range(3)] == [200] * 3
        return list(threads)

    request_started.connect(record, weak=False)
    try:
        on_async = asyncio.run(requests("/health"))
        on_sync = asyncio.run(requests("/config"))
    finally:
        request_started.disconnect(record)
    assert len(on_async) == 3 and len(set(on_async)) == 1
    assert len(on_sync) == 3 and len(set(on_sync)) == 3


def test_health_in_front_of_django_hands_a_failure_to_django(db, monkeypatch, caplog):
    import codegen_site.asgi as server_app

    async def broken():
        raise RuntimeError("no answer")

    monkeypatch.setattr(server_app, "health_answer", broken)
    sent = asyncio.run(asgi_get(server_app.HealthFromMemory(server_app.django_application), "/health"))
    assert sent[0]["status"] == 200  # the view's own answer
    assert b'"service":"codegen-ai"' in sent[1]["body"]
    assert "Django answers it" in caplog.text
