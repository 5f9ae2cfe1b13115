"""The editable settings (GET / PATCH /config): one serializer per config section, every
number with its range and every sandbox limit under its deployment ceiling."""

import re

from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers
from rest_framework.settings import api_settings

from codegen_site.core import config
from codegen_site.core.serializers import (
    StrictCharField,
    StrictFloatField,
    StrictIntegerField,
)

# Every field is optional (a PATCH names only what it changes) and takes only its
# own JSON type (the Strict* fields of codegen_site.core.serializers).

# An HttpURLField: http:// or https://, then a host (not "/" or blank). The server
# checks this very pattern (linear: no nested repeats) and the schema documents it.
HTTP_URL_PATTERN = r"^https?://[^/\s\u0000][^\u0000]*$"
HTTP_URL = re.compile(HTTP_URL_PATTERN)


class HttpURLField(StrictCharField):
    """An http:// or https:// URL with a host; trailing slashes are dropped. Taken as
    given (no trimming), so that what the pattern accepts is what is stored."""

    schema_pattern = HTTP_URL_PATTERN

    def __init__(self, **kwargs):
        super().__init__(**{"trim_whitespace": False, **kwargs})

    def to_internal_value(self, data):
        url = super().to_internal_value(data)
        if not HTTP_URL.match(url):
            raise serializers.ValidationError("Must start with http:// or https:// and a host.")
        return url.rstrip("/")


# A Chroma collection name, as Chroma takes it (3-63 characters, alphanumeric at both ends),
# without the periods Chroma also allows (no ".." or IPv4 look-alike to rule out): a pattern
# the schema can state and the server checks, instead of a 500 from Chroma at the next index.
COLLECTION_PATTERN = r"^[a-zA-Z0-9](?:[a-zA-Z0-9_-]*[a-zA-Z0-9])?$"


class CollectionNameField(StrictCharField):
    schema_pattern = COLLECTION_PATTERN

    def __init__(self, **kwargs):
        validators = [*kwargs.pop("validators", ()), RegexValidator(
            COLLECTION_PATTERN, "Letters, digits, _ and -, starting and ending with a letter or digit.")]
        super().__init__(**{"min_length": 3, "max_length": 63, "trim_whitespace": False, **kwargs},
                         validators=validators)


class LogLevelField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(choices=config.LOG_LEVELS, **kwargs)

    def to_internal_value(self, data):
        return super().to_internal_value(data.upper() if isinstance(data, str) else data)


class SettingsSection(serializers.Serializer):
    """A table of settings: unknown keys are an error naming them, an empty table too.

    Every number has a range. `ceilings` names the fields whose maximum is also a key of
    [sandbox.ceilings], which the deployment sets: read when the serializer is built, so the
    check and the OpenAPI schema's maximum both follow the ceilings in effect."""

    ceilings: dict[str, str] = {}

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False

    def get_fields(self):
        fields = super().get_fields()
        if self.ceilings:
            ceilings = config.sandbox_ceilings()
            for name, key in self.ceilings.items():
                fields[name] = _capped(fields[name], key, ceilings[key])
        return fields

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["Unknown setting."] for key in unknown})
            if not data:
                raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: ["Name at least one setting."]})
        return super().to_internal_value(data)


class SettingsSectionSchema(OpenApiSerializerExtension):
    """What SettingsSection enforces, in the schema: at least one setting, no unknown ones."""

    target_class = SettingsSection
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        schema["minProperties"] = 1
        schema["additionalProperties"] = False
        return schema


def _capped(field: serializers.Field, key: str, ceiling: int | float) -> serializers.Field:
    """`field` again, its maximum lowered to the ceiling, with a message naming the ceiling."""
    if field.max_value is not None and field.max_value < ceiling:
        return field
    ceiling = int(ceiling) if isinstance(field, serializers.IntegerField) else ceiling
    message = (f"Above the ceiling sandbox.ceilings.{key} = {ceiling}, which only the deployment sets "
               f"(config/default.toml or CODEGEN_SANDBOX__CEILINGS__{key.upper()}).")
    return type(field)(min_value=field.min_value, max_value=ceiling, help_text=field.help_text,
                       error_messages={"max_value": message})


def _seconds():
    return StrictFloatField(min_value=0.1, max_value=3600)



class LLMSettings(SettingsSection):
    provider = serializers.ChoiceField(choices=config.PROVIDERS)
    temperature = StrictFloatField(min_value=0, max_value=2)
    max_tokens = StrictIntegerField(min_value=1, max_value=1_000_000)


class OllamaSettings(SettingsSection):
    host = HttpURLField()
    timeout = _seconds()
    connect_timeout = _seconds()
    min_context_tokens = StrictIntegerField(min_value=256, max_value=1_048_576,
                                            help_text="The smallest num_ctx asked of Ollama (tokens)")
    max_context_tokens = StrictIntegerField(min_value=256, max_value=1_048_576,
                                            help_text="The largest num_ctx asked of Ollama (tokens)")


class OpenAICompatibleSettings(SettingsSection):
    base_url = HttpURLField()
    api_key = StrictCharField(allow_blank=True, write_only=True)
    timeout = _seconds()
    connect_timeout = _seconds()
    context_tokens = StrictIntegerField(min_value=256, max_value=1_048_576,
                                        help_text="The context length the server loaded its models with (tokens)")


class ModelTiers(SettingsSection):
    simple = StrictCharField()
    medium = StrictCharField()
    complex = StrictCharField()
    fallback = StrictCharField()


class ModelSettings(SettingsSection):
    defaults = ModelTiers()
    ollama = ModelTiers()
    lm_studio = ModelTiers()
    embedded = ModelTiers()


class EmbeddingSettings(SettingsSection):
    provider = serializers.ChoiceField(choices=config.PROVIDERS)
    model = StrictCharField()
    batch_size = StrictIntegerField(min_value=1, max_value=4096)


class LoggingSettings(SettingsSection):
    level = LogLevelField()


STAGE_TOKENS = "Most tokens the stage may generate; 0: llm.max_tokens."


class WorkflowSettings(SettingsSection):
    ceilings = {"validation_timeout": "timeout_seconds"}

    max_repairs = StrictIntegerField(min_value=0, max_value=20)
    edit_rounds = StrictIntegerField(min_value=0, max_value=5)
    edit_programs = StrictIntegerField(min_value=0, max_value=5000)
    validation_timeout = StrictFloatField(min_value=1, max_value=600)
    plan_max_tokens = StrictIntegerField(min_value=0, max_value=1_000_000, help_text=STAGE_TOKENS)
    tests_max_tokens = StrictIntegerField(min_value=0, max_value=1_000_000, help_text=STAGE_TOKENS)
    code_max_tokens = StrictIntegerField(min_value=0, max_value=1_000_000, help_text=STAGE_TOKENS)
    chat_max_tokens = StrictIntegerField(min_value=0, max_value=1_000_000, help_text=STAGE_TOKENS)
    repair_output_chars = StrictIntegerField(min_value=0, max_value=1_000_000)
    context_code_chars = StrictIntegerField(min_value=0, max_value=1_000_000)
    research_top_k = StrictIntegerField(min_value=0, max_value=100)


class RagSettings(SettingsSection):
    collection = CollectionNameField()
    chunk_lines = StrictIntegerField(min_value=1, max_value=10_000)
    chunk_overlap = StrictIntegerField(min_value=0, max_value=10_000)
    top_k = StrictIntegerField(min_value=1, max_value=100)
    max_file_kb = StrictIntegerField(min_value=1, max_value=65_536)
    fusion_candidates = StrictIntegerField(min_value=1, max_value=1000)
    min_score = StrictFloatField(min_value=0, max_value=1,
                                 help_text="Search scores are 0-1; below this a chunk is no match (0: no cut-off)")
    vector_weight = StrictFloatField(min_value=0, max_value=1, help_text="Share of the vector score in hybrid")
    name_weight = StrictFloatField(min_value=0, max_value=1,
                                   help_text="Share in hybrid of the lexical score of a chunk's path and symbols")
    vector_floor = StrictFloatField(min_value=0, max_value=0.99,
                                    help_text="The cosine's lift over unrelated text that scores 0")
    vector_ceiling = StrictFloatField(min_value=0.01, max_value=1,
                                      help_text="The cosine's lift over unrelated text that scores 1")
    index_suffixes = serializers.ListField(child=StrictCharField(max_length=64), max_length=1000,
                                           help_text="Suffixes of the files indexed (empty: every text file)")
    skip_suffixes = serializers.ListField(child=StrictCharField(max_length=64), max_length=1000,
                                          help_text="Name endings never indexed (.po, .lock, .min.js, ...)")
    skip_names = serializers.ListField(child=StrictCharField(max_length=255), max_length=1000,
                                       help_text="Whole file names never indexed (package-lock.json, ...)")


class SandboxSettings(SettingsSection):
    """The limits read at every run (not those fixed when the runner starts), each held
    under its ceiling; the ceilings themselves are not settings the API can change."""

    ceilings = {name: name for name in ("max_concurrent", "max_waiting", "cpu_seconds", "memory_mb", "max_processes",
                                        "max_file_mb", "max_open_files", "max_output_bytes", "disk_mb")}

    max_concurrent = StrictIntegerField(min_value=1, max_value=256)
    max_waiting = StrictIntegerField(min_value=0, max_value=10_000)
    cpu_seconds = StrictIntegerField(min_value=1, max_value=3600)
    memory_mb = StrictIntegerField(min_value=16, max_value=65_536)
    max_processes = StrictIntegerField(min_value=1, max_value=4096)
    max_file_mb = StrictIntegerField(min_value=1, max_value=4096)
    max_open_files = StrictIntegerField(min_value=16, max_value=65_536)
    max_output_bytes = StrictIntegerField(min_value=1024, max_value=16 * 1024 * 1024)
    # its tmpfs holds the run's files (4 MB: the few a run starts with fit)
    disk_mb = StrictIntegerField(min_value=4, max_value=65_536)

    def to_internal_value(self, data):
        if isinstance(data, dict) and "ceilings" in data:
            raise serializers.ValidationError({"ceilings": [
                "Set by the deployment only (config/default.toml or CODEGEN_SANDBOX__CEILINGS__<KEY>), "
                "not through the API."]})
        return super().to_internal_value(data)


class ImproveChangeSettings(SettingsSection):
    """[improve_change]: POST /improve/change (max_repairs_limit is the deployment's, not the API's)."""

    max_repairs = StrictIntegerField(min_value=0, max_value=20,
                                     help_text="Repairs after the first attempt when a request names none "
                                               "(at most improve_change.max_repairs_limit)")
    context_tokens = StrictIntegerField(min_value=0, max_value=1_048_576,
                                        help_text="Project files put before the model; 0: all the model's "
                                                  "window leaves")
    symbol_map_max_files = StrictIntegerField(min_value=1, max_value=100_000,
                                              help_text="Python files the symbol map reads")
    whole_file_max_lines = StrictIntegerField(min_value=1, max_value=100_000,
                                              help_text="Files up to this many lines are asked for whole, "
                                                        "longer ones as search/replace blocks")
    max_files = StrictIntegerField(min_value=1, max_value=200, help_text="Most files one change may touch")
    near_match_ratio = StrictFloatField(min_value=0.5, max_value=1.0,
                                        help_text="How alike (0..1) a region must be for a search block to "
                                                  "match it when no exact match exists")
    max_tokens = StrictIntegerField(min_value=0, max_value=1_000_000,
                                    help_text="Answer tokens per model call; 0: the provider's default")
    git_timeout = _seconds()
    ruff_timeout = _seconds()


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
    improve_change = ImproveChangeSettings()


class WorkspaceSerializer(serializers.Serializer):
    root = serializers.CharField(help_text="Every client path resolves inside this folder (CODEGEN_WORKSPACE_ROOT)")


class ConfigViewSerializer(EditableConfigSerializer):
    """GET /config: the editable settings plus the workspace, which the environment sets (read-only)."""

    workspace = WorkspaceSerializer(read_only=True)
