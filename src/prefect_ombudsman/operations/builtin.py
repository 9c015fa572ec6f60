"""The operations a production install registers: `sql_query`.

Each takes the `OperationContext` first and the item's arguments as keywords. The test
operations (`noop`, `sleep`, `fail`, `flaky`) live in the test-only plugin under
tests/plugins/ombudsman_testops, which `make setup` installs for development.
"""

from __future__ import annotations

import time
from typing import Any

from prefect_ombudsman.dialects import dialect_for
from prefect_ombudsman.dialects.statements import check_read_query
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.operations.context import OperationContext

MAX_ROWS_LIMIT = 10_000


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
    if isinstance(max_rows, bool) or not isinstance(max_rows, int):
        raise ConfigurationError(f"sql_query: 'max_rows' must be an integer, got {max_rows!r}")
    if not 1 <= max_rows <= MAX_ROWS_LIMIT:
        raise ConfigurationError(
            f"sql_query: 'max_rows' must be between 1 and {MAX_ROWS_LIMIT}, got {max_rows}"
        )
    engine = ctx.engine(connection)
    dialect = dialect_for(engine)
    check_read_query(query, dialect, field="sql_query: 'query'")
    ctx.check_cancelled()
    started = time.perf_counter()
    with engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        interrupt = getattr(raw, "interrupt", None) or getattr(raw, "cancel", None)
        remove = ctx.on_cancel(interrupt) if callable(interrupt) else (lambda: None)
        try:
            with dialect.read_only(raw):
                cursor = raw.cursor()
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
