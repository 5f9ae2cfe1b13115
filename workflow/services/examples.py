"""What the task itself pins down, read without the LLM: its contract and its examples.

The contract is the function the task names (from a signature or code block in the
task, else from "function name(args)" in the prose) and the imports of that block.
The examples are the task's own checks — doctest lines (`>>> f(x)` and the output
below), `f(x) == y`, `f(x) -> y`, "f(x) returns y", `f(x) raises E` and asserts the
user wrote — turned into pytest tests. They are the most trusted tests a run has:
the user wrote them, the model did not."""

from __future__ import annotations

import ast
import doctest
import re
import textwrap
from dataclasses import dataclass, field

from workflow.services.suite import TASK, TestCase

_FENCED = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.S)
_CODE_LINE = re.compile(r"^(?:def |async def |class |import |from \w[\w.]* import |@\w)")
_NAMED_CALL = re.compile(
    r"(?:function|def|method|функци\w*|метод\w*)\s+`?([A-Za-z_]\w*)\s*\(([^()]*)\)", re.I)
# "Write `fizz(n)`": a call in backticks whose arguments are names, i.e. a signature
_QUOTED_SIGNATURE = re.compile(r"`([A-Za-z_]\w*)\(((?:\s*\*{0,2}[A-Za-z_]\w*\s*(?::[^,()`]*)?,?)*)\)`")
# What joins a call to the value it gives, in the prose forms people use.
_GIVES = re.compile(
    r"\s*(?:==|->|→|=>|=(?!=)|returns?|should return|should be|gives|is|yields|возвращает|вернёт|вернет|даёт|дает)"
    r"\s*:?\s*", re.I)
_RAISES = re.compile(r"\s*(?:raises|should raise|throws|выбрасывает|бросает)\s+`?([A-Za-z_]\w*)", re.I)
_MAX_EXAMPLES = 12


@dataclass
class Contract:
    """The interface the task fixes; empty fields mean the task did not say."""
    name: str = ""
    params: list[str] = field(default_factory=list)
    # import lines of the task's code block, kept in the code the model writes
    imports: list[str] = field(default_factory=list)
    # every top-level function and class the task's code defines (helpers the tests may use)
    names: set[str] = field(default_factory=set)
    # parameter -> its annotation as written (`list[int]`), for the parameters that have one
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(self.params)})" if self.name else ""


def _task_code(task: str) -> str:
    """The task's code: its fenced blocks, else an unfenced signature/docstring block."""
    blocks = [block for block in _FENCED.findall(task) if block.strip()]
    if blocks:
        return "\n\n".join(textwrap.dedent(block) for block in blocks)
    lines = task.replace("\r\n", "\n").split("\n")
    start = next((i for i, line in enumerate(lines) if _CODE_LINE.match(line)), None)
    return "\n".join(lines[start:]) if start is not None else ""


def _parse_loosely(code: str) -> ast.Module | None:
    """Parse a block that may be only a signature (`def f(x):` with no body yet)."""
    for candidate in (code, code.rstrip() + "\n    pass\n"):
        try:
            return ast.parse(candidate)
        except (SyntaxError, ValueError):
            continue
    # prose after the code: keep the longest head that parses
    lines = code.split("\n")
    for end in range(len(lines) - 1, 0, -1):
        head = "\n".join(lines[:end])
        for candidate in (head, head.rstrip() + "\n    pass\n"):
            try:
                return ast.parse(candidate)
            except (SyntaxError, ValueError):
                continue
    return None


def _params(args: ast.arguments) -> list[str]:
    names = [a.arg for a in (*args.posonlyargs, *args.args)]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    if args.vararg:
        names.append("*" + args.vararg.arg)
    names += [a.arg for a in args.kwonlyargs]
    if args.kwarg:
        names.append("**" + args.kwarg.arg)
    return names


def parse_contract(task: str) -> Contract:
    contract = Contract()
    tree = _parse_loosely(_task_code(task) or "")
    if tree is not None:
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                contract.imports.append(ast.unparse(node))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                contract.names.add(node.name)
                if not contract.name:
                    contract.name = node.name
                    if not isinstance(node, ast.ClassDef):
                        contract.params = _params(node.args)
                        contract.annotations = {arg.arg: ast.unparse(arg.annotation)
                                                for arg in (*node.args.posonlyargs, *node.args.args)
                                                if arg.annotation is not None}
    if not contract.name:
        match = _NAMED_CALL.search(task) or _QUOTED_SIGNATURE.search(task)
        if match:
            contract.name = match.group(1)
            contract.params = [p.strip().split(":")[0].split("=")[0].strip()
                               for p in match.group(2).split(",") if p.strip()]
            contract.names.add(contract.name)
    return contract


# ---------------------------------------------------------------- examples

@dataclass(frozen=True)
class Example:
    setup: tuple[str, ...]  # statements run first (doctest lines without output)
    call: str
    expected: str = ""  # a Python literal, or the printed text when `printed`
    raises: str = ""
    printed: bool = False


def _literal(text: str):
    """The value of a Python literal, or raise ValueError."""
    node = ast.parse(text.strip(), mode="eval")
    return ast.literal_eval(node)


def _is_literal(text: str) -> bool:
    try:
        _literal(text)
        return True
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return False


def _call_end(text: str, open_index: int) -> int:
    """Index just after the parenthesis closing the one at open_index, or -1."""
    depth, quote, index = 0, "", open_index
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return -1


def _literal_call(call: str, name: str) -> bool:
    """A call of `name` whose arguments are all literals (so it is an example, not a signature)."""
    try:
        node = ast.parse(call, mode="eval").body
    except (SyntaxError, ValueError):
        return False
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name):
        return False
    values = [*node.args, *(k.value for k in node.keywords)]
    return all(_is_literal(ast.unparse(v)) for v in values if not isinstance(v, ast.Starred))


def _longest_literal(text: str) -> str:
    text = text[:300].split("\n")[0]
    for end in range(len(text), 0, -1):
        candidate = text[:end].strip().rstrip(".,;:").strip()
        if candidate and _is_literal(candidate) and not candidate.endswith(("(", "[", "{")):
            return candidate
    return ""


def _prose_examples(text: str, name: str) -> list[Example]:
    """`f(x) == y`, `f(x) -> y`, "f(x) returns y", `f(x) raises E` anywhere in the text."""
    found = []
    for match in re.finditer(rf"(?<![\w.]){re.escape(name)}\s*\(", text):
        end = _call_end(text, match.end() - 1)
        if end < 0:
            continue
        call = text[match.start():end]
        if not _literal_call(call, name):
            continue
        rest = text[end:].lstrip("`")
        raised = _RAISES.match(rest)
        if raised:
            found.append(Example((), call, raises=raised.group(1)))
            continue
        gives = _GIVES.match(rest)
        if gives:
            value = _longest_literal(rest[gives.end():].lstrip("`"))
            if value:
                found.append(Example((), call, expected=value))
    return found


def _doctest_examples(text: str, name: str) -> list[Example]:
    found, setup = [], []
    try:
        parsed = doctest.DocTestParser().get_examples(text)
    except ValueError:  # inconsistent indentation in the user's text
        return []
    for example in parsed:
        source, want = example.source.strip(), example.want.strip()
        if not want:  # a statement (`>>> x = [3, 1]`) the later examples build on
            setup.append(source)
            continue
        if want.startswith("Traceback"):
            error = re.findall(r"^(\w[\w.]*)(?::|$)", want.split("\n")[-1])
            if error and name in source:
                found.append(Example(tuple(setup), source, raises=error[0].split(".")[-1]))
            continue
        if source.startswith("print(") and name in source:
            found.append(Example(tuple(setup), source, expected=want, printed=True))
        elif name in source:
            found.append(Example(tuple(setup), source, expected=want))
    return found


def _docstrings(task: str) -> list[str]:
    """Docstrings of the task's code, dedented the way doctest expects."""
    tree = _parse_loosely(_task_code(task) or "")
    if tree is None:
        return []
    return [doc for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module))
            and (doc := ast.get_docstring(node))]


def _user_asserts(task: str, names: set[str]) -> list[str]:
    asserts = []
    for line in task.replace("\r\n", "\n").split("\n"):
        stripped = line.strip().strip("`")
        if not stripped.startswith("assert "):
            continue
        try:
            node = ast.parse(stripped).body[0]
        except (SyntaxError, ValueError, IndexError):
            continue
        called = {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        if called & names:
            asserts.append(stripped)
    return asserts


def find_examples(task: str, contract: Contract) -> list[Example]:
    if not contract.name:
        return []
    found: list[Example] = []
    # doctest lines in the prose too; closing quotes would otherwise end up in an expected output
    sources = [*_docstrings(task), textwrap.dedent("\n".join(
        line for line in task.split("\n") if not line.strip().startswith(('"""', "'''"))))]
    seen_calls: set[tuple[str, str]] = set()
    for text in sources:
        for example in _doctest_examples(text, contract.name):
            key = (example.call, example.expected or example.raises)
            if key not in seen_calls:
                seen_calls.add(key)
                found.append(example)
    # doctest lines and the user's asserts are read on their own
    prose = re.sub(r"^\s*(?:>>>|`?assert ).*$", "", task, flags=re.M)
    for example in _prose_examples(prose, contract.name):
        key = (example.call, example.expected or example.raises)
        if key not in seen_calls:
            seen_calls.add(key)
            found.append(example)
    return found[:_MAX_EXAMPLES]


def example_calls(task: str, contract: Contract) -> list[str]:
    """Calls of the task's function with literal arguments written anywhere in the task."""
    if not contract.name:
        return []
    calls = []
    for match in re.finditer(rf"(?<![\w.]){re.escape(contract.name)}\s*\(", task):
        end = _call_end(task, match.end() - 1)
        call = task[match.start():end] if end > 0 else ""
        if call and _literal_call(call, contract.name) and call not in calls:
            calls.append(call)
    return calls[:_MAX_EXAMPLES]


def _comparison(call: str, expected: str) -> list[str]:
    try:
        value = _literal(expected)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        # not a value: compare what doctest compares, the printed output and the repr
        return [f"result = {call}",
                "shown = capsys.readouterr().out + ('' if result is None else repr(result))",
                f"assert shown.strip() == {expected!r}"]

    def has_float(item) -> bool:
        if isinstance(item, float):
            return True
        if isinstance(item, (list, tuple)):
            return any(has_float(x) for x in item)
        if isinstance(item, dict):
            return any(has_float(x) for x in item.values())
        return False

    if has_float(value):
        return [f"assert {call} == pytest.approx({expected})"]
    return [f"assert {call} == {expected}"]


def _example_body(example: Example) -> list[str]:
    body = list(example.setup)
    if example.raises:
        # by name: the exception may be the code's own class
        body += ["with pytest.raises(Exception) as raised:", f"    {example.call}",
                 f"assert {example.raises!r} in [k.__name__ for k in type(raised.value).__mro__]"]
    elif example.printed:
        body += [example.call, f"assert capsys.readouterr().out.strip() == {example.expected!r}"]
    else:
        body += _comparison(example.call, example.expected)
    return body


def example_tests(task: str, contract: Contract) -> list[TestCase]:
    """Tests from the task's own examples and asserts, each its own test function."""
    cases = []
    for index, example in enumerate(find_examples(task, contract), start=1):
        statements = _example_body(example)
        body = "\n".join("    " + line for statement in statements for line in statement.split("\n"))
        args = "capsys" if "capsys" in body else ""
        cases.append(TestCase(f"test_task_example_{index}", f"def test_task_example_{index}({args}):\n{body}\n",
                              TASK))
    for index, statement in enumerate(_user_asserts(task, contract.names or {contract.name}), start=1):
        cases.append(TestCase(f"test_task_assert_{index}", f"def test_task_assert_{index}():\n    {statement}\n",
                              TASK))
    return cases
