"""/chat/stream over real sockets (daphne): client hang-ups cancel the upstream
request, and many streams are open upstream at the same time."""

import asyncio
import sqlite3
import threading

import httpx

from tests.fakes.llm_server import Turn
from tests.polling import wait_for
from tests.sse import parse_sse


def start_server(live_asgi, fake_llm, **env):
    return live_asgi({"CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__HOST": fake_llm.url,
                      "CODEGEN_OLLAMA__TIMEOUT": "10", **env})


def test_client_disconnect_cancels_upstream_and_keeps_partial_answer(live_asgi, fake_llm):
    server = start_server(live_asgi, fake_llm)
    fake_llm.script(Turn(content=[f"w{i} " for i in range(3000)], chunk_delay=0.005))
    seen = []
    with httpx.Client(timeout=10) as http:
        with http.stream("GET", server.url + "/chat/stream", params={"message": "write a lot"}) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data:"):
                    seen.append(line)
                if len(seen) >= 3:
                    break  # leaving the block closes the connection mid-stream
    assert fake_llm.client_gone.wait(10), "the upstream LLM request was not cancelled"
    assert fake_llm.finished_streams == 0

    def stored_answer():
        rows = httpx.get(server.url + "/conversations").json()
        if not rows:
            return None
        messages = httpx.get(f"{server.url}/conversations/{rows[0]['id']}").json()["messages"]
        return messages[1] if len(messages) > 1 else None

    answer = wait_for(stored_answer, timeout=10, what="the cut-off answer stored")
    assert answer["role"] == "assistant" and answer["finished"] is False
    # Everything the client saw was stored, and the stream stopped well before the end.
    assert answer["content"].startswith("w0 w1 w2 ") and len(answer["content"].split()) < 3000
    assert "Traceback" not in server.log()


def test_a_stopping_server_closes_its_resources_and_exits_cleanly(live_asgi, fake_llm):
    """codegen_site.asgi closes what the process kept (the LLM connection pools among it) as
    daphne shuts down, after the open requests are ended, without an error."""
    server = start_server(live_asgi, fake_llm)
    response = httpx.get(server.url + "/chat/stream", params={"message": "hi"}, timeout=10)
    assert parse_sse(response.text)[-1][0] == "done"  # a pooled upstream connection is open
    server.stop()
    log = server.log_path.read_text()
    assert server.process.returncode == 0, log
    assert "Resources closed" in log
    assert "Could not close" not in log and "Traceback" not in log and "nclosed" not in log


def test_eventsource_accept_header_and_done_event_over_daphne(live_asgi, fake_llm):
    server = start_server(live_asgi, fake_llm)
    fake_llm.script(Turn(content=["line one\n", "line two"], thinking="because"))
    response = httpx.get(server.url + "/chat/stream", params={"message": "two lines"},
                         headers={"Accept": "text/event-stream"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events = parse_sse(response.text)
    assert events[0] == ("thinking", "because")
    assert "".join(text for kind, text in events if kind == "content") == "line one\nline two"
    assert events[-1][0] == "done"


def test_fast_stream_arrives_whole_and_in_order(live_asgi, fake_llm):
    """Frames that pile up are sent in batches; none may be lost or reordered."""
    server = start_server(live_asgi, fake_llm)
    pieces = [f"{i}," for i in range(2000)]
    fake_llm.script(Turn(content=pieces, thinking=["a", "b"]))
    response = httpx.get(server.url + "/chat/stream", params={"message": "count"}, timeout=30)
    events = parse_sse(response.text)
    assert [text for kind, text in events if kind == "content"] == pieces
    assert [text for kind, text in events if kind == "thinking"] == ["a", "b"]
    assert events[-1][0] == "done" and [kind for kind, _ in events].count("done") == 1
    conversation = httpx.get(f"{server.url}/conversations/{events[-1][1]['conversation_id']}").json()
    assert conversation["messages"][-1]["content"] == "".join(pieces)


def test_many_streams_are_open_upstream_at_once(live_asgi, fake_llm):
    """Each stream blocks upstream until all of them have arrived: if the server
    relayed streams on a bounded pool of threads, the barrier would break."""
    count = 24
    # The upstream connection pool (llm.max_connections) is the only intended limit.
    server = start_server(live_asgi, fake_llm, CODEGEN_LLM__MAX_CONNECTIONS="64")
    barrier = threading.Barrier(count, timeout=15)

    def responder(body):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return Turn(status=500, error="not all streams were open at once")
        return Turn(content=["all ", "together"])

    fake_llm.responder = responder

    async def run():
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=count)) as http:
            async def one(number):
                response = await http.get(server.url + "/chat/stream", params={"message": f"m{number}"})
                return parse_sse(response.text)

            return await asyncio.gather(*(one(number) for number in range(count)))

    results = asyncio.run(run())
    assert [events[-1][0] for events in results] == ["done"] * count, results
    assert len({events[-1][1]["conversation_id"] for events in results}) == count
    assert len(httpx.get(server.url + "/conversations").json()) == count


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("Threads:")).split()[1])


def test_open_streams_hold_no_thread_each(live_asgi, fake_llm):
    """Two dozen streams open at once add no thread per stream to the server (pooled
    database threads are bounded by the executor, not by the number of streams)."""
    server = start_server(live_asgi, fake_llm, CODEGEN_LLM__MAX_CONNECTIONS="40")
    streams = 24
    fake_llm.responder = lambda body: Turn(content=[f"t{i} " for i in range(200)], chunk_delay=0.02)
    httpx.get(server.url + "/chat/stream", params={"message": "warm up"}, timeout=30)  # pools, runner threads
    before = _threads(server.process.pid)
    opened = threading.Barrier(streams + 1)
    errors = []

    def read_one(index):
        try:
            with httpx.stream("GET", server.url + "/chat/stream", params={"message": f"q{index}"},
                              timeout=30) as response:
                lines = response.iter_lines()
                next(line for line in lines if line.startswith("data:"))  # the stream is open
                opened.wait(timeout=20)
                for _ in lines:
                    pass
        except Exception as exc:  # reported below
            errors.append(exc)
            opened.abort()

    readers = [threading.Thread(target=read_one, args=(i,)) for i in range(streams)]
    for reader in readers:
        reader.start()
    opened.wait(timeout=20)
    during = _threads(server.process.pid)
    for reader in readers:
        reader.join(timeout=30)
    assert not errors
    assert during - before < streams // 2, f"{before} threads before, {during} with {streams} streams open"


def test_question_is_stored_before_the_model_is_asked(live_asgi, fake_llm):
    """The model sees the question only once it is in the database (a crash or a
    hang-up mid-answer cannot lose it)."""
    from django.db import connection

    database = connection.settings_dict["NAME"]
    server = start_server(live_asgi, fake_llm)
    stored_when_asked = []

    def responder(body):
        with sqlite3.connect(database) as db:
            stored_when_asked.extend(row[0] for row in db.execute(
                "SELECT content FROM chat_message WHERE role = 'user'"))
        return Turn(content=["noted"])

    fake_llm.responder = responder
    for question in ("first question", "second question"):
        response = httpx.get(server.url + "/chat/stream", params={"message": question}, timeout=10)
        assert parse_sse(response.text)[-1][0] == "done"
    assert stored_when_asked == ["first question", "first question", "second question"], server.log()
