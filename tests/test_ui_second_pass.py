"""The UI's second pass in a real browser (Debian's chromium through Playwright) against a
live server and the scripted LLM, each behaviour at desktop (1280×800) and phone (390×844)
width: the chat's own scrolling and keyboard path, feedback beside the control that caused
it, Home as a first-run path, the workflow's kept program, search lines, file anchors,
Improve at phone width, the favicon."""

from __future__ import annotations

import hashlib
import json
import re

import httpx
import pytest

from tests.fakes.llm_server import Turn
from tests.test_workflow import RIGHT, TASK, WRONG, Model
from tests.ui_browser import MODULE, allow_console, analyse, checked_page, expect, plant, reset_settings, screenshot

pytestmark = [pytest.mark.timeout(300)]

IMPROVED = MODULE.replace("import os\n", "")
# Words that contain the query's words without being them: none of these may be marked.
WORDS = '''"""Tables of results."""


def factorial_table(limit):
    """The factorials up to limit, as a list of results."""
    results = []
    for value in range(limit):
        results.append(refactorial(value))
    return results


def refactorial(value):
    return value
'''
LONG = "".join(f"VALUE_{number} = {number}\n" for number in range(1, 81))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return plant(tmp_path_factory.mktemp("ui-second-pass"),
                 {"pkg/__init__.py": "", "pkg/maths.py": MODULE, "pkg/words.py": WORDS, "pkg/long.py": LONG,
                  "notes.md": "# Notes\nThe factorial lives in pkg/maths.py.\n"})


@pytest.fixture
def ui(transactional_db, server, module_llm, browser, workspace, width):
    """A fresh page at the test's width on the module's server; the scripted LLM starts empty (echo)."""
    module_llm.reset()
    (workspace / "pkg" / "maths.py").write_text(MODULE)
    with checked_page(browser, server, width) as page:
        yield page


INSIDE = """s => { const e = document.querySelector(s); if (!e) return false; const r = e.getBoundingClientRect();
  return r.width > 0 && r.top >= 0 && r.left >= 0 && r.bottom <= innerHeight && r.right <= innerWidth; }"""


def in_viewport(page, selector: str) -> None:
    """Waits until the element is wholly inside the window (not scrolled out, not cut by its
    edges, not sliding in)."""
    page.wait_for_function(INSIDE, arg=selector)


# --- chat ------------------------------------------------------------------------------------
def long_conversation(count: int = 40) -> str:
    """A saved conversation of `count` messages (user and assistant in turn), the last one marked."""
    from chat.models import Conversation, Message

    conversation = Conversation.objects.create(title="Forty messages")
    for number in range(1, count + 1):
        role = Message.Role.USER if number % 2 else Message.Role.ASSISTANT
        text = f"Message {number}.\n\n" + "\n\n".join(f"Paragraph {i} of message {number}." for i in range(3))
        if number == count:
            text = "The newest answer, at the end."
        Message.objects.create(conversation=conversation, role=role, content=text, model="qwen2.5-coder:7b")
    return str(conversation.pk)


PAGE_STILL = "document.scrollingElement.scrollHeight <= innerHeight && scrollY === 0"
LAST_IN_LIST = """() => {
  const list = document.getElementById('messages');
  const last = list.querySelector('.message:last-of-type');
  if (!last) return false;
  const box = list.getBoundingClientRect(), r = last.getBoundingClientRect();
  return r.bottom <= box.bottom + 1 && r.bottom > box.top && r.bottom <= innerHeight;
}"""


def test_chat_long_conversation_fits_the_window_with_the_box_focused(ui, server, width):
    check = expect()
    conversation = long_conversation()
    ui.goto(f"{server.url}/ui/chat?c={conversation}")
    check(ui.locator("#messages .message")).to_have_count(40)
    check(ui.locator("#chat-title")).to_have_text("Forty messages")
    # Neither the composer nor the newest message needs the page scrolled: the list scrolls itself.
    ui.wait_for_function(LAST_IN_LIST)
    assert ui.evaluate(PAGE_STILL), "the page itself scrolls"
    check(ui.locator("#messages .message").last).to_contain_text("The newest answer, at the end.")
    in_viewport(ui, "#chat-input")
    in_viewport(ui, "#send")
    assert ui.locator("#messages").evaluate("e => e.scrollHeight > e.clientHeight"), "the list should overflow"
    check(ui.locator("#chat-input")).to_be_focused()
    screenshot(ui, "chat-long")


def test_chat_follows_the_stream_until_the_reader_scrolls_up(ui, server, module_llm, width):
    check = expect()
    conversation = long_conversation()
    module_llm.script(Turn(content=[f"Line {i} of a long answer.\n\n" for i in range(2000)], chunk_delay=0.01))
    ui.goto(f"{server.url}/ui/chat?c={conversation}")
    check(ui.locator("#messages .message")).to_have_count(40)
    ui.fill("#chat-input", "Tell me a lot")
    ui.press("#chat-input", "Enter")
    answer = ui.locator("#messages .message.assistant").last
    check(answer.locator(".body")).to_contain_text("Line 40 of")
    # While it streams, the newest line stays in view and the page does not move.
    ui.wait_for_function(LAST_IN_LIST)
    check(answer.locator(".body")).to_contain_text("Line 80 of")
    ui.wait_for_function(LAST_IN_LIST)
    assert ui.evaluate(PAGE_STILL)

    # The reader scrolls up: the list stays where they put it while the answer grows.
    ui.hover("#messages")
    ui.mouse.wheel(0, -3000)
    check(ui.locator("#jump-latest")).to_be_visible()
    top = ui.locator("#messages").evaluate("e => e.scrollTop")
    length = len(answer.locator(".body").inner_text())
    ui.wait_for_function("n => document.querySelector('#messages .message.assistant:last-of-type .body')"
                         ".innerText.length > n + 400", arg=length)
    assert abs(ui.locator("#messages").evaluate("e => e.scrollTop") - top) < 2, "the list moved under the reader"
    # The button brings the newest message back and the list follows it again.
    ui.click("#jump-latest")
    check(ui.locator("#jump-latest")).to_be_hidden()
    length = len(answer.locator(".body").inner_text())
    ui.wait_for_function("n => document.querySelector('#messages .message.assistant:last-of-type .body')"
                         ".innerText.length > n + 400", arg=length)
    ui.wait_for_function(LAST_IN_LIST)
    ui.keyboard.press("Escape")
    check(answer.locator("header")).to_have_text("Assistant · stopped")


def test_chat_keyboard_path_skip_link_and_drawer(ui, server, width):
    check = expect()
    for title in ("First talk", "Second talk"):
        httpx.post(server.url + "/chat", json={"message": title}, timeout=20).raise_for_status()
    ui.goto(server.url + "/ui/chat")
    check(ui.locator("#chat-input")).to_be_focused()
    check(ui.locator("#conversations li .title")).to_have_count(2)
    # From the top of the page the first Tab is the skip link, which leads to the message box.
    ui.locator(".skip-link").focus()
    ui.keyboard.press("Shift+Tab")
    ui.keyboard.press("Tab")
    check(ui.locator(".skip-link")).to_be_focused()
    check(ui.locator(".skip-link")).to_be_visible()
    ui.keyboard.press("Enter")
    check(ui.locator("#chat-input")).to_be_focused()
    # Without it, Tab still reaches the box before any control of the conversation list.
    order = ui.evaluate("""() => [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')]
        .filter(e => e.tabIndex >= 0 && !e.disabled && e.getClientRects().length && getComputedStyle(e).visibility !== 'hidden')
        .map(e => e.id || e.className)""")
    before = order[:order.index("chat-input")]
    assert not {"new-chat", "conversation-search", "open"} & set(before), before

    if width == "phone":
        # The list is a drawer: closed at first, opened by its button, closed by choosing.
        check(ui.locator("#conversations-panel")).to_be_hidden()
        ui.click("#conversations-toggle")
        check(ui.locator("#conversations-panel")).to_be_visible()
        check(ui.locator("#conversations-toggle")).to_have_attribute("aria-expanded", "true")
        check(ui.locator("#conversation-search")).to_be_focused()
        in_viewport(ui, "#conversations-panel")
        screenshot(ui, "chat-drawer")
        ui.keyboard.press("Escape")
        check(ui.locator("#conversations-panel")).to_be_hidden()
        check(ui.locator("#conversations-toggle")).to_be_focused()
        ui.click("#conversations-toggle")
        ui.locator("#conversations li .open", has_text="First talk").click()
        check(ui.locator("#conversations-panel")).to_be_hidden()
    else:
        check(ui.locator("#conversations-toggle")).to_be_hidden()
        check(ui.locator("#conversations-panel")).to_be_visible()
        ui.locator("#conversations li .open", has_text="First talk").click()
    check(ui.locator("#chat-title")).to_have_text("First talk")
    check(ui.locator("#messages .message.user .body")).to_have_text("First talk")
    check(ui.locator("#chat-input")).to_be_focused()


def test_chat_model_picker_lists_chat_models_only(ui, server, module_llm, width):
    check = expect()
    # The model server's own report (/api/show capabilities through /models?details=true) decides,
    # not a name: it lists one more embedding model and one more chat model than the settings know.
    module_llm.models += ["mxbai-embed-large", "coder:1b"]
    module_llm.capabilities["mxbai-embed-large"] = ["embedding"]
    try:
        # A changed config forgets the model list the server reuses for a few seconds.
        httpx.patch(server.url + "/config", json={"llm": {"temperature": 0.3}}).raise_for_status()
        ui.goto(server.url + "/ui/chat")
        check(ui.locator("#model-picker option", has_text="coder:1b")).to_have_count(1)
        names = ui.locator("#model-picker option").all_inner_texts()
        assert "nomic-embed-text" not in names and "mxbai-embed-large" not in names
        assert "qwen2.5-coder:32b" in names and "qwen2.5-coder:7b" in names
    finally:
        module_llm.models = [name for name in module_llm.models if name not in ("mxbai-embed-large", "coder:1b")]
        del module_llm.capabilities["mxbai-embed-large"]
        reset_settings(server)

    # A provider that reports capabilities is believed, whatever the settings say.
    models = [{"name": "coder:1b", "capabilities": ["completion", "tools"]},
              {"name": "mxbai-embed-large", "capabilities": ["embedding"]},
              {"name": "qwen2.5-coder:7b", "capabilities": ["completion"]}]
    ui.route(re.compile(r"/models(\?|$)"), lambda route: route.fulfill(json=models))
    ui.reload()
    check(ui.locator("#model-picker option")).to_have_text(["by task (automatic)", "coder:1b", "qwen2.5-coder:7b"])


def test_chat_codebase_hint_and_file_name_completion(ui, server, width):
    check = expect()
    ui.goto(server.url + "/ui/chat")
    check(ui.locator("#composer-hint")).to_contain_text("@codebase")
    box = ui.locator("#chat-input")
    box.press_sequentially("@co")
    option = ui.locator("#mention-list [role=option]")
    check(option.first).to_have_text(re.compile(r"^@codebase"))
    check(ui.locator("#mention-list")).to_be_visible()
    in_viewport(ui, "#mention-list")
    box.press("Enter")  # takes the suggestion, does not send
    check(box).to_have_value("@codebase ")
    check(ui.locator("#mention-list")).to_be_hidden()
    check(ui.locator("#messages .message")).to_have_count(0)
    box.press_sequentially("where is @math")
    check(option.first).to_have_text(re.compile(r"^pkg/maths\.py"))
    screenshot(ui, "chat-completion")
    box.press("Tab")
    check(box).to_have_value("@codebase where is pkg/maths.py ")
    # A file named in a plain message makes it an @codebase question.
    box.fill("")
    box.press_sequentially("explain @words")
    check(option.first).to_have_text(re.compile(r"^pkg/words\.py"))
    box.press("ArrowDown")
    box.press("ArrowUp")
    box.press("Enter")
    check(box).to_have_value("@codebase explain pkg/words.py ")
    box.press_sequentially("@zzz")
    check(ui.locator("#mention-list")).to_be_hidden()
    check(ui.locator("#messages .message")).to_have_count(0)


# --- settings --------------------------------------------------------------------------------
def test_settings_save_stays_in_view_with_its_result_beside_it(ui, server, module_llm, width):
    check = expect()
    allow_console(ui, r"status of 400")  # the refused Save below
    try:
        ui.goto(server.url + "/ui/settings")
        check(ui.locator("#setting-llm-provider")).to_have_value("ollama")
        # Help, range and unit from the OpenAPI schema, tied to the field for screen readers.
        timeout = ui.locator("#setting-ollama-timeout")
        check(timeout).to_have_attribute("min", "0.1")
        check(timeout).to_have_attribute("max", "3600")
        check(ui.locator("#setting-ollama-timeout-help")).to_have_text(
            "Longest wait between two pieces of an answer. 0.1–3,600 seconds.")
        check(timeout).to_have_attribute("aria-describedby", re.compile(r"setting-ollama-timeout-help"))
        check(ui.locator("label[data-field='ollama.timeout'] > span").first).to_have_text("timeout (seconds)")
        check(ui.locator("#setting-workflow-plan_max_tokens-help")).to_contain_text(
            "Most tokens the stage may generate; 0: llm.max_tokens.")
        check(ui.locator("#setting-sandbox-memory_mb-help")).to_have_text(re.compile(r"^Memory of one run\. 16–[\d,]+ MB\.$"))
        check(ui.locator("#setting-llm-provider-help")).to_contain_text("Which model server answers")
        check(ui.locator("#setting-llm-provider-help")).not_to_contain_text("* `")
        check(ui.locator("#setting-ollama-host-help")).to_contain_text("http:// or https://")
        # Save is in the window at the top of the form and at its end.
        in_viewport(ui, "#settings-save")
        ui.locator("#setting-sandbox-disk_mb").scroll_into_view_if_needed()
        in_viewport(ui, "#settings-save")
        ui.evaluate("window.scrollTo(0, 0)")

        ui.fill("#setting-ollama-host", "not a url")
        ui.click("#settings-save")
        check(ui.locator("#setting-ollama-host-error")).to_be_visible()
        check(ui.locator("#setting-ollama-host")).to_be_focused()
        check(ui.locator(".save-bar #settings-error")).to_have_text(re.compile(r"one field was refused"))
        in_viewport(ui, "#settings-error")
        screenshot(ui, "settings-refused")

        ui.fill("#setting-ollama-host", module_llm.url)
        ui.fill("#setting-models-defaults-medium", "qwen2.5-coder:32b")
        ui.click("#settings-save")
        check(ui.locator(".save-bar #settings-message")).to_contain_text("models.defaults.medium")
        check(ui.locator("#settings-error")).to_be_hidden()
        in_viewport(ui, "#settings-message")
        in_viewport(ui, "#settings-save")
        # beside the button: the same row of the bar
        row = ui.evaluate("""() => { const m = document.getElementById('settings-message').getBoundingClientRect(),
            b = document.getElementById('settings-save').getBoundingClientRect();
            return Math.abs((m.top + m.bottom) / 2 - (b.top + b.bottom) / 2) < Math.max(m.height, b.height); }""")
        assert row or width == "phone", "the result is not beside Save"
        check(ui.locator("#status-model")).to_have_text("qwen2.5-coder:32b")
        # a list setting is its items separated by commas, saved as a list
        check(ui.locator("#setting-rag-skip_names")).to_have_value(re.compile(r"^package-lock\.json, "))
        ui.fill("#setting-rag-skip_names", "poetry.lock, yarn.lock ,")
        ui.click("#settings-save")
        check(ui.locator(".save-bar #settings-message")).to_contain_text("rag.skip_names")
        assert httpx.get(server.url + "/config").json()["rag"]["skip_names"] == ["poetry.lock", "yarn.lock"]
        # an edit after it clears the result of the last Save
        ui.fill("#setting-models-defaults-simple", "local")
        check(ui.locator("#settings-message")).to_be_hidden()
    finally:
        reset_settings(server)


# --- home ------------------------------------------------------------------------------------
def test_home_is_a_first_run_path(ui, server, workspace, width):
    check = expect()
    indexed = httpx.get(server.url + "/rag/status").json()["status"] == "ready"
    analysed = bool(httpx.get(server.url + "/improve/reports?limit=1").json())
    ui.goto(server.url + "/")
    # The workspace in use (what GET /config says) and how to serve another one.
    root = httpx.get(server.url + "/config").json()["workspace"]["root"]
    check(ui.locator("#workspace-root")).to_have_text(root)
    check(ui.locator("#workspace-change")).to_have_text("make run WORKSPACE=~/code/project")
    check(ui.locator("#home-index-state")).to_have_text(re.compile(r"^Indexed: " if indexed else r"^Not indexed yet"))
    check(ui.locator("#home-analyse-state")).to_have_text(
        re.compile(r"^Last analysis #\d+" if analysed else r"^Not analysed yet"))
    check(ui.locator("#step-chat")).to_contain_text("@codebase")
    check(ui.locator("#admin-note")).to_contain_text("manage.py createsuperuser")
    check(ui.locator("#nav a", has_text="Admin")).to_have_attribute("title", re.compile("createsuperuser"))
    # The raw endpoint list waits behind its summary.
    endpoints = ui.locator("#endpoints .endpoints")
    check(endpoints).to_be_hidden()
    screenshot(ui, "home-first-run")
    ui.locator("#endpoints summary").click()
    check(endpoints.locator("li", has_text="/health")).to_be_visible()

    ui.click("#home-index")
    check(ui.locator("#home-index-state")).to_have_text(re.compile(r"^Indexed: \d+ files, \d+ chunks"))
    check(ui.locator("#home-index")).to_have_text("Index again")
    check(ui.locator("#home-index")).to_be_enabled()
    ui.click("#home-analyse")
    check(ui.locator("#home-analyse-state")).to_contain_text(re.compile(r"analysis #\d+ of \.: \d+ issues?"))
    report = int(re.search(r"#(\d+)", ui.locator("#home-analyse-state").inner_text()).group(1))
    screenshot(ui, "home-done")
    ui.click("#home-report-link")
    check(ui.locator("#report-title")).to_have_text(f"Report {report} · .")
    check(ui.locator("#issues tbody tr", has_text="pkg/maths.py").first).to_be_visible()


# --- workflow --------------------------------------------------------------------------------
LONG_LINE = "    # " + "a comment long enough to pass the edge of any code pane at phone width " * 2 + "\n"
RIGHT_LONG = RIGHT.replace("    result = 1\n", "    result = 1\n" + LONG_LINE)
NO_CUT_LINES = """sel => [...document.querySelectorAll(sel)].filter(e => e.getClientRects().length)
    .every(e => e.scrollWidth <= e.clientWidth + 1)"""


def test_workflow_keeps_the_passing_program_first_and_folds_failures(ui, server, module_llm, width):
    check = expect()
    module_llm.responder = Model([WRONG, WRONG, WRONG, RIGHT_LONG])
    ui.goto(server.url + "/ui/workflow")
    ui.fill("#task", TASK)
    ui.press("#task", "Enter")
    check(ui.locator("#verdict")).to_have_text("passed")
    runs = ui.locator("#attempts > li")
    # The kept program first, marked, its output open; every failed run folded.
    check(runs.first).to_have_class(re.compile(r"\bkept\b"))
    check(runs.first.locator(".kept-badge")).to_have_text("kept")
    check(runs.first.locator(".badge.passed")).to_have_text("pass")
    check(runs.first.locator("strong")).to_have_text("Attempt 2 · candidate 1")
    check(runs.first.locator("details")).to_have_attribute("open", "")
    check(ui.locator("#attempts > li.kept")).to_have_count(1)
    failed = ui.locator("#attempts > li.failed")
    check(failed).to_have_count(4)
    assert all(not item.evaluate("e => e.querySelector('details').open") for item in failed.all())
    check(ui.locator("#attempts-note")).to_be_visible()
    check(ui.locator("#final-code pre")).to_contain_text("a comment long enough")
    # No code line is cut at the edge of its box: lines wrap inside the panes.
    for selector in ("#tests", "#code", "#final-code pre", "#attempts pre"):
        assert ui.evaluate(NO_CUT_LINES, selector), f"{selector} cuts its lines"
    runs.first.locator("details summary").click()  # fold it too, to open the others' and check them
    failed.first.locator("summary").click()
    assert ui.evaluate(NO_CUT_LINES, "#attempts pre")
    screenshot(ui, "workflow-kept")


def test_workflow_kept_run_is_the_one_the_server_names(ui, server, width):
    """Two runs with the same output: done's chosen_run (when sent) says which program was kept."""
    check = expect()
    run = {"passed": True, "output": "1 passed", "attempt": 1, "tests_passed": 1, "tests_failed": 0}
    done = {"session_id": "5e55", "intent_kind": "code", "plan": "", "tests": "", "code": "x = 1\n",
            "validation_passed": True, "validation_output": "1 passed", "attempts": 1, "verdict": "passed"}
    events = [("validation", {**run, "candidate": 1}), ("validation", {**run, "candidate": 2})]

    def answer(extra):
        frames = events + [("done", {**done, **extra})]
        body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in frames)
        return lambda route: route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    ui.goto(server.url + "/ui/workflow")
    for extra, kept in (({}, "candidate 2"), ({"chosen_run": 1}, "candidate 1")):
        ui.unroute("**/workflow?stream=true")
        ui.route("**/workflow?stream=true", answer(extra))
        ui.fill("#task", TASK)
        ui.press("#task", "Enter")
        check(ui.locator("#attempts > li.kept strong")).to_have_text(f"Attempt 1 · {kept}")
        check(ui.locator("#attempts > li").first).to_have_class(re.compile(r"\bkept\b"))
        check(ui.locator("#attempts > li")).to_have_count(2)


def test_workflow_question_gets_an_answer_without_stopped_stages(ui, server, module_llm, width):
    check = expect()
    module_llm.responder = Model([RIGHT])
    ui.goto(server.url + "/ui/workflow")
    ui.fill("#task", "What is recursion?")
    ui.press("#task", "Enter")
    check(ui.locator("#answer")).to_contain_text("Recursion is a function calling itself.")
    check(ui.locator("#run")).to_be_enabled()
    check(ui.locator("#panes")).to_be_hidden()
    check(ui.locator("#validation-card")).to_be_hidden()
    for stage in ("plan", "tests", "code"):
        check(ui.locator(f"#{stage}-state")).to_have_text("")
    screenshot(ui, "workflow-question")


# --- code search -----------------------------------------------------------------------------
def test_search_links_the_best_line_and_marks_whole_words_only(ui, server, width):
    check = expect()
    ui.goto(server.url + "/ui/search")
    ui.fill("#index-path", "pkg")
    ui.click("#index")
    check(ui.locator("#index-state")).to_contain_text("Indexed pkg")
    ui.fill("#query", "where is the result of factorial returned? return result")
    ui.press("#query", "Enter")
    hit = ui.locator("#hits .hit", has_text="def factorial(n)")
    check(hit.first).to_be_visible()
    # The line matching the most of the query's words is the one linked and marked.
    link = hit.first.locator("header a")
    check(link).to_have_text("pkg/maths.py:10")
    check(hit.first.locator(".hit-lines .line.best")).to_have_text("    return result")
    check(hit.first.locator(".hit-lines .n.best")).to_have_text("10")
    # Marks are the query's words as whole identifiers: never a stop-word, never inside a word.
    marks = ui.locator("#hits mark").all_inner_texts()
    assert marks and {mark.lower() for mark in marks} <= {"result", "factorial", "returned", "return"}, marks
    inside = ui.evaluate("""() => [...document.querySelectorAll('#hits mark')].filter(m => {
        const before = (m.previousSibling && m.previousSibling.textContent) || '';
        const after = (m.nextSibling && m.nextSibling.textContent) || '';
        return /[A-Za-z0-9_]$/.test(before) || /^[A-Za-z0-9_]/.test(after); }).map(m => m.parentNode.textContent)""")
    assert not inside, f"marks inside other words: {inside}"
    assert ui.evaluate(NO_CUT_LINES, "#hits .hit-lines .line"), "a chunk's line is cut"
    screenshot(ui, "search-best-line")
    link.click()
    check(ui.locator("#file-path")).to_have_text("pkg/maths.py")
    check(ui.locator("#file-view .line.target")).to_have_text("    return result")
    assert ui.url.endswith("#L10")


# --- files -----------------------------------------------------------------------------------
def test_files_tree_opens_to_the_linked_file_and_line_anchors_can_be_shared(ui, server, width):
    check = expect()
    ui.goto(server.url + "/ui/files?path=pkg/long.py#L40")
    # The tree opens down to the file and marks it.
    check(ui.locator("#tree button[data-dir='pkg']")).to_have_attribute("aria-expanded", "true")
    current = ui.locator("#tree button[data-path='pkg/long.py']")
    check(current).to_have_attribute("aria-current", "true")
    check(current).to_be_visible()
    line = ui.locator("#file-view .src .line.target")
    check(line).to_have_text("VALUE_40 = 40")
    check(line).to_be_in_viewport()
    screenshot(ui, "files-anchor")
    # A click on a line number marks that line and puts it in the address.
    ui.locator("#file-view .gutter a", has_text=re.compile(r"^42$")).click()
    check(line).to_have_text("VALUE_42 = 42")
    check(ui.locator("#copy-line-link")).to_have_text("Copy link to line 42")
    shared = ui.url
    assert shared.endswith("/ui/files?path=pkg%2Flong.py#L42") or shared.endswith("/ui/files?path=pkg/long.py#L42")
    # The shared address opens the same file at the same line; ?line= (older links) still works.
    ui.goto(server.url + "/")
    ui.goto(shared)
    check(line).to_have_text("VALUE_42 = 42")
    ui.goto(server.url + "/ui/files?path=pkg/maths.py&line=8")
    check(line).to_have_text("    for i in range(2, n + 1):")
    check(ui.locator("#tree button[data-path='pkg/maths.py']")).to_have_attribute("aria-current", "true")
    assert ui.url.endswith("#L8")


def test_files_missing_file_has_no_retry(ui, server, width):
    check = expect()
    allow_console(ui, r"status of 404")
    ui.goto(server.url + "/ui/files?path=pkg/missing.py")
    check(ui.locator("#file-error")).to_contain_text("not found")
    check(ui.locator("#file-error button.retry")).to_have_count(0)
    check(ui.locator("#file-backups")).to_be_hidden()


def test_files_restore_confirms_beside_the_button_and_labels_backups(ui, server, workspace, width):
    check = expect()
    first, second = "ONE = 1\n", "ONE = 1\nTWO = 2\n"
    (workspace / "pkg" / "restored.py").write_text(first)
    httpx.post(server.url + "/files/write", json={"path": "pkg/restored.py", "content": second}).raise_for_status()
    try:
        ui.goto(server.url + "/ui/files?path=pkg/restored.py")
        check(ui.locator("#file-view .src .line")).to_have_count(2)
        backup = ui.locator("#backup-rows tr").filter(has=ui.locator("td.why", has_text="before write")).first
        check(backup.locator("td.size")).to_have_text(f"{len(first)} B")
        check(backup.locator("code.hash")).to_have_text(hashlib.sha256(first.encode()).hexdigest()[:8])
        backup.locator("button.restore").click()
        # The confirmation is in the row of the button that was pressed, in view.
        restored = ui.locator("#backup-rows tr.restored")
        check(restored.locator(".row-status")).to_contain_text("Restored")
        check(restored.locator("td.why")).to_have_text("before write")
        check(restored.locator("button.restore")).to_be_focused()
        in_viewport(ui, "#backup-rows tr.restored .row-status")
        check(ui.locator("#backup-rows tr td.why").first).to_have_text("before restore")
        check(ui.locator("#backup-rows tr").first.locator("code.hash")).to_have_text(
            hashlib.sha256(second.encode()).hexdigest()[:8])
        check(ui.locator("#file-view .src .line")).to_have_count(1)
        assert (workspace / "pkg" / "restored.py").read_text() == first
        screenshot(ui, "files-restored")
    finally:
        (workspace / "pkg" / "restored.py").unlink(missing_ok=True)


# --- improve ---------------------------------------------------------------------------------


def test_improve_at_any_width_live_steps_and_badges_that_follow_a_restore(ui, server, module_llm, workspace, width):
    import threading

    check = expect()
    row = analyse(ui, server)
    check(row).to_have_count(1)
    # Every action is within reach: no sideways scrolling hides the buttons.
    improve = row.locator("button", has_text="Improve")
    check(improve).to_be_visible()
    assert ui.locator("#issues").evaluate("t => t.parentElement.scrollWidth <= t.parentElement.clientWidth + 1")
    box = improve.bounding_box()
    assert box["x"] + box["width"] <= ui.viewport_size["width"]
    screenshot(ui, "improve-issues")

    # While the model generates, the step in progress shows live (held until the test lets go).
    release = threading.Event()

    def held(request):
        release.wait(60)
        return Turn(content=f"```python\n{IMPROVED}```")

    module_llm.responder = held
    try:
        improve.click()
        check(ui.locator("#proposal-live-text")).to_contain_text("Generating the change · attempt 1")
        check(ui.locator("#proposal-state")).to_have_text("running")
        check(row.locator(".issue-state")).to_have_text("running")
    finally:
        release.set()
    check(ui.locator("#proposal-state")).to_have_text("proposed")
    check(ui.locator("#proposal-live")).to_be_hidden()
    check(ui.locator("#proposal-steps")).to_contain_text("read → generate (attempt 1) → validate (attempt 1)")
    ui.click("#accept")
    check(ui.locator("#proposal-state")).to_have_text("applied")
    check(row.locator(".issue-state")).to_have_text("applied")
    backup = ui.locator("#backup-rows tr").filter(has=ui.locator("td.why", has_text="before improvement"))
    check(backup).to_have_count(1)
    check(backup.locator("code.hash")).to_have_text(hashlib.sha256(MODULE.encode()).hexdigest()[:8])
    check(backup.locator("td.size")).to_have_text(f"{len(MODULE.encode())} B")
    backup.locator("button.restore").click()
    # After the restore: confirmed beside the button, and no badge says "applied" any more.
    check(backup.locator(".row-status")).to_contain_text("Restored")
    in_viewport(ui, "#backup-rows tr.restored .row-status")
    check(ui.locator("#proposal-state")).to_have_text("restored")
    check(row.locator(".issue-state")).to_have_text("restored")
    check(ui.locator("#proposal-note")).to_contain_text("the change is no longer in it")
    assert (workspace / "pkg" / "maths.py").read_text() == MODULE
    screenshot(ui, "improve-restored")


def test_improve_shows_tokens_when_the_stream_gives_them(ui, server, width):
    check = expect()
    row = analyse(ui, server)
    body = ('event: step\ndata: {"step": "read", "file_path": "pkg/maths.py"}\n\n'
            'event: step\ndata: {"step": "generate", "attempt": 1, "run_id": "x"}\n\n'
            'event: progress\ndata: {"step": "generate", "attempt": 1, "tokens": 42}\n\n')
    ui.route("**/improve/run?stream=true", lambda route: route.fulfill(
        status=200, headers={"Content-Type": "text/event-stream"}, body=body))
    row.locator("button", has_text="Improve").click()
    check(ui.locator("#proposal-live-text")).to_contain_text("Generating the change · attempt 1")
    check(ui.locator("#proposal-live-text")).to_contain_text("42 tokens so far")
    # The stream ended without its result: said so, with a Retry.
    check(ui.locator("#proposal-error")).to_contain_text("ended before its result")
    check(ui.locator("#proposal-error button.retry")).to_be_visible()
    check(ui.locator("#proposal-state")).to_have_text("failed")


def test_improve_queue_entries_say_what_they_fix(ui, server, module_llm, width):
    check = expect()
    row = analyse(ui, server)
    row.locator("button", has_text="Queue").click()
    task = ui.locator("#queue-tasks li", has_text="pkg/maths.py")
    check(task.locator(".badge.status")).to_have_text("pending")
    check(task.locator("a")).to_have_text("pkg/maths.py:2")
    check(task.locator(".task-issue .issue-message")).to_contain_text("imported but unused")
    check(task.locator(".task-issue")).to_contain_text("bug")
    check(task.locator(".task-issue .badge")).to_have_text("low")
    check(task.locator(".task-meta")).to_contain_text("queued")
    # The same after a reload, from /improve/queue/status.
    ui.reload()
    check(task.locator(".task-issue .issue-message")).to_contain_text("imported but unused")
    check(task.locator(".badge.status")).to_have_text("pending")
    screenshot(ui, "improve-queue-entries")
    httpx.post(server.url + "/improve/queue/clear", json={}).raise_for_status()


# --- every page ------------------------------------------------------------------------------
PAGES = [("home", "/"), ("chat", "/ui/chat"), ("workflow", "/ui/workflow"), ("improve", "/ui/improve"),
         ("search", "/ui/search"), ("files", "/ui/files"), ("settings", "/ui/settings")]


def test_every_page_has_the_favicon_and_a_skip_link(ui, server, width):
    check = expect()
    icon = httpx.get(server.url + "/static/favicon.svg")
    assert icon.status_code == 200 and "<svg" in icon.text
    for name, path in PAGES:
        ui.goto(server.url + path)
        check(ui.locator("link[rel=icon]")).to_have_attribute("href", re.compile(r"favicon\.svg$"))
        check(ui.locator("#status-available")).to_have_text("available")
        check(ui.locator(".skip-link")).to_be_attached()
        check(ui.locator("h1").first).to_be_attached()
        # nothing wider than the window
        assert ui.evaluate("document.documentElement.scrollWidth <= innerWidth"), f"{path} scrolls sideways"
        if width == "desktop":
            screenshot(ui, f"page-{name}")
