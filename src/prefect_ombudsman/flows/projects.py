"""`multi_project_validation`: validate many projects in one job, each against its own databases.

One operation per project (`project_{i}_{project_id}`) that runs the listed pipelines (all of
the project's when the list is empty) with that project's connections. Afterwards a job-finished
hook writes a cross-project consolidated report (JSON, markdown and table artifacts).
"""

from __future__ import annotations

from typing import Any

from prefect_ombudsman.executors.validation import run_project_operation
from prefect_ombudsman.flows.finish import on_finished
from prefect_ombudsman.flows.parameters import job_flow, job_request
from prefect_ombudsman.flows.pipelines import consolidated_report_hook
from prefect_ombudsman.flows.runner import (
    OperationPlan,
    register_executor,
    run_batch,
    settings_from,
)
from prefect_ombudsman.jobs.models import (
    BatchJobType,
    BatchMultiProjectRequest,
)
from prefect_ombudsman.jobs.types import entry_for

register_executor("project_validation", run_project_operation)

PROJECTS = entry_for(BatchJobType.multi_project_validation)
on_finished(
    consolidated_report_hook(multi_project=True, slug="multi-project-validation"),
    [PROJECTS.job_type],
)


def plan_projects(
    request: BatchMultiProjectRequest, *, job_id: str = "", projects_dir: str | None = None
) -> list[OperationPlan]:
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


@job_flow(PROJECTS)
def multi_project_validation(**parameters: Any) -> Any:
    """Validate several projects in one job, each against its own source and target.

    One operation per project runs the listed pipelines (all of them when none are listed);
    a cross-project report appears on the run's Artifacts tab.
    """
    request, projects_dir = job_request(BatchMultiProjectRequest, parameters)
    return run_batch(
        settings_from(request, PROJECTS.job_type, projects_dir),
        plan_projects(request),
    )
