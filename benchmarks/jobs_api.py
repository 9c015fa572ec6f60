"""The Studio's /batch API under load: 1,000 finished jobs in Prefect, one 1,000-operation job.

Starts its own `prefect server` on 127.0.0.1 (temporary PREFECT_HOME) and `ombudsman api`'s app
under uvicorn on 127.0.0.1, then measures p50/p95 of

- `GET /batch/jobs?limit=100` (goal p95 <= 300 ms),
- `GET /batch/jobs/{id}` of the 1,000-operation job,
- `GET /batch/jobs/{id}/progress` (goal p95 <= 100 ms),
- `GET /batch/statistics` (goal <= 500 ms),
- WebSocket latency, state change -> `job_update` received, for 50 concurrent subscribers
  (goal p95 <= 1 s).

The 1,000 finished jobs are made cheaply, as the service reads them: flow runs of the
`custom-batch` flow created through the Prefect client with the jobs' tags and parameters,
moved Running -> Completed / Failed / PartialSuccess, each with the runner's progress artifact
and a one-operation report file. The 1,000-operation job is a real `custom_batch` run of the
built-in `noop` operation.

Each route is printed beside its floor: the bare Prefect client calls it needs (e.g.
`read_flow_runs(limit=100)` + `count_flow_runs` for the list, `read_flow_run` + `read_artifacts`
for progress), timed the same way on one warm client and interleaved with the route in rounds of
10, so a goal below the floor shows as unreachable on that machine.

Usage: `python benchmarks/jobs_api.py [--jobs 1000] [--subscribers 50] [--workdir DIR]`
(`--workdir` keeps the Prefect home and jobs and reuses them on the next run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runner_overhead import free_port, start_server


async def retried(call: Any, *args: Any, **kwargs: Any) -> Any:
    """A Prefect write, retried while the server's SQLite is busy (503 under load)."""
    for attempt in range(8):
        try:
            return await call(*args, **kwargs)
        except Exception:
            if attempt == 7:
                raise
            await asyncio.sleep(0.5 * 2**attempt)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def make_finished_jobs(n: int, root: Path) -> None:
    """n flow runs of custom-batch in final states with the artifacts and reports the service reads."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.states import Completed, Failed, Running

    from prefect_ombudsman.atomic import write_json_atomic

    folder = root / ".ombudsman" / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    gate = asyncio.Semaphore(2)
    stub = _flow_stub()
    async with get_client() as client:

        async def one(i: int) -> None:
            kind = "completed" if i % 10 < 8 else ("failed" if i % 10 == 8 else "partial_success")
            async with gate:
                run = await retried(
                    client.create_flow_run,
                    stub,
                    parameters={"job_name": f"bench job {i}", "project_id": "bench"},
                    tags=["ombudsman", "job-type:custom", "project:bench"],
                )
                await retried(client.set_flow_run_state, run.id, Running(), force=True)
                now = datetime.now(UTC)
                op = {
                    "operation_id": "custom_0_noop",
                    "operation_type": "custom",
                    "status": "failed" if kind == "failed" else "completed",
                    "started_at": (now - timedelta(seconds=1)).isoformat(),
                    "completed_at": now.isoformat(),
                    "duration_ms": 1000,
                    "result": {"ok": kind != "failed"},
                    "error": "failed on request" if kind == "failed" else None,
                    "metadata": {"operation": "noop"},
                }
                report = folder / f"batch_{run.id}.json"
                write_json_atomic(
                    report,
                    {
                        "job_id": str(run.id),
                        "job_type": "custom",
                        "name": f"bench job {i}",
                        "status": kind,
                        "total_operations": 1,
                        "completed": int(kind != "failed"),
                        "failed": int(kind == "failed"),
                        "skipped": 0,
                        "operations": [op],
                        "report_path": str(report),
                    },
                )
                done = int(kind != "failed")
                await retried(
                    client.create_artifact,
                    ArtifactCreate(
                        type="progress",
                        flow_run_id=run.id,
                        data=100.0,
                        description=json.dumps(
                            {
                                "job_status": kind,
                                "job_type": "custom",
                                "total_operations": 1,
                                "completed_operations": done,
                                "failed_operations": 1 - done,
                                "skipped_operations": 0,
                                "current_operation": None,
                                "percent_complete": 100.0,
                                "estimated_time_remaining_ms": 0,
                                "report_path": str(report),
                            }
                        ),
                    ),
                )
                final = (
                    Completed()
                    if kind == "completed"
                    else Failed(name="PartialSuccess" if kind == "partial_success" else "Failed")
                )
                await retried(client.set_flow_run_state, run.id, final, force=True)

        await asyncio.gather(*(one(i) for i in range(n)))


def _flow_stub() -> Any:
    """`create_flow_run` wants a flow object; it only reads its name (the flow already exists)."""
    from prefect import flow

    @flow(name="custom-batch")
    def custom_batch() -> None:  # pragma: no cover - never run
        return None

    return custom_batch


def serve_api(projects: Path, auth_file: Path) -> tuple[Any, str]:
    import uvicorn

    from prefect_ombudsman.jobs.api import create_app
    from prefect_ombudsman.jobs.auth import AuthSettings

    port = free_port()
    app = create_app(str(projects), auth=AuthSettings(auth_file=auth_file))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def timed(client: Any, url: str, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - t) * 1000)
        response.raise_for_status()
    return samples


def timed_call(call: Any, n: int) -> list[float]:
    """Milliseconds of `call()`, n times after one warm-up (the floors)."""
    call()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def floors(job_id: str) -> dict[str, tuple[str, Any]]:
    """The bare Prefect client calls each route needs, on one warm client (no model building,
    no files, no HTTP in front): what the route cannot go below on this machine and server."""
    from concurrent.futures import ThreadPoolExecutor
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
        FlowFilter,
        FlowFilterName,
    )
    from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort

    from prefect_ombudsman.jobs.service import FLOW_NAMES

    client = get_client(sync_client=True)
    client.__enter__()
    flows = FlowFilter(name=FlowFilterName(any_=list(FLOW_NAMES)))
    pool = ThreadPoolExecutor(8)

    def artifacts(ids: list[Any]) -> Any:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=ids),
                type=ArtifactFilterType(any_=["progress", "ombudsman-cancel", "ombudsman-retry"]),
            ),
            sort=ArtifactSort.UPDATED_DESC,
            limit=200,
        )

    def listing() -> None:
        client.read_flow_runs(
            flow_filter=flows, sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=100
        )
        client.count_flow_runs(flow_filter=flows)

    def one() -> None:
        run = client.read_flow_run(UUID(job_id))
        artifacts([run.id])

    def history(name: str) -> Any:
        body = {
            "history_start": "1970-01-01T00:00:00Z",
            "history_end": "2200-01-01T00:00:00Z",
            "history_interval_seconds": 231 * 365 * 86400,
            "flows": FlowFilter(name=FlowFilterName(any_=[name])).model_dump(mode="json"),
        }
        return client.request("POST", "/flow_runs/history", json=body).json()

    def stats() -> None:
        recent = pool.submit(
            client.read_flow_runs,
            flow_filter=flows,
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=10,
        )
        list(pool.map(history, FLOW_NAMES))
        recent.result()

    return {
        "list": ("read_flow_runs(limit=100) + count_flow_runs", listing),
        "job": ("read_flow_run + read_artifacts", one),
        "progress": ("read_flow_run + read_artifacts", one),
        "statistics": ("6 x POST /flow_runs/history + read_flow_runs(10), concurrent", stats),
    }


async def websocket_latency(base: str, token: str, subscribers: int, changes: int) -> list[float]:
    """Seconds from a job's state change to its `job_update` at each subscriber."""
    import websockets
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.states import Completed, Running

    ws_url = base.replace("http://", "ws://") + f"/batch/ws/wsbench?token={token}"
    changed_at: dict[tuple[str, str], float] = {}
    latencies: list[float] = []
    sockets = [await websockets.connect(ws_url) for _ in range(subscribers)]

    async def listen(ws: Any) -> None:
        async for text in ws:
            if text == "pong":
                continue
            data = json.loads(text)["data"]
            key = (data["job_id"], data["status"])
            if key in changed_at:
                latencies.append(time.perf_counter() - changed_at[key])

    listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
    stub = _flow_stub()
    async with get_client() as client:
        for i in range(changes):
            run = await client.create_flow_run(
                stub,
                parameters={"job_name": f"ws {i}", "project_id": "wsbench"},
                tags=["ombudsman", "job-type:custom", "project:wsbench"],
            )
            await asyncio.sleep(0.6)  # its creation message goes out first
            for state, word in ((Running(), "running"), (Completed(), "completed")):
                changed_at[(str(run.id), word)] = time.perf_counter()
                await client.set_flow_run_state(run.id, state, force=True)
                await asyncio.sleep(1.2)
    await asyncio.sleep(1.5)
    for task in listeners:
        task.cancel()
    for ws in sockets:
        await ws.close()
    async with get_client() as client:  # a reused --workdir keeps its 1,000 + 1 jobs only
        for run in await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["project:wsbench"])),
            limit=200,
        ):
            await client.delete_flow_run(run.id)
    return latencies


def make_jobs(args: Any, projects: Path) -> str:
    """The 1,000 finished jobs and the real 1,000-operation job; returns the big job's id."""
    from prefect_ombudsman.jobs import service
    from prefect_ombudsman.jobs.models import BatchCustomRequest, BatchJobType

    t = time.perf_counter()
    asyncio.run(make_finished_jobs(args.jobs, projects))
    print(f"{args.jobs} finished jobs created in {time.perf_counter() - t:.1f} s", flush=True)
    big = service.submit_job(
        BatchJobType.custom,
        BatchCustomRequest(
            job_name="big",
            items=[{"operation": "noop"}] * args.operations,
            parallel_execution=True,
            max_parallel=8,
            project_id="bench",
        ),
        projects_dir=str(projects),
        execution="local",
    )
    t = time.perf_counter()
    while service.get_job(big.job_id, with_operations=False).status.value != "completed":
        time.sleep(0.5)
        if time.perf_counter() - t > 600:
            raise SystemExit("the 1,000-operation job did not finish within 600 s")
    print(f"{args.operations}-operation job ran in {time.perf_counter() - t:.1f} s", flush=True)
    return big.job_id


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--operations", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument(
        "--workdir",
        help="keep the Prefect home and jobs here and reuse them on the next run "
        "(default: a temporary folder, removed at the end)",
    )
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ombudsman-jobs-api-"))
    home, projects = workdir / "prefect-home", workdir / "projects"
    projects.mkdir(parents=True, exist_ok=True)
    made = workdir / "bench.json"
    print(f"starting prefect server (PREFECT_HOME={home}) ...", flush=True)
    proc, url = start_server(home)
    os.environ.update(
        PREFECT_API_URL=url,
        PREFECT_HOME=str(home),
        OMBUDSMAN_PROJECTS_DIR=str(projects),
        PREFECT_LOGGING_LEVEL="WARNING",
        PREFECT_API_REQUEST_TIMEOUT="300",
    )
    server = None
    try:
        import httpx

        if made.exists():
            big_id = json.loads(made.read_text())["big"]
            print(f"reusing the jobs of {workdir}", flush=True)
        else:
            big_id = make_jobs(args, projects)
            if args.workdir:
                made.write_text(json.dumps({"big": big_id}))

        from prefect_ombudsman.jobs.accounts import create_token

        auth_file = workdir / "auth.json"
        auth_file.unlink(missing_ok=True)
        token = create_token(auth_file, "bench", read_only=True)
        server, base = serve_api(projects, auth_file)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, timeout=60, headers=headers) as http:
            for path in ("/batch/jobs?limit=100", f"/batch/jobs/{big_id}", "/batch/statistics"):
                http.get(path).raise_for_status()  # warm-up
            listing = http.get("/batch/jobs?limit=100").json()
            assert listing["total"] >= args.jobs + 1 and len(listing["jobs"]) == 100
            one = http.get(f"/batch/jobs/{big_id}").json()["job"]
            assert len(one["operations"]) == args.operations
            floor = floors(big_id)
            started_load = os.getloadavg()[0]
            # route and floor interleaved in rounds, so a load spike on the shared machine hits both
            plan = {
                "GET /batch/jobs?limit=100": ("/batch/jobs?limit=100", "list", 30, 300),
                f"GET /batch/jobs/{{id}} ({args.operations} ops)": (
                    f"/batch/jobs/{big_id}",
                    "job",
                    30,
                    None,
                ),
                "GET /batch/jobs/{id}/progress": (
                    f"/batch/jobs/{big_id}/progress",
                    "progress",
                    50,
                    100,
                ),
                "GET /batch/statistics": ("/batch/statistics", "statistics", 30, 500),
            }
            results = {}
            for name, (path, key, n, goal) in plan.items():
                ours: list[float] = []
                bare: list[float] = []
                for _ in range(n // 10):
                    ours += timed(http, path, 10)
                    bare += timed_call(floor[key][1], 10)
                results[name] = (ours, bare, floor[key][0], goal)
        latencies = asyncio.run(websocket_latency(base, token, args.subscribers, args.changes))
        expected = args.subscribers * args.changes * 2
        load = os.getloadavg()
        print()
        print(
            f"jobs API, {args.jobs} finished jobs + one {args.operations}-operation job, "
            f"local prefect server, load average {started_load:.1f} at the start, {load[0]:.1f} at the end (1 min) on {os.cpu_count()} cores"
        )
        print(
            f"{'request':44}{'p50 ms':>9}{'p95 ms':>9}{'floor p50':>11}{'floor p95':>11}"
            f"{'goal':>16}  floor = bare Prefect calls"
        )
        for name, (samples, bare, calls, goal) in results.items():
            goal_text = f"p95 <= {goal} ms" if goal else "-"
            print(
                f"{name:44}{statistics.median(samples):>9.1f}{pct(samples, 95):>9.1f}"
                f"{statistics.median(bare):>11.1f}{pct(bare, 95):>11.1f}{goal_text:>16}  {calls}"
            )
        if latencies:
            print(
                f"{'WebSocket state change -> job_update':44}{statistics.median(latencies) * 1000:>9.1f}"
                f"{pct(latencies, 95) * 1000:>9.1f}{'-':>11}{'-':>11}{'p95 <= 1000 ms':>16}"
            )
        print(
            f"WebSocket: {args.subscribers} subscribers, {args.changes * 2} state changes, "
            f"{len(latencies)} of {expected} messages received"
        )
    finally:
        if server is not None:
            server.should_exit = True
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
