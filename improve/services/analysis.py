"""POST /improve/analyze: the rule-based pass (improve.analysis.engine), the optional LLM
review, ranked suggestions, and one AnalysisReport row per run (read back by improve.selectors)."""

from __future__ import annotations

import time
from collections import Counter

from asgiref.sync import async_to_sync

from codegen_site.core.db import db_async
from improve.analysis import engine, review
from improve.config import AnalysisSettings, analysis_settings
from improve.models import AnalysisReport

# What to fix first: (issue type, only these severities or None for all, title, why, effort of a few)
SUGGESTION_ORDER = (
    ("bug", ("critical",), "Fix critical issues", "files that do not parse or could not be read", "medium"),
    ("security", None, "Fix security issues", "unsafe calls such as eval or shell commands", "medium"),
    ("bug", ("high", "medium"), "Fix likely bugs", "undefined names, wrong comparisons, mutable defaults",
     "medium"),
    ("complexity", ("critical", "high"), "Simplify the most complex functions",
     "functions with the most branches, hardest to test", "high"),
    ("complexity", ("medium",), "Reduce complexity", "functions above the complexity threshold", "medium"),
    ("duplication", None, "Remove duplicated code", "blocks repeated across files", "medium"),
    ("refactor", None, "Refactor long functions and wide interfaces",
     "long functions, many parameters, large classes", "medium"),
    ("performance", None, "Improve performance", "slow idioms the linter found", "low"),
    ("bug", ("low",), "Clean up unused code", "unused imports and variables", "low"),
    ("style", None, "Fix style issues", "formatting and import order; `ruff check --fix` does most of it", "low"),
)
EFFORT_STEPS = ("low", "medium", "high")
# Past this many issues a group takes one effort step more.
MANY_ISSUES = 20


def _effort(base: str, count: int) -> str:
    return EFFORT_STEPS[min(EFFORT_STEPS.index(base) + (count > MANY_ISSUES), 2)]


def rank_suggestions(issues: list[dict], extra: list[dict]) -> list[dict]:
    """Rule-based suggestions in fixing order, then the LLM's; priority 1 first."""
    ranked = []
    for kind, severities, title, why, effort in SUGGESTION_ORDER:
        group = [i for i in issues if i["type"] == kind and (severities is None or i["severity"] in severities)]
        if not group:
            continue
        files = sorted({i["file"] for i in group})
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        ranked.append({"title": title,
                       "description": f"Found {len(group)} {kind} issue{'s' * (len(group) != 1)} ({why}) "
                                      f"in {len(files)} file{'s' * (len(files) != 1)}: {shown}",
                       "estimated_effort": _effort(effort, len(group))})
    ranked.extend(extra)
    return [{"priority": number, **suggestion} for number, suggestion in enumerate(ranked, 1)]


def _llm_candidates(run: engine.RuleRun, analysis: AnalysisSettings) -> list[tuple[str, str, list[dict]]]:
    by_file: dict[str, list[dict]] = {}
    for issue in run.issues:
        by_file.setdefault(issue["file"], []).append(issue)
    readable = [(item.relative, item.source, by_file.get(item.relative, [])) for item in run.files
                if item.source is not None]
    return review.pick_files(readable, analysis)


def _save(run: engine.RuleRun, options: dict, issues: list[dict], suggestions: list[dict], llm: dict | None,
          duration: float) -> AnalysisReport:
    return AnalysisReport.objects.create(
        path=run.path, options=options, totals=run.totals, issues=issues, issue_count=len(issues),
        severity_counts=dict(Counter(issue["severity"] for issue in issues)), suggestions=suggestions,
        stats=run.stats, llm=llm, duration=round(duration, 3))


async def analyze(path: str, *, include_linter: bool = True, use_llm: bool = False,
                  maintainability: bool = False) -> dict:
    """The analysis as POST /improve/analyze answers it (improve.serializers.AnalyzeResponseSerializer)."""
    started = time.perf_counter()
    analysis = analysis_settings()
    run = await db_async(engine.run_rules)(path, include_linter=include_linter, maintainability=maintainability)
    issues, extra, llm = run.issues, [], None
    if use_llm:
        llm_issues, extra, llm = await review.review(_llm_candidates(run, analysis), analysis)
        if llm_issues:
            issues = sorted(issues + llm_issues, key=lambda i: (engine.SEVERITY_RANK[i["severity"]], i["file"],
                                                                 i["line"]))
    suggestions = rank_suggestions(issues, extra)
    options = {"include_linter": include_linter, "use_llm": use_llm, "maintainability": maintainability}
    report = await db_async(_save)(run, options, issues, suggestions, llm, time.perf_counter() - started)
    return {**run.totals, "issues": issues, "suggestions": suggestions, "report_id": report.id,
            "duration": report.duration, "stats": run.stats, "llm": llm}


def analyze_sync(path: str, **options) -> dict:
    """The same for scripts and benchmarks outside an event loop."""
    return async_to_sync(analyze)(path, **options)
