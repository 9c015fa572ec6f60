"""End to end with a real `prefect server`, `prefect deploy` from prefect.yaml and a process worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import PREFECT, deploy_and_start_worker, free_port, wait_until

# a Prefect server, `prefect deploy` and a worker start once per module (minutes on a busy machine)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _stop(proc: subprocess.Popen[bytes], first: int = signal.SIGTERM) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, first)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A Prefect server, the deployments of prefect.yaml, and a process worker polling every second."""
    root = tmp_path_factory.mktemp("worker")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") or k in ("PREFECT_SERVER_ANALYTICS_ENABLED",)
    }
    env.update(
        PREFECT_HOME=str(root / "home"),
        PREFECT_API_URL=url,
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        OMBUDSMAN_PROJECTS_DIR=str(root / "projects"),
        OMBUDSMAN_RETRY_BASE_SECONDS="0.05",
    )
    server_env = dict(env)
    server_env.pop("PREFECT_API_URL")
    logs = root / "logs"
    logs.mkdir()
    server = subprocess.Popen(
        [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env,
        stdout=(logs / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = None
    try:

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                    return resp.status == 200
            except OSError:
                return False

        assert wait_until(healthy, timeout=120, interval=0.3), (logs / "server.log").read_text()[
            -3000:
        ]
        subprocess.run(
            [*PREFECT, "work-pool", "create", "ombudsman-process", "--type", "process"],
            env=env,
            check=True,
            capture_output=True,
        )
        worker = deploy_and_start_worker(env, root, logs)
        yield {"env": env, "url": url, "root": root, "logs": logs}
    finally:
        if worker is not None:
            _stop(worker, signal.SIGINT)
        _stop(server)
        shutil.rmtree(root / "home", ignore_errors=True)


def _cli(deployed: dict[str, object], *args: str) -> str:
    result = subprocess.run(
        [*PREFECT, *args], env=deployed["env"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _client(deployed: dict[str, object]):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class Scoped:
        def __enter__(self):
            self._settings = temporary_settings(updates={PREFECT_API_URL: deployed["url"]})
            self._settings.__enter__()
            self._client = get_client(sync_client=True)
            return self._client.__enter__()

        def __exit__(self, *exc):
            self._client.__exit__(*exc)
            self._settings.__exit__(*exc)

    return Scoped()


def _run_deployment(deployed: dict[str, object], params: dict[str, object]) -> str:
    with _client(deployed) as client:
        deployment = client.read_deployment_by_name("custom-batch/custom-batch")
        run = client.create_flow_run_from_deployment(deployment.id, parameters=params)
        return str(run.id)


def _state(deployed: dict[str, object], run_id: str):
    with _client(deployed) as client:
        return client.read_flow_run(run_id).state


def _wait_terminal(deployed: dict[str, object], run_id: str, timeout: float = 120):
    assert wait_until(lambda: _state(deployed, run_id).is_final(), timeout=timeout, interval=0.2), (
        Path(deployed["logs"]) / "worker.log"
    ).read_text()[-4000:]
    return _state(deployed, run_id)


def _summary(deployed: dict[str, object], run_id: str) -> dict[str, object]:
    path = Path(deployed["root"]) / "projects" / ".ombudsman" / "jobs" / f"batch_{run_id}.json"
    assert wait_until(path.exists, timeout=60)
    return json.loads(path.read_text())


def test_deployment_run_completes_under_the_worker(deployed):
    run_id = _run_deployment(
        deployed,
        {
            "items": [{"operation": "sleep", "arguments": {"seconds": 0.2}}] * 4,
            "parallel_execution": True,
            "max_parallel": 2,
        },
    )
    state = _wait_terminal(deployed, run_id)
    assert state.is_completed(), state
    summary = _summary(deployed, run_id)
    assert summary["completed"] == 4
    with _client(deployed) as client:
        assert {"ombudsman", "job-type:custom"} <= set(client.read_flow_run(run_id).tags)
        deployments = {d.name for d in client.read_deployments()}
    assert deployments == {
        "bulk-pipeline-execution",
        "nightly-validation",
        "batch-data-generation",
        "multi-project-validation",
        "bulk-metadata-extraction",
        "batch-comparison",
        "custom-batch",
    }


def _task_runs(deployed: dict[str, object], run_id: str) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with _client(deployed) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )


def test_cancel_with_prefect_cli_stops_a_worker_run(deployed):
    # operations that only a cancel ends: none finishes and makes room for another, so any
    # operation started after the cancel request is the runner's fault, however busy the machine
    run_id = _run_deployment(
        deployed,
        {
            "items": [{"operation": "sleep", "arguments": {"seconds": 3600}}] * 20,
            "parallel_execution": True,
            "max_parallel": 2,
        },
    )
    assert wait_until(
        lambda: (
            sum(bool(tr.state and tr.state.is_running()) for tr in _task_runs(deployed, run_id))
            >= 2
        ),
        timeout=180,
        interval=0.5,
    ), (Path(deployed["logs"]) / "worker.log").read_text()[-3000:]
    _cli(deployed, "flow-run", "cancel", run_id)
    state = _wait_terminal(deployed, run_id, timeout=300)  # else the sleeps last an hour
    assert state.is_cancelled(), state
    with _client(deployed) as client:
        states = client.read_flow_run_states(run_id)
    cancel_requested = min(st.timestamp for st in states if st.is_cancelling() or st.is_cancelled())
    started = [tr.start_time for tr in _task_runs(deployed, run_id) if tr.start_time]
    assert len(started) == 2 and all(t < cancel_requested for t in started), (started, states)
    summary = _summary(deployed, run_id)
    assert summary["status"] == "cancelled"
    assert summary["completed"] == 0 and summary["skipped"] == 20
    not_started = [
        op
        for op in summary["operations"]
        if (op["error"] or "").startswith("not started: job cancelled")
    ]
    assert len(not_started) == 18
    assert sum(bool(op["started_at"]) for op in summary["operations"]) == 2


def test_prefect_flow_run_retry_reexecutes_only_failed_operations(deployed):
    markers = Path(deployed["root"]) / "markers"
    markers.mkdir(exist_ok=True)
    items = [
        {"operation": "flaky", "arguments": {"marker": str(markers / f"ok{i}"), "failures": 0}}
        for i in range(3)
    ]
    items.append(
        {"operation": "flaky", "arguments": {"marker": str(markers / "bad"), "failures": 1}}
    )
    run_id = _run_deployment(deployed, {"items": items, "retry_failed": False})
    state = _wait_terminal(deployed, run_id)
    assert state.is_failed() and state.name == "PartialSuccess", state
    _cli(deployed, "flow-run", "retry", run_id)
    state = _wait_terminal(deployed, run_id)
    assert state.is_completed(), state
    assert [(markers / f"ok{i}").read_text() for i in range(3)] == ["1", "1", "1"]
    assert (markers / "bad").read_text() == "2"
    summary = _summary(deployed, run_id)
    assert summary["completed"] == 4
    assert [op["metadata"]["cached"] for op in summary["operations"]] == [True, True, True, False]


def test_jobs_submitted_through_the_service_go_to_the_worker(deployed):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefect_ombudsman.jobs import service
    from prefect_ombudsman.jobs.models import BatchCustomRequest, BatchJobType

    request = BatchCustomRequest(
        job_name="via deployment", items=[{"operation": "noop"}] * 3, tags=["e2e"]
    )
    with temporary_settings(updates={PREFECT_API_URL: deployed["url"]}):
        job = service.submit_job(BatchJobType.custom, request, execution="deployment")
        assert job.metadata["deployment_id"] is not None
        state = _wait_terminal(deployed, job.job_id)
        assert state.is_completed(), state
        assert wait_until(
            lambda: service.get_job(job.job_id).status.value == "completed", timeout=60
        )
        done = service.get_job(job.job_id)
    assert done.name == "via deployment" and "e2e" in done.tags and len(done.operations) == 3
