"""A running job's operations: the plan overlaid with task runs, and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from prefect.client.schemas.objects import TaskRun
from prefect.states import Pending, Running

from prefect_ombudsman.jobs.models import BatchJobStatus, BatchOperationStatus
from prefect_ombudsman.jobs.service import RunArtifacts, _live_operations


def _task_run(name: str, state) -> TaskRun:
    return TaskRun(
        name=name,
        flow_run_id=uuid4(),
        task_key="operation",
        dynamic_key="0",
        state=state,
        created=datetime.now(UTC),
    )


PLAN = [
    {"operation_id": "pipeline_0_sales", "operation_type": "pipeline"},
    {"operation_id": "pipeline_1_customers", "operation_type": "pipeline"},
]


def test_a_task_run_not_yet_renamed_is_not_an_extra_operation():
    # Prefect creates the task run as "operation-3f2" and renames it to "{operation_id}" as it starts
    runs = [_task_run("pipeline_0_sales", Running()), _task_run("operation-3f2", Pending())]
    ops = _live_operations(RunArtifacts(plan=PLAN), runs, BatchJobStatus.running)
    assert [op.operation_id for op in ops] == ["pipeline_0_sales", "pipeline_1_customers"]
    assert [op.status for op in ops] == [BatchOperationStatus.running, BatchOperationStatus.pending]


def test_without_a_plan_task_runs_named_as_operations_still_show():
    runs = [_task_run("noop_0", Running()), _task_run("operation-a1b", Pending())]
    ops = _live_operations(RunArtifacts(), runs, BatchJobStatus.running)
    assert [op.operation_id for op in ops] == ["noop_0"]
