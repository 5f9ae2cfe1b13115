"""/health, /models, /config, error shapes, throttling, token auth, OpenAPI."""


import pytest
from django.test import override_settings
from rest_framework.settings import api_settings

from codegen_site.core import config as app_config
from codegen_site.core.models import SavedSettings

pytestmark = pytest.mark.django_db


def test_health_reports_ollama_when_it_answers(client, ollama):
    body = client.get("/health").json()
    assert body == {"status": "ok", "service": "codegen-ai", "llm_provider": "ollama", "llm_available": True,
                    "down": {}, "settings_version": 0}


def test_health_reports_unavailable_ollama_without_failing(client, llm_unreachable):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["llm_available"] is False


def test_health_probe_is_cached(client, ollama):
    for _ in range(5):
        client.get("/health")
    probes = [r for r in ollama.requests if r.path == "/api/tags"]
    assert len(probes) == 1


def test_health_auto_without_ollama_is_embedded(client, set_config, llm_unreachable):
    set_config({"llm": {"provider": "auto"}})
    body = client.get("/health").json()
    assert body["llm_provider"] == "embedded"
    assert body["llm_available"] is True  # the bundled model is installed with the project


def test_models_lists_provider_models(client, lm_studio):
    assert client.get("/models").json() == lm_studio.models


def test_models_with_llm_down_is_503_detail(client, llm_unreachable):
    response = client.get("/models")
    assert response.status_code == 503
    assert llm_unreachable.removeprefix("http://") in response.json()["detail"]


def test_models_upstream_error_is_502(client, ollama):
    ollama.listing_status = 500
    response = client.get("/models")
    assert response.status_code == 502
    assert "Ollama" in response.json()["detail"] and ollama.url in response.json()["detail"]


def test_config_get_shape(client):
    body = client.get("/config").json()
    assert set(body["models"]["defaults"]) == {"simple", "medium", "complex", "fallback"}
    assert body["models"]["lm_studio"]["simple"] == "local"
    assert body["llm"]["provider"] in app_config.PROVIDERS
    assert body["logging"]["level"] == "INFO"
    assert "api_key" not in body["openai_compatible"]


def test_config_patch_merges_into_the_saved_settings(client, monkeypatch):
    monkeypatch.delenv("CODEGEN_LLM__PROVIDER")  # the test settings pin it
    assert client.patch("/config", {"rag": {"top_k": 9}, "llm": {"provider": "ollama", "temperature": 0.5}},
                        content_type="application/json").status_code == 200
    response = client.patch("/config", {"llm": {"provider": "lm_studio"}, "logging": {"level": "debug"}},
                            content_type="application/json")
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert "Applied now, no restart needed: llm.provider, logging.level." in response.json()["message"]
    saved = SavedSettings.objects.get().values
    assert saved["rag"]["top_k"] == 9
    assert saved["llm"] == {"provider": "lm_studio", "temperature": 0.5}
    assert saved["logging"]["level"] == "DEBUG"
    # and the merged config reads it back over the defaults
    assert app_config.load_config(environ={}, saved=saved)["llm"]["provider"] == "lm_studio"
    assert app_config.get_config()["llm"]["provider"] == "lm_studio"


def test_config_patch_models_per_provider(client):
    response = client.patch("/config", {"models": {"lm_studio": {"complex": "qwen-32b"}}},
                            content_type="application/json")
    assert response.status_code == 200
    merged = app_config.load_config(environ={}, saved=SavedSettings.objects.get().values)
    assert merged["models"]["lm_studio"]["complex"] == "qwen-32b"
    assert merged["models"]["lm_studio"]["simple"] == "local"


@pytest.mark.parametrize("body, fragment", [
    ({"llm": {"provider": "gpt5-cloud"}}, 'llm: provider: "gpt5-cloud" is not a valid choice'),
    ({"logging": {"level": "LOUD"}}, "logging: level: "),
    ({"colour": {"x": 1}}, "colour: Unknown setting"),
    ({"llm": {"provider": "ollama", "turbo": True}}, "llm: turbo: Unknown setting"),
    ({"models": {"defaults": {"huge": "x"}}}, "models: defaults: huge: Unknown setting"),
    ({"models": {"defaults": {"simple": ""}}}, "models: defaults: simple: This field may not be blank"),
    ({"models": {"defaults": {"simple": 7}}}, "models: defaults: simple: A string is required"),
    ({"ollama": {"host": "ftp://x"}}, "ollama: host: Must start with http://"),
    ({"ollama": {"timeout": "5"}}, "ollama: timeout: "),
    ({"llm": {"temperature": True}}, "llm: temperature: "),
    ({"workflow": {"max_repairs": 2.5}}, "workflow: max_repairs: "),
    ({"workflow": {"edit_rounds": -1}}, "workflow: edit_rounds: Ensure this value is greater than or equal to 0"),
    ({"sandbox": {"uid_base": 1000}}, "sandbox: uid_base: Unknown setting"),
    ({"llm": {}}, "llm: Name at least one setting"),
    ({"llm": None}, "llm: This field may not be null"),
    ({}, "Name at least one setting"),
    ([1, 2], "Expected a dictionary"),
])
def test_config_patch_rejects_bad_input_and_writes_nothing(client, body, fragment):
    response = client.patch("/config", body, content_type="application/json")
    assert response.status_code == 400
    assert fragment in response.json()["detail"]
    assert not SavedSettings.objects.exists()


def test_malformed_json_is_400_detail(client):
    response = client.patch("/config", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_unknown_path_is_json_404(client):
    response = client.get("/no/such/endpoint")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found"}


def test_wrong_method_is_405_detail(client):
    response = client.delete("/health")
    assert response.status_code == 405
    assert "not allowed" in response.json()["detail"]


def test_throttling_gives_429_with_detail(client):
    rates = {**api_settings.DEFAULT_THROTTLE_RATES, "api": "3/minute"}
    with override_settings(REST_FRAMEWORK={**api_settings.user_settings, "DEFAULT_THROTTLE_RATES": rates}):
        codes = [client.get("/config").status_code for _ in range(5)]
        last = client.get("/config")
    assert codes == [200, 200, 200, 429, 429]
    assert "throttled" in last.json()["detail"].lower()
    assert "Retry-After" in last.headers


@pytest.mark.parametrize("path", ["/health", "/config", "/models", "/files/tree"])
def test_a_format_no_renderer_has_is_404_detail_not_500(client, path):
    response = client.get(path, {"format": "xml"})
    assert response.status_code == 404 and response.json()["detail"].startswith("Not found")
    assert client.get(path, {"format": "json"}).status_code == 200


def test_the_rate_window_slides_and_retry_after_names_when_its_oldest_request_leaves(client):
    import time

    rates = {**api_settings.DEFAULT_THROTTLE_RATES, "api": "2/second"}
    with override_settings(REST_FRAMEWORK={**api_settings.user_settings, "DEFAULT_THROTTLE_RATES": rates}):
        first = time.monotonic()
        assert [client.get("/config").status_code for _ in range(2)] == [200, 200]
        refused = client.get("/config")
        assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 1
        time.sleep(max(0.0, first + 1.05 - time.monotonic()))
        assert client.get("/config").status_code == 200  # the first two left the window
        assert client.get("/config").status_code == 200
        assert client.get("/config").status_code == 429


@override_settings(API_TOKEN="s3cret")
def test_api_token_required_when_configured(client):
    assert client.get("/config").status_code == 401
    assert client.get("/config").json()["detail"].startswith("Authentication required")
    assert client.get("/config", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/config", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200
    assert client.get("/health").status_code == 200  # health checks stay open


def test_openapi_schema_lists_every_endpoint(client):
    response = client.get("/api/schema", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/health", "/models", "/config"):
        assert path in paths
    assert "patch" in paths["/config"]


def test_docs_page_is_served_without_cdn(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html and "cdn" not in html.lower()


def test_health_does_not_wait_on_a_slow_llm(client, ollama, set_config):
    set_config({"llm": {"probe_timeout": 0.2}})
    ollama.listing_delay = 2.0
    body = client.get("/health").json()
    assert body["llm_provider"] == "ollama" and body["llm_available"] is False


def test_openapi_schema_is_valid_and_complete():
    """Every endpoint documented without generator warnings, and the schema validates."""
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = out.getvalue()
    for path in ("/health:", "/models:", "/config:", "/chat:", "/chat/stream:", "/conversations:",
                 "/conversations/{conversation_id}:", "/workflow:", "/code/run:"):
        assert f"\n  {path}" in schema, path


def test_landing_page_shows_provider_and_links(client, ollama):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-provider="ollama"' in html and "available" in html
    assert "/api/docs" in html and "/admin/" in html and "/static/codegen.js" in html
    # The endpoint list is the API schema's: every path with its methods.
    for row in ("GET, PATCH /config", "GET, POST /chat/stream", "GET, PATCH, DELETE /conversations/{conversation_id}",
                "POST /workflow", "POST /code/run"):
        assert f"<code>{row}</code>" in html, row


def test_browser_paths_are_read_from_the_routes():
    from codegen_site.routes import browser_paths

    assert browser_paths().exact == {"/", "/login", "/logout"}
    assert browser_paths().prefixes == ("/ui/", "/admin/")
    assert "/admin/chat/conversation/" in browser_paths() and "/chat" not in browser_paths()


@pytest.mark.parametrize("path, field", [("/chat", "message"), ("/code/run", "code"), ("/workflow", "task")])
def test_oversized_body_is_413_detail_not_500(client, path, field, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = client.post(path, {field: "x" * 20_000}, content_type="application/json")
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]


# --- /health under a burst: one probe at a time, a timeout a busy machine can meet ---
def test_a_burst_of_health_checks_after_idle_sends_one_probe_and_reports_the_llm_up(live_asgi, fake_llm):
    import time
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    server = live_asgi({"CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__HOST": fake_llm.url,
                        "CODEGEN_LLM__PROBE_CACHE_SECONDS": "0.5"})
    # Slower than a dropped connection attempt's first retry: the probe must wait it out.
    fake_llm.listing_delay = 1.2

    def probes():
        return len([r for r in fake_llm.requests if r.path == "/api/tags"])

    def burst():
        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(lambda _: httpx.get(server.url + "/health", timeout=10).json(), range(16)))

    for _ in range(2):
        time.sleep(0.6)  # idle: the last answer has gone stale
        before = probes()
        answers = burst()
        assert [answer["llm_available"] for answer in answers] == [True] * 16
        assert probes() - before == 1


async def test_concurrent_callers_share_one_probe_and_one_leaving_does_not_cancel_it(ollama, set_config):
    import asyncio

    from codegen_site.llm import get_llm

    ollama.listing_delay = 0.3
    leaving = asyncio.ensure_future(get_llm().health())
    staying = [asyncio.ensure_future(get_llm().health()) for _ in range(7)]
    await asyncio.sleep(0.05)
    leaving.cancel()
    answers = await asyncio.gather(*staying)
    assert [answer["llm_available"] for answer in answers] == [True] * 7
    assert len([r for r in ollama.requests if r.path == "/api/tags"]) == 1
