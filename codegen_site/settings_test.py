"""Settings for the test suite: a private data dir and config dir per run, so a
developer's development.toml or database never leaks into tests."""

import os
import tempfile

_root = tempfile.mkdtemp(prefix="codegen-test-")
os.environ["CODEGEN_DATA_DIR"] = os.path.join(_root, "data")
os.environ["CODEGEN_CONFIG_DIR"] = os.path.join(_root, "config")
os.environ.setdefault("CODEGEN_WORKSPACE_ROOT", os.path.join(_root, "workspace"))
os.makedirs(os.environ["CODEGEN_WORKSPACE_ROOT"], exist_ok=True)
# Tests pick their provider explicitly; never probe a developer's real Ollama.
os.environ["CODEGEN_LLM__PROVIDER"] = "embedded"
os.environ.pop("CODEGEN_API_TOKEN", None)

from codegen_site.settings import *  # noqa: E402,F401,F403

DATABASES["default"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(_root, "test.sqlite3")}  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
