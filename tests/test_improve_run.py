"""POST /improve/run and /improve/apply against the scripted LLM server and the real sandbox."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync

from files_app.models import Backup
from improve.models import ImprovementRun
from tests.fakes.llm_server import Turn
from tests.sse import parse_sse
from tests.test_project_change import git, user_work_intact

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

ORIGINAL = (
    "def add(a, b):\n    return a + b\n\n\n"
    "def mean(values):\n    total = 0\n    for value in values:\n        total = total + value\n"
    "    return total / len(values)\n"
)
BETTER = "def add(a, b):\n    return a + b\n\n\ndef mean(values):\n    return sum(values) / len(values)\n"
# changes add(): the covering test_add turns red
BREAKS_ADD = "def add(a, b):\n    return a - b\n\n\ndef mean(values):\n    return sum(values) / len(values)\n"
SYNTAX_ERROR = "def add(a, b)\n    return a + b\n"
COVERING_TESTS = (
    "from calc import add, mean\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_mean():\n    assert mean([1, 2, 3]) == 2\n"
)
ISSUE = {"message": "mean() sums by hand", "severity": "low", "issue_type": "refactor", "line": 5}


def fenced(code: str) -> str:
    return f"Here is the file:\n```python\n{code}```\n"


@pytest.fixture
def calc_project(ws):
    (ws / "calc.py").write_text(ORIGINAL)
    (ws / "tests").mkdir()
    (ws / "tests" / "test_calc.py").write_text(COVERING_TESTS)
    return ws


def improve(client, stream=False, **body):
    payload = {"file_path": "calc.py", "issue": ISSUE, **body}
    return client.post("/improve/run" + ("?stream=true" if stream else ""), json.dumps(payload),
                       content_type="application/json")


def apply(client, run_id):
    return client.post("/improve/apply", json.dumps({"run_id": run_id}), content_type="application/json")


def read_stream(response) -> str:
    async def collect():
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)().decode()


def test_passes_first_time_and_is_written_with_a_backup(client, calc_project, ollama):
    ollama.script(Turn(content=fenced(BETTER)))
    response = improve(client)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["success"] is True and body["written"] is True and body["error"] is None
    assert body["retries"] == 0 and body["attempts"] == 1
    assert (calc_project / "calc.py").read_text() == BETTER
    backup = Backup.objects.get()
    assert backup.reason == "improve" and body["backup_path"] == backup.stored_path
    assert "the module imports" in body["validation_output"]
    assert "tests/test_calc.py: before 2 passed, 0 failed; after 2 passed, 0 failed" in body["validation_output"]
    assert "-    total = 0" in body["diff"] and "+    return sum(values) / len(values)" in body["diff"]
    prompt = ollama.chat_requests[0]["messages"][-1]["content"]
    assert "mean() sums by hand" in prompt and "total = total + value" in prompt
    run = ImprovementRun.objects.get(pk=body["run_id"])
    assert run.status == "applied" and run.attempts[0]["passed"] is True


def test_fails_validation_then_passes_on_retry_with_the_output_fed_back(client, calc_project, ollama):
    ollama.script(Turn(content=fenced(SYNTAX_ERROR)), Turn(content=fenced(BETTER)))
    body = improve(client).json()
    assert body["success"] is True and body["retries"] == 1 and body["attempts"] == 2
    assert (calc_project / "calc.py").read_text() == BETTER
    retry_prompt = ollama.chat_requests[1]["messages"][-1]["content"]
    assert "failed validation" in retry_prompt and "SyntaxError" in retry_prompt
    run = ImprovementRun.objects.get(pk=body["run_id"])
    assert [a["passed"] for a in run.attempts] == [False, True]
    assert "Import check failed" in run.attempts[0]["validation_output"]


def test_a_change_that_breaks_a_covering_test_is_refused_and_nothing_is_written(client, calc_project, ollama):
    ollama.responder = lambda request: Turn(content=fenced(BREAKS_ADD))
    body = improve(client, max_retries=1).json()
    assert body["success"] is False and body["written"] is False and body["backup_path"] is None
    assert "tests/test_calc.py::test_add" in body["error"]
    assert "broken: tests/test_calc.py::test_add" in body["validation_output"]
    assert "test_mean" not in body["error"]
    assert (calc_project / "calc.py").read_text() == ORIGINAL
    assert not Backup.objects.exists()
    assert len(ollama.chat_requests) == 2
    assert "test_add" in ollama.chat_requests[1]["messages"][-1]["content"]


def test_a_change_that_never_passes_stops_after_max_retries(client, calc_project, ollama):
    ollama.responder = lambda request: Turn(content=fenced(SYNTAX_ERROR))
    body = improve(client, max_retries=2).json()
    assert body["success"] is False and body["retries"] == 2 and body["attempts"] == 3
    assert "after 3 attempt(s)" in body["error"]
    assert len(ollama.chat_requests) == 3
    assert (calc_project / "calc.py").read_text() == ORIGINAL
    assert ImprovementRun.objects.get(pk=body["run_id"]).status == "failed"


def test_no_covering_tests_is_said(client, ws, ollama):
    (ws / "calc.py").write_text(ORIGINAL)
    ollama.script(Turn(content=fenced(BETTER)))
    body = improve(client).json()
    assert body["success"] is True
    assert "No covering tests found for calc.py" in body["validation_output"]


def test_a_test_importing_the_module_covers_it_whatever_its_name(client, ws, ollama):
    (ws / "pkg").mkdir()
    (ws / "pkg" / "calc.py").write_text(ORIGINAL)
    (ws / "checks_test.py").write_text("import pkg.calc as calc\n\n\ndef test_add():\n    assert calc.add(1, 1) == 2\n")
    ollama.responder = lambda request: Turn(content=fenced(BREAKS_ADD))
    body = improve(client, file_path="pkg/calc.py", max_retries=0).json()
    assert body["success"] is False and "checks_test.py::test_add" in body["error"]


def test_proposal_then_apply_then_apply_again_conflicts(client, calc_project, ollama):
    ollama.script(Turn(content=fenced(BETTER)))
    body = improve(client, auto_write=False).json()
    assert body["success"] is True and body["written"] is False and body["status"] == "proposed"
    assert body["proposed_content"] == BETTER and "+    return sum(values)" in body["diff"]
    assert (calc_project / "calc.py").read_text() == ORIGINAL and not Backup.objects.exists()

    applied = apply(client, body["run_id"])
    assert applied.status_code == 200, applied.content
    assert applied.json()["written"] is True and applied.json()["backup_path"]
    assert (calc_project / "calc.py").read_text() == BETTER
    assert Backup.objects.get().reason == "improve"
    again = apply(client, body["run_id"])
    assert again.status_code == 409 and "applied already" in again.json()["detail"]
    # outside git: a write with a backup, said so, and undone in one step like a project change
    result = applied.json()
    assert result["commit"] is None and "not the top level of a git repository" in result["git_reason"]
    undone = client.post(f"/improve/change/{result['change_id']}/undo")
    assert undone.status_code == 200 and undone.json()["state"] == "undone"
    assert (calc_project / "calc.py").read_text() == ORIGINAL
    assert ImprovementRun.objects.get(pk=body["run_id"]).status == "proposed"  # its file is back: apply again


def test_apply_after_the_file_changed_is_a_conflict_and_keeps_the_change(client, calc_project, ollama):
    ollama.script(Turn(content=fenced(BETTER)))
    run_id = improve(client, auto_write=False).json()["run_id"]
    edited = ORIGINAL + "\n\nEDITED = True\n"
    (calc_project / "calc.py").write_text(edited)
    response = apply(client, run_id)
    assert response.status_code == 409 and "changed since" in response.json()["detail"]
    assert (calc_project / "calc.py").read_text() == edited
    assert not Backup.objects.exists()


def test_apply_of_an_unknown_or_failed_run(client, calc_project, ollama):
    assert apply(client, "00000000-0000-0000-0000-000000000000").status_code == 404
    assert apply(client, "not-a-uuid").status_code == 400
    ollama.responder = lambda request: Turn(content=fenced(SYNTAX_ERROR))
    run_id = improve(client, auto_write=False, max_retries=0).json()["run_id"]
    assert apply(client, run_id).status_code == 409


def test_llm_down_is_503_and_nothing_is_written(client, calc_project, llm_unreachable):
    response = improve(client)
    assert response.status_code == 503, response.content
    assert "detail" in response.json()
    assert (calc_project / "calc.py").read_text() == ORIGINAL and not Backup.objects.exists()


def test_bad_paths_and_bodies(client, calc_project, ollama, tmp_path):
    assert improve(client, file_path="../outside.py").status_code == 400
    assert improve(client, file_path=str(tmp_path / "elsewhere.py")).status_code == 400
    missing = improve(client, file_path="nope.py")
    assert missing.status_code == 404 and "detail" in missing.json()
    assert improve(client, issue={"severity": "low"}).status_code == 400
    assert improve(client, max_retries=-1).status_code == 400
    assert improve(client, max_retries=1000).status_code == 400
    assert ollama.chat_requests == []


def test_stream_reports_steps_validation_and_done(client, calc_project, ollama):
    ollama.script(Turn(content=fenced(SYNTAX_ERROR)), Turn(content=fenced(BETTER)))
    response = improve(client, stream=True)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    events = parse_sse(read_stream(response))
    steps = [data["step"] for name, data in events if name == "step"]
    assert steps == ["read", "generate", "validate", "retry", "generate", "validate", "write"]
    validations = [data["passed"] for name, data in events if name == "validation"]
    assert validations == [False, True]
    assert events[-1][0] == "done" and events[-1][1]["success"] is True
    assert (calc_project / "calc.py").read_text() == BETTER


def test_stream_reports_the_tokens_generated_so_far_before_done(client, calc_project, ollama):
    pieces = fenced(BETTER).splitlines(keepends=True)
    ollama.script(Turn(content=pieces, chunk_delay=0.05))  # the server sends one piece at a time
    events = parse_sse(read_stream(improve(client, stream=True, auto_write=False)))
    names = [name for name, _ in events]
    progress = [data for name, data in events if name == "progress"]
    counts = [data["tokens"] for data in progress]
    assert len(counts) >= 2 and counts == sorted(set(counts)), counts  # growing, one event per arrival
    assert counts[-1] == len(pieces) and progress[-1]["chars"] == len(fenced(BETTER))
    assert {(data["step"], data["attempt"]) for data in progress} == {("generate", 1)}
    # between the generate step and the validation, all before done
    first, last = names.index("progress"), len(names) - 1 - names[::-1].index("progress")
    assert names.index("step") < first and names[first - 1] == "step" and events[first - 1][1]["step"] == "generate"
    assert events[last + 1] == ("step", {"step": "validate", "attempt": 1}) and names[-1] == "done"
    assert events[-1][1]["proposed_content"] == BETTER


def test_stream_with_llm_down_ends_with_an_error_event(client, calc_project, llm_unreachable):
    events = parse_sse(read_stream(improve(client, stream=True)))
    assert events[-1][0] == "error" and events[-1][1]["status"] == 503
    assert (calc_project / "calc.py").read_text() == ORIGINAL


def test_covering_tests_run_against_a_workspace_copy_with_sibling_modules_and_packages(client, ws, ollama):
    # the module under test imports a sibling package; the test imports a helper beside it
    (ws / "app").mkdir()
    (ws / "app" / "__init__.py").write_text("")
    (ws / "app" / "units.py").write_text("FACTOR = 2\n")
    (ws / "app" / "scale.py").write_text(
        "from .units import FACTOR\n\n\ndef double(x):\n    return x * FACTOR\n\n\ndef half(x):\n    return x / FACTOR\n")
    (ws / "tests").mkdir()
    (ws / "tests" / "helpers.py").write_text("def twice(x):\n    return 2 * x\n")
    (ws / "tests" / "test_scale.py").write_text(
        "from helpers import twice\n\nfrom app.scale import double, half\n\n\n"
        "def test_double():\n    assert double(3) == twice(3)\n\n\ndef test_half():\n    assert half(4) == 2\n")
    renamed = "from .units import FACTOR\n\n\ndef double(value):\n    return value * FACTOR\n\n\ndef half(value):\n    return value / FACTOR\n"
    breaks_half = renamed.replace("value / FACTOR", "value // FACTOR + 1")
    ollama.script(Turn(content=fenced(breaks_half)), Turn(content=fenced(renamed)))
    body = improve(client, file_path="app/scale.py").json()
    assert body["success"] is True and body["retries"] == 1, body
    run = ImprovementRun.objects.get(pk=body["run_id"])
    first = run.attempts[0]
    assert first["broken_tests"] == ["tests/test_scale.py::test_half"]
    assert "tests/test_scale.py: before 2 passed, 0 failed; after 2 passed, 0 failed" in body["validation_output"]
    assert (ws / "app" / "scale.py").read_text() == renamed


def test_a_module_that_imports_a_missing_workspace_module_fails_the_import_check(client, ws, ollama):
    (ws / "lib.py").write_text("VALUE = 1\n")
    (ws / "calc.py").write_text("from lib import VALUE\n\n\ndef value():\n    return VALUE\n")
    ollama.script(Turn(content=fenced("from lib import MISSING\n\n\ndef value():\n    return MISSING\n")),
                  Turn(content=fenced("from lib import VALUE\n\n\ndef value():\n    return VALUE + 0\n")))
    body = improve(client).json()
    assert body["success"] is True and body["retries"] == 1
    first = ImprovementRun.objects.get(pk=body["run_id"]).attempts[0]
    assert "Import check failed" in first["validation_output"] and "MISSING" in first["validation_output"]


def test_a_file_whose_name_is_no_module_name_is_imported_by_path(client, ws, ollama):
    (ws / "my-tool.py").write_text(ORIGINAL)
    ollama.script(Turn(content=fenced(SYNTAX_ERROR)), Turn(content=fenced(BETTER)))
    body = improve(client, file_path="my-tool.py").json()
    assert body["success"] is True and body["retries"] == 1
    assert "SyntaxError" in ImprovementRun.objects.get(pk=body["run_id"]).attempts[0]["validation_output"]


def test_a_broken_case_is_named_by_its_whole_test_id_from_the_sandboxs_outcomes(client, ws, ollama):
    (ws / "calc.py").write_text(ORIGINAL)
    (ws / "test_calc.py").write_text(
        "import pytest\n\nfrom calc import add\n\n\n"
        "@pytest.mark.parametrize('a, b, total', [pytest.param(0, 0, 0, id='zero and zero'),\n"
        "                                         pytest.param(2, 3, 5, id='two and three')])\n"
        "def test_add(a, b, total):\n    assert add(a, b) == total\n")
    ollama.responder = lambda request: Turn(content=fenced(BREAKS_ADD))
    body = improve(client, max_retries=0).json()
    assert body["success"] is False
    run = ImprovementRun.objects.get(pk=body["run_id"])
    assert run.attempts[0]["broken_tests"] == ["test_calc.py::test_add[two and three]"]
    assert "test_calc.py: before 2 passed, 0 failed; after 1 passed, 1 failed" in body["validation_output"]


@pytest.fixture
def calc_repo(calc_project):
    """calc_project committed on main, with the user's uncommitted work in another file and an untracked one."""
    (calc_project / "notes.py").write_text("NOTE = 1\n")
    git(calc_project, "init", "-q", "-b", "main")
    git(calc_project, "add", "-A")
    git(calc_project, "commit", "-q", "-m", "initial")
    (calc_project / "notes.py").write_text("NOTE = 2  # work in progress\n")
    (calc_project / "draft.py").write_text("DRAFT = True\n")
    return calc_project


def test_in_git_an_applied_proposal_is_a_commit_on_the_branch_undone_in_one_step(client, admin_client, calc_repo,
                                                                                 ollama):
    head = git(calc_repo, "rev-parse", "HEAD")
    ollama.script(Turn(content=fenced(BETTER)))
    run_id = improve(client, auto_write=False).json()["run_id"]
    assert git(calc_repo, "rev-parse", "HEAD") == head
    applied = apply(client, run_id)
    assert applied.status_code == 200, applied.content
    body = applied.json()
    assert body["written"] is True and body["git_reason"] is None and body["backup_path"]
    assert (calc_repo / "calc.py").read_text() == BETTER
    assert git(calc_repo, "rev-parse", "HEAD") == body["commit"] != head
    assert git(calc_repo, "rev-parse", "HEAD^") == head and git(calc_repo, "symbolic-ref", "--short", "HEAD") == "main"
    assert git(calc_repo, "log", "-1", "--format=%s").startswith("codegen: Improve calc.py (line 5): mean()")
    assert git(calc_repo, "status", "--porcelain", "--", "calc.py") == ""  # committed, index and file agree
    user_work_intact(calc_repo)
    change = client.get(f"/improve/change/{body['change_id']}").json()
    assert change["state"] == "applied" and change["git"]["applied_commit"] == body["commit"]
    assert change["evidence"]["improvement_run"] == run_id
    run_page = admin_client.get(f"/admin/improve/improvementrun/{run_id}/change/")
    assert run_page.status_code == 200 and body["change_id"] in run_page.content.decode()

    undone = client.post(f"/improve/change/{body['change_id']}/undo")
    assert undone.status_code == 200, undone.content
    assert (calc_repo / "calc.py").read_text() == ORIGINAL and git(calc_repo, "rev-parse", "HEAD") == head
    assert git(calc_repo, "status", "--porcelain", "--", "calc.py") == ""
    user_work_intact(calc_repo)
    assert ImprovementRun.objects.get(pk=run_id).status == "proposed"


def test_in_git_undo_is_409_when_a_later_commit_changed_the_file(client, calc_repo, ollama):
    ollama.script(Turn(content=fenced(BETTER)))
    body = apply(client, improve(client, auto_write=False).json()["run_id"]).json()
    later = BETTER + "\n\nLATER = True\n"
    (calc_repo / "calc.py").write_text(later)
    git(calc_repo, "commit", "-q", "-m", "later work", "--", "calc.py")
    undone = client.post(f"/improve/change/{body['change_id']}/undo")
    assert undone.status_code == 409 and "detail" in undone.json()
    assert (calc_repo / "calc.py").read_text() == later
    assert git(calc_repo, "log", "-1", "--format=%s") == "later work"


def test_in_git_a_file_with_uncommitted_work_is_written_with_a_backup_not_committed(client, calc_repo, ollama):
    head = git(calc_repo, "rev-parse", "HEAD")
    dirty = ORIGINAL + "\n\nMINE = 1  # the user's uncommitted line\n"
    (calc_repo / "calc.py").write_text(dirty)
    ollama.script(Turn(content=fenced(BETTER + "\n\nMINE = 1  # the user's uncommitted line\n")))
    run_id = improve(client, auto_write=False).json()["run_id"]
    body = apply(client, run_id).json()
    assert body["written"] is True and body["commit"] is None
    assert "uncommitted changes" in body["git_reason"] and "backup" in body["git_reason"]
    assert git(calc_repo, "rev-parse", "HEAD") == head  # the user's work was not committed for them
    assert Backup.objects.get().reason == "improve"
    undone = client.post(f"/improve/change/{body['change_id']}/undo")
    assert undone.status_code == 200, undone.content
    assert (calc_repo / "calc.py").read_text() == dirty and git(calc_repo, "rev-parse", "HEAD") == head
    user_work_intact(calc_repo)
