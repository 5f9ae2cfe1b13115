"""/health, /models, /config."""

from __future__ import annotations

from drf_spectacular.plumbing import build_array_type, build_basic_type
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from codegen_site.core import config as app_config
from codegen_site.core.apiview import AsyncAPIView
from codegen_site.core.schema import BodyRequiredSchema
from codegen_site.core.serializers import ConfigSavedSerializer, ErrorSerializer, HealthSerializer
from codegen_site.llm import get_llm

ERRORS = {400: ErrorSerializer, 429: ErrorSerializer, 502: ErrorSerializer, 503: ErrorSerializer}


def _config_patch_schema() -> dict:
    """The body PATCH /config accepts, as app_config.validate_patch checks it."""
    text = {"type": "string", "pattern": r"\S"}
    url = {"type": "string", "pattern": r"^\s*https?://"}
    seconds = {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 3600}

    def section(properties: dict, required: tuple = ()) -> dict:
        schema = {"type": "object", "properties": properties, "additionalProperties": False, "minProperties": 1}
        return {**schema, "required": list(required)} if required else schema

    tiers = section({tier: text for tier in app_config.MODEL_TIERS})
    levels = [*app_config.LOG_LEVELS, *(level.lower() for level in app_config.LOG_LEVELS)]
    return section({
        "llm": section({"provider": {"type": "string", "enum": list(app_config.PROVIDERS)}}, ("provider",)),
        "models": section({group: tiers for group in app_config.MODEL_GROUPS}),
        "embeddings": section({"model": text}, ("model",)),
        "logging": section({"level": {"type": "string", "enum": levels,
                                      "description": "Any letter case"}}, ("level",)),
        "ollama": section({"host": url, "timeout": seconds}),
        "openai_compatible": section({"base_url": url, "api_key": {"type": "string"}, "timeout": seconds}),
    })


class HealthView(AsyncAPIView):
    throttle_classes: list = []

    @extend_schema(responses={200: HealthSerializer}, summary="Service and LLM backend status")
    async def get(self, request):
        health = await get_llm().health()
        return Response({"status": "ok", "service": "codegen-ai", "llm_provider": health["llm_provider"],
                         "llm_available": health["llm_available"]})


class ModelsView(AsyncAPIView):
    @extend_schema(responses={200: build_array_type(build_basic_type(OpenApiTypes.STR)), **ERRORS},
                   summary="Model names of the active provider")
    async def get(self, request):
        return Response(await get_llm().list_models())


class ConfigView(APIView):
    schema = BodyRequiredSchema()

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, summary="Editable settings")
    def get(self, request):
        return Response(app_config.editable_view(app_config.get_config()))

    @extend_schema(request={"application/json": _config_patch_schema()},
                   responses={200: ConfigSavedSerializer, 400: ErrorSerializer},
                   summary="Save settings to config/development.toml")
    def patch(self, request):
        try:
            patch = app_config.validate_patch(request.data)
        except app_config.ConfigError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        app_config.save_development(patch)
        return Response({"ok": True, "message": "Config saved. Restart backend to apply changes."},
                        status=status.HTTP_200_OK)


ENDPOINTS = [
    ("GET", "/health", "service and LLM status"),
    ("GET", "/models", "models of the active provider"),
    ("GET, PATCH", "/config", "editable settings"),
    ("POST", "/chat", "chat, whole answer"),
    ("GET, POST", "/chat/stream", "chat over server-sent events"),
    ("GET", "/conversations", "stored conversations"),
    ("GET, DELETE", "/conversations/{id}", "one conversation"),
    ("POST", "/workflow", "test-first code generation (?stream=true for events)"),
    ("POST", "/code/run", "run Python in the sandbox"),
]


async def index(request):
    """The landing page: LLM status, a streaming chat box, the endpoint list."""
    from django.shortcuts import render

    health = await get_llm().health()
    return render(request, "index.html", {"health": health, "endpoints": ENDPOINTS})
