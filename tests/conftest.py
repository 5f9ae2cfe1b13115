from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from codegen_site.core import config as app_config
from codegen_site.llm import clear_probe_cache
from tests.fakes.llm_server import FakeLLMServer
from tests.live_server import free_port
from tests.polling import wait_for

# The browser tests' fixtures (chromium through Playwright, a shared live server).
pytest_plugins = ["tests.ui_browser"]


@pytest.fixture(autouse=True)
def isolated_state(tmp_path, monkeypatch):
    """Each test gets its own writable config dir, an empty cache (throttle counters) and no saved
    settings (a PATCH's row is rolled back with the test's database, this process forgets it too)."""
    from django.core.cache import cache

    monkeypatch.setenv("CODEGEN_CONFIG_DIR", str(tmp_path / "config"))
    cache.clear()
    app_config.forget_saved()
    yield
    cache.clear()
    app_config.forget_saved()


@pytest.fixture
def set_config():
    """Override parts of the app config for one test: set_config({"llm": {"provider": "ollama"}})."""
    original = app_config.get_config()

    def apply(overrides: dict) -> dict:
        app_config.override(overrides)
        clear_probe_cache()
        return app_config.get_config()

    yield apply
    app_config.restore(original)
    clear_probe_cache()


@pytest.fixture
def fake_llm():
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def ollama(fake_llm, set_config):
    """The app pointed at the scripted server as Ollama."""
    set_config({"llm": {"provider": "ollama"},
                "ollama": {"host": fake_llm.url, "timeout": 5.0, "connect_timeout": 1.0}})
    return fake_llm


@pytest.fixture
def lm_studio(fake_llm, set_config):
    """The app pointed at the scripted server as LM Studio (OpenAI wire format)."""
    set_config({"llm": {"provider": "lm_studio"},
                "openai_compatible": {"base_url": fake_llm.openai_url, "timeout": 5.0, "connect_timeout": 1.0}})
    return fake_llm


@pytest.fixture
def unused_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_asgi(transactional_db):
    """Start daphne serving the app against this test's database.

    Call it with environment overrides (the server reads config from the
    environment, e.g. {"CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__HOST": url});
    it returns the server (`.url`, `.log()`), stopped after the test."""
    from django.db import connection

    from tests.live_server import LiveASGIServer

    servers = []

    def start(env: dict[str, str] | None = None, cwd=None) -> LiveASGIServer:
        server = LiveASGIServer(env or {}, connection.settings_dict["NAME"], cwd=cwd)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def llm_unreachable(set_config, unused_port):
    """The app pointed at Ollama on a port where nothing listens (connections refused at once).
    Returns that address, which the 503's detail names; a test may set llm.provider to auto after."""
    address = f"http://127.0.0.1:{unused_port}"
    set_config({"llm": {"provider": "ollama"},
                "ollama": {"host": address, "timeout": 2.0, "connect_timeout": 0.5}})
    return address


@pytest.fixture
def ws(tmp_path, settings) -> Path:
    """The workspace root for one test; its data dir sits beside it (tmp_path/data)."""
    root = tmp_path / "ws"
    root.mkdir()
    settings.WORKSPACE_ROOT = root
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    return root


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory beside the workspace holding a file no client may reach."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text("SECRET\n")
    return directory


@pytest.fixture
def chroma_server(tmp_path):
    """A Chroma server of the test's own (`chroma run`, as docs/operations.md starts one), stopped at the end."""
    port = free_port()
    log = (tmp_path / "chroma.log").open("ab")
    try:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "chroma"), "run", "--path", str(tmp_path / "chroma-server"),
             "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"}, stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        assert process.poll() is None, (tmp_path / "chroma.log").read_text()[-2000:]
        try:
            return httpx.get(url + "/api/v2/heartbeat", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(answering, timeout=30, what="the Chroma server")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
