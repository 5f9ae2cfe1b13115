"""Workflow services: intent detection, the TDD pipeline with repair, code execution."""

from workflow.config import settings_for
from workflow.services.code_run import run_code
from workflow.services.intent import classify_intent, template_answer
from workflow.services.pipeline import run_workflow, workflow_events

__all__ = ["classify_intent", "run_code", "run_workflow", "settings_for", "template_answer", "workflow_events"]
