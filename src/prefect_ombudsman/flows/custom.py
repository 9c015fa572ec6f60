"""`custom_batch`: call registered operations (entry-point group `prefect_ombudsman.operations`)."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from prefect_ombudsman.flows.runner import (
    OperationPlan,
    register_executor,
    request_from,
    run_batch,
    settings_from,
)
from prefect_ombudsman.jobs.models import (
    BatchCustomRequest,
    BatchJobType,
    CustomItem,
    JobName,
    MaxParallel,
    MaxRetries,
)
from prefect_ombudsman.tasks.custom import run_custom_operation

register_executor("custom", run_custom_operation)


def plan_custom(request: BatchCustomRequest) -> list[OperationPlan]:
    """One operation per item, id `custom_{i}_{name}`; an unknown operation fails only its own operation."""
    plans = []
    for i, item in enumerate(request.items):
        plans.append(
            OperationPlan(
                operation_id=f"custom_{i}_{item.name or item.operation}",
                operation_type="custom",
                executor="custom",
                arguments={"operation": item.operation, "arguments": item.arguments},
                metadata={"operation": item.operation, "arguments": item.arguments},
            )
        )
    return plans


@flow(
    name="custom-batch",
    task_runner=ThreadPoolTaskRunner(max_workers=64),
    description="Run registered custom operations as one batch job.",
    validate_parameters=True,
)
def custom_batch(
    job_name: JobName = "Custom batch",
    items: list[CustomItem] | None = None,
    description: str | None = None,
    parallel_execution: bool = False,
    max_parallel: MaxParallel = 5,
    stop_on_error: bool = False,
    retry_failed: bool = True,
    max_retries: MaxRetries = 3,
    project_id: str | None = None,
    tags: list[str] | None = None,
    created_by: str | None = None,
    projects_dir: str | None = None,
) -> Any:
    """Run each item's registered operation; see SPEC §3 (job type `custom`)."""
    request = request_from(BatchCustomRequest, locals())
    return run_batch(
        settings_from(request, BatchJobType.custom, projects_dir), plan_custom(request)
    )
