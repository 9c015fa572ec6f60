"""Distribution and outliers, from pushed-down aggregates (the Studio pulled whole columns).

`distribution` compares equal-width histograms over the common [min, max] of both sides (one
GROUP BY per column and side; only the bucket counts cross the wire) with a KS distance and PSI.
`outliers` counts values beyond mean ± z·stddev of the source, on both sides, in one scan per side.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field
from sqlalchemy import Double, case, func, literal, literal_column, or_, select

from prefect_ombudsman.validation.configs import ColumnsConfig
from prefect_ombudsman.validation.context import Outcome, StepContext, failed, passed, skipped
from prefect_ombudsman.validation.registry import register_validator
from prefect_ombudsman.validation.spec import Severity
from prefect_ombudsman.validation.validators import aggregates as A
from prefect_ombudsman.validation.validators.quality import (
    _pair,
    numeric_step_columns,
)
from prefect_ombudsman.validation.values import to_decimal


class DistributionConfig(ColumnsConfig):
    numeric_columns: list[str] | None = None
    bins: int = Field(default=20, ge=2, le=1000)
    max_ks: float = Field(default=0.05, ge=0, le=1, description="Largest CDF distance allowed.")
    max_psi: float = Field(
        default=0.1, ge=0, le=1000, description="Largest population stability index allowed."
    )


def _number(value: float) -> Any:
    # a constant computed here from database MIN/MAX, rendered inline so GROUP BY repeats the same text
    return literal_column(format(float(value), ".17g"), Double())


def _range_build(columns: list[str]) -> A.Build:
    return lambda t: A.combine(
        *[A.minimum(t, c) for c in columns], *[A.maximum(t, c) for c in columns], A.row_count(t)
    )


def plan_distribution(ctx: StepContext, cfg: DistributionConfig) -> None:
    pair = _pair(ctx, cfg)
    columns = numeric_step_columns(ctx, cfg, pair)
    A.plan_both(pair, _range_build(columns))


def distribution(ctx: StepContext, cfg: DistributionConfig) -> Outcome:
    """Histogram per numeric column on both sides, compared with KS distance and PSI."""
    pair = _pair(ctx, cfg)
    columns = numeric_step_columns(ctx, cfg, pair)
    if not columns:
        return skipped("no numeric column on both sides")
    ranges = A.values_both(ctx, pair, _range_build(columns))
    rows: list[dict[str, Any]] = []
    failing: list[str] = []
    for name in columns:
        key = name.lower()
        lows = [
            v
            for v in (ranges["source"][f"min:{key}"], ranges["target"][f"min:{key}"])
            if v is not None
        ]
        highs = [
            v
            for v in (ranges["source"][f"max:{key}"], ranges["target"][f"max:{key}"])
            if v is not None
        ]
        if not lows:
            rows.append({"column": name, "note": "no values on either side"})
            continue
        lo, hi = float(min(lows)), float(max(highs))
        width = (hi - lo) / cfg.bins if hi > lo else 1.0
        hist = {}
        for label in ("source", "target"):
            t = pair.side(label)
            x = t.side.pieces.as_float(t.col(name))
            raw = t.side.pieces.floor((x - _number(lo)) / _number(width))
            bucket = case((x >= _number(hi), literal_column(str(cfg.bins - 1))), else_=raw).label(
                "bucket"
            )
            stmt = (
                select(bucket, func.count())
                .select_from(t.sa)
                .where(t.col(name).isnot(None))
                .group_by(bucket)
            )
            counts = [0] * cfg.bins
            for b, n in ctx.run_sql(label, stmt, tables=(t,)):
                counts[min(max(int(b), 0), cfg.bins - 1)] += int(n)
            hist[label] = counts
        ks, psi = _ks(hist["source"], hist["target"]), _psi(hist["source"], hist["target"])
        ok = ks <= cfg.max_ks and psi <= cfg.max_psi
        rows.append({"column": name, "min": lo, "max": hi, "bins": cfg.bins, "ks_distance": round(ks, 6), "psi": round(psi, 6),
                     "source_histogram": hist["source"], "target_histogram": hist["target"], "match": ok})  # fmt: skip
        if not ok:
            failing.append(name)
    details = {
        **pair.names,
        "columns": rows,
        "failing": failing,
        "max_ks": cfg.max_ks,
        "max_psi": cfg.max_psi,
    }
    if not failing:
        return passed(details, f"distributions match on {len(columns)} columns")
    return failed(details, f"distributions differ: {', '.join(failing)}")


def _ks(a: list[int], b: list[int]) -> float:
    na, nb = sum(a), sum(b)
    if not na or not nb:
        return 0.0 if na == nb else 1.0
    ca = cb = 0
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        ca += x
        cb += y
        worst = max(worst, abs(ca / na - cb / nb))
    return worst


def _psi(a: list[int], b: list[int]) -> float:
    na, nb = sum(a), sum(b)
    if not na or not nb:
        return 0.0 if na == nb else math.inf
    eps = 1e-6
    total = 0.0
    for x, y in zip(a, b, strict=True):
        p, q = max(x / na, eps), max(y / nb, eps)
        total += (q - p) * math.log(q / p)
    return total


# ----------------------------------------------------------------------------- outliers


class OutliersConfig(ColumnsConfig):
    numeric_columns: list[str] | None = None
    z: float = Field(
        default=3.0,
        gt=0,
        le=1000,
        allow_inf_nan=False,
        description="Values beyond mean ± z·stddev (of the source) are outliers.",
    )
    fail_on_any: bool = Field(
        default=False, description="Also FAIL when either side has any outlier (the Studio's rule)."
    )


def _moments_build(columns: list[str]) -> A.Build:
    return lambda t: A.combine(
        *[A.average(t, c) for c in columns], *[A.stddev(t, c) for c in columns]
    )


def plan_outliers(ctx: StepContext, cfg: OutliersConfig) -> None:
    pair = _pair(ctx, cfg)
    columns = numeric_step_columns(ctx, cfg, pair)
    pair.source.want(_moments_build(columns)(pair.source))


def outliers(ctx: StepContext, cfg: OutliersConfig) -> Outcome:
    """Count of values outside mean ± z·stddev (source statistics) on each side, compared."""
    pair = _pair(ctx, cfg)
    columns = numeric_step_columns(ctx, cfg, pair)
    if not columns:
        return skipped("no numeric column on both sides")
    moments = ctx.aggregates(pair.source, _moments_build(columns)(pair.source))
    bounds = {}
    for name in columns:
        mean, std = (
            to_decimal(moments[f"avg:{name.lower()}"]),
            to_decimal(moments[f"std:{name.lower()}"]),
        )
        if mean is not None and std is not None:
            bounds[name] = (float(mean) - cfg.z * float(std), float(mean) + cfg.z * float(std))
    counts: dict[str, dict[str, int]] = {}
    for label in ("source", "target"):
        t = pair.side(label)
        exprs = [
            t.side.pieces.count_if(
                or_(t.col(n) < literal(lo, Double()), t.col(n) > literal(hi, Double()))
            ).label(f"o{i}")
            for i, (n, (lo, hi)) in enumerate(bounds.items())
        ]
        if exprs:
            row = ctx.run_sql(label, select(*exprs).select_from(t.sa), tables=(t,))[0]
            counts[label] = {n: int(row[i] or 0) for i, n in enumerate(bounds)}
    rows: list[dict[str, Any]] = []
    failing: list[str] = []
    for name, (lo, hi) in bounds.items():
        src, tgt = counts["source"][name], counts["target"][name]
        ok = (src == tgt if not ctx.tolerance_given else ctx.match(src, tgt)) and not (
            cfg.fail_on_any and (src or tgt)
        )
        rows.append(
            {
                "column": name,
                "lower_bound": lo,
                "upper_bound": hi,
                "source_outliers": src,
                "target_outliers": tgt,
                "match": ok,
            }
        )
        if not ok:
            failing.append(name)
    details = {**pair.names, "z": cfg.z, "columns": rows, "failing": failing}
    if not failing:
        return passed(details, f"outlier counts match on {len(rows)} columns")
    return failed(details, f"outlier counts differ: {', '.join(failing)}")


register_validator(
    "distribution",
    distribution,
    DistributionConfig,
    plan=plan_distribution,
    category="quality",
    fail_severity=Severity.MEDIUM,
    failure_kind="distribution_variance",
)
register_validator(
    "outliers",
    outliers,
    OutliersConfig,
    plan=plan_outliers,
    category="quality",
    fail_severity=Severity.LOW,
    failure_kind="distribution_variance",
)
