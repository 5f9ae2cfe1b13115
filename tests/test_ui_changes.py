"""The Changes page (/ui/changes) in a real browser (Debian's chromium through Playwright) against a
live server, the scripted LLM, the real sandbox and a git workspace, at desktop (1280×800) and phone
(390×844) width, with no console error: a two-file change proposed with its steps live, its diff with
line numbers and colour inline and side by side, a subset of its hunks accepted and applied (the
files on disk change), undone (the files back); a 409 explained beside Apply; Undo from the history."""

from __future__ import annotations

import re
import threading

import pytest

from tests.fakes.llm_server import Turn
from tests.test_project_change import CALC, CALC_EDITED, CALC_SUB, TESTS, git, whole
from tests.ui_browser import allow_console, checked_page, expect, plant, screenshot

pytestmark = [pytest.mark.timeout(300)]

VALUES = "".join(f"V{n} = {n}\n" for n in range(1, 21))
VALUES_BOTH = VALUES.replace("V2 = 2\n", "V2 = 200\n").replace("V19 = 19\n", "V19 = 1900\n")
VALUES_SECOND = VALUES.replace("V19 = 19\n", "V19 = 1900\n")
INSTRUCTION = "Add sub() to calc.py; make V2 and V19 bigger"
REPLY = whole("calc.py", CALC_SUB) + "\n" + whole("values.py", VALUES_BOTH)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = plant(tmp_path_factory.mktemp("ui-changes"),
                 {"calc.py": CALC, "values.py": VALUES, "tests/test_calc.py": TESTS})
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


@pytest.fixture
def ui(transactional_db, server, module_llm, browser, workspace, width):
    module_llm.reset()
    with checked_page(browser, server, width) as page:
        yield page
    # each test leaves the workspace as the repository's HEAD has it
    (workspace / "calc.py").write_text(CALC)
    (workspace / "values.py").write_text(VALUES)


def propose(ui, server, module_llm):
    """Types the instruction, proposes, and checks the step in progress shows while the model works."""
    check = expect()
    release = threading.Event()

    def held(request):
        release.wait(60)
        return Turn(content=REPLY)

    module_llm.responder = held
    ui.goto(server.url + "/ui/changes")
    check(ui.locator("#nav a[aria-current=page]")).to_have_text("Changes")
    ui.fill("#instruction", INSTRUCTION)
    ui.fill("#paths", "calc.py, values.py")
    try:
        ui.click("#propose")
        check(ui.locator("#change-steps li.running")).to_contain_text("Asking the model")
        check(ui.locator("#change-state")).to_have_text("running")
        check(ui.locator("#propose")).to_be_disabled()
    finally:
        release.set()
    check(ui.locator("#change-state")).to_have_text("proposed")
    check(ui.locator("#change-steps li.running")).to_have_count(0)
    check(ui.locator("#change-steps")).to_contain_text("Running the tests and ruff")
    check(ui.locator("#change-steps")).to_contain_text("Attempt 1: the tests and ruff pass")
    # what the model read, within the share of its window left for files
    check(ui.locator("#change-steps")).to_contain_text(re.compile(r"Context: \d+ files \([\d,]+ of [\d,]+ tokens"))
    check(ui.locator("#evidence-context")).to_contain_text("tokens the model's window leaves for files")


def test_a_two_file_change_some_hunks_applied_then_undone(ui, server, module_llm, workspace, width):
    check = expect()
    head = git(workspace, "rev-parse", "HEAD")
    propose(ui, server, module_llm)
    files = ui.locator(".change-file")
    check(files).to_have_count(2)
    calc = ui.locator('.change-file[data-path="calc.py"]')
    values = ui.locator('.change-file[data-path="values.py"]')
    check(values.locator(".hunk")).to_have_count(2)
    check(values.locator(".hunk-count")).to_have_text("2 of 2 hunks accepted")
    # line numbers (old and new) and syntax colour
    added = calc.locator("tr.add").filter(has_text="def sub(a, b):")
    check(added.locator("td.ln").nth(1)).to_have_text("5")
    check(added.locator(".tok-keyword").first).to_have_text("def")
    check(values.locator(".hunk").nth(1).locator("tr.del td.ln").first).to_have_text("19")
    # the evidence: each test before and after, ruff
    row = ui.locator(".evidence-tests tr").filter(has_text="test_add")
    check(row.locator(".badge")).to_have_text(["passed", "passed"])
    check(ui.locator("#evidence-ruff")).to_contain_text("no new errors")
    # nothing sideways-scrolls out of the window at either width
    assert ui.evaluate("document.documentElement.scrollWidth <= innerWidth + 1")

    # reject the first hunk of values.py: the file is accepted in part
    values.get_by_role("button", name="Reject hunk 1 of values.py").click()
    check(values.locator(".hunk").first).to_have_class("hunk rejected")
    check(values.locator(".hunk-count")).to_have_text("1 of 2 hunks accepted")
    assert values.locator("input.accept-file").evaluate("box => box.indeterminate")
    check(ui.locator("#apply")).to_have_text("Apply 2 of 3 hunks")
    screenshot(ui, "changes-proposed")
    ui.click("#view-split")
    check(ui.locator("table.difftable.sbs")).to_have_count(3)
    check(values.locator(".hunk").nth(1).locator("td.code.add")).to_contain_text("V19 = 1900")
    screenshot(ui, "changes-side-by-side")
    ui.click("#view-inline")
    check(ui.locator("table.difftable.unified")).to_have_count(3)

    ui.click("#apply")
    check(ui.locator("#apply-result")).to_contain_text("Applied calc.py, values.py (1 of 2 hunks)")
    check(ui.locator("#change-state")).to_have_text("applied")
    check(ui.locator("#undo")).to_be_visible()
    assert (workspace / "calc.py").read_text() == CALC_SUB
    assert (workspace / "values.py").read_text() == VALUES_SECOND
    check(values.locator(".hunk").first.locator(".badge")).to_have_text("not applied")
    check(values.locator(".hunk").nth(1).locator(".badge")).to_have_count(0)
    assert git(workspace, "show", "HEAD:values.py") + "\n" == VALUES_SECOND
    first = ui.locator("#history li").first
    check(first.locator(".badge")).to_have_text("applied")
    check(first.locator(".history-open")).to_have_text(INSTRUCTION)
    screenshot(ui, "changes-applied")

    ui.click("#undo")
    check(ui.locator("#apply-result")).to_contain_text("Undone: calc.py, values.py as before")
    check(ui.locator("#change-state")).to_have_text("undone")
    assert (workspace / "calc.py").read_text() == CALC and (workspace / "values.py").read_text() == VALUES
    assert git(workspace, "rev-parse", "HEAD") == head
    check(first.locator(".badge")).to_have_text("undone")


def test_a_conflict_is_explained_beside_apply_and_undo_works_from_the_history(ui, server, module_llm, workspace,
                                                                              width):
    check = expect()
    allow_console(ui, r"409 \(Conflict\)")
    propose(ui, server, module_llm)
    # the user edits a file of the change after the proposal
    (workspace / "calc.py").write_text(CALC + "# mine\n")
    ui.click("#apply")
    conflict = ui.locator("#apply-result .conflict")
    check(conflict).to_contain_text("Conflict: calc.py")
    check(ui.locator("#apply-result")).to_contain_text("propose the change again")
    check(ui.locator("#change-state")).to_have_text("proposed")
    assert (workspace / "calc.py").read_text() == CALC + "# mine\n"
    assert (workspace / "values.py").read_text() == VALUES
    screenshot(ui, "changes-conflict")

    # the user's edit gone: the change applies whole, and is undone from the history
    (workspace / "calc.py").write_text(CALC)
    ui.click("#apply")
    check(ui.locator("#apply-result")).to_contain_text("Applied calc.py, values.py")
    assert (workspace / "values.py").read_text() == VALUES_BOTH
    first = ui.locator("#history li").first
    check(first.locator(".badge")).to_have_text("applied")
    first.get_by_role("button", name="Undo").click()
    check(first.locator(".badge")).to_have_text("undone")
    check(first.locator(".row-result")).to_contain_text("Undone")
    check(ui.locator("#apply-result")).to_contain_text("Undone: calc.py, values.py as before")
    check(ui.locator('.change-file[data-path="calc.py"] .file-head .badge.undone')).to_have_text("undone")
    assert (workspace / "calc.py").read_text() == CALC and (workspace / "values.py").read_text() == VALUES
    screenshot(ui, "changes-history")
    # opened again from the history (a reload with ?change=<id>)
    ui.reload()
    check(ui.locator("#change-state")).to_have_text("undone")
    check(ui.locator(".change-file")).to_have_count(2)


def test_a_file_edited_in_the_page_before_applying_is_written_as_edited(ui, server, module_llm, workspace, width):
    check = expect()
    head = git(workspace, "rev-parse", "HEAD")
    propose(ui, server, module_llm)
    calc = ui.locator('.change-file[data-path="calc.py"]')
    calc.get_by_role("button", name="Edit calc.py before applying").click()
    box = calc.get_by_role("textbox", name="New content of calc.py")
    check(box).to_be_focused()
    check(box).to_have_value(CALC_SUB)  # the whole proposed file, to change by hand
    check(calc.locator(".hunk")).to_have_count(0)
    check(calc.locator(".hunk-count")).to_have_text("your edit replaces the hunks")
    # discarded, the proposal's hunks are back; edited again, the text box is back with the proposal
    calc.get_by_role("button", name="Discard your edit of calc.py").click()
    check(calc.locator(".hunk")).to_have_count(1)
    check(ui.locator("#apply")).to_have_text("Apply")
    calc.get_by_role("button", name="Edit calc.py before applying").click()
    box.fill(CALC_EDITED)
    check(ui.locator("#apply")).to_have_text("Apply (1 edited by you)")
    assert ui.evaluate("document.documentElement.scrollWidth <= innerWidth + 1")
    screenshot(ui, "changes-edit")

    ui.click("#apply")
    check(ui.locator("#apply-result")).to_contain_text("Applied calc.py (your edit), values.py")
    check(ui.locator("#change-state")).to_have_text("applied")
    check(calc.locator(".file-head .badge.edited")).to_have_text("edited")
    check(ui.locator("#evidence-edited")).to_have_text("Edited by you before applying, not tested again: calc.py")
    assert (workspace / "calc.py").read_text() == CALC_EDITED
    assert git(workspace, "show", "HEAD:calc.py") + "\n" == CALC_EDITED
    ui.click("#undo")
    check(ui.locator("#apply-result")).to_contain_text("Undone: calc.py, values.py as before")
    assert (workspace / "calc.py").read_text() == CALC and git(workspace, "rev-parse", "HEAD") == head
