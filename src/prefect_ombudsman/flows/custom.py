"""`custom_batch`: call registered operations (entry-point group `prefect_ombudsman.operations`)."""

from __future__ import annotations

import inspect
from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.flows.runner import JobSettings, OperationPlan, register_executor, run_batch
from prefect_ombudsman.jobs.models import BatchCustomRequest, BatchJobType, CustomItem, JobName, MaxParallel, MaxRetries
from prefect_ombudsman.operations.context import OperationContext
from prefect_ombudsman.operations.registry import get_operation


def run_custom_operation(ctx: OperationContext, arguments: dict[str, Any]) -> Any:
    """Executor: call the named operation with the item's arguments."""
    function = get_operation(arguments["operation"])
    kwargs = dict(arguments.get("arguments") or {})
    try:
        inspect.signature(function).bind(ctx, **kwargs)
    except TypeError as exc:
        raise ConfigurationError(f"operation {arguments['operation']!r}: {exc}") from None
    return function(ctx, **kwargs)


register_executor("custom", run_custom_operation)


def plan_custom(request: BatchCustomRequest) -> list[OperationPlan]:
    """One operation per item, id `custom_{i}_{name}`; unknown operations fail at plan time."""
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


def settings_from(request: Any, job_type: BatchJobType, projects_dir: str | None) -> JobSettings:
    """The runner settings of any batch request."""
    return JobSettings(
        job_type=job_type,
        name=request.job_name,
        description=request.description,
        parallel_execution=request.parallel_execution,
        max_parallel=request.max_parallel,
        stop_on_error=request.stop_on_error,
        retry_failed=request.retry_failed,
        max_retries=request.max_retries,
        project_id=getattr(request, "project_id", None),
        projects_dir=projects_dir,
        tags=tuple(request.tags),
        created_by=request.created_by,
    )


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
    request = BatchCustomRequest(
        job_name=job_name,
        description=description,
        items=items or [],
        parallel_execution=parallel_execution,
        max_parallel=max_parallel,
        stop_on_error=stop_on_error,
        retry_failed=retry_failed,
        max_retries=max_retries,
        project_id=project_id,
        tags=tags or [],
        created_by=created_by,
    )
    return run_batch(settings_from(request, BatchJobType.custom, projects_dir), plan_custom(request))
