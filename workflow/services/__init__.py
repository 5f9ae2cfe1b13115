"""Workflow services: intent detection, the TDD pipeline with repair, code execution."""

from workflow.services.code_run import run_code
from workflow.services.intent import classify_intent, template_answer
from workflow.services.pipeline import Workflow, run_workflow, workflow_events, workflow_settings

__all__ = ["Workflow", "classify_intent", "run_code", "run_workflow", "template_answer", "workflow_events",
           "workflow_settings"]
