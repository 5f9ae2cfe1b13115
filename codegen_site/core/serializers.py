from rest_framework import serializers


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
