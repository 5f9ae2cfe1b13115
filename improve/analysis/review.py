"""The optional LLM pass (use_llm): the most flagged files, within a budget of files and
characters, go to the model with their rule-based findings; it answers with JSON issues
and suggestions. An answer that does not parse leaves that file with the rule-based
findings alone, and the summary says so. An unreachable LLM is a 503 (LLMUnavailable)."""

from __future__ import annotations

import json
import re

from codegen_site.llm import LLMError, LLMUnavailable, get_llm
from improve.analysis.checks import decode
from improve.config import AnalysisSettings

ISSUE_TYPES = ("complexity", "duplication", "style", "bug", "security", "performance", "refactor")
SEVERITIES = ("critical", "high", "medium", "low")
EFFORTS = ("low", "medium", "high")
SEVERITY_WEIGHT = {"critical": 8, "high": 4, "medium": 2, "low": 1}

SYSTEM_PROMPT = (
    "You review Python code for a developer. Reply with one JSON object and nothing else:\n"
    '{"issues": [{"line": <int>, "type": "<one of ' + ", ".join(ISSUE_TYPES) + '>", '
    '"severity": "<critical|high|medium|low>", "message": "<what is wrong>", "suggestion": "<how to fix it>"}], '
    '"suggestions": [{"title": "<short>", "description": "<what to change and why>", '
    '"estimated_effort": "<low|medium|high>"}]}\n'
    "Report real problems only (bugs, security, performance, design), not the ones already listed. "
    "Lines are numbered as in the file."
)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def pick_files(files: list[tuple[str, bytes, list[dict]]],
               settings: AnalysisSettings) -> list[tuple[str, str, list[dict]]]:
    """(path, text, issues) of the files most worth a review, from (path, source, issues):
    most severe findings first, within llm_max_files and llm_total_chars."""
    ranked = sorted(files, key=lambda item: (-sum(SEVERITY_WEIGHT[i["severity"]] for i in item[2]), item[0]))
    chosen, budget = [], settings.llm_total_chars
    for path, source, issues in ranked:
        if len(chosen) >= settings.llm_max_files or budget <= 0:
            break
        text = decode(source)[:min(settings.llm_file_chars, budget)]
        budget -= len(text)
        chosen.append((path, text, issues))
    return chosen


def prompt(path: str, text: str, issues: list[dict]) -> list[dict]:
    numbered = "\n".join(f"{number}| {line}" for number, line in enumerate(text.splitlines(), 1))
    known = "\n".join(f"- line {i['line']}: {i['message']}" for i in issues[:30]) or "- none"
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"File: {path}\nAlready found:\n{known}\n\n```python\n{numbered}\n```"}]


def _issue(raw, path: str) -> dict | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("message"), str) or not raw["message"].strip():
        return None
    line = raw.get("line")
    return {
        "file": path,
        "line": line if type(line) is int and line > 0 else 1,
        "type": raw.get("type") if raw.get("type") in ISSUE_TYPES else "refactor",
        "severity": raw.get("severity") if raw.get("severity") in SEVERITIES else "medium",
        "message": raw["message"].strip()[:500],
        "suggestion": str(raw.get("suggestion") or "")[:500],
    }


def _suggestion(raw, path: str) -> dict | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("title"), str) or not raw["title"].strip():
        return None
    return {
        "title": f"{path}: {raw['title'].strip()[:200]}",
        "description": str(raw.get("description") or "")[:1000],
        "estimated_effort": raw.get("estimated_effort") if raw.get("estimated_effort") in EFFORTS else "medium",
    }


def _json_object(answer: str) -> dict | None:
    text = _FENCE.sub("", answer.strip())
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        body = json.loads(text[start:end + 1])
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def parse_answer(answer: str, path: str) -> tuple[list[dict], list[dict]] | None:
    """Issues and suggestions from the model's answer, or None when it is not the asked-for JSON.
    Items that lack a message (or title) are dropped; unknown types and severities get defaults."""
    body = _json_object(answer)
    if body is None or not ({"issues", "suggestions"} & body.keys()):
        return None
    raw_issues, raw_suggestions = body.get("issues", []), body.get("suggestions", [])
    if not isinstance(raw_issues, list) or not isinstance(raw_suggestions, list):
        return None
    issues = [issue for issue in (_issue(raw, path) for raw in raw_issues) if issue]
    suggestions = [item for item in (_suggestion(raw, path) for raw in raw_suggestions) if item]
    return issues, suggestions


async def review(candidates: list[tuple[str, str, list[dict]]],
                 settings: AnalysisSettings) -> tuple[list, list, dict]:
    """Ask the LLM about each chosen file in turn: (issues, suggestions, summary)."""
    llm = get_llm()
    issues, suggestions = [], []
    summary = {"used": 0, "failed": 0, "files": [], "model": "", "note": ""}
    problems = []
    for path, text, known in candidates:
        summary["files"].append(path)
        try:
            completion = await llm.complete(prompt(path, text, known), tier="medium",
                                            max_tokens=settings.llm_answer_tokens, temperature=0.1)
        except LLMUnavailable:
            raise
        except LLMError as exc:
            summary["failed"] += 1
            problems.append(f"{path}: {exc.detail}")
            continue
        summary["model"] = completion.model
        parsed = parse_answer(completion.content, path)
        if parsed is None:
            summary["failed"] += 1
            problems.append(f"{path}: the answer was not the requested JSON")
            continue
        summary["used"] += 1
        issues.extend(parsed[0])
        suggestions.extend(parsed[1])
    if problems:
        summary["note"] = ("Rule-based findings only for " + "; ".join(problems))[:2000]
    elif not candidates:
        summary["note"] = "No files to review"
    return issues, suggestions, summary
