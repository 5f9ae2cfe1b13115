"""Application config: config/default.toml < config/development.toml < the settings saved in the
database (PATCH /config, shared by every process on every host: codegen_site.core.config_store)
< environment.

Environment overrides are named CODEGEN_<SECTION>__<KEY> (nested sections join
with a double underscore too: CODEGEN_MODELS__LM_STUDIO__SIMPLE). Values are
parsed as TOML scalars when they look like one (numbers, booleans), else kept as
strings. A few common names are accepted as aliases (OLLAMA_HOST, LLM_PROVIDER).
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import threading
import tomllib
from pathlib import Path
from typing import Any, Callable

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

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_cache: dict[str, Any] | None = None
_cache_stamp: tuple | None = None
_listeners: list[Callable[[dict, dict], None]] = []
# The settings saved in the database, as this process last read them: (version, values).
# Version 0 is "none saved"; config_store reads them (at start and then every
# monitor.poll_seconds), a PATCH in this process hands them over at once.
_saved: tuple[int, dict] = (0, {})
# Starts the thread that keeps _saved current (set by the core app once Django is ready); called
# again in a forked child (a queue worker), which does not inherit the parent's threads.
_watcher: Callable[[], None] | None = None
_watching_pid: int | None = None


def config_dir() -> Path:
    return _config_paths(os.environ.get("CODEGEN_CONFIG_DIR"))[0]


def default_path() -> Path:
    # The shipped defaults always come from the source tree, even when the
    # writable config dir is elsewhere.
    return BASE_DIR / "config" / "default.toml"


def development_path() -> Path:
    return _config_paths(os.environ.get("CODEGEN_CONFIG_DIR"))[1]


@functools.lru_cache(maxsize=8)
def _config_paths(folder: str | None) -> tuple[Path, Path]:
    # Built once per folder: get_config stats development.toml on every call, and building its
    # path each time cost more than the stat.
    base = Path(folder or BASE_DIR / "config")
    return base, base / "development.toml"


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


def load_config(environ: dict[str, str] | None = None, saved: dict | None = None) -> dict[str, Any]:
    """default.toml < development.toml (a hand-written file of this host, optional) < `saved`
    (the database's settings) < the environment."""
    environ = os.environ if environ is None else environ
    config = _read_toml(default_path())
    config = deep_merge(config, _without_ceilings(_read_toml(development_path())))
    config = deep_merge(config, _without_ceilings(saved or {}))
    config = deep_merge(config, _env_overrides(dict(environ)))
    sandbox = config.get("sandbox", {})
    if "ceilings" in sandbox:
        sandbox.update(within_ceilings(sandbox, sandbox_ceilings(config)))
    return config


# --- ceilings: the most a limit may be, set by the deployment only ------------
# [sandbox.ceilings] in config/default.toml, overridden by CODEGEN_SANDBOX__CEILINGS__<KEY>.
# A ceiling found in development.toml or in the saved settings (what PATCH /config writes) is
# ignored: the API (or anything that can write there) lowers limits, it never lifts them.

def _without_ceilings(development: dict) -> dict:
    if isinstance(development.get("sandbox"), dict) and "ceilings" in development["sandbox"]:
        logger.warning("Ignoring [sandbox.ceilings] in the saved settings: ceilings come from "
                       "config/default.toml or CODEGEN_SANDBOX__CEILINGS__<KEY> only")
        development = {**development, "sandbox": {k: v for k, v in development["sandbox"].items() if k != "ceilings"}}
    return development


def sandbox_ceilings(config: dict | None = None) -> dict[str, int | float]:
    """[sandbox.ceilings], checked: every value a positive number (a deployment's typo stops
    the server at start instead of leaving a limit without its ceiling)."""
    ceilings = (get_config() if config is None else config)["sandbox"]["ceilings"]
    for key, value in ceilings.items():
        if type(value) not in (int, float) or value <= 0:
            raise ValueError(f"sandbox.ceilings.{key} must be a positive number, not {value!r}")
    return ceilings


def within_ceilings(values: dict, ceilings: dict) -> dict:
    """The limits in `values` that are above their ceiling, lowered to it (and logged)."""
    lowered = {}
    for key, ceiling in ceilings.items():
        value = values.get(key)
        if type(value) in (int, float) and value > ceiling:
            logger.warning("sandbox.%s = %s is above its ceiling sandbox.ceilings.%s = %s; %s applies",
                           key, value, key, ceiling, ceiling)
            lowered[key] = type(value)(ceiling)
    return lowered


def _stamp() -> tuple:
    """What identifies the saved settings on disk: a save replaces the file (new inode)."""
    path = development_path()
    try:
        info = os.stat(path)
    except OSError:
        return (path, None)
    return (path, info.st_ino, info.st_mtime_ns, info.st_size)


def get_config() -> dict[str, Any]:
    """The merged config. Built again when development.toml changed or newer saved settings
    arrived (a PATCH /config in this process or any other), so application settings apply
    without a restart; the functions given to `on_reload` then run with the previous and new
    config. Reads no database: the saved settings are in memory (`apply_saved`)."""
    global _cache, _cache_stamp, _watching_pid
    if _watcher is not None and _watching_pid != os.getpid():
        _watching_pid = os.getpid()
        _watcher()
    stamp = (_stamp(), _saved[0])
    with _lock:
        if _cache is not None and stamp == _cache_stamp:
            return _cache
        previous = _cache
        try:
            current = load_config(saved=_saved[1])
        except (tomllib.TOMLDecodeError, OSError):
            if previous is None:
                raise
            # A file broken by hand must not take a running server down: keep
            # what was in effect until the file is fixed (its stamp changes again).
            logger.exception("Could not read %s; keeping the settings in effect", development_path())
            current = previous
        _cache, _cache_stamp = current, stamp
    if previous is not None and current is not previous:
        for listener in list(_listeners):
            listener(previous, current)
    return current


def saved_version() -> int:
    """The version of the saved settings in effect in this process (0: none saved)."""
    return _saved[0]


def apply_saved(version: int, values: dict, force: bool = False) -> bool:
    """Put the database's settings `values` at `version` in effect in this process, when newer
    than those it applies (versions only grow: an older read arriving late changes nothing), or
    whatever the version when `force`d (the process that saved them, a database reset)."""
    global _saved
    with _lock:
        if version == _saved[0] or (version < _saved[0] and not force):
            return False
        _saved = (version, copy.deepcopy(values))
    get_config()
    return True


def forget_saved() -> None:
    """Back to no saved settings in this process (tests: their database rolled back)."""
    global _saved
    with _lock:
        _saved = (0, {})
    get_config()


def watch_with(start: Callable[[], None]) -> None:
    """`start` runs once per process, at its first `get_config` from now on: it starts what keeps
    the saved settings current (codegen_site.core.monitor)."""
    global _watcher, _watching_pid
    _watcher, _watching_pid = start, None


def override(overrides: dict) -> dict:
    """Put `overrides` on top of the config in effect, in this process only (tests, benchmarks);
    it lasts until the saved settings (or development.toml) change. Returns the config it replaced, for `restore`."""
    global _cache
    previous = get_config()
    with _lock:
        _cache = deep_merge(previous, overrides)
    return previous


def restore(config: dict) -> None:
    """Put back a config `override` returned."""
    global _cache
    with _lock:
        _cache = config


def on_reload(listener: Callable[[dict, dict], None]) -> None:
    _listeners.append(listener)


def django_log_level(level: str) -> str:
    # Django's DEBUG output is every SQL query: under DEBUG it stays at INFO.
    return "INFO" if level == "DEBUG" else level


def _apply_log_level(previous: dict, current: dict) -> None:
    level = current["logging"]["level"]
    if level != previous["logging"]["level"]:
        logging.getLogger().setLevel(level)
        logging.getLogger("django").setLevel(django_log_level(level))


on_reload(_apply_log_level)


def overridden_by_environment(patch: dict, environ: dict[str, str] | None = None) -> list[str]:
    """Dotted keys of a patch that the environment sets too (the environment wins)."""
    overrides = _env_overrides(dict(os.environ if environ is None else environ))

    def walk(node: dict, env_node: dict, prefix: str) -> list[str]:
        found = []
        for key, value in node.items():
            if key not in env_node:
                continue
            if isinstance(value, dict) and isinstance(env_node[key], dict):
                found += walk(value, env_node[key], f"{prefix}{key}.")
            else:
                found.append(prefix + key)
        return found

    return walk(patch, overrides, "")


def dotted_keys(patch: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in patch.items():
        keys += dotted_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key]
    return keys
