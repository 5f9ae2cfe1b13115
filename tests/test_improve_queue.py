"""The improvement queue end to end: a real daphne server, real `manage.py qcluster`
processes (started by the server, or on their own for the Redis set-up), the scripted
LLM server and the real sandbox, all on this test's database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from files_app.models import Backup
from improve.models import ImprovementRun, ImprovementTask, QueueState
from improve.services import lease
from tests.fakes.llm_server import Turn
from tests.live_server import ROOT
from tests.polling import wait_for
from tests.test_improve_run import BETTER, ISSUE, ORIGINAL, fenced

pytestmark = pytest.mark.timeout(180)


def statuses() -> list[str]:
    return sorted(ImprovementTask.objects.values_list("status", flat=True))


@pytest.fixture
def modules(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    for index in range(20):
        (ws / f"mod_{index}.py").write_text(ORIGINAL)
    return ws


@pytest.fixture
def queue_server(live_asgi, fake_llm, modules):
    """A server (and so a managed qcluster) pointed at the scripted LLM and the twenty modules."""
    fake_llm.responder = lambda request: Turn(content=fenced(BETTER))

    def start(**extra):
        env = {"CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__HOST": fake_llm.url,
               "CODEGEN_WORKSPACE_ROOT": str(modules), "CODEGEN_IMPROVE_QUEUE__HEARTBEAT_SECONDS": "1",
               **{key: str(value) for key, value in extra.items()}}
        return live_asgi(env)

    return start


def add(server, path, **options):
    response = httpx.post(server.url + "/improve/queue/add", json={"file_path": path, "issue": ISSUE, **options})
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending"
    return response.json()["task_id"]


def post(server, action):
    response = httpx.post(server.url + f"/improve/queue/{action}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def status(server):
    response = httpx.get(server.url + "/improve/queue/status", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def broker_messages() -> int:
    from django_q.models import OrmQ

    return OrmQ.objects.count()


def worker_outcomes() -> list:
    """What the queue's worker function returned for each message it took (django-q2's results)."""
    from django_q.models import Task

    return [task.result for task in Task.objects.filter(func="improve.tasks.process_task")]


def process_alive(pid: int) -> bool:
    try:
        return b"zombie" not in Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return False


def test_add_three_start_all_completed_with_backups_then_clear(queue_server, modules, fake_llm):
    server = queue_server()
    ids = [add(server, f"mod_{index}.py") for index in range(3)]
    before = status(server)
    assert before["running"] is False and before["pending"] == 3 and before["total_tasks"] == 3
    # nothing can run before start: no worker process, no message for one
    assert before["workers"]["cluster_pid"] is None and broker_messages() == 0
    assert fake_llm.chat_requests == []

    started = post(server, "start")
    assert started["running"] is True and started["enqueued"] == 3
    cluster_pid = started["workers"]["cluster_pid"]
    assert started["workers"]["mode"] == "managed" and cluster_pid and process_alive(cluster_pid)
    assert post(server, "start")["workers"]["cluster_pid"] == cluster_pid  # one cluster only

    wait_for(lambda: status(server)["completed"] == 3, what="three completed tasks")
    for index, task_id in enumerate(ids):
        task = httpx.get(server.url + f"/improve/queue/task/{task_id}").json()
        assert task["status"] == "completed" and task["progress"] == 1.0 and task["attempts"] == 1
        assert task["result"]["success"] is True and task["result"]["backup_path"]
        assert (modules / f"mod_{index}.py").read_text() == BETTER
    assert Backup.objects.filter(reason="improve").count() == 3
    assert ImprovementRun.objects.count() == 3 and len(fake_llm.chat_requests) == 3
    assert ImprovementTask.objects.filter(run__isnull=False).count() == 3

    assert httpx.get(server.url + f"/improve/queue/task/{uuid.uuid4()}").status_code == 404
    assert httpx.get(server.url + "/improve/queue/task/nonsense").status_code == 404
    assert post(server, "clear") == {"cleared": 3}
    assert status(server)["total_tasks"] == 0

    server.stop()
    wait_for(lambda: not process_alive(cluster_pid), timeout=30, what="the qcluster to stop with the server")


def test_stop_lets_the_running_task_finish_and_starts_no_other(queue_server, fake_llm):
    fake_llm.responder = lambda request: Turn(content=fenced(BETTER), first_byte_delay=2.0)
    server = queue_server()
    for index in range(3):
        add(server, f"mod_{index}.py")
    post(server, "start")
    running = wait_for(lambda: status(server)["current_task"], what="a running task")
    stopped = post(server, "stop")
    assert stopped["running"] is False

    wait_for(lambda: ImprovementTask.objects.get(pk=running["task_id"]).status == "completed",
             what="the running task to finish")
    # the worker takes the other two messages and leaves their tasks alone
    wait_for(lambda: worker_outcomes().count("queue stopped: task left pending") == 2,
             what="the worker to turn down the other two tasks")
    assert statuses() == ["completed", "pending", "pending"] and broker_messages() == 0
    assert status(server)["running"] is False

    post(server, "start")
    wait_for(lambda: statuses() == ["completed"] * 3, what="the rest after start")


def test_pending_tasks_survive_a_server_restart(queue_server, modules):
    first = queue_server()
    for index in range(2):
        add(first, f"mod_{index}.py")
    first.stop()

    second = queue_server()
    assert status(second)["pending"] == 2
    post(second, "start")
    wait_for(lambda: statuses() == ["completed", "completed"], what="tasks added before the restart")
    second.stop()

    # a queue that was started when the server went down resumes by itself
    third_task = ImprovementTask.objects.create(file_path="mod_2.py", issue=ISSUE, options={"auto_write": True})
    QueueState.objects.update_or_create(pk=1, defaults={"accepting": True})
    queue_server()
    wait_for(lambda: ImprovementTask.objects.get(pk=third_task.pk).status == "completed",
             what="the pending task after a restart of a started queue")
    assert (modules / "mod_2.py").read_text() == BETTER


def test_a_worker_killed_mid_task_leaves_the_task_retried(queue_server, fake_llm, modules):
    calls = []

    def responder(request):
        calls.append(request)
        # the first attempt hangs long enough to be killed
        return Turn(content=fenced(BETTER), first_byte_delay=30.0 if len(calls) == 1 else 0.0)

    fake_llm.responder = responder
    server = queue_server(CODEGEN_IMPROVE_QUEUE__LEASE_SECONDS=3)
    task_id = add(server, "mod_0.py")
    post(server, "start")
    wait_for(lambda: calls, what="the first LLM call")
    task = ImprovementTask.objects.get(pk=task_id)
    assert task.status == "running" and task.step == "generate"
    worker_pid = int(task.worker.split(":")[1])
    os.kill(worker_pid, signal.SIGKILL)

    # the lease runs out; the server's lease sweeper (or the cluster's schedule) puts it back, a new
    # worker runs it
    wait_for(lambda: status(server)["completed"] == 1, what="the task retried after the kill")
    task.refresh_from_db()
    assert task.attempts == 2 and task.status == "completed"
    assert "stopped renewing its lease" not in (task.error or "")  # a completed task carries no error
    assert (modules / "mod_0.py").read_text() == BETTER
    assert Backup.objects.filter(reason="improve").count() == 1


@pytest.mark.django_db
def test_an_expired_lease_is_retried_then_failed_with_the_reason(set_config):
    set_config({"improve_queue": {"max_attempts": 2}})
    expired = timezone.now() - timedelta(seconds=5)
    task = ImprovementTask.objects.create(file_path="x.py", status="running", attempts=1, worker="host:1:a",
                                          lease_until=expired)
    assert lease.recover_expired() == 1
    task.refresh_from_db()
    assert task.status == "pending" and "retrying" in task.error and task.worker == ""

    ImprovementTask.objects.filter(pk=task.pk).update(status="running", attempts=2, worker="host:2:b",
                                                      lease_until=expired)
    assert lease.recover_expired() == 1
    task.refresh_from_db()
    assert task.status == "failed" and "gave up after 2 attempt(s)" in task.error
    assert task.finished_at is not None

    live = ImprovementTask.objects.create(file_path="y.py", status="running", attempts=1, worker="host:3:c",
                                          lease_until=timezone.now() + timedelta(seconds=30))
    assert lease.recover_expired() == 0
    assert ImprovementTask.objects.get(pk=live.pk).status == "running"


@pytest.mark.django_db
def test_status_only_reads_an_expired_lease_is_left_to_the_sweeper(client, set_config):
    from django_q.models import OrmQ

    set_config({"improve_queue": {"start_cluster": False}})
    QueueState.objects.update_or_create(pk=1, defaults={"accepting": True})
    task = ImprovementTask.objects.create(file_path="x.py", status="running", attempts=1, worker="host:1:a",
                                          lease_until=timezone.now() - timedelta(seconds=5))
    state = client.get("/improve/queue/status").json()
    assert state["in_progress"] == 1 and state["current_task"]["task_id"] == str(task.pk)
    assert ImprovementTask.objects.get(pk=task.pk).status == "running" and not OrmQ.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_lease_sweeper_puts_back_a_task_whose_worker_died(set_config):
    set_config({"improve_queue": {"heartbeat_seconds": 0.1, "max_attempts": 2}})
    task = ImprovementTask.objects.create(file_path="x.py", status="running", attempts=1, worker="host:1:a",
                                          lease_until=timezone.now() - timedelta(seconds=5))
    sweeper = lease.LeaseSweeper()
    sweeper.start()
    try:
        wait_for(lambda: ImprovementTask.objects.get(pk=task.pk).status == "pending", timeout=10,
                 what="the sweeper to put the task back")
    finally:
        sweeper.close()
    assert "stopped renewing its lease" in ImprovementTask.objects.get(pk=task.pk).error


@pytest.mark.django_db
def test_reconciliation_resends_a_pending_task_whose_message_is_gone_once_per_lease(set_config):
    """A worker cluster that died took its tasks' messages along (or Redis lost them): the task
    is sent again, once, and a task whose message still waits in the broker is left alone."""
    from django_q.models import OrmQ

    set_config({"improve_queue": {"lease_seconds": 30}})
    QueueState.objects.update_or_create(pk=1, defaults={"accepting": True})
    long_ago = timezone.now() - timedelta(seconds=60)
    lost = ImprovementTask.objects.create(file_path="lost.py")
    waiting = ImprovementTask.objects.create(file_path="waiting.py")
    fresh = ImprovementTask.objects.create(file_path="fresh.py")
    ImprovementTask.objects.filter(pk__in=[lost.pk, waiting.pk]).update(updated_at=long_ago)
    lease.send(waiting.pk)
    assert lease.resend_lost() == 1
    assert OrmQ.objects.count() == 2  # the waiting task's message and the lost task's new one
    from improve.services.broker import waiting_task_ids

    assert waiting_task_ids() == {str(lost.pk), str(waiting.pk)}
    OrmQ.objects.all().delete()  # the second message taken by a cluster that died too
    assert lease.resend_lost() == 1  # the waiting task now: its message is gone
    assert lease.resend_lost() == 0  # each at most once per lease
    assert str(fresh.pk) not in waiting_task_ids()  # pending for less than a lease: not yet

    QueueState.objects.filter(pk=1).update(accepting=False)
    ImprovementTask.objects.update(updated_at=long_ago)
    assert lease.resend_lost() == 0  # a stopped queue sends nothing


@pytest.mark.django_db
def test_reconciliation_ends_dead_attempts_interrupted_and_shows_in_the_status(client, set_config):
    set_config({"improve_queue": {"max_attempts": 2, "task_timeout": 60, "start_cluster": False}})
    expired = timezone.now() - timedelta(seconds=5)
    killed = ImprovementRun.objects.create(file_path="x.py")
    task = ImprovementTask.objects.create(file_path="x.py", status="running", attempts=1, worker="host:1:a",
                                          lease_until=expired, run=killed)
    # POST /improve/run on a server killed long ago, and one still going in a live request
    orphan = ImprovementRun.objects.create(file_path="y.py")
    ImprovementRun.objects.filter(pk=orphan.pk).update(created_at=timezone.now() - timedelta(seconds=120))
    going = ImprovementRun.objects.create(file_path="z.py")
    # killed after it made its run but before it reported it: the run of its file made after the claim
    unreported_task = ImprovementTask.objects.create(file_path="w.py", status="running", attempts=1,
                                                     worker="host:2:b", lease_until=expired,
                                                     started_at=timezone.now() - timedelta(seconds=10))
    unreported = ImprovementRun.objects.create(file_path="w.py")
    done = lease.reconcile()
    assert (done["recovered"], done["interrupted"]) == (2, 3)
    assert ImprovementTask.objects.get(pk=unreported_task.pk).status == "pending"
    assert ImprovementRun.objects.get(pk=unreported.pk).status == "interrupted"
    assert ImprovementTask.objects.get(pk=task.pk).status == "pending"
    killed.refresh_from_db()
    orphan.refresh_from_db()
    assert killed.status == "interrupted" and "stopped renewing its lease" in killed.error
    assert orphan.status == "interrupted" and killed.finished_at is not None
    assert ImprovementRun.objects.get(pk=going.pk).status == "running"
    shown = client.get("/improve/queue/status").json()["reconciliation"]
    assert (shown["recovered"], shown["interrupted"], shown["resent"]) == (2, 3, 0)


@pytest.mark.django_db
def test_a_task_is_claimed_by_one_worker_only():
    task = ImprovementTask.objects.create(file_path="x.py")
    assert lease.claim(task.pk, "w1") is not None
    assert lease.claim(task.pk, "w2") is None
    assert not lease.finish(task.pk, "w2", result=None, error="")  # only the holder finishes it
    assert lease.finish(task.pk, "w1", result=None, error="")
    assert ImprovementTask.objects.get(pk=task.pk).status == "completed"


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=1).ping())
    except redis.RedisError:
        return False


def test_on_redis_two_worker_processes_process_twenty_tasks_each_once(live_asgi, fake_llm, modules):
    if not redis_available():
        pytest.fail("Redis is not running on 127.0.0.1:6379")
    from django.db import connection

    fake_llm.responder = lambda request: Turn(content=fenced(BETTER))
    cluster_name = f"improve-test-{uuid.uuid4().hex[:8]}"
    env = {"CODEGEN_LLM__PROVIDER": "ollama", "CODEGEN_OLLAMA__HOST": fake_llm.url,
           "CODEGEN_WORKSPACE_ROOT": str(modules), "CODEGEN_IMPROVE_QUEUE__REDIS_URL": "redis://127.0.0.1:6379/0",
           "CODEGEN_IMPROVE_QUEUE__CLUSTER_NAME": cluster_name, "CODEGEN_IMPROVE_QUEUE__START_CLUSTER": "false"}
    server = live_asgi(env)
    workers = []
    base = int(os.environ.get("CODEGEN_SANDBOX__UID_BASE", "69000"))
    try:
        for index in range(2):
            # each cluster's sandbox gets its own uid range (the sandbox kills leftovers by uid)
            child_env = {**os.environ, **env, "DJANGO_SETTINGS_MODULE": "codegen_site.settings_test",
                         "CODEGEN_TEST_SERVER_DB": connection.settings_dict["NAME"],
                         "CODEGEN_SANDBOX__UID_BASE": str(base + 100 + 50 * index),
                         "CODEGEN_SANDBOX__UID_COUNT": "50"}
            log = open(Path(os.environ["CODEGEN_TEST_ROOT"]) / f"qcluster-redis-{index}.log", "wb")
            workers.append(subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=child_env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        ids = [add(server, f"mod_{index}.py") for index in range(20)]
        started = post(server, "start")
        assert started["workers"] == {"mode": "external", "broker": "redis", "cluster_pid": None}
        post(server, "start")  # every task is now on the broker twice
        wait_for(lambda: statuses() == ["completed"] * 20, timeout=150, what="twenty tasks on Redis")
        tasks = ImprovementTask.objects.filter(pk__in=ids)
        assert {task.attempts for task in tasks} == {1}
        assert ImprovementRun.objects.count() == 20 and len(fake_llm.chat_requests) == 20
        assert sorted(ImprovementRun.objects.values_list("file_path", flat=True)) == \
            sorted(f"mod_{index}.py" for index in range(20))
        assert Backup.objects.filter(reason="improve").count() == 20
        assert len({task.worker.split(":")[1] for task in tasks}) >= 2  # both clusters took tasks
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        import redis

        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        for key in client.scan_iter(f"django_q:{cluster_name}*"):
            client.delete(key)


def test_events_feed_and_status_show_progress_while_a_task_runs(queue_server, fake_llm):
    import json

    fake_llm.responder = lambda request: Turn(content=fenced(BETTER), first_byte_delay=2.0)
    server = queue_server(CODEGEN_IMPROVE_QUEUE__EVENTS_POLL_SECONDS="0.2")
    task_id = add(server, "mod_0.py")
    seen = []
    with httpx.Client(timeout=60) as client:
        with client.stream("GET", server.url + "/improve/queue/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            event = None
            for line in lines:
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data = json.loads(line[5:])
                    seen.append((event, data))
                    if event == "status" and not [e for e, _ in seen[:-1] if e == "status"]:
                        assert data["pending"] == 1 and data["running"] is False
                        post(server, "start")
                        current = wait_for(lambda: status(server)["current_task"], what="a running task")
                        assert current["task_id"] == task_id and current["step"] in ("claimed", "read", "generate")
                        assert 0 < current["progress"] < 1
                    if event == "task" and data["status"] == "completed":
                        break
    task_events = [data for event, data in seen if event == "task"]
    assert any(data["status"] == "running" and data["step"] == "generate" for data in task_events)
    assert task_events[-1]["result"]["success"] is True and task_events[-1]["progress"] == 1.0
    progress = [data["progress"] for data in task_events]
    assert progress == sorted(progress)


@pytest.mark.django_db
def test_admin_requeues_finished_tasks_and_cancels_pending_ones(admin_client):
    failed = ImprovementTask.objects.create(file_path="a.py", status="failed", attempts=2, error="boom")
    pending = ImprovementTask.objects.create(file_path="b.py")
    url = "/admin/improve/improvementtask/"
    assert admin_client.get(url).status_code == 200
    admin_client.post(url, {"action": "requeue_tasks", "_selected_action": [str(failed.pk), str(pending.pk)]})
    failed.refresh_from_db()
    assert failed.status == "pending" and failed.attempts == 0 and failed.error == ""
    admin_client.post(url, {"action": "cancel_tasks", "_selected_action": [str(pending.pk)]})
    assert ImprovementTask.objects.get(pk=pending.pk).status == "cancelled"
    assert admin_client.get(url + f"{failed.pk}/change/").status_code == 200


@pytest.mark.django_db
def test_queue_api_refuses_bad_input_and_reports_its_state(client, ws, set_config):
    from django_q.models import OrmQ

    set_config({"improve_queue": {"start_cluster": False}})
    (ws / "calc.py").write_text(ORIGINAL)

    def add_body(**body):
        return client.post("/improve/queue/add", {"issue": ISSUE, **body}, content_type="application/json")

    assert add_body(file_path="../x.py").status_code == 400
    assert add_body(file_path="missing.py").status_code == 404
    assert add_body(file_path="calc.py", issue={}).status_code == 400
    assert add_body(file_path="calc.py", max_retries=-1).status_code == 400
    added = add_body(file_path="calc.py", auto_write=False, max_retries=1)
    assert added.status_code == 201 and added.json()["status"] == "pending"
    task = ImprovementTask.objects.get()
    assert task.options == {"auto_write": False, "max_retries": 1}
    assert not OrmQ.objects.exists()  # nothing reaches the broker before start

    state = client.get("/improve/queue/status").json()
    assert {key: state[key] for key in ("running", "total_tasks", "completed", "failed", "pending")} == \
        {"running": False, "total_tasks": 1, "completed": 0, "failed": 0, "pending": 1}
    assert state["current_task"] is None and state["tasks"][0]["task_id"] == str(task.pk)
    assert state["workers"] == {"mode": "external", "broker": "orm", "cluster_pid": None}

    started = client.post("/improve/queue/start").json()
    assert started["running"] is True and started["enqueued"] == 1 and OrmQ.objects.count() == 1
    assert client.get(f"/improve/queue/task/{task.pk}").json()["status"] == "pending"
    assert client.post("/improve/queue/stop").json() == {"running": False, "in_progress": 0}
    assert client.post("/improve/queue/clear").json() == {"cleared": 0}


@pytest.mark.django_db(transaction=True)
def test_worker_function_skips_when_stopped_or_taken_and_fails_a_task_with_the_llm_down(ws, set_config,
                                                                                          llm_unreachable):
    from improve.tasks import process_task

    set_config({"improve_queue": {"start_cluster": False}})
    (ws / "calc.py").write_text(ORIGINAL)
    task = ImprovementTask.objects.create(file_path="calc.py", issue=ISSUE, options={"auto_write": True})

    assert process_task(str(task.pk)) == "queue stopped: task left pending"
    assert ImprovementTask.objects.get(pk=task.pk).status == "pending"

    QueueState.objects.update_or_create(pk=1, defaults={"accepting": True})
    outcome = process_task(str(task.pk))
    task.refresh_from_db()
    assert task.status == "failed" and task.attempts == 1 and task.progress == 1.0
    assert outcome == task.error and llm_unreachable.removeprefix("http://") in task.error
    assert (ws / "calc.py").read_text() == ORIGINAL
    assert process_task(str(task.pk)) == "not pending (taken, finished or cancelled)"


@pytest.mark.django_db(transaction=True)
def test_a_retried_task_whose_file_was_already_written_completes_without_running_again(ws, llm_unreachable):
    from files_app import services as files
    from improve.services.apply import sha256_text
    from improve.tasks import process_task

    (ws / "calc.py").write_text(ORIGINAL)
    # the previous worker validated the proposal and wrote it, then was killed before finishing
    run = ImprovementRun.objects.create(file_path="calc.py", issue=ISSUE, original_sha256=sha256_text(ORIGINAL),
                                        proposed_content=BETTER, status="running")
    written = files.write_file("calc.py", BETTER, reason="improve")
    task = ImprovementTask.objects.create(file_path="calc.py", issue=ISSUE, options={"auto_write": True},
                                          run=run, attempts=1, error="worker w stopped renewing its lease; retrying")
    QueueState.objects.update_or_create(pk=1, defaults={"accepting": True})

    assert process_task(str(task.pk)).startswith("completed")
    task.refresh_from_db()
    run.refresh_from_db()
    assert task.status == "completed" and task.attempts == 2 and task.error == ""
    assert task.result["success"] is True and task.result["backup_path"] == written.backup_path
    assert run.status == "applied" and Backup.objects.count() == 1
    assert (ws / "calc.py").read_text() == BETTER
