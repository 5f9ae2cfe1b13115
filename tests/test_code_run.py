"""POST /code/run: input validation in-process; hostile code through a real daphne server,
which must keep answering after each one."""

from __future__ import annotations

import json
import os
import socket

import httpx
import pytest

from codegen_site import sandbox

pytestmark = pytest.mark.timeout(60)

ADD = "def add(a, b):\n    return a + b\n\nprint(add(1, 2))"


def run(client, body):
    return client.post("/code/run", json.dumps(body), content_type="application/json")


# ---------------------------------------------------------------- in-process: shape and validation

def test_reference_example(client):
    response = run(client, {"code": ADD, "tests": "def test_add():\n    assert add(1, 2) == 3", "timeout": 30})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"success", "output", "error"}
    assert body["success"] is True and body["error"] is None
    assert body["output"].startswith("3\n") and "1 passed" in body["output"]


def test_code_without_tests_and_default_timeout(client):
    body = run(client, {"code": "print(sum(range(10)))"}).json()
    assert body == {"success": True, "output": "45\n", "error": None}


def test_failing_tests_report_the_summary(client):
    body = run(client, {"code": ADD, "tests": "def test_add():\n    assert add(1, 2) == 4\n"}).json()
    assert body["success"] is False and body["error"] == "1 failed"
    assert "1 failed" in body["output"] and "assert 3 == 4" in body["output"]


def test_exception_is_reported_not_raised(client):
    body = run(client, {"code": "raise KeyError('boom')"}).json()
    assert body["success"] is False and "KeyError" in body["output"] and body["error"].startswith("Exit code 1")


def test_fenced_code_is_unwrapped(client):
    body = run(client, {"code": "```python\nprint('fenced')\n```"}).json()
    assert body == {"success": True, "output": "fenced\n", "error": None}


@pytest.mark.parametrize("code", ["", "   \n"])
def test_empty_code_is_success_false_with_a_message(client, code):
    response = run(client, {"code": code})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is False and body["error"]


@pytest.mark.parametrize("body,field", [
    ({"code": ADD, "timeout": 0}, "timeout"), ({"code": ADD, "timeout": 0.5}, "timeout"),
    ({"code": ADD, "timeout": 61}, "timeout"), ({"code": ADD, "timeout": -5}, "timeout"),
    ({"code": ADD, "timeout": "soon"}, "timeout"), ({"code": ADD, "timeout": True}, "timeout"),
    ({"tests": "def test_x(): pass"}, "code"), ({"code": 5 * [1]}, "code"),
    ({"code": "x" * 200_001}, "code"),
])
def test_bad_input_is_400_detail(client, body, field):
    response = run(client, body)
    assert response.status_code == 400
    assert field in response.json()["detail"]


def test_timeout_bounds_are_inclusive(client):
    for timeout in (1, 60):
        assert run(client, {"code": "print(1)", "timeout": timeout}).json()["success"] is True


def test_busy_sandbox_is_429_detail(client):
    with sandbox.override_limits(max_concurrent=0, max_waiting=0):
        response = run(client, {"code": "print(1)"})
    assert response.status_code == 429
    assert set(response.json()) == {"detail"} and "busy" in response.json()["detail"]


# ---------------------------------------------------------------- hostile code through a real server

SECRET = "codegen-test-secret-7f3a9"


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    from django.db import connection

    from tests.live_server import LiveASGIServer

    # The secret is set in this (the test) process; the server inherits it, the sandboxed code must not see it.
    os.environ["CODEGEN_SANDBOX_TEST_SECRET"] = SECRET
    try:
        with django_db_blocker.unblock():
            live = LiveASGIServer({}, connection.settings_dict["NAME"])
    finally:
        del os.environ["CODEGEN_SANDBOX_TEST_SECRET"]
    yield live
    live.stop()


def live_run(server, body, timeout=30.0) -> dict:
    response = httpx.post(server.url + "/code/run", json=body, timeout=timeout)
    assert response.status_code == 200, response.text
    return response.json()


def assert_still_serving(server):
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200
    assert live_run(server, {"code": "print('still fine')"}) == {"success": True, "output": "still fine\n",
                                                                 "error": None}


def test_fork_bomb(server):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    body = live_run(server, {"code": code, "timeout": 3})
    assert body["success"] is False and body["error"]
    assert_still_serving(server)


def test_four_gigabyte_allocation(server):
    body = live_run(server, {"code": "x = bytearray(4 * 1024 ** 3)\nprint('allocated')"})
    assert body["success"] is False
    assert "allocated" not in body["output"]
    assert "Memory" in body["error"] or "signal" in body["error"]
    assert_still_serving(server)


def test_hundred_megabytes_of_output(server):
    code = "import sys\nline = 'x' * 1023 + '\\n'\nfor _ in range(100 * 1024):\n    sys.stdout.write(line)\n"
    response = httpx.post(server.url + "/code/run", json={"code": code, "timeout": 30}, timeout=60)
    assert response.status_code == 200
    assert len(response.content) < 200_000  # capped, not 100 MB
    body = response.json()
    assert "[output truncated" in body["output"]
    assert body["success"] is False and "Output limit" in body["error"]
    assert_still_serving(server)


def test_infinite_loop_with_a_short_timeout(server):
    body = live_run(server, {"code": "while True:\n    pass\n", "timeout": 1})
    assert body["success"] is False and body["error"] == "Timed out after 1 s"
    assert_still_serving(server)


def test_socket_connect_to_the_servers_own_port(server):
    code = (f"import socket\ns = socket.create_connection(('127.0.0.1', {server.port}), timeout=3)\n"
            "s.sendall(b'GET /health HTTP/1.0\\r\\n\\r\\n')\nprint('connected', s.recv(100))\n")
    body = live_run(server, {"code": code, "timeout": 10})
    assert body["success"] is False
    assert "connected" not in body["output"] and "Error" in body["output"]
    assert_still_serving(server)


def test_socket_to_an_outside_listener_never_arrives(server):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    try:
        port = listener.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\nprint('connected')\n"
        body = live_run(server, {"code": code, "timeout": 10})
        assert body["success"] is False and "connected" not in body["output"]
        # the run is over: a connection it made would be waiting in the listen queue by now
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


def test_server_environment_is_invisible(server):
    # the server process really has the secret ...
    with open(f"/proc/{server.process.pid}/environ", "rb") as environ:
        assert SECRET.encode() in environ.read()
    # ... and the code cannot find it: not in its environment, not in any readable /proc/*/environ
    code = (
        "import os\n"
        "print(sorted(os.environ))\n"
        "found = [k for k, v in os.environ.items() if 'codegen-test-secret' in v]\n"
        "for pid in os.listdir('/proc'):\n"
        "    if pid.isdigit():\n"
        "        try:\n"
        "            if b'codegen-test-secret' in open(f'/proc/{pid}/environ', 'rb').read():\n"
        "                found.append(pid)\n"
        "        except OSError:\n"
        "            pass\n"
        "print('FOUND' if found else 'clean')\n"
    )
    body = live_run(server, {"code": code})
    assert body["success"] is True, body
    assert "clean" in body["output"] and "FOUND" not in body["output"]
    assert SECRET not in body["output"] and "CODEGEN" not in body["output"]
    assert_still_serving(server)


# the namespace sandbox (filesystem view, seccomp) needs root; the audit-hook fallback is in test_sandbox.py
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the namespace sandbox needs root")


@root_only
def test_postgres_socket_is_out_of_reach(server):
    code = ("import os, socket\n"
            "print('exists', os.path.exists('/var/run/postgresql/.s.PGSQL.5432'))\n"
            "socket.socket(socket.AF_UNIX).connect('/var/run/postgresql/.s.PGSQL.5432')\n")
    body = live_run(server, {"code": code})
    assert body["success"] is False and "exists False" in body["output"]
    assert "sandbox: network sockets are not allowed" in body["output"]
    assert_still_serving(server)


@root_only
def test_forged_pytest_verdict_is_not_believed(server):
    code = ("def add(a, b):\n    return a - b\n\n"
            "import _pytest.runner\n"
            "_original = _pytest.runner.call_and_report\n"
            "def call_and_report(item, when, log=True, **kwds):\n"
            "    report = _original(item, when, log=False, **kwds)\n"
            "    report.outcome = 'passed'\n"
            "    if log:\n"
            "        item.ihook.pytest_runtest_logreport(report=report)\n"
            "    return report\n"
            "_pytest.runner.call_and_report = call_and_report\n")
    body = live_run(server, {"code": code, "tests": "def test_add():\n    assert add(1, 2) == 3\n"})
    assert body["success"] is False
    assert body["error"].startswith("Verdict tampering detected")
    assert_still_serving(server)


@root_only
def test_forbidden_system_call_is_a_clear_error(server):
    body = live_run(server, {"code": "import ctypes\nctypes.CDLL(None).unshare(0x10000000)\n"})
    assert body == {"success": False, "output": "",
                    "error": "Blocked by the sandbox: a forbidden system call (seccomp)"}
    assert_still_serving(server)
