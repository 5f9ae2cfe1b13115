"""Requests read and answers built: the answers come from the model (a WorkflowRun) or the
sandbox's result, in the reference's shape."""

from rest_framework import serializers

from codegen_site.core.serializers import OptionalUUIDField, StrictCharField, StrictFloatField
from workflow.models import Intent, Verdict, WorkflowRun

MAX_CODE_CHARS = 200_000
MAX_TASK_CHARS = 20_000


class CodeRunRequestSerializer(serializers.Serializer):
    # Blank code is accepted and answered with success=false (as the reference does).
    code = StrictCharField(allow_blank=True, trim_whitespace=False, max_length=MAX_CODE_CHARS)
    tests = StrictCharField(required=False, allow_blank=True, allow_null=True, trim_whitespace=False,
                            max_length=MAX_CODE_CHARS)
    timeout = StrictFloatField(required=False, default=30, min_value=1, max_value=60)


class CodeRunResponseSerializer(serializers.Serializer):
    """From a SandboxResult: exactly the reference's fields."""
    success = serializers.BooleanField()
    output = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_null=True)


class WorkflowRequestSerializer(serializers.Serializer):
    task = StrictCharField(max_length=MAX_TASK_CHARS)
    session_id = OptionalUUIDField(help_text="Session to continue (its previous code goes into the prompts)")


class WorkflowResponseSerializer(serializers.Serializer):
    """From a WorkflowRun: the reply of POST /workflow and the `done` event of its stream."""
    session_id = serializers.UUIDField()
    content = serializers.CharField(allow_blank=True)
    intent_kind = serializers.ChoiceField(choices=Intent.values)
    plan = serializers.CharField(allow_blank=True)
    tests = serializers.CharField(allow_blank=True)
    code = serializers.CharField(allow_blank=True)
    validation_passed = serializers.BooleanField(
        help_text="The kept program passes every counted test; `verdict` says how much that is worth")
    validation_output = serializers.CharField(allow_blank=True)
    attempts = serializers.IntegerField(help_text="Validation runs made (1 + repair rounds); 0 without a pipeline")
    verdict = serializers.ChoiceField(choices=[*Verdict.values, ""],
                                      help_text="How the pipeline ended; empty without a pipeline")
    test_sources = serializers.ListField(child=serializers.DictField(), help_text="Each test's name and origin: "
                                         "task (the task's own examples), llm or smoke")
    suspect_tests = serializers.ListField(child=serializers.CharField(),
                                          help_text="Model tests every candidate failed: set aside, not chased")
    candidates = serializers.IntegerField(help_text="Programs sampled for the first attempt")
    chosen_run = serializers.IntegerField(
        allow_null=True, help_text="The program kept: the 1-based place of its `validation` event in the run "
                                   "(null without a pipeline, or when no program was validated)")
    chosen_candidate = serializers.IntegerField(allow_null=True, help_text="The candidate the kept program is "
                                                                           "(or descends from)")
    chosen_attempt = serializers.IntegerField(allow_null=True, help_text="The attempt that wrote the kept program")
    evidence = serializers.DictField(
        allow_null=True, help_text="What the verdict rests on: tests by origin (task, llm, probe, smoke) with "
                                   "ran/passed, edge inputs and crashes, agreement with other candidates, the "
                                   "mutant check, and the reasons the evidence is weak (null without a pipeline)")

    def to_representation(self, run: WorkflowRun) -> dict:
        report = run.report or {}
        return super().to_representation({
            "session_id": run.session_id, "content": run.content, "intent_kind": run.intent_kind, "plan": run.plan,
            "tests": run.tests, "code": run.code, "validation_passed": run.passed, "validation_output": run.output,
            "attempts": run.attempts, "verdict": report.get("verdict", ""),
            "test_sources": report.get("test_sources", []), "suspect_tests": report.get("suspect_tests", []),
            "candidates": report.get("candidates", 0), "chosen_run": report.get("chosen_run"),
            "chosen_candidate": report.get("chosen_candidate"), "chosen_attempt": report.get("chosen_attempt"),
            "evidence": report.get("evidence")})
