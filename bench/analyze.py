"""POST /improve/analyze's work on the installed Django package source (~880 files): cold
(empty cache) with the workers started as the server starts them, cold with the workers
starting inside the request, and warm (everything cached), each against
`ruff check --no-cache` on the same tree timed in the same run. Goals: cold <= 10x ruff,
warm <= 2x ruff.

    .venv/bin/python bench/analyze.py [--rounds 3] [--cold 5]
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
    parser.add_argument("--cold", type=int, default=5, help="cold runs, each timed beside its own ruff run")
    args = parser.parse_args()

    import django as django_package

    tree = Path(django_package.__path__[0]).resolve()
    with tempfile.TemporaryDirectory(prefix="bench-analyze-") as data_dir:
        setup_django(tree.parent, data_dir)
        from improve.analysis import checks
        from improve.analysis.workers import analysis_workers, start_if_configured
        from improve.models import FileAnalysis
        from improve.services.analysis import analyze_sync

        workers = analysis_workers()

        def analyse(include_linter: bool = True) -> dict:
            return analyze_sync("django", include_linter=include_linter)

        def cold_run() -> tuple[float, dict]:
            FileAnalysis.objects.all().delete()
            return timed(analyse)

        ruff_before = [ruff_seconds(tree) for _ in range(args.rounds)]
        # As the server does (improve.workers_at_start): the workers start with it, and the
        # first analysis comes later.
        start_if_configured()
        ready = [workers.pool(os.cpu_count() or 1).submit(checks.ready) for _ in range(os.cpu_count() or 1)]
        all(future.result() for future in ready)
        # Each cold run beside a ruff run of its own: the pairs see the same machine load.
        pairs = []
        for _ in range(args.cold):
            ruff_run = ruff_seconds(tree)
            seconds, result = cold_run()
            assert result["stats"]["cached"] == 0, result["stats"]
            pairs.append((seconds, ruff_run))
        stats = result["stats"]
        workers.close()
        cold_starting, _ = cold_run()  # workers_at_start = false: they start inside the request
        warm = []
        for _ in range(args.rounds):
            seconds, warm_result = timed(analyse)
            assert warm_result["stats"]["analysed"] == 0 and warm_result["stats"]["linted"] == 0
            warm.append(seconds)
        no_lint_warm, _ = timed(lambda: analyse(include_linter=False))
        ruff_after = [ruff_seconds(tree) for _ in range(args.rounds)]

        # CPU seconds do not depend on what else the machine runs: a cold run with workers
        # started and stopped inside the measurement (so their time is counted) against ruff's.
        workers.close()
        FileAnalysis.objects.all().delete()

        def cold_with_workers():
            analyse()
            workers.close()

        cold_cpu = cpu_seconds(cold_with_workers)
        ruff_cpu = statistics.median(cpu_seconds(lambda: ruff_seconds(tree)) for _ in range(args.rounds))

    ruff = statistics.median(ruff_before + ruff_after + [pair[1] for pair in pairs])
    ratios = sorted(seconds / ruff_run for seconds, ruff_run in pairs)
    # Other work on the machine stretches the long cold run more than ruff's short one.
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    warm_median = statistics.median(warm)
    print(f"tree: {tree} — {result['total_files']} files, {result['total_lines']} lines, "
          f"{result['total_functions']} functions, {len(result['issues'])} issues, workers {stats['workers']}")
    print(f"ruff check --no-cache (yardstick, median of {len(ruff_before + ruff_after) + len(pairs)}): {ruff:.3f} s")
    print(f"cold, workers started with the server ({len(pairs)} runs, each / its own ruff run): "
          f"median {statistics.median(seconds for seconds, _ in pairs):.3f} s = "
          f"{statistics.median(seconds for seconds, _ in pairs) / ruff:.1f}x the median ruff; each / the ruff "
          f"run just before it: {', '.join(f'{ratio:.1f}x' for ratio in ratios)} (goal <= 10x)")
    print("  runs: " + ", ".join(f"{seconds:.3f} s (ruff {ruff_run:.3f} s)" for seconds, ruff_run in pairs))
    print(f"cold, workers starting in the request: {cold_starting:.3f} s = {cold_starting / ruff:.1f}x ruff")
    print(f"warm (all cached, median of {len(warm)}): {warm_median:.3f} s = {warm_median / ruff:.2f}x ruff "
          f"(goal <= 2x)")
    print(f"warm without the linter:  {no_lint_warm:.3f} s = {no_lint_warm / ruff:.2f}x ruff")
    print(f"CPU seconds, cold (workers' included): {cold_cpu:.2f} vs ruff {ruff_cpu:.2f} = "
          f"{cold_cpu / ruff_cpu:.1f}x")


if __name__ == "__main__":
    main()
