"""Named aggregates on one table side; keys are shared, so steps on one table share one scan."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
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
    col = t.col(name)
    return {f"nonnull:{name.lower()}": Agg(lambda: func.count(col))}


def distinct(t: ResolvedTable, name: str) -> dict[str, Agg]:
    """Exact distinct non-null values; the dialect picks how (a bitmap over the probed MIN/MAX on DuckDB)."""
    col, info, pieces = t.col(name), t.info(name), t.side.pieces
    key = f"distinct:{name.lower()}"
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
    col, info = t.col(name), t.info(name)
    return {f"avg:{name.lower()}": Agg(lambda: t.side.pieces.exact_avg(col, info))}


def minimum(t: ResolvedTable, name: str) -> dict[str, Agg]:
    col = t.col(name)
    return {f"min:{name.lower()}": Agg(lambda: func.min(col))}


def maximum(t: ResolvedTable, name: str) -> dict[str, Agg]:
    col = t.col(name)
    return {f"max:{name.lower()}": Agg(lambda: func.max(col))}


def stddev(t: ResolvedTable, name: str) -> dict[str, Agg]:
    col, info = t.col(name), t.info(name)
    return {f"std:{name.lower()}": Agg(lambda: t.side.pieces.stddev(col, info))}


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
    if t.side.pieces.regex_full_match(col, pattern) is None:
        return None
    return {
        f"regex:{name.lower()}:{_digest(pattern)}": Agg(
            lambda: t.side.pieces.count_if(
                and_(col.isnot(None), not_(t.side.pieces.regex_full_match(col, pattern)))
            )
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
