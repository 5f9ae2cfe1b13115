"""The app served by daphne (as `make run` does): health over a real socket, static files, env config."""

import httpx


def test_daphne_serves_health_and_reads_config_from_environment(live_asgi, fake_llm):
    server = live_asgi({"CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__HOST": fake_llm.url})
    body = httpx.get(server.url + "/health").json()
    assert body == {"status": "ok", "service": "codegen-ai", "llm_provider": "ollama", "llm_available": True,
                    "down": {}, "settings_version": 0}
    assert httpx.get(server.url + "/models").json() == fake_llm.models


def test_static_files_are_served_for_admin_and_docs(live_asgi):
    server = live_asgi()
    assert httpx.get(server.url + "/static/admin/css/base.css").status_code == 200
    docs = httpx.get(server.url + "/api/docs")
    assert docs.status_code == 200
    asset = [part.split('"')[0] for part in docs.text.split('src="')[1:] if "swagger-ui" in part][0]
    assert httpx.get(server.url + asset).status_code == 200
