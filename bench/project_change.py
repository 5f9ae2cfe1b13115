"""Time from an instruction to a proven proposal (POST /improve/change's service) on a small git
repository, with the scripted LLM server answering at once.

    python bench/project_change.py [ROUNDS]

The repository: a package of 12 modules (one imported by four others) with a test file each, a
commit, and uncommitted work of the user's. Each round asks for the same two-file change (a new
function in the shared module and its test; the model's answer is scripted, search/replace blocks
for the module, the whole file for the test) and times the service's own split from the change's
evidence: context (symbol map, reads, git detection), model (the scripted call), apply (parsing and
applying the edits), validation (ruff, import checks, the covering tests before and after in the
sandbox), commit (the branch, by plumbing). The sandbox's share of the validation is measured
around each sandbox call. The product's own share is everything but the model and the sandbox.
Prints figures; no assertions.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARED = "".join(f"def helper_{index}(value):\n    return value + {index}\n\n\n" for index in range(60)) + \
    "def clamp(value, low, high):\n    return max(low, min(high, value))\n"
USER = "from pkg.shared import clamp, helper_1\n\n\ndef use_{n}(value):\n    return clamp(helper_1(value), 0, {n})\n"
TEST_USER = "from pkg.mod_{n} import use_{n}\n\n\ndef test_use_{n}():\n    assert use_{n}(1) == min(2, {n})\n"
TEST_SHARED = "from pkg.shared import clamp\n\n\ndef test_clamp():\n    assert clamp(5, 0, 3) == 3\n"
ANSWER = (
    "EDIT: pkg/shared.py\n<<<<<<< SEARCH\ndef clamp(value, low, high):\n    return max(low, min(high, value))\n"
    "=======\ndef clamp(value, low, high):\n    return max(low, min(high, value))\n\n\n"
    "def wrap(value, size):\n    return value % size\n>>>>>>> REPLACE\n\n"
    "FILE: tests/test_shared.py\n```python\nfrom pkg.shared import clamp, wrap\n\n\ndef test_clamp():\n"
    "    assert clamp(5, 0, 3) == 3\n\n\ndef test_wrap():\n    assert wrap(7, 3) == 1\n```\n"
)
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}


def make_repository(ws: Path) -> None:
    (ws / "pkg").mkdir(parents=True)
    (ws / "tests").mkdir()
    (ws / "pkg" / "__init__.py").write_text("")
    (ws / "pkg" / "shared.py").write_text(SHARED)
    (ws / "tests" / "test_shared.py").write_text(TEST_SHARED)
    for n in range(1, 12):
        (ws / "pkg" / f"mod_{n}.py").write_text(USER.format(n=n) if n <= 4 else f"VALUE_{n} = {n}\n")
        (ws / "tests" / f"test_mod_{n}.py").write_text(TEST_USER.format(n=n) if n <= 4 else
                                                       f"from pkg.mod_{n} import VALUE_{n}\n\n\ndef test_v():\n"
                                                       f"    assert VALUE_{n} == {n}\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run(["git", "-C", str(ws), *args], check=True, env=GIT_ENV, capture_output=True)
    (ws / "pkg" / "mod_9.py").write_text("VALUE_9 = 9  # the user's uncommitted work\n")


def main(rounds: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-change-"))
    os.environ.update({"DJANGO_SETTINGS_MODULE": "codegen_site.settings", "CODEGEN_DATA_DIR": str(base / "data"),
                       "CODEGEN_CONFIG_DIR": str(base / "config"), "CODEGEN_WORKSPACE_ROOT": str(base / "ws")})
    make_repository(base / "ws")
    import django

    django.setup()
    from django.core.management import call_command

    from codegen_site.core.config import override
    from improve.services import change_validation
    from improve.services.change import run_change
    from tests.fakes.llm_server import FakeLLMServer, Turn

    call_command("migrate", verbosity=0)
    llm = FakeLLMServer().start()
    override({"llm": {"provider": "ollama"}, "ollama": {"host": llm.url}})
    sandbox_seconds = [0.0]
    sandbox_runs = [0]
    real = change_validation.run_in_sandbox

    async def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return await real(*args, **kwargs)
        finally:
            sandbox_seconds[0] += time.perf_counter() - started
            sandbox_runs[0] += 1

    change_validation.run_in_sandbox = timed
    rows = []
    try:
        for number in range(rounds + 1):  # the first round warms the sandbox up and is not counted
            llm.script(Turn(content=ANSWER))
            sandbox_seconds[0], sandbox_runs[0] = 0.0, 0
            started = time.perf_counter()
            change = asyncio.run(run_change("Add wrap(value, size) to pkg/shared.py with its test",
                                            ["pkg/shared.py"]))
            wall = time.perf_counter() - started
            if change.state != "proposed":
                raise SystemExit(f"the change was not proven: {change.error}")
            if number:
                rows.append({**change.evidence["timings"], "wall": wall, "sandbox": sandbox_seconds[0],
                             "runs": sandbox_runs[0], "tests": len(change.evidence["tests"])})
    finally:
        llm.stop()
        shutil.rmtree(base, ignore_errors=True)
    median = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    own = median["total"] - median["model"] - median["sandbox"]
    print(f"project change, {rounds} rounds, medians (repository: 13 modules, 12 test files; "
          f"{median['tests']:.0f} test files run before and after, {median['runs']:.0f} sandbox runs):")
    for key in ("context", "model", "apply", "validation", "commit", "total"):
        print(f"  {key:<11} {median[key] * 1000:8.1f} ms")
    print(f"  of the validation, in the sandbox: {median['sandbox'] * 1000:.1f} ms "
          f"({median['sandbox'] / median['validation']:.0%}); ruff, copies and bookkeeping: "
          f"{(median['validation'] - median['sandbox']) * 1000:.1f} ms")
    print(f"  the product's own share (total - model - sandbox): {own * 1000:.1f} ms "
          f"({own / median['total']:.0%} of {median['total'] * 1000:.0f} ms)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
