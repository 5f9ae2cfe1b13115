"""The Tokens page (multi-user mode): a logged-in user makes a personal API token, shown once,
uses it against the API, and revokes it; in a real browser against a live server too."""

from __future__ import annotations

import httpx
import pytest
from django.contrib.auth.models import Group
from django.test import Client

from codegen_site.core import users
from codegen_site.core.models import ApiToken
from tests.ui_browser import WAIT_MS, new_page, screenshot, start_server


@pytest.fixture
def user(django_user_model):
    user = django_user_model.objects.create_user("ada", password="lovelace")
    user.groups.add(Group.objects.get_or_create(name="developer")[0])
    return user


@pytest.fixture
def users_on(settings):
    settings.USERS = True
    users.forget_cached()
    yield
    users.forget_cached()


@pytest.mark.django_db
def test_the_page_makes_a_token_shows_it_once_and_revokes_it(users_on, user, django_user_model):
    page = Client()
    assert page.get("/ui/tokens")["Location"] == "/login?next=/ui/tokens"
    page.force_login(user)
    made = page.post("/ui/tokens", {"action": "create", "name": "laptop"})
    token = made.context["new_token"]
    assert made.status_code == 200 and token.encode() in made.content
    listing = page.get("/ui/tokens")
    assert b"laptop" in listing.content and token.encode() not in listing.content
    assert Client().get("/conversations", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    # Another user's token cannot be revoked from this page.
    other = django_user_model.objects.create_user("bob", password="pw")
    theirs, their_token = users.issue_token(other, "bob's")
    page.post("/ui/tokens", {"action": "revoke", "token": str(theirs.pk)})
    page.post("/ui/tokens", {"action": "revoke", "token": "not-a-number"})
    assert Client().get("/conversations", HTTP_AUTHORIZATION=f"Bearer {their_token}").status_code == 200
    mine = ApiToken.objects.get(user=user)
    assert page.post("/ui/tokens", {"action": "revoke", "token": str(mine.pk)}).status_code == 302
    assert Client().get("/conversations", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


@pytest.mark.django_db
def test_the_nav_links_tokens_only_in_multi_user_mode(client, settings):
    assert b'href="/ui/tokens"' not in client.get("/ui/chat").content
    assert b"Multi-user mode is off" in client.get("/ui/tokens").content


# --- in a browser --------------------------------------------------------------------------
@pytest.fixture
def users_server(transactional_db, django_db_blocker, module_llm, tmp_path, browser):
    module_llm.reset()
    server = start_server(django_db_blocker, module_llm, tmp_path, CODEGEN_SECURITY__USERS="true")
    yield server
    server.stop()


@pytest.mark.timeout(300)
def test_log_in_make_a_token_use_it_and_revoke_it(users_server, user, browser):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    page = new_page(browser)
    try:
        page.goto(users_server.url + "/ui/tokens")
        expect(page).to_have_url(users_server.url + "/login?next=/ui/tokens")
        page.fill("input[name=username]", "ada")
        page.fill("input[name=password]", "lovelace")
        page.click("button[type=submit]")
        expect(page).to_have_url(users_server.url + "/ui/tokens")
        expect(page.locator("#role")).to_have_text("developer")
        page.fill("input[name=name]", "script")
        page.click("text=Create token")
        expect(page.locator("#new-token")).to_be_visible()
        token = page.locator("#new-token").inner_text().strip()
        screenshot(page, "tokens")
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.get(users_server.url + "/conversations", headers=bearer).status_code == 200
        assert httpx.get(users_server.url + "/conversations").status_code == 401
        page.click("button[aria-label='Revoke script']")
        expect(page.locator("#tokens tbody tr", has_text="script")).to_contain_text("revoked")
        assert httpx.get(users_server.url + "/conversations", headers=bearer).status_code == 401
        assert not page.script_errors, page.script_errors
    finally:
        page.context.close()
