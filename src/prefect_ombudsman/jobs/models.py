"""The documented job model (SPEC §4) and the request models (SPEC §5), field names exact.

The request models are also the parameters of the six flows: their titles, descriptions and
examples are what the Prefect UI's run forms show, and their defaults are the flows' defaults.
Integers and booleans are strict (a JSON `true` is not a count), floats refuse NaN/Infinity,
and every list is bounded.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
_SAFE_ID = re.compile(SAFE_ID_PATTERN)
MAX_ITEMS = 10_000
"""The most items, pipelines, projects, tags or names any one list of a request may hold."""

# ----------------------------------------------------------------- field types shared with the flows

JobName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        title="Job name",
        description="Shown in the jobs list, the run page and notifications.",
        examples=["Nightly validation"],
    ),
]
JobDescription = Annotated[
    str | None,
    Field(max_length=2000, title="Description", description="Free text kept with the job."),
]
ParallelExecution = Annotated[
    bool,
    Field(
        strict=True,
        title="Run operations in parallel",
        description="On: up to 'Max parallel' operations at once. Off: one at a time, in order.",
    ),
]
MaxParallel = Annotated[
    int,
    Field(
        strict=True,
        ge=1,
        le=64,
        title="Max parallel",
        description="Operations in flight at once when running in parallel (1-64).",
    ),
]
StopOnError = Annotated[
    bool,
    Field(
        strict=True,
        title="Stop on error",
        description="Start no new operation after the first failure (the rest are skipped).",
    ),
]
RetryFailed = Annotated[
    bool,
    Field(
        strict=True,
        title="Retry transient errors",
        description="Retry an operation that hits a transient error (lost connection, timeout).",
    ),
]
MaxRetries = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=10,
        title="Max retries",
        description="Retries per operation for transient errors (0-10).",
    ),
]
ProjectId = Annotated[
    str | None,
    Field(
        title="Project",
        description="Project folder under the projects root (its connections and pipelines); "
        "empty: the default project.",
        examples=["demo"],
    ),
]
Tag = Annotated[str, Field(min_length=1, max_length=100)]
Tags = Annotated[
    list[Tag],
    Field(
        max_length=100,
        title="Tags",
        description="Extra tags on the flow run (at most 100).",
        examples=[["nightly"]],
    ),
]
CreatedBy = Annotated[
    str | None,
    Field(
        max_length=200,
        title="Owner",
        description="Who the job belongs to: notifications about it name this owner.",
        examples=["alice@example.com"],
    ),
]
ProjectsDir = Annotated[
    str | None,
    Field(
        title="Projects root",
        description="Folder holding the projects; empty: $OMBUDSMAN_PROJECTS_DIR or ./projects. "
        "Workers must see the same folder as whoever reads the results.",
    ),
]
RowCount = Annotated[
    int,
    Field(
        strict=True,
        ge=1,
        le=1_000_000_000,
        title="Rows per fact table",
        description="Rows per fact table (1-1,000,000,000).",
    ),
]
SessionsPerServer = Annotated[
    int | None,
    Field(
        strict=True,
        ge=1,
        le=64,
        title="Sessions per server",
        description="Sessions one database server may hold at once in this process (default 4).",
    ),
]
ConnectionRef = Annotated[
    str | dict[str, Any],
    Field(
        title="Connection",
        description="A connection name of the project (source, target, ...), a Prefect block "
        "'block:<type>/<name>', or an inline connection object.",
        examples=["source"],
    ),
]
Name = Annotated[str, Field(min_length=1, max_length=200)]
ExactCounts = Annotated[
    bool,
    Field(
        strict=True,
        title="Exact row counts",
        description="COUNT(*) every table instead of the catalog's estimate (slower).",
    ),
]
FromMapping = Annotated[
    bool,
    Field(
        strict=True,
        title="Every mapped table",
        description="Also compare every table found in both sides of the project's "
        "metadata/mapping.json (after the items).",
    ),
]


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


class BatchRequest(BaseModel):
    """The fields every batch request shares, declared once: each flow takes them as parameters
    of the same name (`flows.parameters`), the CLI's run options default to them. Unknown fields
    are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    job_name: JobName = "Batch job"
    description: JobDescription = None
    parallel_execution: ParallelExecution = False
    max_parallel: MaxParallel = 5
    stop_on_error: StopOnError = False
    retry_failed: RetryFailed = True
    max_retries: MaxRetries = 3
    project_id: ProjectId = None
    tags: Tags = Field(default_factory=list)
    created_by: CreatedBy = None

    @field_validator("project_id")
    @classmethod
    def _project_id_safe(cls, value: str | None) -> str | None:
        return None if value is None else _safe_id(value, "project_id")


class PipelineExecutionItem(BaseModel):
    """One validation pipeline (a YAML file in the project's `pipelines/`) to run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, title="Pipeline")

    pipeline_id: str = Field(
        title="Pipeline",
        description="File name in the project's pipelines/ folder, without .yaml; a batch file "
        "runs every pipeline it lists.",
        examples=["dim_customer"],
    )
    pipeline_name: str | None = Field(
        default=None, max_length=200, title="Display name", description="Label in the report."
    )
    config_override: dict[str, Any] | None = Field(
        default=None,
        title="Overrides",
        description='Pipeline keys replaced for this run, e.g. {"variables": {"day": "2024-01-31"}}.',
    )

    @field_validator("pipeline_id")
    @classmethod
    def _pipeline_id_safe(cls, value: str) -> str:
        return _safe_id(value, "pipeline_id")


PipelineItems = Annotated[
    list[PipelineExecutionItem],
    Field(
        max_length=MAX_ITEMS,
        title="Pipelines",
        description="The pipelines to run, one operation each. At most 10,000 entries.",
        examples=[[{"pipeline_id": "dim_customer"}]],
    ),
]


class BatchPipelineRequest(BatchRequest):
    job_name: JobName = "Bulk pipeline execution"
    pipelines: PipelineItems = []


class DataGenItem(BaseModel):
    """One warehouse to generate and load."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, title="Warehouse")

    schema_type: SchemaType = Field(
        title="Schema",
        description="Star schema to generate: Retail, Finance or Healthcare.",
        examples=["Retail"],
    )
    table_name: str | None = Field(
        default=None,
        max_length=200,
        title="Only this table",
        description="Generate one table (with the dimensions it needs) instead of the whole schema.",
    )
    row_count: RowCount = 1000
    seed: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=2**63 - 1,
        title="Seed",
        description="Same seed, same data. Empty: a random seed, kept when the job is retried.",
        examples=[42],
    )
    tables: dict[str, RowCount] | None = Field(
        default=None,
        title="Rows per table",
        description="Row count per table name, overriding 'Rows per fact table'.",
        examples=[{"fact_sales": 5000}],
    )
    targets: list[ConnectionRef] | None = Field(
        default=None,
        max_length=100,
        title="Targets",
        description="Connections to load; empty: the project's source and target.",
        examples=[["source", "target"]],
    )
    drift: dict[str, Any] | None = Field(
        default=None,
        title="Planted differences",
        description="Planted differences per target (SPEC §8).",
    )
    if_exists: Literal["replace", "append", "fail"] = Field(
        default="replace",
        title="If the tables exist",
        description="replace: drop and load; append: add rows; fail: stop with an error.",
    )
    start_date: date | None = Field(
        default=None, title="First day", description="First day of dim_date (default 2020-01-01)."
    )
    end_date: date | None = Field(
        default=None, title="Last day", description="Last day of dim_date (default 2024-12-31)."
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


DataGenItems = Annotated[
    list[DataGenItem],
    Field(
        max_length=MAX_ITEMS,
        title="Warehouses",
        description="The warehouses to generate, one operation each. At most 10,000 entries.",
        examples=[[{"schema_type": "Retail"}]],
    ),
]


class BatchDataGenRequest(BatchRequest):
    job_name: JobName = "Batch data generation"
    items: DataGenItems = []
    parallel_execution: ParallelExecution = True
    max_parallel: MaxParallel = 3


class MultiProjectValidationItem(BaseModel):
    """One project whose pipelines run against its own source and target."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, title="Project")

    project_id: str = Field(
        title="Project",
        description="Project folder under the projects root.",
        examples=["demo"],
    )
    pipeline_ids: list[str] = Field(
        default_factory=list,
        max_length=MAX_ITEMS,
        title="Pipelines",
        description="Pipelines to run; empty: all of the project's pipelines.",
        examples=[["dim_customer"]],
    )

    @field_validator("project_id")
    @classmethod
    def _project_safe(cls, value: str) -> str:
        return _safe_id(value, "project_id")

    @field_validator("pipeline_ids")
    @classmethod
    def _pipelines_safe(cls, value: list[str]) -> list[str]:
        return [_safe_id(v, "pipeline_id") for v in value]


ProjectItems = Annotated[
    list[MultiProjectValidationItem],
    Field(
        max_length=MAX_ITEMS,
        title="Projects",
        description="The projects to validate, one operation each. At most 10,000 entries.",
        examples=[[{"project_id": "demo"}]],
    ),
]


class BatchMultiProjectRequest(BatchRequest):
    job_name: JobName = "Multi-project validation"
    projects: ProjectItems = []
    max_parallel: MaxParallel = 3


class MetadataExtractionItem(BaseModel):
    """One database (or one schema of it) whose catalog is extracted."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, title="Source")

    connection: ConnectionRef | None = Field(
        default=None,
        title="Connection",
        description="The database to catalog: a connection name of the project (source, "
        "target, ...), a Prefect block 'block:<type>/<name>', or an inline connection object.",
        examples=["source"],
    )
    connection_type: str | None = Field(
        default=None,
        max_length=100,
        title="Legacy connection type",
        description="Studio's older form: 'sqlserver' (the source) or 'snowflake' (the target).",
    )
    schema_name: str | None = Field(
        default=None,
        max_length=200,
        title="Schema",
        description="Only this schema; empty: every schema.",
        examples=["dbo"],
    )
    table_names: list[Name] | None = Field(
        default=None,
        max_length=MAX_ITEMS,
        title="Tables",
        description="Only these tables; empty: every table.",
    )

    @model_validator(mode="after")
    def _one_connection(self) -> MetadataExtractionItem:
        if self.connection is None and not self.connection_type:
            raise ValueError("give 'connection' (or the legacy 'connection_type')")
        return self

    @property
    def reference(self) -> str | dict[str, Any]:
        return self.connection if self.connection is not None else str(self.connection_type)


MetadataItems = Annotated[
    list[MetadataExtractionItem],
    Field(
        max_length=MAX_ITEMS,
        title="Sources",
        description="The databases to catalog, one operation each. At most 10,000 entries.",
        examples=[[{"connection": "source"}]],
    ),
]


class BatchMetadataRequest(BatchRequest):
    job_name: JobName = "Bulk metadata extraction"
    items: MetadataItems = []
    parallel_execution: ParallelExecution = True
    max_parallel: MaxParallel = 2
    exact_counts: ExactCounts = False
    sessions_per_server: SessionsPerServer = None


class ComparisonItem(BaseModel):
    """One table pair compared row by row."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, title="Table pair")

    table: str | None = Field(
        default=None,
        max_length=500,
        title="Table",
        description="[schema.]table named the same on both sides (the project's schema_mappings "
        "translate the schema); give source and target tables when the names differ.",
        examples=["fact_sales"],
    )
    source_table: str | None = Field(
        default=None,
        max_length=500,
        title="Source table",
        description="The table on the source side, when its name differs.",
        examples=["dbo.fact_sales"],
    )
    target_table: str | None = Field(
        default=None,
        max_length=500,
        title="Target table",
        description="The table on the target side, when its name differs.",
        examples=["fact.fact_sales"],
    )
    key_columns: list[Name] | None = Field(
        default=None,
        max_length=1000,
        title="Key columns",
        description="Columns that identify a row; empty: the primary key.",
    )
    columns: list[Name] | None = Field(
        default=None,
        max_length=MAX_ITEMS,
        title="Columns",
        description="Columns compared; empty: every column both sides have.",
    )
    source: ConnectionRef | None = Field(
        default=None, title="Source", description="Connection; default the project's source."
    )
    target: ConnectionRef | None = Field(
        default=None, title="Target", description="Connection; default the project's target."
    )
    sample_size: int = Field(
        default=10,
        strict=True,
        ge=0,
        le=1000,
        title="Sample keys",
        description="Keys of missing/extra/changed rows kept per kind (0-1000).",
    )
    hash_mode: Literal["auto", "canonical", "native"] = Field(
        default="auto",
        title="Row hash",
        description="auto: the engine's native row hash when both sides are one engine with equal types.",
    )
    buckets: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        le=1 << 20,
        title="Buckets",
        description="Level-1 bucket checksums (default 16384).",
    )

    @model_validator(mode="after")
    def _some_table(self) -> ComparisonItem:
        if not (self.table or (self.source_table and self.target_table)):
            raise ValueError("give 'table' or both 'source_table' and 'target_table'")
        return self


ComparisonItems = Annotated[
    list[ComparisonItem],
    Field(
        max_length=MAX_ITEMS,
        title="Table pairs",
        description="The table pairs to compare, one operation each. At most 10,000 entries.",
        examples=[[{"table": "dim_customer"}]],
    ),
]


class BatchComparisonRequest(BatchRequest):
    job_name: JobName = "Batch comparison"
    items: ComparisonItems = []
    from_mapping: FromMapping = False


class CustomItem(BaseModel):
    """One call of a registered operation."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, title="Operation call")

    operation: str = Field(
        min_length=1,
        max_length=100,
        title="Operation",
        description="A registered operation name (`ombudsman operations` lists them).",
        examples=["row_count"],
    )
    name: str | None = Field(
        default=None,
        max_length=100,
        title="Label",
        description="Label used in the operation id.",
        examples=["orders"],
    )
    arguments: dict[str, Any] = Field(
        # a literal default (copied per item) so the run form's JSON editor starts with `{}`:
        # an empty editor there sends an unhydratable value and the submit never returns
        default={},
        title="Arguments",
        description="The operation's arguments.",
        examples=[{"table": "orders", "connection": "source"}],
    )

    @field_validator("name")
    @classmethod
    def _name_safe(cls, value: str | None) -> str | None:
        return None if value is None else _safe_id(value, "name")


CustomItems = Annotated[
    list[CustomItem],
    Field(
        max_length=MAX_ITEMS,
        title="Operations",
        description="The operations to call, one operation each. At most 10,000 entries.",
        examples=[[{"operation": "row_count"}]],
    ),
]


class BatchCustomRequest(BatchRequest):
    job_name: JobName = "Custom batch"
    items: CustomItems = []


class BatchJobCancelRequest(BaseModel):
    reason: str | None = None
    force: bool = False


class BatchJobRetryRequest(BaseModel):
    operation_ids: list[str] | None = Field(default=None, max_length=MAX_ITEMS)
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
