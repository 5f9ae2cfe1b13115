"""Real sandbox runs (no mocks). Needs no database."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from codegen_site import sandbox
from codegen_site.sandbox import SandboxBusy, _wire, arun_python, run_python, strip_code_fences
from codegen_site.sandbox.admission import limiter
from tests.polling import wait_for
from tests.sandbox_helpers import run_concurrently, wait_until_gone

pytestmark = pytest.mark.timeout(30)

ADD = "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n"


def test_simple_print():
    r = run_python("print('hello')")
    assert r.success and r.error is None and r.exit_code == 0
    assert r.output == "hello\n"
    assert not r.timed_out and r.duration < 5


def test_exception_reports_traceback():
    r = run_python("def f():\n    return 1 / 0\n\nf()\n")
    assert not r.success and r.exit_code == 1
    assert "Traceback (most recent call last)" in r.output
    assert "ZeroDivisionError: division by zero" in r.output
    assert r.error.startswith("Exit code 1")


def test_syntax_error():
    r = run_python("def broken(:\n    pass\n")
    assert not r.success and "SyntaxError" in r.output


def test_sys_exit_code():
    r = run_python("import sys\nprint('bye')\nsys.exit(3)")
    assert not r.success and r.exit_code == 3 and r.output == "bye\n"


@pytest.mark.parametrize("tests", [
    "def test_add():\n    assert add(1, 2) == 3\n",
    "from solution import add\n\ndef test_add():\n    assert add(1, 2) == 3\n",
    "from impl import add\n\ndef test_add():\n    assert add(1, 2) == 3\n",
], ids=["bare", "solution", "impl"])
def test_tests_pass_with_each_import_style(tests):
    r = run_python(ADD, tests)
    assert r.success, r.output
    assert r.output.startswith("3\n")
    assert "1 passed" in r.output
    assert (r.tests_passed, r.tests_failed) == (1, 0)


def test_private_names_visible_to_tests():
    code = "def _helper(x):\n    return x * 2\n"
    r = run_python(code, "def test_helper():\n    assert _helper(2) == 4\n")
    assert r.success, r.output


def test_failing_test():
    tests = ("def test_ok():\n    assert add(1, 1) == 2\n\n"
             "def test_bad():\n    assert add(1, 2) == 4\n\n"
             "def test_bad2():\n    assert add(0, 0) == 1\n")
    r = run_python(ADD, tests)
    assert not r.success
    assert "2 failed, 1 passed" in r.output
    assert r.error == "2 failed, 1 passed"
    assert (r.tests_passed, r.tests_failed) == (1, 2)
    assert "test_solution.py:5" in r.output  # line numbers match the tests as written


def test_each_test_reports_its_own_outcome():
    tests = ("import pytest\n\n"
             "def test_ok():\n    assert add(1, 1) == 2\n\n"
             "def test_bad():\n    assert add(1, 2) == 4\n\n"
             "@pytest.mark.parametrize('a, b', [(1, 1), (2, 2)])\ndef test_table(a, b):\n    assert add(a, b) == 2\n\n"
             "@pytest.fixture\ndef broken():\n    raise RuntimeError('no fixture today')\n\n"
             "def test_setup(broken):\n    pass\n\n"
             "@pytest.mark.skip(reason='not today')\ndef test_skipped():\n    pass\n\n"
             "def test_slow():\n    import time\n    time.sleep(0.2)\n")
    r = run_python(ADD, tests)
    assert not r.success
    assert [(t.name, t.outcome) for t in r.tests] == [
        ("test_solution.py::test_ok", "passed"), ("test_solution.py::test_bad", "failed"),
        ("test_solution.py::test_table[1-1]", "passed"), ("test_solution.py::test_table[2-2]", "failed"),
        ("test_solution.py::test_setup", "error"), ("test_solution.py::test_skipped", "skipped"),
        ("test_solution.py::test_slow", "passed")]
    messages = {t.name.split("::")[1]: t.message for t in r.tests}
    assert messages["test_bad"] == "assert 3 == 4" and messages["test_ok"] == ""
    assert messages["test_table[2-2]"] == "assert 4 == 2"
    assert messages["test_setup"] == "RuntimeError: no fixture today"
    assert messages["test_skipped"] == "Skipped: not today"
    assert r.tests[-1].duration >= 0.2 and all(t.duration >= 0 for t in r.tests)
    assert [t.function for t in r.tests if t.failed] == ["test_bad", "test_table", "test_setup"]


def test_a_file_pytest_cannot_collect_is_one_error_outcome():
    r = run_python(ADD, "from nowhere import thing\n\ndef test_add():\n    assert add(1, 2) == 3\n")
    assert not r.success and len(r.tests) == 1
    (broken,) = r.tests
    assert (broken.name, broken.outcome, broken.collection_error) == ("test_solution.py", "error", True)
    assert broken.message == "ModuleNotFoundError: No module named 'nowhere'"


def test_code_without_tests_or_failing_before_them_has_no_test_outcomes():
    assert run_python(ADD).tests == ()
    assert run_python("raise SystemExit(2)\n", "def test_x():\n    pass\n").tests == ()


def test_single_failing_test():
    r = run_python(ADD, "def test_add():\n    assert add(1, 2) == 4\n")
    assert not r.success and "1 failed" in r.output and r.tests_failed == 1


def test_test_modules_are_fresh_each_run():
    r1 = run_python("def f():\n    return 1\n", "def test_f():\n    assert f() == 1\n")
    r2 = run_python("def f():\n    return 2\n", "def test_f():\n    assert f() == 2\n")
    assert r1.success and r2.success, (r1.output, r2.output)


def test_fenced_code_is_unwrapped():
    fenced = "Here you go:\n```python\nprint('fenced')\n```\nEnjoy."
    assert strip_code_fences(fenced) == "print('fenced')\n"
    assert strip_code_fences("print(1)") == "print(1)"
    assert strip_code_fences("```\nx = 1\n```") == "x = 1\n"
    r = run_python(fenced, "```python\ndef test_x():\n    assert True\n```")
    assert r.success and r.output.startswith("fenced\n") and "1 passed" in r.output


@pytest.mark.parametrize("code", ["", "   \n\t", "```python\n```"])
def test_empty_code(code):
    r = run_python(code)
    assert not r.success and r.error == "No code provided" and r.exit_code is None


def test_timeout_kills_grandchildren():
    marker = f"sbx-grandchild-{os.getpid()}-{time.monotonic_ns()}"
    code = (
        "import subprocess, sys, time\n"
        f"child = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)  # {marker}'\n"
        "a = subprocess.Popen([sys.executable, '-c', child])\n"
        "b = subprocess.Popen([sys.executable, '-c', child], start_new_session=True)\n"
        "print('started', flush=True)\n"
        "while True:\n    pass\n"
    )
    t0 = time.monotonic()
    r = run_python(code, timeout=2)
    elapsed = time.monotonic() - t0
    assert r.timed_out and not r.success
    assert r.error == "Timed out after 2 s"
    assert elapsed < 4.5
    assert "started" in r.output
    assert wait_until_gone(marker) == [], "grandchildren survived the timeout"


def test_timeout_in_tests():
    r = run_python("def f():\n    while True:\n        pass\n", "def test_f():\n    f()\n", timeout=1.5)
    assert r.timed_out and not r.success and r.duration < 4


def test_fork_bomb_is_contained():
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.monotonic()
    r = run_python(code, timeout=3)
    assert not r.success
    assert time.monotonic() - t0 < 10
    # the machine is still usable and the next run is unaffected
    ok = run_python("print('still fine')")
    assert ok.success and ok.output == "still fine\n"


def test_fork_limit_applies():
    code = ("import os, time\nn = 0\ntry:\n    for _ in range(500):\n        if os.fork() == 0:\n"
            "            time.sleep(5)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n"
            "    print('limited after', n, type(e).__name__)\n")
    r = run_python(code, timeout=10)
    assert "limited after" in r.output, r.output
    assert int(r.output.split("limited after")[1].split()[0]) < 100


def test_memory_limit():
    r = run_python("x = bytearray(4 * 1024 ** 3)\nprint('allocated')")
    assert not r.success
    assert "allocated" not in r.output
    assert "MemoryError" in r.output or r.exit_code is not None and r.exit_code < 0
    assert r.error == "Memory limit exceeded" or "signal" in r.error


def test_huge_output_is_truncated():
    code = "import sys\nchunk = 'x' * 1023 + '\\n'\nfor _ in range(100 * 1024):\n    sys.stdout.write(chunk)\nprint('END')\n"
    t0 = time.monotonic()
    r = run_python(code, timeout=20)
    assert time.monotonic() - t0 < 10
    assert "[output truncated at 65536 bytes" in r.output
    assert len(r.output.encode()) < 65536 + 200


def test_moderate_output_keeps_tail():
    # over the cap but under the kill threshold: head, marker and the end are kept
    code = "for i in range(20000):\n    print(i)\nprint('THE END')\n"
    r = run_python(code)
    assert r.success
    assert r.output.startswith("0\n1\n2\n")
    assert "[output truncated at 65536 bytes" in r.output
    assert r.output.endswith("THE END\n")


def test_network_is_blocked():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    port = server.getsockname()[1]
    try:
        code = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
                "s.sendall(b'hello')\nprint('connected')\n")
        r = run_python(code, timeout=10)
        assert not r.success
        assert "connected" not in r.output
        assert "Error" in r.output
        # the run is over: a connection it made would be waiting in the listen queue by now
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


def test_isolation_mode_reported():
    assert sandbox.isolation_mode() in ("netns", "audit-hook")


SHOW_ENV = (
    "import os\n"
    "print(sorted(os.environ))\n"
    "print('SECRET' if 'CODEGEN_TEST_SECRET' in os.environ else 'clean')\n"
    "leaks = []\n"
    "for pid in ['self', str(os.getppid()), '1']:\n"
    "    try:\n"
    "        leaks.append(open(f'/proc/{pid}/environ', 'rb').read())\n"
    "    except OSError:\n"
    "        pass\n"
    "print('LEAK' if any(b'top-secret-' in x for x in leaks) else 'noleak')\n"
    "print(os.environ['HOME'] == os.getcwd(), os.environ['TMPDIR'] == os.getcwd())\n"
)


def test_secret_env_is_invisible():
    sandbox.shutdown()
    os.environ["CODEGEN_TEST_SECRET"] = "top-secret-before"
    try:
        r1 = run_python(SHOW_ENV)  # runner started with the secret in our environment
        os.environ["CODEGEN_TEST_SECRET"] = "top-secret-after"
        r2 = run_python(SHOW_ENV)  # set while the runner is already up
    finally:
        del os.environ["CODEGEN_TEST_SECRET"]
    for r in (r1, r2):
        assert r.success, r.output
        assert "top-secret" not in r.output
        assert "clean" in r.output and "noleak" in r.output
        assert "True True" in r.output


def test_busy_when_over_capacity():
    with sandbox.override_limits(max_concurrent=1, max_waiting=0):
        results = []
        t = threading.Thread(target=lambda: results.append(run_python("import time; time.sleep(2)", timeout=10)))
        t.start()
        wait_for(lambda: limiter.active, timeout=5, what="the first run to take its slot", interval=0.01)
        with pytest.raises(SandboxBusy):
            run_python("print(1)")
        with pytest.raises(SandboxBusy):
            asyncio.run(arun_python("print(1)"))
        t.join(15)
        assert results and results[0].success
    assert run_python("print(1)").success


def test_waiting_runs_queue_up():
    with sandbox.override_limits(max_concurrent=1, max_waiting=4):
        async def many():
            return await asyncio.gather(*(arun_python(f"print({i})") for i in range(4)))
        results = asyncio.run(many())
    assert [r.output for r in results] == ["0\n", "1\n", "2\n", "3\n"]


def test_arun_does_not_block_event_loop():
    async def main():
        ticks = 0
        task = asyncio.create_task(arun_python("import time; time.sleep(1); print('done')"))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0.05)
        return ticks, task.result()

    ticks, r = asyncio.run(main())
    assert r.success and r.output == "done\n"
    assert ticks >= 10


def test_concurrent_runs_are_isolated():
    writer = (
        "import os, time\n"
        "open('a_secret.txt', 'w').write('TOKEN-' + 'XYZZY')\n"
        "print(os.getcwd())\n"
        "time.sleep(2)\n"
    )
    reader = (
        "import os, time\n"
        "time.sleep(0.7)\n"
        "try:\n    print('listing', os.listdir('..'))\nexcept OSError as e:\n    print('no listing', type(e).__name__)\n"
        "print(sorted(os.listdir('.')))\n"
    )
    out = run_concurrently({"w": writer, "r": reader}, timeout=10)
    assert out["w"].success and out["r"].success, (out["w"].output, out["r"].output)
    # the parent directory holds only the run's own space (or cannot be listed): no other run's dir
    assert "no listing" in out["r"].output or "listing ['shm', 'var-tmp', 'tmp', 'run']" in out["r"].output
    # searching every temp directory for the writer's token: test_sandbox_attacks.py
    assert "a_secret.txt" not in out["r"].output
    assert out["w"].output.strip() != ""


def test_files_do_not_survive_runs():
    r1 = run_python("open('left.txt', 'w').write('x')\nimport os; print(os.listdir('.'))")
    r2 = run_python("import os; print(os.path.exists('left.txt'))")
    assert r1.success and "left.txt" in r1.output
    assert r2.output == "False\n"


def test_runner_restarts_after_crash():
    run_python("print(1)")
    z = sandbox.runner._zygote
    z.proc.kill()
    z.proc.wait()
    r = run_python("print('back')")
    assert r.success and r.output == "back\n"


def test_audit_hook_fallback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    port = server.getsockname()[1]
    try:
        # AF_INET allowed past seccomp, so the audit hook is what refuses the connect
        with sandbox.override_limits(force_audit_hook=True, socket_families=["AF_INET"]):
            assert sandbox.isolation_mode() == "audit-hook"
            r = run_python(f"import socket\nsocket.socket().connect(('127.0.0.1', {port}))\n")
            assert not r.success and "PermissionError" in r.output and "socket.connect" in r.output
            r = run_python("import subprocess\nsubprocess.run(['true'])\n")
            assert not r.success and "PermissionError" in r.output
            r = run_python(ADD, "def test_add():\n    assert add(1, 2) == 3\n")
            assert r.success, r.output
        server.settimeout(0.1)
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()
    assert sandbox.isolation_mode() in ("netns", "audit-hook")


def test_settings_are_typed_and_overrides_are_held_under_the_ceilings():
    assert sandbox.settings.current() is sandbox.settings.current()  # built once per config version
    with sandbox.override_limits(socket_families=["AF_UNIX"], memory_mb=256, max_open_files=10 ** 6):
        current = sandbox.settings.current()
    assert current.socket_families == ("AF_UNIX",) and current.memory_mb == 256
    assert current.max_open_files == current.ceilings.max_open_files


def test_unknown_socket_family_in_config_is_a_503_not_a_crash():
    with sandbox.override_limits(socket_families=["AF_NOPE"]):
        with pytest.raises(sandbox.SandboxUnavailable) as caught:
            run_python("print(1)")
    assert caught.value.status_code == 503 and "AF_NOPE" in str(caught.value.detail)
    assert run_python("print(1)").success


ZYGOTE = Path(sandbox.runner.ZYGOTE_SCRIPT)
SITE_PACKAGES = next(p for p in sys.path if p.endswith("site-packages") and os.path.isdir(os.path.join(p, "pytest")))


def readable_by_anyone(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the runner and of pytest with what it imports, where user nobody can read them:
    a checkout (and its venv) may sit in a folder only root can enter."""
    import shutil

    skip = shutil.ignore_patterns("__pycache__")
    base = tmp_path / "for-nobody"
    shutil.copytree(ZYGOTE.parent, base / "sandbox", ignore=skip)
    for name in ("pytest", "_pytest", "pluggy", "iniconfig", "packaging"):
        shutil.copytree(Path(SITE_PACKAGES) / name, base / "site" / name, ignore=skip)
    shutil.copy(Path(SITE_PACKAGES) / "py.py", base / "site" / "py.py")  # pytest's shim of the old `py`
    for path in [tmp_path, *tmp_path.parents, *base.rglob("*"), base]:
        if path.is_dir() and str(path) != "/":
            path.chmod(path.stat().st_mode | 0o755)
        elif path.is_file():
            path.chmod(path.stat().st_mode | 0o644)
    return base / "sandbox" / ZYGOTE.name, base / "site"


def _run_on(control: socket.socket, run_id: int, limits: dict, code: str, tests: str | None = None) -> tuple:
    """One run through the zygote protocol: (exit message, output)."""
    output_read, output_write = os.pipe()
    _wire.send_message(control, {"op": "run", "id": run_id, "code": code, "tests": tests, "limits": limits},
                       [output_write])
    os.close(output_write)
    exit_message, _ = _wire.receive_message(control)
    with os.fdopen(output_read, "rb") as output:
        return exit_message, output.read().decode()


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"),
                    reason="starts the runner as nobody with the system interpreter")
def test_unprivileged_runner_still_runs_code_and_tests(tmp_path):
    """The runner as a plain user (no root, no private root): the fallback path, really unprivileged."""
    script, site = readable_by_anyone(tmp_path)

    control, theirs = socket.socketpair()
    config = sandbox.settings.current()
    zygote_settings = config.zygote_settings()
    process = subprocess.Popen(
        ["/usr/bin/python3", "-s", str(script), str(theirs.fileno()), json.dumps(zygote_settings)],
        pass_fds=[theirs.fileno()], env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, cwd="/",
        user=65534, group=65534, extra_groups=[], stdin=subprocess.DEVNULL)
    theirs.close()
    try:
        hello, _ = _wire.receive_message(control)
        assert "error" not in hello, hello
        assert hello["isolated"] is False and hello["uid_drop"] is False
        # no cgroup it may write: the runs keep the per-process limits, and the runner says so
        assert hello["cgroup"] is None and hello["cgroup_note"].startswith("no usable cgroup")
        limits = {**config.run_limits(), "socket_families": []}
        exit_message, text = _run_on(control, 1, limits, "def add(a, b):\n    return a + b\nprint(add(1, 2))\n",
                                     "def test_add():\n    assert add(1, 2) == 3\n")
        refused, refused_text = _run_on(control, 2, limits, "import socket\nsocket.socket()\n")
    finally:
        control.close()
        process.wait(10)
    assert exit_message["exit_code"] == 0, (exit_message, text)
    assert text.startswith("3\n") and "1 passed" in text
    report = exit_message["report"]
    assert report["done"] and report["forged"] == 0
    assert [record["outcome"] for record in report["tests"] if record["when"] == "call"] == ["passed"]
    # seccomp needs no privileges: the filter and its message hold here too
    assert refused["exit_code"] == 1 and "sandbox: network sockets are not allowed" in refused_text


@pytest.mark.skipif(os.geteuid() != 0, reason="per-run network namespaces need root")
def test_allowed_ip_sockets_reach_the_runs_own_loopback_only():
    outside = socket.socket()
    outside.bind(("127.0.0.1", 0))
    outside.listen(1)
    code = (
        "import socket, threading\n"
        "server = socket.create_server(('127.0.0.1', 0))\n"
        "threading.Thread(target=lambda: server.accept()[0].sendall(b'echo ok'), daemon=True).start()\n"
        "print(socket.create_connection(server.getsockname(), timeout=3).recv(7).decode())\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {outside.getsockname()[1]}), timeout=1)\n"
        "    print('reached the host')\n"
        "except OSError as exc:\n"
        "    print('host unreachable', type(exc).__name__)\n"
    )
    try:
        with sandbox.override_limits(socket_families=["AF_INET"]):
            result = run_python(code, timeout=10)
    finally:
        outside.close()
    assert result.success, result.output
    assert result.output.startswith("echo ok\nhost unreachable")


def test_an_interpreter_under_tmp_keeps_tmp_a_directory_that_each_run_covers(monkeypatch, tmp_path):
    """A checkout (and its venv) under /tmp: /tmp cannot be the usual link to the run's private dir."""
    from codegen_site.sandbox import _rootfs

    venv = tmp_path / ".venv"
    venv.mkdir()
    monkeypatch.setattr(_rootfs, "interpreter_paths", lambda: [str(venv)])
    plan = _rootfs.RootPlan(70000, 4)
    temp = "/" + venv.parts[1]  # /tmp
    assert temp not in plan.links and plan.covered[temp] == [str(venv)]
    assert str(venv) in plan.binds and "/var/tmp" in plan.links
