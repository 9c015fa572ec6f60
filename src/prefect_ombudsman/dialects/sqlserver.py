"""SQL Server through pyodbc (T-SQL)."""

from __future__ import annotations

from prefect_ombudsman.dialects.base import Dialect


class SQLServerDialect(Dialect):
    name = "sqlserver"
    has_schemas = True
    default_schema = "dbo"
