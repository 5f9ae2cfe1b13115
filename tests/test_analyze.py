"""POST /improve/analyze and /improve/reports on a small planted tree: what each check finds,
hand-counted totals, the per-file cache, worker processes, the LLM review, refused paths."""

from __future__ import annotations

import json
import os

import pytest
from django.test import override_settings
from rest_framework.settings import api_settings

from tests.fakes.llm_server import Turn

pytestmark = pytest.mark.django_db


def _branches(name: str, variable: str, count: int) -> str:
    # 1 + count decisions: cyclomatic complexity count + 1
    body = "".join(f"    if {variable} > {index}:\n        total_{variable} += {index}\n" for index in range(count))
    return f"def {name}({variable}):\n    total_{variable} = 0\n{body}    return total_{variable}\n"


COUNTER = "class Counter:\n    def __init__(self):\n        self.n = 0\n\n    def bump(self):\n        self.n += 1\n"
LONG = ("def long_function(data):\n    step0 = data + 0\n"
        + "".join(f"    step{i} = step{i - 1} + {i}\n" for i in range(1, 65)) + "    return step64\n")
WIDE = "def wide(a, b, c, d, e, f, g):\n    return a + b + c + d + e + f + g\n"
BOX = ("class Box:\n    def __init__(self, a, b, c, d, e, f):\n"
       "        self.parts = (a, b, c, d, e, f)\n")
LOADER = """def {name}(rows):
    result = {{}}
    for row in rows:
        key = row["name"].strip().lower()
        value = float(row["amount"])
        if key in result:
            result[key] += value
        else:
            result[key] = value
    return result
"""

PLANTED = {
    # medium(x): complexity 12 (25 lines), high(y): complexity 20 (41 lines), Counter (6 lines)
    "pkg/complex.py": _branches("medium", "x", 11) + "\n" + _branches("high", "y", 19) + "\n" + COUNTER,
    # long_function: 67 lines; wide: 7 parameters; Box.__init__: 6 besides self (allowed)
    "pkg/long.py": LONG + "\n" + WIDE + "\n" + BOX,
    "pkg/broken.py": "def broken(:\n    pass\n",
    "pkg/lint_me.py": "import os\n\n\ndef ask():\n    return eval(input())\n",
    "pkg/dup_a.py": LOADER.format(name="load_a"),
    "pkg/dup_b.py": "# the same loader again\n" + LOADER.format(name="load_b"),
    # never analysed
    ".gitignore": "build/\n*.gen.py\n",
    "pkg/build/skipped.py": "import sys\n",
    "pkg/made.gen.py": "import sys\n",
    ".venv/lib/skipped.py": "import sys\n",
    ".git/hooks/skipped.py": "import sys\n",
    "data/backups/skipped.py": "import sys\n",  # the product's data dir (see the fixture)
    "node_modules/tool/skipped.py": "import sys\n",
    "notes.txt": "not python\n",
}
# Hand counts over the six analysed files.
TOTAL_LINES = (25 + 1 + 41 + 1 + 6) + (67 + 1 + 2 + 1 + 3) + 2 + 5 + 10 + 11
TOTAL_FUNCTIONS = 4 + 3 + 0 + 1 + 1 + 1
# medium 12, high 20, Counter's two 1s; long_function, wide, Box.__init__ 1 each; ask 1; the loaders 3 each
AVG_COMPLEXITY = round((12 + 20 + 1 + 1 + 1 + 1 + 1 + 1 + 3 + 3) / 10, 2)


@pytest.fixture
def tree(tmp_path, settings):
    root = tmp_path / "workspace"
    for name, text in PLANTED.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    settings.WORKSPACE_ROOT = root
    settings.DATA_DIR = root / "data"
    return root


def analyze(client, **body):
    return client.post("/improve/analyze", body, content_type="application/json")


def found(body, kind=None):
    return {(i["file"], i["line"], i["type"], i["severity"]) for i in body["issues"] if kind in (None, i["type"])}


def test_planted_tree_totals_match_hand_counts(client, tree):
    body = analyze(client, path=".", include_linter=False).json()
    assert TOTAL_LINES == 176
    assert {key: body[key] for key in ("total_files", "total_lines", "total_functions", "total_classes",
                                       "avg_complexity")} == {
        "total_files": 6, "total_lines": TOTAL_LINES, "total_functions": TOTAL_FUNCTIONS, "total_classes": 2,
        "avg_complexity": AVG_COMPLEXITY}
    assert {i["file"] for i in body["issues"]} <= {f"pkg/{n}.py" for n in ("complex", "long", "broken", "dup_a",
                                                                          "dup_b", "lint_me")}


def test_each_rule_finds_its_planted_problem(client, tree):
    body = analyze(client, path="pkg", include_linter=False).json()
    assert found(body, "complexity") == {("pkg/complex.py", 1, "complexity", "medium"),
                                         ("pkg/complex.py", 27, "complexity", "high")}
    messages = {i["message"] for i in body["issues"]}
    assert "Function 'medium' has high complexity (12)" in messages
    assert "Function 'high' has high complexity (20)" in messages
    assert found(body, "refactor") == {("pkg/long.py", 1, "refactor", "medium"),
                                       ("pkg/long.py", 69, "refactor", "medium")}
    assert "Function 'long_function' is 67 lines long (limit 60)" in messages
    assert "Function 'wide' takes 7 parameters (limit 6)" in messages
    assert found(body, "bug") == {("pkg/broken.py", 1, "bug", "critical")}
    assert found(body, "duplication") == {("pkg/dup_a.py", 2, "duplication", "low"),
                                          ("pkg/dup_b.py", 3, "duplication", "low")}
    duplicate = next(i for i in body["issues"] if i["file"] == "pkg/dup_a.py")
    assert duplicate["message"] == "Lines 2-10 repeat code also at pkg/dup_b.py:3"
    # no linter asked for: no unused import, no eval
    assert not found(body, "security") and not found(body, "style")
    assert body["issues"][0]["severity"] == "critical"  # most severe first
    assert body["stats"]["linter"] == "off"


def test_linter_adds_unused_import_and_eval_of_input(client, tree):
    body = analyze(client, path="pkg", include_linter=True).json()
    lint_me = {(i["line"], i["type"], i["severity"], i["message"].split()[0]) for i in body["issues"]
               if i["file"] == "pkg/lint_me.py"}
    assert lint_me == {(1, "bug", "low", "F401"), (5, "security", "high", "S307")}
    # ruff's own syntax error report is dropped: the file's check reports it once
    assert found(body, "bug") >= {("pkg/broken.py", 1, "bug", "critical")}
    assert len([i for i in body["issues"] if i["file"] == "pkg/broken.py"]) == 1
    assert body["stats"]["linter"] == "ok" and body["stats"]["linted"] == 6


def test_linter_copies_are_staged_in_memory_else_in_the_data_dir_and_removed(client, tree, tmp_path, monkeypatch):
    from improve.analysis import engine, lint
    from improve.models import FileAnalysis

    staged = []
    start = lint.start
    monkeypatch.setattr(lint, "start", lambda paths, settings: staged.append(paths) or start(paths, settings))
    memory = tmp_path / "memory"
    memory.mkdir()
    monkeypatch.setattr(engine, "MEMORY_SCRATCH", memory)
    first = analyze(client, path="pkg", include_linter=True).json()
    assert first["stats"]["linted"] == 6 and found(first, "security")
    assert all(path.startswith(str(memory.resolve())) for path in staged[-1]) and not list(memory.iterdir())

    monkeypatch.setattr(engine, "MEMORY_SCRATCH", tmp_path / "absent")  # no memory scratch: the data dir
    FileAnalysis.objects.all().delete()
    second = analyze(client, path="pkg", include_linter=True).json()
    data_scratch = (tree / "data" / "tmp").resolve()
    assert all(path.startswith(str(data_scratch)) for path in staged[-1]) and not list(data_scratch.iterdir())
    assert second["issues"] == first["issues"]


def test_files_read_in_steps_give_the_results_of_one_go(client, tree, set_config, monkeypatch):
    """The workers start on the first files read while the rest are still read; a file with
    the content of one read in an earlier step gets that one's result."""
    from improve.analysis import engine

    (tree / "pkg/dup_c.py").write_text(PLANTED["pkg/dup_a.py"])
    inline = analyze(client, path=".", include_linter=False).json()
    monkeypatch.setattr(engine, "READ_STEP", 2)
    set_config({"improve": {"parallel_min_files": 3, "workers": 2, "batch_files": 1, "complexity_critical": 40}})
    stepped = analyze(client, path=".", include_linter=False).json()
    assert stepped["stats"]["workers"] == 2 and stepped["stats"]["analysed"] == 7
    assert stepped["issues"] == inline["issues"] and stepped["total_lines"] == inline["total_lines"]


def test_failing_linter_is_reported_and_the_rest_goes_on(client, tree, set_config):
    set_config({"improve": {"ruff_select": ["NOPE1"]}})
    body = analyze(client, path="pkg", include_linter=True).json()
    assert body["stats"]["linter"].startswith("failed: ruff failed") and body["stats"]["linted"] == 0
    assert found(body, "complexity") and not found(body, "security")
    # a valid selection lints the same files
    set_config({"improve": {"ruff_select": ["S"]}})
    body = analyze(client, path="pkg", include_linter=True).json()
    assert body["stats"]["linted"] == 6 and found(body, "security")


def test_suggestions_ranked_from_the_findings(client, tree):
    body = analyze(client, path="pkg", include_linter=True).json()
    suggestions = body["suggestions"]
    assert [s["priority"] for s in suggestions] == list(range(1, len(suggestions) + 1))
    titles = [s["title"] for s in suggestions]
    assert titles[:2] == ["Fix critical issues", "Fix security issues"]
    assert titles.index("Simplify the most complex functions") < titles.index("Remove duplicated code")
    assert suggestions[0]["description"].startswith("Found 1 bug issue")
    assert all(s["estimated_effort"] in ("low", "medium", "high") for s in suggestions)


def test_second_run_reads_every_file_from_the_cache(client, tree):
    first = analyze(client, path=".", include_linter=True).json()
    assert (first["stats"]["analysed"], first["stats"]["cached"]) == (6, 0)
    assert (first["stats"]["linted"], first["stats"]["lint_cached"]) == (6, 0)
    second = analyze(client, path=".", include_linter=True).json()
    assert second["stats"]["analysed"] == 0 and second["stats"]["cached"] == 6
    assert second["stats"]["linted"] == 0 and second["stats"]["lint_cached"] == 6
    assert second["stats"]["workers"] == 0
    assert second["issues"] == first["issues"] and second["avg_complexity"] == first["avg_complexity"]


def test_editing_one_file_reanalyses_only_that_file(client, tree):
    analyze(client, path=".", include_linter=True)
    (tree / "pkg/lint_me.py").write_text("import os\nimport sys\n\n\ndef ask():\n    return eval(input())\n")
    body = analyze(client, path=".", include_linter=True).json()
    assert body["stats"]["analysed"] == 1 and body["stats"]["cached"] == 5
    assert body["stats"]["linted"] == 1 and body["stats"]["lint_cached"] == 5
    assert body["total_lines"] == TOTAL_LINES + 1
    assert ("pkg/lint_me.py", 2, "bug", "low") in found(body)


def test_changed_threshold_is_a_cache_miss(client, tree, set_config):
    analyze(client, path=".", include_linter=False)
    set_config({"improve": {"complexity_medium": 25, "complexity_high": 30}})
    body = analyze(client, path=".", include_linter=False).json()
    assert body["stats"]["analysed"] == 6
    assert found(body, "complexity") == set()  # 20 is now below the lowest band


def test_worker_processes_give_the_same_results(client, tree, set_config):
    inline = analyze(client, path=".", include_linter=False).json()
    set_config({"improve": {"parallel_min_files": 1, "workers": 2, "batch_files": 1,
                            "complexity_critical": 40}})  # another checks version: nothing cached
    parallel = analyze(client, path=".", include_linter=False).json()
    assert parallel["stats"]["workers"] == 2 and parallel["stats"]["analysed"] == 6
    assert parallel["issues"] == inline["issues"]
    assert parallel["total_lines"] == inline["total_lines"]


def test_killed_worker_processes_cost_no_results(client, tree, set_config):
    import signal

    from improve.analysis.workers import analysis_workers

    inline = analyze(client, path=".", include_linter=False).json()
    set_config({"improve": {"parallel_min_files": 1, "workers": 2, "batch_files": 1, "complexity_critical": 40}})
    analyze(client, path=".", include_linter=False)  # starts the workers
    for pid in analysis_workers().pids():
        os.kill(pid, signal.SIGKILL)
    set_config({"improve": {"complexity_critical": 41}})  # nothing cached: the files go to the workers again
    response = analyze(client, path=".", include_linter=False)
    assert response.status_code == 200
    assert response.json()["issues"] == inline["issues"] and response.json()["stats"]["analysed"] == 6


def test_the_apps_shutdown_stops_the_worker_processes(client, tree, set_config):
    from improve import resources
    from improve.analysis.workers import analysis_workers

    set_config({"improve": {"parallel_min_files": 1, "workers": 2, "batch_files": 1}})
    assert analyze(client, path=".", include_linter=False).json()["stats"]["workers"] == 2
    pids = analysis_workers().pids()
    assert len(pids) == 2
    resources.shutdown()
    assert analysis_workers().pids() == []
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)


def test_defaults_analyse_the_whole_workspace_with_the_linter(client, tree):
    body = analyze(client).json()
    assert body["total_files"] == 6 and body["stats"]["linter"] == "ok" and body["llm"] is None


def test_directory_without_python_files(client, tree):
    (tree / "docs").mkdir()
    (tree / "docs/readme.md").write_text("# docs\n")
    body = analyze(client, path="docs").json()
    assert {key: body[key] for key in ("total_files", "total_lines", "total_functions", "avg_complexity",
                                       "issues", "suggestions")} == {
        "total_files": 0, "total_lines": 0, "total_functions": 0, "avg_complexity": 0.0, "issues": [],
        "suggestions": []}


def test_single_file_is_accepted(client, tree):
    body = analyze(client, path="pkg/complex.py", include_linter=False).json()
    assert body["total_files"] == 1 and body["total_functions"] == 4 and body["total_classes"] == 1
    assert {i["file"] for i in body["issues"]} == {"pkg/complex.py"}


def test_maintainability_only_on_request_for_flagged_files(client, tree, set_config):
    set_config({"improve": {"maintainability_min": 101}})  # every computed index is below it
    plain = analyze(client, path="pkg", include_linter=False).json()
    assert not any(i["message"].startswith("Maintainability index") for i in plain["issues"])
    body = analyze(client, path="pkg", include_linter=False, maintainability=True).json()
    flagged = {i["file"] for i in body["issues"] if i["message"].startswith("Maintainability index")}
    # only files with issues of their own get an index: not lint_me.py (clean without the linter),
    # not broken.py (no syntax tree), not the duplicated loaders (duplication is a cross-file pass)
    assert flagged == {"pkg/complex.py", "pkg/long.py"}


def test_file_that_cannot_be_parsed_is_counted_and_the_run_goes_on(client, tree, set_config):
    (tree / "pkg/binary.py").write_bytes(b"x = 1\n\x00\x00\n")
    (tree / "pkg/latin.py").write_bytes("# -*- coding: latin-1 -*-\nname = 'caf\xe9'\n".encode("latin-1"))
    set_config({"improve": {"max_file_bytes": 5000}})
    (tree / "pkg/huge.py").write_text("x = 1\n" * 1000)
    body = analyze(client, path="pkg", include_linter=False).json()
    assert body["total_files"] == 9
    issues = {i["file"]: i for i in body["issues"] if i["file"] in ("pkg/binary.py", "pkg/huge.py",
                                                                     "pkg/latin.py")}
    assert issues["pkg/binary.py"]["type"] == "bug" and issues["pkg/binary.py"]["severity"] == "critical"
    assert "above the analysis limit" in issues["pkg/huge.py"]["message"]
    assert "pkg/latin.py" not in issues
    assert body["stats"]["unreadable"] == 1


def test_pathologically_nested_file_is_a_critical_bug_not_a_crash(client, tree):
    (tree / "pkg/nested.py").write_text("x" + "[0]" * 100_000 + "\n")
    body = analyze(client, path="pkg/nested.py", include_linter=True).json()
    assert [(i["type"], i["severity"]) for i in body["issues"]] == [("bug", "critical")]
    assert body["issues"][0]["message"].startswith("File cannot be parsed")


def test_analyses_beyond_the_concurrency_limit_get_429(client, tree, set_config):
    from improve.analysis import engine

    set_config({"improve": {"max_concurrent": 1}})
    with engine.running_analyses.admit(1):  # one analysis in flight
        response = analyze(client, path="pkg")
    assert response.status_code == 429 and "running already" in response.json()["detail"]
    assert analyze(client, path="pkg").status_code == 200


def test_reports_are_in_the_admin(admin_client, client, tree):
    report_id = analyze(client, path="pkg", include_linter=True).json()["report_id"]
    listing = admin_client.get("/admin/improve/analysisreport/")
    assert listing.status_code == 200 and b"pkg" in listing.content
    page = admin_client.get(f"/admin/improve/analysisreport/{report_id}/change/")
    assert page.status_code == 200
    assert b"Function &#x27;high&#x27; has high complexity (20)" in page.content


@pytest.mark.parametrize("path, status", [
    ("../outside", 400), ("/etc", 400), ("pkg/../../x.py", 400), ("missing", 404), ("notes.txt", 400),
    (".venv", 400),
])
def test_bad_paths_are_refused(client, tree, path, status):
    response = analyze(client, path=path)
    assert response.status_code == status
    assert response.json()["detail"]


def test_symlink_out_of_the_workspace_is_refused(client, tree, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("import os\n")
    os.symlink(outside, tree / "link")
    assert analyze(client, path="link").status_code == 400
    # inside a tree the link is not followed
    body = analyze(client, path=".", include_linter=False).json()
    assert body["total_files"] == 6


@pytest.mark.parametrize("body", [{"path": 5}, {"path": "pkg", "include_linter": "maybe"}, []])
def test_bad_request_body_is_400(client, tree, body):
    response = client.post("/improve/analyze", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["detail"]


LLM_ANSWER = {
    "issues": [{"line": 1, "type": "bug", "severity": "high", "message": "The def line is cut off",
                "suggestion": "Close the parameter list"},
               {"line": "x", "type": "nonsense", "severity": "??", "message": "Loose typing"},
               {"no": "message"}],
    "suggestions": [{"title": "Restore the function", "description": "It cannot be imported",
                     "estimated_effort": "low"}],
}


def test_llm_review_with_valid_json(client, tree, ollama, set_config):
    set_config({"improve": {"llm_max_files": 1}})
    ollama.script(Turn(content="```json\n" + json.dumps(LLM_ANSWER) + "\n```"))
    body = analyze(client, path="pkg", include_linter=False, use_llm=True).json()
    # the file with the most severe findings (the syntax error) is the one reviewed
    assert body["llm"] == {"used": 1, "failed": 0, "files": ["pkg/broken.py"], "model": "qwen2.5-coder:7b",
                           "note": ""}
    assert ("pkg/broken.py", 1, "bug", "high") in found(body)
    loose = next(i for i in body["issues"] if i["message"] == "Loose typing")
    assert (loose["line"], loose["type"], loose["severity"]) == (1, "refactor", "medium")
    assert body["suggestions"][-1]["title"] == "pkg/broken.py: Restore the function"
    prompt = ollama.chat_requests[0]["messages"][-1]["content"]
    assert "File: pkg/broken.py" in prompt and "1| def broken(:" in prompt


def test_llm_garbage_falls_back_to_the_rule_based_findings(client, tree, ollama, set_config):
    set_config({"improve": {"llm_max_files": 2}})
    rules = analyze(client, path="pkg", include_linter=False).json()
    ollama.script(Turn(content="Sure! Here are some thoughts about your code."), Turn(content='{"issues": 3}'))
    body = analyze(client, path="pkg", include_linter=False, use_llm=True).json()
    assert body["llm"]["used"] == 0 and body["llm"]["failed"] == 2
    assert "not the requested JSON" in body["llm"]["note"]
    assert body["issues"] == rules["issues"]
    assert len(ollama.chat_requests) == 2


def test_gitignore_negation_in_a_deeper_directory_wins(client, tree):
    (tree / "pkg/.gitignore").write_text("!keep.gen.py\n")
    (tree / "pkg/keep.gen.py").write_text("x = 1\n")
    body = analyze(client, path=".", include_linter=False).json()
    assert body["total_files"] == 7  # made.gen.py stays ignored


def test_llm_review_counts_against_the_llm_rate_limit(client, tree, ollama):
    rates = {**api_settings.DEFAULT_THROTTLE_RATES, "llm": "1/minute"}
    with override_settings(REST_FRAMEWORK={**api_settings.user_settings, "DEFAULT_THROTTLE_RATES": rates}):
        ollama.script(Turn(content='{"issues": []}'))
        codes = [analyze(client, path="pkg/lint_me.py", use_llm=flag).status_code for flag in (True, True, False)]
    assert codes == [200, 429, 200]


def test_llm_error_for_a_file_is_reported_not_fatal(client, tree, ollama, set_config):
    set_config({"improve": {"llm_max_files": 1},
                "models": {"defaults": {"simple": "absent", "medium": "absent", "complex": "absent",
                                        "fallback": "absent"}}})
    response = analyze(client, path="pkg", include_linter=False, use_llm=True)
    assert response.status_code == 200
    llm = response.json()["llm"]
    assert llm["used"] == 0 and llm["failed"] == 1 and "pkg/broken.py: " in llm["note"]
    assert "absent" in llm["note"]


def test_unreachable_llm_is_503_only_when_asked_for(client, tree, llm_unreachable):
    assert analyze(client, path="pkg", include_linter=False).status_code == 200
    response = analyze(client, path="pkg", include_linter=False, use_llm=True)
    assert response.status_code == 503
    assert llm_unreachable.removeprefix("http://") in response.json()["detail"]


def test_reports_are_stored_listed_and_paged(client, tree):
    first = analyze(client, path="pkg", include_linter=True).json()
    second = analyze(client, path="pkg/long.py", include_linter=False).json()
    listing = client.get("/improve/reports").json()
    assert [r["id"] for r in listing] == [second["report_id"], first["report_id"]]
    assert listing[1]["path"] == "pkg" and listing[1]["issue_count"] == len(first["issues"])
    assert listing[1]["options"] == {"include_linter": True, "use_llm": False, "maintainability": False}
    assert listing[1]["totals"]["total_files"] == 6 and listing[1]["stats"]["analysed"] == 6
    assert "issues" not in listing[1]
    assert [r["id"] for r in client.get("/improve/reports?limit=1&offset=1").json()] == [first["report_id"]]

    page = client.get(f"/improve/reports/{first['report_id']}?offset=2&limit=3").json()
    assert page["issues"] == first["issues"][2:5]
    assert page["matching_issues"] == len(first["issues"]) and page["offset"] == 2 and page["limit"] == 3
    assert page["suggestions"] == first["suggestions"]
    security = client.get(f"/improve/reports/{first['report_id']}?type=security").json()
    assert [i["message"].split()[0] for i in security["issues"]] == ["S307"]
    assert security["matching_issues"] == 1


@pytest.mark.parametrize("url, status", [("/improve/reports/999999", 404), ("/improve/reports?limit=0", 400),
                                         ("/improve/reports?offset=-1", 400)])
def test_report_errors(client, url, status):
    response = client.get(url)
    assert response.status_code == status and response.json()["detail"]


def test_report_issue_filters_are_validated(client, tree):
    report_id = analyze(client, path="pkg", include_linter=False).json()["report_id"]
    assert client.get(f"/improve/reports/{report_id}?type=nonsense").status_code == 400
    assert client.get(f"/improve/reports/{report_id}?limit=0").status_code == 400


def test_analysis_endpoints_are_in_the_schema(client):
    paths = client.get("/api/schema", HTTP_ACCEPT="application/json").json()["paths"]
    assert {"/improve/analyze", "/improve/reports", "/improve/reports/{report_id}"} <= set(paths)


def _worker_processes(parent: int) -> set[int]:
    """Pids of the multiprocessing workers this process spawned."""
    found_pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"spawn_main" in command:
            found_pids.add(int(entry))
    return found_pids


@pytest.mark.parametrize("at_start", [True, False])
def test_workers_start_with_the_server_and_serve_the_first_analysis(live_asgi, tmp_path, at_start):
    import httpx

    from tests.polling import wait_for

    root = tmp_path / "workspace"
    (root / "many").mkdir(parents=True)
    for index in range(30):
        (root / "many" / f"module_{index}.py").write_text(_branches(f"f{index}", "x", index % 14))
    server = live_asgi({"CODEGEN_WORKSPACE_ROOT": str(root), "CODEGEN_IMPROVE__WORKERS": "2",
                        "CODEGEN_IMPROVE__WORKERS_AT_START": str(at_start).lower()})
    pid = server.process.pid
    if at_start:
        wait_for(lambda: len(_worker_processes(pid)) == 2, timeout=20, what="the workers started with the server")
    before = _worker_processes(pid)
    assert len(before) == (2 if at_start else 0)

    response = httpx.post(server.url + "/improve/analyze", json={"path": "many", "include_linter": False},
                          timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stats"]["workers"] == 2 and body["stats"]["analysed"] == 30
    assert body["total_functions"] == 30
    assert body["avg_complexity"] == round(sum(1 + index % 14 for index in range(30)) / 30, 2)
    after = _worker_processes(pid)
    assert len(after) == 2
    if at_start:
        assert after == before  # the analysis used the workers started with the server


# ---------------------------------------------------------------- one parse, radon's numbers

TRICKY = '''
import asyncio


def everything(items, flag, other):
    assert flag and other or not items
    total = [x for x in items if x if not flag] + [y for y in items for _ in range(2)]
    pick = (lambda v: v if v else -v)(flag)
    while flag and other:
        flag -= 1
    else:
        total.append(pick)
    for item in items:
        if item > 1:
            continue
        elif item < -1 or item == 0:
            break
    else:
        pass
    try:
        pass
    except ValueError:
        pass
    except (TypeError, KeyError):
        pass
    else:
        pass
    finally:
        pass
    match flag:
        case 1 | 2:
            pass
        case {"k": value}:
            pass
        case _:
            pass
    match other:
        case [first, *rest]:
            pass
        case captured:
            pass
    with open(__file__) as handle:
        def inside_with(a=1 if flag else 2):
            return a or b and c
    if flag:
        class Local:
            def method(self):
                return [z async for z in self] if self else None

    async def closure():
        async for piece in other:
            if piece:
                yield {k: v for k, v in piece if k if v}
        try:
            pass
        except* ValueError:
            pass
    return total, {i for i in items}, (g for g in items if g)


class Outer:
    class Inner:
        def deep(self, a):
            return a if a else (a and a or a)

    @staticmethod
    def decorated(x=[i for i in range(3) if i]):
        return x
'''


def _radon_complexities(tree) -> dict[tuple[int, int], int]:
    from radon.visitors import ComplexityVisitor

    found = {}
    pending_functions, pending_classes = [], []
    visitor = ComplexityVisitor.from_ast(tree)
    pending_functions += visitor.functions
    pending_classes += visitor.classes
    while pending_classes:
        cls = pending_classes.pop()
        pending_functions += cls.methods
        pending_classes += cls.inner_classes
    while pending_functions:
        function = pending_functions.pop()
        found[(function.lineno, function.col_offset)] = function.complexity
        pending_functions += function.closures
    return found


def test_complexity_is_radons_number_for_every_def():
    """The checks walk the tree they parsed once instead of radon's visitor: the same number for
    every def, on constructs picked for their edge cases and on a sample of Django's own source."""
    import ast

    import django
    from radon.visitors import ComplexityVisitor

    from improve.analysis.checks import complexity

    package = os.path.dirname(django.__file__)
    sample = ["db/models/query.py", "utils/html.py", "template/base.py", "forms/fields.py", "core/validators.py"]
    sources = [TRICKY] + [open(os.path.join(package, name), encoding="utf-8").read() for name in sample]
    compared = 0
    for source in sources:
        tree = ast.parse(source)
        radon = _radon_complexities(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                expected = radon.get((node.lineno, node.col_offset))
                if expected is None:  # a def radon's module pass does not reach (in a class in a function)
                    expected = ComplexityVisitor.from_ast(node).functions[0].complexity
                assert complexity(node) == expected, (node.name, node.lineno)
                compared += 1
    assert compared > 300


def test_maintainability_index_is_radons_from_the_same_tree():
    import ast

    from radon.metrics import mi_visit

    from improve.analysis.checks import maintainability_index

    for source in (TRICKY, _branches("f", "x", 12), LONG + "# a comment\n\"\"\"doc\nstring\"\"\"\n", ""):
        assert maintainability_index(ast.parse(source), source.encode()) == mi_visit(source, multi=True)
