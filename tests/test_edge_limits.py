"""What a client cannot make the server do before it is known to be allowed, over real
sockets (codegen_site.server): store a body over the size limit (413 from the head, or at
the limit for a chunked body), read a body it sends without the token (401 first), or get a
fresh rate-limit budget by writing its own X-Forwarded-For."""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

LIMIT = 10_000_000
BODY = 50_000_000
CHUNK = 1 << 20


def spooled_bytes(pid: int, folder: Path) -> int:
    """Bytes in the files under `folder` that process `pid` holds open. A temporary file is
    unlinked (or never linked: O_TMPFILE) while in use, so it is found through /proc, not by
    listing the folder."""
    total = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith(f"{folder}/"):
                total += os.stat(fd).st_size
        except OSError:  # closed meanwhile
            continue
    return total


class Upload:
    """A request whose body one thread sends while this one waits for the answer, watching
    what the server spools to `spool` (its TMPDIR) meanwhile."""

    def __init__(self, url: str, head: bytes, chunks, pid: int, spool: Path):
        self.sent = 0
        self.sock = socket.create_connection((urlsplit(url).hostname, urlsplit(url).port), timeout=60)
        self.sock.sendall(head)
        self.sender = threading.Thread(target=self._send, args=(chunks,), daemon=True)
        self.sender.start()
        self.answer, self.sent_at_answer, self.most_spooled = b"", None, 0
        deadline = time.monotonic() + 120  # a server that never answers fails the test, not hangs it
        while not self._complete() and time.monotonic() < deadline:
            self.most_spooled = max(self.most_spooled, spooled_bytes(pid, spool))
            # Waits for the answer, looking at the spool again every 50 ms meanwhile.
            if not select.select([self.sock], [], [], 0.05)[0]:
                continue
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if self.sent_at_answer is None:
                self.sent_at_answer = self.sent
            if not data:
                break
            self.answer += data
        self.closed_by_server = self._closed()
        self.sock.close()  # the sender, if still blocked, fails and stops
        self.sender.join(timeout=60)

    def _send(self, chunks) -> None:
        try:
            for chunk in chunks:
                self.sock.sendall(chunk)
                self.sent += len(chunk)
        except OSError:  # the server closed the connection: the rest is never sent
            pass

    def _complete(self) -> bool:
        return self._body() is not None

    def _body(self) -> bytes | None:
        """The answer's body once it is all in, else None."""
        head, found, body = self.answer.partition(b"\r\n\r\n")
        if not found:
            return None
        fields = dict(line.lower().split(b":", 1) for line in head.split(b"\r\n")[1:])
        if b"content-length" in fields:
            length = int(fields[b"content-length"])
            return body[:length] if len(body) >= length else None
        whole = b""  # chunked
        while b"\r\n" in body:
            size_line, _, rest = body.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                return whole
            whole, body = whole + rest[:size], rest[size + 2:]
        return None

    def _closed(self) -> bool:
        self.sock.settimeout(10)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    @property
    def status(self) -> int:
        return int(self.answer.split(b" ", 2)[1])

    def json(self) -> dict:
        return json.loads(self._body())


def head(url: str, *lines: str) -> bytes:
    host = urlsplit(url).netloc
    return "\r\n".join(["POST /code/run HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
                        *lines, "", ""]).encode()


def zeros(total: int):
    for start in range(0, total, CHUNK):
        yield b"0" * min(CHUNK, total - start)


def chunked(total: int):
    for piece in zeros(total):
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


@pytest.fixture
def spool(tmp_path):
    folder = tmp_path / "spool"
    folder.mkdir()
    return folder


def limited_server(live_asgi, spool: Path, limit: int = LIMIT, **env: str):
    return live_asgi({"CODEGEN_SECURITY__MAX_REQUEST_BYTES": str(limit), "TMPDIR": str(spool), **env})


# --- the size limit --------------------------------------------------------------------

def test_declared_body_over_the_limit_is_413_before_any_of_it_is_stored(live_asgi, spool):
    server = limited_server(live_asgi, spool)
    upload = Upload(server.url, head(server.url, f"Content-Length: {BODY}"), zeros(BODY), server.process.pid, spool)
    assert upload.status == 413
    assert upload.sent_at_answer < BODY  # answered while the client was still sending
    assert upload.most_spooled == 0 and list(spool.iterdir()) == []
    assert upload.json() == {"detail": f"Request body too large (limit {LIMIT} bytes)"}
    assert upload.closed_by_server
    assert httpx.get(server.url + "/health").status_code == 200


def test_a_client_waiting_for_100_continue_gets_the_refusal_alone(live_asgi, spool):
    """curl asks before it sends a large body: the answer is the 413, and no "100 Continue"
    after it inviting the body."""
    server = limited_server(live_asgi, spool)
    with socket.create_connection((urlsplit(server.url).hostname, urlsplit(server.url).port), timeout=30) as sock:
        sock.sendall(head(server.url, f"Content-Length: {BODY}", "Expect: 100-continue"))
        answer = b""
        while data := sock.recv(65536):
            answer += data
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    assert json.loads(rest.partition(b"\r\n\r\n")[2]) == {"detail": f"Request body too large (limit {LIMIT} bytes)"}


def test_chunked_body_is_cut_at_the_limit(live_asgi, spool):
    server = limited_server(live_asgi, spool)
    upload = Upload(server.url, head(server.url, "Transfer-Encoding: chunked"), chunked(BODY),
                    server.process.pid, spool)
    assert upload.status == 413
    assert upload.sent_at_answer < BODY
    assert upload.most_spooled <= LIMIT
    assert "Request body too large" in upload.json()["detail"]
    assert upload.closed_by_server


def test_bodies_up_to_the_limit_reach_the_view(live_asgi, spool):
    limit = 300_000  # past Twisted's 100 KB in-memory size, so the body is spooled as before
    server = limited_server(live_asgi, spool, limit)
    body = json.dumps({"code": "print(1)", "padding": "x" * (limit - 100)}).encode()
    assert len(body) <= limit
    headers = {"Content-Type": "application/json"}
    response = httpx.post(server.url + "/code/run", content=body, headers=headers, timeout=60)
    assert response.status_code == 200 and response.json()["output"] == "1\n"
    # Sent chunked (no length): counted as it arrives, let through within the limit.
    response = httpx.post(server.url + "/code/run", content=iter([body[:1000], body[1000:]]), headers=headers,
                          timeout=60)
    assert response.status_code == 200 and response.json()["output"] == "1\n"
    over = body + b" " * (limit - len(body) + 1)
    response = httpx.post(server.url + "/code/run", content=over, headers=headers, timeout=60)
    assert response.status_code == 413


# --- the token ---------------------------------------------------------------------------

def test_body_without_the_token_is_401_before_it_is_read(live_asgi, spool):
    server = limited_server(live_asgi, spool, limit=2 * BODY, CODEGEN_API_TOKEN="s3cret")
    for auth in ([], ["Authorization: Bearer wrong"]):
        upload = Upload(server.url, head(server.url, f"Content-Length: {BODY}", *auth), zeros(BODY),
                        server.process.pid, spool)
        assert upload.status == 401
        assert upload.sent_at_answer < BODY
        assert upload.most_spooled == 0
        assert "Authentication required" in upload.json()["detail"]
        assert b"WWW-Authenticate: Bearer" in upload.answer


def test_calls_with_the_token_and_open_paths_still_work(live_asgi, spool):
    server = limited_server(live_asgi, spool, CODEGEN_API_TOKEN="s3cret")
    token = {"Authorization": "Bearer s3cret"}
    response = httpx.post(server.url + "/code/run", json={"code": "print(1)"}, headers=token, timeout=60)
    assert response.status_code == 200 and response.json()["output"] == "1\n"
    assert httpx.post(server.url + "/code/run", json={"code": "print(1)"}, timeout=60).status_code == 401
    assert httpx.get(server.url + "/config").status_code == 401
    assert httpx.get(server.url + "/config", headers=token).status_code == 200
    assert httpx.get(server.url + "/health").status_code == 200
    # A browser page takes no token (it asks for a login); its form posts are not cut off.
    assert httpx.post(server.url + "/login", data={"username": "x", "password": "y"}).status_code != 401


# --- the rate limit's client ----------------------------------------------------------------

def llm_calls(server, count: int, forwarded: str | None = None) -> list[int]:
    """POST /chat with an empty body: the LLM throttle counts it, the view answers 400."""
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return [httpx.post(server.url + "/chat", json={}, headers=headers).status_code for _ in range(count)]


def test_made_up_forwarded_for_does_not_reset_the_llm_budget(live_asgi):
    server = live_asgi({"CODEGEN_SECURITY__RATE_LLM": "2/minute"})
    assert llm_calls(server, 3) == [400, 400, 429]
    codes = [llm_calls(server, 1, f"203.0.113.{n}")[0] for n in range(10)]
    assert codes == [429] * 10


def test_behind_a_trusted_proxy_the_last_forwarded_address_is_the_client(live_asgi):
    server = live_asgi({"CODEGEN_SECURITY__RATE_LLM": "2/minute", "CODEGEN_SECURITY__TRUSTED_PROXIES": "1"})
    assert llm_calls(server, 2, "203.0.113.7, 198.51.100.1") == [400, 400]
    # What the client wrote before the proxy's entry changes nothing.
    assert llm_calls(server, 1, "192.0.2.99, 198.51.100.1") == [429]
    assert llm_calls(server, 1, "198.51.100.1") == [429]
    # Another client behind the proxy has its own budget.
    assert llm_calls(server, 1, "203.0.113.7, 198.51.100.2") == [400]
