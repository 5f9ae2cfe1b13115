"""Server side of the sandbox: admission control, the zygote client, output capture."""

from __future__ import annotations

import array
import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import logging
import os
import queue
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from codegen_site.core.config import get_config, sandbox_ceilings, within_ceilings
from codegen_site.core.errors import ServiceBusy, ServiceUnavailable
from codegen_site.sandbox import verdict
from codegen_site.sandbox.result import SandboxResult, TestOutcome

log = logging.getLogger(__name__)

ZYGOTE_SCRIPT = Path(__file__).with_name("_zygote.py")

# keys fixed when the zygote starts (the rest are read per run)
ZYGOTE_KEYS = ("uid_base", "uid_count", "uid_slots", "force_audit_hook")
RUN_KEYS = ("cpu_seconds", "memory_mb", "max_processes", "max_file_mb", "max_open_files", "disk_mb", "per_run_netns")
SECCOMP_MESSAGE = "Blocked by the sandbox: a forbidden system call (seccomp)"


class SandboxBusy(ServiceBusy):
    """All run slots are busy and the wait queue is full."""


class SandboxUnavailable(ServiceUnavailable, detail="The code sandbox is unavailable"):
    """The runner could not start (a setup error on this machine, not the caller's fault)."""


# ---------------------------------------------------------------- config

_overrides: dict[str, Any] = {}


def settings() -> dict[str, Any]:
    """The [sandbox] section of config/default.toml (and its overrides), plus override_limits(),
    every limit held under its ceiling ([sandbox.ceilings])."""
    config = {**get_config()["sandbox"], **_overrides}
    config.update(within_ceilings(config, sandbox_ceilings()))
    return config


@contextlib.contextmanager
def override_limits(**values: Any):
    """Temporarily override [sandbox] settings in this process (tests, benchmarks)."""
    old = dict(_overrides)
    _overrides.update(values)
    try:
        yield
    finally:
        _overrides.clear()
        _overrides.update(old)


# ---------------------------------------------------------------- admission

class _Limiter:
    """At most max_concurrent active; up to max_waiting queued; beyond that SandboxBusy.

    Reads the limits at every call so config changes apply without a restart."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.active = 0
        self.waiting = 0

    def admit(self) -> None:
        """Reserve a place (active or waiting) or raise SandboxBusy; never blocks."""
        config = settings()
        with self._cond:
            if self.active + self.waiting >= int(config["max_concurrent"]) + int(config["max_waiting"]):
                raise SandboxBusy(f"Sandbox busy, try again shortly ({self.active} running, {self.waiting} waiting)")
            self.waiting += 1

    def acquire(self) -> None:
        """Turn an admitted reservation into an active slot, waiting for one if needed."""
        with self._cond:
            while self.active >= int(settings()["max_concurrent"]):
                self._cond.wait(0.5)
            self.waiting -= 1
            self.active += 1

    def cancel(self) -> None:
        with self._cond:
            self.waiting -= 1
            self._cond.notify()

    def release(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify()


_limiter = _Limiter()


# ---------------------------------------------------------------- zygote client

def _clean_env() -> dict[str, str]:
    # Nothing from the server's environment except what an interpreter needs.
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "MALLOC_ARENA_MAX": "2", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}


class _Zygote:
    def __init__(self, config: dict) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.owner_pid = os.getpid()
        self.settings = {key: config[key] for key in ZYGOTE_KEYS}
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

    def _recv_exact(self, size: int) -> bytes:
        buffer = bytearray()
        while len(buffer) < size:
            chunk = self.sock.recv(size - len(buffer))
            if not chunk:
                raise EOFError
            buffer += chunk
        return bytes(buffer)

    def _read_loop(self) -> None:
        try:
            while True:
                (size,) = struct.unpack(">I", self._recv_exact(4))
                message = json.loads(self._recv_exact(size))
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
        data = json.dumps(message).encode()
        frame = struct.pack(">I", len(data)) + data
        with self.send_lock:
            if fds:
                sent = self.sock.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                    array.array("i", fds))])
                frame = frame[sent:]
            if frame:
                self.sock.sendall(frame)

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
    config = settings()
    with _zygote_lock:
        if _zygote is not None and _zygote.owner_pid != os.getpid():
            _zygote = None  # forked server worker: the runner belongs to the parent
        stale = _zygote is not None and _zygote.settings != {key: config[key] for key in ZYGOTE_KEYS}
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


def _socket_families(names: list[str]) -> list[int]:
    """Address family numbers for names like "AF_UNIX" (config: sandbox.socket_families)."""
    unknown = [name for name in names if name not in socket.AddressFamily.__members__]
    if unknown:
        raise SandboxUnavailable(f"sandbox.socket_families: unknown address family {', '.join(unknown)}")
    return [int(socket.AddressFamily[name]) for name in names]


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


class _Capture:
    """Head of the output plus a tail ring; the tail keeps pytest's summary visible."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.tail_max = min(8192, cap // 4)
        self.head_max = cap - self.tail_max
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_max - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.tail_max:
                del self.tail[: len(self.tail) - self.tail_max]

    def text(self) -> str:
        if self.total <= self.cap:
            raw = bytes(self.head + self.tail)
            return raw.decode("utf-8", "replace")
        omitted = self.total - len(self.head) - len(self.tail)
        return (self.head.decode("utf-8", "replace")
                + f"\n[output truncated at {self.cap} bytes: {omitted} bytes omitted]\n"
                + self.tail.decode("utf-8", "replace"))


def _poll_exit(replies: queue.Queue, timeout: float) -> dict | None:
    """The final message of a run ("exit" or "dead"); None if it has not arrived in time."""
    try:
        return replies.get(timeout=timeout) if timeout else replies.get_nowait()
    except queue.Empty:
        return None


def _execute(code: str, tests: str | None, timeout: float, config: dict) -> SandboxResult:
    try:
        return _execute_once(code, tests, timeout, config)
    except _RunnerGone:
        return _execute_once(code, tests, timeout, config)  # the runner died before the run began


class _RunnerGone(Exception):
    pass


def _execute_once(code: str, tests: str | None, timeout: float, config: dict) -> SandboxResult:
    zygote = _get_zygote()
    run_id = next(_ids)
    replies: queue.Queue = queue.Queue()
    with zygote.pending_lock:
        zygote.pending[run_id] = replies
    output_read, output_write = os.pipe2(os.O_CLOEXEC)
    limits = {key: config[key] for key in RUN_KEYS}
    limits["socket_families"] = _socket_families(config["socket_families"])
    capture = _Capture(int(config["max_output_bytes"]))
    kill_at = max(int(config["kill_output_bytes"]), capture.cap)
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
    duration = time.perf_counter() - start
    return _result(exit_message, capture, timed_out, output_killed, timeout, duration, tests, config)


def _signal_error(number: int, message: dict, config: dict) -> str:
    if number == signal.SIGXCPU or (number == signal.SIGKILL and message.get("cpu", 0) >= config["cpu_seconds"] - 0.05):
        return f"CPU time limit exceeded ({config['cpu_seconds']} s)"
    if number == signal.SIGSYS:
        return SECCOMP_MESSAGE
    name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
    return f"Killed by signal {name}"


def _result(message: dict, capture: _Capture, timed_out: bool, output_killed: bool, timeout: float,
            duration: float, tests: str | None, config: dict) -> SandboxResult:
    output = capture.text()
    if message.get("event") != "exit" or message.get("status") is None:
        reason = message.get("error") or "sandbox runner crashed"
        return SandboxResult(False, output, f"Sandbox error: {reason}", None, timed_out, duration)
    report = message.get("report") or {}
    signal_number = message.get("signal")
    exit_code = -signal_number if signal_number else message.get("exit_code")
    passed = failed = 0
    outcomes: tuple[TestOutcome, ...] = ()
    error: str | None = None
    if message.get("oom"):
        # the run's cgroup hit memory_mb: the run was ended whole, whatever it was doing
        error = f"Memory limit exceeded ({config['memory_mb']} MB for the run's processes together)"
    elif timed_out:
        error = f"Timed out after {timeout:g} s"
    elif output_killed:
        error = f"Output limit exceeded (killed after {capture.total} bytes)"
    elif signal_number:
        error = _signal_error(signal_number, message, config)
    elif report.get("exc") == "MemoryError":
        error = "Memory limit exceeded"
    elif tests is not None and report.get("done"):
        judged = verdict.judge_tests(report, tests)
        error, passed, failed, outcomes = judged.error, judged.passed, judged.failed, judged.tests
    elif tests is not None and exit_code == 0:
        # the code ended the process (os._exit, a patched exit) before pytest reported
        error = f"{verdict.TAMPERING}: the run ended before pytest reported a result"
    elif exit_code != 0:
        error = f"Exit code {exit_code}"
        if report.get("exc"):
            error += f" ({report['exc']})"
    elif report.get("forged"):
        error = f"{verdict.TAMPERING}: {report['forged']} status line(s) were not written by the sandbox"
    if error is not None and message.get("pids_refused"):
        error += f"; the run reached its process limit ({config['max_processes']} processes and threads)"
    return SandboxResult(
        success=error is None, output=output, error=error, exit_code=exit_code,
        timed_out=timed_out, duration=duration, tests_passed=passed, tests_failed=failed, tests=outcomes)


def _empty() -> SandboxResult:
    return SandboxResult(False, "", "No code provided", None, False, 0.0)


def _run_admitted(code: str, tests: str | None, timeout: float) -> SandboxResult:
    try:
        _limiter.acquire()
    except BaseException:
        _limiter.cancel()
        raise
    try:
        return _execute(code, tests, min(float(timeout), sandbox_ceilings()["timeout_seconds"]), settings())
    finally:
        _limiter.release()


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
    _limiter.admit()
    return _run_admitted(code, tests, timeout)


_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _get_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            # every admitted call gets a thread, so queued runs never starve the default pool
            config = settings()
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=max(4, int(config["max_concurrent"]) + int(config["max_waiting"])),
                thread_name_prefix="sandbox")
        return _executor


async def arun_python(code: str, tests: str | None = None, timeout: float = 30.0) -> SandboxResult:
    """Async run_python: admission is checked immediately, the run happens in a worker thread."""
    code, tests = _prepare(code, tests)
    if not code.strip():
        return _empty()
    _limiter.admit()
    loop = asyncio.get_running_loop()
    try:
        fut = loop.run_in_executor(_get_executor(), _run_admitted, code, tests, timeout)
    except BaseException:
        _limiter.cancel()
        raise
    return await fut
