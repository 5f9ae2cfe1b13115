"""One row per /workflow request: what was asked, what each stage produced, the verdict."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Intent(models.TextChoices):
    """What a /workflow request is (workflow.services.intent decides)."""
    GREETING = "greeting", "Greeting"
    HELP = "help", "Help"
    CHAT = "chat", "Chat"  # a general question: one answer
    CODE = "code", "Code"  # a coding task: the TDD pipeline


class Verdict(models.TextChoices):
    """How a pipeline ended (WorkflowRun.report["verdict"]); every run that reaches its end has one."""
    PASSED = "passed", "Passed"  # every counted test passes and the checks beyond them found nothing weak
    # every counted test passes, but that is all the evidence: the suite also passes a broken
    # variant of the program, the program crashes on an edge input, or candidates disagree
    PASSED_EXAMPLES_ONLY = "passed_examples_only", "Passed its examples only"
    FAILED = "failed", "Failed"  # repairs used up with tests still failing
    OUT_OF_TIME = "out_of_time", "Out of time"  # the wall-clock limit ended the run with tests still failing
    UNVERIFIED = "unverified", "Unverified"  # no usable tests: only a smoke test could run


class WorkflowRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"  # answered; for code: the tests passed
        FAILED = "failed", "Failed"  # the pipeline finished but the tests never passed
        CANCELLED = "cancelled", "Cancelled"  # the client went away mid-run
        ERROR = "error", "Error"  # LLM or sandbox error stopped the run

    session_id = models.UUIDField(default=uuid.uuid4, db_index=True)
    # The user it belongs to in multi-user mode (codegen_site.core.users); null in the single-user
    # mode and for older rows, which then only admins see.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    task = models.TextField()
    intent_kind = models.CharField(max_length=16, choices=Intent.choices, db_index=True)
    content = models.TextField(blank=True, default="")
    plan = models.TextField(blank=True, default="")
    tests = models.TextField(blank=True, default="")
    code = models.TextField(blank=True, default="")
    passed = models.BooleanField(default=False)
    output = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    error = models.TextField(blank=True, default="")
    # verdict, where each test came from, dropped and suspect tests, every candidate's score
    report = models.JSONField(default=dict, blank=True)
    # stage -> model name that answered it
    models_used = models.JSONField(default=dict, blank=True)
    # stage -> seconds (plus "total")
    timings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["session_id", "-created_at"], name="workflow_session_recent")]

    def __str__(self) -> str:
        return f"{self.intent_kind} {self.status}: {self.task[:60]}"
