"""What the code index remembers in the database: each indexed file (to skip unchanged ones and find
their chunks), the roots a client asked to index, and each index run (progress for /rag/status)."""

from django.db import models


class IndexedRoot(models.Model):
    """A directory (or file) a client indexed; a later request inside it re-indexes that part."""

    path = models.CharField(max_length=1024, unique=True, help_text="Relative to the workspace root")
    indexed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return self.path


class IndexedFile(models.Model):
    path = models.CharField(max_length=1024, unique=True, help_text="Relative to the workspace root")
    root = models.ForeignKey(IndexedRoot, on_delete=models.CASCADE, related_name="files")
    sha256 = models.CharField(max_length=64)
    language = models.CharField(max_length=32)
    chunk_ids = models.JSONField(default=list)
    # Lexical tokens per chunk, kept so the BM25 index is rebuilt without reading files again.
    tokens = models.JSONField(default=list)
    embedding_model = models.CharField(max_length=200, help_text="provider:model of the file's vectors")
    indexed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["path"]

    def __str__(self):
        return self.path


class IndexState(models.TextChoices):
    """What /rag/status says of the index (not stored: read from its runs and its collection)."""

    READY = "ready"
    INDEXING = "indexing"
    EMPTY = "empty"
    ERROR = "error"


class IndexRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        ERROR = "error"

    path = models.CharField(max_length=1024)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    files_total = models.PositiveIntegerField(default=0)
    files_done = models.PositiveIntegerField(default=0)
    files_indexed = models.PositiveIntegerField(default=0)
    chunks = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0)
    error = models.TextField(blank=True)
    embedding_model = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.path} ({self.status})"
