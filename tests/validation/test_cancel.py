"""A cancelled job interrupts the validation query that is running, on each database."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml

from prefect_ombudsman.dialects.connection import get_engine, spec_from_url
from prefect_ombudsman.errors import OperationCancelled
from prefect_ombudsman.operations.context import OperationContext
from prefect_ombudsman.tasks.validation import run_pipeline_operation

# each runs for minutes unless interrupted
SLOW = {
    "sqlite": "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 100000000000) SELECT count(*) FROM r",
    "duckdb": "SELECT sum(hash(i)) FROM range(100000000000) t(i)",
    "postgresql": "SELECT count(*) FROM pg_sleep(600)",
}


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
    _project(tmp_path, _url(kind, tmp_path, request), kind)
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

    worker = threading.Thread(
        target=run, daemon=True
    )  # a failing interrupt must not hang the suite
    worker.start()
    time.sleep(1.5)  # the slow query is running by now
    assert worker.is_alive()
    cancelled_at = time.perf_counter()
    ctx.cancel_event.set()
    ctx.fire_cancel_callbacks()
    worker.join(timeout=10)
    stopped_after = time.perf_counter() - cancelled_at
    assert not worker.is_alive(), f"{kind}: the query was not interrupted"
    assert stopped_after < 2.0, f"{kind}: stopped {stopped_after:.2f} s after the cancel"
    assert isinstance(outcome.get("error"), OperationCancelled), outcome
    assert ctx._on_cancel == []  # the interrupts were unregistered
    assert not list((tmp_path / "slow" / "results").glob("run_*.json"))  # a cancel is not a result
