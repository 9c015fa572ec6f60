"""The bounded batch runner, through `custom_batch` on a real Prefect API."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.states import Cancelling

from prefect_ombudsman import state_store
from prefect_ombudsman.errors import OperationFailed
from prefect_ombudsman.flows import custom_batch
from prefect_ombudsman.jobs import service
from prefect_ombudsman.jobs.models import BatchJobStatus
from prefect_ombudsman.operations.registry import register_operation, unregister_operation
from support import wait_until

pytestmark = pytest.mark.usefixtures("prefect_api")


class Probe:
    """Operations report how many of them run at once, and when they started."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current = 0
        self.peak = 0
        self.calls: list[str] = []
        self.starts: dict[str, float] = {}
        self.job_ids: set[str] = set()

    def __call__(self, ctx: Any, seconds: float = 0.05, fail: bool = False) -> dict[str, Any]:
        with self.lock:
            self.current += 1
            self.peak = max(self.peak, self.current)
            self.calls.append(ctx.operation_id)
            self.starts[ctx.operation_id] = time.time()
            self.job_ids.add(ctx.job_id)
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                ctx.wait(0.02)
            if fail:
                raise OperationFailed("probe found differences", result={"differences": 3})
            return {"op": ctx.operation_id}
        finally:
            with self.lock:
                self.current -= 1


@pytest.fixture
def probe():
    p = Probe()
    register_operation("probe", p)
    yield p
    unregister_operation("probe")


def _run(**params: Any):
    state = custom_batch(**params, return_state=True)
    return state, state.result(raise_on_failure=False)


def _items(n: int, **arguments: Any) -> list[dict[str, Any]]:
    return [{"operation": "probe", "arguments": dict(arguments)} for _ in range(n)]


def test_max_parallel_is_never_exceeded(probe: Probe):
    state, summary = _run(items=_items(24, seconds=0.1), parallel_execution=True, max_parallel=3)
    assert state.is_completed()
    assert summary["completed"] == 24
    assert probe.peak == 3  # reached, never exceeded
    assert [op["operation_id"] for op in summary["operations"]] == [
        f"custom_{i}_probe" for i in range(24)
    ]


def test_sequential_mode_runs_in_order_one_at_a_time(probe: Probe):
    state, summary = _run(items=_items(6, seconds=0.02), parallel_execution=False, max_parallel=8)
    assert state.is_completed()
    assert probe.peak == 1
    assert probe.calls == [f"custom_{i}_probe" for i in range(6)]


def test_stop_on_error_skips_the_rest(probe: Probe):
    items = _items(1) + [{"operation": "probe", "arguments": {"fail": True}}] + _items(3)
    state, summary = _run(items=items, stop_on_error=True)
    statuses = [op["status"] for op in summary["operations"]]
    assert statuses == ["completed", "failed", "skipped", "skipped", "skipped"]
    assert probe.calls == ["custom_0_probe", "custom_1_probe"]
    assert "stop_on_error after custom_1_probe failed" in summary["operations"][2]["error"]
    assert state.is_failed() and state.name == "PartialSuccess"
    assert summary["status"] == "partial_success"


def test_failed_operation_keeps_its_result_and_error(probe: Probe):
    state, summary = _run(items=[{"operation": "probe", "arguments": {"fail": True}}])
    op = summary["operations"][0]
    assert op["status"] == "failed" and op["error"] == "probe found differences"
    assert op["result"] == {"differences": 3}
    assert state.is_failed() and state.name == "Failed" and summary["status"] == "failed"


def test_transient_failure_is_retried_then_succeeds(tmp_projects: Path):
    marker = tmp_projects / "flaky"
    state, summary = _run(
        items=[{"operation": "flaky", "arguments": {"marker": str(marker), "failures": 2}}],
        max_retries=3,
    )
    assert state.is_completed()
    op = summary["operations"][0]
    assert op["status"] == "completed" and op["metadata"]["attempts"] == 3
    assert marker.read_text() == "3"


def test_transient_failure_gives_up_after_max_retries(tmp_projects: Path):
    marker = tmp_projects / "flaky"
    state, summary = _run(
        items=[{"operation": "flaky", "arguments": {"marker": str(marker), "failures": 5}}],
        max_retries=1,
    )
    op = summary["operations"][0]
    assert op["status"] == "failed" and "after 2 attempts" in op["error"]
    assert marker.read_text() == "2"


def test_validation_style_failure_is_not_retried():
    calls = []

    def finds_differences(ctx: Any) -> None:
        calls.append(ctx.attempt)
        raise OperationFailed("3 rows differ", result={"changed": 3})

    register_operation("finds_differences", finds_differences)
    try:
        state, summary = _run(items=[{"operation": "finds_differences"}], max_retries=3)
    finally:
        unregister_operation("finds_differences")
    assert calls == [1]
    assert summary["operations"][0]["status"] == "failed"


def test_retry_disabled_when_retry_failed_is_false(tmp_projects: Path):
    marker = tmp_projects / "flaky"
    state, summary = _run(
        items=[{"operation": "flaky", "arguments": {"marker": str(marker), "failures": 1}}],
        retry_failed=False,
        max_retries=3,
    )
    assert summary["operations"][0]["status"] == "failed" and marker.read_text() == "1"


def test_partial_success_and_all_failed_states(probe: Probe):
    state, summary = _run(
        items=_items(2) + [{"operation": "fail"}], parallel_execution=True, max_parallel=3
    )
    assert state.type.value == "FAILED" and state.name == "PartialSuccess"
    state, summary = _run(
        items=[{"operation": "fail"}, {"operation": "fail", "arguments": {"message": "boom"}}]
    )
    assert state.type.value == "FAILED" and state.name == "Failed"
    assert [op["error"] for op in summary["operations"]] == ["failed on request", "boom"]


def test_empty_item_list_completes_with_zero_operations():
    state, summary = _run(items=[])
    assert state.is_completed()
    assert summary["total_operations"] == 0 and summary["operations"] == []
    assert summary["status"] == "completed"


def test_unknown_operation_fails_only_its_operation(probe: Probe):
    state, summary = _run(items=[{"operation": "probe"}, {"operation": "slep"}])
    ops = summary["operations"]
    assert ops[0]["status"] == "completed"
    assert (
        ops[1]["status"] == "failed"
        and "unknown operation 'slep'" in ops[1]["error"]
        and "sleep" in ops[1]["error"]
    )


def test_bad_operation_arguments_are_a_clear_error():
    state, summary = _run(items=[{"operation": "sleep", "arguments": {"secs": 1}}])
    assert (
        "operation 'sleep'" in summary["operations"][0]["error"]
        and "secs" in summary["operations"][0]["error"]
    )


def test_invalid_flow_parameters_are_refused_before_any_work(probe: Probe):
    state = custom_batch(items=_items(2), max_parallel=65, return_state=True)
    assert state.is_failed()
    assert "max_parallel" in state.message
    assert probe.calls == []


def _start_in_thread(**params: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        state = custom_batch(**params, return_state=True)
        box["state"] = state
        box["summary"] = state.result(raise_on_failure=False)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def _cancel_mid_batch(probe: Probe, cancel: Any) -> None:
    # operations that only a cancel ends: none can finish and make room for another, so every
    # operation that starts after the cancel request is the runner's fault, however slow the machine
    thread, box = _start_in_thread(
        items=_items(20, seconds=600), parallel_execution=True, max_parallel=2
    )
    assert wait_until(lambda: len(probe.calls) >= 2, timeout=60)
    job_id = next(iter(probe.job_ids))
    cancel(job_id)
    thread.join(timeout=120)  # the running operations must see the cancel (else: 600 s)
    assert not thread.is_alive(), "the running operations did not stop on cancel"
    summary = box["summary"]
    assert box["state"].is_cancelled()
    assert summary["status"] == "cancelled"
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(job_id).state.is_cancelled()
        states = client.read_flow_run_states(job_id)
    cancel_requested = min(
        st.timestamp.timestamp() for st in states if st.is_cancelling() or st.is_cancelled()
    )
    late = {op: t for op, t in probe.starts.items() if t >= cancel_requested}
    assert not late, f"operations started after the run reached Cancelling: {late}"
    assert len(probe.calls) == 2
    assert summary["completed"] == 0 and summary["skipped"] == 20
    assert service.get_job(job_id).status == BatchJobStatus.cancelled
    # the two that ran are task runs that ended Cancelled; the others never became task runs
    assert wait_until(
        lambda: (
            sorted((tr.name, tr.state.type.value) for tr in _task_runs_of(job_id) if tr.state)
            == [("custom_0_probe", "CANCELLED"), ("custom_1_probe", "CANCELLED")]
        ),
        timeout=120,
    ), [(tr.name, tr.state) for tr in _task_runs_of(job_id)]


def test_cancel_in_process_run_through_the_prefect_api(probe: Probe):
    def cancel(job_id: str) -> None:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(job_id, Cancelling(message="user pressed cancel"), force=True)

    _cancel_mid_batch(probe, cancel)


def test_cancel_through_the_jobs_service(probe: Probe):
    _cancel_mid_batch(probe, lambda job_id: service.cancel_job(job_id, reason="stop now"))


def test_retry_of_a_failed_run_reexecutes_only_failed_operations(tmp_path: Path):
    calls: list[str] = []
    marker = tmp_path / "second-run"

    def counted(ctx: Any, fail_first: bool = False) -> dict[str, Any]:
        calls.append(ctx.operation_id)
        if fail_first and not marker.exists():
            marker.write_text("x")
            raise OperationFailed("differences on the first run")
        return {"op": ctx.operation_id}

    register_operation("counted", counted)
    try:
        items = [{"operation": "counted"}] * 3 + [
            {"operation": "counted", "arguments": {"fail_first": True}}
        ]
        state, summary = _run(items=items, parallel_execution=True, max_parallel=2)
        assert state.name == "PartialSuccess"
        job_id = summary["job_id"]
        assert sorted(calls) == [f"custom_{i}_counted" for i in range(4)]
        calls.clear()
        job = service.retry_job(job_id)
    finally:
        unregister_operation("counted")
    assert calls == ["custom_3_counted"]
    assert job.status == BatchJobStatus.completed
    assert job.job_id == job_id
    ops = {op.operation_id: op for op in job.operations}
    assert all(op.status == "completed" for op in ops.values())
    assert [ops[f"custom_{i}_counted"].metadata["cached"] for i in range(4)] == [
        True,
        True,
        True,
        False,
    ]


def test_progress_artifact_and_job_view_match_the_outcome(probe: Probe):
    state, summary = _run(
        items=_items(5) + [{"operation": "fail"}],
        parallel_execution=True,
        max_parallel=4,
        job_name="progress check",
    )
    job = service.get_job(summary["job_id"])
    assert job.status == BatchJobStatus.partial_success
    assert job.name == "progress check"
    assert job.progress.total_operations == 6 and job.progress.completed_operations == 5
    assert job.progress.failed_operations == 1 and job.progress.percent_complete == 100.0
    assert job.success_count == 5 and job.failure_count == 1
    assert job.completed_at is not None and job.total_duration_ms is not None
    assert len(job.operations) == 6
    report = json.loads(Path(summary["report_path"]).read_text())
    assert report["job_id"] == summary["job_id"] and len(report["operations"]) == 6
    assert set(summary["reports"]) == {"csv", "junit", "html"}
    assert all(Path(path).is_file() for path in summary["reports"].values())
    assert 'failures="1"' in Path(summary["reports"]["junit"]).read_text()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(summary["job_id"])
        assert {"ombudsman", "job-type:custom"} <= set(run.tags)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    kinds = {a.type for a in artifacts}
    assert {"progress", "table", "markdown"} <= kinds


def test_canary_password_never_reaches_results_logs_or_artifacts(
    postgres_port: int, caplog: pytest.LogCaptureFixture
):
    canary = "CANARY-pw-5b7c1e"
    url = f"postgresql://postgres:{canary}@127.0.0.1:{postgres_port}/postgres"

    def leaky(ctx: Any, connection: str) -> None:
        engine = ctx.engine(connection)
        # a driver that echoes its DSN in an error message
        raise RuntimeError(f"could not use {engine.url.render_as_string(hide_password=False)}")

    register_operation("leaky", leaky)
    try:
        state, summary = _run(
            items=[
                {"operation": "leaky", "arguments": {"connection": url}},
                {
                    "operation": "sql_query",
                    "arguments": {"connection": url, "query": "select 1 as one"},
                },
            ]
        )
    finally:
        unregister_operation("leaky")
    assert summary["operations"][1]["status"] == "completed"
    assert summary["operations"][1]["result"]["rows"] == [[1]]
    assert summary["operations"][0]["status"] == "failed"
    texts = [json.dumps(summary), Path(summary["report_path"]).read_text(), caplog.text]
    with get_client(sync_client=True) as client:
        run_id = summary["job_id"]
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
        texts += [json.dumps(a.data, default=str) + (a.description or "") for a in artifacts]
        assert wait_until(
            lambda: (
                len(
                    client.read_logs(
                        log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
                    )
                )
                > 3
            ),
            timeout=120,  # the API log handler sends in batches; a busy machine delays them
        )
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        texts += [log.message for log in logs]
        task_runs = client.read_task_runs()
        texts += [str(tr.state.message) for tr in task_runs if tr.state]
    # what Prefect result storage holds of the job: checkpoint segments and the stored reports
    store = state_store.default_store()
    checkpoint = state_store.SegmentLog(store, run_id).load()
    assert [e["operation_id"] for e in checkpoint] == [summary["operations"][1]["operation_id"]]
    texts.append(json.dumps(checkpoint))
    for name in state_store.REPORT_FILES.values():
        texts.append(store.read(state_store.job_key(run_id, name)).decode())
    assert any("could not use" in t for t in texts)
    for text in texts:
        assert canary not in text


def _artifacts(flow_run_id: Any) -> list[Any]:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def test_partial_run_ends_with_a_short_message_and_an_exception_free_of_the_summary(probe: Probe):
    from prefect.states import get_state_exception

    state, summary = _run(items=_items(3) + [{"operation": "fail"}], job_name="Four ops")
    assert state.name == "PartialSuccess"
    assert state.message == "3 of 4 operations completed, 1 failed"
    assert summary["completed"] == 3 and isinstance(summary, dict)
    # what the engine raises under a worker: short, and recognised by the log filter
    with pytest.raises(TypeError) as info:
        raise get_state_exception(state)
    assert len(str(info.value)) < 300 and "JobSummary" in str(info.value)
    import logging

    from prefect_ombudsman.flows.runner import SuppressFailedRunTraceback

    record = logging.LogRecord(
        "prefect.flow_runs",
        logging.ERROR,
        __file__,
        1,
        "Engine execution exited with unexpected exception",
        None,
        (TypeError, info.value, None),
    )
    assert SuppressFailedRunTraceback().filter(record) is False
    other = logging.LogRecord(
        "prefect.flow_runs",
        logging.ERROR,
        __file__,
        1,
        "x",
        None,
        (TypeError, TypeError("y"), None),
    )
    assert SuppressFailedRunTraceback().filter(other) is True


def test_progress_card_is_markdown_a_person_reads(probe: Probe):
    state, summary = _run(items=_items(2) + [{"operation": "fail"}], job_name="Card job")
    artifacts = _artifacts(state.state_details.flow_run_id)
    by_type = {}
    for artifact in artifacts:
        by_type.setdefault(artifact.type, []).append(artifact)
    progress = by_type["progress"][0]
    assert json.loads(progress.description)["failed_operations"] == 1  # the service reads this
    card = next(a for a in by_type["markdown"] if a.key == "ombudsman-custom-progress")
    assert card.description == "Progress of Card job"
    assert "## Card job: partial success" in card.data
    assert "**3 of 3** operations finished (100%)" in card.data
    assert "| 2 | 1 | 0 | 0 |" in card.data


def test_progress_card_while_running_names_the_operation_and_time_left():
    from prefect_ombudsman.flows.runner import JobSettings, progress_markdown
    from prefect_ombudsman.jobs.models import BatchJobType, BatchProgress

    text = progress_markdown(
        JobSettings(job_type=BatchJobType.custom, name="Nightly"),
        BatchProgress(
            total_operations=10,
            completed_operations=3,
            failed_operations=1,
            skipped_operations=0,
            current_operation="custom_4_probe",
            percent_complete=40.0,
            estimated_time_remaining_ms=125_000,
        ),
        BatchJobStatus.running,
    )
    assert "**4 of 10** operations finished (40%)" in text
    assert "Running now: `custom_4_probe`" in text
    assert "Estimated time left: 2 min 5 s" in text


def test_transient_retry_warnings_reach_the_run_logs(tmp_path: Path):
    marker = tmp_path / "flaky"
    state, summary = _run(
        items=[{"operation": "flaky", "arguments": {"marker": str(marker), "failures": 1}}],
        max_retries=2,
    )
    assert state.is_completed()

    def retry_logs() -> list[Any]:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                log_filter=LogFilter(
                    flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])
                )
            )
        return [log for log in logs if "transient error on attempt 1" in log.message]

    assert wait_until(lambda: retry_logs(), timeout=120)  # the API log handler sends in batches
    retry = retry_logs()
    assert retry[0].level == 30 and retry[0].task_run_id is not None


def _task_runs_of(flow_run_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )


def test_every_operation_is_a_task_run_with_its_final_state(probe: Probe):
    from prefect_ombudsman.errors import OperationCancelled

    def stops(ctx: Any) -> None:
        raise OperationCancelled(f"operation {ctx.operation_id} stopped: job cancelled")

    register_operation("stops", stops)
    try:
        state, summary = _run(
            items=_items(2)
            + [{"operation": "fail", "arguments": {"message": "3 rows differ"}}]
            + [{"operation": "stops"}],
            parallel_execution=True,
            max_parallel=2,
        )
    finally:
        unregister_operation("stops")
    assert [op["status"] for op in summary["operations"]] == [
        "completed",
        "completed",
        "failed",
        "skipped",
    ]
    expected = {
        "custom_0_probe": "COMPLETED",
        "custom_1_probe": "COMPLETED",
        "custom_2_fail": "FAILED",
        "custom_3_stops": "CANCELLED",
    }

    def recorded() -> dict[str, str]:
        return {
            tr.name: tr.state.type.value
            for tr in _task_runs_of(summary["job_id"])
            if tr.state and tr.state.is_final()
        }

    # the server records task runs from their state events a moment after they were sent
    assert wait_until(lambda: recorded() == expected, timeout=120), recorded()
    runs = {tr.name: tr for tr in _task_runs_of(summary["job_id"])}
    assert len(runs) == 4
    assert runs["custom_2_fail"].state.message == "3 rows differ"
    for name, tr in runs.items():
        op = next(o for o in summary["operations"] if o["operation_id"] == name)
        assert tr.start_time is not None and tr.end_time is not None and tr.run_count == 1
        assert tr.end_time >= tr.start_time
        assert abs((tr.start_time - datetime.fromisoformat(op["started_at"])).total_seconds()) < 60
        assert tr.flow_run_run_count == 1


def test_prefect_task_engine_path_gives_the_same_job(probe: Probe, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OMBUDSMAN_TASK_RUNS", "engine")
    state, summary = _run(
        items=_items(3) + [{"operation": "fail"}], parallel_execution=True, max_parallel=2
    )
    assert state.name == "PartialSuccess" and summary["completed"] == 3
    assert probe.peak <= 2
    failed = summary["operations"][3]
    assert failed["status"] == "failed" and failed["error"] == "failed on request"
    assert wait_until(
        lambda: (
            sorted(tr.name for tr in _task_runs_of(summary["job_id"]))
            == [f"custom_{i}_probe" for i in range(3)] + ["custom_3_fail"]
        ),
        timeout=120,
    )


def test_the_runner_does_not_write_reports_itself():
    import ast

    from prefect_ombudsman.flows import runner

    tree = ast.parse(Path(runner.__file__).read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert "prefect_ombudsman.reports" not in imported
    package = Path(runner.__file__).parents[1]  # no private Prefect future internals anywhere
    assert not [p.name for p in package.rglob("*.py") if "wrapped_future" in p.read_text()]


def test_a_job_finished_hook_adds_to_the_summary_and_the_one_report(probe: Probe):
    from prefect_ombudsman.flows.finish import remove_finished_hook
    from prefect_ombudsman.flows.runner import FinishedJob, on_finished

    seen: list[str] = []

    def totals(job: FinishedJob) -> None:
        seen.append(job.summary["job_id"])
        job.summary["probed"] = sum(1 for op in job.operations if op.result)

    on_finished(totals, job_types=["custom"])
    try:
        state, summary = _run(items=_items(2))
    finally:
        remove_finished_hook(totals)
    assert seen == [summary["job_id"]] and summary["probed"] == 2
    assert json.loads(Path(summary["report_path"]).read_text())["probed"] == 2
    stored = state_store.read_report(summary["job_id"])
    assert stored is not None and stored["probed"] == 2
