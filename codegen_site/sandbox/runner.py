"""Server side of the sandbox: the zygote client and one run through it.

admission.py decides how many run at once, settings.py what limits they get, capture.py keeps
their output and verdict.py turns what the zygote reports into the caller's SandboxResult."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import queue
import re
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from codegen_site.core.errors import ServiceUnavailable
from codegen_site.sandbox import _wire, settings, verdict
from codegen_site.sandbox.admission import executor, limiter
from codegen_site.sandbox.capture import Capture
from codegen_site.sandbox.result import SandboxResult
from codegen_site.sandbox.settings import SandboxSettings

log = logging.getLogger(__name__)

ZYGOTE_SCRIPT = Path(__file__).with_name("_zygote.py")


class SandboxUnavailable(ServiceUnavailable, detail="The code sandbox is unavailable"):
    """The runner could not start (a setup error on this machine, not the caller's fault)."""


# ---------------------------------------------------------------- zygote client

def _clean_env() -> dict[str, str]:
    # Nothing from the server's environment except what an interpreter needs.
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "MALLOC_ARENA_MAX": "2", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}


class _Zygote:
    def __init__(self, config: SandboxSettings) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.owner_pid = os.getpid()
        self.settings = config.zygote_settings()
        self.proc = subprocess.Popen(
            [sys.executable, "-I", str(ZYGOTE_SCRIPT), str(child.fileno()), json.dumps(self.settings)],
            pass_fds=[child.fileno()], env=_clean_env(), cwd="/", stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, start_new_session=True)
        child.close()
        self.sock = parent
        self.send_lock = threading.Lock()
        self.pending: dict[int, queue.Queue] = {}
        self.pending_lock = threading.Lock()
        self.hello: dict | None = None
        self.announced = False  # whether the cgroup line of its hello was logged
        self.ready = threading.Event()
        self.dead = False
        self.reader = threading.Thread(target=self._read_loop, name="sandbox-zygote-reader", daemon=True)
        self.reader.start()

    def _read_loop(self) -> None:
        try:
            while True:
                message, _fds = _wire.receive_message(self.sock)
                if message.get("event") == "hello":
                    self.hello = message
                    self.ready.set()
                    continue
                with self.pending_lock:
                    replies = self.pending.get(message.get("id"))
                if replies is not None:
                    replies.put(message)
        except (EOFError, OSError, ValueError):
            pass
        finally:
            self.dead = True
            self.ready.set()
            with self.pending_lock:
                for replies in self.pending.values():
                    replies.put({"event": "dead"})

    def alive(self) -> bool:
        return not self.dead and self.proc.poll() is None

    def send(self, message: dict, fds: list[int] = ()) -> None:
        with self.send_lock:
            _wire.send_message(self.sock, message, fds)

    def retire(self) -> None:
        """Close once the runs in flight are done (the runner exits at EOF)."""
        def wait_and_close():
            while True:
                with self.pending_lock:
                    if not self.pending:
                        break
                time.sleep(0.1)
            self.close()
        threading.Thread(target=wait_and_close, daemon=True).start()

    def close(self) -> None:
        self.dead = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_zygote: _Zygote | None = None
_zygote_lock = threading.Lock()
_ids = itertools.count(1)


def _get_zygote() -> _Zygote:
    global _zygote
    config = settings.current()
    with _zygote_lock:
        if _zygote is not None and _zygote.owner_pid != os.getpid():
            _zygote = None  # forked server worker: the runner belongs to the parent
        stale = _zygote is not None and _zygote.settings != config.zygote_settings()
        if _zygote is None or stale or not _zygote.alive():
            if _zygote is not None:
                if not stale:
                    log.warning("sandbox runner died (exit %s); restarting", _zygote.proc.poll())
                # runs still in flight on a stale runner finish there; it exits once they are done
                _zygote.retire() if stale else _zygote.close()
            _zygote = _Zygote(config)
        zygote = _zygote
    if not zygote.ready.wait(60) or zygote.hello is None:
        raise SandboxUnavailable("The code sandbox failed to start")
    if "error" in zygote.hello:
        log.error("sandbox runner failed to start: %s", zygote.hello["error"])
        raise SandboxUnavailable(f"The code sandbox failed to start: {zygote.hello['error']}")
    if not zygote.announced:
        zygote.announced = True
        if zygote.hello.get("cgroup"):
            log.info("sandbox: %s", zygote.hello["cgroup_note"])
        else:
            log.warning("sandbox: %s", zygote.hello.get("cgroup_note"))
    return zygote


def warmup() -> None:
    """Start the runner now instead of at the first run (optional)."""
    _get_zygote()


def shutdown() -> None:
    """Stop the runner; the next run starts a fresh one."""
    global _zygote
    with _zygote_lock:
        if _zygote is not None:
            _zygote.close()
            _zygote = None


def isolation_mode() -> str:
    """"netns" (own network namespace, no network at all) or "audit-hook" (best effort)."""
    return _get_zygote().hello["mode"]


def run_cgroup() -> str | None:
    """"v2" or "v1" when each run gets a cgroup of its own (memory_mb and max_processes hold
    for all its processes together), None when they hold per process only."""
    return _get_zygote().hello.get("cgroup")


def _socket_families(names: tuple[str, ...]) -> list[int]:
    """Address family numbers for names like "AF_UNIX" (config: sandbox.socket_families)."""
    unknown = [name for name in names if name not in socket.AddressFamily.__members__]
    if unknown:
        raise SandboxUnavailable(f"sandbox.socket_families: unknown address family {', '.join(unknown)}")
    return [socket.AddressFamily[name].value for name in names]


# ---------------------------------------------------------------- a run

_FENCE_RE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.S | re.M)


def strip_code_fences(text: str) -> str:
    """Unwrap ```python ... ``` (or bare ```) fenced code; text without fences is unchanged."""
    if text is None or "```" not in text:
        return text
    blocks = _FENCE_RE.findall(text)
    if not blocks:
        return text
    py = [b.strip("\n") for lang, b in blocks if lang.lower() in ("", "python", "py", "python3")]
    code = "\n\n".join(b for b in py or [b.strip("\n") for _, b in blocks] if b)
    return code + "\n" if code else ""


def _poll_exit(replies: queue.Queue, timeout: float) -> dict | None:
    """The final message of a run ("exit" or "dead"); None if it has not arrived in time."""
    try:
        return replies.get(timeout=timeout) if timeout else replies.get_nowait()
    except queue.Empty:
        return None


def _execute(code: str, tests: str | None, timeout: float, config: SandboxSettings) -> SandboxResult:
    try:
        return _execute_once(code, tests, timeout, config)
    except _RunnerGone:
        return _execute_once(code, tests, timeout, config)  # the runner died before the run began


class _RunnerGone(Exception):
    pass


def _execute_once(code: str, tests: str | None, timeout: float, config: SandboxSettings) -> SandboxResult:
    zygote = _get_zygote()
    run_id = next(_ids)
    replies: queue.Queue = queue.Queue()
    with zygote.pending_lock:
        zygote.pending[run_id] = replies
    output_read, output_write = os.pipe2(os.O_CLOEXEC)
    limits = {**config.run_limits(), "socket_families": _socket_families(config.socket_families)}
    capture = Capture(config.max_output_bytes)
    kill_at = max(config.kill_output_bytes, capture.cap)
    timed_out = output_killed = False
    exit_message: dict | None = None
    start = time.perf_counter()
    try:
        try:
            zygote.send({"op": "run", "id": run_id, "code": code, "tests": tests, "limits": limits}, [output_write])
        except OSError as exc:
            zygote.dead = True
            raise _RunnerGone from exc
        finally:
            os.close(output_write)
        deadline = start + timeout
        killed_at: float | None = None
        while True:
            now = time.perf_counter()
            if killed_at is None and now >= deadline:
                timed_out = True
                killed_at = now
                zygote.send({"op": "kill", "id": run_id})
            if killed_at is not None and now - killed_at > 5:
                break  # something outside our reach holds the pipe open
            if exit_message is None:
                exit_message = _poll_exit(replies, 0)
            wait = 0.25 if killed_at is not None or exit_message is not None else max(0.0, min(deadline - now, 0.5))
            ready, _, _ = select.select([output_read], [], [], wait)
            if not ready:
                if exit_message is not None:
                    break  # exited, but an escaped process keeps the pipe open
                continue
            data = os.read(output_read, 1 << 16)
            if not data:
                break
            capture.feed(data)
            if capture.total > kill_at and killed_at is None:
                output_killed = True
                killed_at = time.perf_counter()
                zygote.send({"op": "kill", "id": run_id})
        if exit_message is None:
            exit_message = _poll_exit(replies, max(1.0, deadline + 5 - time.perf_counter())) or {"event": "lost"}
    finally:
        os.close(output_read)
        with zygote.pending_lock:
            zygote.pending.pop(run_id, None)
    end = verdict.RunEnd(capture.text(), capture.total, timed_out, output_killed, timeout,
                         time.perf_counter() - start)
    return verdict.run_result(exit_message, end, tests, config)


def _empty() -> SandboxResult:
    return SandboxResult(False, "", "No code provided", None, False, 0.0)


def _run_admitted(code: str, tests: str | None, timeout: float) -> SandboxResult:
    try:
        limiter.acquire()
    except BaseException:
        limiter.cancel()
        raise
    try:
        config = settings.current()
        return _execute(code, tests, min(timeout, config.ceilings.timeout_seconds), config)
    finally:
        limiter.release()


def _prepare(code: str, tests: str | None) -> tuple[str, str | None]:
    code = strip_code_fences(code or "")
    if tests is not None:
        tests = strip_code_fences(tests)
        if not tests.strip():
            tests = None
    return code, tests


def run_python(code: str, tests: str | None = None, timeout: float = 30.0) -> SandboxResult:
    """Run code (and optional pytest tests) in the sandbox; blocks the calling thread."""
    code, tests = _prepare(code, tests)
    if not code.strip():
        return _empty()
    limiter.admit()
    return _run_admitted(code, tests, timeout)


async def arun_python(code: str, tests: str | None = None, timeout: float = 30.0) -> SandboxResult:
    """Async run_python: admission is checked immediately, the run happens in a worker thread."""
    code, tests = _prepare(code, tests)
    if not code.strip():
        return _empty()
    limiter.admit()
    loop = asyncio.get_running_loop()
    try:
        fut = loop.run_in_executor(executor(), _run_admitted, code, tests, timeout)
    except BaseException:
        limiter.cancel()
        raise
    return await fut
