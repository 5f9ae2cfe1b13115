from rest_framework import serializers


class OptionalUUIDField(serializers.UUIDField):
    """A UUID string, or empty / null for "none given" (a new conversation, a new session).

    Only strings: DRF's UUIDField would read the number 42 as UUID(int=42)."""

    def to_internal_value(self, data):
        if data in ("", None):
            return None
        if not isinstance(data, str):
            self.fail("invalid", value=data)
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
