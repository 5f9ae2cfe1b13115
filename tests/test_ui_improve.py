"""The Improve and Code search pages in a real browser against a live server and the
scripted LLM: analyse, review a diff, accept or reject, restore a backup; the queue,
followed live; index a folder and search it."""

from __future__ import annotations

import re

import pytest

from tests.fakes.llm_server import Turn
from tests.ui_browser import MODULE, analyse, checked_page, expect, plant, screenshot

pytestmark = [pytest.mark.timeout(300)]

IMPROVED = MODULE.replace("import os\n", "")
OTHER = '''"""Greetings."""
import sys


def greet(name):
    return "Hello, " + name
'''
TEST = '''from pkg.maths import factorial


def test_factorial():
    assert factorial(5) == 120
'''


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return plant(tmp_path_factory.mktemp("ui-improve-workspace"),
                 {"pkg/__init__.py": "", "pkg/maths.py": MODULE, "pkg/greetings.py": OTHER,
                  "tests/test_maths.py": TEST})


@pytest.fixture
def ui(transactional_db, server, module_llm, browser, workspace):
    module_llm.reset()
    (workspace / "pkg" / "maths.py").write_text(MODULE)
    (workspace / "pkg" / "greetings.py").write_text(OTHER)
    with checked_page(browser, server) as page:
        yield page


def test_analyse_review_accept_and_restore(ui, server, module_llm, workspace):
    check = expect()
    row = analyse(ui, server)
    check(row).to_have_count(1)
    check(ui.locator("#totals")).to_contain_text("files")
    check(ui.locator("#reports li")).to_have_count(1)
    # Filters and sorting.
    ui.fill("#filter-file", "greetings")
    check(ui.locator("#issues tbody tr", has_text="pkg/maths.py")).to_have_count(0)
    check(ui.locator("#issues tbody tr", has_text="pkg/greetings.py").first).to_be_visible()
    ui.fill("#filter-file", "")
    ui.click("#issues th button[data-sort=file]")
    check(ui.locator("#issues th[aria-sort=ascending]")).to_have_text("File ▲")
    first_files = ui.locator("#issues tbody tr td:nth-child(3)").all_inner_texts()
    assert first_files == sorted(first_files, key=lambda text: (text.split(":")[0], int(text.split(":")[1])))

    module_llm.script(Turn(content=f"```python\n{IMPROVED}```"))
    row.locator("button", has_text="Improve").click()
    check(ui.locator("#proposal-state")).to_have_text("proposed")
    check(ui.locator("#proposal-diff .del")).to_have_text("-import os")
    check(ui.locator("#proposal-validation")).to_be_visible()
    assert (workspace / "pkg" / "maths.py").read_text() == MODULE  # nothing written yet
    screenshot(ui, "improve")

    ui.click("#accept")
    check(ui.locator("#proposal-state")).to_have_text("applied")
    assert (workspace / "pkg" / "maths.py").read_text() == IMPROVED
    # not a git workspace: said beside the buttons, with the way to undo it
    check(ui.locator("#proposal-note")).to_contain_text("Written with a backup. The workspace is not")
    check(ui.locator("#proposal-note a")).to_have_text("Undo it from Changes")
    backup = ui.locator("#backup-rows tr").filter(has=ui.locator("td", has_text="before improvement"))
    check(backup).to_have_count(1)
    backup.locator("button", has_text="Diff").click()
    check(ui.locator("#backup-diff .del")).to_have_text("-import os")  # from the backup to the file now
    backup.locator("button", has_text="Restore").click()
    check(backup.locator(".row-status")).to_contain_text("Restored")
    check(ui.locator("#backup-message")).to_contain_text("Restored backup")  # read out by screen readers
    assert (workspace / "pkg" / "maths.py").read_text() == MODULE
    # Newest first: the content the restore replaced, then the one the improvement replaced.
    check(ui.locator("#backup-rows tr td:nth-child(2)")).to_have_text(["before restore", "before improvement"])
    check(ui.locator("#proposal-state")).to_have_text("restored")
    screenshot(ui, "improve-applied")


def test_reject_leaves_the_file(ui, server, module_llm, workspace):
    check = expect()
    row = analyse(ui, server)
    module_llm.script(Turn(content=f"```python\n{IMPROVED}```"))
    row.locator("button", has_text="Improve").click()
    check(ui.locator("#accept")).to_be_visible()
    ui.click("#reject")
    check(ui.locator("#proposal-state")).to_have_text("rejected")
    check(ui.locator("#accept")).to_be_hidden()
    assert (workspace / "pkg" / "maths.py").read_text() == MODULE


def test_queue_an_issue_and_watch_it_run(ui, server, module_llm, workspace):
    check = expect()
    row = analyse(ui, server)
    module_llm.responder = lambda request: Turn(content=f"```python\n{IMPROVED}```")
    row.locator("button", has_text="Queue").click()
    task = ui.locator("#queue-tasks li", has_text="pkg/maths.py")
    check(task.locator(".badge.status")).to_have_text("pending")
    try:
        ui.click("#queue-start")
        check(ui.locator("#queue-state")).to_have_text("running")
        # Followed live from /improve/queue/events: no reload.
        check(task.locator(".badge.status")).to_have_text("completed", timeout=90_000)
        check(task.locator("progress")).to_have_attribute("value", "1")
        task.locator("button", has_text="Review").click()
        check(ui.locator("#proposal-diff .del")).to_have_text("-import os")
        screenshot(ui, "improve-queue")
    finally:
        ui.click("#queue-stop")
        check(ui.locator("#queue-state")).to_have_text("stopped")
    ui.click("#queue-clear")
    check(ui.locator("#queue-tasks")).to_contain_text("No tasks")
def test_the_live_step_shows_the_tokens_generated_so_far(transactional_db, server, module_llm, browser, workspace,
                                                        width):
    """A generation streams: the step in progress counts the tokens as they come (progress events)."""
    check = expect()
    module_llm.reset()
    (workspace / "pkg" / "maths.py").write_text(MODULE)
    with checked_page(browser, server, width) as ui:
        row = analyse(ui, server)
        pieces = re.findall(r"\S+\s*", f"```python\n{IMPROVED}```")  # one token a word, paced by the server
        module_llm.script(Turn(content=pieces, chunk_delay=0.15))
        row.locator("button", has_text="Improve").click()
        live = ui.locator("#proposal-live-text")
        check(live).to_contain_text(re.compile(r"Generating the change · attempt 1 · \d+ s · [1-9]\d* tokens so far"))
        check(live).to_be_in_viewport()
        seen = int(re.search(r"(\d+) tokens so far", live.inner_text()).group(1))
        if seen < len(pieces):  # the count grows while the model writes
            ui.wait_for_function("seen => { const m = document.getElementById('proposal-live-text').textContent"
                                 ".match(/(\\d+) tokens so far/); return m !== null && Number(m[1]) > seen; }",
                                 arg=seen)
        check(ui.locator("#proposal-state")).to_have_text("proposed")
        check(ui.locator("#proposal-live")).to_be_hidden()


# --- code search ------------------------------------------------------------------------------
def test_index_and_search_link_to_the_file(ui, server, module_llm):
    check = expect()
    ui.goto(server.url + "/ui/search")
    ui.fill("#index-path", "pkg")
    ui.click("#index")
    check(ui.locator("#index-state")).to_contain_text("Indexed pkg")
    check(ui.locator("#rag-status")).to_contain_text("Index ready")
    ui.fill("#query", "factorial result")
    ui.press("#query", "Enter")
    hit = ui.locator("#hits .hit", has_text="def factorial")
    check(hit.first).to_be_visible()
    check(hit.first.locator("mark").first).to_have_text(r"factorial", ignore_case=True)
    link = hit.first.locator("header a")
    check(link).to_have_text(re.compile(r"pkg/maths\.py:\d+"))
    line = int(link.inner_text().split(":")[1])
    screenshot(ui, "search")
    link.click()
    check(ui.locator("#file-path")).to_have_text("pkg/maths.py")
    check(ui.locator(f"#file-view .line.target[data-line='{line}']")).to_be_visible()

    # Chat about the indexed code: the answer lists the chunks it drew on, linked to the file.
    ui.goto(server.url + "/ui/chat")
    ui.fill("#chat-input", "@codebase where is the factorial computed?")
    ui.press("#chat-input", "Enter")
    source = ui.locator(".message.assistant .sources a", has_text="pkg/maths.py")
    check(source).to_have_text(re.compile(r"pkg/maths\.py:\d+-\d+"))
    source.click()
    check(ui.locator("#file-path")).to_have_text("pkg/maths.py")
