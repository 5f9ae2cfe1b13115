"""A scripted LLM server for tests and benchmarks: a real HTTP/1.1 server in a
thread speaking Ollama's native API (NDJSON streaming) and the OpenAI wire format
(SSE streaming), with failure modes.

    with FakeLLMServer() as llm:
        llm.script(Turn(content=["Hel", "lo"]), Turn(status=500, error="boom"))
        ... point the app at llm.url (Ollama) or llm.openai_url (LM Studio) ...
        assert llm.chat_requests[0]["messages"][-1]["content"] == "hi"

Chat requests take scripted turns in order; when the script is empty,
`responder(request_json)` decides (if set), else the reply echoes the last
user message. Requests for a model not in `models` get the backend's own
not-found error.

Like Ollama, /api/show gives a model's `context_length` (in model_info; set
`context_length`, or `context_lengths[model]` for one model) and its `capabilities`
(`capabilities[model]`, else ["completion"]; nomic-embed-text is an embedding model), and
each chat request's prompt and `options.num_ctx` are kept (`prompts`, `num_ctx`). Like LM
Studio, /api/v0/models gives each model's `type` (llm or embeddings, from the same table).

Load: `in_flight` chat requests now and the most at once (`max_in_flight`); with `capacity`
set, a chat request beyond it is refused the way Ollama refuses one over its queue (503
"server busy"; `busy_status` for another status); `slots` is the parallelism the server
reports at /props (as llama.cpp's server does; None: no /props). GET /_fake/stats gives
these figures to a benchmark that runs the server in a process of its own (POST
/_fake/stats/reset starts them again).
"""

from __future__ import annotations

import hashlib
import json
import math
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Turn:
    content: list[str] | str = "ok"
    thinking: list[str] | str = field(default_factory=list)
    status: int = 200
    error: str = ""
    first_byte_delay: float = 0.0
    chunk_delay: float = 0.0
    # Close the connection after this many content chunks, without finishing.
    disconnect_after: int | None = None

    def content_chunks(self) -> list[str]:
        return [self.content] if isinstance(self.content, str) else list(self.content)

    def thinking_chunks(self) -> list[str]:
        return [self.thinking] if isinstance(self.thinking, str) else list(self.thinking)


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: dict | None
    headers: dict


def fake_embedding(text: str, dim: int) -> list[float]:
    """Deterministic unit vector from the text's words, so similar texts are close."""
    vector = [0.0] * dim
    for word in text.lower().split():
        digest = hashlib.sha256(word.encode()).digest()
        vector[digest[0] % dim] += 1.0 if digest[1] % 2 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def setup(self):
        super().setup()
        # Like Ollama (Go sets TCP_NODELAY): small stream writes go out at once
        # instead of waiting on the client's delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.owner._lock:
            self.server.owner.connections += 1

    def log_message(self, *args):  # keep test output quiet
        pass

    # --- plumbing ------------------------------------------------------------
    def _body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _send_json(self, status: int, payload) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _record(self, body) -> None:
        self.server.owner._record(RecordedRequest(self.command, self.path, body, dict(self.headers)))

    # --- routes --------------------------------------------------------------
    def do_GET(self):
        self._record(None)
        owner = self.server.owner
        if self.path in ("/api/tags", "/v1/models", "/api/v0/models") and owner.listing_delay:
            time.sleep(owner.listing_delay)
        if self.path in ("/", "/api/version"):
            self._send_json(200, {"version": "0.0.0-fake"})
        elif self.path in ("/api/tags", "/v1/models") and owner.listing_status != 200:
            self._send_json(owner.listing_status, {"error": "scripted listing failure"})
        elif self.path == "/api/tags":
            self._send_json(200, {"models": [{"name": m, "model": m, "size": 1} for m in owner.models]})
        elif self.path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in owner.models]})
        elif self.path == "/api/v0/models" and owner.lm_studio_types:
            self._send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model",
                 "type": "embeddings" if "embedding" in owner.capabilities_of(m) else "llm"} for m in owner.models]})
        elif self.path == "/_fake/stats":
            # for a benchmark that runs the server in its own process
            with owner._lock:
                stats = {"in_flight": owner.in_flight, "max_in_flight": owner.max_in_flight,
                         "refused": owner.refused, "finished_streams": owner.finished_streams}
            self._send_json(200, stats)
        elif self.path == "/props" and owner.slots is not None:
            self._send_json(200, {"total_slots": owner.slots})
        else:
            self._send_json(404, {"error": f"no route {self.path}"})

    def do_POST(self):
        body = self._body()
        self._record(body)
        if self.path == "/_fake/stats/reset":
            with self.server.owner._lock:
                owner = self.server.owner
                owner.max_in_flight, owner.refused, owner.finished_streams = owner.in_flight, 0, 0
            self._send_json(200, {})
        elif body is None:
            self._send_json(400, {"error": "invalid JSON body"})
        elif self.path == "/api/chat":
            self._chat(body, wire="ollama")
        elif self.path == "/v1/chat/completions":
            self._chat(body, wire="openai")
        elif self.path == "/api/show":
            self._show(body)
        elif self.path == "/api/embed":
            self._embed(body, wire="ollama")
        elif self.path == "/v1/embeddings":
            self._embed(body, wire="openai")
        else:
            self._send_json(404, {"error": f"no route {self.path}"})

    def _not_found(self, model: str, wire: str) -> None:
        if wire == "ollama":
            self._send_json(404, {"error": f"model '{model}' not found, try pulling it first"})
        else:
            self._send_json(404, {"error": {"message": f"model '{model}' not found", "type": "not_found_error"}})

    def _show(self, body: dict) -> None:
        owner = self.server.owner
        model = body.get("model") or body.get("name") or ""
        if model not in owner.models:
            return self._not_found(model, "ollama")
        if owner.show_status != 200:
            return self._send_json(owner.show_status, {"error": "scripted show failure"})
        length = owner.context_lengths.get(model, owner.context_length)
        info = {"general.architecture": "qwen2", "general.parameter_count": 7_615_616_512}
        if length is not None:
            info["qwen2.context_length"] = length
        self._send_json(200, {"modelfile": f"FROM {model}", "parameters": "", "template": "{{ .Prompt }}",
                              "details": {"format": "gguf", "family": "qwen2"}, "model_info": info,
                              "capabilities": owner.capabilities_of(model)})

    def _embed(self, body: dict, wire: str) -> None:
        owner = self.server.owner
        model = body.get("model", "")
        if model not in owner.models:
            return self._not_found(model, wire)
        texts = body.get("input", [])
        texts = [texts] if isinstance(texts, str) else texts
        vectors = [fake_embedding(text, owner.embed_dim) for text in texts]
        if wire == "ollama":
            self._send_json(200, {"model": model, "embeddings": vectors})
        else:
            self._send_json(200, {"object": "list", "model": model,
                                  "data": [{"object": "embedding", "index": i, "embedding": v}
                                           for i, v in enumerate(vectors)]})

    def _chat(self, body: dict, wire: str) -> None:
        owner = self.server.owner
        if not owner._enter():
            error = "server busy, please try again.  maximum pending requests exceeded"
            return self._send_json(owner.busy_status, {"error": error} if wire == "ollama"
                                   else {"error": {"message": error, "type": "server_busy"}})
        try:
            self._answer(body, wire)
        finally:
            owner._leave()

    def _answer(self, body: dict, wire: str) -> None:
        owner = self.server.owner
        model = body.get("model", "")
        turn = owner._next_turn(body)
        if turn.first_byte_delay:
            time.sleep(turn.first_byte_delay)
        if model not in owner.models:
            return self._not_found(model, wire)
        if turn.status != 200:
            payload = {"error": turn.error or "scripted failure"}
            if wire == "openai":
                payload = {"error": {"message": turn.error or "scripted failure", "type": "server_error"}}
            return self._send_json(turn.status, payload)
        if body.get("stream") is False:
            content = "".join(turn.content_chunks())
            thinking = "".join(turn.thinking_chunks())
            if wire == "ollama":
                message = {"role": "assistant", "content": content}
                if thinking:
                    message["thinking"] = thinking
                return self._send_json(200, {"model": model, "message": message, "done": True})
            return self._send_json(200, {"model": model, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]})
        try:
            self._stream(model, turn, wire)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            owner._client_gone()
        finally:
            self.close_connection = True if turn.disconnect_after is not None else self.close_connection

    def _stream(self, model: str, turn: Turn, wire: str) -> None:
        owner = self.server.owner
        ollama = wire == "ollama"
        self._start_chunked("application/x-ndjson" if ollama else "text/event-stream")

        def frame(payload) -> bytes:
            text = json.dumps(payload)
            return (text + "\n").encode() if ollama else f"data: {text}\n\n".encode()

        def piece(text: str, thinking: bool) -> bytes:
            if ollama:
                message = {"role": "assistant", "content": "" if thinking else text}
                if thinking:
                    message["thinking"] = text
                return frame({"model": model, "message": message, "done": False})
            delta = {"reasoning_content": text} if thinking else {"content": text}
            return frame({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                          "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})

        for text in turn.thinking_chunks():
            self._chunk(piece(text, thinking=True))
            if turn.chunk_delay:
                time.sleep(turn.chunk_delay)
        for index, text in enumerate(turn.content_chunks()):
            if turn.disconnect_after is not None and index >= turn.disconnect_after:
                owner._record_abort()
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._chunk(piece(text, thinking=False))
            if turn.chunk_delay:
                time.sleep(turn.chunk_delay)
        if ollama:
            self._chunk(frame({"model": model, "message": {"role": "assistant", "content": ""}, "done": True,
                               "done_reason": "stop"}))
        else:
            self._chunk(frame({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
            self._chunk(b"data: [DONE]\n\n")
        self._end_chunked()
        owner._record_finished()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, owner: "FakeLLMServer"):
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request, client_address):
        # A client that hung up (timeouts, cancelled streams) is expected here.
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            self.owner._client_gone()
            return
        super().handle_error(request, client_address)


class FakeLLMServer:
    def __init__(self, models=("qwen2.5-coder:7b", "qwen2.5-coder:32b", "local", "nomic-embed-text"),
                 embed_dim: int = 16):
        self.models = list(models)
        self.embed_dim = embed_dim
        self.responder: Callable[[dict], Turn] | None = None
        # Status for /api/tags and /v1/models (set to 500 to make listing fail).
        self.listing_status = 200
        # Seconds /api/tags and /v1/models wait before answering (a slow backend).
        self.listing_delay = 0.0
        # What /api/show says of a model's context length (None: model_info without one), per model
        # in context_lengths, else context_length; show_status other than 200 makes it fail.
        self.context_length: int | None = 32768
        self.context_lengths: dict[str, int | None] = {}
        self.show_status = 200
        # What /api/show reports a model can do, per model (others: completion only).
        self.capabilities: dict[str, list[str]] = {"nomic-embed-text": ["embedding"]}
        # Whether /api/v0/models answers (LM Studio's own listing, with each model's type).
        self.lm_studio_types = True
        # Chat requests served at once before the next is refused (None: no limit).
        self.capacity: int | None = None
        self.busy_status = 503
        # The parallelism reported at /props (None: no /props, like Ollama).
        self.slots: int | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.refused = 0
        self.requests: list[RecordedRequest] = []
        self.client_disconnects = 0
        # TCP connections accepted (keep-alive reuse shows as fewer connections than requests).
        self.connections = 0
        self.aborted_streams = 0
        self.finished_streams = 0
        self.client_gone = threading.Event()
        self._turns: "queue.Queue[Turn]" = queue.Queue()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------
    def start(self) -> "FakeLLMServer":
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    # --- scripting -----------------------------------------------------------
    def script(self, *turns: Turn) -> None:
        for turn in turns:
            self._turns.put(turn)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.client_disconnects = self.aborted_streams = self.finished_streams = self.connections = 0
            self.max_in_flight = self.in_flight
            self.refused = 0
            self.client_gone.clear()
        while not self._turns.empty():
            self._turns.get_nowait()
        self.responder = None

    @property
    def chat_requests(self) -> list[dict]:
        with self._lock:
            return [r.body for r in self.requests if r.path in ("/api/chat", "/v1/chat/completions")]

    @property
    def prompts(self) -> list[list[dict]]:
        """The messages of each chat request, in order."""
        return [body.get("messages", []) for body in self.chat_requests]

    @property
    def num_ctx(self) -> list[int | None]:
        """The options.num_ctx of each chat request (None where it had none)."""
        return [(body.get("options") or {}).get("num_ctx") for body in self.chat_requests]

    @property
    def show_requests(self) -> list[dict]:
        with self._lock:
            return [r.body for r in self.requests if r.path == "/api/show"]

    def capabilities_of(self, model: str) -> list[str]:
        return list(self.capabilities.get(model, ["completion"]))

    def _enter(self) -> bool:
        """Count a chat request in; False (and counted as refused) when the server is at capacity."""
        with self._lock:
            if self.capacity is not None and self.in_flight >= self.capacity:
                self.refused += 1
                return False
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return True

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _next_turn(self, body: dict) -> Turn:
        try:
            return self._turns.get_nowait()
        except queue.Empty:
            pass
        if self.responder is not None:
            return self.responder(body)
        users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
        return Turn(content=f"echo: {users[-1] if users else ''}")

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _client_gone(self) -> None:
        with self._lock:
            self.client_disconnects += 1
        self.client_gone.set()

    def _record_abort(self) -> None:
        with self._lock:
            self.aborted_streams += 1

    def _record_finished(self) -> None:
        with self._lock:
            self.finished_streams += 1
