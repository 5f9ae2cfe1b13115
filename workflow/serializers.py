from rest_framework import serializers

MAX_CODE_CHARS = 200_000
MAX_TASK_CHARS = 20_000


class CodeRunRequestSerializer(serializers.Serializer):
    # Blank code is accepted and answered with success=false (as the reference does).
    code = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=MAX_CODE_CHARS)
    tests = serializers.CharField(required=False, allow_blank=True, allow_null=True, trim_whitespace=False,
                                  max_length=MAX_CODE_CHARS)
    timeout = serializers.FloatField(required=False, default=30, min_value=1, max_value=60)

    def validate_timeout(self, value):
        if isinstance(self.initial_data.get("timeout"), bool):
            raise serializers.ValidationError("A number of seconds is required.")
        return value


class CodeRunResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    output = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_null=True)


class WorkflowRequestSerializer(serializers.Serializer):
    task = serializers.CharField(max_length=MAX_TASK_CHARS)
    session_id = serializers.UUIDField(required=False, allow_null=True)

    def to_internal_value(self, data):
        if isinstance(data, dict) and data.get("session_id") == "":
            data = {k: v for k, v in data.items() if k != "session_id"}
        if isinstance(data, dict) and data.get("session_id") is not None and not isinstance(data["session_id"], str):
            # DRF would read 42 as UUID(int=42); ids are strings.
            raise serializers.ValidationError({"session_id": ["Must be a valid UUID string."]})
        return super().to_internal_value(data)


class WorkflowResponseSerializer(serializers.Serializer):
    session_id = serializers.UUIDField()
    content = serializers.CharField(allow_blank=True)
    intent_kind = serializers.ChoiceField(choices=["greeting", "help", "chat", "code"])
    plan = serializers.CharField(allow_blank=True)
    tests = serializers.CharField(allow_blank=True)
    code = serializers.CharField(allow_blank=True)
    validation_passed = serializers.BooleanField()
    validation_output = serializers.CharField(allow_blank=True)
    attempts = serializers.IntegerField(help_text="Validation runs made (1 + repair rounds); 0 without a pipeline")
    verdict = serializers.ChoiceField(choices=["passed", "failed", "out_of_time", "unverified", ""],
                                      help_text="How the pipeline ended; empty without a pipeline")
    test_sources = serializers.ListField(child=serializers.DictField(), help_text="Each test's name and origin: "
                                         "task (the task's own examples), llm or smoke")
    suspect_tests = serializers.ListField(child=serializers.CharField(),
                                          help_text="Model tests every candidate failed: set aside, not chased")
    candidates = serializers.IntegerField(help_text="Programs sampled for the first attempt")
