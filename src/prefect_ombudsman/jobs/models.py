"""The documented job model (SPEC §4) and the request models (SPEC §5), field names exact."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
_SAFE_ID = re.compile(SAFE_ID_PATTERN)

MaxParallel = Annotated[int, Field(ge=1, le=64, description="Operations in flight at once (1-64).")]
MaxRetries = Annotated[
    int, Field(ge=0, le=10, description="Retries per operation for transient errors (0-10).")
]
RowCount = Annotated[
    int, Field(ge=1, le=1_000_000_000, description="Rows per fact table (1-1,000,000,000).")
]
JobName = Annotated[str, Field(min_length=1, max_length=200)]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _safe_id(value: str, field: str) -> str:
    value = value.strip()
    for suffix in (".yaml", ".yml"):
        if field == "pipeline_id" and value.lower().endswith(suffix):
            value = value[: -len(suffix)]
    if not _SAFE_ID.match(value) or ".." in value:
        raise ValueError(
            f"{field} {value!r} is not a safe id: use letters, digits, '_', '-' or '.', "
            "start with a letter or digit, at most 128 characters, no '..'"
        )
    return value


class BatchJobType(StrEnum):
    bulk_pipeline_execution = "bulk_pipeline_execution"
    batch_data_generation = "batch_data_generation"
    multi_project_validation = "multi_project_validation"
    bulk_metadata_extraction = "bulk_metadata_extraction"
    batch_comparison = "batch_comparison"
    custom = "custom"


class BatchJobStatus(StrEnum):
    pending = "pending"
    queued = "queued"
    running = "running"
    paused = "paused"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    partial_success = "partial_success"


TERMINAL_JOB_STATUSES = frozenset(
    {
        BatchJobStatus.completed,
        BatchJobStatus.failed,
        BatchJobStatus.cancelled,
        BatchJobStatus.partial_success,
    }
)


class BatchOperationStatus(StrEnum):
    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"
    skipped = "skipped"


class SchemaType(StrEnum):
    Retail = "Retail"
    Finance = "Finance"
    Healthcare = "Healthcare"


class BatchOperation(BaseModel):
    operation_id: str
    operation_type: str
    status: BatchOperationStatus = BatchOperationStatus.pending
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    result: Any = None
    error: str | None = None
    metadata: dict[str, Any] | None = None


class BatchProgress(BaseModel):
    total_operations: int
    completed_operations: int
    failed_operations: int
    skipped_operations: int
    current_operation: str | None = None
    percent_complete: float = 0.0
    estimated_time_remaining_ms: int | None = None


class BatchJob(BaseModel):
    job_id: str
    job_type: BatchJobType
    status: BatchJobStatus = BatchJobStatus.pending
    name: str
    description: str | None = None
    operations: list[BatchOperation] = Field(default_factory=list)
    progress: BatchProgress | None = None
    parallel_execution: bool = False
    max_parallel: int = 5
    stop_on_error: bool = False
    retry_failed: bool = True
    max_retries: int = 3
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    total_duration_ms: int | None = None
    success_count: int = 0
    failure_count: int = 0
    result_summary: dict[str, Any] | None = None
    created_by: str | None = None
    project_id: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None


# ---------------------------------------------------------------- requests


class _Request(BaseModel):
    """Common fields of every batch request; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    job_name: JobName = "Batch job"
    description: str | None = Field(default=None, max_length=2000)
    parallel_execution: bool = False
    max_parallel: MaxParallel = 5
    stop_on_error: bool = False
    retry_failed: bool = Field(
        default=True, description="Retry operations that hit transient errors."
    )
    max_retries: MaxRetries = 3
    project_id: str | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list)
    created_by: str | None = Field(default=None, max_length=200)

    @field_validator("project_id")
    @classmethod
    def _project_id_safe(cls, value: str | None) -> str | None:
        return None if value is None else _safe_id(value, "project_id")


class PipelineExecutionItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline_id: str
    pipeline_name: str | None = None
    config_override: dict[str, Any] | None = None

    @field_validator("pipeline_id")
    @classmethod
    def _pipeline_id_safe(cls, value: str) -> str:
        return _safe_id(value, "pipeline_id")


class BatchPipelineRequest(_Request):
    pipelines: list[PipelineExecutionItem] = Field(default_factory=list)


class DataGenItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_type: SchemaType
    table_name: str | None = None
    row_count: RowCount = 1000
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    tables: dict[str, RowCount] | None = Field(
        default=None, description="Row count per table name."
    )
    targets: list[str | dict[str, Any]] | None = Field(
        default=None, description="Connections to load; default: the project's source and target."
    )
    drift: dict[str, Any] | None = Field(
        default=None, description="Planted differences per target (SPEC §8)."
    )
    if_exists: str = Field(default="replace", pattern="^(replace|append|fail)$")
    start_date: date | None = Field(
        default=None, description="First day of dim_date (default 2020-01-01)."
    )
    end_date: date | None = Field(
        default=None, description="Last day of dim_date (default 2024-12-31)."
    )

    @model_validator(mode="after")
    def _date_range(self) -> DataGenItem:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError(f"end_date {self.end_date} is before start_date {self.start_date}")
        return self

    @field_validator("schema_type", mode="before")
    @classmethod
    def _schema_type_case(cls, value: Any) -> Any:
        if isinstance(value, str):
            for member in SchemaType:
                if member.value.lower() == value.strip().lower():
                    return member
        return value


class BatchDataGenRequest(_Request):
    items: list[DataGenItem] = Field(default_factory=list)
    parallel_execution: bool = True
    max_parallel: MaxParallel = 3


class MultiProjectValidationItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_id: str
    pipeline_ids: list[str] = Field(default_factory=list)

    @field_validator("project_id")
    @classmethod
    def _project_safe(cls, value: str) -> str:
        return _safe_id(value, "project_id")

    @field_validator("pipeline_ids")
    @classmethod
    def _pipelines_safe(cls, value: list[str]) -> list[str]:
        return [_safe_id(v, "pipeline_id") for v in value]


class BatchMultiProjectRequest(_Request):
    projects: list[MultiProjectValidationItem] = Field(default_factory=list)
    max_parallel: MaxParallel = 3


class MetadataExtractionItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connection: str | dict[str, Any] | None = Field(
        default=None, description="Any connection reference."
    )
    connection_type: str | None = Field(
        default=None, description="Legacy: 'sqlserver' or 'snowflake'."
    )
    schema_name: str | None = None
    table_names: list[str] | None = None

    @model_validator(mode="after")
    def _one_connection(self) -> MetadataExtractionItem:
        if self.connection is None and not self.connection_type:
            raise ValueError("give 'connection' (or the legacy 'connection_type')")
        return self

    @property
    def reference(self) -> str | dict[str, Any]:
        return self.connection if self.connection is not None else str(self.connection_type)


class BatchMetadataRequest(_Request):
    items: list[MetadataExtractionItem] = Field(default_factory=list)
    parallel_execution: bool = True
    max_parallel: MaxParallel = 2
    exact_counts: bool = False
    sessions_per_server: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Sessions one database server may hold at once in a process (default 4).",
    )


class ComparisonItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table: str | None = Field(
        default=None, description="Logical table; names both sides unless overridden."
    )
    source_table: str | None = None
    target_table: str | None = None
    key_columns: list[str] | None = None
    columns: list[str] | None = None
    source: str | dict[str, Any] | None = Field(
        default=None, description="Connection; default the project's source."
    )
    target: str | dict[str, Any] | None = Field(
        default=None, description="Connection; default the project's target."
    )
    sample_size: int = Field(default=10, ge=0, le=1000)
    hash_mode: Literal["auto", "canonical", "native"] = Field(
        default="auto",
        description="auto: the engine's native row hash when both sides are one engine with equal types.",
    )
    buckets: int | None = Field(
        default=None, ge=1, le=1 << 20, description="Level-1 bucket checksums (default 16384)."
    )

    @model_validator(mode="after")
    def _some_table(self) -> ComparisonItem:
        if not (self.table or (self.source_table and self.target_table)):
            raise ValueError("give 'table' or both 'source_table' and 'target_table'")
        return self


class BatchComparisonRequest(_Request):
    items: list[ComparisonItem] = Field(default_factory=list)
    from_mapping: bool = Field(
        default=False,
        description="Compare every table found in both sides of the project's metadata/mapping.json (after the items).",
    )


class CustomItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operation: str = Field(min_length=1, max_length=100, description="A registered operation name.")
    name: str | None = Field(
        default=None, max_length=100, description="Label used in the operation id."
    )
    arguments: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_safe(cls, value: str | None) -> str | None:
        return None if value is None else _safe_id(value, "name")


class BatchCustomRequest(_Request):
    items: list[CustomItem] = Field(default_factory=list)


class BatchJobCancelRequest(BaseModel):
    reason: str | None = None
    force: bool = False


class BatchJobRetryRequest(BaseModel):
    operation_ids: list[str] | None = None
    max_retries: MaxRetries = 3


class BatchJobCreateResponse(BaseModel):
    job_id: str
    status: BatchJobStatus
    message: str
    total_operations: int


class BatchJobStatusResponse(BaseModel):
    job: BatchJob
    current_progress: BatchProgress


class BatchJobListResponse(BaseModel):
    jobs: list[BatchJob]
    total: int
    page: int
    page_size: int


REQUEST_MODELS: dict[BatchJobType, type[_Request]] = {
    BatchJobType.bulk_pipeline_execution: BatchPipelineRequest,
    BatchJobType.batch_data_generation: BatchDataGenRequest,
    BatchJobType.multi_project_validation: BatchMultiProjectRequest,
    BatchJobType.bulk_metadata_extraction: BatchMetadataRequest,
    BatchJobType.batch_comparison: BatchComparisonRequest,
    BatchJobType.custom: BatchCustomRequest,
}


def new_id() -> str:
    return str(uuid.uuid4())
