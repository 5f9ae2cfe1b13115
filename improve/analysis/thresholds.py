"""The thresholds of the file checks ([improve] settings), declared once: the typed settings
(improve.config.AnalysisSettings) and the limits sent to the worker processes
(checks.CheckLimits) both extend it. Standard library only: the workers import it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    complexity_medium: int
    complexity_high: int
    complexity_critical: int
    max_function_lines: int
    max_parameters: int
    max_class_methods: int
    duplicate_min_lines: int
    maintainability_min: float
