"""Verdicts with their evidence: a run says `passed` only when its tests are more than the task's
examples can carry — edge inputs, the other candidates and broken variants of the program — and
every result says what it rests on. Against the scripted LLM server and the real sandbox."""

from __future__ import annotations

import pytest

from tests.test_workflow import post_workflow, stream_events
from tests.test_workflow_quality import Script, workflow
from workflow.services import evidence, examples

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(90)]

LARGEST = '''Complete this function:

```python
def largest(values):
    """Return the largest of values.

    >>> largest([1, 5, 3])
    5
    """
```'''
# satisfies the one example, wrong on nearly everything else (and crashes on one item)
SECOND_ITEM = "```python\ndef largest(values):\n    return values[1]\n```"
RIGHT_LARGEST = "```python\ndef largest(values):\n    best = values[0]\n    for v in values:\n        if v > best:\n" \
                "            best = v\n    return best\n```"
# right where the examples look, and written differently from the loop above
SORTED_LARGEST = "```python\ndef largest(values):\n    return sorted(values)[-1]\n```"
TWO_LARGEST = "```python\ndef largest(values):\n    return max(values[:2])\n```"

ADD = '''Complete this function:

```python
def add(a, b):
    """Return the sum of a and b.

    >>> add(2, 3)
    5
    >>> add(-1, 1)
    0
    """
```'''
RIGHT_ADD = "```python\ndef add(a, b):\n    return a + b\n```"

EVEN = "Write a function is_even(n). is_even(4) returns True."
RIGHT_EVEN = "```python\ndef is_even(n):\n    return n % 2 == 0\n```"

ORIGINS = {"task", "llm", "probe", "smoke"}


def examples_only(client, ollama, set_config, codes, task, **settings):
    return workflow(client, ollama, set_config, Script(codes), task=task, model_tests="without_examples",
                    plan=False, **settings)


def test_a_wrong_program_that_satisfies_the_examples_is_not_passed(client, ollama, set_config):
    body = examples_only(client, ollama, set_config, [SECOND_ITEM], LARGEST)
    assert body["validation_passed"] is True  # its tests did pass...
    assert body["verdict"] == "passed_examples_only"  # ...but that is all they show
    found = body["evidence"]
    assert found["weak"] is True and found["checked"] is True
    assert found["tests"]["task"] == {"ran": 1, "passed": 1}
    assert any(crash.startswith("largest([1])") for crash in found["crashes"]), found["crashes"]
    assert found["mutants"]["survived"], found["mutants"]
    assert "weak evidence" in body["content"] and "crashes on an edge input" in body["content"]


def test_a_suite_that_passes_a_mutant_is_reported_weak(client, ollama, set_config):
    body = examples_only(client, ollama, set_config, [RIGHT_EVEN], EVEN)
    found = body["evidence"]
    # is_even(4) == True is also what "return True" gives
    assert body["verdict"] == "passed_examples_only" and found["weak"] is True
    assert found["crashes"] == [] and found["mutants"]["tried"] >= 2
    survived = found["mutants"]["survived"]
    assert any("returns `is_even(4)`'s value for every input" in change for change in survived), survived
    assert any("broken variant" in reason for reason in found["reasons"])


def test_examples_that_reject_every_mutant_make_a_pass(client, ollama, set_config):
    body = examples_only(client, ollama, set_config, [RIGHT_ADD], ADD)
    found = body["evidence"]
    assert body["verdict"] == "passed", found
    assert found["weak"] is False and found["reasons"] == []
    assert found["mutants"]["survived"] == [] and found["mutants"]["rejected"] >= 4
    assert found["tests"]["task"] == {"ran": 2, "passed": 2}
    assert found["tests"]["probe"]["ran"] == len(found["edge_inputs"]) > 0
    assert found["ran"] == sum(item["ran"] for item in found["tests"].values())
    assert "broken variants of it fail them" in body["content"]


def test_candidates_that_answer_differently_beyond_the_examples_make_the_pass_weak(client, ollama, set_config):
    # both pass largest([1, 5, 3]) == 5; for largest([1, 5, 3, 6]) the second still says 5
    body = examples_only(client, ollama, set_config, [RIGHT_LARGEST, TWO_LARGEST], LARGEST, candidates=2)
    found = body["evidence"]
    assert body["verdict"] == "passed_examples_only"
    assert found["agreement"]["candidates"] == 1 and found["agreement"]["disagreements"], found["agreement"]
    assert any("answers differently" in reason for reason in found["reasons"])


def test_candidates_that_agree_beyond_the_examples_check_what_the_examples_do_not(client, ollama, set_config):
    body = examples_only(client, ollama, set_config, [RIGHT_LARGEST, SORTED_LARGEST], LARGEST, candidates=2)
    found = body["evidence"]
    assert found["agreement"]["candidates"] == 1 and found["agreement"]["disagreements"] == []
    assert found["agreement"]["agreed"] >= 3  # the edge inputs on which both give one answer
    # the agreed answers are tests too: a broken variant that answers one of them differently fails
    assert found["mutants"]["survived"] == [], found["mutants"]
    assert body["verdict"] == "passed"


def test_the_result_and_done_say_what_the_verdict_rests_on_and_which_run_was_kept(client, ollama, set_config):
    set_config({"workflow": {"candidates": 2, "plan": False, "model_tests": "without_examples"}})
    ollama.responder = Script([SECOND_ITEM.replace("values[1]", "values[2]"), RIGHT_LARGEST])
    events = stream_events(client, {"task": LARGEST})
    validations = [data for name, data in events if name == "validation"]
    name, done = events[-1]
    assert name == "done"
    assert set(done["evidence"]["tests"]) == ORIGINS
    assert done["evidence"]["tests"]["task"] == {"ran": 1, "passed": 1}
    kept = validations[done["chosen_run"] - 1]
    assert kept["run"] == done["chosen_run"] and kept["passed"] is True
    assert (kept["candidate"], kept["attempt"]) == (done["chosen_candidate"], done["chosen_attempt"])
    assert "best = v" in done["code"]
    # the plain reply carries the same fields
    body = post_workflow(client, {"task": LARGEST}).json()
    assert {"evidence", "chosen_run", "chosen_candidate", "chosen_attempt"} <= set(body)
    assert body["chosen_run"] >= 1 and set(body["evidence"]["tests"]) == ORIGINS


def test_a_question_has_no_evidence_and_no_chosen_run(client, ollama, set_config):
    body = workflow(client, ollama, set_config, Script(["unused"]), task="What is recursion?")
    assert body["intent_kind"] == "chat"
    assert (body["evidence"], body["chosen_run"], body["verdict"]) == (None, None, "")


PRODUCT = "Write a function product(numbers) that returns the product of the numbers. product([2, 3, 4]) -> 24, product([]) -> 1."
# right on every list without a zero, and the model's own rule for one
REFUSES_ZERO = "```python\ndef product(numbers):\n    result = 1\n    for n in numbers:\n        if n == 0:\n" \
               "            raise ValueError('zero')\n        result *= n\n    return result\n```"
RIGHT_PRODUCT = "```python\ndef product(numbers):\n    result = 1\n    for n in numbers:\n        result *= n\n" \
                "    return result\n```"


def test_a_program_that_raises_on_a_zero_inside_a_list_is_not_passed(client, ollama, set_config):
    body = examples_only(client, ollama, set_config, [REFUSES_ZERO], PRODUCT)
    found = body["evidence"]
    assert body["validation_passed"] is True and found["checked"] is True
    assert body["verdict"] == "passed_examples_only", found
    assert "product([2, 0, 4]) raised ValueError" in found["crashes"], found["crashes"]
    assert "product([2, -3, 4])" in found["edge_inputs"]


def test_a_right_program_on_the_same_task_is_passed(client, ollama, set_config):
    body = examples_only(client, ollama, set_config, [RIGHT_PRODUCT], PRODUCT)
    found = body["evidence"]
    assert body["verdict"] == "passed", (found["reasons"], found["mutants"])
    assert found["crashes"] == [] and found["mutants"]["survived"] == []


VOWELS = '''Complete this function:

```python
def vowels(text):
    """Count the vowels (a, e, i, o, u, either case) in text.

    >>> vowels('hello')
    2
    >>> vowels('sky')
    0
    """
```'''
LOWER_VOWELS = "```python\ndef vowels(text):\n    letters = 'aeiou'\n    return sum(1 for char in text if char in letters)\n```"


def test_a_program_blind_to_upper_case_is_not_passed_where_the_examples_are_lower_case(client, ollama, set_config):
    body = examples_only(client, ollama, set_config, [LOWER_VOWELS], VOWELS)
    found = body["evidence"]
    assert "vowels('HELLO')" in found["edge_inputs"] and "vowels('HeLlO')" in found["edge_inputs"]
    assert body["verdict"] == "passed_examples_only", found
    assert any(change.startswith("reads its text in lower case") for change in found["mutants"]["survived"])


def test_exceptions_on_edge_inputs_that_are_refusals_and_those_that_are_crashes():
    inside = {"f([2, 0, 4])": evidence.ZERO_INSIDE, "f([2, -3, 4])": evidence.NEGATIVE_INSIDE}
    # an empty list or a zero or negative argument may be refused with anything
    assert evidence.refused("f([])", "IndexError", set(), inside)
    assert evidence.refused("f([1], -1)", "IndexError", set(), inside)
    assert evidence.refused("f([1, 2], 5)", "ValueError", set(), inside)  # out of the function's domain
    assert not evidence.refused("f([1, 2], 5)", "IndexError", set(), inside)
    # a zero or a negative number inside a list of the examples' kind is a plain input
    assert not evidence.refused("f([2, 0, 4])", "ValueError", set(), inside)
    assert not evidence.refused("f([2, -3, 4])", "ValueError", set(), inside)
    # dividing by an item, or an error the examples show, is still a refusal
    assert evidence.refused("f([2, 0, 4])", "ZeroDivisionError", set(), inside)
    assert evidence.refused("f([2, -3, 4])", "ValueError", {"ValueError"}, inside)


def test_no_zero_or_negative_item_where_the_task_says_its_numbers_are_positive():
    task = "Write a function product(numbers) for a list of positive integers. product([2, 3, 4]) -> 24, product([]) -> 1."
    calls, inside = evidence.edge_inputs(task, examples.parse_contract(task))
    assert inside == {} and "product([2, 0, 4])" not in calls
    calls, inside = evidence.edge_inputs(PRODUCT, examples.parse_contract(PRODUCT))
    assert inside == {"product([2, 0, 4])": evidence.ZERO_INSIDE, "product([2, -3, 4])": evidence.NEGATIVE_INSIDE}


# ---------------------------------------------------------------- edge inputs

def test_edge_inputs_vary_the_examples_without_leaving_their_domain():
    task = "Write a function repeat(text, times). repeat('ab', 3) returns 'ababab'."
    calls = evidence.edge_calls(task, examples.parse_contract(task))
    assert "repeat('ab', 3)" not in calls  # the example itself is a test already
    assert "repeat('', 3)" in calls and "repeat('ab', 0)" in calls
    assert not any("-" in call for call in calls)  # no example uses a negative count


def test_edge_inputs_come_from_annotations_when_the_task_has_no_example():
    task = "```python\ndef total(values: list[int], start: int) -> int:\n    ...\n```"
    calls = evidence.edge_calls(task, examples.parse_contract(task))
    assert calls[0] == "total([], 0)" and len(calls) >= 3


def test_probe_results_are_compared_as_answers():
    assert evidence.same("0.30000000000000004", "0.3")
    assert evidence.same("[1.0, 2]", "[1.0000000000001, 2]")
    assert not evidence.same("3", "4") and not evidence.same("error:IndexError", "error:IndexError2")


def test_one_sandbox_run_gives_each_program_its_tests_and_its_answers_to_the_edge_inputs():
    from codegen_site.sandbox import run_python
    from workflow.services import edits
    from workflow.services.suite import Suite, TestCase

    tests = Suite([TestCase("test_two", "def test_two():\n    assert half(4) == 2\n", "task")], [])
    looping = "def half(n):\n    while n:\n        pass\n    return 0\n"
    codes = ["def half(n):\n    return n // 2\n", "def half(n):\n    return 1 // n\n", looping]
    result = run_python(edits.trial_program(codes, tests.source(), ["test_two"], [1.0, 1.0, 0.25],
                                            ["half(0)", "half(7)"], cpu_time=True), timeout=20)
    lines = edits.read_probed(result.output, ["test_two"], 3)
    assert lines[0] == ({"test_two"}, ["0", "3"])
    assert lines[1] == (set(), ["error:ZeroDivisionError", "0"])
    # the loop loses its test and the input it loops on, not the run
    assert lines[2] == (set(), ["0", "error:Timeout"])
