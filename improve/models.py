"""Stored analyses (one row per POST /improve/analyze) and the per-file result cache behind them."""

from __future__ import annotations

from django.db import models


class AnalysisReport(models.Model):
    path = models.CharField(max_length=1024, help_text="The analysed path, relative to the workspace root")
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
