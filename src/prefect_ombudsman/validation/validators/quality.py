"""Counts and quality: record_counts, nulls, uniqueness, domain_values, regex_patterns."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator
from sqlalchemy import and_, func, select

from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.json_values import jsonable
from prefect_ombudsman.validation.configs import ColumnsConfig, TableConfig, as_list
from prefect_ombudsman.validation.context import (
    SAMPLE_LIMIT,
    Outcome,
    StepContext,
    TablePair,
    failed,
    passed,
    sample_rows,
    skipped,
)
from prefect_ombudsman.validation.registry import register_validator
from prefect_ombudsman.validation.spec import Severity
from prefect_ombudsman.validation.tables import ResolvedTable
from prefect_ombudsman.validation.validators import aggregates as A
from prefect_ombudsman.validation.values import difference


def _pair(ctx: StepContext, cfg: TableConfig) -> TablePair:
    return ctx.pair(cfg.table, source=cfg.source_table, target=cfg.target_table)


def shared_columns(
    pair: TablePair,
    given: list[str] | None,
    meta: dict[str, Any],
    meta_key: str | None = None,
    *,
    numeric: bool = False,
) -> tuple[list[str], list[str]]:
    """(columns to check, columns skipped because the target lacks them).

    Configured columns must exist on both sides (else a ColumnNotFoundError names them); the
    defaults (metadata list, else every column) are the source columns the target also has.
    """
    if given:
        for name in given:
            pair.source.info(name)
            pair.target.info(name)
        return [pair.source.info(n).name for n in given], []
    names: list[str]
    if meta_key and meta.get(meta_key):
        names = as_list(meta[meta_key])
    elif not numeric and meta.get("columns"):
        names = as_list(meta["columns"])
    else:
        names = [c.name for c in pair.source.columns if (c.numeric if numeric else True)]
    keep = [n for n in names if pair.source.has(n) and pair.target.has(n)]
    if numeric:
        keep = [n for n in keep if pair.source.info(n).numeric]
    return [pair.source.info(n).name for n in keep], [n for n in names if n not in keep]


def numeric_step_columns(ctx: StepContext, cfg: Any, pair: TablePair) -> list[str]:
    """The numeric columns a statistics/distribution/outliers step covers (named, else the table's)."""
    columns, _ = shared_columns(
        pair,
        cfg.columns or cfg.numeric_columns,
        ctx.meta(cfg.table),
        "numeric_columns",
        numeric=True,
    )
    return columns


def duplicate_counts(ctx: StepContext, t: ResolvedTable, cols: list[Any]) -> tuple[int, int]:
    """(key combinations present more than once, surplus rows): one GROUP BY ... HAVING on side `t`."""
    groups = (
        select(*cols, func.count().label("n"))
        .select_from(t.sa)
        .group_by(*cols)
        .having(func.count() > 1)
        .subquery()
    )
    stmt = select(func.count(), func.coalesce(func.sum(groups.c.n), 0)).select_from(groups)
    n_groups, n_rows = ctx.run_sql(t.side.label, stmt, tables=(t,))[0]
    return int(n_groups or 0), int(n_rows or 0) - int(n_groups or 0)


def duplicate_samples(ctx: StepContext, t: ResolvedTable, cols: list[Any]) -> list[dict[str, Any]]:
    """The most repeated key combinations on side `t` (at most SAMPLE_LIMIT), with their counts."""
    count = func.count().label("occurrences")
    stmt = (
        select(*cols, count)
        .select_from(t.sa)
        .group_by(*cols)
        .having(func.count() > 1)
        .order_by(count.desc())
        .limit(SAMPLE_LIMIT)
    )
    rows = ctx.run_sql(t.side.label, stmt, tables=(t,), pull=True, max_rows=SAMPLE_LIMIT)
    return [dict(r._mapping) for r in rows]


# ----------------------------------------------------------------------------- record_counts


class RecordCountsConfig(TableConfig):
    pass


def plan_record_counts(ctx: StepContext, cfg: RecordCountsConfig) -> None:
    A.plan_both(_pair(ctx, cfg), A.row_count)


def record_counts(ctx: StepContext, cfg: RecordCountsConfig) -> Outcome:
    """Row counts on both sides, exactly equal (or within the step's tolerance)."""
    pair = _pair(ctx, cfg)
    values = A.values_both(ctx, pair, A.row_count)
    src, tgt = values["source"]["count"], values["target"]["count"]
    ok = src == tgt if not ctx.tolerance_given else ctx.match(src, tgt)
    details = {
        **pair.names,
        "source_count": src,
        "target_count": tgt,
        "sql_count": src,
        "snow_count": tgt,
        **{k: v for k, v in difference(src, tgt).items() if k in ("difference", "pct_difference")},
    }
    if ok:
        return passed(details, f"{src} rows on both sides")
    return failed(
        details,
        f"row counts differ: source {src}, target {tgt} ({int(tgt or 0) - int(src or 0):+d})",
    )


# ----------------------------------------------------------------------------- nulls


class NullsConfig(ColumnsConfig):
    pass


def _nulls_build(columns: list[str]) -> A.Build:
    return lambda t: A.combine(A.row_count(t), *[A.non_null(t, c) for c in columns])


def plan_nulls(ctx: StepContext, cfg: NullsConfig) -> None:
    pair = _pair(ctx, cfg)
    columns, _ = shared_columns(pair, cfg.columns, ctx.meta(cfg.table))
    A.plan_both(pair, _nulls_build(columns))


def nulls(ctx: StepContext, cfg: NullsConfig) -> Outcome:
    """NULL counts per column, compared source vs target."""
    pair = _pair(ctx, cfg)
    columns, skipped_cols = shared_columns(pair, cfg.columns, ctx.meta(cfg.table))
    if not columns:
        return skipped("no column to check on both sides")
    values = A.values_both(ctx, pair, _nulls_build(columns))
    rows, failing = [], []
    for name in columns:
        key = f"nonnull:{name.lower()}"
        src = values["source"]["count"] - values["source"][key]
        tgt = values["target"]["count"] - values["target"][key]
        ok = src == tgt if not ctx.tolerance_given else ctx.match(src, tgt)
        rows.append(
            {
                "column": name,
                "source_nulls": src,
                "target_nulls": tgt,
                "difference": tgt - src,
                "match": ok,
            }
        )
        if not ok:
            failing.append(name)
    details: dict[str, Any] = {**pair.names, "columns": rows, "failing_columns": failing}
    if skipped_cols:
        details["columns_not_in_target"] = skipped_cols
    if not failing:
        return passed(details, f"null counts match on {len(columns)} columns")
    samples: dict[str, Any] = {}
    for row in [r for r in rows if not r["match"]][:3]:
        label = "target" if row["target_nulls"] > row["source_nulls"] else "source"
        t = pair.side(label)
        samples[row["column"]] = {label: sample_rows(ctx, label, t, t.col(row["column"]).is_(None))}
    details["samples"] = samples
    return failed(details, f"null counts differ in {len(failing)} column(s): {', '.join(failing)}")


# ----------------------------------------------------------------------------- uniqueness


class UniquenessConfig(TableConfig):
    columns: list[str] | list[list[str]] | None = Field(
        default=None,
        description="One key (list of columns) or several keys (list of lists).",
        alias="keys",
    )
    key_columns: list[str] | None = None
    unique_keys: list[str] | list[list[str]] | None = None

    @field_validator("columns", "unique_keys", mode="before")
    @classmethod
    def _one(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


PROVEN_UNIQUE = "enforced by a PRIMARY KEY / UNIQUE constraint or unique index (catalog)"


def _keys(ctx: StepContext, cfg: UniquenessConfig) -> list[list[str]]:
    raw: Any = (
        cfg.columns or cfg.key_columns or cfg.unique_keys or ctx.meta(cfg.table).get("unique_keys")
    )
    if not raw:
        return []
    if isinstance(raw, str):
        return [[raw]]
    if all(isinstance(k, (list, tuple)) for k in raw):
        return [list(k) for k in raw]
    return [list(raw)]


def _single_key_build(name: str) -> A.Build:
    return lambda t: A.combine(A.non_null(t, name), A.distinct(t, name))


def plan_uniqueness(ctx: StepContext, cfg: UniquenessConfig) -> None:
    pair = _pair(ctx, cfg)
    for key in _keys(ctx, cfg):
        if len(key) == 1:
            A.plan_both(pair, _single_key_build(key[0]))


def uniqueness(ctx: StepContext, cfg: UniquenessConfig) -> Outcome:
    """Duplicate keys on each side (single or multi-column keys); FAIL when either side has any."""
    pair = _pair(ctx, cfg)
    keys = _keys(ctx, cfg)
    if not keys:
        return skipped("no key columns (config columns/keys or metadata unique_keys)")
    results: list[dict[str, Any]] = []
    samples: dict[str, Any] = {}
    for key in keys:
        for name in key:
            pair.source.info(name)
            pair.target.info(name)
        entry: dict[str, Any] = {"columns": key}
        if len(key) == 1:
            values = A.values_both(ctx, pair, _single_key_build(key[0]))
            for label in ("source", "target"):
                v, t = values[label], pair.side(label)
                entry[f"{label}_duplicates"] = (
                    v[f"nonnull:{key[0].lower()}"] - v[f"distinct:{key[0].lower()}"]
                )
                if t.facts.proves_unique([t.info(key[0]).name]):
                    entry[f"{label}_proof"] = PROVEN_UNIQUE  # no COUNT(DISTINCT) ran
        else:
            for label in ("source", "target"):
                t = pair.side(label)
                if t.facts.proves_unique([t.info(c).name for c in key]):
                    entry[f"{label}_duplicates"] = 0  # no GROUP BY: the database enforces it
                    entry[f"{label}_proof"] = PROVEN_UNIQUE
                    continue
                _, entry[f"{label}_duplicates"] = duplicate_counts(ctx, t, [t.col(c) for c in key])
        results.append(entry)
        for label in ("source", "target"):
            if entry[f"{label}_duplicates"]:
                t = pair.side(label)
                samples.setdefault("+".join(key), {})[label] = [
                    jsonable(r) for r in duplicate_samples(ctx, t, [t.col(c) for c in key])
                ]
    details: dict[str, Any] = {**pair.names, "keys": results}
    bad = [r for r in results if r["source_duplicates"] or r["target_duplicates"]]
    if not bad:
        return passed(details, "no duplicate keys on either side")
    details["samples"] = samples
    text = "; ".join(
        f"{'+'.join(r['columns'])}: source {r['source_duplicates']}, target {r['target_duplicates']} duplicate rows"
        for r in bad
    )
    return failed(details, text)


# ----------------------------------------------------------------------------- domain_values


class DomainValuesConfig(TableConfig):
    domain_values: dict[str, list[Any]] | None = Field(default=None, alias="domains")


def _domains(ctx: StepContext, cfg: DomainValuesConfig) -> dict[str, list[Any]]:
    domains = cfg.domain_values or ctx.meta(cfg.table).get("domain_values") or {}
    if not isinstance(domains, dict) or not all(
        isinstance(v, list) and v for v in domains.values()
    ):
        raise ConfigurationError(
            "domain_values: expected {column: [allowed values, ...]} with non-empty lists"
        )
    return domains


def _domain_build(domains: dict[str, list[Any]]) -> A.Build:
    return lambda t: A.combine(*[A.outside_domain(t, c, v) for c, v in domains.items()])


def plan_domain_values(ctx: StepContext, cfg: DomainValuesConfig) -> None:
    A.plan_both(_pair(ctx, cfg), _domain_build(_domains(ctx, cfg)))


def domain_values(ctx: StepContext, cfg: DomainValuesConfig) -> Outcome:
    """Rows whose value is outside the allowed list, per column and side (values bound, never inlined)."""
    pair = _pair(ctx, cfg)
    domains = _domains(ctx, cfg)
    if not domains:
        return skipped("no domain_values (config or metadata)")
    values = A.values_both(ctx, pair, _domain_build(domains))
    rows: list[dict[str, Any]] = []
    samples: dict[str, Any] = {}
    for name, allowed in domains.items():
        key = next(iter(A.outside_domain(pair.source, name, allowed)))
        entry = {
            "column": name,
            "source_invalid": int(values["source"][key] or 0),
            "target_invalid": int(values["target"][key] or 0),
        }
        rows.append(entry)
        for label in ("source", "target"):
            if entry[f"{label}_invalid"]:
                t = pair.side(label)
                col = t.col(name)
                stmt = (
                    select(col.label("value"), func.count().label("rows"))
                    .select_from(t.sa)
                    .where(and_(col.isnot(None), col.not_in(allowed)))
                    .group_by(col)
                    .order_by(func.count().desc())
                    .limit(SAMPLE_LIMIT)
                )
                found = ctx.run_sql(label, stmt, tables=(t,), pull=True, max_rows=SAMPLE_LIMIT)
                samples.setdefault(name, {})[label] = [jsonable(dict(r._mapping)) for r in found]
    details: dict[str, Any] = {**pair.names, "columns": rows}
    bad = [r for r in rows if r["source_invalid"] or r["target_invalid"]]
    if not bad:
        return passed(details, f"all values inside their domains ({len(rows)} columns)")
    details["samples"] = samples
    return failed(
        details, "values outside the domain in " + ", ".join(str(r["column"]) for r in bad)
    )


# ----------------------------------------------------------------------------- regex_patterns


class RegexPatternsConfig(TableConfig):
    regex_patterns: dict[str, str] | None = Field(default=None, alias="patterns")
    max_distinct: int = Field(
        default=1_000_000,
        ge=1,
        description="Cap for databases without regex (values checked in Python).",
    )


def _patterns(ctx: StepContext, cfg: RegexPatternsConfig) -> dict[str, str]:
    patterns = cfg.regex_patterns or ctx.meta(cfg.table).get("regex_patterns") or {}
    if not isinstance(patterns, dict):
        raise ConfigurationError("regex_patterns: expected {column: pattern}")
    for column, pattern in patterns.items():
        try:
            re.compile(str(pattern))
        except re.error as exc:
            raise ConfigurationError(
                f"regex_patterns.{column}: invalid pattern {pattern!r} ({exc})"
            ) from None
    return {str(k): str(v) for k, v in patterns.items()}


def plan_regex_patterns(ctx: StepContext, cfg: RegexPatternsConfig) -> None:
    pair = _pair(ctx, cfg)
    for name, pattern in _patterns(ctx, cfg).items():
        for t in pair.both():
            aggs = A.regex_violations(t, name, pattern)
            if aggs:
                t.want(aggs)


def regex_patterns(ctx: StepContext, cfg: RegexPatternsConfig) -> Outcome:
    """Non-null values that do not fully match the pattern, per column and side.

    Pushed down where the database has regular expressions; SQL Server before 2025 has none, so
    there the distinct values (with their row counts) are read and matched in Python.
    """
    pair = _pair(ctx, cfg)
    patterns = _patterns(ctx, cfg)
    if not patterns:
        return skipped("no regex_patterns (config or metadata)")
    rows: list[dict[str, Any]] = []
    samples: dict[str, Any] = {}
    for name, pattern in patterns.items():
        entry: dict[str, Any] = {"column": name, "pattern": pattern}
        for label in ("source", "target"):
            t = pair.side(label)
            aggs = A.regex_violations(t, name, pattern)
            if aggs is not None:
                (key,) = aggs
                entry[f"{label}_invalid"] = int(ctx.aggregates(t, aggs)[key] or 0)
                entry[f"{label}_method"] = "sql"
                if entry[f"{label}_invalid"]:
                    col = t.col(name)
                    match = t.side.pieces.regex_full_match(col, pattern)
                    assert match is not None  # pushed down: the count above came from SQL
                    stmt = (
                        select(col.label("value"))
                        .select_from(t.sa)
                        .where(and_(col.isnot(None), ~match))
                        .distinct()
                        .limit(SAMPLE_LIMIT)
                    )
                    found = ctx.run_sql(label, stmt, tables=(t,), pull=True, max_rows=SAMPLE_LIMIT)
                    samples.setdefault(name, {})[label] = [jsonable(r[0]) for r in found]
            else:
                invalid, bad_values = _python_regex(ctx, label, t, name, pattern, cfg.max_distinct)
                entry[f"{label}_invalid"] = invalid
                entry[f"{label}_method"] = "distinct values checked in Python"
                if bad_values:
                    samples.setdefault(name, {})[label] = bad_values
        rows.append(entry)
    details: dict[str, Any] = {**pair.names, "columns": rows}
    bad = [r for r in rows if r["source_invalid"] or r["target_invalid"]]
    if not bad:
        return passed(details, f"all values match their patterns ({len(rows)} columns)")
    details["samples"] = samples
    return failed(
        details, "values not matching the pattern in " + ", ".join(r["column"] for r in bad)
    )


def _python_regex(
    ctx: StepContext, label: str, t: Any, name: str, pattern: str, cap: int
) -> tuple[int, list[Any]]:
    compiled = re.compile(pattern)
    col = t.col(name)
    stmt = select(col, func.count()).select_from(t.sa).where(col.isnot(None)).group_by(col)
    invalid, seen, bad = 0, 0, list[Any]()
    for chunk in t.side.stream(stmt, ctx.recorder(label), tables=(t,)):
        for value, count in chunk:
            seen += 1
            if seen > cap:
                raise ConfigurationError(
                    f"regex_patterns.{name}: more than {cap} distinct values on the {label} side; raise max_distinct"
                )
            if not compiled.fullmatch(str(value)):
                invalid += int(count)
                if len(bad) < SAMPLE_LIMIT:
                    bad.append(jsonable(value))
    return invalid, bad


register_validator(
    "record_counts",
    record_counts,
    RecordCountsConfig,
    plan=plan_record_counts,
    category="quality",
    fail_severity=Severity.HIGH,
    failure_kind="row_count_mismatch",
)
register_validator(
    "nulls",
    nulls,
    NullsConfig,
    plan=plan_nulls,
    category="quality",
    fail_severity=Severity.HIGH,
    failure_kind="null_violations",
)
register_validator(
    "uniqueness",
    uniqueness,
    UniquenessConfig,
    plan=plan_uniqueness,
    category="quality",
    fail_severity=Severity.HIGH,
    failure_kind="duplicate_records",
)
register_validator(
    "domain_values",
    domain_values,
    DomainValuesConfig,
    plan=plan_domain_values,
    category="quality",
    fail_severity=Severity.MEDIUM,
    failure_kind="domain_violations",
)
register_validator(
    "regex_patterns",
    regex_patterns,
    RegexPatternsConfig,
    plan=plan_regex_patterns,
    category="quality",
    fail_severity=Severity.MEDIUM,
    failure_kind="domain_violations",
)
