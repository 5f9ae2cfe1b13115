"""/health, /models, /config."""

from __future__ import annotations

from drf_spectacular.plumbing import build_array_type, build_basic_type, build_object_type
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from codegen_site.core import config_store, workspace
from codegen_site.core.apiview import AsyncAPIView
from codegen_site.core.config import dotted_keys, get_config, overridden_by_environment, saved_version
from codegen_site.core.config_serializers import ConfigViewSerializer, EditableConfigSerializer
from codegen_site.core.monitor import monitor
from codegen_site.core.schema import BodyRequiredSchema
from codegen_site.core.serializers import ConfigSavedSerializer, ErrorSerializer, HealthSerializer
from codegen_site.llm import get_llm

ERRORS = {400: ErrorSerializer, 429: ErrorSerializer, 502: ErrorSerializer, 503: ErrorSerializer}


class HealthView(AsyncAPIView):
    throttle_classes: list = []

    @extend_schema(responses={200: HealthSerializer}, summary="Service and LLM backend status",
                   description="Answered from memory: `down` names each shared service (database, cache, "
                               "queue broker) the process's monitor found not answering at its last round, "
                               "and the status is then `degraded`; `settings_version` is the version of the "
                               "saved settings this process applies.")
    async def get(self, request):
        return Response(await health_answer())


async def health_answer() -> dict:
    """/health's body, from memory: the LLM layer's last probe, the monitor's last round, the
    settings version. The server answers GET /health with it before Django's handler
    (codegen_site.asgi.HealthFromMemory); this view answers the test client and other methods."""
    health = await get_llm().health()
    down = monitor().down()
    return {"status": "degraded" if down else "ok", "service": "codegen-ai",
            "llm_provider": health["llm_provider"], "llm_available": health["llm_available"],
            "down": down, "settings_version": saved_version()}


class ModelsQuerySerializer(serializers.Serializer):
    details = serializers.BooleanField(
        required=False, default=False,
        help_text="Each model as {name, capabilities, chat} instead of its name alone")


class ModelDetailSerializer(serializers.Serializer):
    name = serializers.CharField()
    capabilities = serializers.ListField(
        child=serializers.CharField(), allow_null=True,
        help_text="What the provider says the model can do (Ollama's words: completion, embedding, tools, "
                  "thinking, vision, ...); null when the provider does not say")
    chat = serializers.BooleanField(allow_null=True,
                                    help_text="Whether it answers chat requests (null: the provider does not say)")


MODEL_NAMES = build_array_type(build_basic_type(OpenApiTypes.STR))
MODEL_DETAILS = build_array_type(build_object_type(
    properties={"name": build_basic_type(OpenApiTypes.STR),
                "capabilities": {**build_array_type(build_basic_type(OpenApiTypes.STR)), "nullable": True},
                "chat": {**build_basic_type(OpenApiTypes.BOOL), "nullable": True}},
    required=["name", "capabilities", "chat"]))
MODELS_DESCRIPTION = ("Names by default. With details=true, what the provider reports each model can do: "
                      "Ollama's /api/show capabilities, LM Studio's model type; an OpenAI-compatible server "
                      "that says nothing gives null. Reused for llm.models_cache_seconds.")


class ModelsView(AsyncAPIView):
    @extend_schema(parameters=[ModelsQuerySerializer], summary="Models of the active provider",
                   description=MODELS_DESCRIPTION,
                   responses={200: OpenApiResponse({"anyOf": [MODEL_NAMES, MODEL_DETAILS]}), **ERRORS})
    async def get(self, request):
        query = ModelsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        llm = get_llm()
        if not query.validated_data["details"]:
            return Response(await llm.list_models())
        details = await llm.model_details()
        return Response(ModelDetailSerializer(
            [{"name": model.name, "capabilities": None if model.capabilities is None else list(model.capabilities),
              "chat": model.chat} for model in details], many=True).data)


class ConfigView(APIView):
    schema = BodyRequiredSchema()

    @extend_schema(responses={200: ConfigViewSerializer}, summary="Editable settings, as in effect")
    def get(self, request):
        return Response(ConfigViewSerializer({**get_config(), "workspace": {"root": workspace.root()}}).data)

    @extend_schema(request=EditableConfigSerializer, responses={200: ConfigSavedSerializer, 400: ErrorSerializer},
                   summary="Save settings for every server and worker process; they apply to the next request")
    def patch(self, request):
        serializer = EditableConfigSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        patch = serializer.validated_data
        version = config_store.save(patch, author=_author(request), user=_user(request))
        return Response({"ok": True, "message": config_saved_message(patch, version)})


def _user(request):
    """The request's authenticated user (DRF's, or the UI session's the middleware read), or None."""
    for candidate in (getattr(request, "user", None), getattr(getattr(request, "_request", None), "user", None)):
        if getattr(candidate, "is_authenticated", False):
            return candidate
    return None


def _author(request) -> str:
    """Who made a change: the logged-in user's name, else "local" (the single-user mode)."""
    user = _user(request)
    return user.get_username() if user is not None else "local"


def config_saved_message(patch: dict, version: int) -> str:
    """Which of the saved settings are in effect: all but those the environment sets."""
    overridden = overridden_by_environment(patch)
    applied = [key for key in dotted_keys(patch) if key not in overridden]
    message = f"Settings saved (version {version}) for every server and worker process."
    if applied:
        message += f" Applied now, no restart needed: {', '.join(applied)}."
    if overridden:
        message += (f" Not in effect: {', '.join(overridden)} (set in the environment, which takes precedence; "
                    "unset it and restart to use the saved value).")
    return message
