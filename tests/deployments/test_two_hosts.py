"""Two workers standing in for two hosts: each its own working directory, PREFECT_HOME and projects
folder; they share only the Prefect API and a LocalFileSystem result-storage block."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from support import PREFECT, free_port, wait_until

# The multi-server team topology (a PostgreSQL-backed Prefect server, several workers, a
# SIGKILL and the heartbeat automation's 45-90 s wait): `make test-scale`, outside `make test`'s
# 30-minute CI budget; `make test` keeps the single-worker deployment paths (test_worker.py).
pytestmark = [pytest.mark.slow, pytest.mark.scale, pytest.mark.timeout(900)]

OMBUDSMAN = str(Path(sys.executable).parent / "ombudsman")
BLOCK = "local-file-system/ombudsman-shared"


def _stop(proc: subprocess.Popen[bytes], first: int = signal.SIGTERM) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, first)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _host(base: dict[str, str], root: Path, **extra: str) -> dict[str, str]:
    (root / "projects").mkdir(parents=True)
    return {
        **base,
        "PREFECT_HOME": str(root / "home"),
        "OMBUDSMAN_PROJECTS_DIR": str(root / "projects"),
        **extra,
    }


def _worker(env: dict[str, str], root: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*PREFECT, "worker", "start", "-p", "ombudsman-process"],
        env=env,
        cwd=root,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def test_a_retry_on_another_host_runs_only_the_unfinished_operations(tmp_path: Path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.filesystems import LocalFileSystem
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    from prefect_ombudsman.jobs import service
    from prefect_ombudsman.state_store import SegmentLog, StateStore

    shared = tmp_path / "shared"  # the result storage and the operations' markers
    markers = shared / "markers"
    markers.mkdir(parents=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base.update(
        PREFECT_API_URL=url,
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        OMBUDSMAN_RETRY_BASE_SECONDS="0.05",
    )
    server_env = {k: v for k, v in base.items() if k != "PREFECT_API_URL"}
    server_env["PREFECT_HOME"] = str(tmp_path / "server-home")
    # host A and host B name the shared block; the third host (API/CLI) names nothing: it finds
    # the block the job recorded through the Prefect API
    host_a = _host(base, tmp_path / "host-a", PREFECT_DEFAULT_RESULT_STORAGE_BLOCK=BLOCK)
    host_b = _host(base, tmp_path / "host-b", PREFECT_DEFAULT_RESULT_STORAGE_BLOCK=BLOCK)
    host_c = _host(base, tmp_path / "host-c")
    server = subprocess.Popen(
        [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env,
        stdout=(logs / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                    return resp.status == 200
            except OSError:
                return False

        assert wait_until(healthy, timeout=180, interval=0.3), _tail(logs / "server.log")
        with (
            temporary_settings(updates={PREFECT_API_URL: url}),
            get_client(sync_client=True) as client,
        ):
            LocalFileSystem(basepath=str(shared / "results")).save("ombudsman-shared")
            # the package is installed on both hosts: a module entrypoint, no code to pull
            client.create_work_pool(
                WorkPoolCreate(
                    name="ombudsman-process",
                    type="process",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                )
            )
            deployment_id = client.create_deployment(
                client.create_flow_from_name("custom-batch"),
                "custom-batch",
                work_pool_name="ombudsman-process",
                entrypoint="prefect_ombudsman.flows.custom:custom_batch",
            )
        workers.append(_worker(host_a, tmp_path / "host-a", logs / "worker-a.log"))

        items = [
            {"operation": "flaky", "arguments": {"marker": str(markers / f"op{i}"), "failures": 0}}
            for i in range(3)
        ]
        items.append(
            {
                "operation": "gate",
                "arguments": {
                    "marker": str(markers / "op3"),
                    "release_file": str(shared / "release"),
                },
            }
        )
        items += [
            {"operation": "flaky", "arguments": {"marker": str(markers / f"op{i}"), "failures": 0}}
            for i in (4, 5)
        ]
        with (
            temporary_settings(updates={PREFECT_API_URL: url}),
            get_client(sync_client=True) as client,
        ):
            run_id = str(
                client.create_flow_run_from_deployment(
                    deployment_id, parameters={"items": items, "retry_failed": False}
                ).id
            )

            def state():
                return client.read_flow_run(run_id).state

            # host A: three operations done and recorded in the shared storage, the fourth in flight
            assert wait_until((markers / "op3").exists, timeout=180, interval=0.2), _tail(
                logs / "worker-a.log"
            )
            checkpoint = SegmentLog(
                StateStore(LocalFileSystem(basepath=str(shared / "results"))), run_id
            )
            assert wait_until(lambda: len(checkpoint.load()) == 3, timeout=60, interval=0.1)
            # host B's worker starts now: the run is A's while it runs, so B only ever sees the retry
            workers.append(_worker(host_b, tmp_path / "host-b", logs / "worker-b.log"))
            os.kill(int((markers / "op3.pid").read_text()), signal.SIGKILL)
            assert wait_until(lambda: state().is_final(), timeout=120, interval=0.2), _tail(
                logs / "worker-a.log"
            )
            assert state().is_crashed(), state()
            _stop(workers[0], signal.SIGINT)

            # host B picks up the retry
            (shared / "release").touch()
            assert service.retry_job(run_id).status.value == "queued"
            assert wait_until(
                lambda: state().is_final() and client.read_flow_run(run_id).run_count >= 2,
                timeout=180,
                interval=0.2,
            ), _tail(logs / "worker-b.log")
            assert state().is_completed(), (state(), _tail(logs / "worker-b.log"))

        # completed operations never ran again; the one in flight and the unstarted ones ran once more
        counts = {i: (markers / f"op{i}").read_text() for i in range(6)}
        assert counts == {0: "1", 1: "1", 2: "1", 3: "2", 4: "1", 5: "1"}

        # the report, from a third directory that has no local copy and names no storage
        report = subprocess.run(
            [OMBUDSMAN, "jobs", "report", run_id],
            env=host_c,
            cwd=tmp_path / "host-c",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert report.returncode == 0, report.stdout + report.stderr
        summary = json.loads(report.stdout)
        assert summary["job_id"] == run_id and summary["status"] == "completed"
        assert summary["completed"] == 6
        assert [op["metadata"]["cached"] for op in summary["operations"]] == [True] * 3 + [
            False
        ] * 3
        assert summary["state_storage"] == BLOCK
        assert summary["report_path"].startswith(str(tmp_path / "host-b" / "projects"))
        assert not any((tmp_path / "host-c" / "projects").rglob("*.json"))
        # the projects folders hold no checkpoint: job state lives in the result storage
        assert not any(tmp_path.glob("host-*/projects/.ombudsman/checkpoints"))
        stored = shared / "results" / "ombudsman" / "jobs" / run_id
        assert {p.name for p in stored.iterdir()} >= {
            "report.json",
            "report.csv",
            "report.junit.xml",
            "report.html",
        }
    finally:
        for worker in workers:
            _stop(worker, signal.SIGINT)
        _stop(server)
        shutil.rmtree(tmp_path / "server-home", ignore_errors=True)
