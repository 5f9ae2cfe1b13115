"""The Workflow page says what its verdict rests on, in a real browser (Debian's chromium through
Playwright) against a live server, the scripted LLM and the real sandbox, at desktop and phone width."""

from __future__ import annotations

import re

import pytest

from tests.test_workflow_quality import Script
from tests.test_workflow_verdict import ADD, LARGEST, RIGHT_ADD, SECOND_ITEM
from tests.ui_browser import checked_page, expect, plant, screenshot

pytestmark = [pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return plant(tmp_path_factory.mktemp("ui-workflow-verdict"), {"notes.md": "# Notes\n"})


@pytest.fixture
def ui(transactional_db, server, module_llm, browser, workspace, width):
    module_llm.reset()
    with checked_page(browser, server, width) as page:
        yield page


def run_task(ui, server, task):
    ui.goto(server.url + "/ui/workflow")
    ui.fill("#task", task)
    ui.press("#task", "Enter")


def test_a_pass_on_the_examples_only_says_so_and_why(ui, server, module_llm, width):
    check = expect()
    # the model writes no usable test: the task's one example carries the run, and a wrong program passes it
    module_llm.responder = Script([SECOND_ITEM], tests=["no tests"])
    run_task(ui, server, LARGEST)
    check(ui.locator("#verdict")).to_have_text("passed its examples only")
    check(ui.locator("#verdict")).to_have_class(re.compile(r"\bweak\b"))
    check(ui.locator("#evidence")).to_be_visible()
    check(ui.locator("#evidence-summary")).to_contain_text("Rests on: 1 of 1 task example")
    check(ui.locator("#evidence-summary")).to_contain_text("edge input")
    check(ui.locator("#evidence-checks")).to_contain_text("Crashes: largest([1]) raised IndexError")
    check(ui.locator("#evidence-reasons li").first).to_contain_text("Weak: it crashes on an edge input")
    # the kept program is the run the server named
    check(ui.locator("#attempts > li").first).to_have_class(re.compile(r"\bkept\b"))
    screenshot(ui, "workflow-weak-verdict")


def test_a_pass_that_rejects_every_broken_variant_says_passed(ui, server, module_llm, width):
    check = expect()
    module_llm.responder = Script([RIGHT_ADD], tests=["no tests"])
    run_task(ui, server, ADD)
    check(ui.locator("#verdict")).to_have_text("passed")
    check(ui.locator("#evidence-summary")).to_contain_text("Rests on: 2 of 2 task examples")
    check(ui.locator("#evidence-checks")).to_contain_text(re.compile(r"Broken variants of the program rejected "
                                                                     r"by the tests: (\d+) of \1\b"))
    check(ui.locator("#evidence-reasons li")).to_have_count(0)
