from rest_framework import serializers

from codegen_site.core.config import get_config

# --- improvement runs and the queue -------------------------------------------------------

MAX_ISSUE_CHARS = 20_000


class IssueSerializer(serializers.Serializer):
    message = serializers.CharField(max_length=MAX_ISSUE_CHARS)
    severity = serializers.ChoiceField(choices=["low", "medium", "high", "critical"], required=False,
                                       default="medium")
    issue_type = serializers.CharField(max_length=64, required=False, default="general")
    line = serializers.IntegerField(min_value=1, required=False, allow_null=True)


class ImproveRunRequestSerializer(serializers.Serializer):
    file_path = serializers.CharField(max_length=4096)
    issue = IssueSerializer()
    auto_write = serializers.BooleanField(required=False, default=True)
    max_retries = serializers.IntegerField(required=False, min_value=0)

    def validate_max_retries(self, value):
        limit = int(get_config()["improve_run"]["max_retries_limit"])
        if value > limit:
            raise serializers.ValidationError(f"At most {limit} (improve_run.max_retries_limit).")
        return value


class ImproveRunResponseSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    file_path = serializers.CharField()
    backup_path = serializers.CharField(allow_null=True, help_text="Backup of the replaced content (when written)")
    validation_output = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_null=True)
    retries = serializers.IntegerField(help_text="Attempts after the first")
    run_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=["running", "proposed", "applied", "failed"])
    written = serializers.BooleanField()
    diff = serializers.CharField(allow_blank=True, help_text="Unified diff of the proposal against the file as read")
    proposed_content = serializers.CharField(allow_null=True, help_text="The proposal, while not written")
    attempts = serializers.IntegerField()


class ImproveApplyRequestSerializer(serializers.Serializer):
    run_id = serializers.UUIDField()


class QueueAddRequestSerializer(ImproveRunRequestSerializer):
    pass


class QueueAddResponseSerializer(serializers.Serializer):
    task_id = serializers.UUIDField()
    status = serializers.CharField()


class QueueTaskSerializer(serializers.Serializer):
    task_id = serializers.UUIDField()
    file_path = serializers.CharField()
    issue = serializers.DictField()
    options = serializers.DictField()
    status = serializers.ChoiceField(choices=["pending", "running", "completed", "failed", "cancelled"])
    step = serializers.CharField(allow_blank=True)
    progress = serializers.FloatField(min_value=0, max_value=1)
    attempts = serializers.IntegerField()
    result = ImproveRunResponseSerializer(allow_null=True)
    error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()


class QueueWorkersSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=["managed", "external"],
                                   help_text="managed: the server starts one qcluster; external: they run on their own")
    broker = serializers.ChoiceField(choices=["orm", "redis"])
    cluster_pid = serializers.IntegerField(allow_null=True)


class QueueStatusSerializer(serializers.Serializer):
    running = serializers.BooleanField(help_text="Workers may take tasks (after start, until stop)")
    total_tasks = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    pending = serializers.IntegerField()
    in_progress = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    current_task = QueueTaskSerializer(allow_null=True)
    tasks = QueueTaskSerializer(many=True)
    workers = QueueWorkersSerializer()


class QueueStartSerializer(serializers.Serializer):
    running = serializers.BooleanField()
    enqueued = serializers.IntegerField(help_text="Pending tasks handed to the workers")
    workers = QueueWorkersSerializer()


class QueueStopSerializer(serializers.Serializer):
    running = serializers.BooleanField()
    in_progress = serializers.IntegerField(help_text="Tasks still finishing")


class QueueClearSerializer(serializers.Serializer):
    cleared = serializers.IntegerField()
