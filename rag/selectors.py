"""Reads of the code index: its runs, its files and roots, and its state for /rag/status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from codegen_site.core.errors import NotFound
from rag.config import embedding_settings, rag_settings
from rag.models import IndexedFile, IndexedRoot, IndexRun, IndexState
from rag.store import existing_collection


@dataclass(frozen=True)
class IndexStatus:
    status: str                       # an IndexState
    documents: int                    # chunks in the collection
    collection: str
    files: int
    roots: list[str]
    last_indexed: datetime | None
    progress: IndexRun | None         # the run under way, if any
    error: str                        # the latest run's error, when the state is "error"
    embedding_provider: str
    embedding_model: str


def under(field: str, relative: str) -> Q:
    """Rows whose `field` is the workspace path `relative` or lies below it."""
    if relative == ".":
        return Q()
    return Q(**{field: relative}) | Q(**{f"{field}__startswith": relative + "/"})


def indexed_files_under(relative: str) -> QuerySet[IndexedFile]:
    return IndexedFile.objects.filter(under("path", relative))


def active_run(running_only: bool = False) -> IndexRun | None:
    """The run queued or running (or only running) that is not stale: its process may still be at it."""
    statuses = [IndexRun.Status.RUNNING] if running_only else [IndexRun.Status.QUEUED, IndexRun.Status.RUNNING]
    stale_before = timezone.now() - timedelta(seconds=rag_settings().stale_run_seconds)
    return IndexRun.objects.filter(status__in=statuses, created_at__gte=stale_before).first()


def get_run(run_id: int) -> IndexRun:
    try:
        return IndexRun.objects.get(pk=run_id)
    except IndexRun.DoesNotExist:
        raise NotFound(f"Index run {run_id} not found") from None


def status() -> IndexStatus:
    collection = existing_collection()
    documents = collection.count() if collection is not None else 0
    metadata = (collection.metadata or {}) if collection is not None else {}
    latest = IndexRun.objects.first()
    running = active_run()
    if running is not None:
        state = IndexState.INDEXING
    elif latest is not None and latest.status == IndexRun.Status.ERROR:
        state = IndexState.ERROR
    else:
        state = IndexState.READY if documents else IndexState.EMPTY
    return IndexStatus(
        status=state,
        documents=documents,
        collection=rag_settings().collection,
        files=IndexedFile.objects.count(),
        roots=list(IndexedRoot.objects.order_by("path").values_list("path", flat=True)),
        last_indexed=IndexedRoot.objects.aggregate(last=Max("indexed_at"))["last"],
        progress=running,
        error=latest.error if state == IndexState.ERROR else "",
        embedding_provider=metadata.get("embedding_provider") or embedding_settings().provider,
        embedding_model=metadata.get("embedding_model") or "",
    )
