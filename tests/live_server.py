"""A real server (codegen_site.server, daphne as `make run` starts it) in a subprocess,
for tests that need real sockets: SSE streaming, client disconnects, concurrency,
bodies refused before they are read."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.polling import wait_for

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveASGIServer:
    def __init__(self, env: dict[str, str], db_name: str | None = None,
                 settings_module: str = "codegen_site.settings_test", cwd: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        child_env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module, "PYTHONUNBUFFERED": "1", **env}
        if db_name:
            child_env["CODEGEN_TEST_SERVER_DB"] = db_name
        self.log_path = Path(os.environ["CODEGEN_TEST_ROOT"]) / f"daphne-{self.port}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "codegen_site.server", "-b", "127.0.0.1", "-p", str(self.port)],
            cwd=cwd or ROOT, env=child_env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        try:
            wait_for(self._answers, timeout=timeout, what="the server's /health")
        except AssertionError:
            log = self.log()  # before stop(), which closes it
            self.stop()
            raise RuntimeError(f"the server did not answer within {timeout} s:\n{log}") from None

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{self.log()}")
        try:
            httpx.get(self.url + "/health", timeout=1.0)
        except httpx.HTTPError:
            return False
        return True

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
