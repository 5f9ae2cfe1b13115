"""The edit search: programs one edit away from a failing one, tried against the run's tests
in the real sandbox, without the model. Against the scripted LLM server."""

from __future__ import annotations

import pytest

from codegen_site.sandbox import run_python
from tests.test_workflow import collapse, stage_of, stream_events
from tests.test_workflow_quality import Script, workflow
from workflow.models import WorkflowRun
from workflow.services import edits
from workflow.services.suite import Suite, TestCase

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(90)]

FACTORIAL = '''Complete this function:

```python
def factorial(n: int) -> int:
    """Return n! for n >= 0.

    >>> factorial(0)
    1
    >>> factorial(5)
    120
    """
```'''
# the bundled model's usual answer: the recursion without its base case
NO_BASE_CASE = "```python\ndef factorial(n: int) -> int:\n    return n * factorial(n - 1)\n```"
SMALLEST = '''Complete this function:

```python
def smallest(values: list) -> int:
    """Return the smallest value, or 0 for an empty list.

    >>> smallest([])
    0
    >>> smallest([3, 1, 2])
    1
    """
```'''
# two slips, each failing one example: one edit fixes one test, an edit of that edit both
TWO_SLIPS = ("```python\ndef smallest(values: list) -> int:\n    if len(values) == 0:\n        return 1\n"
             "    return max(values)\n```")
RIGHT_SMALLEST = ("```python\ndef smallest(values: list) -> int:\n    if not values:\n        return 0\n"
                  "    return min(values)\n```")


def test_single_edits_change_one_thing_each():
    code = "def count(items, limit):\n    return len([x for x in items if x < limit])\n"
    found = {edit.code: edit.change for edit in edits.single_edits(code, 100)}
    assert "def count(items, limit):\n    return len([x for x in items if x <= limit])\n" in found
    assert "def count(items, limit):\n    return sum([x for x in items if x < limit])\n" in found
    assert found["def count(items, limit):\n    return len([x for x in items if x <= limit])\n"] == "line 2: `<` → `<=`"
    assert code not in found  # the unchanged program is not an edit
    assert len(edits.single_edits(code, 3)) == 3
    assert edits.single_edits("def broken(:\n", 100) == []


def test_an_edit_is_written_into_the_models_own_text():
    code = ("def positives(numbers):\n    # count, not sum\n    total = sum(n for n in numbers if n > 0)  # keep\n"
            "    return total\n")
    found = {edit.change: edit.code for edit in edits.single_edits(code, 100)}
    assert found["line 3: each item `n` → `1`"] == code.replace("sum(n for", "sum(1 for")
    assert found["line 3: `0` → `-1`"] == code.replace("n > 0", "n > -1")
    assert found["line 4: `return total` removed"] == code.replace("    return total\n", "")
    # an operator of lower precedence than its surroundings gets brackets
    assert {edit.code for edit in edits.single_edits("def f(a, b):\n    return a - b * 2\n", 100)} >= {
        "def f(a, b):\n    return a - (b + 2)\n", "def f(a, b):\n    return a + b * 2\n"}


def test_a_recursion_gets_base_cases_to_choose_from():
    code = "def factorial(n):\n    return n * factorial(n - 1)\n"
    changes = [edit.change for edit in edits.single_edits(code, 100)]
    assert "line 1: base case `if n <= 0: return 1` added to factorial" in changes
    assert "line 1: base case `if n <= 1: return n` added to factorial" in changes
    # a function that does not call itself gets none
    assert not any("base case" in edit.change for edit in edits.single_edits("def f(n):\n    return n\n", 100))


def test_a_trial_scores_every_program_and_one_that_never_ends_loses_only_itself():
    suite = Suite([TestCase("test_zero", "def test_zero():\n    assert f(0) == 0\n", "task"),
                   TestCase("test_two", "def test_two():\n    assert f(2) == 4\n", "task"),
                   TestCase("test_out", "def test_out(capsys):\n    f(1)\n", "task")], [])
    names = edits.plain_tests(suite, suite.names())
    assert names == ["test_zero", "test_two"]  # a test taking a fixture is left to pytest
    programs = ["def f(x):\n    return x * 2\n", "def f(x):\n    while True:\n        pass\n",
                "def f(x):\n    print('noise' * 1000)\n    return x + x\n", "def f(x):\n    return x + 1\n",
                "import sys\nsys.exit(3)\n"]
    result = run_python(edits.trial_program(programs, suite.source(set(names)), names), timeout=10)
    passed = edits.read_trial(result.output, names, len(programs))
    assert passed == [{"test_zero", "test_two"}, set(), {"test_zero", "test_two"}, set(), set()]
    assert "noise" not in result.output  # what a program prints stays out of the trial's report


def test_a_missing_base_case_is_found_without_asking_the_model_again(client, ollama, set_config):
    body = workflow(client, ollama, set_config, Script([NO_BASE_CASE]), task=FACTORIAL, plan=False,
                    model_tests="without_examples")
    assert body["verdict"] == "passed" and body["validation_passed"] is True
    assert body["attempts"] == 1  # no model repair was needed
    assert [stage_of(r) for r in ollama.chat_requests] == ["code"]
    assert "base case `if n <= 0: return 1` added to factorial" in body["content"]
    namespace: dict = {}
    exec(body["code"], namespace)
    assert [namespace["factorial"](n) for n in (0, 1, 3, 6)] == [1, 1, 6, 720]


def test_a_second_round_edits_the_edit_that_got_closer(client, ollama, set_config):
    set_config({"workflow": {"candidates": 1, "plan": False, "model_tests": "without_examples"}})
    ollama.responder = Script([TWO_SLIPS])
    events = stream_events(client, {"task": SMALLEST})
    assert collapse([name for name, _ in events]) == ["tests", "code", "validation", "done"]
    first, edited = [data for name, data in events if name == "validation"]
    assert (first["passed"], first["edit"]) == (False, "")
    assert edited["passed"] is True and edited["attempt"] == 1
    assert sorted(edited["edit"].split("; ")) == ["line 3: `1` → `0`", "line 4: `max(...)` → `min(...)`"]
    done = events[-1][1]
    assert done["verdict"] == "passed" and "min(values)" in done["code"]


def test_with_edit_rounds_0_only_the_model_repairs(client, ollama, set_config):
    body = workflow(client, ollama, set_config, Script([TWO_SLIPS, RIGHT_SMALLEST]), task=SMALLEST, plan=False,
                    model_tests="without_examples", edit_rounds=0)
    assert body["verdict"] == "passed" and body["attempts"] == 2
    assert [stage_of(r) for r in ollama.chat_requests] == ["code", "repair"]
    assert "edit the tests chose" not in body["content"]


def test_an_edit_search_that_finds_nothing_leaves_the_repairs_to_the_model(client, ollama, set_config):
    body = workflow(client, ollama, set_config, Script(["```python\ndef smallest(values):\n    return None\n```",
                                                         RIGHT_SMALLEST]),
                    task=SMALLEST, plan=False, model_tests="without_examples")
    assert body["verdict"] == "passed" and body["attempts"] == 2
    assert [stage_of(r) for r in ollama.chat_requests] == ["code", "repair"]


def test_no_edit_search_once_a_program_passes(client, ollama, set_config):
    body = workflow(client, ollama, set_config, Script([TWO_SLIPS, RIGHT_SMALLEST]), task=SMALLEST, plan=False,
                    model_tests="without_examples", candidates=2)
    assert body["verdict"] == "passed" and body["candidates"] == 2
    report = WorkflowRun.objects.get().report
    assert report["edit_searches"] == []  # one candidate failed, but another already passes
    assert [score["edit"] for score in report["scores"]] == ["", ""]
