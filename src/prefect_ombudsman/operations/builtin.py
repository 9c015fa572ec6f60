"""Built-in operations for custom batches, tests and benchmarks.

Each takes the `OperationContext` first and the item's arguments as keywords.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from prefect_ombudsman.errors import ConfigurationError, OperationFailed, TransientError
from prefect_ombudsman.operations.context import OperationContext


def noop(ctx: OperationContext) -> dict[str, Any]:
    """Do nothing (orchestration-overhead benchmark)."""
    return {"operation_id": ctx.operation_id}


def sleep(ctx: OperationContext, seconds: float = 1.0) -> dict[str, Any]:
    """Wait `seconds`, stopping early on cancel; reports its own start and end."""
    if not 0 <= float(seconds) <= 86_400:
        raise ConfigurationError(f"sleep: 'seconds' must be between 0 and 86400, got {seconds!r}")
    started = time.time()
    deadline = time.monotonic() + float(seconds)
    while (left := deadline - time.monotonic()) > 0:
        ctx.wait(min(left, 0.05))
    return {"started": started, "ended": time.time(), "seconds": float(seconds)}


def fail(
    ctx: OperationContext, message: str = "failed on request", transient: bool = False
) -> None:
    """Fail with `message`; `transient=true` makes it a retryable error."""
    if transient:
        raise TransientError(message)
    raise OperationFailed(message, result={"message": message})


def flaky(
    ctx: OperationContext, marker: str, failures: int = 1, seconds: float = 0.0
) -> dict[str, Any]:
    """Fail `failures` times (transiently) across attempts and runs, counted in file `marker`, then succeed."""
    path = Path(marker)
    if not path.is_absolute():
        raise ConfigurationError("flaky: 'marker' must be an absolute path")
    count = int(path.read_text() or 0) if path.exists() else 0
    path.write_text(str(count + 1))
    if count < int(failures):
        raise TransientError(
            f"flaky: planned transient failure {count + 1} of {failures} (connection refused)"
        )
    if seconds:
        ctx.wait(float(seconds))
    return {"calls": count + 1}


def sql_query(
    ctx: OperationContext, connection: str | dict[str, Any], query: str, max_rows: int = 100
) -> dict[str, Any]:
    """Run one read query on a connection; returns its columns and up to `max_rows` rows.

    The query runs as given: it is the operator's own SQL against their own database.
    """
    if not isinstance(query, str) or not query.strip():
        raise ConfigurationError("sql_query: 'query' must be a non-empty SQL string")
    engine = ctx.engine(connection)
    ctx.check_cancelled()
    started = time.perf_counter()
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        interrupt = getattr(raw, "interrupt", None) or getattr(raw, "cancel", None)
        remove = ctx.on_cancel(interrupt) if callable(interrupt) else (lambda: None)
        try:
            result = conn.execute(text(query))
            columns = list(result.keys()) if result.returns_rows else []
            rows = [list(r) for r in result.fetchmany(max_rows)] if result.returns_rows else []
            conn.rollback()
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
