"""The scaled set-up: PostgreSQL for the database and Redis for the cache, with
two server processes sharing rate limits. Both services run on this kind of
machine (.ci/run starts them when they are down); elsewhere these tests are
skipped with the reason, unless CODEGEN_REQUIRE_SERVICES=1 makes that a failure."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.live_server import ROOT, LiveASGIServer

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


@pytest.fixture
def postgres_db(services):
    import psycopg

    name = f"codegen_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(host=PG[0], port=PG[1], user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgres://postgres@{PG[0]}:{PG[1]}/{name}"
    with psycopg.connect(host=PG[0], port=PG[1], user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
        "CODEGEN_SECURITY__RATE_ANON": "5/minute",
    }


def test_migrations_and_two_servers_sharing_rate_limits(scaled_env):
    env = {**os.environ, **scaled_env, "DJANGO_SETTINGS_MODULE": "codegen_site.settings"}
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr

    servers = [LiveASGIServer(scaled_env, settings_module="codegen_site.settings") for _ in range(2)]
    try:
        config_path = Path(scaled_env["CODEGEN_CONFIG_DIR"]) / "development.toml"
        saved = httpx.patch(servers[0].url + "/config", json={"logging": {"level": "WARNING"}})
        assert saved.status_code == 200 and config_path.exists()
        # Rate limit 5/minute per client, counted in Redis: one budget across both processes.
        codes = [httpx.get(servers[i % 2].url + "/config").status_code for i in range(6)]
        assert codes[:4] == [200] * 4 and codes[4:] == [429, 429]
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
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)
    completed = subprocess.run([sys.executable, "manage.py", "shell", "-c", ANALYSE_TWICE], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    seen = json.loads(completed.stdout.strip().splitlines()[-1])
    assert seen["first"]["analysed"] == 3 and seen["first"]["linted"] == 3
    assert seen["second"]["analysed"] == 0 and seen["second"]["cached"] == 3 and seen["second"]["lint_cached"] == 3
    assert seen["rows"] == 6 and seen["issues_equal"] and seen["functions"] == 3
