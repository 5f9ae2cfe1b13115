"""Application config: config/default.toml < config/development.toml < environment.

Environment overrides are named CODEGEN_<SECTION>__<KEY> (nested sections join
with a double underscore too: CODEGEN_MODELS__LM_STUDIO__SIMPLE). Values are
parsed as TOML scalars when they look like one (numbers, booleans), else kept as
strings. A few common names are accepted as aliases (OLLAMA_HOST, LLM_PROVIDER).
"""

from __future__ import annotations

import copy
import os
import tempfile
import threading
import tomllib
from pathlib import Path
from typing import Any

import tomlkit

BASE_DIR = Path(__file__).resolve().parent.parent.parent
ENV_PREFIX = "CODEGEN_"
ENV_ALIASES = {
    "OLLAMA_HOST": ("ollama", "host"),
    "LLM_PROVIDER": ("llm", "provider"),
    "LM_STUDIO_URL": ("openai_compatible", "base_url"),
    "LOG_LEVEL": ("logging", "level"),
}

PROVIDERS = ("auto", "ollama", "lm_studio", "embedded")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MODEL_TIERS = ("simple", "medium", "complex", "fallback")
MODEL_GROUPS = ("defaults", "ollama", "lm_studio", "embedded")

_lock = threading.Lock()
_cache: dict[str, Any] | None = None


def config_dir() -> Path:
    return Path(os.environ.get("CODEGEN_CONFIG_DIR") or BASE_DIR / "config")


def default_path() -> Path:
    # The shipped defaults always come from the source tree, even when the
    # writable config dir is elsewhere.
    return BASE_DIR / "config" / "default.toml"


def development_path() -> Path:
    return config_dir() / "development.toml"


def deep_merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _parse_scalar(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _env_overrides(environ: dict[str, str]) -> dict:
    overrides: dict = {}

    def put(path: tuple[str, ...], raw: str) -> None:
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _parse_scalar(raw)

    for name, path in ENV_ALIASES.items():
        if environ.get(name):
            put(path, environ[name])
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX):].split("__") if part)
        if len(path) >= 2:
            put(path, raw)
    return overrides


def _read_toml(path: Path) -> dict:
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        return tomllib.load(handle)


def load_config(environ: dict[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    config = _read_toml(default_path())
    config = deep_merge(config, _read_toml(development_path()))
    return deep_merge(config, _env_overrides(dict(environ)))


def get_config() -> dict[str, Any]:
    """The merged config, read once per process (PATCH /config needs a restart)."""
    global _cache
    with _lock:
        if _cache is None:
            _cache = load_config()
        return _cache


def reload_config() -> dict[str, Any]:
    global _cache
    with _lock:
        _cache = None
    return get_config()


# --- the editable part (GET/PATCH /config) ---------------------------------

class ConfigError(ValueError):
    pass


def editable_view(config: dict[str, Any]) -> dict[str, Any]:
    models = config.get("models", {})
    return {
        "llm": {"provider": config["llm"]["provider"]},
        "models": {group: dict(models[group]) for group in MODEL_GROUPS if group in models},
        "embeddings": {"model": config["embeddings"]["model"]},
        "logging": {"level": config["logging"]["level"]},
        "ollama": {"host": config["ollama"]["host"], "timeout": config["ollama"]["timeout"]},
        "openai_compatible": {
            "base_url": config["openai_compatible"]["base_url"],
            "timeout": config["openai_compatible"]["timeout"],
        },
    }


def _require_str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a non-empty string")
    return value.strip()


def _require_timeout(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise ConfigError(f"{where} must be a number of seconds between 0 and 3600")
    return float(value)


def _require_url(value: Any, where: str) -> str:
    url = _require_str(value, where)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where} must start with http:// or https://")
    return url.rstrip("/")


def validate_patch(patch: Any) -> dict[str, Any]:
    """Check a PATCH body against the editable keys; return it normalised."""
    if not isinstance(patch, dict) or not patch:
        raise ConfigError("Body must be a non-empty JSON object")

    def section(name: str, allowed: tuple[str, ...]) -> dict:
        body = patch[name]
        if not isinstance(body, dict) or not body:
            raise ConfigError(f"'{name}' must be a non-empty object")
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise ConfigError(f"Unknown key(s) in '{name}': {', '.join(unknown)}")
        return body

    clean: dict[str, Any] = {}
    handlers = {"llm", "models", "embeddings", "logging", "ollama", "openai_compatible"}
    unknown = sorted(set(patch) - handlers)
    if unknown:
        raise ConfigError(f"Unknown config section(s): {', '.join(unknown)}")

    if "llm" in patch:
        provider = section("llm", ("provider",)).get("provider")
        if provider not in PROVIDERS:
            raise ConfigError(f"Unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}")
        clean["llm"] = {"provider": provider}
    if "models" in patch:
        groups = section("models", MODEL_GROUPS)
        clean["models"] = {}
        for group, tiers in groups.items():
            if not isinstance(tiers, dict) or not tiers:
                raise ConfigError(f"'models.{group}' must be a non-empty object")
            bad = sorted(set(tiers) - set(MODEL_TIERS))
            if bad:
                raise ConfigError(f"Unknown key(s) in 'models.{group}': {', '.join(bad)}")
            clean["models"][group] = {
                tier: _require_str(name, f"models.{group}.{tier}") for tier, name in tiers.items()
            }
    if "embeddings" in patch:
        body = section("embeddings", ("model",))
        clean["embeddings"] = {"model": _require_str(body.get("model"), "embeddings.model")}
    if "logging" in patch:
        level = section("logging", ("level",)).get("level")
        if not isinstance(level, str) or level.upper() not in LOG_LEVELS:
            raise ConfigError(f"Unknown log level {level!r}; expected one of {', '.join(LOG_LEVELS)}")
        clean["logging"] = {"level": level.upper()}
    if "ollama" in patch:
        body = section("ollama", ("host", "timeout"))
        clean["ollama"] = {}
        if "host" in body:
            clean["ollama"]["host"] = _require_url(body["host"], "ollama.host")
        if "timeout" in body:
            clean["ollama"]["timeout"] = _require_timeout(body["timeout"], "ollama.timeout")
    if "openai_compatible" in patch:
        body = section("openai_compatible", ("base_url", "api_key", "timeout"))
        clean["openai_compatible"] = {}
        if "base_url" in body:
            clean["openai_compatible"]["base_url"] = _require_url(body["base_url"], "openai_compatible.base_url")
        if "api_key" in body:
            if not isinstance(body["api_key"], str):
                raise ConfigError("openai_compatible.api_key must be a string")
            clean["openai_compatible"]["api_key"] = body["api_key"]
        if "timeout" in body:
            clean["openai_compatible"]["timeout"] = _require_timeout(body["timeout"], "openai_compatible.timeout")
    return clean


def _merge_into_document(document: tomlkit.TOMLDocument | dict, patch: dict) -> None:
    for key, value in patch.items():
        if isinstance(value, dict):
            if key not in document or not isinstance(document[key], dict):
                document[key] = tomlkit.table()
            _merge_into_document(document[key], value)
        else:
            document[key] = value


def save_development(patch: dict[str, Any]) -> Path:
    """Merge a validated patch into development.toml, keeping every other key
    and comment; the write is atomic so a crash never leaves half a file."""
    path = development_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock:
        document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
        _merge_into_document(document, patch)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".development.", suffix=".toml")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(tomlkit.dumps(document))
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    return path
