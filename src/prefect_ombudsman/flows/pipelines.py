"""`bulk_pipeline_execution`: run many validation pipelines of one project as one batch job.

One operation per pipeline (`pipeline_{i}_{pipeline_id}`; a `batch:` file expands to one
operation per listed pipeline, `i` counting across the whole job). Each operation loads the
pipeline (the job's project first, then the Studio's other search places), applies its
`config_override`, runs every step against the project's connections and writes
`results/<run_id>.json`; it fails when any step is FAIL or ERROR. After the batch a job-finished
hook writes the consolidated report (JSON beside the job report, markdown and table artifacts).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.executors.validation import run_pipeline_operation
from prefect_ombudsman.flows.finish import FinishedHook, FinishedJob, on_finished
from prefect_ombudsman.flows.parameters import job_flow, job_request
from prefect_ombudsman.flows.runner import (
    OperationPlan,
    register_executor,
    run_batch,
    settings_from,
)
from prefect_ombudsman.jobs.models import (
    BatchJobType,
    BatchPipelineRequest,
)
from prefect_ombudsman.jobs.types import entry_for
from prefect_ombudsman.projects import default_project_id, projects_root
from prefect_ombudsman.state_store import write_job_files
from prefect_ombudsman.validation.consolidated import (
    build_report,
    report_markdown,
    report_table_rows,
    write_report,
)
from prefect_ombudsman.validation.loader import PipelineRef, expand_pipeline

log = logging.getLogger("prefect_ombudsman.validation")

register_executor("pipeline_execution", run_pipeline_operation)

PIPELINES = entry_for(BatchJobType.bulk_pipeline_execution)


def plan_pipelines(
    request: BatchPipelineRequest, *, job_id: str = "", projects_dir: str | None = None
) -> list[OperationPlan]:
    """One operation per pipeline; batch files expand; a missing file still gets its (failing) operation."""
    root = projects_root(projects_dir)
    project_id = request.project_id or default_project_id()
    plans: list[OperationPlan] = []
    for item in request.pipelines:
        try:
            refs = expand_pipeline(item.pipeline_id, project_id, root)
        except ConfigurationError:
            refs = [PipelineRef(item.pipeline_id, None)]
        for ref in refs:
            i = len(plans)
            metadata = {
                "pipeline_id": ref.pipeline_id,
                "pipeline_name": item.pipeline_name,
                "config_override": item.config_override,
            }
            if ref.from_batch:
                metadata["from_batch"] = ref.from_batch
            plans.append(
                OperationPlan(
                    operation_id=f"pipeline_{i}_{ref.pipeline_id}",
                    operation_type="pipeline_execution",
                    executor="pipeline_execution",
                    arguments={
                        "pipeline_id": ref.pipeline_id,
                        "pipeline_name": item.pipeline_name,
                        "config_override": item.config_override,
                        "from_batch": ref.from_batch,
                    },
                    metadata=metadata,
                )
            )
    return plans


def consolidated_report_hook(*, multi_project: bool, slug: str) -> FinishedHook:
    """A job-finished hook: the consolidated report (JSON beside the job report and in result
    storage, markdown and table artifacts). It runs before the built-in report hook
    (`reports.write_job_reports`), so the job report is written once, with the consolidated
    report's path and summary already in it."""

    def write_consolidated_report(job: FinishedJob) -> None:
        summary = job.summary
        try:
            report = build_report(summary, multi_project=multi_project)
            folder = (
                Path(summary["report_path"]).parent
                if summary.get("report_path")
                else projects_root(None) / ".ombudsman" / "jobs"
            )
            path = write_report(report, folder / f"validation_report_{summary['job_id']}.json")
            summary["validation_report_path"] = str(path)
            summary["validation_summary"] = report["summary"]
            write_job_files(
                job.store, summary["job_id"], {"validation_report.json": path.read_text()}
            )
        except Exception as exc:
            # the operations' results stand; a report problem must not hide them
            log.warning("could not build the consolidated validation report: %s", exc)
            return
        try:
            create_markdown_artifact(
                key=f"ombudsman-{slug}-report",
                markdown=report_markdown(report, str(path)),
                description="Consolidated validation report",
            )
            rows = report_table_rows(report)
            if rows:
                create_table_artifact(
                    key=f"ombudsman-{slug}-tables",
                    table=rows,
                    description="Validation results per table",
                )
        except Exception as exc:
            log.warning("could not publish the validation report artifacts: %s", exc)

    return write_consolidated_report


on_finished(
    consolidated_report_hook(multi_project=False, slug="bulk-pipeline-execution"),
    [PIPELINES.job_type],
)


@job_flow(PIPELINES)
def bulk_pipeline_execution(**parameters: Any) -> Any:
    """Run many validation pipelines of a project (source vs target) as one batch job.

    Each pipeline runs its steps against the project's connections and writes its result; a
    pipeline fails when any step is FAIL or ERROR. The consolidated report (markdown and a
    table per validated table) appears on the run's Artifacts tab.
    """
    request, projects_dir = job_request(
        BatchPipelineRequest,
        parameters,
        project_id=parameters.get("project_id") or default_project_id(),
    )
    return run_batch(
        settings_from(request, PIPELINES.job_type, projects_dir),
        plan_pipelines(request, projects_dir=projects_dir),
    )
