"""`custom_batch`: call registered operations (entry-point group `prefect_ombudsman.operations`)."""

from __future__ import annotations

from typing import Any

from prefect_ombudsman.executors.custom import run_custom_operation
from prefect_ombudsman.flows.parameters import job_flow, job_request
from prefect_ombudsman.flows.runner import (
    OperationPlan,
    register_executor,
    run_batch,
    settings_from,
)
from prefect_ombudsman.jobs.models import (
    BatchCustomRequest,
    BatchJobType,
)
from prefect_ombudsman.jobs.types import entry_for

register_executor("custom", run_custom_operation)

CUSTOM = entry_for(BatchJobType.custom)


def plan_custom(
    request: BatchCustomRequest, *, job_id: str = "", projects_dir: str | None = None
) -> list[OperationPlan]:
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


@job_flow(CUSTOM)
def custom_batch(**parameters: Any) -> Any:
    """Run registered custom operations as one batch job (job type `custom`).

    Each item calls one registered operation (`ombudsman operations` lists them; plugins add
    more through the entry-point group `prefect_ombudsman.operations`) with its arguments.
    Progress, the operations table and a summary appear on the run's Artifacts tab.
    """
    request, projects_dir = job_request(BatchCustomRequest, parameters)
    return run_batch(settings_from(request, CUSTOM.job_type, projects_dir), plan_custom(request))
