"""The comparison's options, result (SPEC §7.3) and run statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

HashMode = Literal["auto", "canonical", "native", "md5", "arithmetic"]
#: the canonical row hash recipe: integers and modular arithmetic, or MD5 of the row's text
Recipe = Literal["arithmetic", "md5"]

BucketBy = Literal["key", "key hash", "canonical key hash", "row hash"]


class ComparisonOptions(BaseModel):
    """How to compare one table pair."""

    model_config = ConfigDict(extra="forbid")

    key_columns: list[str] | None = Field(
        default=None,
        description="Key columns; default the primary key, else compare as a multiset.",
    )
    columns: list[str] | None = Field(
        default=None, description="Columns to compare; default all common ones."
    )
    sample_size: int = Field(
        default=10, ge=0, le=1000, description="Sample keys kept per category."
    )
    buckets: int = Field(
        default=16384,
        ge=1,
        le=1 << 20,
        description="Most level-1 buckets (a power of 2); fewer for small tables, ~1 per 64 rows.",
    )
    hash_mode: HashMode = Field(
        default="auto",
        description=(
            "auto: the engine's native hash when both sides are one engine with equal types, else "
            "the canonical one; canonical: the canonical hash (arithmetic where both dialects give "
            "it and both prefer it, else MD5 of the row's canonical text); md5 / arithmetic: "
            "that canonical recipe."
        ),
    )
    float_scale: int = Field(
        default=6, ge=0, le=12, description="Decimals kept of FLOAT/REAL values."
    )
    max_rows_in_memory: int = Field(
        default=200_000,
        ge=1,
        description="Rows per side held at once while drilling into differing buckets.",
    )
    memory_limit_mb: int | None = Field(
        default=None,
        ge=16,
        description=(
            "Opt-in cap on an in-process database's memory while comparing (DuckDB memory_limit). "
            "DuckDB applies it to the whole database instance, so every other query on that database "
            "in this process shares the cap: set it only where the comparison has the database to "
            "itself (the benchmark uses 32). None leaves the database's own setting."
        ),
    )


class ChangedSample(BaseModel):
    key: Any
    columns: list[str]


class ComparisonSamples(BaseModel):
    missing_in_target: list[Any] = Field(default_factory=list)
    extra_in_target: list[Any] = Field(default_factory=list)
    changed: list[ChangedSample] = Field(default_factory=list)


class ComparisonResult(BaseModel):
    """SPEC §7.3, field for field."""

    table: str
    source_table: str
    target_table: str
    key_columns: list[str]
    source_rows: int
    target_rows: int
    status: Literal["PASS", "FAIL"]
    missing_in_target: int
    extra_in_target: int
    changed: int
    samples: ComparisonSamples


@dataclass
class ComparisonStats:
    """How the comparison ran (for logs and the benchmark; not part of the result)."""

    hash_mode: str = "canonical"
    #: the row hash recipe that ran: "native", "arithmetic" (canonical) or "md5" (canonical)
    row_hash: str = "arithmetic"
    #: "key" (arithmetic on integer columns), "key hash" (native hash of the key), "canonical key
    #: hash" (MD5 of the key's canonical text), "row hash" (low bits of the row hash)
    bucket_by: str = "row hash"
    #: the columns the bucket is computed from (the key; chosen columns of a keyless table)
    bucket_columns: list[str] = field(default_factory=list)
    estimated_rows: int | None = None
    buckets: int = 0
    failing_buckets: int = 0
    scans_per_side: int = 0
    rows_transferred: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    sql: dict[str, str] = field(default_factory=dict)


@dataclass
class ComparisonOutcome:
    result: ComparisonResult
    stats: ComparisonStats
