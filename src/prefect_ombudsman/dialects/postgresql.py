"""PostgreSQL."""

from __future__ import annotations

from prefect_ombudsman.dialects.base import Dialect


class PostgreSQLDialect(Dialect):
    name = "postgresql"
    has_schemas = True
    default_schema = "public"
