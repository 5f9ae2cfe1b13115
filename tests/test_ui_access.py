"""Access to the UI with CODEGEN_API_TOKEN set: pages ask for a Django login, the API
takes the token or a logged-in session (with the CSRF token for calls with effects);
and in a real browser, logging in makes every call of the page work, streams included."""

from __future__ import annotations

import httpx
import pytest
from django.test import Client, override_settings

from tests.fakes.llm_server import Turn
from tests.ui_browser import WAIT_MS, new_page, screenshot, start_server

PAGES = ["/", "/ui/chat", "/ui/workflow", "/ui/improve", "/ui/search", "/ui/files", "/ui/settings"]


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("ada", password="lovelace")


@pytest.fixture
def session_client(user):
    """A browser-like client: logged in, CSRF enforced, with the csrftoken cookie a page sets."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/ui/chat")
    return client


def csrf_header(client) -> dict:
    return {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value}


@pytest.mark.django_db
@override_settings(API_TOKEN="s3cret")
@pytest.mark.parametrize("path", PAGES)
def test_pages_send_a_visitor_to_the_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login?next={path}"


@pytest.mark.django_db
@override_settings(API_TOKEN="s3cret")
def test_login_page_logs_in_and_returns_to_the_page(client, user):
    assert client.get("/login").status_code == 200
    response = client.post("/login", {"username": "ada", "password": "lovelace", "next": "/ui/files"})
    assert response.status_code == 302 and response["Location"] == "/ui/files"
    assert client.get("/ui/files").status_code == 200
    wrong = Client().post("/login", {"username": "ada", "password": "nope"})
    assert wrong.status_code == 200 and b"did not match" in wrong.content


@pytest.mark.django_db
@override_settings(API_TOKEN="s3cret")
def test_api_takes_a_logged_in_session(session_client):
    assert session_client.get("/config").status_code == 200
    assert session_client.get("/conversations").status_code == 200


@pytest.mark.django_db
@override_settings(API_TOKEN="s3cret")
def test_session_calls_with_effects_need_the_csrf_token(session_client):
    body = {"logging": {"level": "DEBUG"}}
    refused = session_client.patch("/config", body, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    wrong = session_client.patch("/config", body, content_type="application/json", HTTP_X_CSRFTOKEN="x" * 32)
    assert wrong.status_code == 403
    accepted = session_client.patch("/config", body, content_type="application/json", **csrf_header(session_client))
    assert accepted.status_code == 200 and accepted.json()["ok"] is True


@pytest.mark.django_db
@override_settings(API_TOKEN="s3cret")
def test_no_session_or_a_stale_one_is_401(session_client, user):
    assert Client().get("/config").status_code == 401
    anonymous = Client()
    anonymous.cookies["sessionid"] = "not-a-session"
    assert anonymous.get("/config").status_code == 401
    # A password change ends the sessions made with the old one.
    user.set_password("changed")
    user.save()
    assert session_client.get("/config").status_code == 401
    assert Client().get("/config", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


@pytest.mark.django_db
def test_without_a_token_pages_and_api_are_open(client):
    assert client.get("/ui/settings").status_code == 200
    assert client.get("/config").status_code == 200


# --- in a browser --------------------------------------------------------------------------
@pytest.fixture
def guarded_server(transactional_db, django_db_blocker, module_llm, tmp_path, browser):
    module_llm.reset()
    server = start_server(django_db_blocker, module_llm, tmp_path, CODEGEN_API_TOKEN="s3cret")
    yield server
    server.stop()


@pytest.mark.timeout(300)
def test_log_in_in_the_browser_then_chat_streams(guarded_server, user, module_llm, browser):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    page = new_page(browser)
    try:
        page.goto(guarded_server.url + "/ui/chat")
        expect(page).to_have_url(guarded_server.url + "/login?next=/ui/chat")
        screenshot(page, "login")
        page.fill("input[name=username]", "ada")
        page.fill("input[name=password]", "lovelace")
        page.click("button[type=submit]")
        expect(page).to_have_url(guarded_server.url + "/ui/chat")
        module_llm.script(Turn(content=["Signed ", "in."], chunk_delay=0.02))
        page.fill("#chat-input", "hello")
        page.press("#chat-input", "Enter")
        expect(page.locator(".message.assistant .body")).to_have_text("Signed in.")
        expect(page.locator("#status-model")).to_have_text("qwen2.5-coder:7b")  # GET /config by session
        # Rename goes through PATCH with the CSRF token.
        page.locator("#conversations li button[title=Rename]").first.click()
        page.locator("#conversations input.rename").fill("Greeting")
        page.locator("#conversations input.rename").press("Enter")
        expect(page.locator("#conversations li .title").first).to_have_text("Greeting")
        assert not page.script_errors, page.script_errors
        # The API itself still wants the token from anything that is not the logged-in UI.
        assert httpx.get(guarded_server.url + "/conversations").status_code == 401
        cookies = {c["name"]: c["value"] for c in page.context.cookies()}
        stolen = httpx.patch(guarded_server.url + "/config", json={"logging": {"level": "DEBUG"}}, cookies=cookies)
        assert stolen.status_code == 403, stolen.text
        page.click("form.logout button")
        expect(page).to_have_url(guarded_server.url + "/login")
    finally:
        page.context.close()
