"""custom_sql: one query per side (from the pipeline file), compared as count, value or result set.

The queries are the pipeline author's SQL; a request cannot set them (config_override refuses SQL
text). `count` wraps the query in `SELECT COUNT(*)` so only a number crosses the wire; `value`
reads one cell; `result_set` reads at most `max_rows` rows per side.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator
from sqlalchemy import func, select, text

from prefect_ombudsman.json_values import jsonable
from prefect_ombudsman.validation.configs import StepConfig
from prefect_ombudsman.validation.context import SAMPLE_LIMIT, Outcome, StepContext, failed, passed
from prefect_ombudsman.validation.registry import register_validator
from prefect_ombudsman.validation.spec import Severity, Tolerance
from prefect_ombudsman.validation.values import canonical, difference, numbers_match, to_decimal

_ALIASES = {
    "sql_server_query": "sql_query", "source_query": "sql_query", "sql": "sql_query",
    "snowflake_query": "snow_query", "target_query": "snow_query", "snow": "snow_query",
    "comparison_type": "compare_mode", "mode": "compare_mode", "limit": "max_rows",
}  # fmt: skip
_MODES = {"aggregation": "value", "rowset": "result_set", "rows": "result_set", "scalar": "value"}


class CustomSqlConfig(StepConfig):
    sql_query: str | None = Field(
        default=None, description="Source query (aliases sql_server_query, source_query)."
    )
    snow_query: str | None = Field(
        default=None, description="Target query (aliases snowflake_query, target_query)."
    )
    compare_mode: Literal["count", "value", "result_set"] = "result_set"
    tolerance: Tolerance = Field(default_factory=Tolerance)
    ignore_column_order: bool = True
    ignore_row_order: bool = False
    max_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, value: Any) -> Any:
        if isinstance(value, dict):
            value = dict(value)
            for alias, key in _ALIASES.items():
                if alias in value:
                    if key in value and value[key] != value[alias]:
                        raise ValueError(f"give {key} or {alias}, not both")
                    value[key] = value.pop(alias)
            mode = value.get("compare_mode")
            if isinstance(mode, str):
                value["compare_mode"] = _MODES.get(mode.lower(), mode.lower())
            if value.get("sql_query") is None and value.get("snow_query") is None:
                raise ValueError("give sql_query and/or snow_query")
        return value


def _query(raw: str) -> Any:
    return text(raw.strip().rstrip(";"))


def _count(ctx: StepContext, label: str, raw: str) -> Any:
    inner = _query(raw).columns().subquery("q")
    return ctx.run_sql(label, select(func.count()).select_from(inner))[0][0]


def custom_sql(ctx: StepContext, cfg: CustomSqlConfig) -> Outcome:
    """Run a query on each side and compare the answers (count, first value, or the result sets)."""
    queries = {
        "source": cfg.sql_query or cfg.snow_query or "",
        "target": cfg.snow_query or cfg.sql_query or "",
    }
    tolerance = cfg.tolerance if not cfg.tolerance.is_exact else ctx.tolerance
    details: dict[str, Any] = {"compare_mode": cfg.compare_mode}
    if cfg.compare_mode == "count":
        src, tgt = (
            _count(ctx, "source", queries["source"]),
            _count(ctx, "target", queries["target"]),
        )
        ok = numbers_match(src, tgt, tolerance)
        details.update(sql_row_count=src, snow_row_count=tgt, **difference(src, tgt))
        return (
            passed(details, f"{src} rows on both sides")
            if ok
            else failed(details, f"row counts differ: {src} vs {tgt}")
        )
    results = {}
    for label in ("source", "target"):
        rows = ctx.run_sql(label, _query(queries[label]), pull=True, max_rows=cfg.max_rows + 1)
        columns = list(rows[0]._fields) if rows else []
        results[label] = (columns, [tuple(r) for r in rows])
    (s_cols, s_rows), (t_cols, t_rows) = results["source"], results["target"]
    truncated = len(s_rows) > cfg.max_rows or len(t_rows) > cfg.max_rows
    s_rows, t_rows = s_rows[: cfg.max_rows], t_rows[: cfg.max_rows]
    if cfg.compare_mode == "value":
        a = s_rows[0][0] if s_rows and s_rows[0] else None
        b = t_rows[0][0] if t_rows and t_rows[0] else None
        ok = (
            numbers_match(a, b, tolerance)
            if to_decimal(a) is not None and to_decimal(b) is not None
            else canonical(a) == canonical(b)
        )
        details.update(**difference(a, b))
        return (
            passed(details, "values match")
            if ok
            else failed(details, f"values differ: {jsonable(a)!r} vs {jsonable(b)!r}")
        )
    details.update(sql_row_count=len(s_rows), snow_row_count=len(t_rows), truncated=truncated)
    s_rows, s_cols = _shape(s_rows, s_cols, cfg.ignore_column_order)
    t_rows, t_cols = _shape(t_rows, t_cols, cfg.ignore_column_order)
    if [c.upper() for c in s_cols] != [c.upper() for c in t_cols] or len(s_rows) != len(t_rows):
        details.update(
            difference_type="shape_mismatch", source_columns=s_cols, target_columns=t_cols
        )
        return failed(
            details,
            f"result shapes differ: {len(s_rows)}x{len(s_cols)} vs {len(t_rows)}x{len(t_cols)}",
        )
    if cfg.ignore_row_order:
        s_rows = sorted(s_rows, key=_sort_key)
        t_rows = sorted(t_rows, key=_sort_key)
    differing: list[dict[str, Any]] = []
    affected: set[Any] = set()
    for i, (a_row, b_row) in enumerate(zip(s_rows, t_rows, strict=True)):
        cols = [
            s_cols[j]
            for j, (a, b) in enumerate(zip(a_row, b_row, strict=True))
            if not _cell_equal(a, b, tolerance)
        ]
        if cols:
            affected.update(cols)
            if len(differing) < SAMPLE_LIMIT:
                differing.append(
                    {
                        "row": i,
                        "columns": cols,
                        "source": jsonable(list(a_row)),
                        "target": jsonable(list(b_row)),
                    }
                )
            else:
                differing.append({"row": i})
    details.update(
        differing_rows_count=len(differing),
        affected_columns=sorted(affected),
        comparison_details=[d for d in differing if "columns" in d],
    )
    if not differing:
        return passed(details, f"{len(s_rows)} rows identical")
    return failed(details, f"{len(differing)} row(s) differ in {', '.join(sorted(affected))}")


def _shape(
    rows: list[tuple[Any, ...]], columns: list[str], ignore_order: bool
) -> tuple[list[tuple[Any, ...]], list[str]]:
    if not ignore_order:
        return rows, columns
    order = sorted(range(len(columns)), key=lambda i: columns[i].upper())
    return [tuple(r[i] for i in order) for r in rows], [columns[i] for i in order]


def _sort_key(row: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple("" if v is None else str(canonical(v)) for v in row)


def _cell_equal(a: Any, b: Any, tolerance: Tolerance) -> bool:
    if (
        to_decimal(a) is not None
        and to_decimal(b) is not None
        and not isinstance(a, str)
        and not isinstance(b, str)
    ):
        return numbers_match(a, b, tolerance)
    return canonical(a) == canonical(b)


register_validator(
    "custom_sql",
    custom_sql,
    CustomSqlConfig,
    category="comparative",
    fail_severity=Severity.HIGH,
    failure_kind="query_result_mismatch",
)
