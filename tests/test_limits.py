"""Limits with ceilings: every number PATCH /config takes has a range, the sandbox limits are capped
by ceilings only the deployment sets, and a run's processes share memory_mb and max_processes (a
cgroup per run)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from rest_framework import serializers

from codegen_site import sandbox
from codegen_site.core import config as app_config
from codegen_site.core.config_serializers import EditableConfigSerializer
from codegen_site.core.models import SavedSettings
from codegen_site.sandbox import _cgroup, run_python

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
@pytest.mark.django_db
def test_a_patch_out_of_range_or_touching_ceilings_is_400_and_writes_nothing(client, body, fragment):
    response = patch(client, body)
    assert response.status_code == 400
    assert fragment in response.json()["detail"]
    assert not SavedSettings.objects.exists()


@pytest.mark.django_db
def test_a_patch_at_the_ceiling_is_saved_and_in_effect(client):
    response = patch(client, {"sandbox": {"memory_mb": 1024, "max_processes": 256, "disk_mb": 64}})
    assert response.status_code == 200, response.json()
    shown = client.get("/config").json()["sandbox"]
    assert (shown["memory_mb"], shown["max_processes"], shown["disk_mb"]) == (1024, 256, 64)
    assert "ceilings" not in shown


@pytest.mark.django_db
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
    # saved settings above the ceilings (from before a deployment lowered them)
    app_config.apply_saved(app_config.saved_version() + 1, {"sandbox": {"max_processes": 100000, "memory_mb": 4096}})
    result = run_python(RLIMITS)
    assert result.success, result.output  # not "Exit code 125": nothing above a ceiling reaches the runner
    assert result.output.split()[0] == "1024"
    with sandbox.override_limits(max_open_files=10 ** 6):  # in-process overrides are held too
        assert run_python(RLIMITS).output.split()[1] == "1024"


def test_a_timeout_longer_than_the_ceiling_is_cut_to_it(set_config):
    set_config({"sandbox": {"ceilings": {"timeout_seconds": 1}}})
    result = run_python("import time\ntime.sleep(30)\n", timeout=30)
    assert result.timed_out and result.error == "Timed out after 1 s"


# --- one run, one cgroup --------------------------------------------------------------

def hog(processes: int, megabytes: int) -> str:
    """Processes that each take and touch `megabytes`, then report their exit statuses."""
    return (
        "import os, time\n"
        "children = []\n"
        f"for _ in range({processes}):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        f"        block = bytearray({megabytes} * 1024 * 1024)\n"
        "        for at in range(0, len(block), 4096):\n"
        "            block[at] = 1\n"
        "        time.sleep(0.5)\n"
        "        os._exit(0)\n"
        "    children.append(pid)\n"
        "print('statuses', [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children])\n"
    )


@pytest.fixture
def per_run_cgroup():
    version = sandbox.run_cgroup()
    if version is None:
        pytest.skip(f"no usable cgroup here: {sandbox.runner._get_zygote().hello['cgroup_note']}")
    return version


def zygote_groups(pid: int) -> list[Path]:
    """The groups a zygote made for its runs (one per hierarchy), found as _cgroup finds its own."""
    own = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            own[controller] = path
    found = []
    for point, root, kind, options in _cgroup._mounts():
        key = "" if kind == "cgroup2" else next((c for c in _cgroup.CONTROLLERS if c in options), None)
        if key is not None and key in own:
            found += Path(_cgroup._own_dir(point, root, own[key])).glob(f"{_cgroup.PREFIX}{pid}-*")
    return found


@pytest.mark.parametrize("audit_hook", [False, True], ids=["namespaces", "without-namespaces"])
def test_six_processes_of_200_mb_are_one_run_over_memory_mb_512(per_run_cgroup, audit_hook):
    with sandbox.override_limits(memory_mb=512, force_audit_hook=audit_hook):
        within = run_python(hog(2, 200), timeout=30)
        over = run_python(hog(6, 200), timeout=30)
    assert within.success and within.output == "statuses [0, 0]\n", within.output
    # each process alone is under RLIMIT_AS (512 MB); together they are not, and the run ends whole
    assert not over.success and "statuses" not in over.output
    assert over.error == "Memory limit exceeded (512 MB for the run's processes together)"
    assert run_python("print('next run')").output == "next run\n"


FORK_TREE = (
    "import os, time\n"
    "while True:\n"
    "    if os.fork() == 0:  # each child starts one of its own too, where it still can\n"
    "        print('forked', flush=True)\n"
    "        try:\n"
    "            if os.fork() == 0:\n"
    "                print('forked', flush=True)\n"
    "        except OSError:\n"
    "            pass\n"
    "        time.sleep(5)\n"
    "        os._exit(0)\n"
)


def test_a_run_that_forks_past_max_processes_in_total_is_stopped(per_run_cgroup):
    with sandbox.override_limits(max_processes=8):
        result = run_python(FORK_TREE, timeout=30)
    assert not result.success and not result.timed_out
    assert result.output.count("forked") <= 7  # the run's first process is one of the 8
    assert result.error.startswith("Exit code 1 (BlockingIOError)")
    assert result.error.endswith("the run reached its process limit (8 processes and threads)")


def test_each_runs_group_is_removed_after_it_and_the_runners_when_it_stops(per_run_cgroup):
    run_python("print(1)")
    zygote = sandbox.runner._zygote.proc.pid
    groups = zygote_groups(zygote)
    assert groups, "the runner's own cgroup directories"
    for result in (run_python("print(2)"), run_python(hog(6, 200), timeout=30),
                   run_python("import os\nos.fork()\nimport time\ntime.sleep(60)", timeout=1)):
        assert result.output or result.error
    assert [child.name for group in groups for child in group.iterdir() if child.name.startswith("run-")] == []
    sandbox.shutdown()
    assert [group for group in groups if group.exists()] == []
