"""Stored analyses (one row per POST /improve/analyze) and the per-file result cache behind them;
improvement runs, the queue's tasks and its on/off state."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class AnalysisReport(models.Model):
    path = models.CharField(max_length=1024, help_text="The analysed path, relative to the workspace root")
    # The user it belongs to in multi-user mode (codegen_site.core.users); null in the single-user
    # mode and for older rows, which then only admins see.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    # include_linter, use_llm, maintainability as asked
    options = models.JSONField(default=dict)
    # total_files, total_lines, total_functions, total_classes, avg_complexity
    totals = models.JSONField(default=dict)
    # [{file, line, type, severity, message, suggestion}], most severe first
    issues = models.JSONField(default=list)
    issue_count = models.PositiveIntegerField(default=0)
    # severity -> number of issues
    severity_counts = models.JSONField(default=dict)
    suggestions = models.JSONField(default=list)
    # files analysed vs read from the cache, linter state, workers
    stats = models.JSONField(default=dict)
    # what the LLM review did (null when it was not asked for)
    llm = models.JSONField(null=True, blank=True)
    duration = models.FloatField(help_text="Seconds")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.path} ({self.issue_count} issues)"


class FileAnalysis(models.Model):
    """One file's analysis result, keyed by what it depends on: the check kind and its
    settings' version plus the file's content hash. An unchanged file is never re-analysed."""

    key = models.CharField(max_length=64, primary_key=True)
    result = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "file analyses"

    def __str__(self) -> str:
        return self.key
# --- improvement runs and the queue (POST /improve/run, /improve/queue/*) -------------


class ImprovementRun(models.Model):
    """One POST /improve/run (or one queued task's run): every attempt and what validation said."""

    class Status(models.TextChoices):
        RUNNING = "running"
        PROPOSED = "proposed"    # validated, waiting for POST /improve/apply
        APPLIED = "applied"      # written through the files service
        FAILED = "failed"
        INTERRUPTED = "interrupted"  # its process was killed mid-run (services.lease.reconcile)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    file_path = models.CharField(max_length=4096)
    # The user it belongs to in multi-user mode (codegen_site.core.users); null in the single-user
    # mode and for older rows, which then only admins see.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    issue = models.JSONField(default=dict)
    auto_write = models.BooleanField(default=True)
    max_retries = models.PositiveIntegerField(default=3)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    # sha256 of the file as read; apply refuses when the file no longer has it
    original_sha256 = models.CharField(max_length=64, blank=True)
    proposed_content = models.TextField(blank=True)
    diff = models.TextField(blank=True)
    # [{number, content, passed, validation_output, broken_tests}]
    attempts = models.JSONField(default=list)
    retries = models.PositiveIntegerField(default=0)
    validation_output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    backup_path = models.CharField(max_length=4096, blank=True)
    # POST /improve/apply writes the proposal as a one-file ProjectChange (a commit in a git
    # workspace); undoing that change puts the run back to proposed and clears this
    change = models.ForeignKey("ProjectChange", null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    model = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.file_path} ({self.status})"

    @property
    def succeeded(self) -> bool:
        """A validated proposal: written, or kept for POST /improve/apply."""
        return self.status in (self.Status.APPLIED, self.Status.PROPOSED)

    @property
    def written(self) -> bool:
        return self.status == self.Status.APPLIED

    @property
    def unwritten_proposal(self) -> str | None:
        """The validated content while it is not in the file (None once written, or without one)."""
        return None if self.written or not self.proposed_content else self.proposed_content

    @property
    def attempt_count(self) -> int:
        return len(self.attempts)


class ImprovementTask(models.Model):
    """A queued improvement. The row, not the broker message, is the truth: a worker
    claims it with a conditional UPDATE and holds a lease it renews while it runs."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"

    # Statuses a task does not leave by itself (clear removes them, requeue starts them again).
    FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    file_path = models.CharField(max_length=4096)
    # Who queued it in multi-user mode (codegen_site.core.users): the run or change its worker
    # makes belongs to that user too. Null in the single-user mode and for older rows.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    issue = models.JSONField(default=dict)
    # auto_write, max_retries
    options = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    step = models.CharField(max_length=32, blank=True)
    progress = models.FloatField(default=0.0)
    attempts = models.PositiveIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    run = models.ForeignKey(ImprovementRun, null=True, blank=True, on_delete=models.SET_NULL)
    error = models.TextField(blank=True)
    # who holds it: "host:pid" of the worker, and until when (renewed by its heartbeat)
    worker = models.CharField(max_length=200, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.file_path} ({self.status})"


class QueueState(models.Model):
    """The one row saying whether workers may take tasks (start / stop), shared by every process."""

    accepting = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return "accepting" if self.accepting else "stopped"


class ProjectChange(models.Model):
    """A change to the user's project from one instruction (POST /improve/change): the files it
    changes, their diff, the evidence that proved it, and, in a git workspace, its own branch
    `codegen/<id>` and commit; applied onto the user's branch or files later, undone in one step."""

    class State(models.TextChoices):
        RUNNING = "running"
        PROPOSED = "proposed"    # proven; on its branch (git) or kept (no git) until applied
        REFUSED = "refused"      # not proven within the repair budget: nothing written, no branch
        FAILED = "failed"        # stopped by an error
        APPLIED = "applied"
        UNDONE = "undone"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instruction = models.TextField()
    paths = models.JSONField(default=list)          # the paths the request named
    # The user it belongs to in multi-user mode (codegen_site.core.users); null in the single-user
    # mode and for older rows, which then only admins see.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING, db_index=True)
    # [{path, status: added|modified, original_sha256, original, proposed, diff, format}]
    files = models.JSONField(default=list)
    diff = models.TextField(blank=True)
    # {context: [...], attempts: [...], tests: {before, after}, ruff, timings}
    evidence = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    model = models.CharField(max_length=200, blank=True)
    max_repairs = models.PositiveIntegerField(default=2)
    # the queued task (ImprovementTask) that made it, if one did: a retried task finds it
    task_id = models.UUIDField(null=True, blank=True, db_index=True)
    # git: the repository's branch and commit the change was built on, its own branch and commit,
    # and once applied the user's branch and the commit that carries it there (undo reverts it)
    git = models.BooleanField(default=False)
    base_commit = models.CharField(max_length=64, blank=True)
    branch = models.CharField(max_length=255, blank=True)
    commit = models.CharField(max_length=64, blank=True)
    applied_branch = models.CharField(max_length=255, blank=True)
    applied_commit = models.CharField(max_length=64, blank=True)
    undo_commit = models.CharField(max_length=64, blank=True)
    # [{path, backup_id, created}] of the applied files (both set-ups: the writes keep backups)
    backups = models.JSONField(default=list)
    applied_files = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.instruction[:60]} ({self.state})"
