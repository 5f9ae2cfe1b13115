"""POST /improve/change and its apply/undo, against the scripted LLM server, the real sandbox and real
git repositories in tmp dirs."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from asgiref.sync import async_to_sync

from files_app.models import Backup
from improve.models import ImprovementTask, ProjectChange, QueueState
from tests.fakes.llm_server import Turn
from tests.sse import parse_sse

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(180)]

CALC = "def add(a, b):\n    return a + b\n"
TESTS = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
CALC_SUB = CALC + "\n\ndef sub(a, b):\n    return a - b\n"
TESTS_SUB = TESTS + "\n\ndef test_sub():\n    from calc import sub\n    assert sub(5, 3) == 2\n"
BROKEN = "def add(a, b):\n    return a - b\n"
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "User", "GIT_AUTHOR_EMAIL": "u@example.com",
           "GIT_COMMITTER_NAME": "User", "GIT_COMMITTER_EMAIL": "u@example.com", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null"}


def git(ws, *args) -> str:
    return subprocess.run(["git", "-C", str(ws), *args], capture_output=True, text=True, check=True,
                          env=GIT_ENV).stdout.rstrip()


def whole(path: str, text: str) -> str:
    return f"FILE: {path}\n```python\n{text}```\n"


def block(path: str, search: str, replace: str) -> str:
    return f"EDIT: {path}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


@pytest.fixture
def project(ws):
    (ws / "calc.py").write_text(CALC)
    (ws / "tests").mkdir()
    (ws / "tests" / "test_calc.py").write_text(TESTS)
    (ws / "notes.py").write_text("NOTE = 1\n")
    return ws


@pytest.fixture
def repo(project):
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "initial")
    # the user's uncommitted work: a modified tracked file, a staged one, an untracked one
    (project / "notes.py").write_text("NOTE = 2  # work in progress\n")
    (project / "draft.py").write_text("DRAFT = True\n")
    return project


def user_work_intact(ws) -> None:
    assert (ws / "notes.py").read_text() == "NOTE = 2  # work in progress\n"
    assert (ws / "draft.py").read_text() == "DRAFT = True\n"
    status = git(ws, "status", "--porcelain", "--", "notes.py", "draft.py")
    assert " M notes.py" in status and "?? draft.py" in status


def post(client, url, body=None):
    return client.post(url, json.dumps(body or {}), content_type="application/json")


def change(client, instruction="Add sub() to calc.py, with its test", **body):
    return post(client, "/improve/change", {"instruction": instruction, **body})


def branches(ws) -> list[str]:
    return git(ws, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split()


def test_a_two_file_change_is_proven_committed_on_its_branch_then_applied_and_undone(client, repo, ollama):
    head = git(repo, "rev-parse", "HEAD")
    ollama.script(Turn(content=whole("calc.py", CALC_SUB) + "\n" + whole("tests/test_calc.py", TESTS_SUB)))
    response = change(client, paths=["calc.py"])
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "proposed" and body["success"] is True, body["error"]
    assert {item["path"] for item in body["files"]} == {"calc.py", "tests/test_calc.py"}
    calc = next(item for item in body["files"] if item["path"] == "calc.py")
    assert calc["status"] == "modified" and calc["hunks"] and "+def sub(a, b):" in calc["diff"]
    tests = body["evidence"]["tests"]
    run = next(item for item in tests if item["file"] == "tests/test_calc.py")
    assert {test["outcome"] for test in run["before"]} == {"passed"} and len(run["before"]) == 1
    assert sorted(test["outcome"] for test in run["after"]) == ["passed", "passed"] and run["broken"] == []
    assert set(body["evidence"]["timings"]) >= {"context", "model", "apply", "validation"}
    # proposed: on its own branch, nothing in the user's files or branch
    branch = body["git"]["branch"]
    assert branch == f"codegen/{body['change_id']}" and branch in branches(repo)
    assert git(repo, "show", f"{branch}:calc.py") + "\n" == CALC_SUB
    assert git(repo, "rev-parse", "HEAD") == head and (repo / "calc.py").read_text() == CALC
    user_work_intact(repo)
    prompt = ollama.chat_requests[0]["messages"][-1]["content"]
    assert "Add sub()" in prompt and "def add(a, b)" in prompt and "tests/test_calc.py" in prompt

    applied = post(client, f"/improve/change/{body['change_id']}/apply")
    assert applied.status_code == 200, applied.content
    assert applied.json()["state"] == "applied"
    assert (repo / "calc.py").read_text() == CALC_SUB and (repo / "tests/test_calc.py").read_text() == TESTS_SUB
    assert git(repo, "rev-parse", "HEAD") == body["git"]["commit"]  # a fast-forward
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"
    assert git(repo, "status", "--porcelain", "--", "calc.py", "tests") == ""
    user_work_intact(repo)
    assert post(client, f"/improve/change/{body['change_id']}/apply").status_code == 409

    undone = post(client, f"/improve/change/{body['change_id']}/undo")
    assert undone.status_code == 200, undone.content
    assert undone.json()["state"] == "undone"
    assert (repo / "calc.py").read_text() == CALC and (repo / "tests/test_calc.py").read_text() == TESTS
    assert git(repo, "rev-parse", "HEAD") == head  # the history as it was
    assert git(repo, "status", "--porcelain", "--", "calc.py", "tests") == ""
    user_work_intact(repo)


def test_a_change_that_breaks_a_passing_test_is_refused_with_nothing_written_and_no_branch(client, repo, ollama):
    ollama.script(Turn(content=whole("calc.py", BROKEN)))
    response = change(client, "Make add subtract", max_repairs=0)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "refused" and body["success"] is False
    assert "tests/test_calc.py::test_add" in body["error"]
    attempt = body["evidence"]["attempts"][0]
    assert attempt["passed"] is False and attempt["tests"][0]["after"][0]["outcome"] == "failed"
    assert branches(repo) == ["main"] and (repo / "calc.py").read_text() == CALC
    user_work_intact(repo)


def test_a_search_block_that_does_not_match_goes_back_as_a_repair_then_applies(client, repo, ollama):
    wrong = block("calc.py", "def add(x, y):\n    return x + y + 0\n", "def add(a, b):\n    return b + a\n")
    right = block("calc.py", "def add(a, b):\n    return a + b\n", "def add(a, b):\n    return b + a\n")
    ollama.script(Turn(content=wrong), Turn(content=right))
    response = post(client, "/improve/change?stream=true", {"instruction": "Swap the operands in add"})
    assert response.status_code == 200
    events = parse_sse(read_stream(response))
    names = [name for name, _ in events]
    assert names[0] == "step" and "plan" in names and names[-1] == "done", names
    edits = [data for name, data in events if name == "edit"]
    assert edits[0]["applied"] is False and "not found" in edits[0]["error"] and "block 1" in edits[0]["error"]
    assert edits[1] == {"attempt": 2, "applied": True, "path": "calc.py", "format": "blocks", "status": "modified"}
    done = events[-1][1]
    assert done["state"] == "proposed", done["error"]
    repair_prompt = ollama.chat_requests[1]["messages"][-1]["content"]
    assert "could not be accepted" in repair_prompt and "SEARCH lines were not found" in repair_prompt
    assert (repo / "calc.py").read_text() == CALC


def test_a_whitespace_sloppy_block_applies_tolerantly():
    from improve.services.change_edits import EditError, apply_block

    text = "class A:\n    def f(self):\n        return 1\n"
    assert apply_block(text, "def f(self):  \n    return 1\n", "def f(self):\n    return 2\n",
                       near_ratio=0.9, where="x") == "class A:\n    def f(self):\n        return 2\n"
    assert apply_block(text, "    def f(self):\n        retrun 1\n", "    def f(self):\n        return 3\n",
                       near_ratio=0.9, where="x").endswith("return 3\n")
    with pytest.raises(EditError, match="not found"):
        apply_block(text, "def g():\n    pass\n", "", near_ratio=0.9, where="x")


def test_a_file_edited_by_the_user_after_the_proposal_is_409_and_nothing_is_written(client, repo, ollama):
    ollama.script(Turn(content=whole("calc.py", CALC_SUB) + whole("tests/test_calc.py", TESTS_SUB)))
    body = change(client).json()
    assert body["state"] == "proposed", body["error"]
    (repo / "tests/test_calc.py").write_text(TESTS + "# mine\n")
    response = post(client, f"/improve/change/{body['change_id']}/apply")
    assert response.status_code == 409 and "tests/test_calc.py changed" in response.json()["detail"]
    assert (repo / "calc.py").read_text() == CALC and (repo / "tests/test_calc.py").read_text() == TESTS + "# mine\n"
    assert ProjectChange.objects.get(pk=body["change_id"]).state == "proposed"
    assert Backup.objects.count() == 0


def test_undo_is_409_when_a_later_commit_changes_the_files(client, repo, ollama):
    ollama.script(Turn(content=whole("calc.py", CALC_SUB) + whole("tests/test_calc.py", TESTS_SUB)))
    body = change(client).json()
    assert post(client, f"/improve/change/{body['change_id']}/apply").status_code == 200
    (repo / "calc.py").write_text(CALC_SUB + "\n\ndef mul(a, b):\n    return a * b\n")
    git(repo, "commit", "-q", "-m", "mul", "--", "calc.py")
    response = post(client, f"/improve/change/{body['change_id']}/undo")
    assert response.status_code == 409
    assert "mul" in (repo / "calc.py").read_text()


def test_a_workspace_without_git_gets_backups_and_a_one_step_undo(client, project, ollama):
    ollama.script(Turn(content=whole("calc.py", CALC_SUB) + whole("tests/test_calc.py", TESTS_SUB)
                       + whole("extra.py", "EXTRA = 1\n")))
    body = change(client).json()
    assert body["state"] == "proposed" and body["git"] is None, body["error"]
    assert not (project / "extra.py").exists()
    applied = post(client, f"/improve/change/{body['change_id']}/apply")
    assert applied.status_code == 200, applied.content
    assert (project / "calc.py").read_text() == CALC_SUB and (project / "extra.py").read_text() == "EXTRA = 1\n"
    assert Backup.objects.filter(reason="improve").count() == 2
    undone = post(client, f"/improve/change/{body['change_id']}/undo")
    assert undone.status_code == 200, undone.content
    assert (project / "calc.py").read_text() == CALC and (project / "tests/test_calc.py").read_text() == TESTS
    assert not (project / "extra.py").exists() and (project / "notes.py").read_text() == "NOTE = 1\n"


@pytest.mark.django_db(transaction=True)
def test_the_queue_runs_a_change_task_exactly_once(client, repo, ollama):
    from improve.tasks import process_task

    QueueState.objects.update_or_create(pk=1, defaults={"accepting": False})
    ollama.script(Turn(content=whole("calc.py", CALC_SUB) + whole("tests/test_calc.py", TESTS_SUB)))
    response = post(client, "/improve/queue/change", {"instruction": "Add sub()", "paths": ["calc.py"]})
    assert response.status_code == 201, response.content
    task_id = response.json()["task_id"]
    QueueState.objects.update_or_create(pk=1, defaults={"accepting": True})
    assert process_task(task_id) == "completed"
    assert "not pending" in process_task(task_id)
    task = ImprovementTask.objects.get(pk=task_id)
    assert task.status == "completed" and task.result["state"] == "proposed"
    assert ProjectChange.objects.count() == 1 and len(ollama.chat_requests) == 1
    assert len([name for name in branches(repo) if name.startswith("codegen/")]) == 1
    user_work_intact(repo)


def read_stream(response) -> str:
    async def collect():
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)().decode()


def test_improve_change_settings_are_patched_through_config(client, ws):
    from improve.config import change_settings

    response = client.patch("/config", json.dumps({"improve_change": {"max_repairs": 1, "near_match_ratio": 0.8}}),
                            content_type="application/json")
    assert response.status_code == 200, response.content
    assert client.get("/config").json()["improve_change"]["max_repairs"] == 1
    assert change_settings().max_repairs == 1 and change_settings().near_match_ratio == 0.8
    refused = client.patch("/config", json.dumps({"improve_change": {"max_repairs_limit": 50}}),
                           content_type="application/json")
    assert refused.status_code == 400


def test_apply_is_409_when_a_changed_file_holds_uncommitted_work_and_the_work_survives(client, repo, ollama):
    (repo / "calc.py").write_text(CALC + "# the user's uncommitted line\n")
    dirty = (repo / "calc.py").read_text()
    ollama.script(Turn(content=block("calc.py", "def add(a, b):\n    return a + b\n",
                                     "def add(a, b):\n    return b + a\n")))
    body = change(client, "Swap the operands in add").json()
    assert body["state"] == "proposed", body["error"]
    assert next(item for item in body["files"] if item["path"] == "calc.py")["uncommitted"] is True
    response = post(client, f"/improve/change/{body['change_id']}/apply")
    assert response.status_code == 409 and "uncommitted changes" in response.json()["detail"]
    assert (repo / "calc.py").read_text() == dirty and Backup.objects.count() == 0
    assert git(repo, "rev-parse", "HEAD") == body["git"]["base_commit"]
    user_work_intact(repo)


def test_applying_a_subset_commits_only_those_files_on_the_users_branch(client, repo, ollama):
    ollama.script(Turn(content=whole("calc.py", CALC_SUB) + whole("tests/test_calc.py", TESTS_SUB)))
    body = change(client).json()
    response = post(client, f"/improve/change/{body['change_id']}/apply", {"files": ["calc.py"]})
    assert response.status_code == 200, response.content
    applied = response.json()
    assert applied["applied_files"] == ["calc.py"] and applied["git"]["applied_commit"] != body["git"]["commit"]
    assert (repo / "calc.py").read_text() == CALC_SUB and (repo / "tests/test_calc.py").read_text() == TESTS
    assert git(repo, "diff-tree", "--no-commit-id", "--name-only", "-r", "HEAD") == "calc.py"
    assert git(repo, "rev-parse", "HEAD^") == body["git"]["base_commit"]
    assert post(client, f"/improve/change/{body['change_id']}/apply", {"files": ["nope.py"]}).status_code == 409
    user_work_intact(repo)


def test_an_edit_to_a_path_off_limits_goes_back_to_the_model(client, repo, ollama):
    ollama.script(Turn(content=whole(".git/config", "[core]\n")),
                  Turn(content=whole("calc.py", CALC_SUB) + whole("tests/test_calc.py", TESTS_SUB)))
    body = change(client, max_repairs=1).json()
    assert body["state"] == "proposed", body["error"]
    first = body["evidence"]["attempts"][0]
    assert first["applied"] is False and ".git/config" in first["error"]
    assert "[core]\n" != (repo / ".git" / "config").read_text()


def test_the_repositorys_own_config_and_hooks_run_nothing(client, repo, ollama, tmp_path):
    marker = tmp_path / "ran"
    touch = f"sh -c 'echo $0 >> {marker}'"
    for key, value in (("core.fsmonitor", touch), ("core.pager", touch), ("diff.external", touch),
                       ("filter.evil.clean", touch), ("filter.evil.smudge", touch),
                       ("filter.evil.process", touch), ("commit.gpgSign", "true"), ("gpg.program", touch)):
        git(repo, "config", key, value)
    (repo / ".gitattributes").write_text("* filter=evil diff=evil\n")
    hooks = repo / ".git" / "hooks"
    for hook in ("pre-commit", "post-commit", "reference-transaction", "post-index-change", "post-checkout"):
        (hooks / hook).write_text(f"#!/bin/sh\necho {hook} >> {marker}\n")
        (hooks / hook).chmod(0o755)
    ollama.script(Turn(content=whole("calc.py", CALC_SUB) + whole("tests/test_calc.py", TESTS_SUB)))
    body = change(client, auto_apply=True).json()
    assert body["state"] == "applied", body["error"]
    assert (repo / "calc.py").read_text() == CALC_SUB
    assert post(client, f"/improve/change/{body['change_id']}/undo").status_code == 200
    assert (repo / "calc.py").read_text() == CALC
    assert not marker.exists(), marker.read_text()


def test_a_change_is_read_back_and_listed_in_the_admin(client, admin_client, project, ollama):
    ollama.script(Turn(content=whole("calc.py", CALC_SUB) + whole("tests/test_calc.py", TESTS_SUB)))
    body = change(client).json()
    detail = client.get(f"/improve/change/{body['change_id']}")
    assert detail.status_code == 200 and detail.json()["files"] == body["files"]
    assert client.get("/improve/change/00000000-0000-0000-0000-000000000000").status_code == 404
    assert post(client, "/improve/change", {"instruction": "  "}).status_code == 400
    assert post(client, "/improve/change", {"instruction": "x", "paths": ["../outside.py"]}).status_code == 400
    listing = admin_client.get("/admin/improve/projectchange/")
    assert listing.status_code == 200 and "Add sub()" in listing.content.decode()
    assert admin_client.get(f"/admin/improve/projectchange/{body['change_id']}/change/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_retried_change_task_completes_from_the_change_its_dead_worker_made(client, repo, ollama):
    from improve.tasks import process_task

    QueueState.objects.update_or_create(pk=1, defaults={"accepting": False})
    ollama.script(Turn(content=whole("calc.py", CALC_SUB) + whole("tests/test_calc.py", TESTS_SUB)))
    task_id = post(client, "/improve/queue/change", {"instruction": "Add sub()", "auto_apply": True}).json()["task_id"]
    QueueState.objects.update_or_create(pk=1, defaults={"accepting": True})
    assert process_task(task_id) == "completed"
    made = ProjectChange.objects.get()
    assert made.state == "applied" and str(made.task_id) == task_id
    # the worker died before it stored the result: the lease sweeper put the task back
    ImprovementTask.objects.filter(pk=task_id).update(status="pending", result=None)
    assert process_task(task_id).startswith("completed (the change was made")
    assert ProjectChange.objects.count() == 1 and len(ollama.chat_requests) == 1
    assert ImprovementTask.objects.get(pk=task_id).result["change_id"] == str(made.pk)


@pytest.mark.django_db(transaction=True)
def test_a_change_left_running_by_a_dead_worker_is_failed_and_made_again(client, repo, ollama):
    from improve.tasks import process_task

    QueueState.objects.update_or_create(pk=1, defaults={"accepting": False})
    task_id = post(client, "/improve/queue/change", {"instruction": "Add sub()"}).json()["task_id"]
    left = ProjectChange.objects.create(instruction="Add sub()", task_id=task_id, git=True)
    git(repo, "branch", f"codegen/{left.pk}")
    QueueState.objects.update_or_create(pk=1, defaults={"accepting": True})
    ollama.script(Turn(content=whole("calc.py", CALC_SUB) + whole("tests/test_calc.py", TESTS_SUB)))
    assert process_task(task_id) == "completed"
    left.refresh_from_db()
    assert left.state == "failed" and f"codegen/{left.pk}" not in branches(repo)
    assert ProjectChange.objects.filter(task_id=task_id, state="proposed").count() == 1


def test_undo_after_later_unrelated_commits_is_a_revert_commit(client, repo, ollama):
    ollama.script(Turn(content=whole("calc.py", CALC_SUB) + whole("tests/test_calc.py", TESTS_SUB)))
    body = change(client).json()
    assert post(client, f"/improve/change/{body['change_id']}/apply").status_code == 200
    git(repo, "commit", "-q", "-m", "my notes", "--", "notes.py")
    later = git(repo, "rev-parse", "HEAD")
    undone = post(client, f"/improve/change/{body['change_id']}/undo")
    assert undone.status_code == 200, undone.content
    revert = undone.json()["git"]["undo_commit"]
    assert git(repo, "rev-parse", "HEAD") == revert and git(repo, "rev-parse", "HEAD^") == later
    assert git(repo, "log", "-1", "--format=%s").startswith("Revert")
    assert (repo / "calc.py").read_text() == CALC and (repo / "tests/test_calc.py").read_text() == TESTS
    assert git(repo, "show", "HEAD:calc.py") + "\n" == CALC and (repo / "notes.py").read_text().startswith("NOTE = 2")
    assert git(repo, "status", "--porcelain", "--", "calc.py", "tests", "notes.py") == ""


def test_the_code_searchs_match_for_the_instruction_is_in_the_context(project, ollama, set_config):
    """A file the instruction names nothing of, found by the code search, is read as context."""
    from improve.services.change_context import gather
    from rag.services import index_path

    (project / "shipping.py").write_text(
        'def compute_fee(weight_kg):\n    """Price of sending a parcel: a base fee plus a rate per kilogram."""\n'
        "    return 4.5 + 0.8 * weight_kg\n")
    set_config({"embeddings": {"provider": "ollama", "model": "nomic-embed-text"},
                "rag": {"collection": "change-context", "chroma_url": ""}})
    index_path(".")
    context = gather("Make sending a heavy parcel cheaper per kilogram", [], budget=100_000, max_files=100)
    assert context.reasons.get("shipping.py") == "the code search's match for the instruction"
    assert "def compute_fee" in context.files["shipping.py"]


LONG = "".join(f"V{n} = {n}\n" for n in range(1, 21))
LONG_BOTH = LONG.replace("V2 = 2\n", "V2 = 200\n").replace("V19 = 19\n", "V19 = 1900\n")


@pytest.mark.parametrize("use_git", [True, False], ids=["git", "no-git"])
def test_some_hunks_of_a_file_are_applied_and_undone_and_changes_are_listed_newest_first(client, project, ollama,
                                                                                          use_git):
    (project / "values.py").write_text(LONG)
    if use_git:
        git(project, "init", "-q", "-b", "main")
        git(project, "add", "-A")
        git(project, "commit", "-q", "-m", "initial")
    ollama.script(Turn(content=whole("values.py", LONG_BOTH) + whole("calc.py", CALC_SUB)))
    body = change(client, "Make V2 and V19 bigger; add sub()").json()
    assert body["state"] == "proposed", body["error"]
    values = next(item for item in body["files"] if item["path"] == "values.py")
    assert len(values["hunks"]) == 2
    url = f"/improve/change/{body['change_id']}/apply"
    assert post(client, url, {"hunks": {"values.py": [2]}}).status_code == 400
    assert post(client, url, {"files": ["calc.py"], "hunks": {"values.py": [0]}}).status_code == 400
    assert post(client, url, {"hunks": {"values.py": []}}).status_code == 400
    response = post(client, url, {"hunks": {"values.py": [1]}})
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "applied"
    files = {item["path"]: item for item in response.json()["files"]}
    assert files["values.py"]["applied_hunks"] == [1] and "applied_hunks" not in files["calc.py"]
    assert (project / "values.py").read_text() == LONG.replace("V19 = 19\n", "V19 = 1900\n")
    assert (project / "calc.py").read_text() == CALC_SUB
    if use_git:
        assert git(project, "show", "HEAD:values.py") + "\n" == LONG.replace("V19 = 19\n", "V19 = 1900\n")
        assert git(project, "status", "--porcelain", "--", "values.py", "calc.py") == ""
    # the change as proposed is unchanged: both hunks still show
    assert len(next(item for item in client.get(f"/improve/change/{body['change_id']}").json()["files"]
                    if item["path"] == "values.py")["hunks"]) == 2
    undone = post(client, f"/improve/change/{body['change_id']}/undo")
    assert undone.status_code == 200, undone.content
    assert (project / "values.py").read_text() == LONG and (project / "calc.py").read_text() == CALC

    ollama.script(Turn(content=whole("calc.py", CALC_SUB)))
    second = change(client).json()
    listing = client.get("/improve/changes")
    assert listing.status_code == 200
    rows = listing.json()
    assert [row["change_id"] for row in rows[:2]] == [second["change_id"], body["change_id"]]
    assert rows[1]["state"] == "undone" and set(rows[1]["files"]) == {"values.py", "calc.py"}
    assert "diff" not in rows[0] and "evidence" not in rows[0]
    assert [row["change_id"] for row in client.get("/improve/changes?limit=1&offset=1").json()] == [body["change_id"]]
    assert client.get("/improve/changes?limit=0").status_code == 400


CALC_EDITED = CALC_SUB.replace("return a - b", "return a - b  # edited by hand")


@pytest.mark.parametrize("use_git", [True, False], ids=["git", "no-git"])
def test_a_file_edited_before_applying_is_written_as_edited_and_marked_so(client, project, ollama, use_git):
    if use_git:
        git(project, "init", "-q", "-b", "main")
        git(project, "add", "-A")
        git(project, "commit", "-q", "-m", "initial")
    ollama.script(Turn(content=whole("calc.py", CALC_SUB) + whole("tests/test_calc.py", TESTS_SUB)))
    body = change(client).json()
    assert body["state"] == "proposed", body["error"]
    assert next(item for item in body["files"] if item["path"] == "calc.py")["proposed"] == CALC_SUB
    url = f"/improve/change/{body['change_id']}/apply"
    # refused before anything is written: a file not of the change, one not being applied, both ways at once,
    # Python that does not parse
    assert post(client, url, {"edits": {"notes.py": "X = 1\n"}}).status_code == 400
    assert post(client, url, {"files": ["tests/test_calc.py"], "edits": {"calc.py": CALC_EDITED}}).status_code == 400
    assert post(client, url, {"edits": {"calc.py": CALC_EDITED}, "hunks": {"calc.py": [0]}}).status_code == 400
    broken = post(client, url, {"edits": {"calc.py": "def sub(a, b)\n    return a - b\n"}})
    assert broken.status_code == 400 and "does not parse: line 1" in broken.json()["detail"]
    assert post(client, url, {"edits": {"calc.py": 5}}).status_code == 400
    assert (project / "calc.py").read_text() == CALC and not Backup.objects.exists()

    applied = post(client, url, {"edits": {"calc.py": CALC_EDITED}})
    assert applied.status_code == 200, applied.content
    result = applied.json()
    files = {item["path"]: item for item in result["files"]}
    assert files["calc.py"]["edited"] is True and "edited" not in files["tests/test_calc.py"]
    assert (project / "calc.py").read_text() == CALC_EDITED and (project / "tests/test_calc.py").read_text() == TESTS_SUB
    [edited] = result["evidence"]["edited_by_user"]
    assert edited["path"] == "calc.py" and "+    return a - b  # edited by hand" in edited["diff_from_proposal"]
    if use_git:
        assert git(project, "show", "HEAD:calc.py") + "\n" == CALC_EDITED
        assert "Edited by the user before applying" in git(project, "log", "-1", "--format=%B")
        assert git(project, "status", "--porcelain", "--", "calc.py", "tests") == ""
    undone = post(client, f"/improve/change/{body['change_id']}/undo")
    assert undone.status_code == 200, undone.content
    assert (project / "calc.py").read_text() == CALC and (project / "tests/test_calc.py").read_text() == TESTS


def test_the_context_is_chosen_within_the_models_token_window_and_says_what_it_left_out(client, project, ollama,
                                                                                       set_config):
    from codegen_site.llm.budget import ESTIMATE

    ollama.context_length = 2048
    set_config({"llm": {"max_tokens": 256}})
    helpers = "from calc import add\n\n\n" + "".join(f"def helper_{n}(value):\n    return add(value, {n})\n\n\n"
                                                     for n in range(200))
    (project / "helpers.py").write_text(helpers)  # imports calc: a candidate, far over the window
    ollama.script(Turn(content=whole("calc.py", CALC_SUB)))
    body = change(client, "Add sub() to calc.py", paths=["calc.py"], max_repairs=0).json()
    assert body["state"] == "proposed", body["error"]
    evidence = body["evidence"]
    budget = evidence["budget"]
    assert budget["window"] == 2048 and budget["answer_tokens"] == 256 and budget["exact"] is False
    assert 0 < budget["files_tokens"] <= 2048 - 256 - budget["instruction_tokens"]
    shown = {item["path"]: item for item in evidence["context"]}
    assert "calc.py" in shown and "tests/test_calc.py" in shown
    assert sum(item["tokens"] for item in shown.values()) <= budget["files_tokens"]
    left = {item["path"]: item for item in evidence["left_out_files"]}
    assert left["helpers.py"]["tokens"] > budget["files_tokens"] and left["helpers.py"]["reason"] == "imports calc.py"
    assert evidence["left_out"] == list(left)
    sent = ollama.chat_requests[0]["messages"]
    assert "Not shown (over the budget): helpers.py" in sent[-1]["content"] and "def helper_7" not in sent[-1]["content"]
    assert ESTIMATE.prompt(sent) + 256 <= 2048  # the whole prompt and the answer fit the window
