"""`multi_project_validation`: validate many projects in one job, each against its own databases.

One operation per project (`project_{i}_{project_id}`) that runs the listed pipelines (all of
the project's when the list is empty) with that project's connections. Afterwards the flow
writes a cross-project consolidated report (JSON, markdown and table artifacts).
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from prefect_ombudsman.flows.pipelines import finish_validation_job
from prefect_ombudsman.flows.runner import (
    OperationPlan,
    register_executor,
    request_from,
    run_batch,
    settings_from,
)
from prefect_ombudsman.jobs.models import (
    BatchJobType,
    BatchMultiProjectRequest,
    JobName,
    MaxParallel,
    MaxRetries,
    MultiProjectValidationItem,
)
from prefect_ombudsman.tasks.validation import run_project_operation

register_executor("project_validation", run_project_operation)


def plan_projects(request: BatchMultiProjectRequest) -> list[OperationPlan]:
    """One operation per project; a missing project fails only its own operation."""
    return [
        OperationPlan(
            operation_id=f"project_{i}_{item.project_id}",
            operation_type="project_validation",
            executor="project_validation",
            arguments={"project_id": item.project_id, "pipeline_ids": list(item.pipeline_ids)},
            metadata={"project_id": item.project_id, "pipeline_ids": list(item.pipeline_ids)},
        )
        for i, item in enumerate(request.projects)
    ]


@flow(
    name="multi-project-validation",
    task_runner=ThreadPoolTaskRunner(max_workers=64),
    description="Validate several projects in one job, each against its own source and target.",
    validate_parameters=True,
)
def multi_project_validation(
    job_name: JobName = "Multi-project validation",
    projects: list[MultiProjectValidationItem] | None = None,
    description: str | None = None,
    parallel_execution: bool = False,
    max_parallel: MaxParallel = 3,
    stop_on_error: bool = False,
    retry_failed: bool = True,
    max_retries: MaxRetries = 3,
    project_id: str | None = None,
    tags: list[str] | None = None,
    created_by: str | None = None,
    projects_dir: str | None = None,
) -> Any:
    """Run each project's pipelines; see SPEC §3 (job type `multi_project_validation`)."""
    request = request_from(BatchMultiProjectRequest, locals())
    state = run_batch(
        settings_from(request, BatchJobType.multi_project_validation, projects_dir),
        plan_projects(request),
    )
    return finish_validation_job(state, multi_project=True, slug="multi-project-validation")
