"""Settings for the test suite: a private data dir and config dir per run, so a
developer's development.toml or database never leaks into tests."""

import os
import tempfile

# A server started by a test as a subprocess inherits CODEGEN_TEST_ROOT and so
# shares the test's directories.
_root = os.environ.get("CODEGEN_TEST_ROOT") or tempfile.mkdtemp(prefix="codegen-test-")
os.environ["CODEGEN_TEST_ROOT"] = _root
os.environ["CODEGEN_DATA_DIR"] = os.path.join(_root, "data")
os.environ["CODEGEN_CONFIG_DIR"] = os.path.join(_root, "config")
os.environ.setdefault("CODEGEN_WORKSPACE_ROOT", os.path.join(_root, "workspace"))
os.makedirs(os.environ["CODEGEN_WORKSPACE_ROOT"], exist_ok=True)
# Servers started by tests leave the analysis workers for the first analysis (one test turns
# the start with the server back on).
os.environ.setdefault("CODEGEN_IMPROVE__WORKERS_AT_START", "false")
if not os.environ.get("CODEGEN_TEST_SERVER_DB"):
    # Tests pick their provider explicitly; never probe a developer's real Ollama.
    # (A live server subprocess gets its provider from the test that starts it.)
    os.environ["CODEGEN_LLM__PROVIDER"] = "embedded"
    os.environ.pop("CODEGEN_API_TOKEN", None)

from codegen_site.settings import *  # noqa: E402,F401,F403

# The Django test client's Host; production answers only the names it is served under.
ALLOWED_HOSTS = [*ALLOWED_HOSTS, "testserver"]  # noqa: F405

DATABASES["default"] = {  # noqa: F405
    "ENGINE": "django.db.backends.sqlite3",
    # A live server subprocess is pointed at the test database pytest-django created.
    "NAME": os.environ.get("CODEGEN_TEST_SERVER_DB") or os.path.join(_root, "test.sqlite3"),
    "TEST": {"NAME": os.path.join(_root, "test_db.sqlite3")},
    "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},  # as codegen_site.settings
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# In-process tests roll back one connection per test; a live server subprocess
# runs the pooled path as production does.
DB_ASYNC_POOLED = bool(os.environ.get("CODEGEN_TEST_SERVER_DB"))
# pytest-django opens and rolls back the database per test, so the in-process tests run no
# monitor thread (they call its round themselves); a live server subprocess runs it.
PROCESS_MONITOR = bool(os.environ.get("CODEGEN_TEST_SERVER_DB"))
