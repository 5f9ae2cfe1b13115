"""Where the code index lives: vectors in a Chroma collection, BM25 files beside it.

The collection is in a persistent store under the data dir, or in a Chroma server when
`rag.chroma_url` is set; its metadata names the embedder that made its vectors, and an index
run with another embedder drops it and starts again, so vectors of two models never meet.
The BM25 index (rag.lexical) is rebuilt whole from the tokens stored per file in the database:
an index run only marks it stale and the next search rebuilds it once. Each build also records
which state of those rows it was made from, so a host whose data dir another host's index run
never touched rebuilds too when the shared database has moved on.

Both are read by the selectors (status) and the services (indexing, search), so they sit
below both. The process-wide resources, Chroma clients and loaded BM25 indexes, each have one
owner made here (`chroma_clients`, `lexical_indexes`) that makes them on first use; `close()`
releases both, and the next use makes them again."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.db.models import Count, Max

from codegen_site.core.errors import ServiceUnavailable
from codegen_site.llm.embedders import Embedder
from rag.config import rag_settings
from rag.lexical import LexicalIndex
from rag.models import IndexedFile, IndexedRoot

logger = logging.getLogger(__name__)

STALE_MARK = "stale"
# The state of the stored rows a BM25 build was made from (rows_stamp), beside it.
SOURCE_MARK = "source"
# How long a process trusts its last look at the rows' state before asking the database again.
SOURCE_CHECK_SECONDS = 1.0
# How chunks are cut and what of them is embedded (rag.chunking): a collection made another way is
# rebuilt by the next index run, as one of another embedder is, so its vectors never meet new ones.
INDEX_FORMAT = 3


class ChromaClients:
    """One Chroma client per store (a server's URL or a local directory), made on first use."""

    def __init__(self) -> None:
        self._clients: dict[str, object] = {}
        self._lock = threading.Lock()

    def get(self, url: str, directory: Path):
        import chromadb
        from chromadb.config import Settings

        key = url or str(directory)
        with self._lock:
            client = self._clients.get(key)
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
                self._clients[key] = client
            return client

    def close(self) -> None:
        """Release every client (a local store's files and connections); the next get() makes a new one."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


class LexicalIndexes:
    """The BM25 indexes, one per directory: rebuilt from the stored tokens when an index run
    marked them stale (one rebuild at a time), loaded once per rewrite and kept until close()."""

    def __init__(self) -> None:
        self._rebuild_lock = threading.Lock()
        self._loaded: dict[str, tuple[int, LexicalIndex]] = {}
        self._loaded_lock = threading.Lock()
        self._checked: dict[str, float] = {}

    @staticmethod
    def mark_stale(directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / STALE_MARK).touch()

    @staticmethod
    def rows_stamp() -> str:
        """The stored rows' state: an edit or an addition moves the newest indexed_at, a removal
        the count."""
        state = IndexedFile.objects.aggregate(files=Count("id"), newest=Max("indexed_at"))
        newest = state["newest"].isoformat() if state["newest"] else "-"
        return f"{state['files']} {newest}"

    def _moved_on(self, directory: Path) -> str | None:
        """The rows' stamp when it differs from the one the build in `directory` was made from;
        asked of the database at most once per SOURCE_CHECK_SECONDS per directory."""
        key = str(directory)
        now = time.monotonic()
        if now - self._checked.get(key, float("-inf")) < SOURCE_CHECK_SECONDS:
            return None
        self._checked[key] = now
        stamp = self.rows_stamp()
        try:
            built_from = (directory / SOURCE_MARK).read_text()
        except FileNotFoundError:
            built_from = None
        return None if built_from == stamp else stamp

    def current(self, directory: Path) -> LexicalIndex:
        with self._rebuild_lock:
            if ((directory / STALE_MARK).exists() or not (directory / LexicalIndex.META).exists()
                    or self._moved_on(directory) is not None):
                (directory / STALE_MARK).unlink(missing_ok=True)
                self._rebuild(directory)
        return self._load(directory)

    def _rebuild(self, directory: Path) -> None:
        # The stamp is taken first: rows written during the build move it again, so the next
        # look rebuilds rather than keeping a build that missed them.
        stamp = self.rows_stamp()
        entries = []
        rows = IndexedFile.objects.order_by("path").values_list("path", "chunk_ids", "tokens")
        for path, chunk_ids, tokens in rows:
            entries.extend((chunk_id, path, chunk_tokens)
                           for chunk_id, chunk_tokens in zip(chunk_ids, tokens, strict=True))
        LexicalIndex.build(directory, entries)
        (directory / SOURCE_MARK).write_text(stamp)
        self._checked[str(directory)] = time.monotonic()

    def _load(self, directory: Path) -> LexicalIndex:
        meta = directory / LexicalIndex.META
        stamp = meta.stat().st_mtime_ns if meta.exists() else 0
        key = str(directory)
        with self._loaded_lock:
            loaded = self._loaded.get(key)
            if loaded and loaded[0] == stamp:
                return loaded[1]
        index = LexicalIndex.load(directory)
        with self._loaded_lock:
            self._loaded[key] = (stamp, index)
        return index

    def close(self) -> None:
        """Drop the loaded indexes (the next search loads them again)."""
        with self._loaded_lock:
            self._loaded.clear()
        self._checked.clear()


chroma_clients = ChromaClients()
lexical_indexes = LexicalIndexes()


def close() -> None:
    """Release the index's process-wide resources (at server shutdown, or between tests)."""
    chroma_clients.close()
    lexical_indexes.close()


def chroma_client():
    """The client of the configured store: a Chroma server when rag.chroma_url is set, else <data dir>/chroma."""
    return chroma_clients.get(rag_settings().chroma_url.strip(), Path(settings.DATA_DIR) / "chroma")


def existing_collection():
    """The collection, or None before the first index run. Never with chromadb's own embedding function
    (it would download a model): every vector comes from codegen_site.llm."""
    from chromadb.errors import NotFoundError

    client = chroma_client()
    try:
        return client.get_collection(rag_settings().collection, embedding_function=None)
    except NotFoundError:
        return None


def collection_for(embedder: Embedder):
    """The collection for this embedder's vectors, made anew when it holds another model's."""
    client = chroma_client()
    name = rag_settings().collection
    collection = existing_collection()
    metadata = (collection.metadata or {}) if collection is not None else {}
    if collection is not None and (metadata.get("embedding") != embedder.identity
                                   or metadata.get("format", 1) != INDEX_FORMAT):
        logger.info("Embedding model or chunk format changed (%s format %s -> %s format %s): rebuilding the index",
                    metadata.get("embedding"), metadata.get("format", 1), embedder.identity, INDEX_FORMAT)
        client.delete_collection(name)
        collection = None
    if collection is None:
        # Rows describe chunks of a collection that is gone (or another one): start clean.
        IndexedFile.objects.all().delete()
        IndexedRoot.objects.all().delete()
        mark_lexical_stale()
        collection = client.create_collection(
            name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}},
            metadata={"embedding": embedder.identity, "embedding_provider": embedder.provider,
                      "embedding_model": embedder.model, "format": INDEX_FORMAT},
        )
    return collection


def lexical_dir() -> Path:
    return Path(settings.DATA_DIR) / "rag" / rag_settings().collection / "lexical"


def mark_lexical_stale() -> None:
    """BM25 is rebuilt whole, so an index run only marks it; the next search rebuilds it once. A run
    that changed one file then costs about what that file costs, not a rebuild of every chunk."""
    lexical_indexes.mark_stale(lexical_dir())


def lexical_index() -> LexicalIndex:
    """The current BM25 index of the configured collection, rebuilt first when it is stale."""
    return lexical_indexes.current(lexical_dir())
