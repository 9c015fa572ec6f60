"""The metadata catalog of SPEC §9: one database's tables, columns, keys and row counts.

These models are the contract between extraction (this package), the catalog files in a
project's `metadata/` folder and the `schema_*` validators. Field names are stable; fields
beyond SPEC §9 (`server`, `schemas`, `problems` ...) are additions, never renames.

    catalog = Catalog.load(project.metadata_dir / "source.json")
    table = catalog.table("dbo", "Customers")          # case-insensitive lookup
    [c.name for c in table.columns if c.primary_key]
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prefect_ombudsman.errors import ConfigurationError

TableType = Literal["TABLE", "VIEW"]
ProblemKind = Literal[
    "missing_table", "insufficient_privileges", "row_count_failed", "query_fallback"
]


class _Model(BaseModel):
    # `schema` is a field name of SPEC §9 and a (deprecated) BaseModel attribute: aliased.
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True, extra="ignore")


class CatalogColumn(_Model):
    """One column. `data_type` is the database's own base type name, upper-cased."""

    name: str
    ordinal: int = Field(ge=1, description="1-based position among the table's columns.")
    data_type: str | None = None
    max_length: int | None = Field(
        default=None, description="Characters; -1 means MAX (SQL Server)."
    )
    precision: int | None = Field(default=None, description="Exact numeric types only.")
    scale: int | None = None
    nullable: bool = True
    default: str | None = None
    primary_key: bool = False


class CatalogForeignKey(_Model):
    name: str | None = None
    columns: list[str]
    referred_schema: str | None = None
    referred_table: str
    referred_columns: list[str]


class CatalogTable(_Model):
    schema_name: str | None = Field(default=None, alias="schema")
    name: str
    type: TableType = "TABLE"
    row_count: int | None = None
    row_count_exact: bool = False
    columns: list[CatalogColumn] = Field(default_factory=list)
    primary_key: list[str] = Field(default_factory=list)
    foreign_keys: list[CatalogForeignKey] = Field(default_factory=list)

    @property
    def qualified_name(self) -> str:
        return f"{self.schema_name}.{self.name}" if self.schema_name else self.name

    def column(self, name: str) -> CatalogColumn | None:
        """The column named `name`: exact match first, then case-insensitive."""
        for col in self.columns:
            if col.name == name:
                return col
        folded = name.casefold()
        return next((c for c in self.columns if c.name.casefold() == folded), None)


class CatalogProblem(_Model):
    """Something the extraction could not do, reported instead of failing the whole source."""

    kind: ProblemKind
    schema_name: str | None = Field(default=None, alias="schema")
    table: str | None = None
    message: str


class Catalog(_Model):
    """The catalog of one source (SPEC §9)."""

    connection: str
    dialect: str
    database: str | None = None
    extracted_at: datetime
    server: str | None = Field(default=None, description="Server identity used for session limits.")
    scope: Literal["all", "schema", "tables"] = Field(
        default="all", description="All user schemas, one schema, or the tables of `table_names`."
    )
    schemas: list[str] = Field(default_factory=list, description="Schemas the extraction covered.")
    table_names: list[str] | None = Field(
        default=None, description="Table-level scope, when asked for."
    )
    exact_counts: bool = False
    duration_ms: int | None = None
    tables: list[CatalogTable] = Field(default_factory=list)
    problems: list[CatalogProblem] = Field(default_factory=list)

    def table(self, schema: str | None, name: str) -> CatalogTable | None:
        """Find a table: exact match first, then case-insensitive; `schema=None` matches any schema."""
        for tbl in self.tables:
            if tbl.name == name and (schema is None or tbl.schema_name == schema):
                return tbl
        folded = name.casefold()
        sfold = schema.casefold() if schema is not None else None
        for tbl in self.tables:
            if tbl.name.casefold() == folded and (
                sfold is None or (tbl.schema_name or "").casefold() == sfold
            ):
                return tbl
        return None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    @classmethod
    def load(cls, path: Path) -> Catalog:
        """Read a catalog file; errors name the file and the field."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
            raise ConfigurationError(f"{path}: cannot read the catalog ({exc})") from None
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise ConfigurationError(f"{path}: not a catalog ({problems})") from None
