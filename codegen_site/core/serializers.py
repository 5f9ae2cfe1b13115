from rest_framework import serializers
from rest_framework.settings import api_settings

from codegen_site.core import config


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


# --- the editable settings (GET / PATCH /config) ------------------------------
# Every field is optional (a PATCH names only what it changes) and takes only its
# own JSON type: DRF would turn 5 into "5" for a string and "5" into 5 for a number.

class _JSONTypeMixin:
    json_types: tuple[type, ...] = ()

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, self.json_types):
            self.fail("invalid")
        return super().to_internal_value(data)


class StringField(_JSONTypeMixin, serializers.CharField):
    json_types = (str,)
    default_error_messages = {"invalid": "A string is required."}


class IntegerSetting(_JSONTypeMixin, serializers.IntegerField):
    json_types = (int,)


class NumberSetting(_JSONTypeMixin, serializers.FloatField):
    json_types = (int, float)


class HttpURLField(StringField):
    def to_internal_value(self, data):
        url = super().to_internal_value(data)
        if not url.startswith(("http://", "https://")):
            raise serializers.ValidationError("Must start with http:// or https://.")
        return url.rstrip("/")


class LogLevelField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(choices=config.LOG_LEVELS, **kwargs)

    def to_internal_value(self, data):
        return super().to_internal_value(data.upper() if isinstance(data, str) else data)


class SettingsSection(serializers.Serializer):
    """A table of settings: unknown keys are an error naming them, an empty table too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["Unknown setting."] for key in unknown})
            if not data:
                raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: ["Name at least one setting."]})
        return super().to_internal_value(data)


def _seconds():
    return NumberSetting(min_value=0.1, max_value=3600)



class LLMSettings(SettingsSection):
    provider = serializers.ChoiceField(choices=config.PROVIDERS)
    temperature = NumberSetting(min_value=0, max_value=2)
    max_tokens = IntegerSetting(min_value=1, max_value=1_000_000)


class OllamaSettings(SettingsSection):
    host = HttpURLField()
    timeout = _seconds()
    connect_timeout = _seconds()


class OpenAICompatibleSettings(SettingsSection):
    base_url = HttpURLField()
    api_key = StringField(allow_blank=True, write_only=True)
    timeout = _seconds()
    connect_timeout = _seconds()


class ModelTiers(SettingsSection):
    simple = StringField()
    medium = StringField()
    complex = StringField()
    fallback = StringField()


class ModelSettings(SettingsSection):
    defaults = ModelTiers()
    ollama = ModelTiers()
    lm_studio = ModelTiers()
    embedded = ModelTiers()


class EmbeddingSettings(SettingsSection):
    model = StringField()


class LoggingSettings(SettingsSection):
    level = LogLevelField()


STAGE_TOKENS = "Most tokens the stage may generate; 0: llm.max_tokens."


class WorkflowSettings(SettingsSection):
    max_repairs = IntegerSetting(min_value=0, max_value=20)
    validation_timeout = NumberSetting(min_value=1, max_value=600)
    plan_max_tokens = IntegerSetting(min_value=0, help_text=STAGE_TOKENS)
    tests_max_tokens = IntegerSetting(min_value=0, help_text=STAGE_TOKENS)
    code_max_tokens = IntegerSetting(min_value=0, help_text=STAGE_TOKENS)
    chat_max_tokens = IntegerSetting(min_value=0, help_text=STAGE_TOKENS)
    repair_output_chars = IntegerSetting(min_value=0)
    context_code_chars = IntegerSetting(min_value=0)
    research_top_k = IntegerSetting(min_value=0, max_value=100)


class RagSettings(SettingsSection):
    collection = StringField()
    chunk_lines = IntegerSetting(min_value=1)
    chunk_overlap = IntegerSetting(min_value=0)
    top_k = IntegerSetting(min_value=1, max_value=100)


class SandboxSettings(SettingsSection):
    """The limits read at every run (not those fixed when the runner starts)."""

    max_concurrent = IntegerSetting(min_value=1, max_value=256)
    max_waiting = IntegerSetting(min_value=0, max_value=10_000)
    cpu_seconds = IntegerSetting(min_value=1, max_value=3600)
    memory_mb = IntegerSetting(min_value=16)
    max_processes = IntegerSetting(min_value=1)
    max_file_mb = IntegerSetting(min_value=1)
    max_open_files = IntegerSetting(min_value=16)
    max_output_bytes = IntegerSetting(min_value=1024)


class EditableConfigSerializer(SettingsSection):
    """What GET /config shows and PATCH /config accepts: application settings, which
    apply to the next request. Deployment settings come from the environment only."""

    llm = LLMSettings()
    ollama = OllamaSettings()
    openai_compatible = OpenAICompatibleSettings()
    models = ModelSettings()
    embeddings = EmbeddingSettings()
    logging = LoggingSettings()
    workflow = WorkflowSettings()
    rag = RagSettings()
    sandbox = SandboxSettings()
