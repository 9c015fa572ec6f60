"""Snowflake (real accounts; fakesnow in tests)."""

from __future__ import annotations

from prefect_ombudsman.dialects.base import Dialect


class SnowflakeDialect(Dialect):
    name = "snowflake"
    has_schemas = True
    default_schema = "PUBLIC"
