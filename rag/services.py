"""The code index: index a path (incrementally), report its status, search it.

Vectors live in one Chroma collection (a persistent store under the data dir, or a Chroma server when
`rag.chroma_url` is set) whose metadata names the embedder that made them; an index run with another
embedder drops the collection and starts again, so vectors of two models never meet. BM25 over
code-aware tokens lives beside it (rag.lexical). Each file has a row (IndexedFile) with its hash and
chunk ids: a run skips unchanged files, re-embeds changed ones and removes deleted ones.

`retrieve(query, top_k)` is what other apps call (the workflow's research step)."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from codegen_site.core import workspace
from codegen_site.core.config import get_config
from codegen_site.core.errors import BadInput, Conflict, ServiceError, ServiceUnavailable
from codegen_site.llm.embedders import Embedder, get_embedder
from rag import lexical, sources
from rag.chunking import Chunker, language_of
from rag.models import IndexedFile, IndexedRoot, IndexRun

logger = logging.getLogger(__name__)

MODES = ("hybrid", "vector", "lexical")
# Chunks embedded and written together (one embedding call per embedder batch inside).
FLUSH_CHUNKS = 256


def rag_config() -> dict:
    return get_config()["rag"]


# --- storage -------------------------------------------------------------------
_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def chroma_client():
    """One client per store: a Chroma server when rag.chroma_url is set, else <data dir>/chroma."""
    import chromadb
    from chromadb.config import Settings

    url = rag_config()["chroma_url"].strip()
    key = url or str(Path(settings.DATA_DIR) / "chroma")
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            telemetry_off = Settings(anonymized_telemetry=False)
            if url:
                parsed = urlparse(url)
                try:
                    client = chromadb.HttpClient(host=parsed.hostname or "127.0.0.1",
                                                 port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                                                 ssl=parsed.scheme == "https", settings=telemetry_off)
                except ValueError as exc:  # chromadb's word for "nothing answers there"
                    raise ServiceUnavailable(f"Chroma server at {url} does not answer: {exc}") from exc
            else:
                client = chromadb.PersistentClient(path=key, settings=telemetry_off)
            _clients[key] = client
        return client


def lexical_dir() -> Path:
    return Path(settings.DATA_DIR) / "rag" / rag_config()["collection"] / "lexical"


def existing_collection():
    """The collection, or None before the first index run. Never with chromadb's own embedding function
    (it would download a model): every vector comes from codegen_site.llm."""
    from chromadb.errors import NotFoundError

    client = chroma_client()
    try:
        return client.get_collection(rag_config()["collection"], embedding_function=None)
    except NotFoundError:
        return None


def _forget_everything() -> None:
    IndexedFile.objects.all().delete()
    IndexedRoot.objects.all().delete()
    mark_lexical_stale()


def collection_for(embedder: Embedder):
    """The collection for this embedder's vectors, made anew when it holds another model's."""
    client = chroma_client()
    name = rag_config()["collection"]
    collection = existing_collection()
    if collection is not None and (collection.metadata or {}).get("embedding") != embedder.identity:
        logger.info("Embedding model changed (%s -> %s): rebuilding the index",
                    (collection.metadata or {}).get("embedding"), embedder.identity)
        client.delete_collection(name)
        collection = None
    if collection is None:
        # Rows describe chunks of a collection that is gone (or another one): start clean.
        _forget_everything()
        collection = client.create_collection(
            name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}},
            metadata={"embedding": embedder.identity, "embedding_provider": embedder.provider,
                      "embedding_model": embedder.model},
        )
    return collection


# --- index runs ---------------------------------------------------------------
def _under(field: str, relative: str) -> Q:
    if relative == ".":
        return Q()
    return Q(**{field: relative}) | Q(**{f"{field}__startswith": relative + "/"})


def _stale_before():
    return timezone.now() - timedelta(seconds=float(rag_config()["stale_run_seconds"]))


def active_run(running_only: bool = False) -> IndexRun | None:
    statuses = [IndexRun.Status.RUNNING] if running_only else [IndexRun.Status.QUEUED, IndexRun.Status.RUNNING]
    return IndexRun.objects.filter(status__in=statuses, created_at__gte=_stale_before()).first()


def start_run(client_path: str, *, background: bool = False) -> IndexRun:
    """Check the path and that no other run is going, and record a queued run for it. A run waiting in
    the queue holds back other queued ones but not a run in the request (the queue may have no worker)."""
    target = workspace.resolve(client_path, must_exist=True)
    with transaction.atomic():
        running = active_run(running_only=not background)
        if running is not None:
            raise Conflict(f"An index run is already {running.status} for '{running.path}'; see /rag/status")
        return IndexRun.objects.create(path=workspace.relative(target))


def _root_for(relative: str) -> IndexedRoot:
    """The indexed root containing `relative`, or a new root that takes over the roots inside it."""
    for root in IndexedRoot.objects.all():
        if root.path == "." or relative == root.path or relative.startswith(root.path + "/"):
            return root
    root = IndexedRoot.objects.create(path=relative)
    inner = IndexedRoot.objects.filter(_under("path", relative)).exclude(pk=root.pk)
    IndexedFile.objects.filter(root__in=inner).update(root=root)
    inner.delete()
    return root


def _chunk_id(path: str, sha: str, number: int) -> str:
    # The file's hash is part of the id: a changed file's new chunks never collide with its old ones.
    return f"{hashlib.sha1(path.encode()).hexdigest()[:16]}-{sha[:12]}-{number}"


class _Indexer:
    def __init__(self, run: IndexRun, embedder: Embedder, collection, root: IndexedRoot):
        config = rag_config()
        self.run, self.embedder, self.collection, self.root = run, embedder, collection, root
        self.chunker = Chunker(config["chunk_lines"], config["chunk_overlap"])
        self.pending: list[tuple[IndexedFile | None, str, str, list]] = []
        self.pending_chunks = 0
        self.chunks = 0
        self.files = 0
        self.max_batch = chroma_client().get_max_batch_size()

    def add(self, record: IndexedFile | None, path: str, sha: str, text: str) -> None:
        chunks = self.chunker.chunk(path, text)
        self.pending.append((record, path, sha, chunks))
        self.pending_chunks += len(chunks)
        if self.pending_chunks >= FLUSH_CHUNKS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        texts = [f"{path}\n{chunk.text}" for _, path, _, chunks in self.pending for chunk in chunks]
        vectors = self.embedder.embed(texts) if texts else []
        ids, metadatas, documents = [], [], []
        for _, path, sha, chunks in self.pending:
            language = language_of(path)
            for number, chunk in enumerate(chunks):
                ids.append(_chunk_id(path, sha, number))
                documents.append(chunk.text)
                metadatas.append({"path": path, "root": self.root.path, "start_line": chunk.start_line,
                                  "end_line": chunk.end_line, "language": language, "symbol": chunk.symbol,
                                  "sha256": sha})
        metadata = self.collection.metadata or {}
        if vectors and "dimension" not in metadata:
            self.collection.modify(metadata={**metadata, "dimension": len(vectors[0])})
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            self.collection.upsert(ids=ids[start:end], embeddings=vectors[start:end],
                                   documents=documents[start:end], metadatas=metadatas[start:end])
        # The old version's chunks go after the new ones are in (a search never finds the file missing).
        new_ids = set(ids)
        self._delete_chunks([chunk_id for record, *_ in self.pending if record is not None
                             for chunk_id in record.chunk_ids if chunk_id not in new_ids])
        # One delete and one insert for the batch (a row per file, not a query per file).
        IndexedFile.objects.filter(path__in=[path for _, path, _, _ in self.pending]).delete()
        IndexedFile.objects.bulk_create([
            IndexedFile(path=path, root=self.root, sha256=sha, language=language_of(path),
                        chunk_ids=[_chunk_id(path, sha, number) for number in range(len(chunks))],
                        tokens=[lexical.tokenize(f"{path} {chunk.symbol} {chunk.text}") for chunk in chunks],
                        embedding_model=self.embedder.identity)
            for _, path, sha, chunks in self.pending
        ])
        self.files += len(self.pending)
        self.chunks += len(ids)
        self.run.files_done += len(self.pending)
        self.run.save(update_fields=["files_done"])
        self.pending, self.pending_chunks = [], 0

    def _delete_chunks(self, chunk_ids: list[str]) -> None:
        for start in range(0, len(chunk_ids), self.max_batch):
            self.collection.delete(ids=chunk_ids[start:start + self.max_batch])

    def remove(self, records: list[IndexedFile]) -> None:
        self._delete_chunks([chunk_id for record in records for chunk_id in record.chunk_ids])
        IndexedFile.objects.filter(pk__in=[record.pk for record in records]).delete()


STALE_MARK = "stale"
_lexical_lock = threading.Lock()


def rebuild_lexical() -> None:
    entries = []
    for path, chunk_ids, tokens in IndexedFile.objects.order_by("path").values_list("path", "chunk_ids", "tokens"):
        entries.extend((chunk_id, path, chunk_tokens) for chunk_id, chunk_tokens in zip(chunk_ids, tokens, strict=True))
    lexical.LexicalIndex.build(lexical_dir(), entries)


def mark_lexical_stale() -> None:
    """BM25 is rebuilt whole, so an index run only marks it; the next search rebuilds it once. A run
    that changed one file then costs about what that file costs, not a rebuild of every chunk."""
    directory = lexical_dir()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STALE_MARK).touch()


def lexical_index() -> lexical.LexicalIndex:
    directory = lexical_dir()
    with _lexical_lock:
        if (directory / STALE_MARK).exists() or not (directory / lexical.LexicalIndex.META).exists():
            (directory / STALE_MARK).unlink(missing_ok=True)
            rebuild_lexical()
    return lexical.cached(directory)


def index_path(client_path: str, run: IndexRun | None = None) -> dict:
    """Index the files under a workspace path: new and changed files are chunked and embedded, unchanged
    ones skipped, files gone from disk removed. Returns the /rag/index reply."""
    run = run or start_run(client_path)
    started = time.monotonic()
    try:
        target = workspace.resolve(run.path, must_exist=True)
        relative = workspace.relative(target)
        run.status = IndexRun.Status.RUNNING
        run.save(update_fields=["status"])
        with get_embedder() as embedder:
            run.embedding_model = embedder.identity
            run.save(update_fields=["embedding_model"])
            collection = collection_for(embedder)
            root = _root_for(relative)
            files = sources.files_under(target, int(rag_config()["max_file_kb"]) * 1024)
            run.files_total = len(files)
            run.save(update_fields=["files_total"])
            known = {record.path: record
                     for record in IndexedFile.objects.filter(_under("path", relative)).defer("tokens")}
            indexer = _Indexer(run, embedder, collection, root)
            skipped = 0
            seen = set()
            with workspace.Reader(int(rag_config()["max_file_kb"]) * 1024) as reader:
                for file in files:
                    try:
                        data = reader.read(file.path)
                    except ServiceError as exc:
                        # Gone, grown, swapped for a link or a secret since the walk: not indexed.
                        logger.warning("Not indexing %s: %s", file.path, exc.detail)
                        continue
                    if not sources.is_text(data):
                        continue
                    seen.add(file.path)
                    sha = hashlib.sha256(data).hexdigest()
                    record = known.get(file.path)
                    if record is not None and record.sha256 == sha and record.embedding_model == embedder.identity:
                        skipped += 1
                        continue
                    indexer.add(record, file.path, sha, data.decode("utf-8", errors="replace"))
            indexer.flush()
            gone = [record for path, record in known.items() if path not in seen]
            indexer.remove(gone)
            run.files_done = len(files)
            if indexer.files or gone:
                mark_lexical_stale()
            root.indexed_at = timezone.now()
            root.save(update_fields=["indexed_at"])
        seconds = round(time.monotonic() - started, 3)
        run.status = IndexRun.Status.DONE
        run.files_indexed, run.chunks, run.skipped, run.removed = indexer.files, indexer.chunks, skipped, len(gone)
        run.seconds, run.finished_at = seconds, timezone.now()
        run.save()
        return {"status": "indexed", "path": relative, "files": indexer.files, "chunks": indexer.chunks,
                "skipped": skipped, "removed": len(gone), "seconds": seconds}
    except BaseException as exc:
        run.status = IndexRun.Status.ERROR
        run.error = str(getattr(exc, "detail", "") or exc) or type(exc).__name__
        run.seconds, run.finished_at = round(time.monotonic() - started, 3), timezone.now()
        run.save()
        raise


# --- status ---------------------------------------------------------------------
def status() -> dict:
    config = get_config()
    collection = existing_collection()
    documents = collection.count() if collection is not None else 0
    metadata = (collection.metadata or {}) if collection is not None else {}
    latest = IndexRun.objects.first()
    running = active_run()
    if running is not None:
        state = "indexing"
    elif latest is not None and latest.status == IndexRun.Status.ERROR:
        state = "error"
    else:
        state = "ready" if documents else "empty"
    return {
        "status": state,
        "documents": documents,
        "collection": config["rag"]["collection"],
        "files": IndexedFile.objects.count(),
        "roots": list(IndexedRoot.objects.order_by("path").values_list("path", flat=True)),
        "last_indexed": IndexedRoot.objects.aggregate(last=Max("indexed_at"))["last"],
        "progress": ({"path": running.path, "files_done": running.files_done, "files_total": running.files_total}
                     if running is not None else None),
        "error": latest.error if state == "error" else "",
        "embedding_provider": metadata.get("embedding_provider") or config["embeddings"]["provider"],
        "embedding_model": metadata.get("embedding_model") or "",
    }


# --- search ---------------------------------------------------------------------
def _vector_hits(collection, query: str, limit: int, prefix: str | None, strict: bool) -> list[tuple[str, float]]:
    where = None
    if prefix and prefix != ".":
        paths = list(IndexedFile.objects.filter(_under("path", prefix)).values_list("path", flat=True))
        if not paths:
            return []
        where = {"path": {"$in": paths}}
    with get_embedder() as embedder:
        built_with = (collection.metadata or {}).get("embedding")
        if embedder.identity != built_with:
            if strict:
                raise Conflict(f"The index was built with {built_with} but the embedder now is "
                               f"{embedder.identity}: index again to search by meaning")
            logger.warning("Index built with %s, embedder is %s: lexical search only", built_with, embedder.identity)
            return []
        vector = embedder.embed([query])[0]
    found = collection.query(query_embeddings=[vector], n_results=max(1, min(limit, collection.count())),
                             where=where, include=["distances"])
    return [(chunk_id, 1.0 - float(distance)) for chunk_id, distance in zip(found["ids"][0], found["distances"][0], strict=True)]


def search(query: str, limit: int | None = None, path: str | None = None, mode: str = "hybrid") -> list[dict]:
    """Chunks best first: [{path, start_line, end_line, symbol, content, score}]. `hybrid` fuses the
    vector and BM25 rankings by reciprocal rank; `vector` and `lexical` give one ranking alone."""
    config = rag_config()
    if mode not in MODES:
        raise BadInput(f"Unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    limit = int(limit or config["top_k"])
    prefix = workspace.relative(workspace.resolve(path)) if path else None
    collection = existing_collection()
    if collection is None or not query.strip() or collection.count() == 0:
        return []
    wanted = max(limit, int(config["fusion_candidates"])) if mode == "hybrid" else limit
    vector_hits = _vector_hits(collection, query, wanted, prefix, mode == "vector") if mode != "lexical" else []
    lexical_hits = lexical_index().search(query, wanted, prefix) if mode != "vector" else []
    if mode == "hybrid":
        fused: dict[str, float] = {}
        k = float(config["rrf_k"])
        for hits in (vector_hits, lexical_hits):
            for rank, (chunk_id, _) in enumerate(hits):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (k + rank + 1)
        ranked = sorted(fused.items(), key=lambda item: item[1], reverse=True)[:limit]
    else:
        ranked = (vector_hits or lexical_hits)[:limit]
    if not ranked:
        return []
    stored = collection.get(ids=[chunk_id for chunk_id, _ in ranked], include=["documents", "metadatas"])
    by_id = {chunk_id: (document, metadata)
             for chunk_id, document, metadata in zip(stored["ids"], stored["documents"], stored["metadatas"], strict=True)}
    results = []
    for chunk_id, score in ranked:
        if chunk_id not in by_id:  # removed between the two reads
            continue
        document, metadata = by_id[chunk_id]
        # An index built before a rule changed may hold what the workspace layer now refuses.
        if workspace.is_off_limits(workspace.root() / metadata["path"]) or workspace.looks_secret(document.encode()):
            continue
        results.append({"path": metadata["path"], "start_line": metadata["start_line"],
                        "end_line": metadata["end_line"], "symbol": metadata.get("symbol", ""),
                        "content": document, "score": round(score, 6)})
    return results


def context_text(chunks: list[dict]) -> str:
    """Chunks as prompt text, each headed by its `path:start-end` so an answer can cite it."""
    parts = []
    for chunk in chunks:
        where = chunk.get("path") or "snippet"
        if chunk.get("start_line"):
            where += f":{chunk['start_line']}-{chunk.get('end_line', chunk['start_line'])}"
        parts.append(f"# {where}\n{(chunk.get('content') or '').strip()}")
    return "\n\n".join(parts)


def retrieve(query: str, top_k: int = 5) -> list[dict]:
    """Top chunks for `query`, best first: [{"path", "start_line", "end_line", "symbol", "content", "score"}].

    Returns [] when no index exists."""
    if not IndexedFile.objects.exists():
        return []
    return search(query, top_k, mode="hybrid")
