"""`multi_project_validation`: validate many projects in one job, each against its own databases.

One operation per project (`project_{i}_{project_id}`) that runs the listed pipelines (all of
the project's when the list is empty) with that project's connections. Afterwards the flow
writes a cross-project consolidated report (JSON, markdown and table artifacts).
"""

from __future__ import annotations

from typing import Any

from prefect_ombudsman.flows.pipelines import finish_validation_job
from prefect_ombudsman.flows.runner import (
    OperationPlan,
    batch_flow,
    register_executor,
    request_from,
    run_batch,
    settings_from,
)
from prefect_ombudsman.jobs.models import (
    BatchJobType,
    BatchMultiProjectRequest,
    CreatedBy,
    JobDescription,
    JobName,
    MaxParallel,
    MaxRetries,
    ParallelExecution,
    ProjectId,
    ProjectItems,
    ProjectsDir,
    RetryFailed,
    StopOnError,
    Tags,
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


_D = BatchMultiProjectRequest()  # the request model is the one source of the defaults below


@batch_flow("multi-project-validation")
def multi_project_validation(
    job_name: JobName = _D.job_name,
    projects: ProjectItems = _D.projects,
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
    """Validate several projects in one job, each against its own source and target.

    One operation per project runs the listed pipelines (all of them when none are listed);
    a cross-project report appears on the run's Artifacts tab.
    """
    request = request_from(BatchMultiProjectRequest, locals())
    state = run_batch(
        settings_from(request, BatchJobType.multi_project_validation, projects_dir),
        plan_projects(request),
    )
    return finish_validation_job(state, multi_project=True, slug="multi-project-validation")
