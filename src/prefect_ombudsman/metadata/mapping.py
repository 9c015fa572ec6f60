"""The source/target mapping of a project: tables and columns paired across two catalogs.

Tables pair case-insensitively through the project's schema mappings (`{dbo: PUBLIC}`), then,
for what is left, by table name alone when that name is unique on both sides (SQLite has no
schemas where the other side has `dim` / `fact`). Columns pair case-insensitively by name and
carry their type and nullability on both sides.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from prefect_ombudsman.dialects.types import catalog_family
from prefect_ombudsman.metadata.catalog import Catalog, CatalogColumn, CatalogTable
from prefect_ombudsman.projects import mapped_schema

MatchStatus = Literal["found_in_both", "only_in_source", "only_in_target"]
TypeMatch = Literal["same", "compatible", "different"]


def column_family(column: CatalogColumn) -> str:
    """A coarse family (integer, decimal, string, timestamp ...) that compares across databases."""
    return catalog_family(column.data_type, column.scale)


def type_text(column: CatalogColumn) -> str | None:
    """`VARCHAR(20)`, `NUMERIC(12,2)`, `INTEGER`: the type as one comparable string."""
    if column.data_type is None:
        return None
    if column.precision is not None:
        return f"{column.data_type}({column.precision},{column.scale or 0})"
    if column.max_length is not None:
        return f"{column.data_type}({'MAX' if column.max_length == -1 else column.max_length})"
    return column.data_type


class ColumnMapping(BaseModel):
    name: str
    status: MatchStatus
    source_column: str | None = None
    target_column: str | None = None
    source_type: str | None = None
    target_type: str | None = None
    source_nullable: bool | None = None
    target_nullable: bool | None = None
    type_match: TypeMatch | None = None
    differences: list[str] = Field(
        default_factory=list, description="type, length, precision, scale, nullable"
    )


class TableMapping(BaseModel):
    status: MatchStatus
    matched_by: Literal["schema_mapping", "name"] | None = None
    source_schema: str | None = None
    source_table: str | None = None
    target_schema: str | None = None
    target_table: str | None = None
    source_type: str | None = None
    target_type: str | None = None
    source_row_count: int | None = None
    target_row_count: int | None = None
    columns: list[ColumnMapping] = Field(default_factory=list)

    @property
    def differs(self) -> bool:
        return self.status != "found_in_both" or any(
            c.status != "found_in_both" or c.differences for c in self.columns
        )


class CatalogMapping(BaseModel):
    """`metadata/mapping.json` of a project."""

    project_id: str | None = None
    source_connection: str
    target_connection: str
    schema_mappings: dict[str, str] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    summary: dict[str, int] = Field(default_factory=dict)
    tables: list[TableMapping] = Field(default_factory=list)


def _compare_columns(src: CatalogColumn, tgt: CatalogColumn) -> tuple[TypeMatch, list[str]]:
    differences: list[str] = []
    fs, ft = column_family(src), column_family(tgt)
    if type_text(src) == type_text(tgt):
        match: TypeMatch = "same"
    elif fs == ft and fs not in ("other", "unknown"):
        match = "compatible"
    else:
        match = "different"
        differences.append("type")
    if match != "different":
        if (
            fs == "string"
            and src.max_length is not None
            and tgt.max_length is not None
            and src.max_length != tgt.max_length
        ):
            differences.append("length")
        if fs in ("decimal", "integer") and src.precision is not None and tgt.precision is not None:
            if fs == "decimal" and src.precision != tgt.precision:
                differences.append("precision")
            if (src.scale or 0) != (tgt.scale or 0):
                differences.append("scale")
    if src.nullable != tgt.nullable:
        differences.append("nullable")
    return match, differences


def _map_columns(src: CatalogTable, tgt: CatalogTable) -> list[ColumnMapping]:
    targets = {c.name.casefold(): c for c in tgt.columns}
    out: list[ColumnMapping] = []
    seen: set[str] = set()
    for col in src.columns:
        other = targets.get(col.name.casefold())
        if other is None:
            out.append(
                ColumnMapping(
                    name=col.name,
                    status="only_in_source",
                    source_column=col.name,
                    source_type=type_text(col),
                    source_nullable=col.nullable,
                )
            )
            continue
        seen.add(other.name.casefold())
        match, differences = _compare_columns(col, other)
        out.append(
            ColumnMapping(
                name=col.name,
                status="found_in_both",
                source_column=col.name,
                target_column=other.name,
                source_type=type_text(col),
                target_type=type_text(other),
                source_nullable=col.nullable,
                target_nullable=other.nullable,
                type_match=match,
                differences=differences,
            )
        )
    for col in tgt.columns:
        if col.name.casefold() not in seen:
            out.append(
                ColumnMapping(
                    name=col.name,
                    status="only_in_target",
                    target_column=col.name,
                    target_type=type_text(col),
                    target_nullable=col.nullable,
                )
            )
    return out


def _mapped_schema(schema: str | None, schema_mappings: Mapping[str, str]) -> str:
    return mapped_schema(schema or "", schema_mappings).casefold()


def map_catalogs(
    source: Catalog,
    target: Catalog,
    schema_mappings: Mapping[str, str] | None = None,
    *,
    project_id: str | None = None,
) -> CatalogMapping:
    """Pair the tables and columns of `source` and `target` (see the module docstring)."""
    schema_mappings = dict(schema_mappings or {})
    target_by_key = {
        ((t.schema_name or "").casefold(), t.name.casefold()): t for t in target.tables
    }
    pairs: list[tuple[CatalogTable | None, CatalogTable | None, str | None]] = []
    unmatched_source: list[CatalogTable] = []
    used: set[int] = set()
    for tbl in source.tables:
        other = target_by_key.get(
            (_mapped_schema(tbl.schema_name, schema_mappings), tbl.name.casefold())
        )
        if other is not None and id(other) not in used:
            used.add(id(other))
            pairs.append((tbl, other, "schema_mapping"))
        else:
            unmatched_source.append(tbl)
    left_target = [t for t in target.tables if id(t) not in used]
    src_names: dict[str, list[CatalogTable]] = defaultdict(list)
    tgt_names: dict[str, list[CatalogTable]] = defaultdict(list)
    for tbl in unmatched_source:
        src_names[tbl.name.casefold()].append(tbl)
    for tbl in left_target:
        tgt_names[tbl.name.casefold()].append(tbl)
    for tbl in unmatched_source:
        key = tbl.name.casefold()
        if len(src_names[key]) == 1 and len(tgt_names.get(key, [])) == 1:
            other = tgt_names[key][0]
            used.add(id(other))
            pairs.append((tbl, other, "name"))
        else:
            pairs.append((tbl, None, None))
    pairs += [(None, t, None) for t in target.tables if id(t) not in used]

    tables: list[TableMapping] = []
    for src, tgt, how in pairs:
        status: MatchStatus = (
            "found_in_both" if src and tgt else ("only_in_source" if src else "only_in_target")
        )
        tables.append(
            TableMapping(
                status=status,
                matched_by=how,  # type: ignore[arg-type]
                source_schema=src.schema_name if src else None,
                source_table=src.name if src else None,
                target_schema=tgt.schema_name if tgt else None,
                target_table=tgt.name if tgt else None,
                source_type=src.type if src else None,
                target_type=tgt.type if tgt else None,
                source_row_count=src.row_count if src else None,
                target_row_count=tgt.row_count if tgt else None,
                columns=_map_columns(src, tgt) if src and tgt else [],
            )
        )
    tables.sort(
        key=lambda m: (
            (m.source_schema or m.target_schema or "").casefold(),
            (m.source_table or m.target_table or "").casefold(),
        )
    )
    both = [m for m in tables if m.status == "found_in_both"]
    summary = {
        "tables_in_both": len(both),
        "tables_only_in_source": sum(m.status == "only_in_source" for m in tables),
        "tables_only_in_target": sum(m.status == "only_in_target" for m in tables),
        "tables_with_differences": sum(m.differs for m in both),
        "columns_only_in_source": sum(
            c.status == "only_in_source" for m in both for c in m.columns
        ),
        "columns_only_in_target": sum(
            c.status == "only_in_target" for m in both for c in m.columns
        ),
        "columns_with_type_differences": sum(
            "type" in c.differences for m in both for c in m.columns
        ),
        "columns_with_nullability_differences": sum(
            "nullable" in c.differences for m in both for c in m.columns
        ),
    }
    return CatalogMapping(
        project_id=project_id,
        source_connection=source.connection,
        target_connection=target.connection,
        schema_mappings=schema_mappings,
        summary=summary,
        tables=tables,
    )
