"""The workflow over real sockets (daphne) and on the real bundled model."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.llm_server import Turn
from tests.polling import wait_for
from tests.test_workflow import TASK, stage_of
from workflow.models import WorkflowRun

pytestmark = pytest.mark.timeout(120)


def test_client_disconnect_stops_the_pipeline(live_asgi, fake_llm):
    def responder(request):
        if stage_of(request) == "plan":  # a slow plan, so the client leaves mid-stream
            return Turn(content=[f"Step {i}.\n" for i in range(1, 40)], chunk_delay=0.1)
        return Turn(content="```python\ndef factorial(n):\n    return 1\n```")

    fake_llm.responder = responder
    server = live_asgi({"CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__HOST": fake_llm.url})
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", server.url + "/workflow?stream=true", json={"task": TASK}) as response:
            assert response.status_code == 200
            first = next(response.iter_lines())
            assert first == "event: plan"
    # the upstream plan request is dropped
    assert fake_llm.client_gone.wait(10), "the LLM request outlived the client"
    # the run is stored as cancelled when its generator has ended: nothing after the plan started before that
    run = wait_for(lambda: WorkflowRun.objects.exclude(status=WorkflowRun.Status.RUNNING).first(), 10,
                   "the run to be stored")
    assert run.status == WorkflowRun.Status.CANCELLED and not run.passed and run.finished_at is not None
    assert [stage_of(r) for r in fake_llm.chat_requests] == ["plan"]
    assert fake_llm.finished_streams == 0
    assert httpx.get(server.url + "/health").status_code == 200


@pytest.mark.django_db
def test_whole_workflow_on_the_bundled_model(client, set_config):
    set_config({"llm": {"provider": "embedded"},
                # one candidate keeps this run as long as before candidates existed (bench/workflow_quality.py
                # measures several on this model); every stage on, through the bundled model's own table
                "workflow": {"max_repairs": 1, "candidates": 1,
                             "embedded": {"plan": True, "model_tests": "always", "plan_max_tokens": 48,
                                          "tests_max_tokens": 120, "code_max_tokens": 120,
                                          "validation_timeout": 10}}})
    response = client.post("/workflow", {"task": "Write a Python function add(a, b) that returns a + b."},
                           content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["intent_kind"] == "code"
    assert body["plan"].strip() and body["tests"].strip() and body["code"].strip()
    assert isinstance(body["validation_passed"], bool) and body["validation_output"].strip()
    assert 1 <= body["attempts"] <= 2
    assert body["verdict"] in ("passed", "passed_examples_only", "failed", "out_of_time", "unverified")
    assert set(body["evidence"]["tests"]) == {"task", "llm", "probe", "smoke"}
    run = WorkflowRun.objects.get()
    assert run.status == ("completed" if body["validation_passed"] else "failed")
    assert run.models_used["plan"] == "smollm2-135m-instruct"
    assert {"plan", "tests", "code", "validation"} <= set(run.timings)


def test_concurrent_streams_each_finish_with_their_own_result(live_asgi, fake_llm):
    from concurrent.futures import ThreadPoolExecutor

    from tests.sse import parse_sse
    from tests.test_workflow import RIGHT, WRONG, Model

    fake_llm.responder = Model([WRONG, RIGHT])  # shared: some runs need a repair, all end passing
    server = live_asgi({"CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__HOST": fake_llm.url})

    def one_run(index):
        response = httpx.post(server.url + "/workflow?stream=true", json={"task": f"{TASK} (variant {index})"},
                              timeout=60)
        return parse_sse(response.text)

    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(one_run, range(4)))
    for events in runs:
        name, done = events[-1]
        assert name == "done" and done["validation_passed"] is True, events[-1]
    assert len({events[-1][1]["session_id"] for events in runs}) == 4
    assert sorted(WorkflowRun.objects.values_list("status", flat=True)) == ["completed"] * 4
