"""PostgreSQL stopped and restarted while a validation job runs: the job retries and completes.

The server is a throwaway one of this test (stopping the session's shared server would break
other tests). Synchronisation is on real signals: the query visible in `pg_stat_activity`, the
runner's retry warnings; the restarted server is a new postmaster, so the slow query is slow
only on the first one (it sleeps while `pg_postmaster_start_time()` is the first start time).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from support import PostgresServer, wait_until


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    pg = PostgresServer(prefix="ombudsman-transient-pg-")
    pg.start()
    try:
        yield pg
    finally:
        pg.remove()


class RetryWarnings(logging.Handler):
    """The runner's "transient error on attempt N" warnings (on our logger or Prefect's run logger)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "transient error on attempt" in text and text not in self.messages:
            self.messages.append(text)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _slow_query_running(url: str) -> bool:
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
            "AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
        ).fetchone()
    return bool(row and row[0])


def test_postgres_restart_mid_validation_is_retried_and_the_job_completes(
    server: PostgresServer, tmp_projects: Path, prefect_api: None, monkeypatch: pytest.MonkeyPatch
):
    from prefect_ombudsman.flows import bulk_pipeline_execution

    with psycopg.connect(_libpq(server.url), autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 500) g")
        first_start = conn.execute("SELECT pg_postmaster_start_time()::text").fetchone()[0]
    slow = (
        "SELECT count(*) FROM t, (SELECT pg_sleep(CASE WHEN pg_postmaster_start_time() = "
        f"'{first_start}'::timestamptz THEN 600 ELSE 0 END)) s"
    )
    folder = tmp_projects / "flaky"
    (folder / "pipelines").mkdir(parents=True)
    (folder / "project.yaml").write_text(
        yaml.safe_dump({"name": "flaky", "source": server.url, "target": server.url})
    )
    steps = [
        {"name": "record_counts", "config": {"table": "t"}},
        {
            "name": "custom_sql",
            "config": {"sql_query": slow, "snow_query": "SELECT 500", "compare_mode": "value"},
        },
    ]
    (folder / "pipelines" / "restart.yaml").write_text(yaml.safe_dump({"steps": steps}))
    # backoff long enough that a retry happens while the server is down (1, 2, 4 s, capped)
    monkeypatch.setenv("OMBUDSMAN_RETRY_BASE_SECONDS", "1")
    monkeypatch.setenv("OMBUDSMAN_RETRY_MAX_SECONDS", "4")
    warnings = RetryWarnings()
    loggers = [logging.getLogger("prefect_ombudsman"), logging.getLogger("prefect")]
    for logger in loggers:
        logger.addHandler(warnings)
    problems: list[str] = []

    def outage() -> None:
        if not wait_until(lambda: _slow_query_running(server.url), timeout=120, interval=0.2):
            problems.append("the validation query never started")
            return
        server.stop("fast")  # terminates the running query: 57P01 admin shutdown
        # the first failure and one more attempt against the stopped server
        if not wait_until(lambda: len(warnings.messages) >= 2, timeout=120, interval=0.1):
            problems.append(f"no retry while the server was down: {warnings.messages}")
        server.start()

    controller = threading.Thread(target=outage, daemon=True)
    controller.start()
    try:
        state = bulk_pipeline_execution(
            pipelines=[{"pipeline_id": "restart"}],
            project_id="flaky",
            max_retries=10,
            return_state=True,
        )
        controller.join(timeout=180)
    finally:
        for logger in loggers:
            logger.removeHandler(warnings)
    assert not problems, problems
    summary = state.result(raise_on_failure=False)
    [op] = summary["operations"]
    assert summary["status"] == "completed", op
    assert op["status"] == "completed" and op["result"]["status"] == "passed"
    assert op["metadata"]["attempts"] >= 3  # the lost query, the stopped server, the success
    # the warnings name the database (kind, host, port, database) and the driver's real cause
    first, second = warnings.messages[:2]
    where = f"127.0.0.1:{server.port}/postgres"
    assert where in first and "postgresql" in first
    assert "AdminShutdown: terminating connection due to administrator command" in first
    assert where in second and "Connection refused" in second
    assert "Can't reconnect" not in " ".join(warnings.messages)
    assert len(list((folder / "results").glob("run_*.json"))) == 1  # only the run that completed


def test_retries_used_up_name_the_database_and_the_real_cause(
    server: PostgresServer, tmp_projects: Path, prefect_api: None
):
    from prefect_ombudsman.flows import bulk_pipeline_execution

    folder = tmp_projects / "down"
    (folder / "pipelines").mkdir(parents=True)
    (folder / "project.yaml").write_text(
        yaml.safe_dump({"name": "down", "source": server.url, "target": server.url})
    )
    step = {"name": "custom_sql", "config": {"sql_query": "SELECT 1", "compare_mode": "value"}}
    (folder / "pipelines" / "p.yaml").write_text(yaml.safe_dump({"steps": [step]}))
    server.stop("fast")
    state = bulk_pipeline_execution(
        pipelines=[{"pipeline_id": "p"}], project_id="down", max_retries=2, return_state=True
    )
    summary = state.result(raise_on_failure=False)
    [op] = summary["operations"]
    assert summary["status"] == "failed" and op["status"] == "failed"
    assert op["metadata"]["attempts"] == 3
    assert (
        f"source database postgresql+psycopg://postgres@127.0.0.1:{server.port}/postgres"
        in (op["error"])
    )
    assert "Connection refused" in op["error"] and op["error"].endswith("(after 3 attempts)")
    assert "sqlalche.me" not in op["error"]
