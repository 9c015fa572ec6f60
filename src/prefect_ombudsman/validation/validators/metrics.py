"""Statistics and metrics: statistics, metric_sums, metric_averages, ratios (overall and per period)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import Field, field_validator
from sqlalchemy import select

from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.validation.configs import ColumnsConfig, PeriodConfig, as_list
from prefect_ombudsman.validation.context import (
    Outcome,
    StepContext,
    TablePair,
    failed,
    passed,
    skipped,
)
from prefect_ombudsman.validation.registry import register_validator
from prefect_ombudsman.validation.spec import Severity, Tolerance
from prefect_ombudsman.validation.tables import ResolvedTable
from prefect_ombudsman.validation.validators import aggregates as A
from prefect_ombudsman.validation.validators.quality import (
    _pair,
    numeric_step_columns,
    shared_columns,
)
from prefect_ombudsman.validation.values import as_date_text, difference, to_decimal

# AVG / STDDEV / ratios are computed in different types per database (double, DECIMAL(38,6), NUMBER).
COMPUTED_TOLERANCE = Tolerance(absolute=1e-6, relative=1e-9)
MAX_LISTED = 20


def computed_tolerance(ctx: StepContext) -> Tolerance:
    return ctx.tolerance if ctx.tolerance_given else COMPUTED_TOLERANCE


def common_scale(pair: TablePair, name: str) -> int | None:
    """Decimal places both sides' sums are exact to (None for floats: compare by tolerance)."""
    infos = [pair.source.info(name), pair.target.info(name)]
    if any(i.family == "float" for i in infos):
        return None
    if all(i.family == "integer" for i in infos):
        return 0
    scales = [i.scale for i in infos if i.family == "decimal" and i.scale is not None]
    return max(scales) if scales else None


# ----------------------------------------------------------------------------- statistics


class StatisticsConfig(ColumnsConfig):
    numeric_columns: list[str] | None = None
    statistics: list[str] = Field(default_factory=lambda: ["min", "max", "avg", "stddev"])

    @field_validator("statistics")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        allowed = {"min", "max", "avg", "stddev", "sum", "count"}
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ValueError(f"unknown statistic {bad[0]!r}; allowed: {', '.join(sorted(allowed))}")
        return value


_STAT_BUILDERS = {
    "min": A.minimum,
    "max": A.maximum,
    "avg": A.average,
    "stddev": A.stddev,
    "sum": A.total,
    "count": A.non_null,
}
_STAT_KEYS = {
    "min": "min",
    "max": "max",
    "avg": "avg",
    "stddev": "std",
    "sum": "sum",
    "count": "nonnull",
}


def _stats_build(columns: list[str], stats: list[str]) -> A.Build:
    return lambda t: A.combine(*[_STAT_BUILDERS[s](t, c) for c in columns for s in stats])


def plan_statistics(ctx: StepContext, cfg: StatisticsConfig) -> None:
    pair = _pair(ctx, cfg)
    A.plan_both(pair, _stats_build(numeric_step_columns(ctx, cfg, pair), cfg.statistics))


def statistics(ctx: StepContext, cfg: StatisticsConfig) -> Outcome:
    """MIN, MAX, AVG (decimal-safe) and sample STDDEV per numeric column, compared with tolerance."""
    pair = _pair(ctx, cfg)
    columns = numeric_step_columns(ctx, cfg, pair)
    if not columns:
        return skipped("no numeric column on both sides")
    values = A.values_both(ctx, pair, _stats_build(columns, cfg.statistics))
    rows, failing = [], []
    for name in columns:
        scale = common_scale(pair, name)
        entry: dict[str, Any] = {"column": name}
        for stat in cfg.statistics:
            key = f"{_STAT_KEYS[stat]}:{name.lower()}"
            src, tgt = values["source"][key], values["target"][key]
            if stat in ("avg", "stddev"):
                ok = ctx.match(src, tgt, tolerance=computed_tolerance(ctx))
            else:
                ok = ctx.match(src, tgt, scale=scale)
            entry[stat] = {**difference(src, tgt), "match": ok}
            if not ok:
                failing.append(f"{name}.{stat}")
        rows.append(entry)
    details = {**pair.names, "columns": rows, "failing": failing}
    if not failing:
        return passed(details, f"statistics match on {len(columns)} columns")
    return failed(details, f"statistics differ: {', '.join(failing[:MAX_LISTED])}")


# ----------------------------------------------------------------------------- per-period helper


def period_values(
    ctx: StepContext,
    label: str,
    t: ResolvedTable,
    date_col: str,
    grain: str,
    measures: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """{period start 'YYYY-MM-DD': {measure: value}} from one GROUP BY on one side."""
    period = t.side.pieces.period_start(t.col(date_col), grain).label("period")
    labelled = [expr.label(f"m{i}") for i, expr in enumerate(measures.values())]
    stmt = (
        select(period, *labelled)
        .select_from(t.sa)
        .where(t.col(date_col).isnot(None))
        .group_by(period)
    )
    out: dict[str, dict[str, Any]] = {}
    for row in ctx.run_sql(label, stmt, tables=(t,)):
        out[as_date_text(row[0]) or "null"] = {name: row[i + 1] for i, name in enumerate(measures)}
    return out


def compare_periods(
    ctx: StepContext,
    src: dict[str, dict[str, Any]],
    tgt: dict[str, dict[str, Any]],
    names: list[str],
    scales: dict[str, int | None],
    tolerance: Tolerance | None = None,
    zero_missing: bool = True,
) -> tuple[int, list[dict[str, Any]]]:
    """(periods compared, mismatches); a period missing on one side counts as 0 when `zero_missing`."""
    mismatches = []
    periods = sorted(set(src) | set(tgt))
    for period in periods:
        for name in names:
            a = src.get(period, {}).get(name, 0 if zero_missing else None)
            b = tgt.get(period, {}).get(name, 0 if zero_missing else None)
            if not ctx.match(a, b, scale=scales.get(name), tolerance=tolerance):
                mismatches.append({"period": period, "metric": name, **difference(a, b)})
    return len(periods), mismatches


# ----------------------------------------------------------------------------- metric_sums / metric_averages


class MetricConfig(PeriodConfig):
    metric_cols: list[str] | None = Field(default=None, alias="columns")

    @field_validator("metric_cols", mode="before")
    @classmethod
    def _one(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


def _metric_columns(ctx: StepContext, cfg: MetricConfig, pair: TablePair) -> list[str]:
    columns, _ = shared_columns(
        pair, cfg.metric_cols, ctx.meta(cfg.table), "numeric_columns", numeric=True
    )
    if cfg.metric_cols is None and not columns:
        raise ConfigurationError(
            "metric_cols: no numeric column to check; name them in config.metric_cols"
        )
    return columns


def _metric_step(kind: str):  # noqa: ANN202 - returns the (plan, run) pair for sums or averages
    builder = A.total if kind == "sum" else A.average
    key_prefix = "sum" if kind == "sum" else "avg"

    def build(columns: list[str]) -> A.Build:
        return lambda t: A.combine(*[builder(t, c) for c in columns])

    def plan(ctx: StepContext, cfg: MetricConfig) -> None:
        pair = _pair(ctx, cfg)
        A.plan_both(pair, build(_metric_columns(ctx, cfg, pair)))

    def run(ctx: StepContext, cfg: MetricConfig) -> Outcome:
        pair = _pair(ctx, cfg)
        columns = _metric_columns(ctx, cfg, pair)
        tolerance = None if kind == "sum" else computed_tolerance(ctx)
        scales = {c: (common_scale(pair, c) if kind == "sum" else None) for c in columns}
        values = A.values_both(ctx, pair, build(columns))
        totals, failing = [], []
        for name in columns:
            key = f"{key_prefix}:{name.lower()}"
            src, tgt = values["source"][key], values["target"][key]
            ok = ctx.match(src, tgt, scale=scales[name], tolerance=tolerance)
            totals.append({"column": name, **difference(src, tgt), "match": ok})
            if not ok:
                failing.append(name)
        details: dict[str, Any] = {**pair.names, "metric": kind, "totals": totals}
        if cfg.group_by:
            if not cfg.date_col:
                raise ConfigurationError("group_by needs date_col")
            measures_for = {
                t.side.label: {
                    c: (t.side.pieces.exact_sum if kind == "sum" else t.side.pieces.exact_avg)(
                        t.col(c), t.info(c)
                    )
                    for c in columns
                }
                for t in pair.both()
            }
            src_p = period_values(
                ctx, "source", pair.source, cfg.date_col, cfg.group_by, measures_for["source"]
            )
            tgt_p = period_values(
                ctx, "target", pair.target, cfg.date_col, cfg.group_by, measures_for["target"]
            )
            n, mismatches = compare_periods(
                ctx, src_p, tgt_p, columns, scales, tolerance, zero_missing=kind == "sum"
            )
            details.update(
                group_by=cfg.group_by,
                date_col=cfg.date_col,
                periods_compared=n,
                period_mismatches=len(mismatches),
                mismatches=mismatches[:MAX_LISTED],
            )
            if mismatches:
                failing.extend(sorted({m["metric"] + "@" + cfg.group_by for m in mismatches}))
        details["failing"] = failing
        verb = "sums" if kind == "sum" else "averages"
        if not failing:
            return passed(details, f"{verb} match on {len(columns)} columns")
        return failed(details, f"{verb} differ: {', '.join(failing[:MAX_LISTED])}")

    run.__doc__ = f"{'SUM' if kind == 'sum' else 'AVG (decimal-safe)'} per column overall and optionally per period."
    return plan, run


plan_metric_sums, metric_sums = _metric_step("sum")
plan_metric_averages, metric_averages = _metric_step("avg")


# ----------------------------------------------------------------------------- ratios


class RatiosConfig(PeriodConfig):
    ratio_defs: list[dict[str, Any]] | dict[str, Any] = Field(alias="ratios")


def _ratio_defs(cfg: RatiosConfig) -> list[dict[str, str]]:
    raw = cfg.ratio_defs
    items: list[dict[str, str]] = []
    if isinstance(raw, dict):
        for name, value in raw.items():
            if isinstance(value, (list, tuple)) and len(value) == 2:
                items.append(
                    {"name": name, "numerator": str(value[0]), "denominator": str(value[1])}
                )
            elif isinstance(value, dict):
                items.append(
                    {
                        "name": name,
                        "numerator": str(value.get("numerator")),
                        "denominator": str(value.get("denominator")),
                    }
                )
            else:
                raise ConfigurationError(
                    f"ratio_defs.{name}: expected [numerator, denominator] or {{numerator, denominator}}"
                )
    else:
        for i, value in enumerate(raw):
            if not value.get("numerator") or not value.get("denominator"):
                raise ConfigurationError(f"ratio_defs[{i}]: needs numerator and denominator")
            items.append(
                {
                    "name": str(
                        value.get("name") or f"{value['numerator']}/{value['denominator']}"
                    ),
                    "numerator": str(value["numerator"]),
                    "denominator": str(value["denominator"]),
                }
            )
    if not items:
        raise ConfigurationError("ratio_defs: give at least one {numerator, denominator}")
    return items


def _ratio_build(defs: list[dict[str, str]]) -> A.Build:
    return lambda t: A.combine(
        *[A.total(t, d[k]) for d in defs for k in ("numerator", "denominator")]
    )


def _ratio(num: Any, den: Any) -> Decimal | None:
    n, d = to_decimal(num), to_decimal(den)
    if n is None or d is None or d == 0:
        return None
    return n / d


def plan_ratios(ctx: StepContext, cfg: RatiosConfig) -> None:
    A.plan_both(_pair(ctx, cfg), _ratio_build(_ratio_defs(cfg)))


def ratios(ctx: StepContext, cfg: RatiosConfig) -> Outcome:
    """SUM(numerator) / SUM(denominator) overall and optionally per period, both sides."""
    pair = _pair(ctx, cfg)
    defs = _ratio_defs(cfg)
    values = A.values_both(ctx, pair, _ratio_build(defs))
    tolerance = computed_tolerance(ctx)
    rows, failing = [], []
    for d in defs:
        src = _ratio(
            values["source"][f"sum:{d['numerator'].lower()}"],
            values["source"][f"sum:{d['denominator'].lower()}"],
        )
        tgt = _ratio(
            values["target"][f"sum:{d['numerator'].lower()}"],
            values["target"][f"sum:{d['denominator'].lower()}"],
        )
        ok = ctx.match(src, tgt, tolerance=tolerance)
        rows.append({"ratio": d["name"], **difference(src, tgt), "match": ok})
        if not ok:
            failing.append(d["name"])
    details: dict[str, Any] = {**pair.names, "ratios": rows}
    if cfg.group_by:
        if not cfg.date_col:
            raise ConfigurationError("group_by needs date_col")
        per_side = {}
        for t in pair.both():
            measures = {
                f"{d['name']}:{k}": t.side.pieces.exact_sum(t.col(d[k]), t.info(d[k]))
                for d in defs
                for k in ("numerator", "denominator")
            }
            raw = period_values(ctx, t.side.label, t, cfg.date_col, cfg.group_by, measures)
            per_side[t.side.label] = {
                p: {
                    d["name"]: _ratio(m[f"{d['name']}:numerator"], m[f"{d['name']}:denominator"])
                    for d in defs
                }
                for p, m in raw.items()
            }
        n, mismatches = compare_periods(
            ctx,
            per_side["source"],
            per_side["target"],
            [d["name"] for d in defs],
            {},
            tolerance,
            zero_missing=False,
        )
        details.update(
            group_by=cfg.group_by,
            periods_compared=n,
            period_mismatches=len(mismatches),
            mismatches=mismatches[:MAX_LISTED],
        )
        failing.extend(sorted({m["metric"] + "@" + cfg.group_by for m in mismatches}))
    details["failing"] = failing
    if not failing:
        return passed(details, f"{len(defs)} ratio(s) match")
    return failed(details, f"ratios differ: {', '.join(failing[:MAX_LISTED])}")


register_validator(
    "statistics",
    statistics,
    StatisticsConfig,
    plan=plan_statistics,
    category="quality",
    fail_severity=Severity.HIGH,
    failure_kind="metric_mismatch",
)
register_validator(
    "metric_sums",
    metric_sums,
    MetricConfig,
    plan=plan_metric_sums,
    category="metrics",
    fail_severity=Severity.HIGH,
    failure_kind="metric_mismatch",
)
register_validator(
    "metric_averages",
    metric_averages,
    MetricConfig,
    plan=plan_metric_averages,
    category="metrics",
    fail_severity=Severity.MEDIUM,
    failure_kind="metric_mismatch",
)
register_validator(
    "ratios",
    ratios,
    RatiosConfig,
    plan=plan_ratios,
    category="metrics",
    fail_severity=Severity.MEDIUM,
    failure_kind="metric_mismatch",
)

__all__ = ["as_list", "period_values", "compare_periods", "common_scale", "COMPUTED_TOLERANCE"]
