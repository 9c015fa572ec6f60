"""Schema: schema_columns, schema_datatypes, schema_nullability, schema_constraints, schema_structure.

Columns come from each side's catalog (one query per table); constraints from the metadata
catalog extraction (`metadata/extract.py`, one query per kind).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.validation.configs import ColumnsConfig, StepConfig, TableConfig, as_list
from prefect_ombudsman.validation.context import Outcome, StepContext, TablePair, failed, passed
from prefect_ombudsman.validation.registry import register_validator
from prefect_ombudsman.validation.spec import Severity
from prefect_ombudsman.validation.sql import ColumnInfo
from prefect_ombudsman.validation.validators.quality import _pair

# Source family -> target families that hold every source value.
COMPATIBLE = {
    "integer": {"integer", "decimal"},
    "decimal": {"decimal", "integer"},
    "float": {"float"},
    "string": {"string"},
    "date": {"date", "datetime"},
    "datetime": {"datetime"},
    "time": {"time"},
    "boolean": {"boolean", "integer"},
}


def _names(pair: TablePair) -> tuple[dict[str, ColumnInfo], dict[str, ColumnInfo]]:
    return {c.name.upper(): c for c in pair.source.columns}, {
        c.name.upper(): c for c in pair.target.columns
    }


def _selected(cfg: ColumnsConfig, src: dict[str, ColumnInfo]) -> list[str]:
    if not cfg.columns:
        return list(src)
    wanted = [c.upper() for c in cfg.columns]
    missing = [c for c in wanted if c not in src]
    if missing:
        raise ConfigurationError(f"columns {missing} not found in the source table")
    return wanted


# ----------------------------------------------------------------------------- schema_columns


class SchemaColumnsConfig(ColumnsConfig):
    pass


def schema_columns(ctx: StepContext, cfg: SchemaColumnsConfig) -> Outcome:
    """Column names on both sides (case-insensitive): none missing on either side."""
    pair = _pair(ctx, cfg)
    src, tgt = _names(pair)
    wanted = set(_selected(cfg, src))
    missing_in_target = sorted(n for n in wanted if n not in tgt)
    missing_in_source = sorted(n for n in tgt if n not in src) if not cfg.columns else []
    details = {
        **pair.names,
        "source_columns": list(src),
        "target_columns": list(tgt),
        "missing_in_target": missing_in_target,
        "missing_in_source": missing_in_source,
        "column_count_source": len(src),
        "column_count_target": len(tgt),
        "sql_columns": list(src), "snow_columns": list(tgt),
        "missing_in_snow": missing_in_target, "missing_in_sql": missing_in_source,
    }  # fmt: skip
    if not missing_in_target and not missing_in_source:
        return passed(details, f"{len(wanted)} columns present on both sides")
    return failed(
        details,
        f"missing in target: {missing_in_target or 'none'}; missing in source: {missing_in_source or 'none'}",
    )


# ----------------------------------------------------------------------------- schema_datatypes


class SchemaDatatypesConfig(ColumnsConfig):
    allow_narrowing: bool = Field(
        default=False, description="Accept shorter strings / smaller precision on the target."
    )


def type_problem(src: ColumnInfo, tgt: ColumnInfo, allow_narrowing: bool = False) -> str | None:
    """Why the target type cannot hold every source value, or None."""
    sf, tf = src.family, tgt.family
    if sf == "other" or tf == "other":
        same = (
            src.data_type.split("(")[0].strip().lower()
            == tgt.data_type.split("(")[0].strip().lower()
        )
        return None if same else f"{src.data_type} -> {tgt.data_type}: unknown type pair"
    if tf not in COMPATIBLE.get(sf, {sf}):
        return f"{sf} {src.data_type} -> {tf} {tgt.data_type}: incompatible families"
    if allow_narrowing:
        return None
    if sf == "string" and src.max_length and tgt.max_length and 0 < tgt.max_length < src.max_length:
        return f"target length {tgt.max_length} < source length {src.max_length} (truncation)"
    if sf == "decimal" and tf == "integer" and (src.scale or 0) > 0:
        return f"target has no decimals, source scale {src.scale}"
    if (
        sf in ("decimal", "integer")
        and tf == "decimal"
        and src.scale is not None
        and tgt.scale is not None
    ):
        if tgt.scale < src.scale:
            return f"target scale {tgt.scale} < source scale {src.scale} (rounding)"
        if (
            src.precision
            and tgt.precision
            and (tgt.precision - tgt.scale) < (src.precision - src.scale)
        ):
            return f"target integer digits {tgt.precision - tgt.scale} < source {src.precision - src.scale} (overflow)"
    return None


def schema_datatypes(ctx: StepContext, cfg: SchemaDatatypesConfig) -> Outcome:
    """Every source column exists on the target with a type that holds its values (and the type the target database suggests for a migration)."""
    pair = _pair(ctx, cfg)
    src, tgt = _names(pair)
    matched: list[dict[str, Any]] = []
    mismatches: list[dict[str, Any]] = []
    for name in _selected(cfg, src):
        s = src[name]
        expected = pair.target.side.dialect.migration_type(s.data_type, pair.source.side.dialect)
        if name not in tgt:
            mismatches.append(
                {
                    "column": name,
                    "source_type": s.data_type,
                    "target_type": None,
                    "compatible": False,
                    "severity": "HIGH",
                    "problem": "missing in target",
                    "expected_target_type": expected,
                }
            )
            continue
        t = tgt[name]
        problem = type_problem(s, t, cfg.allow_narrowing)
        entry = {
            "column": name,
            "source_type": _type_text(s),
            "target_type": _type_text(t),
            "compatible": problem is None,
            "expected_target_type": expected,
        }
        if problem:
            mismatches.append({**entry, "severity": "MEDIUM", "problem": problem})
        else:
            matched.append(entry)
    details = {**pair.names, "matched": matched, "mismatches": mismatches}
    if not mismatches:
        return passed(details, f"{len(matched)} column types compatible")
    severity = (
        Severity.HIGH if any(m["severity"] == "HIGH" for m in mismatches) else Severity.MEDIUM
    )
    return failed(
        details,
        f"{len(mismatches)} column type problem(s): "
        + ", ".join(m["column"] for m in mismatches[:10]),
        severity,
    )


def _type_text(info: ColumnInfo) -> str:
    if info.family == "string" and info.max_length:
        return f"{info.data_type}({info.max_length})"
    if info.family == "decimal" and info.precision is not None and "(" not in info.data_type:
        return f"{info.data_type}({info.precision},{info.scale or 0})"
    return info.data_type


# ----------------------------------------------------------------------------- schema_nullability


class SchemaNullabilityConfig(ColumnsConfig):
    pass


def schema_nullability(ctx: StepContext, cfg: SchemaNullabilityConfig) -> Outcome:
    """Every source column exists on the target with the same nullability (names compared upper-cased)."""
    pair = _pair(ctx, cfg)
    src, tgt = _names(pair)
    mismatches: list[dict[str, Any]] = []
    for name in _selected(cfg, src):
        if name not in tgt:
            mismatches.append(
                {
                    "column": name,
                    "source_nullable": src[name].nullable,
                    "target_nullable": None,
                    "problem": "missing in target",
                }
            )
        elif src[name].nullable != tgt[name].nullable:
            mismatches.append(
                {
                    "column": name,
                    "source_nullable": src[name].nullable,
                    "target_nullable": tgt[name].nullable,
                    "problem": "target allows NULL"
                    if tgt[name].nullable
                    else "target forbids NULL",
                }
            )
    details = {**pair.names, "columns_checked": len(_selected(cfg, src)), "mismatches": mismatches}
    if not mismatches:
        return passed(details, "nullability matches")
    return failed(
        details, f"nullability differs on {', '.join(m['column'] for m in mismatches[:10])}"
    )


# ----------------------------------------------------------------------------- schema_constraints


class SchemaConstraintsConfig(TableConfig):
    check_foreign_keys: bool = True


def _constraints(ctx: StepContext, label: str, table: Any) -> dict[str, Any]:
    from prefect_ombudsman.metadata.extract import extract_catalog

    side = ctx.side(label)
    catalog = extract_catalog(
        side.engine,
        connection=side.name,
        schema=table.schema,
        table_names=[table.name],
        close_session=False,
    )
    found = next((t for t in catalog.tables if t.name.lower() == table.name.lower()), None)
    if found is None:
        return {"primary_key": [], "foreign_keys": []}
    return {
        "primary_key": [c.upper() for c in found.primary_key],
        "foreign_keys": sorted(
            {
                (
                    tuple(c.upper() for c in fk.columns),
                    fk.referred_table.upper(),
                    tuple(c.upper() for c in fk.referred_columns),
                )
                for fk in found.foreign_keys
            }
        ),
    }


def schema_constraints(ctx: StepContext, cfg: SchemaConstraintsConfig) -> Outcome:
    """Primary key and foreign keys equal on both sides (from the metadata catalog of each side)."""
    pair = _pair(ctx, cfg)
    src = _constraints(ctx, "source", pair.source)
    tgt = _constraints(ctx, "target", pair.target)
    problems = []
    if src["primary_key"] != tgt["primary_key"]:
        problems.append(f"primary key source {src['primary_key']} vs target {tgt['primary_key']}")
    missing_fks = (
        [fk for fk in src["foreign_keys"] if fk not in tgt["foreign_keys"]]
        if cfg.check_foreign_keys
        else []
    )
    extra_fks = (
        [fk for fk in tgt["foreign_keys"] if fk not in src["foreign_keys"]]
        if cfg.check_foreign_keys
        else []
    )
    if missing_fks:
        problems.append(f"{len(missing_fks)} foreign key(s) missing in target")

    def show(fks: list[Any]) -> list[dict[str, Any]]:
        return [
            {"columns": list(c), "referred_table": t, "referred_columns": list(r)}
            for c, t, r in fks
        ]

    details = {
        **pair.names,
        "source_primary_key": src["primary_key"],
        "target_primary_key": tgt["primary_key"],
        "source_foreign_keys": show(src["foreign_keys"]),
        "target_foreign_keys": show(tgt["foreign_keys"]),
        "missing_in_target": show(missing_fks),
        "extra_in_target": show(extra_fks),
    }
    if not problems:
        return passed(details, "constraints match")
    return failed(details, "; ".join(problems))


# ----------------------------------------------------------------------------- schema_structure


class SchemaStructureConfig(StepConfig):
    source_schema: str | None = Field(default=None, alias="schema")
    target_schema: str | None = None
    sql_tables: list[str] | None = Field(default=None, alias="source_tables")
    snow_tables: list[str] | None = Field(default=None, alias="target_tables")
    tables: list[str] | None = Field(
        default=None, description="Logical tables that must exist on both sides."
    )


def schema_structure(ctx: StepContext, cfg: SchemaStructureConfig) -> Outcome:
    """Table sets: every expected table exists on both sides (names compared case-insensitively)."""
    details: dict[str, Any] = {}
    if cfg.sql_tables is not None or cfg.snow_tables is not None:
        src = {t.rsplit(".", 1)[-1].upper() for t in as_list(cfg.sql_tables)}
        tgt = {t.rsplit(".", 1)[-1].upper() for t in as_list(cfg.snow_tables)}
    elif cfg.source_schema or cfg.target_schema:
        source_schema = cfg.source_schema or ctx.run.source.default_schema
        target_schema = cfg.target_schema or (
            ctx.run.map_schema(f"{source_schema}.x").rsplit(".", 1)[0] if source_schema else None
        )
        with ctx.run.source.connect() as conn:
            src = {
                n.upper()
                for n in ctx.run.source.pieces.table_names(
                    conn, source_schema if ctx.run.source.has_schemas else None
                )
            }
        with ctx.run.target.connect() as conn:
            tgt = {
                n.upper()
                for n in ctx.run.target.pieces.table_names(
                    conn, target_schema if ctx.run.target.has_schemas else None
                )
            }
        details.update(source_schema=source_schema, target_schema=target_schema)
    else:
        logical = cfg.tables or list(ctx.pipeline.mapping)
        if not logical:
            raise ConfigurationError(
                "schema_structure: give schema/target_schema, sql_tables/snow_tables, or tables (or a pipeline mapping)"
            )
        src, tgt, missing = set(), set(), []
        for name in logical:
            entry: dict[str, Any] = {"table": name}
            _, s_name, t_name = ctx.run.table_names(name)
            for label, qualified in (("source", s_name), ("target", t_name)):
                try:
                    ctx.side(label).resolve(qualified)
                    (src if label == "source" else tgt).add(name.upper())
                except ConfigurationError as exc:
                    entry[f"{label}_error"] = str(exc)
            if len(entry) > 1:
                missing.append(entry)
        details["problems"] = missing
    only_source = sorted(src - tgt)
    only_target = sorted(tgt - src)
    details.update(
        source_tables=sorted(src),
        target_tables=sorted(tgt),
        missing_in_target=only_source,
        missing_in_source=only_target,
        found_in_both=sorted(src & tgt),
    )
    if details.get("problems") or only_source or only_target:
        if details.get("problems"):
            only = [p["table"] for p in details["problems"]]
            return failed(details, f"tables missing: {', '.join(only)}")
        return failed(
            details,
            f"only in source: {only_source or 'none'}; only in target: {only_target or 'none'}",
        )
    return passed(details, f"{len(src)} tables on both sides")


register_validator(
    "schema_columns",
    schema_columns,
    SchemaColumnsConfig,
    category="schema",
    fail_severity=Severity.HIGH,
    failure_kind="schema_mismatch",
)
register_validator(
    "schema_datatypes",
    schema_datatypes,
    SchemaDatatypesConfig,
    category="schema",
    fail_severity=Severity.MEDIUM,
    failure_kind="datatype_mismatch",
)
register_validator(
    "schema_nullability",
    schema_nullability,
    SchemaNullabilityConfig,
    category="schema",
    fail_severity=Severity.HIGH,
    failure_kind="schema_mismatch",
)
register_validator(
    "schema_constraints",
    schema_constraints,
    SchemaConstraintsConfig,
    category="schema",
    fail_severity=Severity.HIGH,
    failure_kind="schema_mismatch",
)
register_validator(
    "schema_structure",
    schema_structure,
    SchemaStructureConfig,
    category="schema",
    fail_severity=Severity.HIGH,
    failure_kind="schema_mismatch",
)
