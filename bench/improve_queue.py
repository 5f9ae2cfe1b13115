"""Improvements through the django-q2 queue against the same improvements run directly.

    python bench/improve_queue.py [TASKS]

For each broker (django-q2's ORM broker in SQLite, then Redis when it answers on
127.0.0.1:6379) a child process sets up a private data dir, database and workspace,
starts the scripted LLM server (no delay) and one `manage.py qcluster` (one worker), and
measures:
- the baseline: TASKS improvements run directly in the process (the same service a
  worker calls: LLM, sandbox validation, write with a backup), tasks/s;
- throughput: TASKS tasks added, then start, until all are completed, tasks/s;
- added latency: tasks added one at a time to a started, idle queue; the time from the
  add to the worker's claim (p50/p90), against the direct run's time per task.
Prints figures and ratios; no assertions.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from figures import percentile  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ORIGINAL = "def mean(values):\n    total = 0\n    for value in values:\n        total += value\n    return total / len(values)\n"
BETTER = "def mean(values):\n    return sum(values) / len(values)\n"
TESTS = "from {module} import mean\n\n\ndef test_mean():\n    assert mean([1, 2, 3]) == 2\n"
ISSUE = {"message": "mean() sums by hand", "severity": "low", "issue_type": "refactor"}
LATENCY_SAMPLES = 10


def redis_answers() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=1).ping())
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False


def make_workspace(root: Path, count: int, prefix: str) -> list[str]:
    names = []
    for index in range(count):
        name = f"{prefix}_{index}"
        (root / f"{name}.py").write_text(ORIGINAL)
        (root / f"test_{name}.py").write_text(TESTS.format(module=name))
        names.append(f"{name}.py")
    return names


def wait_done(ids: list) -> None:
    from improve.models import ImprovementTask
    from tests.polling import wait_for

    def all_completed() -> bool:
        failed = ImprovementTask.objects.filter(pk__in=ids, status="failed").first()
        if failed:
            raise SystemExit(f"a queued task failed: {failed.error}")
        return ImprovementTask.objects.filter(pk__in=ids, status="completed").count() == len(ids)

    wait_for(all_completed, timeout=600, what="the queued tasks to complete", interval=0.02)


def child(broker: str, tasks: int) -> dict:
    """Runs in a fresh process: settings (and so the broker) are fixed at Django setup."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from improve import resources
    from improve.services import queue
    from improve.services.proposal import run_improvement
    from tests.fakes.llm_server import FakeLLMServer, Turn

    call_command("migrate", verbosity=0)
    workspace = Path(os.environ["CODEGEN_WORKSPACE_ROOT"])
    llm = FakeLLMServer().start()
    llm.responder = lambda request: Turn(content=f"```python\n{BETTER}```\n")
    from codegen_site.core import config

    config._cache = config.deep_merge(config.get_config(), {
        "llm": {"provider": "ollama"}, "ollama": {"host": llm.url}})
    os.environ.update({"CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__HOST": llm.url})

    from asgiref.sync import async_to_sync

    direct_files = make_workspace(workspace, tasks, "direct")
    began = time.perf_counter()
    for path in direct_files:
        assert async_to_sync(run_improvement)(path, ISSUE).succeeded
    direct_seconds = time.perf_counter() - began

    # the cluster starts, and its worker warms its sandbox, on a first task outside the figures
    queue.start()
    warm = queue.add_task(make_workspace(workspace, 1, "warmup")[0], ISSUE, {"auto_write": True})
    wait_done([warm.pk])
    queue.stop()
    queued_files = make_workspace(workspace, tasks, "queued")
    ids = [queue.add_task(path, ISSUE, {"auto_write": True}).pk for path in queued_files]
    began = time.perf_counter()
    queue.start()
    wait_done(ids)
    queue_seconds = time.perf_counter() - began

    latencies = []
    for path in make_workspace(workspace, LATENCY_SAMPLES, "latency"):
        added = timezone.now()
        task = queue.add_task(path, ISSUE, {"auto_write": True})
        wait_done([task.pk])
        task.refresh_from_db()
        latencies.append((task.started_at - added).total_seconds())
    queue.stop()
    resources.shutdown()
    llm.stop()
    return {"broker": broker, "tasks": tasks, "direct_seconds": direct_seconds, "queue_seconds": queue_seconds,
            "latencies": latencies}


def run_child(broker: str, tasks: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as base:
        base_path = Path(base)
        (base_path / "ws").mkdir()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "codegen_site.settings", "PYTHONPATH": str(ROOT),
               "CODEGEN_DATA_DIR": str(base_path / "data"), "CODEGEN_CONFIG_DIR": str(base_path / "config"),
               "CODEGEN_WORKSPACE_ROOT": str(base_path / "ws"),
               "DATABASE_URL": f"sqlite:///{base_path / 'bench.sqlite3'}", "CODEGEN_LOGGING__LEVEL": "WARNING",
               "CODEGEN_IMPROVE_QUEUE__CLUSTER_NAME": f"bench-{uuid.uuid4().hex[:8]}",
               "CODEGEN_IMPROVE_QUEUE__REDIS_URL": "redis://127.0.0.1:6379/0" if broker == "redis" else ""}
        output = subprocess.run([sys.executable, __file__, "--child", broker, str(tasks)], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=900)
        if output.returncode != 0:
            raise SystemExit(f"{broker} child failed:\n{output.stdout[-3000:]}\n{output.stderr[-3000:]}")
        return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]))))
        return
    tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    brokers = ["orm"] + (["redis"] if redis_answers() else [])
    if "redis" not in brokers:
        print("Redis does not answer on 127.0.0.1:6379: ORM broker only")
    print(f"{tasks} improvements per broker (scripted LLM, no delay; each: LLM call, 3 sandbox runs, write)")
    for broker in brokers:
        result = run_child(broker, tasks)
        direct_rate = tasks / result["direct_seconds"]
        queue_rate = tasks / result["queue_seconds"]
        per_task = result["direct_seconds"] / tasks
        latency = result["latencies"]
        print(f"[{broker}] direct {direct_rate:6.2f} tasks/s | queue {queue_rate:6.2f} tasks/s "
              f"(x{queue_rate / direct_rate:.2f} of direct) | "
              f"add→claim p50 {statistics.median(latency) * 1000:5.0f} ms, p90 {percentile(latency, 0.9) * 1000:5.0f} ms "
              f"(x{statistics.median(latency) / per_task:.2f} of a direct task's {per_task * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
