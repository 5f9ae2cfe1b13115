"""The browser UI in a real browser (Debian's chromium through Playwright) against a
live daphne server and the scripted LLM: what a user sees on each page."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.fakes.llm_server import Turn
from tests.test_workflow import RIGHT, TASK, WRONG, Model
from tests.ui_browser import MODULE, allow_console, checked_page, expect, reset_settings, screenshot

pytestmark = [pytest.mark.timeout(300)]



@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-workspace")
    (root / "pkg").mkdir()
    (root / "pkg" / "maths.py").write_text(MODULE)
    (root / "notes.md").write_text("# Notes\nThe factorial lives in pkg/maths.py.\n")
    return root


@pytest.fixture
def ui(transactional_db, server, module_llm, browser):
    """A fresh page on the shared server; the scripted LLM starts empty (echo)."""
    module_llm.reset()
    with checked_page(browser, server) as page:
        yield page


# --- chat ------------------------------------------------------------------------------------
def test_chat_streams_markdown_stops_and_reopens(ui, server, module_llm):
    check = expect()
    module_llm.script(Turn(content=["Use **recursion**:\n", "```python\ndef fact(n):\n",
                                    "    return 1 if n < 2 else n * fact(n - 1)\n```\n", "Done."],
                           thinking=["Think ", "first."], chunk_delay=0.05))
    ui.goto(server.url + "/ui/chat")
    check(ui.locator("#model-picker option", has_text="qwen2.5-coder:7b")).to_have_count(1)
    ui.fill("#chat-input", "How do I compute a factorial?")
    ui.press("#chat-input", "Enter")
    answer = ui.locator(".message.assistant").last
    check(answer.locator(".body strong")).to_have_text("recursion")
    check(answer.locator(".codeblock pre")).to_contain_text("def fact(n):")
    check(answer.locator(".codeblock .tok-keyword").first).to_have_text("def")
    check(answer.locator(".codeblock button.copy")).to_be_visible()
    check(answer.locator(".body")).to_contain_text("Done.")
    check(answer.locator("details.reasoning pre")).to_have_text("Think first.")
    check(answer.locator("header")).to_contain_text("qwen2.5-coder")
    check(ui.locator("#conversations li .title").first).to_have_text("How do I compute a factorial?")
    assert "c=" in ui.url
    screenshot(ui, "chat")

    # A long answer in a new conversation, stopped with Esc: the upstream request is dropped.
    ui.click("#new-chat")
    module_llm.script(Turn(content=[f"w{i} " for i in range(3000)], chunk_delay=0.02))
    ui.fill("#chat-input", "Write a lot")
    ui.press("#chat-input", "Enter")
    check(ui.locator(".message.assistant").last.locator(".body")).to_contain_text("w5 ")
    check(ui.locator("#stop")).to_be_visible()
    ui.keyboard.press("Escape")
    check(ui.locator(".message.assistant").last.locator("header")).to_have_text("Assistant · stopped")
    check(ui.locator("#stop")).to_be_hidden()
    assert module_llm.client_gone.wait(10), "stopping did not cancel the LLM request"
    assert module_llm.finished_streams == 1
    # The stopped conversation goes on with the next message.
    ui.fill("#chat-input", "Shorter, please")
    ui.press("#chat-input", "Enter")
    check(ui.locator(".message.assistant").last.locator(".body")).to_have_text("echo: Shorter, please")
    check(ui.locator("#conversations li .title")).to_have_text(["Write a lot", "How do I compute a factorial?"])

    # Reopen the saved conversations from the list on a fresh page.
    ui.goto(server.url + "/ui/chat")
    ui.locator("#conversations li .open", has_text="Write a lot").click()
    messages = ui.locator(".message")
    check(messages).to_have_count(4)
    check(messages.nth(1).locator("header")).to_contain_text("unfinished")
    check(messages.nth(1).locator(".body")).to_contain_text("w0 w1 w2")
    ui.locator("#conversations li .open", has_text="factorial").click()
    check(messages).to_have_count(2)
    check(messages.nth(0)).to_contain_text("How do I compute a factorial?")
    check(messages.nth(1).locator(".codeblock pre")).to_contain_text("def fact(n):")
    check(messages.nth(1).locator("details.reasoning pre")).to_have_text("Think first.")

    # Shift+Enter is a new line, not a send.
    ui.fill("#chat-input", "one")
    ui.press("#chat-input", "Shift+Enter")
    ui.keyboard.type("two")
    check(ui.locator("#chat-input")).to_have_value("one\ntwo")
    check(messages).to_have_count(2)


def test_chat_error_in_place_retry_rename_search_delete(ui, server, module_llm):
    check = expect()
    module_llm.script(Turn(status=500, error="model crashed"))
    ui.goto(server.url + "/ui/chat")
    ui.fill("#chat-input", "Tell me about generators")
    ui.click("#send")
    failed = ui.locator(".message.assistant").last
    check(failed.locator(".error")).to_contain_text("model crashed")
    failed.locator("button.retry").click()
    check(ui.locator(".message.assistant").last.locator(".body")).to_have_text("echo: Tell me about generators")

    # Rename in place (Enter saves), then find it by the new title.
    item = ui.locator("#conversations li").first
    item.locator("button[title=Rename]").click()
    ui.locator("#conversations input.rename").fill("Generators")
    ui.locator("#conversations input.rename").press("Enter")
    check(ui.locator("#conversations li .title").first).to_have_text("Generators")
    assert httpx.get(server.url + "/conversations").json()[0]["title"] == "Generators"
    ui.fill("#conversation-search", "nothing like it")
    check(ui.locator("#conversations")).to_contain_text("No title matches.")
    ui.fill("#conversation-search", "gener")
    check(ui.locator("#conversations li .title")).to_have_count(1)

    ui.on("dialog", lambda dialog: dialog.accept())
    ui.locator("#conversations li").first.locator("button[title=Delete]").click()
    check(ui.locator("#conversations li .title")).to_have_count(0)
    assert httpx.get(server.url + "/conversations").json() == []


# --- workflow --------------------------------------------------------------------------------
def test_workflow_fills_live_and_validates(ui, server, module_llm):
    check = expect()
    # the three candidates are wrong; the edit search moves the loop's end, the model's repair is right
    module_llm.responder = Model([WRONG, WRONG, WRONG, RIGHT])
    ui.goto(server.url + "/ui/workflow")
    ui.fill("#task", TASK)
    ui.press("#task", "Enter")
    check(ui.locator("#plan")).to_contain_text("Define factorial(n).")
    check(ui.locator("#tests")).to_contain_text("def test_negative_raises")
    # The wrong program's run fails, the right one's passes; each shows with its output.
    check(ui.locator("#verdict")).to_have_text("passed")
    check(ui.locator("#attempts .attempt.failed").first).to_contain_text("fail")
    check(ui.locator("#attempts .attempt.failed").first.locator("pre")).to_contain_text("DID NOT RAISE")
    # the edit search's program (the loop's end moved; the negative case still fails) says what changed
    check(ui.locator("#attempts .attempt .edit")).to_contain_text("Edited without the model: line 3: `range(1, n)`")
    check(ui.locator("#attempts .attempt.passed").first).to_contain_text("pass")
    check(ui.locator("#final-code pre")).to_contain_text("raise ValueError('n must be >= 0')")
    check(ui.locator("#final .codeblock button.copy")).to_be_visible()
    check(ui.locator("#session")).to_contain_text("Session ")
    session = ui.locator("#session").inner_text()
    with ui.expect_download() as download:
        ui.click("#download")
    assert "def factorial" in download.value.path().read_text()
    screenshot(ui, "workflow")

    # Again, in the same session: the model is shown the code from before.
    before = len(module_llm.chat_requests)
    ui.click("#again")
    check(ui.locator("#verdict")).to_have_text("passed")
    check(ui.locator("#session")).to_have_text(session)
    later = module_llm.chat_requests[before:]
    assert any("n must be >= 0" in message["content"] for request in later for message in request["messages"])


# --- files and settings ----------------------------------------------------------------------
def test_files_tree_and_numbered_view(ui, server, workspace):
    check = expect()
    ui.goto(server.url + "/ui/files")
    ui.locator("#tree button", has_text="pkg/").click()
    ui.locator("#tree button[data-path='pkg/maths.py']").click()
    check(ui.locator("#file-path")).to_have_text("pkg/maths.py")
    check(ui.locator("#file-view .gutter a")).to_have_count(len(MODULE.splitlines()))
    check(ui.locator("#file-view .src .line[data-line='5']")).to_have_text("def factorial(n):")
    check(ui.locator("#backup-rows")).to_contain_text("No backups of this file.")
    screenshot(ui, "files")

    ui.goto(server.url + "/ui/files?path=pkg/maths.py&line=8")
    check(ui.locator("#file-view .line.target")).to_have_text("    for i in range(2, n + 1):")
    allow_console(ui, r"status of 400")
    ui.goto(server.url + "/ui/files?path=../outside.py")
    check(ui.locator("#file-error")).to_contain_text("outside the workspace")
    check(ui.locator("#file-error button.retry")).to_have_count(0)  # the same path is refused again


def test_settings_change_applies_live_and_errors_show_per_field(ui, server, module_llm):
    check = expect()
    allow_console(ui, r"status of 400")  # the refused host below
    try:
        ui.goto(server.url + "/ui/settings")
        check(ui.locator("#status-model")).to_have_text("qwen2.5-coder:7b")
        check(ui.locator("#setting-llm-provider")).to_have_value("ollama")
        ui.fill("#setting-models-defaults-medium", "qwen2.5-coder:32b")
        ui.fill("#setting-models-defaults-simple", "qwen2.5-coder:32b")
        ui.fill("#setting-ollama-host", "not a url")
        ui.click("#settings-save")
        check(ui.locator("#setting-ollama-host-error")).to_be_visible()
        check(ui.locator("#setting-ollama-host")).to_have_attribute("aria-invalid", "true")
        screenshot(ui, "settings")
        ui.fill("#setting-ollama-host", module_llm.url)
        ui.click("#settings-save")
        check(ui.locator("#settings-message")).to_contain_text("models.defaults.medium")
        check(ui.locator("#setting-ollama-host-error")).to_be_hidden()
        # Applied without a restart: the status line and the API show the new model.
        check(ui.locator("#status-model")).to_have_text("qwen2.5-coder:32b")
        module_llm.script(Turn(content="from the big model"))
        chat = httpx.post(server.url + "/chat", json={"message": "hi"}, timeout=20).json()
        assert chat["model"] == "qwen2.5-coder:32b"
    finally:
        reset_settings(server)


def test_every_page_at_both_widths(ui, server):
    """Each page loads without script errors and shows its navigation at desktop and phone width."""
    check = expect()
    for name, path in [("home", "/"), ("chat-empty", "/ui/chat"), ("workflow-empty", "/ui/workflow"),
                       ("improve-empty", "/ui/improve"), ("search-empty", "/ui/search"),
                       ("files-empty", "/ui/files"), ("settings-form", "/ui/settings")]:
        ui.goto(server.url + path)
        check(ui.locator("#status-available")).to_have_text("available")
        screenshot(ui, name)
        ui.set_viewport_size({"width": 390, "height": 844})
        check(ui.locator("#nav")).to_be_hidden()
        ui.click(".nav-toggle")
        check(ui.locator("#nav a", has_text="Settings")).to_be_visible()
        ui.set_viewport_size({"width": 1280, "height": 800})
    check(ui.locator("#nav a[aria-current=page]")).to_have_text("Settings")
    assert re.search(r"/ui/settings$", ui.url)
    # Dark when the system is dark (every screenshot above has its -dark twin).
    background = "getComputedStyle(document.body).backgroundColor"
    light = ui.evaluate(background)
    ui.emulate_media(color_scheme="dark")
    assert ui.evaluate(background) != light
    ui.emulate_media(color_scheme="light")
