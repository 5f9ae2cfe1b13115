"""POST /improve/analyze's work on a copy of the installed Django package's source (~880 files),
this checkout against an earlier commit's tree (`git archive`), beside `ruff check --no-cache`
on the same copy, all in one run.

    .venv/bin/python bench/analyze.py [--baseline REF] [--this REF] [--cold 5] [--warm 3]

Each tree runs in a process of its own (its directory first on sys.path) with its analysis
workers started first, as the server starts them (improve.workers_at_start). Each round: a
ruff run, then a cold analysis (empty cache, linter on) by each tree, the order alternating.
Prints the medians, each cold run over the ruff run of its round, the CPU time a cold run
took (server process, ruff, workers: the work done, whatever else loads the machine), and
this ÷ baseline; then warm runs (everything cached). Goal (issue #26): cold <= 6x ruff, median of 5. No assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from baseline import PYTHON, describe, exported, tree_env


def child() -> None:
    """One tree's side: set up Django on a scratch data dir, start the workers, then answer
    "cold" / "warm" lines with one JSON line each."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "codegen_site.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from improve.analysis import checks
    from improve.analysis.workers import analysis_workers, start_if_configured, worker_count
    from improve.config import analysis_settings
    from improve.models import FileAnalysis
    from improve.services.analysis import analyze_sync

    start_if_configured()
    size = worker_count(analysis_settings())
    pool = analysis_workers().pool(size)
    all(future.result() for future in [pool.submit(checks.ready) for _ in range(size)])
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "cold":
            FileAnalysis.objects.all().delete()
        spent = cpu_seconds(analysis_workers().pids())
        started = time.perf_counter()
        result = analyze_sync("django", include_linter=True)
        seconds = time.perf_counter() - started
        cpu = [after - before for before, after in zip(spent, cpu_seconds(analysis_workers().pids()), strict=True)]
        print(json.dumps({"seconds": seconds, "stats": result["stats"], "files": result["total_files"],
                          "issues": len(result["issues"]), "cpu": cpu}), flush=True)
    analysis_workers().close()


def cpu_seconds(workers: list[int]) -> tuple[float, float, float]:
    """CPU seconds so far of this process, of its finished children (ruff) and of its workers
    (from /proc; 0 where there is none): the work a run did, whatever else loads the machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    in_workers = 0.0
    for pid in workers:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        in_workers += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime, in_workers


class Side:
    def __init__(self, tree: Path, workspace: Path, data_dir: Path):
        env = tree_env(tree, CODEGEN_WORKSPACE_ROOT=str(workspace), CODEGEN_DATA_DIR=str(data_dir),
                       CODEGEN_CONFIG_DIR=str(data_dir / "config"), DATABASE_URL=f"sqlite:///{data_dir}/bench.sqlite3",
                       CODEGEN_LOGGING__LEVEL="ERROR")
        (data_dir / "config").mkdir(parents=True)
        self.process = subprocess.Popen([PYTHON, __file__, "--child"], cwd=tree, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        self.answer()

    def answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the analysis process exited ({self.process.wait()})")
        return json.loads(line)

    def run(self, kind: str) -> dict:
        self.process.stdin.write(kind + "\n")
        self.process.stdin.flush()
        return self.answer()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def ruff_seconds(tree: Path) -> float:
    ruff = Path(PYTHON).with_name("ruff")
    started = time.perf_counter()
    completed = subprocess.run([str(ruff), "check", "--no-cache", "--exit-zero", str(tree)], capture_output=True)
    seconds = time.perf_counter() - started
    assert completed.returncode == 0, completed.stderr
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="HEAD", help="the commit to compare with (default HEAD)")
    parser.add_argument("--this", default=None, help="the commit measured (default: the working tree)")
    parser.add_argument("--cold", type=int, default=5, help="cold runs per tree (median taken)")
    parser.add_argument("--warm", type=int, default=3, help="warm runs per tree (median taken)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return

    import django as django_package

    with exported(args.baseline) as old_tree, exported(args.this) as new_tree, \
            tempfile.TemporaryDirectory(prefix="bench-analyze-") as tmp:
        workspace = Path(tmp) / "workspace"
        shutil.copytree(django_package.__path__[0], workspace / "django",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        sides = {"baseline": Side(old_tree, workspace, Path(tmp) / "baseline"),
                 "this": Side(new_tree, workspace, Path(tmp) / "this")}
        cold = {name: [] for name in sides}
        cpu = {name: [] for name in sides}
        ruff = []
        result = {}
        try:
            for round_number in range(args.cold):
                ruff.append(ruff_seconds(workspace / "django"))
                order = list(sides) if round_number % 2 == 0 else list(reversed(sides))
                for name in order:
                    result[name] = sides[name].run("cold")
                    assert result[name]["stats"]["cached"] == 0, result[name]["stats"]
                    cold[name].append(result[name]["seconds"])
                    cpu[name].append(result[name]["cpu"])
            warm = {name: [side.run("warm")["seconds"] for _ in range(args.warm)] for name, side in sides.items()}
            ruff += [ruff_seconds(workspace / "django") for _ in range(args.warm)]
        finally:
            for side in sides.values():
                side.close()

    ruff_median = statistics.median(ruff)
    print(f"analyze: baseline {describe(args.baseline)}\n         this     {describe(args.this)}")
    print(f"tree: a copy of {django_package.__path__[0]}: {result['this']['files']} files, "
          f"{result['this']['issues']} issues (baseline {result['baseline']['issues']}), "
          f"workers {result['this']['stats']['workers']}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"ruff check --no-cache: median {ruff_median:.3f} s of {len(ruff)}")
    for name, runs in cold.items():
        per_round = [seconds / ruff_run for seconds, ruff_run in zip(runs, ruff, strict=False)]
        print(f"cold {name:8}: median {statistics.median(runs):.3f} s = {statistics.median(runs) / ruff_median:.1f}x "
              f"the median ruff; each over its round's ruff: {', '.join(f'{r:.1f}x' for r in per_round)} "
              f"(median {statistics.median(per_round):.1f}x; goal <= 6x)")
    for name, runs in cpu.items():
        parts = [statistics.median(run[index] for run in runs) for index in range(3)]
        print(f"cold {name:8} CPU: median {parts[0]:.2f} s in the server process, {parts[1]:.2f} s in ruff, "
              f"{parts[2]:.2f} s in the workers; {sum(parts):.2f} s in all")
    print(f"cold this / baseline: {statistics.median(cold['this']) / statistics.median(cold['baseline']):.2f}x "
          f"(per round: {', '.join(f'{a / b:.2f}' for a, b in zip(cold['this'], cold['baseline'], strict=True))})")
    for name, runs in warm.items():
        print(f"warm {name:8}: median {statistics.median(runs):.3f} s = {statistics.median(runs) / ruff_median:.2f}x ruff")


if __name__ == "__main__":
    main()
