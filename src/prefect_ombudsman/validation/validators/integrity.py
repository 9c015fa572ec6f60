"""Integrity: foreign_keys, fact_dim_conformance, late_arriving_facts (orphans counted on both sides).

Orphans are first ruled out from the shared scans (the fact key's MIN/MAX inside a dimension key
that holds every integer of its range); only when that proves nothing does an anti-join run:
the fact LEFT JOIN `SELECT DISTINCT key FROM dim`, rows whose key finds nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import and_, func, select

from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.json_values import jsonable
from prefect_ombudsman.validation.configs import StepConfig, TableConfig
from prefect_ombudsman.validation.context import (
    SAMPLE_LIMIT,
    Outcome,
    StepContext,
    TablePair,
    failed,
    passed,
    skipped,
)
from prefect_ombudsman.validation.registry import register_validator
from prefect_ombudsman.validation.spec import Severity
from prefect_ombudsman.validation.tables import Agg, ResolvedTable
from prefect_ombudsman.validation.validators import aggregates as A
from prefect_ombudsman.validation.validators.quality import _pair


class ForeignKey(BaseModel):
    """fact.column -> ref_table.ref_column (`references: table.column` is accepted too)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    column: str = Field(alias="fk_column")
    ref_table: str = Field(alias="dim")
    ref_column: str = Field(alias="pk_column")

    @model_validator(mode="before")
    @classmethod
    def _references(cls, value: Any) -> Any:
        if isinstance(value, dict) and "references" in value:
            value = dict(value)
            ref = str(value.pop("references"))
            if "." not in ref:
                raise ValueError(f"references {ref!r}: expected table.column")
            table, _, column = ref.rpartition(".")
            value.setdefault("ref_table", table)
            value.setdefault("ref_column", column)
        return value


def key_range(fact: ResolvedTable, column: str) -> dict[str, Agg]:
    """MIN/MAX of a foreign-key column (cheap members of the fact's shared scan)."""
    return A.combine(A.minimum(fact, column), A.maximum(fact, column))


def key_profile(dim: ResolvedTable, key: str) -> dict[str, Agg]:
    """Non-null, distinct, MIN and MAX of a dimension key (the dimension's shared scan)."""
    return A.combine(A.non_null(dim, key), A.distinct(dim, key), key_range(dim, key))


def no_orphans_proven(
    fact: ResolvedTable, column: str, dim: ResolvedTable, key: str, ctx: StepContext
) -> bool:
    """True when the shared scans alone prove there is no orphan: the fact column holds no
    value, or it is an integer column whose [MIN, MAX] lies inside a dimension key that holds
    every integer of its own [MIN, MAX] (distinct count = MAX - MIN + 1). Else an anti-join runs."""
    f = ctx.aggregates(fact, key_range(fact, column))
    low, high = f[f"min:{column.lower()}"], f[f"max:{column.lower()}"]
    if low is None or high is None:
        return True
    if fact.info(column).family != "integer" or dim.info(key).family != "integer":
        return False
    d = ctx.aggregates(dim, key_profile(dim, key))
    k = key.lower()
    dim_low, dim_high, distinct = d[f"min:{k}"], d[f"max:{k}"], d[f"distinct:{k}"]
    if dim_low is None or dim_high is None or distinct is None:
        return False
    dense = int(distinct) == int(dim_high) - int(dim_low) + 1
    return dense and int(dim_low) <= int(low) and int(high) <= int(dim_high)


def _orphans(
    fact: ResolvedTable, column: str, dim: ResolvedTable, key: str, name: str
) -> tuple[Any, Any]:
    """(orphan condition, FROM clause): fact LEFT JOIN (SELECT DISTINCT key FROM dim), key missing."""
    ref = dim.col(key)
    sub = select(ref.label("k")).select_from(dim.sa).distinct().subquery(name)
    fk = fact.col(column)
    return and_(fk.isnot(None), sub.c.k.is_(None)), fact.sa.outerjoin(sub, fk == sub.c.k)


def orphan_statement(fact: ResolvedTable, column: str, dim: ResolvedTable, key: str) -> Any:
    """SELECT orphan rows, distinct orphan keys: the anti-join."""
    condition, source = _orphans(fact, column, dim, key, "ref_keys")
    fk = fact.col(column)
    return select(func.count(), func.count(fk.distinct())).select_from(source).where(condition)


def _orphan_counts(
    ctx: StepContext, label: str, fact: ResolvedTable, column: str, dim: ResolvedTable, key: str
) -> tuple[int, int]:
    """Orphan rows and distinct orphan keys, one anti-join (run only when nothing proves there are none)."""
    stmt = orphan_statement(fact, column, dim, key)
    rows, keys = ctx.run_sql(label, stmt, tables=(fact, dim))[0]
    return int(rows or 0), int(keys or 0)


def _orphan_samples(
    ctx: StepContext, label: str, fact: ResolvedTable, column: str, dim: ResolvedTable, key: str
) -> list[Any]:
    condition, source = _orphans(fact, column, dim, key, "ref_sample")
    fk = fact.col(column)
    stmt = (
        select(fk.label("key"), func.count().label("rows"))
        .select_from(source)
        .where(condition)
        .group_by(fk)
        .order_by(func.count().desc())
        .limit(SAMPLE_LIMIT)
    )
    rows = ctx.run_sql(label, stmt, tables=(fact, dim), pull=True, max_rows=SAMPLE_LIMIT)
    return [jsonable(dict(r._mapping)) for r in rows]


def check_orphans(
    ctx: StepContext, fact_pair: TablePair, fks: list[tuple[ForeignKey, TablePair]]
) -> tuple[list[dict[str, Any]], bool]:
    """Orphan rows and keys per foreign key and side, with sample keys where there are orphans."""
    results, any_orphans = [], False
    for fk, dim_pair in fks:
        entry: dict[str, Any] = {
            "column": fk.column,
            "ref_table": fk.ref_table,
            "ref_column": fk.ref_column,
            "source_ref_table": dim_pair.source.display,
            "target_ref_table": dim_pair.target.display,
        }
        for label in ("source", "target"):
            fact, dim = fact_pair.side(label), dim_pair.side(label)
            fact.info(fk.column)
            dim.info(fk.ref_column)
            proven = no_orphans_proven(fact, fk.column, dim, fk.ref_column, ctx)
            entry[f"{label}_check"] = "key ranges" if proven else "anti-join"
            rows, keys = (0, 0)
            if not proven:
                rows, keys = _orphan_counts(ctx, label, fact, fk.column, dim, fk.ref_column)
            entry[f"{label}_orphan_rows"], entry[f"{label}_orphan_keys"] = rows, keys
            if rows:
                any_orphans = True
                entry.setdefault("samples", {})[label] = _orphan_samples(
                    ctx, label, fact, fk.column, dim, fk.ref_column
                )
        results.append(entry)
    return results, any_orphans


# ----------------------------------------------------------------------------- foreign_keys


class ForeignKeysConfig(TableConfig):
    fk_column: str | None = Field(default=None, alias="column")
    ref_table: str | None = None
    ref_column: str | None = None
    foreign_keys: list[ForeignKey] | None = None

    @model_validator(mode="before")
    @classmethod
    def _references(cls, value: Any) -> Any:
        if isinstance(value, dict) and "references" in value:
            value = dict(value)
            table, _, column = str(value.pop("references")).rpartition(".")
            value.setdefault("ref_table", table or None)
            value.setdefault("ref_column", column or None)
        return value


def _foreign_keys(ctx: StepContext, cfg: ForeignKeysConfig) -> list[ForeignKey]:
    if cfg.fk_column or cfg.ref_table or cfg.ref_column:
        if not (cfg.fk_column and cfg.ref_table and cfg.ref_column):
            raise ConfigurationError(
                "foreign_keys: give fk_column, ref_table and ref_column together"
            )
        return [ForeignKey(fk_column=cfg.fk_column, dim=cfg.ref_table, pk_column=cfg.ref_column)]
    if cfg.foreign_keys:
        return list(cfg.foreign_keys)
    return metadata_foreign_keys(ctx, cfg.table)


def metadata_foreign_keys(
    ctx: StepContext, table: str | None, only_dim: str | None = None
) -> list[ForeignKey]:
    """Foreign keys from `metadata.<table>.foreign_keys` ({dim: {column, references}} or a list)."""
    raw = ctx.meta(table).get("foreign_keys") or {}
    items: list[ForeignKey] = []
    try:
        if isinstance(raw, dict):
            for dim, value in raw.items():
                if only_dim and dim.lower() != only_dim.lower():
                    continue
                value = dict(value or {})
                if "references" not in value and "ref_column" not in value:
                    business_key = ctx.meta(dim).get("business_key") or ctx.meta(dim).get(
                        "surrogate_key"
                    )
                    if not business_key:
                        raise ConfigurationError(
                            f"metadata.{table}.foreign_keys.{dim}: give references: <dim>.<column>"
                        )
                    value["references"] = f"{dim}.{business_key}"
                items.append(ForeignKey.model_validate(value))
        else:
            items = [ForeignKey.model_validate(v) for v in raw]
    except ValueError as exc:
        raise ConfigurationError(f"metadata.{table}.foreign_keys: {exc}") from None
    return items


def _plan_fks(ctx: StepContext, fact_pair: TablePair, fks: list[ForeignKey]) -> None:
    for fk in fks:
        dim_pair = ctx.pair(fk.ref_table)
        for label in ("source", "target"):
            fact, dim = fact_pair.side(label), dim_pair.side(label)
            fact.want(key_range(fact, fk.column))
            if (
                fact.info(fk.column).family == "integer"
                and dim.info(fk.ref_column).family == "integer"
            ):
                dim.want(key_profile(dim, fk.ref_column))


def plan_foreign_keys(ctx: StepContext, cfg: ForeignKeysConfig) -> None:
    _plan_fks(ctx, _pair(ctx, cfg), _foreign_keys(ctx, cfg))


def foreign_keys(ctx: StepContext, cfg: ForeignKeysConfig) -> Outcome:
    """Orphan foreign-key values on both sides (pushed down; sample keys only for orphans)."""
    pair = _pair(ctx, cfg)
    fks = _foreign_keys(ctx, cfg)
    if not fks:
        return skipped(
            "no foreign key (config fk_column/ref_table/ref_column, foreign_keys, or metadata)"
        )
    results, any_orphans = check_orphans(ctx, pair, [(fk, ctx.pair(fk.ref_table)) for fk in fks])
    details = {**pair.names, "foreign_keys": results}
    if not any_orphans:
        return passed(details, f"no orphans for {len(fks)} foreign key(s) on either side")
    bad = [
        f"{r['column']}: source {r['source_orphan_rows']}, target {r['target_orphan_rows']}"
        for r in results
        if r["source_orphan_rows"] or r["target_orphan_rows"]
    ]
    return failed(details, "orphan rows: " + "; ".join(bad))


# ----------------------------------------------------------------------------- fact_dim_conformance


class ConformanceConfig(StepConfig):
    fact: str | None = Field(default=None, alias="table")
    dim: str
    fk_column: str | None = Field(default=None, alias="column")
    business_key: str | None = Field(default=None, alias="ref_column")


def _conformance_fk(ctx: StepContext, cfg: ConformanceConfig) -> list[ForeignKey]:
    if cfg.fk_column:
        key = (
            cfg.business_key
            or ctx.meta(cfg.dim).get("business_key")
            or ctx.meta(cfg.dim).get("surrogate_key")
        )
        if not key:
            raise ConfigurationError(
                f"fact_dim_conformance: no business_key for {cfg.dim} (config or metadata)"
            )
        return [ForeignKey(fk_column=cfg.fk_column, dim=cfg.dim, pk_column=key)]
    return metadata_foreign_keys(ctx, cfg.fact, only_dim=cfg.dim)


def plan_fact_dim_conformance(ctx: StepContext, cfg: ConformanceConfig) -> None:
    _plan_fks(ctx, ctx.pair(cfg.fact), _conformance_fk(ctx, cfg))


def fact_dim_conformance(ctx: StepContext, cfg: ConformanceConfig) -> Outcome:
    """Fact foreign keys that find no dimension row, per side (the Studio's conformance, pushed down)."""
    if not cfg.fact:
        raise ConfigurationError("fact_dim_conformance: give fact (or table)")
    fks = _conformance_fk(ctx, cfg)
    if not fks:
        return skipped(
            f"no foreign key from {cfg.fact} to {cfg.dim} (config fk_column or metadata.{cfg.fact}.foreign_keys)"
        )
    pair = ctx.pair(cfg.fact)
    results, any_orphans = check_orphans(ctx, pair, [(fk, ctx.pair(fk.ref_table)) for fk in fks])
    r = results[0]
    details = {
        **pair.names,
        "fact": cfg.fact,
        "dim": cfg.dim,
        "foreign_keys": results,
        "sql_orphans": {
            "total_affected_rows": r["source_orphan_rows"],
            "unique_missing_keys": r["source_orphan_keys"],
            "samples": r.get("samples", {}).get("source", []),
        },
        "snow_orphans": {
            "total_affected_rows": r["target_orphan_rows"],
            "unique_missing_keys": r["target_orphan_keys"],
            "samples": r.get("samples", {}).get("target", []),
        },
    }
    if not any_orphans:
        return passed(details, f"every {cfg.fact} row finds its {cfg.dim} row on both sides")
    return failed(
        details,
        f"{cfg.fact} -> {cfg.dim}: orphan rows source {r['source_orphan_rows']}, target {r['target_orphan_rows']}",
    )


# ----------------------------------------------------------------------------- late_arriving_facts


class LateArrivingConfig(StepConfig):
    fact: str | None = Field(default=None, alias="table")
    dim: str
    fk_column: str | None = Field(default=None, alias="column")
    business_key: str | None = None
    fact_date_col: str | None = Field(default=None, alias="date_col")
    effective_date: str | None = None


def late_arriving_facts(ctx: StepContext, cfg: LateArrivingConfig) -> Outcome:
    """Fact rows dated before their dimension row became effective (earliest version), per side."""
    if not cfg.fact:
        raise ConfigurationError("late_arriving_facts: give fact (or table)")
    fks = _conformance_fk(
        ctx,
        ConformanceConfig(
            table=cfg.fact, dim=cfg.dim, column=cfg.fk_column, ref_column=cfg.business_key
        ),
    )
    if not fks:
        return skipped(f"no foreign key from {cfg.fact} to {cfg.dim}")
    fk = fks[0]
    effective = cfg.effective_date or ctx.meta(cfg.dim).get("effective_date")
    fact_date = cfg.fact_date_col or (ctx.meta(cfg.fact).get("date_columns") or [None])[0]
    if not effective or not fact_date:
        return skipped(
            "needs the fact's date column (fact_date_col) and the dimension's effective_date"
        )
    fact_pair, dim_pair = ctx.pair(cfg.fact), ctx.pair(fk.ref_table)
    details: dict[str, Any] = {
        **fact_pair.names,
        "fact_date_col": fact_date,
        "effective_date": effective,
    }
    for label in ("source", "target"):
        fact, dim = fact_pair.side(label), dim_pair.side(label)
        first = (
            select(dim.col(fk.ref_column).label("k"), func.min(dim.col(effective)).label("eff"))
            .select_from(dim.sa)
            .group_by(dim.col(fk.ref_column))
            .subquery("first_version")
        )
        condition = fact.col(fact_date) < first.c.eff
        stmt = (
            select(func.count())
            .select_from(fact.sa.join(first, fact.col(fk.column) == first.c.k))
            .where(condition)
        )
        details[f"{label}_late_rows"] = int(ctx.run_sql(label, stmt, tables=(fact, dim))[0][0] or 0)
        if details[f"{label}_late_rows"]:
            sample = (
                select(
                    fact.col(fk.column).label("key"),
                    fact.col(fact_date).label("fact_date"),
                    first.c.eff.label("effective_date"),
                )
                .select_from(fact.sa.join(first, fact.col(fk.column) == first.c.k))
                .where(condition)
                .limit(SAMPLE_LIMIT)
            )
            rows = ctx.run_sql(label, sample, tables=(fact, dim), pull=True, max_rows=SAMPLE_LIMIT)
            details.setdefault("samples", {})[label] = [jsonable(dict(r._mapping)) for r in rows]
    if not details["source_late_rows"] and not details["target_late_rows"]:
        return passed(details, "no late-arriving facts on either side")
    return failed(
        details,
        f"late-arriving facts: source {details['source_late_rows']}, target {details['target_late_rows']}",
    )


register_validator(
    "foreign_keys",
    foreign_keys,
    ForeignKeysConfig,
    plan=plan_foreign_keys,
    category="integrity",
    fail_severity=Severity.HIGH,
    failure_kind="referential_integrity",
)
register_validator(
    "fact_dim_conformance",
    fact_dim_conformance,
    ConformanceConfig,
    plan=plan_fact_dim_conformance,
    category="integrity",
    fail_severity=Severity.HIGH,
    failure_kind="referential_integrity",
)
register_validator(
    "late_arriving_facts",
    late_arriving_facts,
    LateArrivingConfig,
    category="integrity",
    fail_severity=Severity.MEDIUM,
    failure_kind="referential_integrity",
)
