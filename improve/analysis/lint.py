"""Lint through ruff: one run over every file that needs it, JSON out, rule families mapped
to the API's issue types.

ruff is a trusted tool reading the user's files (no user code runs), so it is started
as a plain subprocess. `--isolated` and an explicit `--select` keep the project's own
ruff settings from changing what is reported."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

from improve.config import AnalysisSettings

# Rule family -> issue type. A family prefix is followed by the rule's digits, so "S" (bandit)
# does not take "SIM" rules, nor "E" the "EM" ones.
FAMILY_TYPES = (("PERF", "performance"), ("S", "security"), ("F", "bug"), ("B", "bug"),
                ("E", "style"), ("W", "style"), ("I", "style"))
SEVERITY_BY_TYPE = {"security": "high", "bug": "medium", "performance": "low", "style": "low"}
LOW_IMPACT = frozenset({
    "F401", "F841", "F811", "B007", "B905",  # unused names, loop variables, zip(strict=)
    "S110", "S112", "S311", "S403", "S404", "S603", "S607",  # try/except/pass, random, imports, plain subprocess
})
SUGGESTIONS = {
    "security": "Avoid the unsafe construct or validate its input; see the rule's page: {url}",
    "bug": "Fix the code the linter points at; see {url}",
    "performance": "Use the faster idiom described at {url}",
    "style": "Run `ruff check --fix` / `ruff format`, or fix by hand; see {url}",
}
# Argument list of one ruff run stays well below the OS limit.
MAX_ARGUMENT_CHARS = 100_000

class LinterFailed(RuntimeError):
    """ruff missing, crashed or too slow: the analysis goes on without lint and says so."""


def ruff_binary() -> str:
    # The ruff installed with the project (next to this interpreter), else the one on PATH.
    beside = Path(sys.executable).with_name("ruff")
    return str(beside) if beside.exists() else "ruff"


def ruff_version() -> str:
    """ruff's version (part of the lint cache key); a ruff that does not run fails later, in `start`."""
    try:
        return _installed_ruff_version()
    except (OSError, subprocess.TimeoutExpired):
        return "not runnable"  # not remembered: asked again next time


@functools.cache
def _installed_ruff_version() -> str:
    completed = subprocess.run([ruff_binary(), "--version"], capture_output=True, text=True, timeout=30)
    return completed.stdout.strip()


def issue_type(code: str) -> str | None:
    for prefix, kind in FAMILY_TYPES:
        if code.startswith(prefix) and (len(code) == len(prefix) or code[len(prefix)].isdigit()):
            return kind
    return None


def severity(code: str, kind: str) -> str:
    if code in LOW_IMPACT:
        return "low"
    return SEVERITY_BY_TYPE[kind]


def command(settings: AnalysisSettings) -> list[str]:
    args = [ruff_binary(), "check", "--isolated", "--no-cache", "--output-format", "json", "--exit-zero",
            "--select", ",".join(settings.ruff_select), "--line-length", str(settings.ruff_line_length)]
    if settings.ruff_ignore:
        args += ["--ignore", ",".join(settings.ruff_ignore)]
    return args


def start(paths: list[str], settings: AnalysisSettings) -> list[subprocess.Popen]:
    """Start ruff on these files (a few runs when the argument list is long); collect with `collect`."""
    runs, group, size = [], [], 0
    for path in paths:
        if group and size + len(path) > MAX_ARGUMENT_CHARS:
            runs.append(group)
            group, size = [], 0
        group.append(path)
        size += len(path) + 1
    if group:
        runs.append(group)
    base = command(settings)
    try:
        return [subprocess.Popen([*base, "--", *group], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL) for group in runs]
    except OSError as exc:
        raise LinterFailed(f"ruff could not start: {exc}") from exc


def collect(processes: list[subprocess.Popen], timeout: float) -> dict[str, list]:
    """Issues per absolute file name, each [line, type, severity, message, suggestion]."""
    found: dict[str, list] = {}
    for process in processes:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise LinterFailed(f"ruff took longer than {timeout} s") from None
        if process.returncode != 0:
            raise LinterFailed(f"ruff failed: {err.decode(errors='replace').strip()[:500]}")
        for finding in json.loads(out or b"[]"):
            code = finding.get("code")
            kind = issue_type(code) if code else None
            if kind is None:  # syntax errors: the file's own check reports them once
                continue
            url = finding.get("url") or f"ruff rule {code}"
            found.setdefault(finding["filename"], []).append([
                finding["location"]["row"], kind, severity(code, kind), f"{code} {finding['message']}",
                SUGGESTIONS[kind].format(url=url),
            ])
    return found
