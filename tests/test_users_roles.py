"""Multi-user mode (security.users): personal tokens (hashed, revocable), roles checked before any
view runs, conversations and runs owned by their user, and the audit log."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from codegen_site.core import users
from codegen_site.core.models import ApiToken, AuditEntry, SettingsChange
from tests.fakes.llm_server import Turn

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def users_on(settings):
    settings.USERS = True
    users.forget_cached()
    yield
    users.forget_cached()


def make_user(django_user_model, name: str, role: str | None):
    user = django_user_model.objects.create_user(name, password="pw")
    if role == "admin":
        user.is_superuser = True
        user.save()
    elif role is not None:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


class Api:
    """A client sending one user's personal token."""

    def __init__(self, token: str):
        self.client = Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    def get(self, url, **params):
        return self.client.get(url, params, **self.headers)

    def post(self, path, body=None):
        return self.client.post(path, body or {}, content_type="application/json", **self.headers)

    def patch(self, path, body):
        return self.client.patch(path, body, content_type="application/json", **self.headers)

    def delete(self, path):
        return self.client.delete(path, **self.headers)


@pytest.fixture
def api(django_user_model):
    """api("reader") → an Api for a new user with that role (the user as .user)."""
    def make(role: str | None, name: str | None = None) -> Api:
        user = make_user(django_user_model, name or f"{role or 'plain'}-user", role)
        _, token = users.issue_token(user, "test")
        client = Api(token)
        client.user, client.token = user, token
        return client
    return make


# ---------------------------------------------------------------- tokens

def test_only_the_token_digest_is_stored_and_it_names_its_user(api):
    reader = api("reader")
    row = ApiToken.objects.get(user=reader.user)
    assert reader.token not in (row.digest, row.prefix) and row.digest == users.digest(reader.token)
    assert reader.get("/config").status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None


@pytest.mark.parametrize("authorization", [None, "Bearer cg_unknown", "Bearer", "Basic abc"])
def test_calls_without_a_valid_token_are_401(authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = Client().get("/conversations", **headers)
    assert response.status_code == 401
    assert response.json()["detail"].startswith("Authentication required")
    assert Client().get("/health").status_code == 200  # health checks stay open


def test_the_shared_token_is_not_a_user(api, settings):
    settings.API_TOKEN = "s3cret"
    assert Client().get("/config", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 401


def test_a_revoked_token_is_401_at_once_and_elsewhere_within_seconds(api):
    developer = api("developer")
    assert developer.get("/conversations").status_code == 200
    row = ApiToken.objects.get(user=developer.user)
    users.revoke_token(row)
    assert developer.get("/conversations").status_code == 401
    # Another process learns it when its memory of the token runs out.
    users.forget_cached()
    assert developer.get("/conversations").status_code == 401


def test_an_inactive_user_is_401(api):
    developer = api("developer")
    developer.user.is_active = False
    developer.user.save()
    users.forget_cached()
    assert developer.get("/conversations").status_code == 401


def test_the_server_edge_refuses_an_unknown_token_it_has_seen(api):
    from codegen_site.middleware import head_refusal

    reader = api("reader")
    assert head_refusal("/files/write", "", set(), 10).status_code == 401
    # Not seen yet: the middleware asks the database.
    assert head_refusal("/files/write", "Bearer cg_unknown", set(), 10) is None
    assert Client().post("/files/write", {}, content_type="application/json",
                         HTTP_AUTHORIZATION="Bearer cg_unknown").status_code == 401
    assert head_refusal("/files/write", "Bearer cg_unknown", set(), 10).status_code == 401
    assert reader.get("/conversations").status_code == 200
    assert head_refusal("/files/write", f"Bearer {reader.token}", set(), 10) is None


# ---------------------------------------------------------------- roles

def test_a_reader_cannot_write_files_or_run_code(api, ws):
    reader = api("reader")
    for path, body in (("/files/write", {"path": "a.py", "content": "x = 1\n"}),
                       ("/code/run", {"code": "print(1)"})):
        response = reader.post(path, body)
        assert response.status_code == 403
        assert "needs the developer role" in response.json()["detail"]
    assert not (ws / "a.py").exists()
    assert reader.get("/files/tree").status_code == 200


def test_a_developer_writes_files_and_runs_code_but_not_settings(api, ws):
    developer = api("developer")
    assert developer.post("/files/write", {"path": "a.py", "content": "x = 1\n"}).status_code == 200
    assert (ws / "a.py").read_text() == "x = 1\n"
    ran = developer.post("/code/run", {"code": "print(1)"})
    assert ran.status_code == 200 and ran.json()["output"] == "1\n"
    refused = developer.patch("/config", {"logging": {"level": "DEBUG"}})
    assert refused.status_code == 403 and "needs the admin role" in refused.json()["detail"]
    assert developer.post("/improve/queue/clear").status_code == 403


def test_a_user_in_no_role_group_is_a_reader_and_a_superuser_an_admin(api):
    plain = api(None)
    assert plain.post("/code/run", {"code": "print(1)"}).status_code == 403
    admin = api("admin")
    assert admin.patch("/config", {"logging": {"level": "DEBUG"}}).status_code == 200


# ---------------------------------------------------------------- audit

def test_writes_runs_and_setting_changes_are_audited_with_their_author(api, ws):
    developer, admin = api("developer"), api("admin")
    developer.post("/files/write", {"path": "a.py", "content": "y = 2\n" * 100})
    developer.post("/code/run", {"code": "print(1)"})
    developer.patch("/config", {"logging": {"level": "DEBUG"}})  # refused: not recorded
    admin.patch("/config", {"logging": {"level": "DEBUG"}})
    developer.get("/files/read", path="a.py")  # reads are not recorded
    entries = list(AuditEntry.objects.order_by("created_at").values_list("actor", "action", "status"))
    assert entries == [("developer-user", "file write", 200), ("developer-user", "code run", 200),
                       ("admin-user", "settings change", 200)]
    write = AuditEntry.objects.get(action="file write")
    assert write.user == developer.user and write.detail["path"] == "a.py"
    assert write.detail["content"] == "<600 characters>"
    change = SettingsChange.objects.get()
    assert (change.author, change.user) == ("admin-user", admin.user)


# ---------------------------------------------------------------- ownership

@pytest.fixture
def chat_llm(ollama):
    return ollama


def chat(client: Api, message: str, **extra):
    return client.post("/chat", {"message": message, **extra})


def test_a_conversation_is_its_owners_and_an_admins(api, chat_llm):
    from chat.models import Conversation

    ada, bob, admin = api("reader", "ada"), api("reader", "bob"), api("admin", "root")
    chat_llm.script(Turn(content="one"), Turn(content="two"))
    first = chat(ada, "Ada's question").json()["conversation_id"]
    assert Conversation.objects.get(id=first).owner == ada.user
    chat(bob, "Bob's question")
    assert [row["title"] for row in ada.get("/conversations").json()] == ["Ada's question"]
    assert [row["title"] for row in bob.get("/conversations").json()] == ["Bob's question"]
    assert len(admin.get("/conversations").json()) == 2
    # Another's conversation is as if it did not exist: read, rename, delete, or continue it.
    assert bob.get(f"/conversations/{first}").status_code == 404
    assert bob.patch(f"/conversations/{first}", {"title": "mine"}).status_code == 404
    assert bob.delete(f"/conversations/{first}").status_code == 404
    assert chat(bob, "more", conversation_id=first).status_code == 404
    assert ada.get(f"/conversations/{first}").json()["title"] == "Ada's question"
    assert admin.get(f"/conversations/{first}").status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_a_streamed_conversation_is_owned_too(api, chat_llm, async_client):
    """Through the ASGI handler: the stream's writes run on other threads, owned all the same."""
    from asgiref.sync import sync_to_async

    from chat.models import Conversation

    ada, bob = await sync_to_async(api)("reader", "ada"), await sync_to_async(api)("reader", "bob")
    chat_llm.script(Turn(content=["streamed ", "answer"]))
    response = await async_client.get("/chat/stream", query_params={"message": "stream it"},
                                      headers={"Authorization": f"Bearer {ada.token}"})
    assert response.status_code == 200
    b"".join([part async for part in response.streaming_content])
    conversation = await Conversation.objects.aget()
    assert conversation.owner_id == ada.user.pk
    other = await async_client.get(f"/conversations/{conversation.id}", headers={"Authorization": f"Bearer {bob.token}"})
    assert other.status_code == 404
    assert (await async_client.get("/conversations", headers={"Authorization": f"Bearer {ada.token}"})).json()


def test_reports_are_their_owners(api, ws):
    (ws / "module.py").write_text("def f(x):\n    return x\n")
    ada, bob, admin = api("developer", "ada"), api("developer", "bob"), api("admin", "root")
    report = ada.post("/improve/analyze", {"path": ".", "include_linter": False}).json()
    assert [row["id"] for row in ada.get("/improve/reports").json()] == [report["report_id"]]
    assert bob.get("/improve/reports").json() == []
    assert bob.get(f"/improve/reports/{report['report_id']}").status_code == 404
    assert admin.get(f"/improve/reports/{report['report_id']}").status_code == 200


def test_single_user_mode_owns_nothing_and_sees_everything(settings, client, chat_llm):
    from chat.models import Conversation

    settings.USERS = False
    chat_llm.script(Turn(content="one"))
    conversation_id = client.post("/chat", {"message": "hi"}, content_type="application/json").json()[
        "conversation_id"]
    assert Conversation.objects.get(id=conversation_id).owner is None
    assert client.get(f"/conversations/{conversation_id}").status_code == 200


def test_another_users_workflow_session_lends_none_of_its_code(api):
    import uuid

    from workflow.models import WorkflowRun
    from workflow.selectors import previous_code

    ada, bob = api("developer", "ada"), api("developer", "bob")
    session = uuid.uuid4()
    WorkflowRun.objects.create(session_id=session, task="t", intent_kind="code", code="secret = 1", owner=ada.user)
    token = users.acting.set(users.Principal(bob.user, "developer"))
    try:
        assert previous_code(session, exclude_pk=0, limit=100) == ""
        users.acting.set(users.Principal(ada.user, "developer"))
        assert previous_code(session, exclude_pk=0, limit=100) == "secret = 1"
    finally:
        users.acting.reset(token)


def test_an_admin_issues_a_token_in_the_admin_and_sees_the_audit_log(api, django_user_model, ws):
    root = make_user(django_user_model, "root", "admin")
    root.is_staff = True
    root.save()
    developer = api("developer", "dev")
    developer.post("/files/write", {"path": "a.py", "content": "x = 1\n"})
    page = Client()
    page.force_login(root)
    made = page.post("/admin/core/apitoken/add/", {"user": developer.user.pk, "name": "ci"}, follow=True)
    token = next(str(message).rsplit(" ", 1)[1] for message in made.context["messages"] if "shown this once" in
                 str(message))
    assert Client().get("/conversations", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    log = page.get("/admin/core/auditentry/")
    assert log.status_code == 200 and b"file write" in log.content
    assert page.get(f"/admin/core/auditentry/{AuditEntry.objects.get().pk}/change/").status_code == 200


def test_a_logged_in_page_acts_as_its_user_with_its_role(django_user_model, ws):
    reader = make_user(django_user_model, "ada", "reader")
    page = Client(enforce_csrf_checks=True)
    page.force_login(reader)
    page.get("/ui/chat")  # sets the csrftoken cookie
    csrf = {"HTTP_X_CSRFTOKEN": page.cookies["csrftoken"].value}
    assert page.get("/files/tree").status_code == 200
    refused = page.post("/files/write", {"path": "a.py", "content": ""}, content_type="application/json", **csrf)
    assert refused.status_code == 403 and "developer role" in refused.json()["detail"]
    no_csrf = page.post("/chat", {"message": "hi"}, content_type="application/json")
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["detail"]
