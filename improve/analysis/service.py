"""Transitional: tests/test_scaled_setup.py runs `from improve.analysis.service import analyze_sync`
in a child process. The analysis's orchestration lives in improve.services.analysis; delete this
module once that test imports it from there."""

from improve.services.analysis import analyze_sync

__all__ = ["analyze_sync"]
