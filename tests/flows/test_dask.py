"""Operations of a batch job on a Dask cluster (issue 11 item 5): a LocalCluster with two worker
processes, chosen by `OMBUDSMAN_DASK_ADDRESS`, against the same job on threads."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId
from prefect.states import Cancelling

from prefect_ombudsman.flows import custom_batch
from prefect_ombudsman.jobs import service
from prefect_ombudsman.jobs.models import BatchJobStatus
from support import wait_until

distributed = pytest.importorskip("distributed")
pytest.importorskip("prefect_dask")

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture(scope="module")
def cluster() -> Any:
    """Two worker processes (they inherit the test environment at start), stopped at the end."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
    ) as local:
        yield local


@pytest.fixture
def on_dask(cluster: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("OMBUDSMAN_DASK_ADDRESS", cluster.scheduler_address)
    return cluster


def _run(**params: Any) -> tuple[Any, dict[str, Any]]:
    state = custom_batch(**params, return_state=True)
    return state, state.result(raise_on_failure=False)


def _comparable(summary: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (op["operation_id"], op["status"], op["error"], op["metadata"].get("attempts"))
        for op in summary["operations"]
    ]


def _stable(result: Any) -> Any:
    """A result without the sleep operation's wall-clock times."""
    if isinstance(result, dict) and "started" in result:
        return {k: v for k, v in result.items() if k not in ("started", "ended")}
    return result


def _peak(summary: dict[str, Any]) -> int:
    """Most sleep operations running at the same moment, from the times they reported."""
    edges = []
    for op in summary["operations"]:
        result = op["result"]
        if isinstance(result, dict) and "started" in result:
            edges += [(result["started"], 1), (result["ended"], -1)]
    peak = current = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # an end before a start at a tie
        current += step
        peak = max(peak, current)
    return peak


def _items(root: Path, tag: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for i in range(3):
        items.append({"operation": "noop", "name": f"noop{i}"})
    for i in range(6):  # report when they ran: the window's bound is visible across processes
        items.append({"operation": "sleep", "name": f"sleep{i}", "arguments": {"seconds": 0.3}})
    items.append({"operation": "fail", "arguments": {"message": "differences found"}})
    items.append(
        {"operation": "flaky", "arguments": {"marker": str(root / f"{tag}-flaky"), "failures": 2}}
    )
    items.append({"operation": "no_such_operation"})
    return items


def test_dask_job_has_the_same_results_and_report_as_threads(
    on_dask: Any, tmp_projects: Path, monkeypatch: pytest.MonkeyPatch
):
    # the cluster has 2 x 2 worker threads: only the runner's window keeps it to 2 at once
    common = {"parallel_execution": True, "max_parallel": 2, "max_retries": 3}
    state_d, dask_summary = _run(items=_items(tmp_projects, "dask"), **common)
    monkeypatch.delenv("OMBUDSMAN_DASK_ADDRESS")
    state_t, thread_summary = _run(items=_items(tmp_projects, "threads"), **common)

    assert state_d.type == state_t.type and state_d.name == state_t.name == "PartialSuccess"
    assert state_d.message == state_t.message
    assert _comparable(dask_summary) == _comparable(thread_summary)
    for key in ("status", "total_operations", "completed", "failed", "skipped"):
        assert dask_summary[key] == thread_summary[key]
    results = {op["operation_id"]: _stable(op["result"]) for op in dask_summary["operations"]}
    threads = {op["operation_id"]: _stable(op["result"]) for op in thread_summary["operations"]}
    assert results == threads  # noop ids, sleep seconds, the fail's result, flaky's call count
    assert results["custom_10_flaky"] == {"calls": 3}
    assert results["custom_9_fail"] == {"message": "differences found"}
    assert _peak(dask_summary) <= 2
    # the operations really ran in the Dask workers, as task runs of the job's flow run
    job_id = dask_summary["job_id"]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[job_id]))
        )
    assert sorted(r.name for r in runs) == sorted(
        op["operation_id"] for op in dask_summary["operations"]
    )

    def executors_here() -> list[str]:  # in a worker: executors its operations registered
        import sys

        runner = sys.modules.get("prefect_ombudsman.flows.runner")
        return sorted(runner.EXECUTORS) if runner else []

    with distributed.Client(on_dask) as client:
        executors = client.run(executors_here)
    assert any("custom" in names for names in executors.values()), executors
    assert service.get_job(job_id).status == BatchJobStatus.partial_success


def test_retry_on_dask_reruns_only_failed_operations(on_dask: Any, tmp_projects: Path):
    marker = tmp_projects / "second-run"
    items = [{"operation": "noop", "name": f"n{i}"} for i in range(3)]
    # fails (not transiently) until the marker exists, then succeeds
    items.append(
        {"operation": "flaky", "arguments": {"marker": str(marker), "failures": 9}, "name": "late"}
    )
    state, summary = _run(items=items, parallel_execution=True, max_parallel=2, max_retries=0)
    assert state.name == "PartialSuccess"
    assert [op["status"] for op in summary["operations"]] == ["completed"] * 3 + ["failed"]
    marker.write_text("100")  # the retry's attempt of the flaky operation succeeds
    job = service.retry_job(summary["job_id"])
    assert job.status == BatchJobStatus.completed
    ops = {op.operation_id: op for op in job.operations}
    assert [ops[f"custom_{i}_n{i}"].metadata["cached"] for i in range(3)] == [True] * 3
    assert ops["custom_3_late"].metadata["cached"] is False
    assert ops["custom_3_late"].result == {"calls": 101}  # ran exactly once more


def test_cancel_stops_operations_running_in_dask_workers(on_dask: Any):
    box: dict[str, Any] = {}

    def target() -> None:
        box["state"], box["summary"] = _run(
            items=[{"operation": "sleep", "arguments": {"seconds": 600}}] * 12,
            parallel_execution=True,
            max_parallel=2,
        )

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    job_ids: list[str] = []

    def two_running() -> bool:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs()
            mine = [r for r in runs if r.state and r.state.is_running() and "ombudsman" in r.tags]
            if not mine:
                return False
            job_ids[:] = [str(mine[0].id)]
            tasks = client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[mine[0].id]))
            )
        return sum(1 for t in tasks if t.state and t.state.is_running()) >= 2

    assert wait_until(two_running, timeout=120, interval=0.2)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(job_ids[0], Cancelling(message="stop"), force=True)
    thread.join(timeout=120)  # the sleeps end only on cancel (else after 600 s)
    assert not thread.is_alive(), "operations in the Dask workers did not stop on cancel"
    summary = box["summary"]
    assert box["state"].is_cancelled() and summary["status"] == "cancelled"
    assert summary["completed"] == 0 and summary["skipped"] == 12
    errors = [op["error"] for op in summary["operations"]]
    assert errors.count("not started: job cancelled") == 10
    # the two sleeps were interrupted inside the workers: their task runs end (else 600 s later)
    job_id = job_ids[0]

    def operations_ended() -> bool:
        with get_client(sync_client=True) as client:
            tasks = client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[job_id]))
            )
        return len(tasks) == 2 and all(t.state and t.state.is_final() for t in tasks)

    assert wait_until(operations_ended, timeout=120, interval=0.2)
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[job_id]))
        )
    assert all(t.state.is_cancelled() for t in tasks), [t.state for t in tasks]
