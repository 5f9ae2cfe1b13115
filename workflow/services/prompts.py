"""Prompts for each pipeline stage and robust extraction of code from replies.

Every code-producing prompt asks for exactly one ```python fence; extraction
still copes with prose around it, several fences, a fence cut off by the token
limit, or no fence at all."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys

from codegen_site.sandbox import strip_code_fences

PLAN_SYSTEM = (
    "You are a senior Python engineer planning a small coding task before anyone writes code. "
    "Reply with a short numbered plan of 3 to 6 steps: the function or class names with their signatures, "
    "the behaviour including edge cases and errors, and what the tests should check. Do not write code."
)
TESTS_SYSTEM = (
    "You write pytest tests for a Python coding task before the implementation exists (test-driven development). "
    "Output only Python code inside one ```python fenced block and nothing else. "
    "Write 3 to 6 test functions named test_* using plain assert statements (pytest.raises for errors). "
    "Call the functions and classes under test directly by name: they will be defined in the same module, "
    "so do not import them and do not define them. Import only the standard library and pytest."
)
CODE_SYSTEM = (
    "You implement a Python coding task so that the given pytest tests pass. "
    "Output only Python code inside one ```python fenced block and nothing else. "
    "Define every function and class the tests use, with exactly the names and signatures the tests call. "
    "Do not include the tests, do not read input(), and keep module level free of side effects."
)
REPAIR_SYSTEM = (
    "You fix Python code that fails its pytest tests. You get the task, the tests, the current code and the "
    "failing test output. Change the code, not the tests. "
    "Output only the complete corrected code inside one ```python fenced block and nothing else."
)
ANSWER_IN_ONE_BLOCK = "Answer with the complete Python code in one ```python block."
CHAT_SYSTEM = (
    "You are CodeGen AI, a local programming assistant. Answer the question clearly and concisely; "
    "use short code examples in ```python fences when they help."
)


def _section(title: str, body: str, fence: bool = False) -> str:
    body = body.strip("\n")
    return f"{title}:\n```python\n{body}\n```" if fence else f"{title}:\n{body}"



def _context_sections(previous_code: str, research: str) -> list[str]:
    sections = []
    if previous_code:
        sections.append(_section("Code from the previous task in this session (build on it when relevant)",
                                 previous_code, fence=True))
    if research:
        sections.append(_section("Relevant code from the indexed project", research))
    return sections


def plan_messages(task: str, *, previous_code: str = "", research: str = "") -> list[dict]:
    user = "\n\n".join([_section("Task", task), *_context_sections(previous_code, research)])
    return [{"role": "system", "content": PLAN_SYSTEM}, {"role": "user", "content": user}]


def _contract_section(signature: str, imports: list[str]) -> list[str]:
    if not signature:
        return []
    lines = [f"The function is `{signature}`: keep this name and these parameters."]
    if imports:
        lines.append("Keep these imports: " + "; ".join(imports))
    return [" ".join(lines)]


def _plan_section(plan: str) -> list[str]:
    return [_section("Plan", plan)] if plan.strip() else []


def tests_messages(task: str, plan: str, *, signature: str = "", previous_code: str = "",
                   research: str = "") -> list[dict]:
    user = "\n\n".join([_section("Task", task), *_plan_section(plan), *_contract_section(signature, []),
                        *_context_sections(previous_code, research),
                        "Write the pytest tests now, as one ```python block."])
    return [{"role": "system", "content": TESTS_SYSTEM}, {"role": "user", "content": user}]


def code_messages(task: str, plan: str, tests: str, *, signature: str = "", imports: list[str] | None = None,
                  previous_code: str = "", research: str = "") -> list[dict]:
    user = "\n\n".join([_section("Task", task), *_plan_section(plan),
                        _section("Tests the code must pass", tests, fence=True),
                        *_contract_section(signature, imports or []),
                        *_context_sections(previous_code, research),
                        "Write the implementation now, as one ```python block."])
    return [{"role": "system", "content": CODE_SYSTEM}, {"role": "user", "content": user}]


def direct_messages(task: str, *, previous_code: str = "", research: str = "") -> list[dict]:
    """The task asked once, as a user would ask it (no system prompt): the first of several
    candidates, so the workflow always has what a single question gives. A small model often
    does better on the bare task than on a long prompt, and the tests still judge it."""
    user = "\n\n".join([task, *_context_sections(previous_code, research), ANSWER_IN_ONE_BLOCK])
    return [{"role": "user", "content": user}]


def repair_messages(task: str, tests: str, code: str, failure: str, *, attempt: int, signature: str = "",
                    imports: list[str] | None = None) -> list[dict]:
    """`tests` are the failing tests only and `failure` the shortest useful output: a small
    model loses the point in a long prompt."""
    user = "\n\n".join([_section("Task", task), *_contract_section(signature, imports or []),
                        _section("Failing tests", tests, fence=True),
                        _section(f"Current code (attempt {attempt - 1})", code, fence=True),
                        _section("Test run output", failure),
                        "Return the corrected complete code as one ```python block."])
    return [{"role": "system", "content": REPAIR_SYSTEM}, {"role": "user", "content": user}]


def clip(text: str, limit: int) -> str:
    """Keep the head and the tail (pytest puts the summary last) of long output."""
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + "\n[... output shortened ...]\n" + text[-(limit - head):]


_CODE_START = re.compile(r"^(?:def |class |async def |import |from \w|@\w|if __name__|[A-Za-z_][\w.]*\s*=|#)")


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
        return True
    except (SyntaxError, ValueError):
        return False


def _drop_cut_off_tail(code: str) -> str:
    """Remove a last top-level block left unfinished by the token limit (only when that block is
    where parsing fails, so real syntax errors earlier in the code stay visible)."""
    for _ in range(3):
        try:
            ast.parse(code)
            return code
        except (SyntaxError, ValueError) as exc:
            error_line = getattr(exc, "lineno", None) or 0
        lines = code.rstrip("\n").split("\n")
        starts = [i for i, line in enumerate(lines) if line[:1] not in ("", " ", "\t", ")", "]", "}")]
        if len(starts) < 2 or error_line < starts[-1] + 1:
            return code
        code = "\n".join(lines[: starts[-1]]).rstrip("\n") + "\n"
    return code


def fenced_block_closed(text: str) -> bool:
    """A reply has opened and closed a ``` block with code in it."""
    opening = text.find("```")
    body_start = text.find("\n", opening) if opening >= 0 else -1
    if body_start < 0:
        return False
    closing = text.find("\n```", body_start)
    if closing < 0:
        closing = text.find("```", body_start)  # closed right after the code: "x = 1```"
    return closing >= 0 and bool(text[body_start:closing].strip())


def extract_code(reply: str) -> str:
    """The Python code in a model reply (fenced or not), without surrounding prose."""
    text = (reply or "").replace("\r\n", "\n")
    if "```" in text:
        code = strip_code_fences(text) or ""
        if code.strip():
            return _drop_cut_off_tail(code.strip("\n") + "\n")
    lines = text.strip("\n").split("\n")
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return text.strip() + "\n" if text.strip() else ""
    lines = lines[start:]
    # Drop trailing prose ("This function ...") while that makes the code parse.
    end = len(lines)
    while end > 1 and not _parses("\n".join(lines[:end])):
        if lines[end - 1][:1] in (" ", "\t") or _CODE_START.match(lines[end - 1]):
            break
        end -= 1
    if _parses("\n".join(lines[:end])):
        lines = lines[:end]
    return _drop_cut_off_tail("\n".join(lines).strip("\n") + "\n")


def module_available(name: str) -> bool:
    root = name.split(".")[0]
    if root in sys.stdlib_module_names or root in ("pytest", "solution", "impl"):
        return True
    try:
        return importlib.util.find_spec(root) is not None
    except (ImportError, ValueError):
        return False


def normalize_test_imports(tests: str, code: str) -> str:
    """Point imports of made-up modules at the code under test.

    Models often write `from factorial import factorial` or `from my_module import ...`;
    when the names come from the generated code, the sandbox's `solution` module has them."""
    try:
        tree = ast.parse(tests)
        defined = {node.name for node in ast.parse(code).body
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    except SyntaxError:
        return tests
    lines = tests.split("\n")
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module or node.lineno != node.end_lineno:
            continue
        if module_available(node.module):
            continue
        names = [alias.name for alias in node.names]
        if names != ["*"] and not set(names) <= defined:
            continue
        line = lines[node.lineno - 1]
        indent = line[: len(line) - len(line.lstrip())]
        imported = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
        lines[node.lineno - 1] = f"{indent}from solution import {imported}"
    return "\n".join(lines)
