"""Scale-out on a PostgreSQL-backed Prefect server: 1 worker vs 2, and recovery from a killed worker.

Starts its own PostgreSQL (tests/support.py `PostgresServer`, temporary folder, 127.0.0.1), a
`prefect server start` whose database is on it (asyncpg), `prefect deploy --all` of prefect.yaml
and process workers (`--limit` flow runs each). Then:

- **throughput**: `--jobs` (20) `custom-batch` jobs x `--operations` (50) test `noop` operations,
  submitted at once, with 1 worker and then with 2: jobs/minute and operations/second from the
  first submission to the last run final; every operation counted once in the reports and in
  Prefect's task runs;
- **task-run ingestion lag**: the server records task runs from the events the flow-run processes
  send; per task run, `updated` (the server's write of its Completed state) minus `end_time` (when
  the process finished it): p50 / p95 / max, and the seconds from the last flow run final to the
  last task run Completed in the API;
- **crash recovery**: `ombudsman setup` (crash detection automation, 90 s), one job of 40
  one-second operations on one worker, the worker and its flow-run process SIGKILLed after a few
  operations; seconds from the kill to Crashed (heartbeats every 30 s, prefect.yaml), and from
  `ombudsman jobs retry` to the run Completed on a second worker, with how many operations ran again.

Usage: `python benchmarks/scale.py [--jobs 20] [--operations 50] [--limit 5] [--skip-crash]`.
Needs the test operations plugin (`make setup`) and PostgreSQL's binaries (as the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support import PostgresServer, PrefectServer, wait_until  # noqa: E402

OMBUDSMAN = [sys.executable, "-m", "prefect_ombudsman.cli"]


class Client:
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


def submit(client: Any, deployment_id: Any, parameters: dict[str, Any]) -> str:
    return str(client.create_flow_run_from_deployment(deployment_id, parameters=parameters).id)


def flow_runs(client: Any, run_ids: list[str]) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return client.read_flow_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)), limit=len(run_ids)
    )


def task_runs(client: Any, run_ids: list[str]) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    found: list[Any] = []
    while True:
        page = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)),
            limit=200,
            offset=len(found),
        )
        found += page
        if len(page) < 200:
            return found


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def throughput(server: PrefectServer, workers: int, jobs: int, operations: int, limit: int) -> dict:
    names = [f"w{workers}-{i}" for i in range(workers)]
    for name in names:
        server.start_worker(name, limit=limit)
    try:
        with Client(server) as client:
            deployment = client.read_deployment_by_name("custom-batch/custom-batch")
            started = time.monotonic()
            run_ids = [
                submit(
                    client,
                    deployment.id,
                    {
                        "job_name": f"scale {workers}w {j}",
                        "items": [{"operation": "noop"}] * operations,
                        "parallel_execution": True,
                        "max_parallel": 10,
                    },
                )
                for j in range(jobs)
            ]
            assert wait_until(
                lambda: all(r.state.is_final() for r in flow_runs(client, run_ids)),
                timeout=3600,
                interval=0.5,
            )
            wall = time.monotonic() - started
            runs = flow_runs(client, run_ids)
            last_end = max(r.end_time for r in runs)
            expected = jobs * operations
            assert wait_until(
                lambda: (
                    sum(
                        bool(t.state and t.state.is_completed()) for t in task_runs(client, run_ids)
                    )
                    >= expected
                ),
                timeout=600,
                interval=0.5,
            )
            ingested = time.time() - last_end.timestamp()
            trs = task_runs(client, run_ids)
    finally:
        for name in names:
            server.stop_worker(name)
    completed = [r for r in runs if r.state.is_completed()]
    reports = [
        json.loads(
            (server.root / "projects" / ".ombudsman" / "jobs" / f"batch_{rid}.json").read_text()
        )
        for rid in run_ids
    ]
    per_run_names = {}
    for t in trs:
        per_run_names.setdefault(str(t.flow_run_id), []).append(t.name)
    lags = [(t.updated - t.end_time).total_seconds() for t in trs if t.end_time and t.updated]
    return {
        "workers": workers,
        "jobs_completed": f"{len(completed)}/{jobs}",
        "operations_in_reports": sum(r["completed"] for r in reports),
        "task_runs": len(trs),
        "duplicate_task_runs": sum(len(v) - len(set(v)) for v in per_run_names.values()),
        "wall_s": round(wall, 1),
        "jobs_per_minute": round(jobs / wall * 60, 1),
        "operations_per_second": round(expected / wall, 1),
        "ingestion_lag_p50_s": round(pct(lags, 50), 2),
        "ingestion_lag_p95_s": round(pct(lags, 95), 2),
        "ingestion_lag_max_s": round(max(lags), 2),
        "last_task_run_after_last_flow_run_s": round(ingested, 1),
    }


def crash_recovery(server: PrefectServer) -> dict:
    from prefect.client.schemas.objects import StateType

    env = server.env
    setup = subprocess.run(
        [*OMBUDSMAN, "setup"], env=env, capture_output=True, text=True, timeout=300
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    markers = server.root / "projects" / "markers"
    markers.mkdir(parents=True, exist_ok=True)
    items = [
        {
            "operation": "flaky",
            "arguments": {"marker": f"markers/op{i}", "seconds": 1, "failures": 0},
        }
        for i in range(40)
    ]
    server.start_worker("zone-a")
    with Client(server) as client:
        deployment = client.read_deployment_by_name("custom-batch/custom-batch")
        run_id = submit(
            client, deployment.id, {"items": items, "parallel_execution": True, "max_parallel": 2}
        )
        assert wait_until(lambda: len(list(markers.iterdir())) >= 6, timeout=600, interval=0.1)
        server.kill_worker("zone-a")
        killed = time.monotonic()
        server.start_worker("zone-b")
        try:
            assert wait_until(
                lambda: client.read_flow_run(run_id).state.type == StateType.CRASHED,
                timeout=600,
                interval=0.5,
            )
            crashed = time.monotonic()
            retry = subprocess.run(
                [*OMBUDSMAN, "jobs", "retry", run_id],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert retry.returncode == 0, retry.stdout + retry.stderr
            assert wait_until(
                lambda: client.read_flow_run(run_id).state.is_final(), timeout=900, interval=0.5
            )
            done = time.monotonic()
            final = client.read_flow_run(run_id).state
            left = [
                t.name for t in task_runs(client, [run_id]) if t.state and not t.state.is_final()
            ]
        finally:
            server.stop_worker("zone-b")
    calls = [int(p.read_text()) for p in markers.iterdir()]
    return {
        "final_state": final.name,
        "kill_to_crashed_s": round(crashed - killed, 1),
        "crashed_to_retry_completed_s": round(done - crashed, 1),
        "kill_to_retry_completed_s": round(done - killed, 1),
        "operations_run_twice": sum(c > 1 for c in calls),
        "task_runs_not_final_after_retry": len(left),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--operations", type=int, default=50)
    parser.add_argument("--limit", type=int, default=5, help="flow runs per worker at once")
    parser.add_argument("--skip-crash", action="store_true")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    postgres = PostgresServer()
    postgres.start()
    root = Path(tempfile.mkdtemp(prefix="ombudsman-scale-"))
    server = PrefectServer(
        postgres.port,
        root,
        OMBUDSMAN_PROJECTS_DIR=str(root / "projects"),
        OMBUDSMAN_ALLOWED_PATHS=str(root),
    )
    try:
        server.start()
        server.deploy()
        for workers in (1, 2):
            result = throughput(server, workers, args.jobs, args.operations, args.limit)
            print(json.dumps(result), flush=True)
        if not args.skip_crash:
            print(json.dumps({"crash_recovery": crash_recovery(server)}), flush=True)
    finally:
        server.stop()
        postgres.remove()
    print(f"load average at end: {os.getloadavg()}", flush=True)
    print(f"logs: {root / 'logs'}")


if __name__ == "__main__":
    main()
