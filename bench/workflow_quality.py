"""Does the test-first workflow beat asking the same model once?

Every task in bench/workflow_tasks.json is a statement with examples plus hidden tests the
workflow never sees. Each task runs twice with the same model in one go: single-shot (the
statement as one prompt; the code in the reply is checked by the hidden tests) and the full
workflow (its final code checked by the same hidden tests). Prints both pass counts and their
ratio, the workflow's verdicts, attempts and candidates used, and p50/p90 seconds per task, and
how far the workflow's own verdict can be trusted: the false passes (its verdict says `passed`,
the hidden tests fail) against the verdicts that say `passed`.

Run:
  .venv/bin/python bench/workflow_quality.py                      # scripted LLM: deterministic, the
                                                                  # tasks that carry scripted replies
  .venv/bin/python bench/workflow_quality.py --llm embedded --limit 12   # the bundled model
  .venv/bin/python bench/workflow_quality.py --tasks add,clamp --set candidates=5 --set max_repairs=2
  .venv/bin/python bench/workflow_quality.py --check              # the task set itself: references pass
                                                                  # their hidden tests and examples
  .venv/bin/python bench/workflow_quality.py --llm embedded --rows /tmp/rows.json   # every task's row
                                                                  # (verdict, evidence) kept as JSON
  .venv/bin/python bench/workflow_quality.py --llm embedded --no-single   # the workflow only: its passes,
                                                                  # verdicts and false passes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

from figures import percentile  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TASKS_FILE = ROOT / "bench" / "workflow_tasks.json"
HIDDEN_TIMEOUT = 10.0


def setup_django(data_dir: str) -> None:
    os.environ["CODEGEN_DATA_DIR"] = data_dir
    os.environ["CODEGEN_CONFIG_DIR"] = data_dir  # no development.toml from the checkout
    os.environ["DATABASE_URL"] = f"sqlite:///{data_dir}/bench.sqlite3"
    os.environ["DJANGO_SETTINGS_MODULE"] = "codegen_site.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def configure(overrides: dict) -> dict:
    from codegen_site.core import config as app_config

    app_config._cache = app_config.deep_merge(app_config.get_config(), overrides)
    return app_config._cache


def parse_value(raw: str):
    import tomllib

    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


# ---------------------------------------------------------------- the scripted "weak model"

class ScriptedModel:
    """Answers like a weak model, the same way every run: single-shot gets a task's first
    scripted program; in the workflow the plan is one line, the tests reply has no test
    function (so the task's examples carry the run), and code and repair requests take the
    task's programs in order (the last one repeated)."""

    def __init__(self, tasks: list[dict]):
        self.programs = {task["name"]: task["scripted_programs"] for task in tasks}
        self.served: dict[tuple[str, str], int] = {}
        # set by the bench: single-shot and the workflow's first candidate send the same prompt
        self.phase = "single"
        self.lock = threading.Lock()

    def task_of(self, prompt: str) -> str:
        for name in sorted(self.programs, key=len, reverse=True):
            if f"{name}(" in prompt:
                return name
        return ""

    def __call__(self, request: dict):
        from tests.fakes.llm_server import Turn
        from workflow.services import prompts

        messages = request["messages"]
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        prompt = "\n".join(m["content"] for m in messages if m["role"] == "user")
        name = self.task_of(prompt)
        if system == prompts.PLAN_SYSTEM:
            return Turn(content="1. Implement the function as the task says.")
        if system == prompts.TESTS_SYSTEM:
            return Turn(content="The tests should check the examples from the task.")
        phase = self.phase
        with self.lock:
            index = self.served.get((name, phase), 0)
            self.served[(name, phase)] = index + 1
        programs = self.programs.get(name) or ["pass\n"]
        return Turn(content="```python\n" + programs[min(index, len(programs) - 1)] + "```")


# ---------------------------------------------------------------- the two ways

async def hidden_pass(code: str, hidden_tests: str) -> bool:
    from codegen_site.sandbox import arun_python

    if not code.strip():
        return False
    result = await arun_python(code, hidden_tests, timeout=HIDDEN_TIMEOUT)
    return result.success


async def single_shot(task: dict) -> dict:
    from codegen_site.llm import get_llm
    from workflow.services import prompts, settings_for

    started = time.monotonic()
    llm = get_llm()
    # the workflow's code budget for the provider that answers: both ways get the same tokens
    max_tokens = settings_for((await llm.provider()).name).max_tokens("code")
    # the very question the workflow's first candidate asks
    reply = await llm.complete(prompts.direct_messages(task["prompt"]), task=task["prompt"], max_tokens=max_tokens)
    code = prompts.extract_code(reply.content)
    seconds = time.monotonic() - started
    return {"passed": await hidden_pass(code, task["hidden_tests"]), "seconds": seconds}


async def full_workflow(task: dict) -> dict:
    from workflow.services import run_workflow

    started = time.monotonic()
    run = await run_workflow(task["prompt"])
    seconds = time.monotonic() - started
    verdict = run.report.get("verdict") or "none"
    return {"passed": await hidden_pass(run.code, task["hidden_tests"]), "seconds": seconds, "code": run.code,
            "verdict": verdict, "attempts": run.attempts, "candidates": run.report.get("candidates", 0),
            "own_verdict_passed": verdict == "passed", "tests_passed": run.passed,
            "evidence": run.report.get("evidence")}


def reseed(task: dict) -> None:
    """Start the bundled model's sampling from a seed of the task's own: llama.cpp draws each
    call's seed from the one before, so without this a change in one task's number of calls
    would change the programs sampled for every later task, and two runs of the bench would
    differ by more than the code they compare."""
    from codegen_site.llm.providers import EmbeddedProvider

    provider = EmbeddedProvider()
    if provider.available():
        provider.load().set_seed(zlib.crc32(task["name"].encode()))


async def compare(tasks: list[dict], rows: list[dict], budget_seconds: float,
                  scripted: ScriptedModel | None = None, show_failed: bool = False, single: bool = True) -> None:
    """Fills `rows` as tasks finish, so an interrupted run still reports what it measured."""
    stop_at = time.monotonic() + budget_seconds if budget_seconds else float("inf")
    for task in tasks:
        if time.monotonic() >= stop_at:
            print(f"  (bench budget used: {len(tasks) - len(rows)} task(s) not started)")
            break
        if scripted:
            scripted.phase = "single"
        else:
            reseed(task)
        asked = await single_shot(task) if single else {"passed": False, "seconds": 0.0}
        if scripted:
            scripted.phase = "workflow"
        else:
            reseed(task)
        flow = await full_workflow(task)
        rows.append({"name": task["name"], "single": asked, "workflow": flow})
        false_pass = " FALSE PASS" if flow["own_verdict_passed"] and not flow["passed"] else ""
        print(f"  {task['name']:<26} single {'PASS' if asked['passed'] else 'fail'} {asked['seconds']:6.1f} s | "
              f"workflow {'PASS' if flow['passed'] else 'fail'} {flow['seconds']:6.1f} s  verdict={flow['verdict']:<11} "
              f"attempts={flow['attempts']} candidates={flow['candidates']}{false_pass}{evidence_note(flow)}",
              flush=True)
        if show_failed and not flow["passed"]:
            print("    " + (flow["code"].strip() or "(no code)").replace("\n", "\n    "), flush=True)


def evidence_note(flow: dict) -> str:
    """The evidence of a run whose tests passed, in a few words: tests by origin, mutants, why weak."""
    evidence = flow.get("evidence") or {}
    if not flow.get("tests_passed") or not evidence:
        return ""
    tests = " ".join(f"{origin}={count['passed']}/{count['ran']}" for origin, count in evidence["tests"].items()
                     if count["ran"])
    mutants = evidence["mutants"]
    reasons = evidence["reasons"][0][:70] if evidence["reasons"] else ""
    return f"\n      evidence: {tests} mutants {mutants['rejected']}/{mutants['tried']} rejected  {reasons}"


def trust(rows: list[dict]) -> dict:
    """How far the verdicts can be trusted: verdicts that say `passed`, the false ones among them
    (hidden tests fail), and the hidden passes of the other verdicts."""
    said = [row for row in rows if row["workflow"]["own_verdict_passed"]]
    false = [row["name"] for row in said if not row["workflow"]["passed"]]
    weak = [row for row in rows if row["workflow"]["verdict"] == "passed_examples_only"]
    return {"said_passed": len(said), "false_passes": false, "real_passes": sum(r["workflow"]["passed"] for r in rows),
            "examples_only": len(weak), "examples_only_hidden_pass": sum(r["workflow"]["passed"] for r in weak)}


def report(rows: list[dict], label: str, settings) -> None:
    count = len(rows)
    if not count:
        print("no task finished")
        return
    single_passes = sum(row["single"]["passed"] for row in rows)
    flow_passes = sum(row["workflow"]["passed"] for row in rows)
    single_seconds = [row["single"]["seconds"] for row in rows]
    flow_seconds = [row["workflow"]["seconds"] for row in rows]
    verdicts: dict[str, int] = {}
    for row in rows:
        verdicts[row["workflow"]["verdict"]] = verdicts.get(row["workflow"]["verdict"], 0) + 1
    agree = sum(row["workflow"]["own_verdict_passed"] == row["workflow"]["passed"] for row in rows)
    shown = ("candidates", "max_repairs", "plan", "model_tests", "code_max_tokens", "validation_timeout", "time_limit")
    print(f"\n{label}: {count} tasks; workflow {' '.join(f'{key}={getattr(settings, key)}' for key in shown)}; "
          f"cores={os.cpu_count()}")
    print(f"  single-shot : {single_passes:3d}/{count} pass hidden tests ({100 * single_passes / count:5.1f} %)  "
          f"p50 {percentile(single_seconds, 0.5):6.1f} s  p90 {percentile(single_seconds, 0.9):6.1f} s")
    print(f"  workflow    : {flow_passes:3d}/{count} pass hidden tests ({100 * flow_passes / count:5.1f} %)  "
          f"p50 {percentile(flow_seconds, 0.5):6.1f} s  p90 {percentile(flow_seconds, 0.9):6.1f} s")
    ratio = f"{flow_passes / single_passes:.2f}" if single_passes else ("n/a (both 0)" if not flow_passes
                                                                         else "inf (single-shot passed none)")
    print(f"  ratio workflow/single-shot passes: {ratio}")
    print(f"  workflow attempts mean {statistics.mean(r['workflow']['attempts'] for r in rows):.2f}, "
          f"candidates mean {statistics.mean(r['workflow']['candidates'] for r in rows):.2f}; "
          f"time per task workflow/single-shot (median) "
          f"{statistics.median(flow_seconds) / max(statistics.median(single_seconds), 1e-9):.1f}x")
    print(f"  verdicts: {', '.join(f'{k} {v}' for k, v in sorted(verdicts.items()))}; "
          f"tasks without a verdict: {verdicts.get('none', 0)}; "
          f"the workflow's own verdict matched the hidden tests on {agree}/{count}")
    trusted = trust(rows)
    said = trusted["said_passed"]
    share = f"{len(trusted['false_passes']) / said:.2f}" if said else "n/a"
    print(f"  passes (hidden tests pass): {trusted['real_passes']}/{count}; verdict `passed`: {said}, "
          f"false passes among them: {len(trusted['false_passes'])} ({share})"
          f"{' — ' + ', '.join(trusted['false_passes']) if trusted['false_passes'] else ''}; "
          f"`passed_examples_only`: {trusted['examples_only']} (hidden tests pass on "
          f"{trusted['examples_only_hidden_pass']})")


# ---------------------------------------------------------------- the task set itself

async def check(tasks: list[dict]) -> int:
    """Each reference passes its hidden tests and the tests read from its statement; each
    statement is a coding task naming its function."""
    from codegen_site.sandbox import arun_python
    from workflow.services import examples, intent
    from workflow.services.suite import Suite

    problems = 0
    for task in tasks:
        contract = examples.parse_contract(task["prompt"])
        cases = examples.example_tests(task["prompt"], contract)
        hidden = await arun_python(task["reference"], task["hidden_tests"], timeout=HIDDEN_TIMEOUT)
        shown = await arun_python(task["reference"], Suite(cases, []).source(), timeout=HIDDEN_TIMEOUT)
        issues = []
        if intent.classify_intent(task["prompt"]) != intent.CODE:
            issues.append("not classified as a coding task")
        if contract.name != task["name"]:
            issues.append(f"contract names {contract.name!r}")
        if not cases:
            issues.append("no examples read from the statement")
        if not hidden.success:
            issues.append(f"reference fails hidden tests: {hidden.error}")
        if cases and not shown.success:
            issues.append(f"reference fails the statement's examples: {shown.error}\n{shown.output}")
        problems += bool(issues)
        print(f"  {task['name']:<26} examples={len(cases)} hidden={'ok' if hidden.success else 'FAIL'} "
              f"{'; '.join(issues)}")
    print(f"{len(tasks)} tasks, {problems} with problems")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", choices=("scripted", "embedded"), default="scripted")
    parser.add_argument("--limit", type=int, default=0, help="run the first N tasks (after --offset)")
    parser.add_argument("--offset", type=int, default=0, help="skip the first N tasks")
    parser.add_argument("--stride", type=int, default=1, help="every K-th task: a spread-out subset")
    parser.add_argument("--tasks", default="", help="comma-separated task names")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a [workflow] setting for this run, e.g. candidates=5")
    parser.add_argument("--budget", type=float, default=0, help="minutes; no task starts after them")
    parser.add_argument("--check", action="store_true", help="check the task set and exit")
    parser.add_argument("--show-failed", action="store_true",
                        help="print the workflow's code for each task it fails")
    parser.add_argument("--no-single", action="store_true",
                        help="run the workflow only (single-shot is then reported as 0 passes)")
    parser.add_argument("--rows", default="", help="write every task's row (verdict, evidence, code) to this "
                                                   "JSON file")
    args = parser.parse_args()

    tasks = json.loads(TASKS_FILE.read_text())
    if args.tasks:
        wanted = set(args.tasks.split(","))
        tasks = [task for task in tasks if task["name"] in wanted]
    elif args.llm == "scripted" and not args.check:
        tasks = [task for task in tasks if task.get("scripted_programs")]
    tasks = tasks[args.offset::args.stride]
    if args.limit:
        tasks = tasks[: args.limit]

    with tempfile.TemporaryDirectory(prefix="workflow-bench-") as data_dir:
        setup_django(data_dir)
        if args.check:
            return 1 if asyncio.run(check(tasks)) else 0
        workflow = dict(parse_value_pair(item) for item in args.set)
        overrides: dict = {"workflow": workflow, "rag": {}}
        server = None
        if args.llm == "scripted":
            from tests.fakes.llm_server import FakeLLMServer

            server = FakeLLMServer().start()
            server.responder = ScriptedModel(tasks)
            overrides.update({"llm": {"provider": "ollama"}, "ollama": {"host": server.url}})
        else:
            overrides["llm"] = {"provider": "embedded"}
        overrides["workflow"].setdefault("research_top_k", 0)  # no index here; keep the prompts alike
        from workflow.services import settings_for

        configure(overrides)
        settings = settings_for("ollama" if server else "embedded")
        label = "scripted LLM (deterministic)" if server else "bundled model (SmolLM2-135M via llama.cpp)"
        print(f"{label}: {len(tasks)} tasks")
        rows: list[dict] = []
        try:
            asyncio.run(compare(tasks, rows, args.budget * 60, server.responder if server else None,
                                args.show_failed, single=not args.no_single))
        except KeyboardInterrupt:
            print(f"  (interrupted: {len(tasks) - len(rows)} task(s) not finished)")
        finally:
            if server:
                server.stop()
        report(rows, label, settings)
        if args.rows:
            Path(args.rows).write_text(json.dumps(rows, indent=1, default=str))
    return 0


def parse_value_pair(item: str) -> tuple[str, object]:
    key, _, raw = item.partition("=")
    return key.strip(), parse_value(raw.strip())


if __name__ == "__main__":
    sys.exit(main())
