"""Config models shared by validator families (each validator still has its own typed model)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

GRAINS = ("day", "week", "month", "quarter", "year")


class StepConfig(BaseModel):
    """Base of every validator config: unknown keys are refused with the allowed list."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class TableConfig(StepConfig):
    """A table: a logical name (a `mapping:` key) or a physical `[schema.]table`, optionally a different name per side."""

    table: str | None = Field(
        default=None, description="Logical table (mapping key) or [schema.]table."
    )
    source_table: str | None = Field(
        default=None, description="Override the source-side table name."
    )
    target_table: str | None = Field(
        default=None, description="Override the target-side table name."
    )


class ColumnsConfig(TableConfig):
    columns: list[str] | None = Field(
        default=None, description="Columns to check (default: from metadata or all)."
    )

    @field_validator("columns", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class PeriodConfig(TableConfig):
    date_col: str | None = Field(default=None, description="Date column for per-period checks.")
    group_by: str | None = Field(default=None, description="day, week, month, quarter or year.")

    @field_validator("group_by")
    @classmethod
    def _grain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        grain = value.strip().lower()
        aliases = {
            "daily": "day",
            "weekly": "week",
            "monthly": "month",
            "quarterly": "quarter",
            "yearly": "year",
            "annual": "year",
        }
        grain = aliases.get(grain, grain)
        if grain not in GRAINS:
            raise ValueError(f"group_by {value!r}: expected one of {', '.join(GRAINS)}")
        return grain


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return list(value)
    return [str(v) for v in value]
