"""The job and request models (SPEC §4-§5) and the job-type registry:
`from prefect_ombudsman.jobs import BatchJob, JOB_TYPES`.

Only the pydantic models and the registry (which names its flows by import string) are imported
here; the REST API (`jobs.api`, FastAPI) and the jobs service (`jobs.service`, Prefect client)
load when imported themselves.
"""

from prefect_ombudsman.jobs.models import (
    MAX_ITEMS,
    TERMINAL_JOB_STATUSES,
    BatchComparisonRequest,
    BatchCustomRequest,
    BatchDataGenRequest,
    BatchJob,
    BatchJobCancelRequest,
    BatchJobCreateResponse,
    BatchJobListResponse,
    BatchJobRetryRequest,
    BatchJobStatus,
    BatchJobStatusResponse,
    BatchJobType,
    BatchMetadataRequest,
    BatchMultiProjectRequest,
    BatchOperation,
    BatchOperationStatus,
    BatchPipelineRequest,
    BatchProgress,
    BatchRequest,
    ComparisonItem,
    CustomItem,
    DataGenItem,
    MetadataExtractionItem,
    MultiProjectValidationItem,
    PipelineExecutionItem,
    SchemaType,
)
from prefect_ombudsman.jobs.types import JOB_TYPES, JobType

__all__ = [
    "JOB_TYPES",
    "MAX_ITEMS",
    "TERMINAL_JOB_STATUSES",
    "BatchComparisonRequest",
    "BatchCustomRequest",
    "BatchDataGenRequest",
    "BatchJob",
    "BatchJobCancelRequest",
    "BatchJobCreateResponse",
    "BatchJobListResponse",
    "BatchJobRetryRequest",
    "BatchJobStatus",
    "BatchJobStatusResponse",
    "BatchJobType",
    "BatchMetadataRequest",
    "BatchMultiProjectRequest",
    "BatchOperation",
    "BatchOperationStatus",
    "BatchPipelineRequest",
    "BatchProgress",
    "BatchRequest",
    "ComparisonItem",
    "CustomItem",
    "DataGenItem",
    "JobType",
    "MetadataExtractionItem",
    "MultiProjectValidationItem",
    "PipelineExecutionItem",
    "SchemaType",
]
