"""POST /improve/analyze's work on the installed Django package source (~880 files): cold
(empty cache, worker processes not yet started), cold again with the workers up, and
warm (everything cached), each against `ruff check --no-cache` on the same tree timed in
the same run. Goals: cold <= 10x ruff, warm <= 2x ruff.

    .venv/bin/python bench/analyze.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def setup_django(workspace: Path, data_dir: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ["CODEGEN_WORKSPACE_ROOT"] = str(workspace)
    os.environ["CODEGEN_DATA_DIR"] = data_dir
    os.environ["DATABASE_URL"] = f"sqlite:///{data_dir}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codegen_site.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(function) -> float:
    """CPU time of this process and of the child processes it started and reaped meanwhile."""
    started, children = time.process_time(), children_cpu()
    function()
    return time.process_time() - started + children_cpu() - children


def timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def ruff_seconds(tree: Path) -> float:
    from improve.analysis.lint import ruff_binary

    seconds, completed = timed(lambda: subprocess.run([ruff_binary(), "check", "--no-cache", "--exit-zero",
                                                       str(tree)], capture_output=True))
    assert completed.returncode == 0, completed.stderr
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="warm runs and ruff runs (median taken)")
    args = parser.parse_args()

    import django as django_package

    tree = Path(django_package.__path__[0]).resolve()
    with tempfile.TemporaryDirectory(prefix="bench-analyze-") as data_dir:
        setup_django(tree.parent, data_dir)
        from improve.analysis.service import analyze_sync
        from improve.models import FileAnalysis

        ruff_before = [ruff_seconds(tree) for _ in range(args.rounds)]
        cold, result = timed(lambda: analyze_sync("django", include_linter=True))
        stats = result["stats"]
        assert stats["cached"] == 0, stats
        FileAnalysis.objects.all().delete()
        cold_pool_up, _ = timed(lambda: analyze_sync("django", include_linter=True))
        warm = []
        for _ in range(args.rounds):
            seconds, warm_result = timed(lambda: analyze_sync("django", include_linter=True))
            assert warm_result["stats"]["analysed"] == 0 and warm_result["stats"]["linted"] == 0
            warm.append(seconds)
        no_lint_warm, _ = timed(lambda: analyze_sync("django", include_linter=False))
        ruff_after = [ruff_seconds(tree) for _ in range(args.rounds)]

        # CPU seconds do not depend on what else the machine runs: a cold run with workers
        # started and stopped inside the measurement (so their time is counted) against ruff's.
        from improve.analysis.engine import stop_workers

        stop_workers()
        FileAnalysis.objects.all().delete()

        def cold_with_workers():
            analyze_sync("django", include_linter=True)
            stop_workers()

        cold_cpu = cpu_seconds(cold_with_workers)
        ruff_cpu = statistics.median(cpu_seconds(lambda: ruff_seconds(tree)) for _ in range(args.rounds))

    ruff = statistics.median(ruff_before + ruff_after)
    # Other work on the machine stretches the long cold run more than ruff's short one.
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    warm_median = statistics.median(warm)
    print(f"tree: {tree} — {result['total_files']} files, {result['total_lines']} lines, "
          f"{result['total_functions']} functions, {len(result['issues'])} issues, workers {stats['workers']}")
    print(f"ruff check --no-cache (yardstick, median of {len(ruff_before + ruff_after)}): {ruff:.3f} s")
    print(f"cold, workers starting:   {cold:.3f} s = {cold / ruff:.1f}x ruff (goal <= 10x)")
    print(f"cold, workers running:    {cold_pool_up:.3f} s = {cold_pool_up / ruff:.1f}x ruff")
    print(f"warm (all cached, median of {len(warm)}): {warm_median:.3f} s = {warm_median / ruff:.2f}x ruff "
          f"(goal <= 2x)")
    print(f"warm without the linter:  {no_lint_warm:.3f} s = {no_lint_warm / ruff:.2f}x ruff")
    print(f"CPU seconds, cold (workers' included): {cold_cpu:.2f} vs ruff {ruff_cpu:.2f} = "
          f"{cold_cpu / ruff_cpu:.1f}x")


if __name__ == "__main__":
    main()
