"""What a verdict rests on, and the checks a passing program goes through before a run says `passed`.

A task's examples are few, and a wrong program can satisfy them. So before a run says
`passed`, one sandbox run puts the kept program, the passing programs of the other
candidates and broken variants of the kept program (mutants: a comparison flipped, a
constant off by one, a statement dropped, a constant returned) through the counted tests
and through edge inputs derived from the task's examples and signature:

- the kept program crashing on a valid-looking edge input is evidence against it;
- another candidate (sampled on its own) that passes the same tests but returns something
  else for an edge input means the tests cannot tell which of the two is right; one that
  returns the same adds that input, with the agreed value, to what the program is checked by;
- a mutant that passes every test and every agreed value while it behaves differently from
  the kept program on some edge input shows that the suite is weak: it would pass a broken
  program just as well.

Any of these (or checks that could not run) makes the verdict `passed_examples_only`
rather than `passed`; the reasons go into the run's report and its text.

Refusal or crash. A function may rightly refuse an input it does not take, so an exception on
an edge input is not always a crash. It counts as a refusal (any exception) when the call has
an empty text or container, or a top-level number that is zero or negative, among its
arguments; a `ValueError` (an input out of the function's domain) or an exception the
task's examples show is a refusal on any other edge input too, except one: a list or tuple
of the examples' own kind with one item changed to 0 or to a negative number (the examples
rarely hold one, and a program that raises there, `ValueError` or not, fails a plain input
of the task). There only a `ZeroDivisionError` on the zero (a task that divides by its
items) or an exception the examples show is a refusal; a task that says its numbers are
positive gets no such input (no negative ones for "non-negative").

Letter case. Where every example's text is lower case and no answer is or holds a text (a
count, a yes or no), the texts' upper- and mixed-case forms are edge inputs, and one mutant is the
program reading its text in lower case: a program that counts only lower-case letters
differs from it there, and the tests cannot reject it."""

from __future__ import annotations

import ast
import math
import time
from dataclasses import dataclass, field

from codegen_site.sandbox import arun_python
from workflow.services import edits, examples, suite
from workflow.services.programs import Scored
from workflow.services.state import Job, RunState

PROBE = "probe"  # the origin of edge-input checks in a verdict's evidence
ORIGINS = (suite.TASK, suite.LLM, PROBE, suite.SMOKE)

_MAX_EDGE_INPUTS = 12
_MAX_MUTANTS = 40
_MAX_OTHERS = 3  # other candidates' programs compared with the kept one
# CPU seconds per program: its tests, and again each edge input. The kept program and the
# candidates had their tests run already, so they get longer than mutants, which may loop.
_SECONDS_TRUSTED = 1.0
_SECONDS_MUTANT = edits.SECONDS_EACH
# Exceptions that are an answer rather than a crash: a function refusing an input it does not take.
# On a degenerate input (an empty text or collection, a zero or negative number) any exception is a refusal.
_REFUSALS = {"ValueError", "NotRun"}
# Edge inputs with one item of a list changed to 0 or a negative number: exceptions there are crashes
# (the module's docstring), but dividing by an item may rightly fail on the zero.
ZERO_INSIDE, NEGATIVE_INSIDE = "zero inside", "negative inside"
_INSIDE_REFUSALS = {ZERO_INSIDE: {"ZeroDivisionError", "NotRun"}, NEGATIVE_INSIDE: {"NotRun"}}
_PRIORITY = 6  # edge inputs kept before the rest are spread over what is left


@dataclass
class Evidence:
    """What the verdict on one program rests on (the report's `evidence`)."""
    tests: dict[str, dict[str, int]] = field(default_factory=dict)  # origin -> {"ran", "passed"}
    edge_inputs: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)  # "f([]) raised IndexError"
    compared: int = 0  # other candidates' passing programs run on the edge inputs
    agreed: int = 0  # edge inputs on which one of them returned what the kept program returns
    disagreements: list[str] = field(default_factory=list)
    mutants_tried: int = 0
    mutants_rejected: int = 0
    mutants_equivalent: int = 0  # survivors that behave like the program on every input tried
    mutants_survived: list[str] = field(default_factory=list)  # what each surviving mutant changed
    checked: bool = False  # the strengthening checks ran
    reasons: list[str] = field(default_factory=list)  # why the evidence is weak (empty: it is not)

    @property
    def weak(self) -> bool:
        return bool(self.reasons)

    def as_dict(self) -> dict:
        ran = sum(item["ran"] for item in self.tests.values())
        passed = sum(item["passed"] for item in self.tests.values())
        return {"tests": self.tests, "ran": ran, "passed": passed, "checked": self.checked, "weak": self.weak,
                "reasons": self.reasons, "edge_inputs": self.edge_inputs, "crashes": self.crashes,
                "agreement": {"candidates": self.compared, "agreed": self.agreed,
                              "disagreements": self.disagreements},
                "mutants": {"tried": self.mutants_tried, "rejected": self.mutants_rejected,
                            "equivalent": self.mutants_equivalent, "survived": self.mutants_survived}}


# ---------------------------------------------------------------- edge inputs

def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _variants(value, seen: list) -> list:
    """Edge values of one argument that still look valid next to the values the examples use
    (no negative number where every example's is at least 0)."""
    if isinstance(value, bool):
        return [not value]
    if _is_int(value):
        floor = 0 if all(item >= 0 for item in seen if _is_int(item)) else None
        found = [0, 1, value + 1, value - 1]
        return [item for item in found if floor is None or item >= floor]
    if isinstance(value, float):
        found = [0.0, value / 2, value * 2]
        if any(isinstance(item, float) and item < 0 for item in seen):
            found.append(-value)
        return found
    if isinstance(value, str):
        return ["", value[:1], value[::-1], value + value[-1:]]
    if isinstance(value, (list, tuple)):
        found = [type(value)(), value[:1], value[::-1], value + value[-1:]]
        if len(value) > 1:
            found.append(value[:1] + value)  # the first item again, in front
        if value and all(_is_int(item) for item in value):
            found.append(value + type(value)([max(value) + 1]))  # a new largest item, last
        return found
    if isinstance(value, dict):
        return [{}, dict(list(value.items())[:1])]
    return []


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _mixed_case(text: str) -> str:
    return "".join(char.upper() if index % 2 == 0 else char for index, char in enumerate(text))


def _first_variants(value, task: str) -> list[tuple[object, str]]:
    """(variant, kind) of one argument the spread must not drop: a list of numbers with one item
    (the middle one) 0 or negative, and a lower-case text in upper and mixed case."""
    found: list[tuple[object, str]] = []
    if isinstance(value, (list, tuple)) and value and all(_number(item) for item in value):
        lowered = task.lower()
        middle = len(value) // 2
        zero = type(value[middle])(0)
        negative = -abs(value[middle]) or type(value[middle])(-1)
        if "positive" not in lowered.replace("non-positive", ""):
            if zero not in value:
                found.append((type(value)([*value[:middle], zero, *value[middle + 1:]]), ZERO_INSIDE))
            if all(item >= 0 for item in value) and not any(word in lowered for word in
                                                            ("non-negative", "nonnegative", "natural")):
                found.append((type(value)([*value[:middle], negative, *value[middle + 1:]]), NEGATIVE_INSIDE))
    if isinstance(value, str) and value != value.upper():
        found.append((value.upper(), ""))  # letter case: a check the examples often leave out
        if _mixed_case(value) not in (value, value.upper()):
            found.append((_mixed_case(value), ""))
    return found


# values for a parameter known only by its annotation
_BY_ANNOTATION = {"int": [0, 1, 2, 10], "float": [0.0, 1.5, -2.0, 10.0], "str": ["", "a", "ab", "Hello world"],
                  "bool": [True, False], "list[int]": [[], [1], [3, 1, 2], [2, 2, 5, -1]],
                  "list[str]": [[], ["a"], ["b", "a"], ["x", "x", "y"]], "list[float]": [[], [1.5], [2.0, -1.0]],
                  "dict[str, int]": [{}, {"a": 1}, {"a": 1, "b": 2}]}


def _annotation_values(annotation: str) -> list:
    name = annotation.replace(" ", "").replace("List[", "list[").replace("Dict[", "dict[")
    name = {"list": "list[int]", "dict": "dict[str,int]"}.get(name, name)
    return _BY_ANNOTATION.get(name.replace(",", ", "), [])


def _test_calls(tests_source: str, name: str) -> list[str]:
    """Calls of `name` with literal arguments in the tests (the model's tests call it too)."""
    try:
        tree = ast.parse(tests_source)
    except (SyntaxError, ValueError):
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name \
                and not node.keywords and node.args:
            try:
                values = [ast.literal_eval(arg) for arg in node.args]
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            call = f"{name}({', '.join(repr(value) for value in values)})"
            if call not in found:
                found.append(call)
    return found


def edge_calls(task: str, contract: examples.Contract, tests_source: str = "") -> list[str]:
    """Calls of the task's function on edge inputs (not those the task or the tests make): each
    literal argument of such a call varied (empty, one item, reversed, one more, zero, ...),
    or, without any, values for each annotated parameter."""
    return edge_inputs(task, contract, tests_source)[0]


def edge_inputs(task: str, contract: examples.Contract,
                tests_source: str = "") -> tuple[list[str], dict[str, str]]:
    """`edge_calls` and, for those with a list item changed to 0 or a negative number, which."""
    if not contract.name:
        return [], {}
    calls = examples.example_calls(task, contract)
    calls += [call for call in _test_calls(tests_source, contract.name) if call not in calls]
    parsed = []
    for call in calls:
        try:
            node = ast.parse(call, mode="eval").body
            parsed.append([ast.literal_eval(arg) for arg in node.args] if not node.keywords else None)
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError, AttributeError):
            parsed.append(None)
    found: list[str] = []
    first: list[str] = []
    inside: dict[str, str] = {}

    def add(values: list, into: list[str] = found) -> str | None:
        call = f"{contract.name}({', '.join(repr(value) for value in values)})"
        if call in calls or call in found or call in first:
            return None
        into.append(call)
        return call

    rows = [values for values in parsed if values is not None]
    for values in rows:
        for index, value in enumerate(values):
            for variant, kind in _first_variants(value, task):
                call = add([*values[:index], variant, *values[index + 1:]], first)
                if call and kind:
                    inside[call] = kind
    for values in rows:
        for index, value in enumerate(values):
            seen = [row[index] for row in rows if len(row) > index]
            for variant in _variants(value, seen):
                add([*values[:index], variant, *values[index + 1:]])
    if not calls and contract.params and all(name in contract.annotations for name in contract.params):
        columns = [_annotation_values(contract.annotations[name]) for name in contract.params]
        if all(columns):
            for row in range(max(len(column) for column in columns)):
                add([column[row % len(column)] for column in columns])
    first = first[:_PRIORITY]
    chosen = first + _spread(found, _MAX_EDGE_INPUTS - len(first))
    return chosen, {call: kind for call, kind in inside.items() if call in chosen}


def _spread(items: list, limit: int) -> list:
    """At most `limit` of `items`, taken evenly from the whole list (in order)."""
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(index * step)] for index in range(limit)]


# ---------------------------------------------------------------- comparing what programs returned

def _opaque(seen: str) -> bool:
    """A value whose repr says nothing comparable (an object's address)."""
    return " at 0x" in seen


def _close(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        except TypeError:
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[key], b[key]) for key in a)
    return a == b


def same(a: str, b: str) -> bool:
    """Two probe results (reprs or `error:<name>`) are the same answer; floats compared closely."""
    if a == b:
        return True
    if a.startswith("error:") or b.startswith("error:"):
        return False
    try:
        return _close(ast.literal_eval(a), ast.literal_eval(b))
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return False


def _value(seen: str) -> bool:
    return not seen.startswith("error:") and not _opaque(seen)


# ---------------------------------------------------------------- mutants

def constant_mutant(code: str, name: str, call: str) -> str | None:
    """The program with its function replaced by one that returns, whatever it is given, what
    the program returns for `call` (None where the code does not define `name` as a function)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    if not any(isinstance(node, ast.FunctionDef) and node.name == name for node in tree.body):
        return None
    return (f"{code.rstrip()}\n\n\n_workflow_constant = {call}\n\n\n"
            f"def {name}(*args, **kwargs):\n    return _workflow_constant\n")


def lower_case_mutant(code: str, name: str) -> str | None:
    """The program with its function reading every text argument in lower case."""
    if constant_mutant(code, name, "None") is None:
        return None
    return (f"{code.rstrip()}\n\n\n_workflow_cased = {name}\n\n\n"
            f"def {name}(*args, **kwargs):\n"
            f"    return _workflow_cased(*(item.lower() if isinstance(item, str) else item for item in args), "
            f"**kwargs)\n")


def _has_text(value) -> bool:
    if isinstance(value, str):
        return True
    if isinstance(value, dict):
        return any(_has_text(item) for item in (*value.keys(), *value.values()))
    return isinstance(value, (list, tuple, set)) and any(_has_text(item) for item in value)


def _case_blind(task: str, contract: examples.Contract) -> bool:
    """Every example's text is lower case (with a letter) and no answer is or holds a text."""
    found = examples.find_examples(task, contract)
    texts = []
    for example in found:
        try:
            node = ast.parse(example.call, mode="eval").body
            texts += [value for value in (ast.literal_eval(arg) for arg in node.args) if isinstance(value, str)]
            if example.printed or example.raises or _has_text(ast.literal_eval(example.expected)):
                return False
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError, AttributeError):
            return False
    return bool(texts) and all(text == text.lower() for text in texts) and any(text.isalpha() for text in texts)


def mutants(code: str, name: str, calls: list[str], case_blind: bool = False) -> list[edits.Edit]:
    """Broken variants of `code`: single edits spread over the whole program, a constant, and
    (`case_blind`: the examples show only lower-case text) the program reading lower case."""
    found = _spread(edits.single_edits(code, _MAX_MUTANTS * 5), _MAX_MUTANTS - 2)
    constant = constant_mutant(code, name, calls[0]) if name and calls else None
    if constant:
        found.append(edits.Edit(constant, f"returns `{calls[0]}`'s value for every input"))
    lowered = lower_case_mutant(code, name) if name and case_blind else None
    if lowered:
        found.append(edits.Edit(lowered, "reads its text in lower case"))
    return found


# ---------------------------------------------------------------- the check

def counts(tests: suite.Suite, scored: Scored, counted: set[str]) -> dict[str, dict[str, int]]:
    """Tests run on `scored` and passed, by origin (suspect tests set aside are not counted)."""
    found = {}
    for origin in ORIGINS:
        if origin == PROBE:
            found[origin] = {"ran": 0, "passed": 0}
            continue
        names = [name for name in tests.names(origin) if name in counted]
        found[origin] = {"ran": len(names), "passed": sum(scored.passed.get(name, False) for name in names)}
    return found


def _independent(state: RunState, best: Scored, counted: set[str]) -> list[Scored]:
    """Passing programs of the other candidates, each different from the kept one and the others."""
    try:
        shapes = {ast.dump(ast.parse(best.code))}
    except (SyntaxError, ValueError):
        return []
    found = []
    for item in state.scored:
        if item.candidate == best.candidate or item.failing(counted) or not item.code.strip():
            continue
        try:
            shape = ast.dump(ast.parse(item.code))
        except (SyntaxError, ValueError):
            continue
        if shape not in shapes:
            shapes.add(shape)
            found.append(item)
    return found[:_MAX_OTHERS]


def _expected_errors(job: Job) -> set[str]:
    return {example.raises for example in examples.find_examples(job.task, job.contract) if example.raises}


async def strengthen(job: Job, state: RunState, best: Scored) -> Evidence:
    """The evidence for `best`; the checks run only when it passes every counted test."""
    counted = state.counted()
    evidence = Evidence(tests=counts(state.tests, best, counted))
    if best.failing(counted) or not best.code.strip() or state.tests.names() == state.tests.names(suite.SMOKE):
        return evidence
    if state.remaining() <= 0:
        evidence.reasons.append("the run's time ended before the program could be checked beyond its tests")
        return evidence
    names = edits.plain_tests(state.tests, [name for name in state.tests.names() if name in counted])
    probes, inside = edge_inputs(job.task, job.contract, state.tests.source())
    others = _independent(state, best, counted)
    seeds = examples.example_calls(job.task, job.contract) or _test_calls(state.tests.source(), job.contract.name)
    variants = mutants(best.code, job.contract.name, seeds or probes, _case_blind(job.task, job.contract))
    codes = [best.code, *(item.code for item in others), *(variant.code for variant in variants)]
    limits = [_SECONDS_TRUSTED] * (1 + len(others)) + [_SECONDS_MUTANT] * len(variants)
    started = time.monotonic()
    result = await arun_python(edits.trial_program(codes, state.tests.source(set(names)), names, limits, probes,
                                                   cpu_time=True),
                               timeout=state.run_timeout(job.settings.validation_timeout))
    state.add_time("evidence", started)
    lines = edits.read_probed(result.output, names, len(codes))
    if lines[0] is None or (probes and len(lines[0][1]) != len(probes)):
        evidence.reasons.append("the checks beyond the tests did not finish")
        return evidence
    evidence.checked = True
    evidence.edge_inputs = probes
    passed_here, seen = lines[0]
    agreed = _edge_behaviour(evidence, job, probes, inside, seen, others, lines[1:1 + len(others)])
    _mutant_check(evidence, probes, passed_here, seen, agreed, variants, lines[1 + len(others):])
    if not names and not agreed:
        evidence.reasons.append("no test could be run against broken variants of the program")
    if not probes and not names:
        evidence.checked = False
    return evidence


def degenerate(call: str) -> bool:
    """A call with an empty text or collection, or a zero or negative number, among its
    arguments: an input the function may rightly refuse (with any exception)."""
    try:
        node = ast.parse(call, mode="eval").body
        values = [ast.literal_eval(arg) for arg in node.args]
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError, AttributeError):
        return False
    return any(value in ("", 0) or (_number(value) and value < 0)
               or (isinstance(value, (list, tuple, dict, set)) and not value)
               for value in values if not isinstance(value, bool))


def refused(call: str, error: str, expected: set[str], inside: dict[str, str]) -> bool:
    """Whether `error` on the edge input `call` is the function refusing it (the module's docstring)."""
    if error in expected:
        return True
    if call in inside:
        return error in _INSIDE_REFUSALS[inside[call]]
    return error in _REFUSALS or degenerate(call)


def _edge_behaviour(evidence: Evidence, job: Job, probes: list[str], inside: dict[str, str], seen: list[str],
                    others: list[Scored], other_lines: list) -> set[int]:
    """Crashes of the kept program and its agreement with the others; returns the edge inputs
    (by position) on which another candidate agrees and none disagrees."""
    expected = _expected_errors(job)
    crashed = []
    for call, value in zip(probes, seen, strict=True):
        if value.startswith("error:") and not refused(call, value[6:], expected, inside):
            crashed.append(call)
            evidence.crashes.append(f"{call} raised {value[6:]}" if value != "error:Timeout"
                                    else f"{call} did not return in time")
    evidence.compared = sum(line is not None for line in other_lines)
    disagreed = set()
    for item, line in zip(others, other_lines, strict=True):
        if line is None:
            continue
        for index, (mine, theirs) in enumerate(zip(seen, line[1], strict=False)):
            if _value(mine) and _value(theirs) and not same(mine, theirs) and index not in disagreed:
                disagreed.add(index)
                evidence.disagreements.append(f"{probes[index]}: {_short(mine)} here, {_short(theirs)} "
                                              f"from candidate {item.candidate}")
    agreed = _agreed_inputs(seen, other_lines) - disagreed
    evidence.agreed = len(agreed)
    ran = sum(value != "error:NotRun" for value in seen)
    evidence.tests[PROBE] = {"ran": ran, "passed": ran - len(set(crashed) | {probes[i] for i in disagreed})}
    if evidence.crashes:
        evidence.reasons.append(f"it crashes on an edge input: {evidence.crashes[0]}")
    if evidence.disagreements:
        evidence.reasons.append("another candidate that passes the same tests answers differently: "
                                f"{evidence.disagreements[0]}")
    return agreed


def _agreed_inputs(seen: list[str], other_lines: list) -> set[int]:
    """Edge inputs on which another candidate returned the value the kept program returns."""
    return {index for line in other_lines if line is not None
            for index, (mine, theirs) in enumerate(zip(seen, line[1], strict=False))
            if _value(mine) and same(mine, theirs)}


def _short(seen: str) -> str:
    return seen if len(seen) <= 40 else seen[:37] + "..."


def _mutant_check(evidence: Evidence, probes: list[str], passed_here: set[str], seen: list[str], agreed: set[int],
                  variants: list[edits.Edit], lines: list) -> None:
    """A mutant is rejected when it fails a test the program passes or answers an agreed input
    differently; a survivor that answers some edge input differently shows the suite is weak."""
    for variant, line in zip(variants, lines, strict=True):
        if line is None:
            continue  # the run ended before it
        evidence.mutants_tried += 1
        passed, answers = line
        if not passed_here <= passed or any(index < len(answers) and not same(seen[index], answers[index])
                                            for index in agreed):
            evidence.mutants_rejected += 1
            continue
        differs = [probes[index] for index, (mine, theirs) in enumerate(zip(seen, answers, strict=False))
                   if theirs != "error:NotRun" and not same(mine, theirs) and not (_opaque(mine) and _opaque(theirs))]
        if probes and not differs:
            evidence.mutants_equivalent += 1
            continue
        evidence.mutants_survived.append(variant.change + (f" (differs on {differs[0]})" if differs else ""))
    if evidence.mutants_survived:
        left = len(evidence.mutants_survived)
        evidence.reasons.append(f"the tests also pass {left} broken variant{'s' if left > 1 else ''} of the "
                                f"program, e.g. {evidence.mutants_survived[0]}")
