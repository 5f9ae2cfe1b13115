"""Shared by the browser tests: Debian's chromium driven by Playwright, one live
daphne server per module with the scripted LLM, screenshots of every page (light and dark)."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.fakes.llm_server import FakeLLMServer
from tests.live_server import ROOT, LiveASGIServer
from tests.polling import wait_for

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "output" / "screenshots"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
# Playwright's own wait for what the user should see; a slow shared machine needs headroom.
WAIT_MS = 20_000


# A small module the UI tests put in their workspace (an unused import for the analysis to find).
MODULE = '''"""Small helpers."""
import os


def factorial(n):
    """n! for n >= 0."""
    result = 1
    for i in range(2, n + 1):
        result *= i
    return result
'''


def require_chromium() -> None:
    if os.path.exists(CHROMIUM):
        return
    reason = f"{CHROMIUM} is missing (apt-get install chromium); the browser tests need it"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


# Per module, not per session: while Playwright's sync API is running it keeps an event
# loop running in this thread, and pytest-asyncio's tests in later modules could not run theirs.
@pytest.fixture(scope="module")
def browser():
    require_chromium()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, so Django
    # would refuse the tests' own database calls (flushes between tests) as unsafe
    # in async code; nothing here shares a connection with that loop.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--disable-dev-shm-usage"])
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def module_llm():
    with FakeLLMServer() as server:
        yield server


def start_server(django_db_blocker, llm: FakeLLMServer, workspace: Path, **env: str) -> LiveASGIServer:
    from django.db import connection

    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
    # No relevance cut-off for code search (rag.min_score 0): the scripted server's embedding vectors mean
    # nothing (tests/test_search_relevance.py checks the cut-off with the bundled embedder).
    live = LiveASGIServer({"CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__HOST": llm.url,
                           "CODEGEN_OLLAMA__TIMEOUT": "20", "CODEGEN_WORKSPACE_ROOT": str(workspace),
                           "CODEGEN_RAG__MIN_SCORE": "0", **env},
                          name)
    live.db_name = name
    return live


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, module_llm, workspace):
    """One live server per test module, on the module's `workspace` (each module defines its own)."""
    live = start_server(django_db_blocker, module_llm, workspace)
    yield live
    live.stop()


def reset_settings(live: LiveASGIServer) -> None:
    """Forget what a test saved through PATCH /config (the settings' rows in the server's test
    database), and wait until the server is back on the defaults (its monitor reads the rows)."""
    with sqlite3.connect(live.db_name) as db:
        db.execute("DELETE FROM core_settingschange")
        db.execute("DELETE FROM core_savedsettings")
    wait_for(lambda: httpx.get(live.url + "/health", timeout=10).json()["settings_version"] == 0, timeout=15,
             what="the server back on the default settings")


def plant(root: Path, files: dict[str, str]) -> Path:
    """Write `files` ({relative path: text}) under root, folders made as needed."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture(params=["desktop", "phone"])
def width(request):
    """A test that takes `width` runs at 1280x800 and at 390x844."""
    return request.param


def new_page(browser, viewport: str = "desktop"):
    """A page at `viewport` width that records script errors and console errors.

    `page.script_errors` collects uncaught exceptions and console.error messages (a failed
    resource load among them); a test expecting an error answer names it with allow_console()."""
    context = browser.new_context(viewport=VIEWPORTS[viewport], color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.allowed_console = []
    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))

    def console(message):
        if message.type != "error":
            return
        text = f"console: {message.text} ({message.location.get('url', '')})"
        if not any(re.search(pattern, text) for pattern in page.allowed_console):
            errors.append(text)

    page.on("console", console)
    page.script_errors = errors
    return page


def allow_console(page, pattern: str) -> None:
    """A console error the test expects (the browser logs every 4xx/5xx answer as one)."""
    page.allowed_console.append(pattern)


def screenshot(page, name: str) -> None:
    """The page as it is now at desktop and phone width, light and dark (viewport and
    colour scheme restored after): <name>-<width>.png and <name>-<width>-dark.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    for scheme, suffix in (("light", ""), ("dark", "-dark")):
        page.emulate_media(color_scheme=scheme)
        for label, size in VIEWPORTS.items():
            page.set_viewport_size(size)
            page.evaluate("window.scrollTo(0, 0)")  # a sticky header is drawn where the page is scrolled to
            # transitions run to their end first: a drawer is drawn shut or open, never half-way
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}{suffix}.png"), full_page=True,
                            animations="disabled")
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(original)


@contextlib.contextmanager
def checked_page(browser, server: LiveASGIServer, viewport: str = "desktop"):
    """A fresh page; when the test is done, no script or console error may have happened in it."""
    page = new_page(browser, viewport)
    yield page
    errors = page.script_errors
    page.context.close()
    assert not errors, f"script errors in the page: {errors}\n{server.log()[-3000:]}"


def expect():
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=WAIT_MS)
    return playwright_expect


def analyse(ui, server):
    """Analyse pkg/ on the Improve page; the row of pkg/maths.py's import issue."""
    check = expect()
    ui.goto(server.url + "/ui/improve")
    ui.fill("#analyze-path", "pkg")
    ui.click("#analyze")
    check(ui.locator("#analyze-state")).to_contain_text("Done in")
    return ui.locator("#issues tbody tr", has_text="pkg/maths.py").filter(has_text="import")
