"""Requests the /files views validate and the replies they answer with (built from the
services' results, never by hand in a view)."""

from __future__ import annotations

from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from codegen_site.core.serializers import StrictBooleanField, StrictCharField, StrictIntegerField
from files_app.config import files_settings
from files_app.models import PATH_MAX_LENGTH, Backup

PATH_HELP = "Relative to the workspace root, or absolute inside it"
BACKUP_PATH_HELP = "Where the backup's bytes are stored, relative to the data dir: backups/<sha256[:2]>/<sha256>"


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": PATH_MAX_LENGTH})
class PathField(StrictCharField):
    """A client path as given (checked and resolved by the service)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", PATH_HELP)
        kwargs.setdefault("max_length", PATH_MAX_LENGTH)
        super().__init__(trim_whitespace=False, **kwargs)


@extend_schema_field({"type": "string", "maxLength": PATH_MAX_LENGTH})
class OptionalPathField(PathField):
    """A path that may be left out or blank."""

    def __init__(self, **kwargs):
        super().__init__(required=False, allow_blank=True, **kwargs)


class SucceededField(serializers.BooleanField):
    """A reply's `success`: always true (a failure is an error body, not this reply)."""

    def get_attribute(self, instance) -> bool:
        return True


class NoErrorField(serializers.CharField):
    """A reply's `error`: always null (a failure is an error body, not this reply)."""

    def __init__(self, **kwargs):
        super().__init__(allow_null=True, **kwargs)

    def get_attribute(self, instance) -> None:
        return None


class WriteRequestSerializer(serializers.Serializer):
    path = PathField()
    content = StrictCharField(allow_blank=True, trim_whitespace=False)
    create_backup = StrictBooleanField(default=True, help_text="Back up the current content first")


class WriteResponseSerializer(serializers.Serializer):
    success = SucceededField()
    path = serializers.CharField(help_text="Absolute path of the written file")
    backup_path = serializers.CharField(allow_null=True, help_text=BACKUP_PATH_HELP + "; null when none was taken")
    created = serializers.BooleanField(help_text="True when the file did not exist before")
    error = NoErrorField()


class PathQuerySerializer(serializers.Serializer):
    path = PathField()


class ReadResponseSerializer(serializers.Serializer):
    success = SucceededField()
    path = serializers.CharField(help_text="Absolute path of the file")
    content = serializers.CharField()
    error = NoErrorField()


class BackupSerializer(serializers.ModelSerializer):
    path = serializers.CharField(help_text="The backed-up file, relative to the workspace root")
    backup_path = serializers.CharField(source="stored_path", help_text=BACKUP_PATH_HELP)

    class Meta:
        model = Backup
        fields = ["id", "path", "backup_path", "size", "sha256", "reason", "created_at"]


class BackupListQuerySerializer(serializers.Serializer):
    path = OptionalPathField(help_text="Only this file's backups; " + PATH_HELP.lower())
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=200)


class BackupListSerializer(serializers.Serializer):
    backups = BackupSerializer(many=True)


class RestoreRequestSerializer(serializers.Serializer):
    backup_id = StrictIntegerField(required=False, min_value=1, max_value=2**63 - 1)
    backup_path = StrictCharField(required=False, allow_blank=True, max_length=1024,
                            help_text=BACKUP_PATH_HELP + " (or absolute); blank counts as not given")
    original_path = OptionalPathField(help_text="Restore into this file instead of the one backed up")

    def validate(self, attrs):
        if ("backup_id" in attrs) == bool(attrs.get("backup_path")):
            raise serializers.ValidationError("Give exactly one of backup_id or backup_path")
        return attrs


class RestoreByIdSerializer(serializers.Serializer):
    backup_id = StrictIntegerField(min_value=1, max_value=2**63 - 1)
    backup_path = StrictCharField(required=False, max_length=0, allow_blank=True, help_text="Blank or left out")
    original_path = OptionalPathField(help_text="Restore into this file instead of the one backed up")


class RestoreByPathSerializer(serializers.Serializer):
    backup_path = StrictCharField(min_length=1, max_length=1024, help_text=BACKUP_PATH_HELP + " (or absolute)")
    original_path = OptionalPathField(help_text="Restore into this file instead of the one backed up")


# The documented request: one of the two ways to name a backup.
RESTORE_REQUEST = PolymorphicProxySerializer(
    component_name="RestoreRequest", serializers=[RestoreByIdSerializer, RestoreByPathSerializer],
    resource_type_field_name=None)


class RestoreResponseSerializer(serializers.Serializer):
    success = SucceededField()
    path = serializers.CharField(help_text="Absolute path of the restored file")
    restored_from = serializers.IntegerField(source="restored_from.id",
                                         help_text="Id of the backup now in the file")
    backup_path = serializers.CharField(allow_null=True,
                                        help_text="The content the restore replaced (restore it to undo); "
                                                  "null when the file did not exist")
    backup_id = serializers.IntegerField(allow_null=True, help_text="Id of that backup")
    created = serializers.BooleanField()
    error = NoErrorField()


class TreeQuerySerializer(serializers.Serializer):
    path = OptionalPathField(default=".", help_text="The directory to list (blank: the root); " + PATH_HELP.lower())

    def get_fields(self):
        fields = super().get_fields()
        # The bound comes from config, so the field is built when the serializer is.
        fields["depth"] = serializers.IntegerField(
            required=False, min_value=1, max_value=files_settings().tree_max_depth,
            help_text="Levels listed (default files.tree_depth)")
        return fields


class TreeEntrySerializer(serializers.Serializer):
    name = serializers.CharField()
    path = serializers.CharField(help_text="Relative to the workspace root")
    kind = serializers.ChoiceField(choices=["file", "dir", "symlink", "other"])
    size = serializers.IntegerField(allow_null=True, help_text="Bytes, for files")
    children = serializers.ListField(child=serializers.DictField(), required=False,
                                     help_text="For a listed directory: its entries, each of this same shape")


class TreeSerializer(TreeEntrySerializer):
    truncated = serializers.BooleanField(help_text="True when files.tree_max_entries cut the listing short")
    entries = serializers.IntegerField(help_text="Entries listed")


class DiffQuerySerializer(serializers.Serializer):
    backup_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)


class DiffResponseSerializer(serializers.Serializer):
    backup_id = serializers.IntegerField(source="backup.id")
    path = serializers.CharField(source="relative_path", help_text="Relative to the workspace root")
    diff = serializers.CharField(help_text="Unified diff from the backup (a/) to the current file (b/)")
    changed = serializers.BooleanField()
    current_exists = serializers.BooleanField()
