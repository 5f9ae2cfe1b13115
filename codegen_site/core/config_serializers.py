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

    Every field has its help text, and every number its range and, in `units`, the unit it is
    counted in (the schema's `x-unit`, which the Settings page shows beside the field).
    `ceilings` names the fields whose maximum is also a key of [sandbox.ceilings], which the
    deployment sets: read when the serializer is built, so the check and the OpenAPI schema's
    maximum both follow the ceilings in effect."""

    ceilings: dict[str, str] = {}
    units: dict[str, str] = {}

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
    """What SettingsSection enforces, in the schema: at least one setting, no unknown ones; and
    each number's unit as `x-unit`."""

    target_class = SettingsSection
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_basic_serializer(self.target, direction)
        schema["minProperties"] = 1
        schema["additionalProperties"] = False
        for name, unit in self.target.units.items():
            if name in schema.get("properties", {}):
                schema["properties"][name]["x-unit"] = unit
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


def _seconds(help_text: str):
    return StrictFloatField(min_value=0.1, max_value=3600, help_text=help_text)


PROVIDER_HELP = "auto: Ollama when it answers, else the embedded model; or ollama, lm_studio, embedded"
READ_TIMEOUT = "Longest wait between two pieces of an answer"
CONNECT_TIMEOUT = "Longest wait to open a connection"


class LLMSettings(SettingsSection):
    units = {"max_tokens": "tokens"}

    provider = serializers.ChoiceField(choices=config.PROVIDERS, help_text="Which model server answers: " + PROVIDER_HELP)
    temperature = StrictFloatField(min_value=0, max_value=2,
                                   help_text="Sampling temperature: 0 gives the likeliest answer, higher varies more")
    max_tokens = StrictIntegerField(min_value=1, max_value=1_000_000, help_text="Most tokens one answer may take")


class OllamaSettings(SettingsSection):
    units = {"timeout": "seconds", "connect_timeout": "seconds", "min_context_tokens": "tokens",
             "max_context_tokens": "tokens"}

    host = HttpURLField(help_text="Ollama's address (llm.endpoints, set in the TOML, adds more servers)")
    timeout = _seconds(READ_TIMEOUT)
    connect_timeout = _seconds(CONNECT_TIMEOUT)
    min_context_tokens = StrictIntegerField(min_value=256, max_value=1_048_576,
                                            help_text="The smallest num_ctx asked of Ollama")
    max_context_tokens = StrictIntegerField(min_value=256, max_value=1_048_576,
                                            help_text="The largest num_ctx asked of Ollama")


class OpenAICompatibleSettings(SettingsSection):
    units = {"timeout": "seconds", "connect_timeout": "seconds", "context_tokens": "tokens"}

    base_url = HttpURLField(help_text="The OpenAI-compatible address, with its /v1 (LM Studio, vLLM, llama.cpp)")
    api_key = StrictCharField(allow_blank=True, write_only=True, help_text="Sent as a bearer token; blank: none")
    timeout = _seconds(READ_TIMEOUT)
    connect_timeout = _seconds(CONNECT_TIMEOUT)
    context_tokens = StrictIntegerField(min_value=256, max_value=1_048_576,
                                        help_text="The context length the server loaded its models with")


class ModelTiers(SettingsSection):
    simple = StrictCharField(help_text="Model for short, routine requests")
    medium = StrictCharField(help_text="Model for most requests")
    complex = StrictCharField(help_text="Model for long or design-level requests")
    fallback = StrictCharField(help_text="Model tried when the chosen one is missing or fails before answering")


class ModelSettings(SettingsSection):
    defaults = ModelTiers(help_text="Models of every provider, unless its own table names one")
    ollama = ModelTiers(help_text="Ollama's models")
    lm_studio = ModelTiers(help_text="The OpenAI-compatible server's models")
    embedded = ModelTiers(help_text="The bundled model")


class EmbeddingSettings(SettingsSection):
    units = {"batch_size": "texts per request"}

    provider = serializers.ChoiceField(choices=config.PROVIDERS,
                                       help_text="Which server embeds code for search: " + PROVIDER_HELP
                                                 + "; a change rebuilds the index")
    model = StrictCharField(help_text="The Ollama or LM Studio embedding model; a change rebuilds the index")
    batch_size = StrictIntegerField(min_value=1, max_value=4096, help_text="Texts sent in one embedding request")


class LoggingSettings(SettingsSection):
    level = LogLevelField(help_text="The least severe level written to the log")


STAGE_TOKENS = "Most tokens the stage may generate; 0: llm.max_tokens."


class WorkflowSettings(SettingsSection):
    ceilings = {"validation_timeout": "timeout_seconds"}
    units = {"max_repairs": "rounds", "edit_rounds": "rounds", "edit_programs": "programs per round",
             "validation_timeout": "seconds", "plan_max_tokens": "tokens", "tests_max_tokens": "tokens",
             "code_max_tokens": "tokens", "chat_max_tokens": "tokens", "repair_output_chars": "characters",
             "context_code_chars": "characters", "research_top_k": "chunks"}

    max_repairs = StrictIntegerField(min_value=0, max_value=20,
                                     help_text="Repair rounds after the first failing validation")
    edit_rounds = StrictIntegerField(min_value=0, max_value=5,
                                     help_text="Rounds of small edits to a failing program tried before a model "
                                               "repair (0: off)")
    edit_programs = StrictIntegerField(min_value=0, max_value=5000, help_text="Edited programs tried per round")
    validation_timeout = StrictFloatField(min_value=1, max_value=600,
                                          help_text="Wall-clock limit of each sandbox validation run")
    plan_max_tokens = StrictIntegerField(min_value=0, max_value=1_000_000, help_text=STAGE_TOKENS)
    tests_max_tokens = StrictIntegerField(min_value=0, max_value=1_000_000, help_text=STAGE_TOKENS)
    code_max_tokens = StrictIntegerField(min_value=0, max_value=1_000_000, help_text=STAGE_TOKENS)
    chat_max_tokens = StrictIntegerField(min_value=0, max_value=1_000_000, help_text=STAGE_TOKENS)
    repair_output_chars = StrictIntegerField(min_value=0, max_value=1_000_000,
                                             help_text="Failing test output sent back in a repair prompt")
    context_code_chars = StrictIntegerField(min_value=0, max_value=1_000_000,
                                            help_text="The session's previous code put into the prompts")
    research_top_k = StrictIntegerField(min_value=0, max_value=100,
                                        help_text="Code search results added to the prompts (0: no research)")


class RagSettings(SettingsSection):
    units = {"chunk_lines": "lines", "chunk_overlap": "lines", "top_k": "results", "max_file_kb": "KB",
             "fusion_candidates": "candidates per retriever"}

    collection = CollectionNameField(help_text="The Chroma collection the index is kept in")
    chunk_lines = StrictIntegerField(min_value=1, max_value=10_000, help_text="Longest chunk of a file")
    chunk_overlap = StrictIntegerField(min_value=0, max_value=10_000,
                                       help_text="Lines two consecutive pieces of a long block share")
    top_k = StrictIntegerField(min_value=1, max_value=100, help_text="Results of a search that names no top_k")
    max_file_kb = StrictIntegerField(min_value=1, max_value=65_536, help_text="Larger files are not indexed")
    fusion_candidates = StrictIntegerField(min_value=1, max_value=1000,
                                           help_text="Candidates each retriever adds to the hybrid ranking")
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
    units = {"max_concurrent": "runs", "max_waiting": "runs", "cpu_seconds": "seconds", "memory_mb": "MB",
             "max_processes": "processes", "max_file_mb": "MB", "max_open_files": "files",
             "max_output_bytes": "bytes", "disk_mb": "MB"}

    max_concurrent = StrictIntegerField(min_value=1, max_value=256, help_text="Runs at once")
    max_waiting = StrictIntegerField(min_value=0, max_value=10_000,
                                     help_text="Runs queued behind them before a run is refused (429)")
    cpu_seconds = StrictIntegerField(min_value=1, max_value=3600, help_text="CPU time of one run")
    memory_mb = StrictIntegerField(min_value=16, max_value=65_536, help_text="Memory of one run")
    max_processes = StrictIntegerField(min_value=1, max_value=4096, help_text="Processes one run may have")
    max_file_mb = StrictIntegerField(min_value=1, max_value=4096, help_text="Largest file a run may write")
    max_open_files = StrictIntegerField(min_value=16, max_value=65_536, help_text="Files a run may hold open")
    max_output_bytes = StrictIntegerField(min_value=1024, max_value=16 * 1024 * 1024,
                                          help_text="Output kept of a run (the rest is cut)")
    # its tmpfs holds the run's files (4 MB: the few a run starts with fit)
    disk_mb = StrictIntegerField(min_value=4, max_value=65_536, help_text="A run's own disk (its tmpfs)")

    def to_internal_value(self, data):
        if isinstance(data, dict) and "ceilings" in data:
            raise serializers.ValidationError({"ceilings": [
                "Set by the deployment only (config/default.toml or CODEGEN_SANDBOX__CEILINGS__<KEY>), "
                "not through the API."]})
        return super().to_internal_value(data)


class ImproveChangeSettings(SettingsSection):
    """[improve_change]: POST /improve/change (max_repairs_limit is the deployment's, not the API's)."""

    units = {"max_repairs": "rounds", "context_tokens": "tokens", "symbol_map_max_files": "files",
             "whole_file_max_lines": "lines", "max_files": "files",
             "max_tokens": "tokens", "git_timeout": "seconds", "ruff_timeout": "seconds"}

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
                                        help_text="How alike a region must be for a search block to "
                                                  "match it when no exact match exists")
    max_tokens = StrictIntegerField(min_value=0, max_value=1_000_000,
                                    help_text="Answer tokens per model call; 0: the provider's default")
    git_timeout = _seconds("Each git command on the workspace repository")
    ruff_timeout = _seconds("ruff over the changed files")


class EditableConfigSerializer(SettingsSection):
    """What GET /config shows and PATCH /config accepts: application settings, which
    apply to the next request. Deployment settings come from the environment only."""

    llm = LLMSettings(help_text="The model server and its answers")
    ollama = OllamaSettings(help_text="Ollama")
    openai_compatible = OpenAICompatibleSettings(help_text="An OpenAI-compatible server (LM Studio, vLLM, llama.cpp)")
    models = ModelSettings(help_text="The model per task complexity, per provider")
    embeddings = EmbeddingSettings(help_text="The embedder of code search")
    logging = LoggingSettings(help_text="Logging")
    workflow = WorkflowSettings(help_text="The code generation workflow")
    rag = RagSettings(help_text="Code search")
    sandbox = SandboxSettings(help_text="Limits of each sandbox run, under the deployment's ceilings")
    improve_change = ImproveChangeSettings(help_text="Changes to several files from one instruction")


class WorkspaceSerializer(serializers.Serializer):
    root = serializers.CharField(help_text="Every client path resolves inside this folder (CODEGEN_WORKSPACE_ROOT)")


class ConfigViewSerializer(EditableConfigSerializer):
    """GET /config: the editable settings plus the workspace, which the environment sets (read-only)."""

    workspace = WorkspaceSerializer(read_only=True)
