"""The scaled set-up: PostgreSQL for the database and Redis for the cache and the queue, with
two server processes and two queue workers. Both services run on this kind of machine (.ci/run
starts them when they are down); elsewhere these tests are skipped with the reason, unless
CODEGEN_REQUIRE_SERVICES=1 makes that a failure."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from tests.fakes.llm_server import Turn
from tests.live_server import ROOT, LiveASGIServer, free_port
from tests.polling import wait_for
from tests.sse import parse_sse

PG = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)


def _reachable(address) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def services():
    missing = [name for name, address in (("PostgreSQL", PG), ("Redis", REDIS)) if not _reachable(address)]
    if missing:
        message = f"{' and '.join(missing)} not running on 127.0.0.1"
        if os.environ.get("CODEGEN_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)


def _admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(host=PG[0], port=PG[1], user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="module")
def migrated_template(services, tmp_path_factory):
    """A database migrated once for the module; each test gets a copy (CREATE DATABASE ... TEMPLATE)."""
    name = f"codegen_template_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "codegen_site.settings", "CODEGEN_MONITOR__POLL_SECONDS": "0",
           "DATABASE_URL": f"postgres://postgres@{PG[0]}:{PG[1]}/{name}",
           "CODEGEN_DATA_DIR": str(tmp_path_factory.mktemp("migrate-data"))}
    try:
        migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                                 capture_output=True, text=True, timeout=300)
        assert migrate.returncode == 0, migrate.stderr
        yield name
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_db(migrated_template):
    name = f"codegen_test_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"')
    yield f"postgres://postgres@{PG[0]}:{PG[1]}/{name}"
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def scaled_env(postgres_db, tmp_path):
    redis_db = 14
    import redis

    redis.Redis(host=REDIS[0], port=REDIS[1], db=redis_db).flushdb()
    return {
        "DATABASE_URL": postgres_db,
        "CACHE_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{redis_db}",
        "CODEGEN_DATA_DIR": str(tmp_path / "data"),
        "CODEGEN_CONFIG_DIR": str(tmp_path / "config"),
        "CODEGEN_LLM__PROVIDER": "embedded",
        "CODEGEN_SECURITY__RATE_ANON": "20/minute",
    }


class ScaledServer(LiveASGIServer):
    def _wait_ready(self, timeout: float = 90.0) -> None:
        # several servers and workers start at once here, on a machine that may be busy
        super()._wait_ready(timeout)


def _start_servers(envs: list[dict]) -> list[LiveASGIServer]:
    """Servers started side by side (each takes seconds to answer)."""
    with concurrent.futures.ThreadPoolExecutor(len(envs)) as pool:
        return list(pool.map(lambda env: ScaledServer(env, settings_module="codegen_site.settings"), envs))


def test_two_servers_sharing_rate_limits_exactly(scaled_env):
    servers = _start_servers([scaled_env, scaled_env])
    try:
        saved = httpx.patch(servers[0].url + "/config", json={"logging": {"level": "WARNING"}})
        assert saved.status_code == 200, saved.text
        # Rate limit 20/minute per client, counted in Redis: one budget across both processes, held
        # exactly by a burst of 39 more requests at once (the PATCH was the first).
        with concurrent.futures.ThreadPoolExecutor(13) as pool:
            codes = list(pool.map(lambda i: httpx.get(servers[i % 2].url + "/config", timeout=30).status_code,
                                  range(39)))
        assert codes.count(200) == 19 and codes.count(429) == 20, codes
    finally:
        for server in servers:
            server.stop()


ANALYSE_TWICE = """
import json
from improve.services.analysis import analyze_sync
from improve.models import FileAnalysis
first = analyze_sync("pkg", include_linter=True)
second = analyze_sync("pkg", include_linter=True)
print(json.dumps({"first": first["stats"], "second": second["stats"], "rows": FileAnalysis.objects.count(),
                  "issues_equal": first["issues"] == second["issues"], "functions": second["total_functions"]}))
"""


def test_analysis_cache_on_postgres(scaled_env, tmp_path):
    """The analysis writes its per-file cache with one SQL statement of its own: it must hold on
    PostgreSQL as on SQLite (a second run reads every file from the cache)."""
    import json

    root = tmp_path / "workspace"
    (root / "pkg").mkdir(parents=True)
    for index in range(3):
        (root / "pkg" / f"m{index}.py").write_text(f"import os\n\n\ndef f{index}(x):\n    return x or {index}\n")
    env = {**os.environ, **scaled_env, "DJANGO_SETTINGS_MODULE": "codegen_site.settings",
           "CODEGEN_WORKSPACE_ROOT": str(root)}
    completed = subprocess.run([sys.executable, "manage.py", "shell", "-c", ANALYSE_TWICE], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    seen = json.loads(completed.stdout.strip().splitlines()[-1])
    assert seen["first"]["analysed"] == 3 and seen["first"]["linted"] == 3
    assert seen["second"]["analysed"] == 0 and seen["second"]["cached"] == 3 and seen["second"]["lint_cached"] == 3
    assert seen["rows"] == 6 and seen["issues_equal"] and seen["functions"] == 3


# --- two servers and two queue workers, broken on purpose -------------------------------------

class OwnRedis:
    """A redis-server of this test's own on a spare port: stopped and started again by the test
    (never the shared one)."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.dir = tmp_path / "redis"
        self.dir.mkdir()
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _reachable(("127.0.0.1", self.port)), timeout=10, what="the test's redis-server")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def own_redis(services, tmp_path):
    if shutil.which("redis-server") is None:
        if os.environ.get("CODEGEN_REQUIRE_SERVICES") == "1":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    server = OwnRedis(tmp_path)
    yield server
    server.stop()


def _pg(url: str, query: str, *args):
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, args).fetchall()


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    stack = [pid]
    while stack:
        current = stack.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    stack.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return b"zombie" not in Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return False


def _start_worker(env: dict, index: int, log_dir: Path) -> subprocess.Popen:
    log = (log_dir / f"qcluster-{index}.log").open("ab")
    try:
        return subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()


def _stop(process: subprocess.Popen, signal_number=signal.SIGTERM) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal_number)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _chat_turns_across(first: LiveASGIServer, second: LiveASGIServer, fake_llm, turns: int) -> None:
    """One conversation whose turns alternate: POST /chat on the first server, a stream on the second.
    Each server answers from the history the other stored, and the history holds every turn once."""

    def last_user(request: dict) -> str:
        return [m["content"] for m in request.get("messages", []) if m.get("role") == "user"][-1]

    fake_llm.responder = lambda request: Turn(content=["re: ", last_user(request)])
    conversation_id = None
    expected: list[tuple[str, str]] = []
    for turn in range(turns):
        message = f"question {turn}"
        if turn % 2 == 0:
            body = {"message": message, **({"conversation_id": conversation_id} if conversation_id else {})}
            answer = httpx.post(first.url + "/chat", json=body, timeout=60)
            assert answer.status_code == 200, answer.text
            assert answer.json()["content"] == f"re: {message}"
            conversation_id = answer.json()["conversation_id"]
        else:
            streamed = httpx.get(second.url + "/chat/stream", timeout=60,
                                 params={"message": message, "conversation_id": conversation_id})
            assert streamed.status_code == 200, streamed.text
            events = parse_sse(streamed.text)
            assert events[:2] == [("content", "re: "), ("content", message)], events
            kind, done = events[-1]
            assert kind == "done" and len(events) == 3 and done["conversation_id"] == conversation_id, events
            assert done["context"]["history_left_out"] == 0
        # the model was sent the whole history, whichever server stored it
        assert [(m["role"], m["content"]) for m in fake_llm.prompts[-1] if m["role"] != "system"] == [
            *expected, ("user", message)]
        expected += [("user", message), ("assistant", f"re: {message}")]
        if turn == 0:
            listed = httpx.get(second.url + "/conversations", timeout=30)
            assert listed.status_code == 200 and conversation_id in [c["id"] for c in listed.json()], listed.text
    for server in (first, second):
        stored = httpx.get(f"{server.url}/conversations/{conversation_id}", timeout=30)
        assert stored.status_code == 200, stored.text
        assert [(m["role"], m["content"]) for m in stored.json()["messages"]] == expected


@pytest.mark.timeout(240)
def test_two_servers_two_workers_broken_on_purpose(postgres_db, own_redis, chroma_server, tmp_path, fake_llm):
    """The scaled set-up as docs/operations.md describes it, on PostgreSQL and a Redis of the
    test's own and a Chroma server: settings shared, a conversation and its streams across
    servers, one index run across servers and its index searched on the other, a killed worker
    cluster's tasks all done once with no manual start, Redis lost and back, a killed server's
    children gone."""
    from tests.test_improve_run import BETTER, ISSUE, ORIGINAL, fenced

    workspace = tmp_path / "workspace"
    (workspace / "docs").mkdir(parents=True)
    for index in range(20):
        (workspace / f"mod_{index}.py").write_text(ORIGINAL)
    for index in range(30):
        (workspace / "docs" / f"page_{index}.py").write_text(f"def page_{index}():\n    return {index}\n" * 20)
    scaled = {
        "DJANGO_SETTINGS_MODULE": "codegen_site.settings",
        "DATABASE_URL": postgres_db,
        "CACHE_URL": own_redis.url + "/0",
        "CODEGEN_IMPROVE_QUEUE__REDIS_URL": own_redis.url + "/1",
        "CODEGEN_IMPROVE_QUEUE__START_CLUSTER": "false",
        "CODEGEN_IMPROVE_QUEUE__WORKERS": "2",
        "CODEGEN_IMPROVE_QUEUE__LEASE_SECONDS": "3",
        "CODEGEN_IMPROVE_QUEUE__HEARTBEAT_SECONDS": "1",
        "CODEGEN_MONITOR__POLL_SECONDS": "0.5",
        "CODEGEN_DATA_DIR": str(tmp_path / "data"),
        "CODEGEN_CONFIG_DIR": str(tmp_path / "config"),
        "CODEGEN_WORKSPACE_ROOT": str(workspace),
        "CODEGEN_LLM__PROVIDER": "ollama",
        "CODEGEN_OLLAMA__HOST": fake_llm.url,
        "CODEGEN_EMBEDDINGS__PROVIDER": "ollama",
        "CODEGEN_RAG__CHROMA_URL": chroma_server,
        "CODEGEN_SECURITY__RATE_ANON": "100000/minute",
    }
    env = {**os.environ, **scaled}
    base = int(os.environ.get("CODEGEN_SANDBOX__UID_BASE", "69000"))

    def worker_env(index: int) -> dict:
        # each cluster's sandbox its own uid range (the sandbox kills leftovers by uid)
        return {**env, "CODEGEN_SANDBOX__UID_BASE": str(base + 300 + 50 * index), "CODEGEN_SANDBOX__UID_COUNT": "50"}

    log_dir = tmp_path
    workers = [_start_worker(worker_env(index), index, log_dir) for index in range(2)]
    servers: list[LiveASGIServer] = []
    try:
        # the second server starts its analysis workers at once: the test kills it and looks for them
        servers = _start_servers([scaled, {**scaled, "CODEGEN_IMPROVE__WORKERS_AT_START": "true"}])
        first, second = servers

        # A PATCH on one server is in effect on the other, recorded with its author.
        saved = httpx.patch(first.url + "/config", json={"rag": {"top_k": 9}}, timeout=30)
        assert saved.status_code == 200, saved.text
        wait_for(lambda: httpx.get(second.url + "/config", timeout=10).json()["rag"]["top_k"] == 9, timeout=15,
                 what="the PATCH on the first server seen by the second")
        assert _pg(postgres_db, "SELECT author, patch FROM core_settingschange") == [("local", {"rag": {"top_k": 9}})]
        # PATCHes of different keys at the same instant on both servers: each keeps the other's (row lock).
        barrier = threading.Barrier(2)

        def patch_on(server, body):
            barrier.wait(10)
            return httpx.patch(server.url + "/config", json=body, timeout=30).status_code

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for round_ in range(1, 6):
                codes = list(pool.map(patch_on, servers, [{"rag": {"top_k": round_}}, {"rag": {"max_file_kb": round_}}]))
                assert codes == [200, 200]
                saved = _pg(postgres_db, "SELECT values FROM core_savedsettings")[0][0]["rag"]
                assert (saved["top_k"], saved["max_file_kb"]) == (round_, round_)

        # Two index runs of one folder at the same instant on two servers: one runs, one 409, before any work.
        barrier = threading.Barrier(2)

        def index_on(server):
            barrier.wait(10)
            return httpx.post(server.url + "/rag/index", params={"path": "docs"}, timeout=60)

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(index_on, servers))
        assert sorted(answer.status_code for answer in answers) == [200, 409], [a.text for a in answers]
        assert "already running" in next(a for a in answers if a.status_code == 409).json()["detail"]
        assert _pg(postgres_db, "SELECT count(*) FROM rag_indexrun") == [(1,)]
        # The index is in the Chroma server (no store under the data dir); the server that got the 409
        # finds a file of that folder by its vectors alone.
        import chromadb
        from chromadb.config import Settings

        port = int(chroma_server.rsplit(":", 1)[1])
        shared = chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False))
        indexed = answers[0].json() if answers[0].status_code == 200 else answers[1].json()
        assert [c.count() for c in shared.list_collections()] == [indexed["chunks"]] and indexed["chunks"] > 0
        assert not (tmp_path / "data" / "chroma").exists()
        loser = servers[[a.status_code for a in answers].index(409)]
        found = httpx.post(loser.url + "/rag/search", json={"query": "def page_7", "mode": "vector", "min_score": 0},
                           timeout=60)
        assert found.status_code == 200, found.text
        assert found.json() and found.json()[0]["path"].startswith("docs/page_"), found.text

        # A conversation whose turns alternate between the servers, half of them streamed.
        _chat_turns_across(first, second, fake_llm, turns=10)

        fake_llm.responder = lambda request: Turn(content=fenced(BETTER), first_byte_delay=0.1)
        # Twenty tasks; the whole worker cluster SIGKILLed midway and the broker flushed; the workers
        # started again as a supervisor would, and no one calls /improve/queue/start again.
        for index in range(20):
            added = httpx.post(first.url + "/improve/queue/add", json={"file_path": f"mod_{index}.py", "issue": ISSUE},
                               timeout=30)
            assert added.status_code == 201, added.text
        assert httpx.post(first.url + "/improve/queue/start", timeout=30).status_code == 200

        def completed() -> int:
            return _pg(postgres_db, "SELECT count(*) FROM improve_improvementtask WHERE status = 'completed'")[0][0]

        wait_for(lambda: completed() >= 2, timeout=60, what="the first tasks done")
        for process in workers:
            _stop(process, signal.SIGKILL)
        assert completed() < 20
        # and the broker flushed: the messages still waiting in Redis are gone too
        import redis

        redis.Redis.from_url(own_redis.url + "/1").flushdb()
        workers = [_start_worker(worker_env(index), index, log_dir) for index in range(2)]
        wait_for(lambda: completed() == 20, timeout=120, what="every task done after the cluster was killed")
        tasks = _pg(postgres_db, "SELECT file_path, attempts FROM improve_improvementtask")
        assert sorted(path for path, _ in tasks) == sorted(f"mod_{index}.py" for index in range(20))
        assert all(1 <= attempts <= 2 for _, attempts in tasks)
        assert all((workspace / f"mod_{index}.py").read_text() == BETTER for index in range(20))
        runs = _pg(postgres_db, "SELECT file_path, status FROM improve_improvementrun")
        applied = sorted(path for path, state in runs if state == "applied")
        assert applied == sorted(f"mod_{index}.py" for index in range(20)), runs  # each written once
        assert {state for _, state in runs} <= {"applied", "interrupted"}, runs
        shown = httpx.get(second.url + "/improve/queue/status", timeout=30).json()
        assert shown["completed"] == 20 and shown["reconciliation"] is not None

        # Redis stopped: a 503 with its detail and /health degraded; Redis back: both recover.
        own_redis.stop()
        refused = httpx.get(first.url + "/conversations", timeout=30)
        assert refused.status_code == 503 and "Redis" in refused.json()["detail"], refused.text
        wait_for(lambda: "cache" in httpx.get(first.url + "/health", timeout=10).json().get("down", {}),
                 timeout=15, what="/health to report the cache down")
        assert httpx.get(first.url + "/health", timeout=10).json()["status"] == "degraded"
        own_redis.start()
        wait_for(lambda: httpx.get(first.url + "/conversations", timeout=10).status_code == 200, timeout=20,
                 what="the server answering again once Redis is back")
        wait_for(lambda: httpx.get(first.url + "/health", timeout=10).json()["status"] == "ok", timeout=15,
                 what="/health ok again")

        # A server killed outright leaves no child: its analysis workers (and multiprocessing's
        # resource tracker), its sandbox.
        ran = httpx.post(second.url + "/code/run", json={"code": "print(1)"}, timeout=60)
        assert ran.status_code == 200, ran.text
        children = _descendants(second.process.pid)
        assert len(children) >= 3, children  # sandbox zygote, analysis workers, resource tracker
        second.process.kill()
        second.process.wait()
        wait_for(lambda: not any(_alive(pid) for pid in children), timeout=20,
                 what=f"the killed server's children {sorted(children)} to end")
    finally:
        for process in workers:
            _stop(process, signal.SIGKILL)
        for server in servers:
            server.stop()
