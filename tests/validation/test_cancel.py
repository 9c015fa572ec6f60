"""A cancelled job interrupts the validation query that is running, on each database.

The cancel comes only once the query is really executing: on PostgreSQL it is visible in
`pg_stat_activity`; on SQLite and DuckDB it calls a function of the test (`query_started`,
registered on each new connection) for its rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from sqlalchemy import event

from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
from prefect_ombudsman.errors import OperationCancelled
from prefect_ombudsman.executors.validation import run_pipeline_operation
from prefect_ombudsman.operations.context import OperationContext
from support import wait_until

# each runs for minutes unless interrupted
SLOW = {
    "sqlite": "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 100000000000) SELECT count(*) FROM r WHERE query_started(i)",
    "duckdb": "SELECT sum(hash(i)) FROM range(100000000000) t(i) WHERE query_started(i) = 1",
    "postgresql": "SELECT count(*) FROM pg_sleep(600)",
}


def _signal_when_running(kind: str, url: str) -> Callable[[], bool]:
    """A probe that is true once the slow query executes in the database."""
    if kind == "postgresql":

        def visible() -> bool:
            with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()"
                ).fetchone()
            return bool(row and row[0])

        return visible
    started = threading.Event()

    def query_started(_row: int) -> int:
        started.set()
        return 1

    def register(dbapi_connection: Any, _record: Any) -> None:
        if kind == "duckdb":
            dbapi_connection.create_function(
                "query_started", query_started, ["BIGINT"], "INTEGER", side_effects=True
            )
        else:
            dbapi_connection.create_function("query_started", 1, query_started)

    engine = get_engine(spec_from_url(url))
    event.listen(engine, "connect", register)
    engine.dispose()  # the pooled connections get the function when they are made again
    return started.is_set


def _project(root: Path, url: str, kind: str) -> None:
    folder = root / "slow"
    (folder / "pipelines").mkdir(parents=True)
    (folder / "project.yaml").write_text(
        yaml.safe_dump({"name": "slow", "source": url, "target": url})
    )
    step = {
        "name": "custom_sql",
        "config": {"sql_query": SLOW[kind], "snow_query": "SELECT 1", "compare_mode": "value"},
    }
    (folder / "pipelines" / "slow_query.yaml").write_text(yaml.safe_dump({"steps": [step]}))


def _url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "postgresql":
        return request.getfixturevalue("postgres_url")
    url = f"{kind}:///{tmp_path / ('db.sqlite' if kind == 'sqlite' else 'db.duckdb')}"
    with get_engine(spec_from_url(url)).connect():
        pass  # creates the file
    return url


@pytest.mark.parametrize("kind", ["sqlite", "duckdb", "postgresql"])
def test_cancel_interrupts_the_running_validation_query(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
):
    url = _url(kind, tmp_path, request)
    _project(tmp_path, url, kind)
    ctx = OperationContext(
        job_id="job", operation_id="op", project_id="slow", projects_dir=tmp_path,
        cancel_event=threading.Event(),
    )  # fmt: skip
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = run_pipeline_operation(ctx, {"pipeline_id": "slow_query"})
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    running = _signal_when_running(kind, url)
    worker = threading.Thread(
        target=run, daemon=True
    )  # a failing interrupt must not hang the suite
    worker.start()
    assert wait_until(lambda: running() or not worker.is_alive(), timeout=120, interval=0.1)
    assert worker.is_alive(), f"{kind}: the pipeline ended before its query ran: {outcome}"
    ctx.cancel_event.set()
    ctx.fire_cancel_callbacks()
    worker.join(timeout=120)  # uninterrupted, the query runs for many minutes
    assert not worker.is_alive(), f"{kind}: the query was not interrupted"
    assert isinstance(outcome.get("error"), OperationCancelled), outcome
    assert ctx._on_cancel == []  # the interrupts were unregistered
    assert not list((tmp_path / "slow" / "results").glob("run_*.json"))  # a cancel is not a result
