"""Settings saved in the database (codegen_site.core.config_store): PATCH /config shared by every
process, each change versioned and recorded with its author; two servers saving at once lose no
key; each process's monitor reads the version and what /health says from memory; a shared
service that stops answering is a 503 with its detail."""

from __future__ import annotations

import concurrent.futures
import threading

import httpx
import pytest
from django.db import IntegrityError, InterfaceError, OperationalError

from codegen_site.core import config as app_config
from codegen_site.core import config_store
from codegen_site.core.errors import error_body
from codegen_site.core.models import SavedSettings, SettingsChange
from codegen_site.core.monitor import monitor
from tests.polling import wait_for


def patch(client, body):
    response = client.patch("/config", body, content_type="application/json")
    assert response.status_code == 200, response.json()
    return response.json()["message"]


@pytest.mark.django_db
def test_a_patch_is_saved_merged_versioned_and_recorded_with_its_author(client, admin_client):
    assert "Settings saved (version 1)" in patch(client, {"rag": {"top_k": 7}})
    assert "Settings saved (version 2)" in patch(client, {"rag": {"max_file_kb": 100}})
    assert SavedSettings.objects.get().values == {"rag": {"top_k": 7, "max_file_kb": 100}}
    assert client.get("/config").json()["rag"]["top_k"] == 7
    assert list(SettingsChange.objects.values_list("version", "author", "patch")) == [
        (2, "local", {"rag": {"max_file_kb": 100}}), (1, "local", {"rag": {"top_k": 7}})]
    listing = admin_client.get("/admin/core/settingschange/")
    assert listing.status_code == 200 and "max_file_kb" in listing.content.decode()
    assert admin_client.get("/admin/core/settingschange/add/").status_code == 403  # the record is read-only


@pytest.mark.django_db
def test_settings_saved_elsewhere_apply_at_the_next_refresh_and_an_older_read_changes_nothing(caplog):
    assert app_config.get_config()["rag"]["top_k"] == 5
    # what a PATCH on another host leaves in the database
    SavedSettings.objects.create(pk=1, version=3, values={"rag": {"top_k": 8},
                                                          "sandbox": {"ceilings": {"memory_mb": 10 ** 6}}})
    assert app_config.get_config()["rag"]["top_k"] == 5  # the request path reads no database
    assert config_store.refresh() == 3
    merged = app_config.get_config()
    assert merged["rag"]["top_k"] == 8
    assert merged["sandbox"]["ceilings"]["memory_mb"] == 1024  # a ceiling never comes from saved settings
    assert "Ignoring [sandbox.ceilings]" in caplog.text
    assert not app_config.apply_saved(2, {"rag": {"top_k": 1}})  # a late read of an older version
    assert app_config.get_config()["rag"]["top_k"] == 8


@pytest.mark.timeout(120)
def test_two_servers_patching_different_keys_at_once_both_keep_theirs(live_asgi):
    first, second = live_asgi(), live_asgi()
    start = threading.Barrier(2)

    def send(server, body):
        start.wait(10)
        return httpx.patch(server.url + "/config", json=body, timeout=30)

    rounds = 15
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for round_ in range(1, rounds + 1):
            bodies = [(first, {"rag": {"top_k": round_ + 1}}), (second, {"rag": {"max_file_kb": round_}})]
            answers = list(pool.map(lambda args: send(*args), bodies))
            assert [answer.status_code for answer in answers] == [200, 200], [a.text for a in answers]
            saved = SavedSettings.objects.get().values["rag"]
            assert (saved["top_k"], saved["max_file_kb"]) == (round_ + 1, round_), f"round {round_}"
    assert sorted(SettingsChange.objects.values_list("version", flat=True)) == list(range(1, 2 * rounds + 1))

    def shows_both(server) -> bool:
        shown = httpx.get(server.url + "/config", timeout=10).json()["rag"]
        return (shown["top_k"], shown["max_file_kb"]) == (rounds + 1, rounds)

    for server in (first, second):  # each sees the other's last save within a poll
        wait_for(lambda server=server: shows_both(server), timeout=15, what="both saves in effect")


@pytest.fixture
def dead_redis_cache(settings, unused_port):
    """The default cache pointed at a Redis where nothing listens (refused at once)."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": f"redis://127.0.0.1:{unused_port}/0"}}
    yield
    monitor().forget()


@pytest.mark.django_db
def test_a_cache_that_does_not_answer_is_a_503_and_health_says_degraded(client, dead_redis_cache):
    refused = client.get("/conversations")
    assert refused.status_code == 503
    assert refused.json()["detail"].startswith("Redis is not answering")
    assert client.get("/health").json()["status"] == "ok"  # what the last round saw: no round yet
    down = monitor().check()
    assert list(down) == ["cache"] and "ConnectionError" in down["cache"]
    health = client.get("/health").json()
    assert health["status"] == "degraded" and health["down"] == down


@pytest.mark.django_db
def test_health_is_ok_with_every_part_answering(client):
    assert monitor().check() == {}
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["down"] == {}


@pytest.mark.parametrize("error, status, start", [
    (OperationalError("connection to server at 10.0.0.5 failed"), 503, "The database is not answering"),
    (InterfaceError("connection already closed"), 503, "The database is not answering"),
    (IntegrityError("duplicate key"), 500, "Internal server error"),
])
def test_a_database_that_does_not_answer_is_a_503_not_an_integrity_error(error, status, start):
    answered, body = error_body(error)
    assert answered == status and body["detail"].startswith(start)
