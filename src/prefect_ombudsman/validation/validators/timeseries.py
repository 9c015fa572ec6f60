"""Time series: ts_continuity, ts_duplicates, period_over_period, ts_rolling_drift.

All work from per-day aggregates pushed down to each side (one GROUP BY day per side); weekly,
monthly ... totals and rolling windows are folded from the daily totals in Python, so the data
read is one row per day, never one per fact row (the Studio pulled every row).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, field_validator
from sqlalchemy import func

from prefect_ombudsman.validation.configs import GRAINS, TableConfig
from prefect_ombudsman.validation.context import (
    Outcome,
    StepContext,
    failed,
    passed,
    skipped,
)
from prefect_ombudsman.validation.registry import register_validator
from prefect_ombudsman.validation.spec import Severity, Tolerance
from prefect_ombudsman.validation.tables import Agg
from prefect_ombudsman.validation.validators.metrics import MAX_LISTED, period_values
from prefect_ombudsman.validation.validators.quality import (
    _pair,
    duplicate_counts,
    duplicate_samples,
)
from prefect_ombudsman.validation.values import as_date, difference, to_decimal

CHANGE_TOLERANCE = Tolerance(absolute=1e-6)


def _date_col(ctx: StepContext, cfg: Any) -> str | None:
    return cfg.date_col or (ctx.meta(cfg.table).get("date_columns") or [None])[0]


# ----------------------------------------------------------------------------- ts_continuity


class ContinuityConfig(TableConfig):
    date_col: str | None = None
    max_gaps: int | None = Field(
        default=None, ge=0, description="Also FAIL when a side misses more days than this."
    )


def _continuity_build(date_col: str):  # noqa: ANN202
    def build(t: Any) -> dict[str, Agg]:
        day = t.side.pieces.day(t.col(date_col))
        key = date_col.lower()
        return {
            f"minday:{key}": Agg(lambda: func.min(day)),
            f"maxday:{key}": Agg(lambda: func.max(day)),
            f"days:{key}": Agg(lambda: func.count(day.distinct())),
        }

    return build


def plan_ts_continuity(ctx: StepContext, cfg: ContinuityConfig) -> None:
    col = _date_col(ctx, cfg)
    if col:
        pair = _pair(ctx, cfg)
        for t in pair.both():
            t.want(_continuity_build(col)(t))


def ts_continuity(ctx: StepContext, cfg: ContinuityConfig) -> Outcome:
    """First day, last day and distinct days on both sides; missing days = span − distinct days."""
    col = _date_col(ctx, cfg)
    if not col:
        return skipped("needs date_col (config or metadata date_columns)")
    pair = _pair(ctx, cfg)
    details: dict[str, Any] = {**pair.names, "date_col": col}
    for t in pair.both():
        v = ctx.aggregates(t, _continuity_build(col)(t))
        first, last, days = (
            as_date(v[f"minday:{col.lower()}"]),
            as_date(v[f"maxday:{col.lower()}"]),
            int(v[f"days:{col.lower()}"] or 0),
        )
        span = (last - first).days + 1 if first and last else 0
        details[t.side.label] = {"first_day": first.isoformat() if first else None, "last_day": last.isoformat() if last else None,
                                 "distinct_days": days, "missing_days": span - days}  # fmt: skip
    src, tgt = details["source"], details["target"]
    problems = [k for k in ("first_day", "last_day", "distinct_days") if src[k] != tgt[k]]
    if cfg.max_gaps is not None:
        problems += [
            f"{label} misses {details[label]['missing_days']} days"
            for label in ("source", "target")
            if details[label]["missing_days"] > cfg.max_gaps
        ]
    if problems:
        return failed(details, "time coverage differs: " + ", ".join(problems))
    return passed(
        details,
        f"{src['distinct_days']} days from {src['first_day']} to {src['last_day']} on both sides",
    )


# ----------------------------------------------------------------------------- ts_duplicates


class TsDuplicatesConfig(TableConfig):
    keys: list[str]

    @field_validator("keys", mode="before")
    @classmethod
    def _one(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


def ts_duplicates(ctx: StepContext, cfg: TsDuplicatesConfig) -> Outcome:
    """Key combinations (e.g. date + entity) present more than once, on each side."""
    pair = _pair(ctx, cfg)
    details: dict[str, Any] = {**pair.names, "keys": cfg.keys}
    for t in pair.both():
        label = t.side.label
        cols = [t.col(c) for c in cfg.keys]
        n_groups, surplus = duplicate_counts(ctx, t, cols)
        details[f"{label}_duplicate_groups"] = n_groups
        details[f"{label}_duplicate_rows"] = surplus
        if n_groups:
            details.setdefault("samples", {})[label] = duplicate_samples(ctx, t, cols)
    if details["source_duplicate_groups"] or details["target_duplicate_groups"]:
        return failed(
            details,
            f"duplicate keys: source {details['source_duplicate_groups']}, target {details['target_duplicate_groups']} groups",
        )
    return passed(details, "no duplicate keys on either side")


# ----------------------------------------------------------------------------- daily totals


class MetricSeriesConfig(TableConfig):
    metric_col: str
    date_col: str | None = None


def daily_totals(
    ctx: StepContext, cfg: MetricSeriesConfig
) -> tuple[dict[str, dict[dt.date, Decimal]], str]:
    col = _date_col(ctx, cfg)
    if not col:
        raise ValueError("needs date_col")
    pair = _pair(ctx, cfg)
    out = {}
    for t in pair.both():
        raw = period_values(
            ctx,
            t.side.label,
            t,
            col,
            "day",
            {"total": t.side.pieces.exact_sum(t.col(cfg.metric_col), t.info(cfg.metric_col))},
        )
        out[t.side.label] = {
            d: to_decimal(v["total"]) or Decimal(0)
            for p, v in raw.items()
            if (d := as_date(p)) is not None
        }
    return out, col


def _period_key(day: dt.date, grain: str) -> dt.date:
    if grain == "day":
        return day
    if grain == "week":
        return day - dt.timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    if grain == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(month=1, day=1)


# ----------------------------------------------------------------------------- period_over_period


class PeriodOverPeriodConfig(MetricSeriesConfig):
    grains: list[str] = Field(default_factory=lambda: ["week", "month", "year"])

    @field_validator("grains")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        bad = [g for g in value if g not in GRAINS]
        if bad:
            raise ValueError(f"unknown grain {bad[0]!r}; allowed: {', '.join(GRAINS)}")
        return value


def period_over_period(ctx: StepContext, cfg: PeriodOverPeriodConfig) -> Outcome:
    """Change of the metric's total from one period to the next (WoW, MoM, YoY ...), compared across sides."""
    if not _date_col(ctx, cfg):
        return skipped("needs date_col (config or metadata date_columns)")
    totals, col = daily_totals(ctx, cfg)
    tolerance = ctx.tolerance if ctx.tolerance_given else CHANGE_TOLERANCE
    results, mismatches = [], []
    for grain in cfg.grains:
        changes = {}
        for label, days in totals.items():
            periods: dict[dt.date, Decimal] = {}
            for day, value in days.items():
                key = _period_key(day, grain)
                periods[key] = periods.get(key, Decimal(0)) + value
            ordered = sorted(periods)
            changes[label] = {
                b.isoformat(): (periods[b] - periods[a]) / abs(periods[a]) if periods[a] else None
                for a, b in zip(ordered, ordered[1:], strict=False)
            }
        keys = sorted(set(changes["source"]) | set(changes["target"]))
        bad = [
            {
                "grain": grain,
                "period": k,
                **difference(changes["source"].get(k), changes["target"].get(k)),
            }
            for k in keys
            if not ctx.match(
                changes["source"].get(k), changes["target"].get(k), tolerance=tolerance
            )
        ]
        results.append({"grain": grain, "periods_compared": len(keys), "mismatches": len(bad)})
        mismatches.extend(bad)
    details = {
        **_pair(ctx, cfg).names,
        "metric_col": cfg.metric_col,
        "date_col": col,
        "grains": results,
        "mismatches": mismatches[:MAX_LISTED],
    }
    if mismatches:
        return failed(details, f"{len(mismatches)} period-over-period changes differ")
    return passed(details, "period-over-period changes match")


# ----------------------------------------------------------------------------- ts_rolling_drift


class RollingDriftConfig(MetricSeriesConfig):
    windows: list[Annotated[int, Field(ge=1, le=3660)]] = Field(
        default_factory=lambda: [7, 30],
        min_length=1,
        max_length=20,
        description="Trailing windows in days, each 1-3660.",
    )


def ts_rolling_drift(ctx: StepContext, cfg: RollingDriftConfig) -> Outcome:
    """Trailing N-day averages of the daily metric total (missing days count 0), compared day by day."""
    if not _date_col(ctx, cfg):
        return skipped("needs date_col (config or metadata date_columns)")
    totals, col = daily_totals(ctx, cfg)
    all_days = sorted(set(totals["source"]) | set(totals["target"]))
    tolerance = ctx.tolerance if ctx.tolerance_given else Tolerance(absolute=1e-6, relative=1e-9)
    results, mismatches = [], []
    if all_days:
        span = [
            all_days[0] + dt.timedelta(days=i) for i in range((all_days[-1] - all_days[0]).days + 1)
        ]
        for window in cfg.windows:
            rolling = {}
            for label, days in totals.items():
                series = [days.get(d, Decimal(0)) for d in span]
                acc, values = Decimal(0), {}
                for i, value in enumerate(series):
                    acc += value
                    if i >= window:
                        acc -= series[i - window]
                    if i >= window - 1:
                        values[span[i]] = acc / window
                rolling[label] = values
            bad = [
                {
                    "window": window,
                    "day": d.isoformat(),
                    **difference(rolling["source"][d], rolling["target"][d]),
                }
                for d in rolling["source"]
                if not ctx.match(rolling["source"][d], rolling["target"][d], tolerance=tolerance)
            ]
            results.append(
                {"window": window, "days_compared": len(rolling["source"]), "mismatches": len(bad)}
            )
            mismatches.extend(bad)
    details = {
        **_pair(ctx, cfg).names,
        "metric_col": cfg.metric_col,
        "date_col": col,
        "windows": results,
        "mismatches": mismatches[:MAX_LISTED],
    }
    if mismatches:
        return failed(details, f"rolling averages differ on {len(mismatches)} day-windows")
    return passed(details, "rolling averages match")


register_validator(
    "ts_continuity",
    ts_continuity,
    ContinuityConfig,
    plan=plan_ts_continuity,
    category="timeseries",
    fail_severity=Severity.MEDIUM,
    failure_kind="time_series_variance",
)
register_validator(
    "ts_duplicates",
    ts_duplicates,
    TsDuplicatesConfig,
    category="timeseries",
    fail_severity=Severity.HIGH,
    failure_kind="duplicate_records",
)
register_validator(
    "period_over_period",
    period_over_period,
    PeriodOverPeriodConfig,
    category="timeseries",
    fail_severity=Severity.LOW,
    failure_kind="time_series_variance",
)
register_validator(
    "ts_rolling_drift",
    ts_rolling_drift,
    RollingDriftConfig,
    category="timeseries",
    fail_severity=Severity.LOW,
    failure_kind="time_series_variance",
)
