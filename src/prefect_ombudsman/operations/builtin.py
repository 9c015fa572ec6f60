"""The operations a production install registers: `sql_query`.

Each takes the `OperationContext` first and the item's arguments as keywords. The test
operations (`noop`, `sleep`, `fail`, `flaky`) live in the test-only plugin under
tests/plugins/ombudsman_testops, which `make setup` installs for development.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from prefect_ombudsman.dialects import dialect_for
from prefect_ombudsman.dialects.statements import check_read_query
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.operations.context import OperationContext

MAX_ROWS_LIMIT = 10_000


def check_sql_query(arguments: Mapping[str, Any], field: str) -> None:
    """Request-time check of `sql_query` (before any work): `max_rows` bounded, and the query a
    single read query when the connection's dialect shows in its URL (else checked at run time)."""
    _check_max_rows(arguments.get("max_rows", 100), f"{field}.max_rows")
    query = arguments.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ConfigurationError(f"{field}.query: must be a non-empty SQL string")
    connection = arguments.get("connection")
    url = connection.get("url") if isinstance(connection, Mapping) else connection
    if isinstance(url, str) and "://" in url:
        try:
            backend = make_url(url.strip()).get_backend_name()
        except (ArgumentError, ValueError):
            return  # the connection itself is refused when the operation resolves it
        check_read_query(query, dialect_for(backend), field=f"{field}.query")


def _check_max_rows(max_rows: Any, field: str) -> None:
    if isinstance(max_rows, bool) or not isinstance(max_rows, int):
        raise ConfigurationError(f"{field}: must be an integer, got {max_rows!r}")
    if not 1 <= max_rows <= MAX_ROWS_LIMIT:
        raise ConfigurationError(f"{field}: must be between 1 and {MAX_ROWS_LIMIT}, got {max_rows}")


def sql_query(
    ctx: OperationContext, connection: str | dict[str, Any], query: str, max_rows: int = 100
) -> dict[str, Any]:
    """Run one read query on a connection; returns its columns and up to `max_rows` rows.

    SQL from a request is untrusted: only a single SELECT / WITH query passes (classified with
    sqlglot in the connection's dialect), and it runs in the dialect's read-only transaction,
    rolled back at the end.
    """
    if not isinstance(query, str) or not query.strip():
        raise ConfigurationError("sql_query: 'query' must be a non-empty SQL string")
    _check_max_rows(max_rows, "sql_query: 'max_rows'")
    engine = ctx.engine(connection)
    dialect = dialect_for(engine)
    check_read_query(query, dialect, field="sql_query: 'query'")
    ctx.check_cancelled()
    started = time.perf_counter()
    with engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        with dialect.read_only(raw):
            cursor = raw.cursor()
            remove = ctx.on_cancel(lambda: dialect.interrupt(raw, cursor))
            try:
                cursor.execute(query)
                columns = [d[0] for d in cursor.description or []]
                rows = [list(r) for r in cursor.fetchmany(max_rows)] if columns else []
            finally:
                remove()
    ctx.check_cancelled()
    return {
        "dialect": engine.dialect.name,
        "columns": columns,
        "rows": [
            [v if isinstance(v, (int, float, str, bool, type(None))) else str(v) for v in r]
            for r in rows
        ],
        "row_count": len(rows),
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
    }


sql_query.check_arguments = check_sql_query  # type: ignore[attr-defined]
