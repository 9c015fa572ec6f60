"""One bulk job on a Dask cluster of 2 worker processes vs the same job on threads (issue 11).

1,000 `noop` operations (or `--seconds S` of `sleep` each) through `custom_batch`, max_parallel 8,
against a local `prefect server`: first on the flow's threads, then on a `distributed.LocalCluster`
of 2 worker processes chosen by OMBUDSMAN_DASK_ADDRESS (cluster start-up timed apart). Prints
operations/second of each and checks both jobs have the same per-operation outcome.

    .venv/bin/python benchmarks/dask_runner.py [--operations 1000] [--max-parallel 8]
        [--workers 2] [--seconds 0]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner_overhead import start_server  # noqa: E402  (a script beside this one)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--operations", type=int, default=1000)
    parser.add_argument("--max-parallel", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=0.0, help="sleep per operation")
    args = parser.parse_args()
    n, k = args.operations, args.max_parallel

    workdir = Path(tempfile.mkdtemp(prefix="ombudsman-bench-dask-"))
    home = workdir / "prefect-home"
    print(f"starting prefect server (PREFECT_HOME={home}) ...", flush=True)
    proc, url = start_server(home)
    os.environ.update(
        PREFECT_API_URL=url,
        PREFECT_HOME=str(home),
        OMBUDSMAN_PROJECTS_DIR=str(workdir / "projects"),
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    os.environ.pop("OMBUDSMAN_DASK_ADDRESS", None)
    cluster = None
    try:
        import prefect.settings as ps
        from distributed import LocalCluster
        from prefect.settings import temporary_settings

        from prefect_ombudsman.flows import custom_batch

        if args.seconds:
            items = [{"operation": "sleep", "arguments": {"seconds": args.seconds}}] * n
        else:
            items = [{"operation": "noop"}] * n

        def job(label: str) -> tuple[float, dict]:
            with temporary_settings(updates={ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
                custom_batch(items=items[:2], parallel_execution=True, return_state=True)  # warm
                t = time.perf_counter()
                state = custom_batch(
                    items=items,
                    parallel_execution=True,
                    max_parallel=k,
                    job_name=f"dask benchmark ({label})",
                    return_state=True,
                )
                wall = time.perf_counter() - t
            return wall, state.result(raise_on_failure=False)

        thread_wall, thread_summary = job("threads")

        t = time.perf_counter()
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=max(1, -(-k // args.workers)),
            processes=True,
            dashboard_address=None,
        )
        cluster_start = time.perf_counter() - t
        os.environ["OMBUDSMAN_DASK_ADDRESS"] = cluster.scheduler_address
        dask_wall, dask_summary = job("dask")

        def outcome(summary: dict) -> list[tuple[str, str]]:
            return [(op["operation_id"], op["status"]) for op in summary["operations"]]

        same = outcome(thread_summary) == outcome(dask_summary)
        kind = f"sleep {args.seconds} s" if args.seconds else "no-op"
        print()
        print(f"one job of {n} {kind} operations, max_parallel {k}, local prefect server")
        print(f"{'':28}{'wall (s)':>10}{'ops/s':>10}{'completed':>11}")
        for label, wall, summary in (
            ("threads (flow process)", thread_wall, thread_summary),
            (f"Dask, {args.workers} worker processes", dask_wall, dask_summary),
        ):
            print(f"{label:28}{wall:>10.2f}{n / wall:>10.1f}{summary['completed']:>11}")
        print(f"LocalCluster start-up (not in the Dask figure): {cluster_start:.1f} s")
        print(f"same per-operation outcome: {same}")
        print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        if cluster is not None:
            cluster.close()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
