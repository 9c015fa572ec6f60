"""DuckDB (embedded)."""

from __future__ import annotations

from prefect_ombudsman.dialects.base import Dialect


class DuckDBDialect(Dialect):
    name = "duckdb"
    has_schemas = True
    default_schema = "main"
