"""`row_checksum`: the row-level comparison of SPEC §7.3 as a pipeline validator.

    steps:
      - name: fact_sales rows
        validator: row_checksum
        config: {table: fact_sales, key_columns: [sale_id], sample_size: 20}

The step's details are the comparison result (counts of missing / extra / changed rows, sample
keys, differing columns); it fails when any row differs.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from prefect_ombudsman.validation.comparison import ComparisonOptions, HashMode, compare_tables
from prefect_ombudsman.validation.configs import TableConfig
from prefect_ombudsman.validation.context import Outcome, StepContext, verdict
from prefect_ombudsman.validation.registry import register_validator


class RowChecksumConfig(TableConfig):
    key_columns: list[str] | None = Field(
        default=None,
        description="Key columns (alias primary_key, key); default the primary key, [] = compare as multisets.",
    )
    columns: list[str] | None = Field(
        default=None, description="Columns compared; default all common ones."
    )
    sample_size: int = Field(default=10, ge=0, le=1000)
    buckets: int = Field(
        default=16384, ge=1, le=1 << 20, description="Most level-1 buckets; fewer for small tables."
    )
    hash_mode: HashMode = "auto"
    float_scale: int = Field(default=6, ge=0, le=12)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, value: Any) -> Any:
        if isinstance(value, dict):
            value = dict(value)
            for alias in ("primary_key", "key", "keys"):
                if alias in value and "key_columns" not in value:
                    value["key_columns"] = value.pop(alias)
        return value

    @field_validator("key_columns", "columns", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


def run_row_checksum(ctx: StepContext, config: RowChecksumConfig) -> Outcome:
    """Row-level comparison: fingerprint and bucket checksums, then the differing rows."""
    pair = ctx.pair(config.table, source=config.source_table, target=config.target_table)
    options = ComparisonOptions(
        key_columns=config.key_columns,
        columns=config.columns,
        sample_size=config.sample_size,
        buckets=config.buckets,
        hash_mode=config.hash_mode,
        float_scale=config.float_scale,
    )
    outcome = compare_tables(
        ctx.side("source").engine,
        ctx.side("target").engine,
        pair.source.display,
        pair.target.display,
        table_label=pair.logical,
        options=options,
        cancel_check=ctx.run.check_cancelled,
    )
    for label in ("source", "target"):
        for phase in ("level1", "level2"):
            sql = outcome.stats.sql.get(f"{phase}_{label}")
            if sql:
                ctx.recorder(label).append(sql)
    result = outcome.result
    details = result.model_dump(mode="json")
    differing = result.missing_in_target + result.extra_in_target + result.changed
    return verdict(
        result.status == "PASS",
        details,
        f"{differing} row(s) differ: {result.missing_in_target} missing in target, "
        f"{result.extra_in_target} extra, {result.changed} changed "
        f"({result.source_rows} source rows, {result.target_rows} target rows)",
        f"{result.source_rows} rows identical",
        table=pair.logical,
    )


register_validator(
    "row_checksum",
    run_row_checksum,
    RowChecksumConfig,
    category="comparison",
    description="Row-level comparison: missing, extra and changed rows with sample keys (SPEC §7.3).",
    failure_kind="row_mismatch",
)
