"""The improvement queue in multi-user mode (security.users): a queued task belongs to whoever
queued it, and so does the run or change its worker makes; the queue's listing, counts and
task pages show a user only its own tasks (an admin every task)."""

from __future__ import annotations

import json

import httpx
import pytest

from codegen_site.core import users
from improve.models import ImprovementRun, ImprovementTask, ProjectChange, QueueState
from tests.fakes.llm_server import Turn
from tests.polling import wait_for
from tests.test_improve_run import BETTER, ISSUE, ORIGINAL, fenced
from tests.test_users_roles import make_user

pytestmark = pytest.mark.timeout(180)


class Caller:
    """One user's calls to a live server with its personal token."""

    def __init__(self, server, user):
        self.server, self.user = server, user
        _, token = users.issue_token(user, "test")
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path):
        return httpx.get(self.server.url + path, headers=self.headers, timeout=30)

    def post(self, path, body=None):
        return httpx.post(self.server.url + path, json=body, headers=self.headers, timeout=30)

    def first_feed_status(self) -> dict:
        """The counts the live feed (GET /improve/queue/events) opens with for this user."""
        with httpx.stream("GET", self.server.url + "/improve/queue/events", headers=self.headers,
                          timeout=30) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("data:"):
                    return json.loads(line[5:])
        raise AssertionError("the feed ended without a status")


def test_a_developers_queued_improvement_and_its_run_are_its_own(live_asgi, fake_llm, django_user_model, tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "calc.py").write_text(ORIGINAL)
    fake_llm.responder = lambda request: Turn(content=fenced(BETTER))
    server = live_asgi({"CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__HOST": fake_llm.url,
                        "CODEGEN_WORKSPACE_ROOT": str(workspace), "CODEGEN_IMPROVE_QUEUE__HEARTBEAT_SECONDS": "1",
                        "CODEGEN_SECURITY__USERS": "true"})
    owner = Caller(server, make_user(django_user_model, "queuer", "developer"))
    other = Caller(server, make_user(django_user_model, "bystander", "developer"))
    admin = Caller(server, make_user(django_user_model, "boss", "admin"))

    added = owner.post("/improve/queue/add", {"file_path": "calc.py", "issue": ISSUE, "auto_write": False})
    assert added.status_code == 201, added.text
    task_id = added.json()["task_id"]
    assert other.post("/improve/queue/start").status_code == 403  # the queue's control stays an admin's
    assert admin.post("/improve/queue/start").status_code == 200

    wait_for(lambda: owner.get(f"/improve/queue/task/{task_id}").json()["status"] == "completed",
             what="the queued improvement to complete")
    task = owner.get(f"/improve/queue/task/{task_id}").json()
    run_id = task["result"]["run_id"]
    assert task["result"]["success"] is True and task["result"]["proposed_content"] == BETTER
    assert ImprovementTask.objects.get(pk=task_id).owner_id == owner.user.pk
    assert ImprovementRun.objects.get(pk=run_id).owner_id == owner.user.pk

    # Someone else's task is not there for another developer: not its page, not the list, not the counts,
    # and not the run the worker made.
    assert other.get(f"/improve/queue/task/{task_id}").status_code == 404
    theirs = other.get("/improve/queue/status").json()
    assert theirs["tasks"] == [] and theirs["total_tasks"] == 0 and theirs["completed"] == 0
    assert other.post("/improve/apply", {"run_id": run_id}).status_code == 404
    assert other.first_feed_status()["total_tasks"] == 0
    assert (workspace / "calc.py").read_text() == ORIGINAL

    listed = admin.get("/improve/queue/status").json()
    assert [row["task_id"] for row in listed["tasks"]] == [task_id] and listed["completed"] == 1
    assert admin.get(f"/improve/queue/task/{task_id}").status_code == 200
    assert admin.first_feed_status()["completed"] == 1
    mine = owner.get("/improve/queue/status").json()
    assert [row["task_id"] for row in mine["tasks"]] == [task_id] and mine["total_tasks"] == 1

    applied = owner.post("/improve/apply", {"run_id": run_id})
    assert applied.status_code == 200, applied.text
    assert applied.json()["status"] == "applied" and (workspace / "calc.py").read_text() == BETTER
    change = ProjectChange.objects.get()
    assert change.owner_id == owner.user.pk


@pytest.mark.django_db(transaction=True)
def test_the_worker_gives_a_queued_change_to_whoever_queued_it(ws, ollama, settings, django_user_model):
    from improve.tasks import process_task

    settings.USERS = True
    (ws / "calc.py").write_text(ORIGINAL)
    ollama.responder = lambda request: Turn(content="no edits here")
    user = make_user(django_user_model, "changer", "developer")
    task = ImprovementTask.objects.create(owner=user, file_path="calc.py", issue={"message": "rename"},
                                          options={"kind": "change", "instruction": "rename add to plus",
                                                   "paths": ["calc.py"], "max_repairs": 0})
    unowned = ImprovementTask.objects.create(file_path="calc.py", issue={"message": "rename"},
                                             options={"kind": "change", "instruction": "rename add to total",
                                                      "paths": ["calc.py"], "max_repairs": 0})
    QueueState.objects.update_or_create(pk=1, defaults={"accepting": True})

    for queued in (task, unowned):
        process_task(str(queued.pk))
    assert ProjectChange.objects.get(task_id=task.pk).owner_id == user.pk
    assert ProjectChange.objects.get(task_id=unowned.pk).owner_id is None
    assert users.acting.get() is None  # the worker stops acting for the user after its task
