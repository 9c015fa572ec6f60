"""The job-type registry: every batch job type declared once, everything else derived from it.

One `JobType` entry names the job type, its flow and operation planner (import strings, so this
module stays below the flows and a command that only reads jobs loads no engine), its request
model, its `ombudsman run` command, its REST route and noun, and its deployment. The jobs service,
the REST routes, the CLI's run commands, `flows.flow_for` and the check of `prefect.yaml`
(tests/jobs/test_job_types.py) read this table.

Adding a job type: write its flow module (planner + flow, decorated with `job_flow`), add one
entry to `JOB_TYPES` (and its value to `BatchJobType`), add tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

from pydantic import BaseModel

from prefect_ombudsman.jobs.models import (
    BatchComparisonRequest,
    BatchCustomRequest,
    BatchDataGenRequest,
    BatchJobType,
    BatchMetadataRequest,
    BatchMultiProjectRequest,
    BatchPipelineRequest,
    BatchRequest,
)

DEPLOYMENT_POOL = "ombudsman-process"
"""The process work pool `prefect.yaml`'s deployments run on."""


def _load(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(import_module(module), name)


@dataclass(frozen=True)
class JobType:
    """One batch job type: what runs it and how every interface names it."""

    job_type: BatchJobType
    flow: str
    """`module:function` of the Prefect flow (imported on first use)."""
    flow_name: str
    """The flow's Prefect name, also its deployment's name in `prefect.yaml`."""
    request: type[BatchRequest]
    """The request model: the flow's parameters, the REST body, the CLI's validation."""
    planner: str
    """`module:function(request, *, job_id, projects_dir) -> list[OperationPlan]`."""
    command: str
    """`ombudsman run <command>`."""
    route: str
    """`POST /batch<route>` creates a job of this type."""
    label: str
    """How the REST answer names a job of this type ("<label> job created with 3 <noun>")."""
    noun: str
    """What one operation of this type is called, plural ("pipelines", "table pairs")."""
    items_field: str
    """The request field that lists the items (one operation each)."""
    summary: str
    """One line: the REST route's summary and the deployment's description in `prefect.yaml`."""
    default_project: bool = True
    """A REST request without `project_id` gets the default project."""

    @property
    def module(self) -> str:
        return self.flow.partition(":")[0]

    @property
    def entrypoint(self) -> str:
        """The flow's entrypoint as `prefect.yaml` writes it (a path from the repository root)."""
        module, _, name = self.flow.partition(":")
        return f"src/{module.replace('.', '/')}.py:{name}"

    @property
    def tags(self) -> list[str]:
        return ["ombudsman", f"job-type:{self.job_type.value}"]

    def load_flow(self) -> Any:
        """The Prefect flow object (imports the flow module and its engine)."""
        return _load(self.flow)

    def plan(self, request: BaseModel, job_id: str, projects_dir: str | None) -> list[Any]:
        """The operations the flow will run, from its own planner."""
        return list(_load(self.planner)(request, job_id=job_id, projects_dir=projects_dir))


_FLOWS = "prefect_ombudsman.flows"

JOB_TYPES: tuple[JobType, ...] = (
    JobType(
        job_type=BatchJobType.bulk_pipeline_execution,
        flow=f"{_FLOWS}.pipelines:bulk_pipeline_execution",
        flow_name="bulk-pipeline-execution",
        request=BatchPipelineRequest,
        planner=f"{_FLOWS}.pipelines:plan_pipelines",
        command="pipelines",
        route="/pipelines/bulk-execute",
        label="Batch pipeline execution",
        noun="pipelines",
        items_field="pipelines",
        summary="Run many validation pipelines of a project as one job.",
    ),
    JobType(
        job_type=BatchJobType.batch_data_generation,
        flow=f"{_FLOWS}.datagen:batch_data_generation",
        flow_name="batch-data-generation",
        request=BatchDataGenRequest,
        planner=f"{_FLOWS}.datagen:plan_datagen",
        command="generate",
        route="/data/bulk-generate",
        label="Batch data generation",
        noun="items",
        items_field="items",
        summary="Generate seeded Retail / Finance / Healthcare warehouses into every target.",
    ),
    JobType(
        job_type=BatchJobType.multi_project_validation,
        flow=f"{_FLOWS}.projects:multi_project_validation",
        flow_name="multi-project-validation",
        request=BatchMultiProjectRequest,
        planner=f"{_FLOWS}.projects:plan_projects",
        command="projects",
        route="/projects/multi-validate",
        label="Multi-project validation",
        noun="projects",
        items_field="projects",
        summary="Validate many projects, each against its own databases.",
    ),
    JobType(
        job_type=BatchJobType.bulk_metadata_extraction,
        flow=f"{_FLOWS}.metadata:bulk_metadata_extraction",
        flow_name="bulk-metadata-extraction",
        request=BatchMetadataRequest,
        planner=f"{_FLOWS}.metadata:plan_metadata",
        command="metadata",
        route="/metadata/bulk-extract",
        label="Bulk metadata extraction",
        noun="sources",
        items_field="items",
        summary="Extract catalogs of many sources, bounded per server.",
    ),
    JobType(
        job_type=BatchJobType.batch_comparison,
        flow=f"{_FLOWS}.comparison:batch_comparison",
        flow_name="batch-comparison",
        request=BatchComparisonRequest,
        planner=f"{_FLOWS}.comparison:plan_comparison",
        command="compare",
        route="/comparison/bulk-compare",
        label="Batch comparison",
        noun="table pairs",
        items_field="items",
        summary="Row-level comparison of many table pairs.",
    ),
    JobType(
        job_type=BatchJobType.custom,
        flow=f"{_FLOWS}.custom:custom_batch",
        flow_name="custom-batch",
        request=BatchCustomRequest,
        planner=f"{_FLOWS}.custom:plan_custom",
        command="custom",
        route="/custom/execute",
        label="Custom batch",
        noun="operations",
        items_field="items",
        summary="Run registered custom operations as one batch job.",
        default_project=False,
    ),
)

_BY_TYPE = {entry.job_type: entry for entry in JOB_TYPES}
_BY_FLOW_NAME = {entry.flow_name: entry for entry in JOB_TYPES}


def entry_for(value: BatchJobType | str) -> JobType:
    """The entry of a job type (`BatchJobType` or its value); KeyError names the known ones."""
    try:
        return _BY_TYPE[BatchJobType(getattr(value, "value", value))]
    except ValueError:
        known = ", ".join(t.value for t in BatchJobType)
        raise KeyError(f"unknown job type {value!r} (known: {known})") from None


def by_flow_name(name: str) -> JobType | None:
    """The entry whose flow has this Prefect name (None for a flow that is not ours)."""
    return _BY_FLOW_NAME.get(name)


def by_command(command: str) -> JobType:
    """The entry run by `ombudsman run <command>`."""
    return next(entry for entry in JOB_TYPES if entry.command == command)


__all__ = [
    "DEPLOYMENT_POOL",
    "JOB_TYPES",
    "JobType",
    "by_command",
    "by_flow_name",
    "entry_for",
]
