"""Code search: /rag/index, /rag/status, /rag/search against a real Chroma (a store in the test data dir,
and a `chroma run` server), the scripted LLM server as Ollama for embeddings, and the real embedded model."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from codegen_site.core.errors import PathNotFound, PathOutsideWorkspace
from codegen_site.llm.embedders import EMBEDDED_MODEL, OnnxEmbedder, get_embedder
from rag import services, store
from rag.chunking import Chunker, embedding_text, words_of
from rag.config import rag_settings
from rag.lexical import tokenize
from rag.models import IndexedFile, IndexRun
from tests.polling import wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(120)]

SHIPPING = '''"""Orders and their delivery."""


def compute_shipping_cost(weight_kg, distance_km):
    """Price of sending a parcel: a base fee plus a rate per kilogram and per kilometre."""
    base_fee = 4.5
    return base_fee + 0.8 * weight_kg + 0.05 * distance_km


def normalize_postcode(postcode):
    return postcode.replace(" ", "").upper()
'''
GREETING = '''class Greeter:
    """Says hello to people."""

    def greet(self, name):
        return f"Hello, {name}!"
'''
README = "# Shop\n\nA small shop. Run it with `python -m shop`.\n"


@pytest.fixture
def project(settings, set_config):
    """A fresh project folder inside the workspace and a collection of its own."""
    root = Path(settings.WORKSPACE_ROOT) / f"project-{uuid.uuid4().hex[:8]}"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "shipping.py").write_text(SHIPPING)
    (root / "shop" / "greeting.py").write_text(GREETING)
    (root / "README.md").write_text(README)
    # Short chunks, so each planted definition is a chunk of its own.
    # The embedded embedder unless a test picks another: `auto` would probe a developer's real Ollama.
    set_config({"rag": {"collection": f"test-{uuid.uuid4().hex[:12]}", "chroma_url": "", "chunk_lines": 6,
                        "chunk_overlap": 2}, "embeddings": {"provider": "embedded"}})
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ollama_embeddings(ollama, set_config):
    set_config({"embeddings": {"provider": "ollama", "model": "nomic-embed-text"}})
    return ollama


@pytest.fixture
def embedded_embeddings(set_config):
    set_config({"embeddings": {"provider": "embedded"}})


def rel(path: Path) -> str:
    return path.relative_to(settings.WORKSPACE_ROOT).as_posix()


def index(client, path: str, **params):
    return client.post("/rag/index?" + "&".join(f"{k}={v}" for k, v in {"path": path, **params}.items()))


def search(client, **body):
    response = client.post("/rag/search", json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


def embed_requests(server) -> list:
    return [request for request in server.requests if request.path == "/api/embed"]


# --- the whole path ------------------------------------------------------------------
def test_index_status_search_finds_the_planted_function_by_meaning_and_by_identifier(client, project,
                                                                                    embedded_embeddings):
    assert client.get("/rag/status").json()["status"] == "empty"

    response = index(client, rel(project))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "indexed" and body["path"] == rel(project)
    assert body["files"] == 3 and body["chunks"] >= 3 and body["skipped"] == 0 and body["removed"] == 0
    assert body["seconds"] >= 0

    status = client.get("/rag/status").json()
    assert status["status"] == "ready"
    assert status["documents"] >= 3 and status["files"] == 3
    assert status["collection"] == rag_settings().collection
    assert status["embedding_provider"] == "embedded" and status["embedding_model"] == EMBEDDED_MODEL
    assert status["roots"] == [rel(project)] and status["last_indexed"]
    assert store.existing_collection().metadata["dimension"] == 384

    # by meaning: no word of the question is in the function's name
    hits = search(client, query="how much does it cost to send a package", mode="vector", limit=1)
    assert hits[0]["path"] == rel(project / "shop" / "shipping.py")
    assert "compute_shipping_cost" in hits[0]["symbol"]
    assert (hits[0]["start_line"], hits[0]["end_line"]) == (4, 7)
    assert "def compute_shipping_cost" in hits[0]["content"]

    # by identifier, whole and by its parts
    for query in ("compute_shipping_cost", "shipping cost"):
        hits = search(client, query=query, mode="lexical", limit=3)
        assert "compute_shipping_cost" in hits[0]["symbol"], query
    hits = search(client, query="Greeter greet name", limit=2)
    assert hits[0]["path"].endswith("shop/greeting.py") and hits[0]["symbol"] == "Greeter"
    assert set(hits[0]) == {"path", "start_line", "end_line", "symbol", "content", "score"}


def test_reindex_of_unchanged_files_embeds_nothing(client, project, ollama_embeddings):
    first = index(client, rel(project)).json()
    assert first["files"] == 3 and len(embed_requests(ollama_embeddings)) >= 1
    ollama_embeddings.reset()

    again = index(client, rel(project)).json()
    assert (again["files"], again["chunks"], again["skipped"], again["removed"]) == (0, 0, 3, 0)
    assert embed_requests(ollama_embeddings) == []
    assert client.get("/rag/status").json()["documents"] == first["chunks"]


def test_edited_file_is_re_embedded_and_deleted_file_is_gone(client, project, ollama_embeddings):
    index(client, rel(project))
    ollama_embeddings.reset()
    edited = SHIPPING.replace("normalize_postcode(postcode)", "format_tracking_number(number)")
    (project / "shop" / "shipping.py").write_text(edited.replace("postcode.replace", "number.replace"))
    (project / "shop" / "greeting.py").unlink()

    body = index(client, rel(project)).json()
    assert (body["files"], body["skipped"], body["removed"]) == (1, 1, 1)
    embedded_texts = [text for request in embed_requests(ollama_embeddings) for text in request.body["input"]]
    assert embedded_texts and all(text.startswith(f"{words_of(rel(project))} shop shipping") for text in embedded_texts)

    assert search(client, query="format_tracking_number", mode="lexical")[0]["path"].endswith("shipping.py")
    assert search(client, query="normalize_postcode", mode="lexical") == []
    for mode in ("lexical", "vector", "hybrid"):
        assert all(not hit["path"].endswith("greeting.py")
                   for hit in search(client, query="Greeter greet hello", mode=mode, limit=10, min_score=0)), mode
    assert not IndexedFile.objects.filter(path__endswith="greeting.py").exists()
    # the old version's chunks left the vector store too
    assert client.get("/rag/status").json()["documents"] == sum(
        len(record.chunk_ids) for record in IndexedFile.objects.all())


def test_walk_honours_gitignore_and_skips_tool_dirs_binaries_and_big_files(client, project, ollama_embeddings,
                                                                           set_config):
    (project / ".gitignore").write_text("secret_*.py\nbuild/\n")
    (project / "shop" / "secret_keys.py").write_text("API_KEY = 'x'\n")
    (project / "build").mkdir()
    (project / "build" / "generated.py").write_text("def generated(): pass\n")
    (project / "node_modules" / "lib").mkdir(parents=True)
    (project / "node_modules" / "lib" / "index.js").write_text("module.exports = 1\n")
    (project / "env").mkdir()
    (project / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    (project / "env" / "site.py").write_text("x = 1\n")
    (project / "logo.dat").write_bytes(b"\x89PNG\x00\x00binary")
    (project / "huge.txt").write_text("word " * 400_000)
    set_config({"rag": {"max_file_kb": 256}})

    index(client, rel(project))
    indexed = set(IndexedFile.objects.values_list("path", flat=True))
    assert indexed == {rel(project / "README.md"), rel(project / "shop" / "shipping.py"),
                       rel(project / "shop" / "greeting.py"), rel(project / ".gitignore")}

    # a .gitignore above the indexed folder applies to it as well
    body = index(client, rel(project / "shop")).json()
    assert body["skipped"] == 2 and body["files"] == 0


def test_a_host_whose_data_dir_no_run_touched_rebuilds_its_lexical_index_from_the_shared_rows(
        client, project, ollama_embeddings, tmp_path, monkeypatch):
    """Another host keeps its BM25 build in a data dir of its own; an index run here marks only
    this one stale, and the rows in the shared database tell the other that it is behind."""
    monkeypatch.setattr(store, "SOURCE_CHECK_SECONDS", 0)
    shipping = rel(project / "shop" / "shipping.py")

    def lexical_hits(directory, query):
        index_ = store.lexical_indexes.current(directory)
        found = index_.relevance(query)
        ids = {chunk_id for chunk_id, _ in index_.top(found, 10)} if found is not None else set()
        return {path for path, chunk_ids in IndexedFile.objects.values_list("path", "chunk_ids")
                if ids & set(chunk_ids)}

    index(client, rel(project))
    other_host = tmp_path / "other-host-lexical"
    assert lexical_hits(other_host, "normalize_postcode") == {shipping}
    built = (other_host / "source").stat().st_mtime_ns
    assert lexical_hits(other_host, "normalize_postcode") == {shipping}
    assert (other_host / "source").stat().st_mtime_ns == built  # nothing moved: no rebuild

    edited = SHIPPING.replace("normalize_postcode(postcode)", "format_tracking_number(number)")
    (project / "shop" / "shipping.py").write_text(edited.replace("postcode.replace", "number.replace"))
    assert index(client, rel(project)).json()["files"] == 1

    assert lexical_hits(other_host, "format_tracking_number") == {shipping}
    assert lexical_hits(other_host, "normalize_postcode") == set()


@pytest.mark.parametrize("path, status", [("../", 400), ("/etc", 400), ("nowhere-at-all", 404), ("", 400)])
def test_index_refuses_paths_outside_the_workspace_and_missing_ones(client, project, path, status):
    response = index(client, path)
    assert response.status_code == status
    assert "detail" in response.json()


def test_index_without_path_is_400(client):
    response = client.post("/rag/index")
    assert response.status_code == 400 and "path" in response.json()["detail"]


def test_services_refuse_traversal_directly(project):
    with pytest.raises(PathOutsideWorkspace):
        services.index_path(f"{rel(project)}/../../..")
    with pytest.raises(PathNotFound):
        services.index_path(f"{rel(project)}/missing")


def test_symlink_leading_out_is_refused(client, project, tmp_path):
    (tmp_path / "outside.py").write_text("def outside(): pass\n")
    os.symlink(tmp_path, project / "link")
    assert index(client, rel(project / "link")).status_code == 400
    index(client, rel(project))  # the link inside the tree is not followed either
    assert not IndexedFile.objects.filter(path__contains="outside").exists()


@pytest.mark.parametrize("body", [{"query": ""}, {"query": "x", "mode": "fuzzy"}, {"query": "x", "limit": 0},
                                  {"query": "x", "limit": True}, {"limit": 3}, {"query": "x", "path": "../.."}])
def test_search_bad_input_is_400(client, project, body):
    response = client.post("/rag/search", json.dumps(body), content_type="application/json")
    assert response.status_code == 400 and response.json()["detail"]


def test_search_before_any_index_is_empty(client, project):
    assert search(client, query="anything") == []


def test_search_within_a_path(client, project, ollama_embeddings):
    (project / "other").mkdir()
    (project / "other" / "shipping_copy.py").write_text(SHIPPING)
    index(client, rel(project))
    for mode in ("lexical", "vector", "hybrid"):
        # no cut-off: the scripted server's word-hash vectors mean nothing, the filter by path is the point
        hits = search(client, query="compute_shipping_cost", path=rel(project / "other"), mode=mode, min_score=0)
        assert hits and all(hit["path"].startswith(rel(project / "other") + "/") for hit in hits), mode


def test_several_roots_coexist_and_a_path_inside_a_root_reindexes_only_that_part(client, project, settings,
                                                                                 ollama_embeddings):
    second = Path(settings.WORKSPACE_ROOT) / f"second-{uuid.uuid4().hex[:8]}"
    second.mkdir()
    (second / "tools.py").write_text("def sharpen_pencil(pencil):\n    return pencil\n")
    try:
        index(client, rel(project))
        index(client, rel(second))
        assert client.get("/rag/status").json()["roots"] == sorted([rel(project), rel(second)])
        assert search(client, query="sharpen_pencil", mode="lexical")[0]["path"] == rel(second / "tools.py")
        assert search(client, query="compute_shipping_cost", mode="lexical")

        (project / "README.md").unlink()
        body = index(client, rel(project / "shop")).json()
        assert (body["files"], body["skipped"], body["removed"]) == (0, 2, 0)  # README is outside that part
        assert client.get("/rag/status").json()["roots"] == sorted([rel(project), rel(second)])
    finally:
        shutil.rmtree(second, ignore_errors=True)


def test_changing_the_embedding_model_rebuilds_the_collection(client, project, ollama_embeddings, set_config):
    first = index(client, rel(project)).json()
    set_config({"embeddings": {"provider": "embedded"}})
    body = index(client, rel(project)).json()
    assert body["files"] == 3 and body["skipped"] == 0
    status = client.get("/rag/status").json()
    assert status["embedding_model"] == EMBEDDED_MODEL and status["documents"] == first["chunks"]
    assert set(IndexedFile.objects.values_list("embedding_model", flat=True)) == {f"embedded:{EMBEDDED_MODEL}"}


def test_vector_search_with_another_embedder_than_the_index_is_409_and_hybrid_falls_back(client, project,
                                                                                        ollama_embeddings,
                                                                                        set_config):
    index(client, rel(project))
    set_config({"embeddings": {"provider": "embedded"}})
    response = client.post("/rag/search", json.dumps({"query": "cost", "mode": "vector"}),
                           content_type="application/json")
    assert response.status_code == 409 and "index again" in response.json()["detail"]
    assert search(client, query="compute_shipping_cost")[0]["symbol"] == "compute_shipping_cost"


def test_unreachable_ollama_for_embeddings_is_503_and_the_run_is_an_error(client, project, set_config,
                                                                          unused_port):
    set_config({"embeddings": {"provider": "ollama"},
                "ollama": {"host": f"http://127.0.0.1:{unused_port}", "connect_timeout": 1.0}})
    response = index(client, rel(project))
    assert response.status_code == 503 and str(unused_port) in response.json()["detail"]
    status = client.get("/rag/status").json()
    assert status["status"] == "error" and status["error"]


def test_background_index_is_202_and_the_queued_task_indexes(client, project, ollama_embeddings,
                                                            django_capture_on_commit_callbacks):
    from rag import tasks

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = index(client, rel(project), background="true")
    assert response.status_code == 202
    run_id = response.json()["run_id"]
    assert response.json()["status"] == "queued" and len(callbacks) == 1
    status = client.get("/rag/status").json()
    assert status["status"] == "indexing"
    assert status["progress"] == {"path": rel(project), "files_done": 0, "files_total": 0}
    # another queued run is refused while this one waits; a run in the request is not (no worker may come)
    assert index(client, rel(project), background="true").status_code == 409

    # The queue worker's part, run here in-process (not through a qcluster subprocess).
    result = tasks.run_index(run_id)
    assert result["files"] == 3
    run = IndexRun.objects.get(pk=run_id)
    assert run.status == "done" and run.files_done == run.files_total == 3
    assert client.get("/rag/status").json()["status"] == "ready"


def test_a_run_while_another_is_running_is_409_until_that_one_is_stale(client, project, ollama_embeddings,
                                                                       set_config):
    IndexRun.objects.create(path=rel(project), status=IndexRun.Status.RUNNING)
    response = index(client, rel(project))
    assert response.status_code == 409 and "running" in response.json()["detail"]
    set_config({"rag": {"stale_run_seconds": 0}})  # its process died long ago
    assert index(client, rel(project)).status_code == 200


def test_retrieve_returns_chunks_after_indexing(project, embedded_embeddings):
    assert services.retrieve("shipping cost", 2) == []
    services.index_path(rel(project))
    chunks = services.retrieve("compute_shipping_cost", 2)
    assert set(chunks[0]) == {"path", "start_line", "end_line", "symbol", "content", "score"}
    assert chunks[0]["symbol"] == "compute_shipping_cost"
    assert all(1 >= chunk["score"] >= rag_settings().min_score for chunk in chunks)


@pytest.mark.django_db(transaction=True)
def test_the_workflow_research_step_receives_indexed_chunks(client, project, ollama_embeddings, set_config):
    from tests.test_workflow import RIGHT, Model, post_workflow, user_prompt

    set_config({"embeddings": {"provider": "embedded"}})  # vectors with a meaning: chunks scored for relevance
    services.index_path(rel(project))
    ollama_embeddings.reset()
    ollama_embeddings.responder = Model([RIGHT])
    task = "Write a function like compute_shipping_cost that returns factorial(n) and raises ValueError for negative n."
    assert post_workflow(client, {"task": task}).status_code == 200
    tests_prompt = user_prompt(ollama_embeddings.chat_requests[1])
    assert "Relevant code" in tests_prompt and "shop/shipping.py:4-" in tests_prompt
    assert "def compute_shipping_cost" in tests_prompt


@pytest.mark.django_db(transaction=True)
def test_codebase_chat_gives_the_model_indexed_chunks_and_lists_them_as_sources(client, project,
                                                                                 ollama_embeddings, set_config):
    from tests.fakes.llm_server import Turn

    set_config({"embeddings": {"provider": "embedded"}})  # vectors with a meaning: chunks scored for relevance
    services.index_path(rel(project))
    ollama_embeddings.script(Turn(content="See shop/shipping.py:4."), Turn(content="Plain answer."))
    body = {"message": "@codebase how is the shipping cost computed?"}
    reply = client.post("/chat", json.dumps(body), content_type="application/json").json()
    shipping = rel(project / "shop" / "shipping.py")
    assert shipping in [source["path"] for source in reply["sources"]]
    sent = ollama_embeddings.chat_requests[-1]["messages"]
    assert sent[-1] == {"role": "user", "content": "how is the shipping cost computed?"}
    context = sent[-2]
    assert context["role"] == "system" and "cite" in context["content"]
    assert f"{shipping}:" in context["content"] and "def compute_shipping_cost" in context["content"]
    # without the prefix nothing is looked up
    plain = client.post("/chat", json.dumps({"message": "how is the shipping cost computed?"}),
                        content_type="application/json").json()
    assert plain["sources"] == []
    assert all("def compute_shipping_cost" not in message["content"]
               for message in ollama_embeddings.chat_requests[-1]["messages"])


def test_closing_the_index_resources_releases_them_and_the_next_search_opens_them_again(client, project,
                                                                                       ollama_embeddings):
    index(client, rel(project))
    assert search(client, query="compute_shipping_cost", mode="lexical")[0]["symbol"] == "compute_shipping_cost"
    opened = store.chroma_client()
    store.close()
    assert store.chroma_client() is not opened
    for mode in ("lexical", "vector", "hybrid"):
        assert search(client, query="compute_shipping_cost", limit=3, mode=mode, min_score=0), mode
    assert client.get("/rag/status").json()["status"] == "ready"


def test_schema_documents_the_rag_endpoints(client):
    schema = client.get("/api/schema?format=json").json()
    assert {"/rag/index", "/rag/status", "/rag/search"} <= set(schema["paths"])


# --- a Chroma server ----------------------------------------------------------------
def test_a_chroma_server_serves_the_same_results(client, project, ollama_embeddings, chroma_server, set_config):
    queries = ["compute_shipping_cost", "hello name", "shop run"]

    def scored(hits):  # the fake embedder gives ties, which either store may order its own way
        return {(hit["path"], hit["start_line"]): round(hit["score"], 4) for hit in hits}

    index(client, rel(project))
    local = [scored(search(client, query=query, mode="vector", limit=50, min_score=0)) for query in queries]

    IndexedFile.objects.all().delete()
    set_config({"rag": {"chroma_url": chroma_server}})
    body = index(client, rel(project)).json()
    assert body["files"] == 3
    served = [scored(search(client, query=query, mode="vector", limit=50, min_score=0)) for query in queries]
    assert served == local and all(len(hits) == body["chunks"] for hits in served)
    # the vectors really are in the server
    assert httpx.get(f"{chroma_server}/api/v2/heartbeat").status_code == 200
    assert client.get("/rag/status").json()["documents"] == body["chunks"]


# --- the embedded embedder -------------------------------------------------------------
def test_a_chroma_server_that_does_not_answer_is_503(client, project, set_config, unused_port):
    set_config({"rag": {"chroma_url": f"http://127.0.0.1:{unused_port}"}})
    for response in (client.get("/rag/status"), index(client, rel(project)),
                     client.post("/rag/search", json.dumps({"query": "x"}), content_type="application/json")):
        assert response.status_code == 503 and str(unused_port) in response.json()["detail"]


def test_the_embedded_embedder_gives_vectors_with_no_network(monkeypatch, set_config):
    config = set_config({"embeddings": {"provider": "embedded"}})

    def no_network(*args, **kwargs):
        raise OSError("network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with get_embedder(config) as embedder:
        assert isinstance(embedder, OnnxEmbedder) and embedder.identity == f"embedded:{EMBEDDED_MODEL}"
        cat, kitten, invoice = embedder.embed(["a cat sleeps on the sofa", "a kitten naps on the couch",
                                                "the invoice total includes value added tax"])
    assert len(cat) == 384
    assert math.isclose(sum(v * v for v in cat), 1.0, rel_tol=1e-4)

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(cat, kitten) > cosine(cat, invoice) + 0.2


def test_the_embedded_embedder_gives_the_same_vectors_batched_on_threads_as_one_by_one(set_config):
    """Batches padded to their own longest text and run side by side change no vector; a text given
    twice gets its vector twice, in order."""
    config = set_config({"embeddings": {"provider": "embedded", "batch_size": 3, "embedded_threads": 3}})
    texts = ["def compute_shipping_cost(weight_kg, distance_km):", "a cat sleeps on the sofa",
             "Paginator count num pages " * 20, "x", "the invoice total includes value added tax",
             "a cat sleeps on the sofa", "class Greeter: says hello to people", "normalize postcode " * 40]
    with get_embedder(config) as embedder:
        assert embedder.threads == 3
        together = embedder.embed(texts)
        alone = [embedder.embed([text])[0] for text in texts]
        embedder.batch_tokens = 40  # batches cut by tokens too: the long texts one per run
        by_tokens = embedder.embed(texts)
    assert len(together) == len(texts) and together[1] == together[5]
    for one, other, third in zip(together, alone, by_tokens, strict=True):
        assert sum(x * y for x, y in zip(one, other, strict=True)) > 0.9999
        assert sum(x * y for x, y in zip(third, other, strict=True)) > 0.9999


def test_the_embedded_embedder_uses_every_core_unless_told(set_config):
    with get_embedder(set_config({"embeddings": {"provider": "embedded", "embedded_threads": 0}})) as embedder:
        assert embedder.threads == len(os.sched_getaffinity(0))


def test_auto_embeddings_take_ollama_only_when_it_has_the_model(ollama, set_config, unused_port):
    config = set_config({"embeddings": {"provider": "auto", "model": "nomic-embed-text"}})
    with get_embedder(config) as embedder:
        assert embedder.identity == "ollama:nomic-embed-text"
    config = set_config({"embeddings": {"model": "not-pulled"}})
    with get_embedder(config) as embedder:
        assert embedder.provider == "embedded"
    config = set_config({"embeddings": {"model": "nomic-embed-text"},
                         "ollama": {"host": f"http://127.0.0.1:{unused_port}"}})
    with get_embedder(config) as embedder:
        assert embedder.provider == "embedded"


def test_lm_studio_embeddings(lm_studio, set_config):
    config = set_config({"embeddings": {"provider": "lm_studio", "model": "local", "batch_size": 2}})
    with get_embedder(config) as embedder:
        vectors = embedder.embed(["one", "two", "three"])
    assert len(vectors) == 3 and len(vectors[0]) == lm_studio.embed_dim
    assert len([r for r in lm_studio.requests if r.path == "/v1/embeddings"]) == 2


# --- chunking and tokens ---------------------------------------------------------------
def test_long_class_is_split_at_methods_and_pieces_carry_their_signature():
    methods = "\n".join(f"    def method_{n}(self):\n" + "".join(f"        x{i} = {i}\n" for i in range(30))
                        for n in range(3))
    long_function = "    def long_one(self, a, b):\n" + "".join(f"        y{i} = a + {i}\n" for i in range(150))
    source = "import os\n\n\nclass Big(Base):\n    \"\"\"Doc.\"\"\"\n\n" + methods + "\n" + long_function
    chunks = Chunker(60, 10).chunk("big.py", source)
    symbols = [chunk.symbol for chunk in chunks]
    assert "Big.method_0" in symbols[1] and "Big.long_one" in symbols
    pieces = [chunk for chunk in chunks if chunk.symbol == "Big.long_one"]
    assert len(pieces) >= 3
    assert all(piece.text.startswith("class Big(Base):") for piece in pieces)
    assert all("def long_one(self, a, b):" in piece.text.splitlines()[1] for piece in pieces)
    assert all(b.start_line == a.end_line - 9 for a, b in zip(pieces, pieces[1:], strict=False))  # overlap of 10 lines
    assert pieces[-1].end_line == len(source.splitlines())


@pytest.mark.parametrize("chunk_lines, overlap", [(1, 0), (1, 5), (3, 3), (60, 100), (0, -1)])
def test_chunking_ends_on_any_settings_and_covers_every_line(chunk_lines, overlap):
    text = "\n".join(f"line {n}" for n in range(1, 201))
    chunks = Chunker(chunk_lines, overlap).chunk("notes.txt", text)
    covered = {line for chunk in chunks for line in range(chunk.start_line, chunk.end_line + 1)}
    assert covered == set(range(1, 201))
    broken = "def f(:\n" + text  # not Python: falls back to lines
    assert Chunker(chunk_lines, overlap).chunk("broken.py", broken)


def test_the_embedding_model_reads_a_definitions_outline_and_the_code_only_where_there_is_none():
    source = ('import os\n\nLIMIT = 5\n\n\n@cached\ndef compute_shipping_cost(weight_kg, distance_km):\n'
              '    """Price of sending a parcel.\n\n    Details nobody searches for.\n    """\n'
              '    # the fee first\n    base_fee = 4.5\n    return base_fee + 0.8 * weight_kg\n')
    gap, definition = Chunker(12, 2).chunk("shop/shipping.py", source)
    text = embedding_text("shop/shipping.py", definition)
    assert text.splitlines() == ["shop shipping. compute shipping cost", "@cached",
                                 "def compute_shipping_cost(weight_kg, distance_km):", "Price of sending a parcel.",
                                 "the fee first"]
    # module-level statements have no outline: their code is what says what they are
    assert embedding_text("shop/shipping.py", gap).splitlines() == ["shop shipping", "import os", "LIMIT = 5"]
    # the lexical index still reads the whole chunk
    assert "base_fee" in tokenize(definition.text) and "details" in tokenize(definition.text)


def test_an_index_run_reports_its_progress_file_by_file(project, embedded_embeddings, monkeypatch):
    from django.db.models.signals import post_save

    from rag.services import indexer

    monkeypatch.setattr(indexer, "PROGRESS_SECONDS", 0)
    seen = []

    def record(sender, instance, update_fields=None, **kwargs):
        if update_fields and "files_done" in update_fields:
            seen.append(instance.files_done)

    post_save.connect(record, sender=IndexRun)
    try:
        services.index_path(rel(project))
    finally:
        post_save.disconnect(record, sender=IndexRun)
    assert seen == [1, 2, 3]


def test_an_index_run_in_many_sets_stores_each_chunk_with_its_own_vector(project, embedded_embeddings,
                                                                         monkeypatch):
    """Each file a set of its own: the model embeds one set while the one before is written. Every
    chunk is stored once with the vector of its own text, every file has its row."""
    from rag.services import indexer

    monkeypatch.setattr(indexer, "FLUSH_CHUNKS", 1)
    result = services.index_path(rel(project))
    assert result.files == 3 and result.chunks == store.existing_collection().count()
    rows = IndexedFile.objects.all()
    assert sorted(row.path.rpartition("/")[2] for row in rows) == ["README.md", "greeting.py", "shipping.py"]
    stored = store.existing_collection().get(ids=[chunk_id for row in rows for chunk_id in row.chunk_ids],
                                             include=["embeddings", "documents", "metadatas"])
    assert len(stored["ids"]) == result.chunks
    chunker = Chunker(rag_settings().chunk_lines, rag_settings().chunk_overlap)
    with get_embedder() as embedder:
        for document, metadata, vector in zip(stored["documents"], stored["metadatas"], stored["embeddings"],
                                              strict=True):
            chunk = next(chunk for chunk in chunker.chunk(metadata["path"], (Path(settings.WORKSPACE_ROOT)
                                                                             / metadata["path"]).read_text())
                         if chunk.text == document)
            expected = embedder.embed([embedding_text(metadata["path"], chunk)])[0]
            assert sum(x * y for x, y in zip(expected, vector, strict=True)) > 0.9999


def test_an_embedding_that_fails_mid_run_ends_the_run_in_error_and_leaves_no_thread(project, embedded_embeddings,
                                                                                    monkeypatch):
    import threading

    from rag.services import indexer

    monkeypatch.setattr(indexer, "FLUSH_CHUNKS", 1)
    calls = []
    real_embed = OnnxEmbedder.embed

    def failing_second(self, texts):
        calls.append(len(texts))
        if len(calls) == 2:
            raise RuntimeError("the model failed")
        return real_embed(self, texts)

    monkeypatch.setattr(OnnxEmbedder, "embed", failing_second)
    with pytest.raises(RuntimeError, match="the model failed"):
        services.index_path(rel(project))
    run = IndexRun.objects.latest("pk")
    assert run.status == IndexRun.Status.ERROR and "the model failed" in run.error
    assert not any(thread.name.startswith("index-embed") for thread in threading.enumerate())
    # The next run indexes everything the failed one did not write.
    monkeypatch.setattr(OnnxEmbedder, "embed", real_embed)
    services.index_path(rel(project))
    assert IndexedFile.objects.count() == 3


def test_code_tokens_keep_identifiers_whole_and_split():
    tokens = tokenize("def get_user_model(): return HttpResponseRedirect(URLPattern)")
    for token in ("get_user_model", "get", "user", "model", "httpresponseredirect", "http", "response",
                  "redirect", "urlpattern", "url", "pattern", "def", "return"):
        assert token in tokens, token
    assert "the" not in tokenize("the model")


# --- the queue, with a real worker --------------------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(240)
def test_background_index_runs_on_a_real_qcluster_worker(client, project, ollama_embeddings):
    from django.db import connection

    collection = rag_settings().collection
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "codegen_site.settings_test",
           "CODEGEN_TEST_SERVER_DB": connection.settings_dict["NAME"], "CODEGEN_RAG__COLLECTION": collection,
           "CODEGEN_RAG__CHUNK_LINES": "6", "CODEGEN_RAG__CHUNK_OVERLAP": "2",
           "CODEGEN_EMBEDDINGS__PROVIDER": "ollama", "CODEGEN_EMBEDDINGS__MODEL": "nomic-embed-text",
           "CODEGEN_OLLAMA__HOST": ollama_embeddings.url, "CODEGEN_LOGGING__LEVEL": "WARNING"}
    log = Path(os.environ["CODEGEN_TEST_ROOT"]) / f"qcluster-{collection}.log"
    with log.open("wb") as output:
        worker = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=Path(__file__).parent.parent,
                                  env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            response = index(client, rel(project), background="true")
            assert response.status_code == 202
            run_id = response.json()["run_id"]

            def finished() -> bool:
                assert worker.poll() is None, log.read_text()
                return IndexRun.objects.get(pk=run_id).status in (IndexRun.Status.DONE, IndexRun.Status.ERROR)

            wait_for(finished, timeout=180, what="the queued index run to finish", interval=0.5)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
    run = IndexRun.objects.get(pk=run_id)
    assert run.status == "done", run.error
    assert (run.files_indexed, run.files_done, run.files_total) == (3, 3, 3)
    assert embed_requests(ollama_embeddings)  # the worker embedded through the scripted server
    status = client.get("/rag/status").json()
    assert status["status"] == "ready" and status["files"] == 3 and status["documents"] == run.chunks
