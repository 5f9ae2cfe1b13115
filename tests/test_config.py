"""Config layering: default.toml < development.toml < environment."""

import pytest

from codegen_site.core import config as app_config
from codegen_site.llm import classify_task, get_llm


def test_environment_overrides_toml_with_typed_values(tmp_path, monkeypatch):
    (tmp_path / "config").mkdir(exist_ok=True)
    app_config.development_path().write_text('[ollama]\nhost = "http://dev:11434"\ntimeout = 10.0\n')
    environ = {
        "CODEGEN_OLLAMA__TIMEOUT": "42.5",
        "CODEGEN_WORKFLOW__MAX_REPAIRS": "7",
        "CODEGEN_MODELS__LM_STUDIO__COMPLEX": "qwen-32b",
        "CODEGEN_LLM__PROVIDER": "lm_studio",
        "UNRELATED": "x",
    }
    merged = app_config.load_config(environ=environ)
    assert merged["ollama"] == {**merged["ollama"], "host": "http://dev:11434", "timeout": 42.5}
    assert merged["workflow"]["max_repairs"] == 7
    assert merged["models"]["lm_studio"]["complex"] == "qwen-32b"
    assert merged["models"]["lm_studio"]["simple"] == "local"  # sibling keys survive
    assert merged["llm"]["provider"] == "lm_studio"


def test_short_aliases():
    merged = app_config.load_config(environ={"OLLAMA_HOST": "http://gpu-box:11434", "LLM_PROVIDER": "ollama"})
    assert merged["ollama"]["host"] == "http://gpu-box:11434"
    assert merged["llm"]["provider"] == "ollama"


def test_shipped_defaults_have_every_section():
    merged = app_config.load_config(environ={})
    for section in ("llm", "ollama", "openai_compatible", "models", "embeddings", "rag", "persistence",
                    "workflow", "security", "logging", "sandbox", "embedded"):
        assert section in merged, section
    assert merged["llm"]["provider"] == "auto"
    for group in ("defaults", "lm_studio"):
        assert set(merged["models"][group]) == {"simple", "medium", "complex", "fallback"}


def test_per_provider_models_override_defaults(set_config):
    set_config({"models": {"defaults": {"simple": "a", "medium": "b", "complex": "c", "fallback": "d"},
                           "ollama": {"complex": "big"}}})
    llm = get_llm()
    assert llm.models_for("ollama") == {"simple": "a", "medium": "b", "complex": "big", "fallback": "d"}
    assert llm.candidates("ollama", tier="complex") == ["big", "d"]
    assert llm.candidates("ollama", tier="fallback") == ["d"]


@pytest.mark.parametrize("task, tier", [
    ("hello", "simple"),
    ("Напиши функцию факториала", "simple"),
    ("reverse a string", "simple"),
    ("Write a function that parses ISO dates and returns datetime objects with timezone support", "medium"),
    ("Refactor this module for performance and make the cache thread-safe under concurrency", "complex"),
    ("Спроектируй архитектуру распределённого кэша", "complex"),
    ("Build a CLI:\n1. read a CSV\n2. validate rows\n3. write JSON\n4. report errors\n5. add tests", "medium"),
])
def test_complexity_router(task, tier):
    assert classify_task(task) == tier


def test_long_requests_are_complex():
    assert classify_task("implement the following " + "requirement and detail " * 80) == "complex"
