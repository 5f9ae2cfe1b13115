"""The one door to the user's files: secrets are in no listing, search result, model prompt or
analysis; a file swapped for a symlink while the index, the analysis or the tree walks is never
followed; a client cannot write where the server imports or runs code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from rag import services as rag
from rag import store
from rag.models import IndexedFile
from tests.fakes.llm_server import Turn
from tests.files_helpers import assert_refused, listing, write
from tests.polling import wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(180)]

API_KEY = "sk-live-7f3c9e0b"
KEY_BODY = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB"
PRIVATE_KEY = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_BODY}\n-----END OPENSSH PRIVATE KEY-----\n"
NETRC_PASSWORD = "hunter2-netrc"
SECRETS = (API_KEY, KEY_BODY, NETRC_PASSWORD)

# What the project holds: code that names the secret's variable, and the secrets themselves
# under names (or with content) the workspace layer never shows.
PLANTED = {
    "app/loader.py": "import os\n\n\ndef api_key():\n    \"\"\"The API_KEY of the deployment.\"\"\"\n"
                     "    return os.environ['API_KEY']\n",
    ".env": f"API_KEY={API_KEY}\n",
    "sub/.env.local": f"API_KEY={API_KEY}\n",
    "deploy/id_ed25519": PRIVATE_KEY,
    "deploy/server.pem": PRIVATE_KEY,
    "deploy/deploy_key": PRIVATE_KEY,  # no telling name: refused by its content
    "keys.py": f'DEPLOY_KEY = """{PRIVATE_KEY}"""\n',
    ".netrc": f"machine example.com login me password {NETRC_PASSWORD}\n",
    "sub/credentials.json": json.dumps({"password": NETRC_PASSWORD}),
}
HIDDEN = sorted(set(PLANTED) - {"app/loader.py"})


@pytest.fixture
def secrets_project(settings, set_config):
    root = Path(settings.WORKSPACE_ROOT) / f"secrets-{uuid.uuid4().hex[:8]}"
    for name, text in PLANTED.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    set_config({"rag": {"collection": f"test-{uuid.uuid4().hex[:12]}", "chroma_url": "", "chunk_lines": 6,
                        "chunk_overlap": 2}, "embeddings": {"provider": "embedded"}})
    return root


def rel(path: Path) -> str:
    return path.relative_to(django_settings.WORKSPACE_ROOT).as_posix()


def post(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


# ---------------------------------------------------------------- secrets

def test_secrets_are_neither_listed_read_nor_written_through_the_files_api(client, secrets_project):
    names = listing(client.get("/files/tree", {"path": rel(secrets_project), "depth": 4}).json())
    # Hidden by name; a key under an ordinary name is listed (a listing reads no content) but never read.
    assert names == {rel(secrets_project / name) for name in ("app", "app/loader.py", "sub", "deploy", "deploy/deploy_key",
                                                      "keys.py")}
    for name in HIDDEN:
        response = client.get("/files/read", {"path": rel(secrets_project / name)})
        assert_refused(response)
        assert "off limits" in response.json()["detail"], name
        assert not leaks(response.content.decode())
    for name in ("id_rsa", ".netrc", "x/.aws/config", "deploy.key", ".git-credentials", ".env.production"):
        assert_refused(write(client, rel(secrets_project / "new" / name), "x"))
    assert not (secrets_project / "new").exists()


def test_secrets_are_in_no_search_result(client, secrets_project):
    reply = client.post(f"/rag/index?path={rel(secrets_project)}")
    assert reply.status_code == 200, reply.content
    assert reply.json()["files"] == 1  # app/loader.py alone
    for mode in ("hybrid", "vector", "lexical"):
        for query in (f"API_KEY {API_KEY}", "OPENSSH PRIVATE KEY", f"machine login password {NETRC_PASSWORD}",
                      "DEPLOY_KEY"):
            results = post(client, "/rag/search", {"query": query, "mode": mode, "limit": 20}).json()
            assert {result["path"] for result in results} <= {rel(secrets_project / "app/loader.py")}, (mode, query)
            assert not leaks(json.dumps(results)), (mode, query)


def test_an_index_built_before_the_rules_shows_no_secret(client, secrets_project):
    """Chunks of a secret file already in the index (an index from an older version) never come back."""
    rag.index_path(rel(secrets_project))
    indexer_rows = IndexedFile.objects.count()
    assert indexer_rows == 1
    collection = store.existing_collection()
    collection.add(ids=["old-env"], documents=[f"API_KEY={API_KEY}"],
                   embeddings=[[0.0] * len(collection.get(limit=1, include=["embeddings"])["embeddings"][0])],
                   metadatas=[{"path": rel(secrets_project / "sub/.env.local"), "start_line": 1, "end_line": 1,
                               "symbol": ""}])
    results = post(client, "/rag/search", {"query": "API_KEY", "mode": "vector", "limit": 20}).json()
    assert results and not leaks(json.dumps(results))


@pytest.mark.django_db(transaction=True)
def test_secrets_never_reach_the_model_through_codebase_chat(client, secrets_project, ollama, set_config):
    set_config({"embeddings": {"provider": "ollama", "model": "nomic-embed-text"}})
    rag.index_path(rel(secrets_project))
    ollama.script(Turn(content="It reads API_KEY from the environment."))
    reply = post(client, "/chat", {"message": f"@codebase where is API_KEY {API_KEY[:7]} or the deploy key set?"})
    assert reply.status_code == 200, reply.content
    sources = {source["path"] for source in reply.json()["sources"]}
    assert sources == {rel(secrets_project / "app/loader.py")}
    prompt = json.dumps(ollama.chat_requests[-1]["messages"])
    assert "def api_key" in prompt and not leaks(prompt)


def test_the_analysis_reads_no_secret(client, secrets_project):
    reply = post(client, "/improve/analyze", {"path": rel(secrets_project)})
    assert reply.status_code == 200, reply.content
    body = reply.json()
    assert not leaks(json.dumps(body))
    analysed = {issue["file"] for issue in body["issues"]}
    # keys.py is a Python file holding a private key: named as unreadable, its content never read
    assert analysed <= {rel(secrets_project / "app/loader.py"), rel(secrets_project / "keys.py")}
    assert [issue["message"] for issue in body["issues"] if issue["file"] == rel(secrets_project / "keys.py")] == \
        [f"Cannot read file: Path is off limits (it holds a private key): {rel(secrets_project / 'keys.py')}"]


# ---------------------------------------------------------------- symlink swaps

OUTSIDE = "LEAKED = undefined_leak_name  # root:x:0:0:root:/root:/bin/bash\n"
INSIDE = "VALUE = 1\n"


@pytest.fixture
def swapper(secrets_project, tmp_path):
    """A thread that keeps replacing secrets_project/victim.py by a symlink to a file outside the
    workspace and back, each swap an atomic rename, until stopped."""
    outside = tmp_path / "outside.py"
    outside.write_text(OUTSIDE)
    victim = secrets_project / "victim.py"
    victim.write_text(INSIDE)
    stop = threading.Event()
    swaps = []

    def swap():
        link, plain = secrets_project / ".swap-link", secrets_project / ".swap-file"
        while not stop.is_set():
            link.unlink(missing_ok=True)
            link.symlink_to(outside)
            os.replace(link, victim)
            plain.write_text(INSIDE)
            os.replace(plain, victim)
            swaps.append(1)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    yield victim
    stop.set()
    thread.join(10)
    assert swaps, "the swapping thread never ran"


def test_indexing_while_a_file_is_swapped_for_a_link_never_reads_the_target(client, secrets_project, swapper):
    for _ in range(15):
        reply = client.post(f"/rag/index?path={rel(secrets_project)}")
        assert reply.status_code == 200, reply.content
        results = post(client, "/rag/search", {"query": "LEAKED undefined_leak_name root bash", "mode": "lexical",
                                               "limit": 20}).json()
        assert "root:x:0:0" not in json.dumps(results)
    contents = store.existing_collection().get(include=["documents"])["documents"]
    assert not any("root:x:0:0" in text for text in contents)


def test_analysing_while_a_file_is_swapped_for_a_link_never_reads_the_target(client, secrets_project, swapper):
    for _ in range(15):
        reply = post(client, "/improve/analyze", {"path": rel(secrets_project)})
        assert reply.status_code == 200, reply.content
        text = json.dumps(reply.json())
        assert "undefined_leak_name" not in text and "root:x:0:0" not in text


def test_listing_while_a_file_is_swapped_for_a_link_never_shows_the_target(client, secrets_project, swapper):
    kinds = set()
    for _ in range(200):
        tree = client.get("/files/tree", {"path": rel(secrets_project), "depth": 1}).json()
        (victim,) = [node for node in tree["children"] if node["name"] == "victim.py"] or [None]
        if victim is None:
            continue  # between the two renames of a swap
        kinds.add(victim["kind"])
        if victim["kind"] == "file":
            assert victim["size"] == len(INSIDE)
        else:
            assert victim == {**victim, "kind": "symlink", "size": None}
    assert kinds


# ---------------------------------------------------------------- the server's own code

def test_writes_into_the_servers_own_code_are_refused(client, settings):
    """A workspace that holds the server's checkout (set by hand): reads work, writes there do not."""
    base = Path(django_settings.BASE_DIR).resolve()
    settings.WORKSPACE_ROOT = base
    assert client.get("/files/read", {"path": "codegen_site/urls.py"}).status_code == 200
    for path in ("threading.py", "codegen_site/settings.py", "codegen_site/evil.py", "chat/services.py",
                 "sitecustomize.py", "tests/conftest.py"):
        response = write(client, path, "raise SystemExit('owned')\n")
        assert_refused(response)
        assert "server's own code" in response.json()["detail"], path
    assert not (base / "threading.py").exists() and not (base / "codegen_site/evil.py").exists()
    assert "owned" not in (base / "codegen_site/settings.py").read_text()


def test_writes_into_a_sys_path_folder_inside_the_workspace_are_refused(client, settings, tmp_path, monkeypatch):
    workspace = tmp_path / "ws"
    (workspace / "lib").mkdir(parents=True)
    settings.WORKSPACE_ROOT = workspace
    monkeypatch.syspath_prepend(str(workspace / "lib"))
    assert_refused(write(client, "lib/json.py", "x = 1\n"))
    assert write(client, "src/json.py", "x = 1\n").status_code == 200
    assert not (workspace / "lib/json.py").exists()


def test_the_default_workspace_is_not_the_servers_checkout(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("CODEGEN_")}
    env.update(HOME=str(tmp_path), CODEGEN_DATA_DIR=str(tmp_path / "data"),
               DJANGO_SETTINGS_MODULE="codegen_site.settings")
    shown = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
                               "print(settings.WORKSPACE_ROOT)"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert Path(shown.stdout.strip()) == (tmp_path / "codegen-workspace").resolve()
    assert (tmp_path / "codegen-workspace").is_dir()


# ---------------------------------------------------------------- nothing written is ever imported

SHADOWS = ("threading", "json", "codegen_site", "django", "multiprocessing", "encodings_extra")


def shadow_module(marker_dir: Path, name: str) -> str:
    """A module that, if any process imports it, leaves a file naming itself, its process and uid."""
    return (f"import os as _os\n"
            f"open(_os.path.join({str(marker_dir)!r}, '{name}-' + str(_os.getpid())), 'w')"
            f".write(str(_os.getuid()))\n")


@pytest.mark.django_db(transaction=True)
def test_a_module_written_through_the_api_is_never_imported_by_a_server_process(live_asgi, fake_llm, tmp_path):
    """The worst case of a start: the server launched from inside the workspace (its working
    directory), as a user in their project folder would. Modules named like the ones the server,
    its analysis workers and its queue cluster import are written through the API; the server is
    restarted, its workers spawned and its cluster started and given a task: none of them is
    ever imported."""
    import httpx

    from tests.test_improve_queue import status
    from tests.test_improve_run import BETTER, ISSUE, ORIGINAL, fenced

    fake_llm.responder = lambda request: Turn(content=fenced(BETTER))
    workspace = tmp_path / "project"
    workspace.mkdir()
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {"CODEGEN_WORKSPACE_ROOT": str(workspace), "CODEGEN_IMPROVE__WORKERS_AT_START": "true",
           "CODEGEN_IMPROVE__WORKERS": "2", "CODEGEN_IMPROVE__PARALLEL_MIN_FILES": "2",
           "CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__HOST": fake_llm.url}
    server = live_asgi(env, cwd=workspace)
    for name in SHADOWS:
        reply = httpx.post(server.url + "/files/write", json={"path": f"{name}.py",
                                                             "content": shadow_module(markers, name)})
        assert reply.status_code == 200, reply.text
    for number in range(20):  # enough files for the analysis to use its worker processes
        reply = httpx.post(server.url + "/files/write", json={"path": f"pkg/module_{number}.py", "content": ORIGINAL})
        assert reply.status_code == 200, reply.text
    server.stop()

    server = live_asgi(env, cwd=workspace)  # the restart
    analysis = httpx.post(server.url + "/improve/analyze", json={"path": ".", "include_linter": False}, timeout=120)
    assert analysis.status_code == 200, analysis.text
    assert analysis.json()["total_files"] == 20 + len(SHADOWS) and analysis.json()["stats"]["workers"] == 2
    reply = httpx.post(server.url + "/improve/queue/add", json={"file_path": "pkg/module_1.py", "issue": ISSUE})
    assert reply.status_code == 201, reply.text
    assert httpx.post(server.url + "/improve/queue/start", timeout=60).status_code == 200
    wait_for(lambda: status(server)["completed"] == 1, what="the queued improvement")
    assert (workspace / "pkg/module_1.py").read_text() == BETTER
    server.stop()
    assert sorted(path.name for path in markers.iterdir()) == []
