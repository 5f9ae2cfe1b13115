"""Shared by the browser tests: Debian's chromium driven by Playwright, one live
daphne server per module with the scripted LLM, screenshots of every page."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from tests.fakes.llm_server import FakeLLMServer
from tests.live_server import ROOT, LiveASGIServer

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
    return LiveASGIServer({"CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__HOST": llm.url,
                           "CODEGEN_OLLAMA__TIMEOUT": "20", "CODEGEN_WORKSPACE_ROOT": str(workspace), **env},
                          name)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker, module_llm, workspace):
    """One live server per test module, on the module's `workspace` (each module defines its own)."""
    live = start_server(django_db_blocker, module_llm, workspace)
    yield live
    live.stop()


def development_toml() -> Path:
    """Where a live server's PATCH /config writes (settings_test puts every server's config there)."""
    return Path(os.environ["CODEGEN_TEST_ROOT"]) / "config" / "development.toml"


def new_page(browser, viewport: str = "desktop"):
    context = browser.new_context(viewport=VIEWPORTS[viewport], color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.script_errors = errors
    return page


def screenshot(page, name: str) -> None:
    """The page as it is now, at desktop and phone width (restoring the viewport after)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    for label, size in VIEWPORTS.items():
        page.set_viewport_size(size)
        page.evaluate("window.scrollTo(0, 0)")  # a sticky header is drawn where the page is scrolled to
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(original)


@contextlib.contextmanager
def checked_page(browser, server: LiveASGIServer):
    """A fresh page; when the test is done, no script error may have happened in it."""
    page = new_page(browser)
    yield page
    errors = page.script_errors
    page.context.close()
    assert not errors, f"script errors in the page: {errors}\n{server.log()[-3000:]}"


def expect():
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=WAIT_MS)
    return playwright_expect
