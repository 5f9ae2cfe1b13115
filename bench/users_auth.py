"""What multi-user mode costs a call: GET /conversations on a server in the single-user mode against
one with security.users on, called with a personal token (the user's role checked, its rows read).

    python bench/users_auth.py [CALLS] [ROUNDS]

Both servers (codegen_site.server, as `make run` starts it) share one SQLite database in a
temporary data dir; rounds alternate between them, CALLS sequential calls each. Prints calls/s of
each and the ratio (users / single). No assertions: figures to read.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MAKE_TOKEN = """
from django.contrib.auth.models import User
from codegen_site.core.users import issue_token
user = User.objects.create_user("bench")
print(issue_token(user, "bench")[1])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([PYTHON, "-P", "-m", "codegen_site.server", "-b", "127.0.0.1", "-p", str(port)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the server on {url} did not start")


def rate(client: httpx.Client, url: str, headers: dict, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        assert client.get(url + "/conversations", headers=headers).status_code == 200
    return calls / (time.perf_counter() - started)


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "CODEGEN_DATA_DIR": data, "CODEGEN_WORKSPACE_ROOT": data,
               "CODEGEN_SECURITY__RATE_ANON": "100000/minute", "CODEGEN_IMPROVE_QUEUE__START_CLUSTER": "false"}
        manage = [PYTHON, "manage.py"]
        subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True)
        token = subprocess.run([*manage, "shell", "-c", MAKE_TOKEN], cwd=ROOT, env=env, check=True,
                               capture_output=True, text=True).stdout.strip().splitlines()[-1]
        single, single_url = start(env)
        users, users_url = start({**env, "CODEGEN_SECURITY__USERS": "true"})
        try:
            figures = {"single": [], "users": []}
            with httpx.Client(timeout=30) as client:
                rate(client, single_url, {}, 20)  # warm both
                rate(client, users_url, {"Authorization": f"Bearer {token}"}, 20)
                for _ in range(rounds):
                    figures["single"].append(rate(client, single_url, {}, calls))
                    figures["users"].append(rate(client, users_url, {"Authorization": f"Bearer {token}"}, calls))
        finally:
            for process in (single, users):
                process.terminate()
                process.wait(timeout=30)
    single_rate, users_rate = statistics.median(figures["single"]), statistics.median(figures["users"])
    print(f"GET /conversations, {rounds} alternating rounds of {calls} calls (median calls/s)")
    print(f"  single-user mode:            {single_rate:8.1f}")
    print(f"  multi-user mode, a token:    {users_rate:8.1f}")
    print(f"  ratio users / single:        {users_rate / single_rate:8.2f}")


if __name__ == "__main__":
    main()
