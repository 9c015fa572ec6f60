"""A team's topology on one machine: a Prefect server on PostgreSQL, process workers with their own
directories and homes (standing in for hosts), `ombudsman setup` objects.

- a worker and its flow-run process SIGKILLed: the heartbeat automation crashes the run, a retry
  on another worker runs only the unfinished operations, no task run stays Running;
- 20 bulk jobs x 50 operations submitted at once to 2 workers: none lost, none run twice;
- a per-database global concurrency limit bounds operations on one database across 2 workers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from support import PrefectServer, wait_until

# The multi-server team topology (a PostgreSQL-backed Prefect server, several workers, a
# SIGKILL and the heartbeat automation's 45-90 s wait): `make test-scale`, outside `make test`'s
# 30-minute CI budget; `make test` keeps the single-worker deployment paths (test_worker.py).
pytestmark = [pytest.mark.slow, pytest.mark.scale, pytest.mark.timeout(1200)]

OMBUDSMAN = [sys.executable, "-m", "prefect_ombudsman.cli"]
DEPLOYMENT = "custom-batch/custom-batch"


@pytest.fixture(scope="module")
def team(postgres_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    root = tmp_path_factory.mktemp("team")
    server = PrefectServer(
        postgres_port,
        root,
        OMBUDSMAN_PROJECTS_DIR=str(root / "projects"),
        # the team's shared result storage (checkpoints, reports): every host sees the same files
        PREFECT_LOCAL_STORAGE_PATH=str(root / "shared-storage"),
        OMBUDSMAN_RETRY_BASE_SECONDS="0.05",
        # lighter on a shared CI machine: fewer progress-artifact writes, run logs on stdout only
        OMBUDSMAN_PROGRESS_INTERVAL_SECONDS="5",
        PREFECT_LOGGING_TO_API_ENABLED="false",
    )
    try:
        server.start()
        server.deploy()
        yield server
    finally:
        server.stop()


class _Client:
    """A sync Prefect client on the team's server."""

    def __init__(self, server: PrefectServer) -> None:
        self.url = server.url

    def __enter__(self) -> Any:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        self._settings = temporary_settings(updates={PREFECT_API_URL: self.url})
        self._settings.__enter__()
        self._client = get_client(sync_client=True)
        return self._client.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._client.__exit__(*exc)
        self._settings.__exit__(*exc)


def submit(server: PrefectServer, parameters: dict[str, Any]) -> str:
    with _Client(server) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        return str(client.create_flow_run_from_deployment(deployment.id, parameters=parameters).id)


def states(server: PrefectServer, run_ids: list[str]) -> dict[str, Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with _Client(server) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)), limit=200
        )
    return {str(run.id): run.state for run in runs}


def wait_final(server: PrefectServer, run_ids: list[str], timeout: float = 600) -> dict[str, Any]:
    def done() -> bool:
        found = states(server, run_ids)
        return len(found) == len(run_ids) and all(s and s.is_final() for s in found.values())

    logs = "\n".join(server.log(f"worker-{n}") for n in server.workers)
    assert wait_until(done, timeout=timeout, interval=1), logs
    return states(server, run_ids)


def wait_online(server: PrefectServer, *names: str) -> None:
    """Until the work pool lists these workers online (they have started polling)."""

    def online() -> bool:
        with _Client(server) as client:
            workers = client.read_workers_for_work_pool(server.POOL)
        return set(names) <= {w.name for w in workers if str(w.status).endswith("ONLINE")}

    logs = "\n".join(server.log(f"worker-{n}") for n in names)
    assert wait_until(online, timeout=300, interval=1), logs


def task_runs(server: PrefectServer, run_id: str) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with _Client(server) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), limit=200
        )


def report(server: PrefectServer, run_id: str) -> dict[str, Any]:
    path = server.root / "projects" / ".ombudsman" / "jobs" / f"batch_{run_id}.json"
    assert wait_until(path.exists, timeout=60)
    return json.loads(path.read_text())


def ombudsman(server: PrefectServer, *args: str) -> str:
    result = subprocess.run(
        [*OMBUDSMAN, *args], env=server.env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def submitted_by(server: PrefectServer, name: str) -> set[str]:
    """Flow runs a worker's log says it submitted."""
    text = (server.logs / f"worker-{name}.log").read_text(errors="replace")
    return {line.rsplit("'", 2)[-2] for line in text.splitlines() if "submitting flow run" in line}


def test_bulk_jobs_on_two_workers_lose_and_repeat_no_operation(team):
    team.start_worker("bulk-a", limit=5)
    team.start_worker("bulk-b", limit=5)
    try:
        wait_online(team, "bulk-a", "bulk-b")
        run_ids = [
            submit(
                team,
                {
                    "job_name": f"bulk {j}",
                    "items": [{"operation": "noop"}] * 50,
                    "parallel_execution": True,
                    "max_parallel": 10,
                },
            )
            for j in range(20)
        ]
        final = wait_final(team, run_ids, timeout=900)
    finally:
        team.stop_worker("bulk-a")
        team.stop_worker("bulk-b")
    assert all(state.is_completed() for state in final.values()), final
    for run_id in run_ids:
        summary = report(team, run_id)
        ids = [op["operation_id"] for op in summary["operations"]]
        assert summary["completed"] == 50 and len(set(ids)) == 50, summary["status"]
        # the server records task runs from events: wait for all 50, then none may be extra
        assert wait_until(
            lambda rid=run_id: (
                sum(bool(tr.state and tr.state.is_completed()) for tr in task_runs(team, rid)) >= 50
            ),
            timeout=300,
            interval=1,
        )
        names = Counter(tr.name for tr in task_runs(team, run_id))
        assert set(names) == set(ids) and set(names.values()) == {1}, names.most_common(3)
    # both workers took part
    assert submitted_by(team, "bulk-a") and submitted_by(team, "bulk-b")


def _intervals(summary: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for op in summary["operations"]:
        if "columns" not in (op["result"] or {}):
            continue  # the gate
        columns, rows = op["result"]["columns"], op["result"]["rows"]
        row = dict(zip(columns, rows[0], strict=True))
        found.append((row["t0"], row["t1"]))
    return found


def test_a_database_limit_from_setup_bounds_operations_across_workers(team, postgres_url):
    from datetime import datetime

    out = ombudsman(team, "setup", "--database-limit", f"{postgres_url}=1")
    assert "ombudsman-db-postgresql-127-0-0-1-" in out and "1 slots" in out, out
    # the database itself says when each query ran: from its statement's start to its last row
    query = (
        "SELECT statement_timestamp()::text AS t0, count(*) AS n, "
        "max(clock_timestamp())::text AS t1 FROM generate_series(1, 2000000)"
    )
    item = {"operation": "sql_query", "arguments": {"connection": postgres_url, "query": query}}
    gates = team.root / "projects" / "gates"
    gates.mkdir(parents=True, exist_ok=True)
    team.start_worker("db-a", limit=1)
    team.start_worker("db-b", limit=1)
    try:
        # each job first holds at a gate: a worker (limit 1) busy with one job leaves the other
        # job to the other worker, and both jobs reach their queries together once released
        run_ids = [
            submit(
                team,
                {
                    "job_name": f"db {j}",
                    "items": [
                        {
                            "operation": "gate",
                            "arguments": {"marker": f"gates/job{j}", "release_file": "gates/open"},
                        },
                        *[item] * 3,
                    ],
                    "parallel_execution": False,
                },
            )
            for j in range(2)
        ]
        assert wait_until(
            lambda: all((gates / f"job{j}").exists() for j in range(2)), timeout=300, interval=0.5
        ), "\n".join(team.log(f"worker-{n}") for n in ("db-a", "db-b"))
        (gates / "open").write_text("go")
        final = wait_final(team, run_ids)
    finally:
        team.stop_worker("db-a")
        team.stop_worker("db-b")
    assert all(state.is_completed() for state in final.values()), final
    # both jobs were held at their gates at once, in two flow-run processes (each worker takes
    # one run at a time): the queries below came from two processes running together
    pids = {(gates / f"job{j}.pid").read_text() for j in range(2)}
    assert len(pids) == 2, pids
    intervals = sorted(
        (datetime.fromisoformat(t0), datetime.fromisoformat(t1))
        for run_id in run_ids
        for t0, t1 in _intervals(report(team, run_id))
    )
    assert len(intervals) == 6
    overlapping = [(a, b) for a, b in zip(intervals, intervals[1:], strict=False) if b[0] < a[1]]
    assert not overlapping, overlapping
    with _Client(team) as client:
        for limit in client.read_global_concurrency_limits(limit=100):
            if limit.name.startswith("ombudsman-db-"):
                client.delete_global_concurrency_limit_by_name(limit.name)


def test_killed_worker_run_is_crashed_by_heartbeats_and_retried_on_another_worker(team):
    from prefect.client.schemas.objects import StateType

    out = ombudsman(team, "setup", "--crash-after", "45")
    assert "automation 'ombudsman: crashed when heartbeats stop'" in out, out
    markers = team.root / "projects" / "markers"
    markers.mkdir(parents=True, exist_ok=True)
    items = [
        {
            "operation": "flaky",
            "arguments": {"marker": f"markers/op{i}", "failures": 0, "seconds": 1},
        }
        for i in range(40)
    ]
    team.start_worker("zone-a")
    run_id = submit(team, {"items": items, "parallel_execution": True, "max_parallel": 2})
    assert wait_until(lambda: len(list(markers.iterdir())) >= 6, timeout=300, interval=0.2), (
        team.log("worker-zone-a")
    )
    team.kill_worker("zone-a")  # the worker and its flow-run process: a host gone
    team.start_worker("zone-b")
    try:
        assert states(team, [run_id])[run_id].is_running()
        assert wait_until(
            lambda: states(team, [run_id])[run_id].type == StateType.CRASHED,
            timeout=300,
            interval=1,
        ), states(team, [run_id])
        crashed = states(team, [run_id])[run_id]
        assert "no heartbeat" in (crashed.message or ""), crashed
        team.prefect("flow-run", "retry", run_id)
        final = wait_final(team, [run_id])[run_id]
    finally:
        team.stop_worker("zone-b")
        with _Client(team) as client:
            for automation in client.read_automations_by_name(
                "ombudsman: crashed when heartbeats stop"
            ):
                client.delete_automation(automation.id)
    assert final.is_completed(), final
    assert submitted_by(team, "zone-b") == {run_id}
    summary = report(team, run_id)
    assert summary["completed"] == 40
    runs = {int(p.name[2:]): int(p.read_text()) for p in markers.iterdir()}
    restored = [
        int(op["operation_id"].split("_")[1])
        for op in summary["operations"]
        if op["metadata"].get("cached")
    ]
    # the operations completed before the kill did not run again; only those in flight did
    assert restored and all(runs[i] == 1 for i in restored), (restored, runs)
    # again: the 2 in flight, plus at most one that completed inside the checkpoint's flush interval
    # just before the SIGKILL (docs/runner.md "Where job state lives": recorded once its segment
    # is written)
    assert len(runs) == 40 and sum(n == 2 for n in runs.values()) <= 3, runs
    assert all(n <= 2 for n in runs.values()), runs
    # the killed attempt's task runs were crashed by the retry; nothing is left Running
    assert wait_until(
        lambda: (
            sum(bool(tr.state and tr.state.is_completed()) for tr in task_runs(team, run_id))
            >= 40 - len(restored)
        ),
        timeout=300,
        interval=1,
    )
    left = [tr.name for tr in task_runs(team, run_id) if tr.state and not tr.state.is_final()]
    assert not left, left
