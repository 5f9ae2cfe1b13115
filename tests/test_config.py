"""Config layering: default.toml < development.toml < saved settings < environment; PATCH /config
applied live (the saved settings' store and several servers saving at once: test_settings_store)."""

import logging

import pytest

from codegen_site.core import config as app_config
from codegen_site.core.models import SavedSettings
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


# --- live config: PATCH /config applies to the next request --------------------
def patch_config(client, body):
    response = client.patch("/config", body, content_type="application/json")
    assert response.status_code == 200, response.json()
    return response.json()["message"]


def ask(client, message="hello"):
    response = client.post("/chat", {"message": message}, content_type="application/json")
    assert response.status_code == 200, response.json()
    return response.json()


@pytest.fixture
def llm_from_environment(fake_llm, monkeypatch):
    """Both wire formats of the scripted server reachable; the provider left to PATCH /config."""
    monkeypatch.delenv("CODEGEN_LLM__PROVIDER")  # the test settings pin it
    monkeypatch.setenv("CODEGEN_OLLAMA__HOST", fake_llm.url)
    monkeypatch.setenv("CODEGEN_OPENAI_COMPATIBLE__BASE_URL", fake_llm.openai_url)
    return fake_llm


@pytest.fixture
def restore_log_levels():
    loggers = [logging.getLogger(), logging.getLogger("django")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.mark.django_db
def test_patched_log_level_is_shown_and_applied(client, restore_log_levels):
    message = patch_config(client, {"logging": {"level": "error"}})
    assert "Applied now, no restart needed: logging.level." in message
    assert client.get("/config").json()["logging"] == {"level": "ERROR"}
    assert logging.getLogger().level == logging.ERROR
    assert logging.getLogger("django").level == logging.ERROR
    patch_config(client, {"logging": {"level": "DEBUG"}})
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("django").level == logging.INFO  # its DEBUG is every SQL query


@pytest.mark.django_db
def test_patched_model_for_simple_tasks_is_asked_for_on_the_next_chat(client, llm_from_environment):
    patch_config(client, {"llm": {"provider": "ollama"}})
    assert ask(client)["model"] == "qwen2.5-coder:7b"
    llm_from_environment.models.append("tiny-coder:1b")
    patch_config(client, {"models": {"defaults": {"simple": "tiny-coder:1b"}}})
    assert client.get("/config").json()["models"]["defaults"]["simple"] == "tiny-coder:1b"
    assert ask(client)["model"] == "tiny-coder:1b"
    assert [body["model"] for body in llm_from_environment.chat_requests] == ["qwen2.5-coder:7b", "tiny-coder:1b"]


@pytest.mark.django_db
def test_patched_provider_switches_on_the_next_request(client, llm_from_environment):
    def chat_paths():  # the chat requests (a model's context length is looked up with POST /api/show first)
        return [r.path for r in llm_from_environment.requests if r.path in ("/api/chat", "/v1/chat/completions")]

    patch_config(client, {"llm": {"provider": "ollama"}})
    assert client.get("/health").json()["llm_provider"] == "ollama"
    ask(client)
    assert chat_paths() == ["/api/chat"]
    message = patch_config(client, {"llm": {"provider": "lm_studio"}})
    assert "Applied now, no restart needed: llm.provider." in message
    assert client.get("/health").json()["llm_provider"] == "lm_studio"
    assert ask(client)["model"] == "local"  # the lm_studio model table
    assert chat_paths() == ["/api/chat", "/v1/chat/completions"]


@pytest.mark.django_db
def test_patch_names_the_settings_the_environment_overrides(client, monkeypatch, restore_log_levels):
    monkeypatch.setenv("CODEGEN_LLM__PROVIDER", "embedded")
    message = patch_config(client, {"llm": {"provider": "ollama"}, "logging": {"level": "WARNING"}})
    assert "Applied now, no restart needed: logging.level." in message
    assert "Not in effect: llm.provider (set in the environment" in message
    assert client.get("/config").json()["llm"]["provider"] == "embedded"  # what is in effect
    assert SavedSettings.objects.get().values["llm"]["provider"] == "ollama"


def test_a_development_file_written_by_hand_is_seen_on_the_next_read():
    assert app_config.get_config()["rag"]["top_k"] == 5
    app_config.development_path().parent.mkdir(parents=True, exist_ok=True)
    app_config.development_path().write_text("[rag]\ntop_k = 7\n")
    assert app_config.get_config()["rag"]["top_k"] == 7


def test_a_development_file_broken_by_hand_keeps_the_settings_in_effect(caplog):
    app_config.development_path().parent.mkdir(parents=True, exist_ok=True)
    app_config.development_path().write_text("[rag]\ntop_k = 7\n")
    assert app_config.get_config()["rag"]["top_k"] == 7
    app_config.development_path().write_text("[rag\ntop_k = ")
    assert app_config.get_config()["rag"]["top_k"] == 7
    assert "keeping the settings in effect" in caplog.text
    app_config.development_path().write_text("[rag]\ntop_k = 8\n")
    assert app_config.get_config()["rag"]["top_k"] == 8


def test_get_config_shows_the_workspace_root_and_patch_cannot_change_it(client, settings, tmp_path):
    settings.WORKSPACE_ROOT = tmp_path
    assert client.get("/config").json()["workspace"] == {"root": str(tmp_path.resolve())}
    response = client.patch("/config", {"workspace": {"root": "/"}}, content_type="application/json")
    assert response.status_code == 400


@pytest.mark.django_db
def test_every_setting_has_help_and_every_quantity_its_unit(client):
    """What the Settings page shows beside each field: the schema's description, and x-unit."""
    schema = client.get("/api/schema", {"format": "json"}).json()
    components = schema["components"]["schemas"]

    def resolve(node):
        while "$ref" in node or len(node.get("allOf", [])) == 1:
            node = components[node["$ref"].split("/")[-1]] if "$ref" in node else node["allOf"][0]
        return node

    leaves = {}

    def walk(node, prefix):
        for key, prop in resolve(node).get("properties", {}).items():
            name = f"{prefix}.{key}" if prefix else key
            resolved = resolve(prop)
            if "properties" in resolved:
                walk(resolved, name)
            else:
                leaves[name] = {**resolved, **prop}

    walk(components["PatchedEditableConfig"], "")
    assert len(leaves) > 60
    missing = sorted(name for name, leaf in leaves.items() if not leaf.get("description", "").strip())
    assert not missing, f"settings without help: {missing}"
    units = {name: leaf.get("x-unit") for name, leaf in leaves.items()}
    for name, unit in units.items():
        key = name.split(".")[-1]
        if key.endswith("timeout"):
            assert unit == "seconds", name
        if key.endswith("_tokens"):
            assert unit == "tokens", name
        if key.endswith("_mb"):
            assert unit == "MB", name
    assert units["sandbox.max_output_bytes"] == "bytes" and units["rag.chunk_lines"] == "lines"
    assert leaves["ollama.timeout"]["description"].startswith("Longest wait")
