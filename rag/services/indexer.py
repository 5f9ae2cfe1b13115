"""Index runs: the files under a workspace path, chunked and embedded incrementally.

Each file has a row (IndexedFile) with its hash and chunk ids: a run skips unchanged files,
re-embeds changed ones and removes deleted ones. A run is recorded (IndexRun) before it starts,
so /rag/status follows it and a second run is refused while one is going."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from codegen_site.core import locks, workspace
from codegen_site.core.errors import Conflict, ServiceError
from codegen_site.llm.embedders import Embedder, get_embedder
from rag import lexical, sources
from rag.chunking import Chunker, embedding_text, language_of
from rag.config import rag_settings
from rag.models import IndexedFile, IndexedRoot, IndexRun
from rag.selectors import active_run, indexed_files_under, under
from rag.store import chroma_client, collection_for, mark_lexical_stale

logger = logging.getLogger(__name__)

# Chunks embedded and written together (one embedding call per embedder batch inside).
FLUSH_CHUNKS = 256
# The run's progress (files done) is written as each file is, at most this often.
PROGRESS_SECONDS = 0.5


@dataclass(frozen=True)
class IndexResult:
    path: str
    files: int          # chunked and embedded by this run (new or changed)
    chunks: int
    skipped: int        # unchanged, left as they were
    removed: int        # indexed before, gone from disk now
    seconds: float
    status: str = "indexed"


def start_run(client_path: str, *, background: bool = False) -> IndexRun:
    """Check the path and that no other run is going, and record a queued run for it. A run waiting in
    the queue holds back other queued ones but not a run in the request (the queue may have no worker)."""
    target = workspace.resolve(client_path, must_exist=True)
    with transaction.atomic():
        locks.hold("rag-index")  # across processes: the check and the record are one step
        running = active_run(running_only=not background)
        if running is not None:
            raise Conflict(f"An index run is already {running.status} for '{running.path}'; see /rag/status")
        return IndexRun.objects.create(path=workspace.relative(target),
                                       status=IndexRun.Status.QUEUED if background else IndexRun.Status.RUNNING)


def _root_for(relative: str) -> IndexedRoot:
    """The indexed root containing `relative`, or a new root that takes over the roots inside it."""
    for root in IndexedRoot.objects.all():
        if root.path == "." or relative == root.path or relative.startswith(root.path + "/"):
            return root
    root = IndexedRoot.objects.create(path=relative)
    inner = IndexedRoot.objects.filter(under("path", relative)).exclude(pk=root.pk)
    IndexedFile.objects.filter(root__in=inner).update(root=root)
    inner.delete()
    return root


def _chunk_id(path: str, sha: str, number: int) -> str:
    # The file's hash is part of the id: a changed file's new chunks never collide with its old ones.
    return f"{hashlib.sha1(path.encode()).hexdigest()[:16]}-{sha[:12]}-{number}"


class _Progress:
    """The run's files_done, counted per file (read and skipped, or read and chunked) and written to its
    row when PROGRESS_SECONDS have passed since the last write, so /rag/status moves file by file
    without a database write for each."""

    def __init__(self, run: IndexRun):
        self.run = run
        self.written = time.monotonic()

    def each(self, files: list) -> Iterator:
        """The files, one by one, each counted once the loop is done with it."""
        for file in files:
            yield file
            self.run.files_done += 1
            if time.monotonic() - self.written >= PROGRESS_SECONDS:
                self.run.save(update_fields=["files_done"])
                self.written = time.monotonic()


class _ChunkWriter:
    """Files' chunks gathered until FLUSH_CHUNKS, then embedded and written together: the vectors
    into the collection, a row per file; the old version's chunks go after the new ones are in.

    A pipeline: a gathered set is embedded on a thread of its own while this thread chunks the next
    files and writes the set before (the model releases the interpreter, so chunking and writing cost
    the run no time of their own while it runs). The database is written from this thread only."""

    def __init__(self, run: IndexRun, embedder: Embedder, collection, root: IndexedRoot):
        configured = rag_settings()
        self.run, self.embedder, self.collection, self.root = run, embedder, collection, root
        self.chunker = Chunker(configured.chunk_lines, configured.chunk_overlap)
        self.pending: list[tuple[IndexedFile | None, str, str, list]] = []
        self.pending_chunks = 0
        self.chunks = 0
        self.files = 0
        self.max_batch = chroma_client().get_max_batch_size()
        self._embedding = ThreadPoolExecutor(1, thread_name_prefix="index-embed")
        self._in_flight: tuple[list, Future] | None = None

    def add(self, record: IndexedFile | None, path: str, sha: str, text: str) -> None:
        chunks = self.chunker.chunk(path, text)
        self.pending.append((record, path, sha, chunks))
        self.pending_chunks += len(chunks)
        if self.pending_chunks >= FLUSH_CHUNKS:
            self.flush()

    def flush(self) -> None:
        """Start embedding the gathered files, then write the set embedded before."""
        if self.pending:
            texts = [embedding_text(path, chunk) for _, path, _, chunks in self.pending for chunk in chunks]
            started = (self.pending, self._embedding.submit(self.embedder.embed, texts) if texts else None)
            self.pending, self.pending_chunks = [], 0
        else:
            started = None
        previous, self._in_flight = self._in_flight, started
        if previous is not None:
            self._write(*previous)

    def finish(self) -> None:
        """Embed and write whatever is gathered or in flight."""
        self.flush()
        self.flush()

    def close(self) -> None:
        """Wait for the embedding thread (a run that failed leaves its last set unwritten)."""
        if self._in_flight is not None and self._in_flight[1] is not None:
            self._in_flight[1].cancel()
        self._in_flight = None
        self._embedding.shutdown(wait=True)

    def _write(self, files: list, embedding: Future | None) -> None:
        vectors = embedding.result() if embedding is not None else []
        ids, metadatas, documents = [], [], []
        for _, path, sha, chunks in files:
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
        self._delete_chunks([chunk_id for record, *_ in files if record is not None
                             for chunk_id in record.chunk_ids if chunk_id not in new_ids])
        # One delete and one insert for the set (a row per file, not a query per file).
        IndexedFile.objects.filter(path__in=[path for _, path, _, _ in files]).delete()
        IndexedFile.objects.bulk_create([
            IndexedFile(path=path, root=self.root, sha256=sha, language=language_of(path),
                        chunk_ids=[_chunk_id(path, sha, number) for number in range(len(chunks))],
                        tokens=[lexical.tokenize(f"{path} {chunk.symbol} {chunk.text}") for chunk in chunks],
                        embedding_model=self.embedder.identity)
            for _, path, sha, chunks in files
        ])
        self.files += len(files)
        self.chunks += len(ids)

    def _delete_chunks(self, chunk_ids: list[str]) -> None:
        for start in range(0, len(chunk_ids), self.max_batch):
            self.collection.delete(ids=chunk_ids[start:start + self.max_batch])

    def remove(self, records: list[IndexedFile]) -> None:
        self._delete_chunks([chunk_id for record in records for chunk_id in record.chunk_ids])
        IndexedFile.objects.filter(pk__in=[record.pk for record in records]).delete()


def index_path(client_path: str, run: IndexRun | None = None) -> IndexResult:
    """Index the files under a workspace path: new and changed files are chunked and embedded, unchanged
    ones skipped, files gone from disk removed. The run's row records progress and outcome."""
    run = run or start_run(client_path)
    started = time.monotonic()
    try:
        target = workspace.resolve(run.path, must_exist=True)
        relative = workspace.relative(target)
        run.status = IndexRun.Status.RUNNING
        run.save(update_fields=["status"])
        max_bytes = rag_settings().max_file_kb * 1024
        with get_embedder() as embedder:
            run.embedding_model = embedder.identity
            run.save(update_fields=["embedding_model"])
            collection = collection_for(embedder)
            root = _root_for(relative)
            files = sources.files_under(target, max_bytes)
            run.files_total = len(files)
            run.save(update_fields=["files_total"])
            known = {record.path: record for record in indexed_files_under(relative).defer("tokens")}
            writer = _ChunkWriter(run, embedder, collection, root)
            skipped = 0
            seen = set()
            progress = _Progress(run)
            with workspace.Reader(max_bytes) as reader, closing(writer):
                for file in progress.each(files):
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
                    writer.add(record, file.path, sha, data.decode("utf-8", errors="replace"))
                writer.finish()
            gone = [record for path, record in known.items() if path not in seen]
            writer.remove(gone)
            run.files_done = len(files)
            if writer.files or gone:
                mark_lexical_stale()
            root.indexed_at = timezone.now()
            root.save(update_fields=["indexed_at"])
        seconds = round(time.monotonic() - started, 3)
        run.status = IndexRun.Status.DONE
        run.files_indexed, run.chunks, run.skipped, run.removed = writer.files, writer.chunks, skipped, len(gone)
        run.seconds, run.finished_at = seconds, timezone.now()
        run.save()
        return IndexResult(path=relative, files=writer.files, chunks=writer.chunks, skipped=skipped,
                           removed=len(gone), seconds=seconds)
    except BaseException as exc:
        run.status = IndexRun.Status.ERROR
        run.error = str(getattr(exc, "detail", "") or exc) or type(exc).__name__
        run.seconds, run.finished_at = round(time.monotonic() - started, 3), timezone.now()
        run.save()
        raise
