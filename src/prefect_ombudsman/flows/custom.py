"""`custom_batch`: call registered operations (entry-point group `prefect_ombudsman.operations`)."""

from __future__ import annotations

from typing import Any

from prefect_ombudsman.flows.runner import (
    OperationPlan,
    batch_flow,
    register_executor,
    request_from,
    run_batch,
    settings_from,
)
from prefect_ombudsman.jobs.models import (
    BatchCustomRequest,
    BatchJobType,
    CreatedBy,
    CustomItems,
    JobDescription,
    JobName,
    MaxParallel,
    MaxRetries,
    ParallelExecution,
    ProjectId,
    ProjectsDir,
    RetryFailed,
    StopOnError,
    Tags,
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


_D = BatchCustomRequest()  # the request model is the one source of the defaults below


@batch_flow("custom-batch")
def custom_batch(
    job_name: JobName = _D.job_name,
    items: CustomItems = _D.items,
    description: JobDescription = _D.description,
    parallel_execution: ParallelExecution = _D.parallel_execution,
    max_parallel: MaxParallel = _D.max_parallel,
    stop_on_error: StopOnError = _D.stop_on_error,
    retry_failed: RetryFailed = _D.retry_failed,
    max_retries: MaxRetries = _D.max_retries,
    project_id: ProjectId = _D.project_id,
    tags: Tags = _D.tags,
    created_by: CreatedBy = _D.created_by,
    projects_dir: ProjectsDir = None,
) -> Any:
    """Run registered custom operations as one batch job (job type `custom`).

    Each item calls one registered operation (`ombudsman operations` lists them; plugins add
    more through the entry-point group `prefect_ombudsman.operations`) with its arguments.
    Progress, the operations table and a summary appear on the run's Artifacts tab.
    """
    request = request_from(BatchCustomRequest, locals())
    return run_batch(
        settings_from(request, BatchJobType.custom, projects_dir), plan_custom(request)
    )
