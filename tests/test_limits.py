"""Limits with ceilings: every number PATCH /config takes has a range, the sandbox limits are capped
by ceilings only the deployment sets."""

from __future__ import annotations

import logging

import pytest
from rest_framework import serializers

from codegen_site import sandbox
from codegen_site.core import config as app_config
from codegen_site.core.serializers import EditableConfigSerializer
from codegen_site.sandbox import run_python

pytestmark = pytest.mark.timeout(120)


def patch(client, body):
    return client.patch("/config", body, content_type="application/json")


def numeric_fields(serializer, prefix=""):
    for name, field in serializer.fields.items():
        if isinstance(field, serializers.Serializer):
            yield from numeric_fields(field, f"{prefix}{name}.")
        elif isinstance(field, (serializers.IntegerField, serializers.FloatField)):
            yield prefix + name, field


# --- ranges and ceilings in PATCH /config ------------------------------------------

def test_every_number_patch_config_takes_has_a_range():
    fields = dict(numeric_fields(EditableConfigSerializer()))
    assert "sandbox.max_processes" in fields and "workflow.validation_timeout" in fields
    unbounded = [name for name, field in fields.items() if field.min_value is None or field.max_value is None]
    assert unbounded == []


@pytest.mark.parametrize("body, fragment", [
    ({"sandbox": {"max_processes": 100000}},
     "sandbox: max_processes: Above the ceiling sandbox.ceilings.max_processes = 256"),
    ({"sandbox": {"memory_mb": 4096}}, "sandbox: memory_mb: Above the ceiling sandbox.ceilings.memory_mb = 1024"),
    ({"sandbox": {"max_processes": 562949953421311}}, "sandbox: max_processes: Above the ceiling"),
    ({"sandbox": {"disk_mb": 1025}}, "sandbox: disk_mb: Above the ceiling sandbox.ceilings.disk_mb = 1024"),
    ({"sandbox": {"ceilings": {"memory_mb": 8192}}}, "sandbox: ceilings: Set by the deployment only"),
    ({"sandbox": {"memory_mb": 256, "ceilings": {"memory_mb": 8192}}}, "sandbox: ceilings: Set by the deployment"),
    ({"workflow": {"validation_timeout": 601}},
     "workflow: validation_timeout: Above the ceiling sandbox.ceilings.timeout_seconds = 600"),
    ({"workflow": {"repair_output_chars": 10 ** 9}}, "workflow: repair_output_chars: Ensure this value is less"),
    ({"rag": {"max_file_kb": 10 ** 9}}, "rag: max_file_kb: Ensure this value is less than or equal to"),
])
def test_a_patch_out_of_range_or_touching_ceilings_is_400_and_writes_nothing(client, body, fragment):
    response = patch(client, body)
    assert response.status_code == 400
    assert fragment in response.json()["detail"]
    assert not app_config.development_path().exists()


def test_a_patch_at_the_ceiling_is_saved_and_in_effect(client):
    response = patch(client, {"sandbox": {"memory_mb": 1024, "max_processes": 256, "disk_mb": 64}})
    assert response.status_code == 200, response.json()
    shown = client.get("/config").json()["sandbox"]
    assert (shown["memory_mb"], shown["max_processes"], shown["disk_mb"]) == (1024, 256, 64)
    assert "ceilings" not in shown


def test_ceilings_lowered_by_the_deployment_cap_patches_and_the_schema(client, set_config):
    set_config({"sandbox": {"ceilings": {"memory_mb": 300}}})
    response = patch(client, {"sandbox": {"memory_mb": 512}})
    assert response.status_code == 400
    assert "sandbox.ceilings.memory_mb = 300" in response.json()["detail"]
    schema = client.get("/api/schema?format=json").json()
    assert schema["components"]["schemas"]["SandboxSettings"]["properties"]["memory_mb"]["maximum"] == 300
    assert patch(client, {"sandbox": {"memory_mb": 300}}).status_code == 200


def test_values_saved_above_a_ceiling_are_lowered_and_logged(caplog):
    # what a schema fuzzer left behind, and ceilings written where the API writes (ignored)
    app_config.development_path().parent.mkdir(parents=True, exist_ok=True)
    app_config.development_path().write_text(
        "[sandbox]\nmax_processes = 562949953421311\nmemory_mb = 4096\n\n"
        "[sandbox.ceilings]\nmax_processes = 1000000\nmemory_mb = 8192\n")
    with caplog.at_level(logging.WARNING, logger="codegen_site.core.config"):
        merged = app_config.load_config(environ={})
    assert (merged["sandbox"]["max_processes"], merged["sandbox"]["memory_mb"]) == (256, 1024)
    assert merged["sandbox"]["ceilings"]["memory_mb"] == 1024
    assert "Ignoring [sandbox.ceilings]" in caplog.text
    assert "sandbox.max_processes = 562949953421311 is above its ceiling" in caplog.text
    # the deployment's environment sets a ceiling (and may lift it)
    merged = app_config.load_config(environ={"CODEGEN_SANDBOX__CEILINGS__MEMORY_MB": "2048"})
    assert merged["sandbox"]["memory_mb"] == 2048


def test_a_ceiling_that_is_not_a_positive_number_stops_the_load():
    with pytest.raises(ValueError, match="sandbox.ceilings.memory_mb must be a positive number"):
        app_config.load_config(environ={"CODEGEN_SANDBOX__CEILINGS__MEMORY_MB": "lots"})


RLIMITS = "import resource\nprint(resource.getrlimit(resource.RLIMIT_AS)[0] >> 20, resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"


def test_a_run_under_limits_saved_above_their_ceilings_gets_the_ceilings():
    app_config.save_development({"sandbox": {"max_processes": 100000, "memory_mb": 4096}})
    result = run_python(RLIMITS)
    assert result.success, result.output  # not "Exit code 125": nothing above a ceiling reaches the runner
    assert result.output.split()[0] == "1024"
    with sandbox.override_limits(max_open_files=10 ** 6):  # in-process overrides are held too
        assert run_python(RLIMITS).output.split()[1] == "1024"


def test_a_timeout_longer_than_the_ceiling_is_cut_to_it(set_config):
    set_config({"sandbox": {"ceilings": {"timeout_seconds": 1}}})
    result = run_python("import time\ntime.sleep(30)\n", timeout=30)
    assert result.timed_out and result.error == "Timed out after 1 s"
