"""Serializers and fields shared by every app."""

from django.core.validators import RegexValidator
from rest_framework import serializers

# Whitespace alone is blank too (DRF's trim_whitespace says the same).
HAS_TEXT = RegexValidator(r"\S", "This field may not be blank.")


class StrictCharField(serializers.CharField):
    """A JSON string only. DRF's CharField turns 123 into "123"; where the schema
    says string, a number, list or object is a 400.

    Unless allow_blank, the text needs a character other than whitespace, and
    the schema says so (minLength 1, pattern \\S) instead of a client finding out."""

    def __init__(self, **kwargs):
        if not kwargs.get("allow_blank", False):
            kwargs.setdefault("min_length", 1)
            kwargs["validators"] = [*kwargs.get("validators", ()), HAS_TEXT]
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
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

class HealthSerializer(serializers.Serializer):
    status = serializers.CharField()
    service = serializers.CharField()
    llm_provider = serializers.CharField()
    llm_available = serializers.BooleanField()


class ConfigSavedSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
