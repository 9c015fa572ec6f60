"""Named aggregates on one table side; keys are shared, so steps on one table share one scan."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy import and_, func, not_

from prefect_ombudsman.validation.context import StepContext, TablePair
from prefect_ombudsman.validation.tables import Agg, ResolvedTable

Build = Callable[[ResolvedTable], dict[str, Agg]]


def _digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:10]


def row_count(t: ResolvedTable) -> dict[str, Agg]:
    return {"count": Agg(lambda: func.count())}


def non_null(t: ResolvedTable, name: str) -> dict[str, Agg]:
    """COUNT(col); the row count itself when the catalog proves the column NOT NULL."""
    col = t.col(name)
    key = f"nonnull:{name.lower()}"
    if t.info(name).name.lower() in t.facts.not_null:
        return {key: Agg(parts=row_count(t), derive=lambda v: v["count"])}
    return {key: Agg(lambda: func.count(col))}


def distinct(t: ResolvedTable, name: str) -> dict[str, Agg]:
    """Exact distinct non-null values; the dialect picks how (a bitmap over the probed MIN/MAX on
    DuckDB). When the catalog proves the column unique, it is the non-null count: no DISTINCT runs."""
    col, info, pieces = t.col(name), t.info(name), t.side.pieces
    key = f"distinct:{name.lower()}"
    if t.facts.proves_unique([info.name]):
        nonnull = non_null(t, name)
        only = next(iter(nonnull))
        return {key: Agg(parts=nonnull, derive=lambda v: v[only])}
    if not pieces.distinct_bounds(info):
        return {
            key: Agg(lambda: pieces.count_distinct(col, info), alone=pieces.distinct_alone(info))
        }
    low, high = f"min:{name.lower()}", f"max:{name.lower()}"
    needs = {**minimum(t, name), **maximum(t, name)}

    def bounds(v: dict[str, Any]) -> tuple[Any, Any]:
        return v[low], v[high]

    return {
        key: Agg(
            lambda v: pieces.count_distinct(col, info, bounds(v)),
            needs=needs,
            alone=lambda v: pieces.distinct_alone(info, bounds(v)),
        )
    }


def total(t: ResolvedTable, name: str) -> dict[str, Agg]:
    col, info = t.col(name), t.info(name)
    return {f"sum:{name.lower()}": Agg(lambda: t.side.pieces.exact_sum(col, info))}


def average(t: ResolvedTable, name: str) -> dict[str, Agg]:
    """AVG: the database's, or (where the dialect says so) SUM / COUNT in exact Decimal arithmetic
    from the SUM and COUNT the shared scan computes anyway."""
    col, info = t.col(name), t.info(name)
    key = name.lower()
    if not t.side.pieces.avg_from_sum(info):
        return {f"avg:{key}": Agg(lambda: t.side.pieces.exact_avg(col, info))}
    parts = combine(non_null(t, name), total(t, name))

    def fold(v: dict[str, Any]) -> Any:
        return exact_mean(v[f"nonnull:{key}"], v[f"sum:{key}"])

    return {f"avg:{key}": Agg(parts=parts, derive=fold)}


def exact_mean(n: Any, total: Any) -> Decimal | None:
    """SUM / COUNT as a Decimal correct to 38 significant digits (None for no values)."""
    if n is None or total is None or int(n) == 0:
        return None
    with localcontext() as exact:
        exact.prec = 38
        return Decimal(total) / Decimal(int(n))


def minimum(t: ResolvedTable, name: str) -> dict[str, Agg]:
    col = t.col(name)
    return {f"min:{name.lower()}": Agg(lambda: func.min(col))}


def maximum(t: ResolvedTable, name: str) -> dict[str, Agg]:
    col = t.col(name)
    return {f"max:{name.lower()}": Agg(lambda: func.max(col))}


def stddev(t: ResolvedTable, name: str) -> dict[str, Agg]:
    """Sample standard deviation: the database's, or folded exactly from COUNT, SUM and SUM(x*x)."""
    col, info, pieces = t.col(name), t.info(name), t.side.pieces
    key = name.lower()
    if not pieces.stddev_from_moments(info):
        return {f"std:{key}": Agg(lambda: pieces.stddev(col, info))}
    parts = combine(
        non_null(t, name),
        total(t, name),
        {f"sumsq:{key}": Agg(lambda: pieces.square_sum(col, info))},
    )

    def fold(v: dict[str, Any]) -> Any:
        return sample_stddev(v[f"nonnull:{key}"], v[f"sum:{key}"], v[f"sumsq:{key}"])

    return {f"std:{key}": Agg(parts=parts, derive=fold)}


def sample_stddev(n: Any, total: Any, squares: Any) -> float | None:
    """sqrt((n*S2 - S1^2) / (n*(n-1))) in exact Decimal arithmetic (no cancellation), as a float."""
    if n is None or total is None or squares is None or int(n) < 2:
        return None
    with localcontext() as exact:
        exact.prec = 100
        count, s1, s2 = Decimal(int(n)), Decimal(total), Decimal(squares)
        variance = (count * s2 - s1 * s1) / (count * (count - 1))
        return float(max(variance, Decimal(0)).sqrt())


def outside_domain(t: ResolvedTable, name: str, allowed: list[Any]) -> dict[str, Agg]:
    col = t.col(name)
    return {
        f"domain:{name.lower()}:{_digest(allowed)}": Agg(
            lambda: t.side.pieces.count_if(and_(col.isnot(None), col.not_in(allowed)))
        )
    }


def regex_violations(t: ResolvedTable, name: str, pattern: str) -> dict[str, Agg] | None:
    """None when the database has no regex (the validator then checks distinct values in Python)."""
    col = t.col(name)
    match = t.side.pieces.regex_full_match(col, pattern)
    if match is None:
        return None
    return {
        f"regex:{name.lower()}:{_digest(pattern)}": Agg(
            lambda: t.side.pieces.count_if(and_(col.isnot(None), not_(match)))
        )
    }


def combine(*parts: dict[str, Agg] | None) -> dict[str, Agg]:
    out: dict[str, Agg] = {}
    for part in parts:
        if part:
            out.update(part)
    return out


def plan_both(pair: TablePair, build: Build) -> None:
    for t in pair.both():
        t.want(build(t))


def values_both(ctx: StepContext, pair: TablePair, build: Build) -> dict[str, dict[str, Any]]:
    return {t.side.label: ctx.aggregates(t, build(t)) for t in pair.both()}
