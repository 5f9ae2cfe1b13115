"""Serializers and fields shared by every app, and what the schema says of them."""


from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# Whitespace alone is blank too (DRF's trim_whitespace says the same).
HAS_TEXT = RegexValidator(r"\S", "This field may not be blank.")
# What the schema says of a StrictCharField: no NUL (DRF refuses it in every
# CharField) and, unless blank is allowed, a character other than whitespace.
# The server checks the two rules separately (linear time); as one pattern they
# are documentation only. A blank-allowed field's pattern leaves "" out: the
# schema generator adds the empty string as its own oneOf branch.
TEXT_PATTERN = r"^[^\u0000]+$"
NON_BLANK_TEXT_PATTERN = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"


class StrictCharField(serializers.CharField):
    """A JSON string only. DRF's CharField turns 123 into "123"; where the schema
    says string, a number, list or object is a 400.

    Unless allow_blank, the text needs a character other than whitespace; the
    schema says so (minLength 1 and a pattern) instead of a client finding out."""

    default_error_messages = {"invalid": "A string is required."}
    # A subclass that checks a narrower pattern names it here, for the schema.
    schema_pattern: str | None = None

    def __init__(self, **kwargs):
        if not kwargs.get("allow_blank", False):
            kwargs.setdefault("min_length", 1)
            kwargs["validators"] = [*kwargs.get("validators", ()), HAS_TEXT]
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharFieldSchema(OpenApiSerializerFieldExtension):
    """Puts the text pattern on every StrictCharField in the OpenAPI schema."""

    target_class = StrictCharField
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        schema["pattern"] = (self.target.schema_pattern
                             or (TEXT_PATTERN if self.target.allow_blank else NON_BLANK_TEXT_PATTERN))
        return schema


@extend_schema_field({"oneOf": [{"type": "string", "format": "uuid"}, {"type": "string", "maxLength": 0}],
                      "nullable": True})
class OptionalUUIDField(serializers.UUIDField):
    """A UUID string, or empty / null meaning "none given" (start a new one)."""

    def __init__(self, **kwargs):
        super().__init__(**{"required": False, "allow_null": True, **kwargs})

    def to_internal_value(self, data):
        if data in ("", None):
            return None
        if not isinstance(data, str):
            self.fail("invalid", value=data)  # DRF would read 42 as UUID(int=42)
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: not "5", 5.0 or true, which DRF's IntegerField accepts."""

    def to_internal_value(self, data):
        if type(data) is not int:
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A JSON number only: not "5" or true, which DRF's FloatField accepts."""

    def to_internal_value(self, data):
        if type(data) not in (int, float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean only: not 0, 1, "true" or "yes", which DRF's BooleanField accepts.
    For JSON bodies; a query string's booleans are text, so query fields keep DRF's."""

    default_error_messages = {"invalid": "A boolean (true or false) is required."}

    def to_internal_value(self, data):
        if type(data) is not bool:
            self.fail("invalid")
        return data


class StreamFlagSerializer(serializers.Serializer):
    """`?stream=true`: the endpoint answers with server-sent events instead of one JSON reply."""

    stream = serializers.BooleanField(required=False, default=False,
                                      help_text="Stream the run as server-sent events")


class HealthSerializer(serializers.Serializer):
    status = serializers.CharField()
    service = serializers.CharField()
    llm_provider = serializers.CharField()
    llm_available = serializers.BooleanField()
    down = serializers.DictField(child=serializers.CharField(), required=False,
                                 help_text="Each shared service not answering (database, cache, queue broker), "
                                           "with what it answered")
    settings_version = serializers.IntegerField(
        required=False, help_text="The saved settings' version this process applies (0: none saved)")


class ConfigSavedSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
