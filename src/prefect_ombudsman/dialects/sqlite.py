"""SQLite (embedded; no schemas: tables live in `main`)."""

from __future__ import annotations

from prefect_ombudsman.dialects.base import Dialect


class SQLiteDialect(Dialect):
    name = "sqlite"
    has_schemas = False
    default_schema = "main"
