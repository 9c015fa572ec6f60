"""Orchestration overhead of the batch runner (issues 2 and 14).

1,000 no-op operations through `custom_batch` (max_parallel 8) against a local `prefect server`,
versus the same 1,000 calls in a plain ThreadPoolExecutor(8), in one run. Prints wall time,
overhead per operation, client CPU per operation, the seconds from the last operation finishing
until the job reads `completed` with all operations counted through the jobs service, and until
the Prefect API holds one task run per operation, each named by its operation id and in its
final state (`Completed`).

    .venv/bin/python benchmarks/runner_overhead.py [--operations 1000] [--max-parallel 8]
        [--task-runs recorded|engine|both]

`--task-runs` picks how operations run (`OMBUDSMAN_TASK_RUNS`): `recorded` (the default: the
runner's threads, task runs recorded from batched state events), `engine` (each operation
through Prefect's task engine), `both` (one after the other on the same server).
Goals: <= 1 ms orchestration overhead per operation; job complete and fully counted <= 5 s after
the last operation finished.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(
        os.environ,
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("prefect server did not start within 120 s")


def task_runs_final(job_id: str, n: int) -> tuple[int, int]:
    """(task runs of the flow run named custom_<i>_noop, those of them Completed), counted by
    the API (`POST /task_runs/count`: no paging while the server still ingests)."""
    from prefect.client.orchestration import get_client

    names = {"name": {"any_": [f"custom_{i}_noop" for i in range(n)]}}
    with get_client(sync_client=True) as client:

        def count(**extra: Any) -> int:
            body = {"task_runs": {"flow_run_id": {"any_": [job_id]}, **names, **extra}}
            return int(client.request("POST", "/task_runs/count", json=body).json())

        return count(), count(state={"type": {"any_": ["COMPLETED"]}})


def measure(mode: str, n: int, k: int, plain_wall: float, custom_batch: Any, service: Any) -> None:
    import prefect.settings as ps
    from prefect.settings import temporary_settings

    # warm-up flow (first flow run registers the flow, imports, opens the client)
    with temporary_settings(updates={ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        custom_batch(items=[{"operation": "noop"}], return_state=True)

        items = [{"operation": "noop"} for _ in range(n)]
        t, cpu = time.perf_counter(), time.process_time()
        state = custom_batch(
            items=items,
            parallel_execution=True,
            max_parallel=k,
            job_name="runner benchmark",
            return_state=True,
        )
        flow_wall = time.perf_counter() - t
        flow_cpu = time.process_time() - cpu
    summary = state.result(raise_on_failure=False)
    returned_at = datetime.now().astimezone()
    last_op = max(datetime.fromisoformat(op["completed_at"]) for op in summary["operations"])
    job_id = summary["job_id"]
    read_at = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = service.get_job(job_id, with_operations=False)
        if (
            job.status.value == "completed"
            and job.progress
            and job.progress.completed_operations == n
        ):
            read_at = datetime.now().astimezone()
            break
        time.sleep(0.05)
    # one task run per operation in the Prefect API, named by its id and Completed
    ops_visible_after = None
    t = time.monotonic()
    while time.monotonic() - t < 120:
        if task_runs_final(job_id, n) == (n, n):
            ops_visible_after = (datetime.now().astimezone() - last_op).total_seconds()
            break
        time.sleep(0.5)

    overhead_ms = (flow_wall - plain_wall) / n * 1000
    counted_s = (read_at - last_op).total_seconds() if read_at else float("nan")
    print()
    print(
        f"runner overhead, {n} no-op operations, max_parallel {k}, local prefect server, "
        f"task runs: {mode}"
    )
    print(f"{'':38}{'plain ThreadPoolExecutor':>26}{'custom_batch':>16}")
    print(f"{'wall time (s)':38}{plain_wall:>26.3f}{flow_wall:>16.3f}")
    print(f"{'per operation (ms)':38}{plain_wall / n * 1000:>26.3f}{flow_wall / n * 1000:>16.3f}")
    print(f"orchestration overhead per operation: {overhead_ms:.2f} ms wall (goal <= 1 ms)")
    print(
        f"client-process CPU per operation: {flow_cpu / n * 1000:.2f} ms (load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    print(
        f"job status {summary['status']}: {summary['completed']} completed of {summary['total_operations']}"
    )
    print(
        f"flow returned {(returned_at - last_op).total_seconds():.2f} s after the last operation finished"
    )
    print(
        f"job read complete with all {n} counted {counted_s:.2f} s after the last operation (goal <= 5 s)"
    )
    if ops_visible_after is not None:
        print(
            f"all {n} task runs in the API, named and Completed, {ops_visible_after:.1f} s after the last operation"
        )
    else:
        print(f"task runs in the API after 120 s (named, Completed): {task_runs_final(job_id, n)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--operations", type=int, default=1000)
    parser.add_argument("--max-parallel", type=int, default=8)
    parser.add_argument("--task-runs", choices=("recorded", "engine", "both"), default="recorded")
    args = parser.parse_args()
    n, k = args.operations, args.max_parallel

    workdir = Path(tempfile.mkdtemp(prefix="ombudsman-bench-"))
    home = workdir / "prefect-home"
    print(f"starting prefect server (PREFECT_HOME={home}) ...", flush=True)
    t0 = time.monotonic()
    proc, url = start_server(home)
    print(f"server healthy after {time.monotonic() - t0:.1f} s at {url}", flush=True)
    os.environ.update(
        PREFECT_API_URL=url,
        PREFECT_HOME=str(home),
        OMBUDSMAN_PROJECTS_DIR=str(workdir / "projects"),
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    try:
        from ombudsman_testops import noop  # the test-only plugin (make setup)

        from prefect_ombudsman.flows import custom_batch
        from prefect_ombudsman.jobs import service
        from prefect_ombudsman.operations.context import OperationContext

        # baseline: the same calls in a plain thread pool
        ctxs = [
            OperationContext(
                job_id="plain",
                operation_id=f"custom_{i}_noop",
                project_id=None,
                projects_dir=workdir,
                cancel_event=threading.Event(),
            )
            for i in range(n)
        ]
        t = time.perf_counter()
        with ThreadPoolExecutor(max_workers=k) as pool:
            list(pool.map(noop, ctxs))
        plain_wall = time.perf_counter() - t

        modes = ["recorded", "engine"] if args.task_runs == "both" else [args.task_runs]
        for mode in modes:
            os.environ["OMBUDSMAN_TASK_RUNS"] = mode
            measure(mode, n, k, plain_wall, custom_batch, service)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
