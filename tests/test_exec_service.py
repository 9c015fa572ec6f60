"""The warm execution service behind `ombudsman run …`: with the shared local server, the first run
command starts one service per Prefect home and every later one is served by it (a forked child
per job); outputs and exit codes equal the in-process path; Ctrl-C and `jobs cancel` end its jobs
Cancelled; inline credentials never leave the job's child; stale records are replaced; the escape
hatches bypass it."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from prefect_ombudsman import execservice, localserver
from support import free_port, wait_until
from test_local_server import OMBUDSMAN, local_env, ombudsman, stop_and_check

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A user's machine: own Prefect home and projects; every service and server stopped after."""
    env = local_env(tmp_path_factory.mktemp("exec"))
    home = Path(env["PREFECT_HOME"])
    try:
        yield env
    finally:
        record = execservice.read_record(home)
        stop_and_check(home)  # the execution service, then the server
        if record:
            assert wait_until(lambda: not execservice.is_service_process(record.pid), timeout=60)


def _as_from_a_terminal() -> None:
    # A command typed in a terminal gets Ctrl-C; one started by a script's `&` (as a CI runner
    # may start this suite) inherits SIGINT ignored, and Python then installs no handler for it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [OMBUDSMAN, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_from_a_terminal,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=600)
    return process.returncode, stdout, stderr


def service_log(env: dict[str, str]) -> str:
    return (Path(env["PREFECT_HOME"]) / execservice.LOG_FILE).read_text()


def served(env: dict[str, str], client_pid: int) -> bool:
    return f"for client pid {client_pid}\n" in service_log(env)


def api(env: dict[str, str]) -> str:
    record = localserver.read_record(Path(env["PREFECT_HOME"]))
    assert record is not None
    return record.url


def running_job(env: dict[str, str], name: str) -> str | None:
    """The id of job `name` once one of its operations runs (read from the Prefect API)."""
    if localserver.read_record(Path(env["PREFECT_HOME"])) is None:
        return None  # the first command is still starting the server
    try:
        runs = httpx.post(
            f"{api(env)}/flow_runs/filter",
            json={"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}},
            timeout=30,
        ).json()
    except httpx.ConnectError:
        return None  # recorded, not answering yet
    if not isinstance(runs, list):
        return None  # the server is still starting its services
    for run in runs:
        if (run.get("parameters") or {}).get("job_name") == name:
            tasks = httpx.post(
                f"{api(env)}/task_runs/filter",
                json={
                    "flow_runs": {"id": {"any_": [run["id"]]}},
                    "task_runs": {"state": {"type": {"any_": ["RUNNING"]}}},
                },
                timeout=30,
            ).json()
            if tasks:
                return str(run["id"])
    return None


def comparable(summary: dict[str, Any]) -> dict[str, Any]:
    """A job summary without what differs between two runs of one request (ids, times)."""
    return {
        "status": summary["status"],
        "counts": [summary[k] for k in ("total_operations", "completed", "failed", "skipped")],
        "operations": [
            (op["operation_id"], op["status"], op.get("error"), op.get("result"))
            for op in summary["operations"]
        ],
    }


def test_run_commands_are_served_by_one_warm_service_as_in_process(user: dict[str, str]):
    home = Path(user["PREFECT_HOME"])
    first = start(user, "run", "custom", "noop", "--name", "first", "--json")
    code, stdout, stderr = finish(first)
    assert code == 0, stderr
    assert json.loads(stdout)["status"] == "completed"
    record = execservice.read_record(home)
    assert record is not None and execservice.is_service_process(record.pid)
    assert served(user, first.pid)
    assert stat.S_IMODE(os.stat(record.socket).st_mode) == 0o600

    args = ("run", "custom", "noop", "fail", "--json", "--max-retries", "0")
    second = start(user, *args, "--name", "second")
    code, stdout, stderr = finish(second)
    in_process = start(user | {"OMBUDSMAN_EXEC_SERVICE": "0"}, *args, "--name", "second-in-process")
    code_in, stdout_in, stderr_in = finish(in_process)
    assert (code, code_in) == (1, 1), stderr + stderr_in  # a failing operation: exit 1
    assert comparable(json.loads(stdout)) == comparable(json.loads(stdout_in))
    assert comparable(json.loads(stdout))["status"] == "partial_success"
    assert served(user, second.pid) and not served(user, in_process.pid)
    assert execservice.read_record(home) == record  # the same service served both
    assert service_log(user).count("execution service for ombudsman on") == 1

    # refused before any work (Prefect's parameter limit, read from the command's environment)
    tight = {"PREFECT_SERVER_API_MAX_PARAMETER_SIZE": "300"}
    refused = [
        ombudsman(user | tight | extra, "run", "custom", "noop", "--repeat", "30")
        for extra in ({}, {"OMBUDSMAN_EXEC_SERVICE": "0"})
    ]
    assert [r.returncode for r in refused] == [2, 2], [r.stderr for r in refused]
    messages = [" ".join(r.stderr.split()) for r in refused]  # the same words (wrapped anywhere)
    assert messages[0] == messages[1] and "over Prefect's limit" in messages[0]

    listed = json.loads(ombudsman(user, "jobs", "list", "--json").stdout)
    assert {"first", "second", "second-in-process"} <= {job["name"] for job in listed["jobs"]}
    status = json.loads(ombudsman(user, "server", "status", "--json").stdout)
    assert status["exec_service"]["running"] and status["exec_service"]["pid"] == record.pid


def test_ctrl_c_and_jobs_cancel_cancel_a_service_job_and_a_lost_service_is_reported(
    user: dict[str, str],
):
    sleep = ("run", "custom", "sleep", "--args", '{"seconds": 300}', "--json")
    interrupted = start(user, *sleep, "--name", "sleep-ctrl-c")
    cancelled = start(user, *sleep, "--name", "sleep-jobs-cancel")
    lost = start(user, *sleep, "--name", "sleep-lost")
    ids: dict[str, str] = {}

    def all_running() -> bool:
        for name in ("sleep-ctrl-c", "sleep-jobs-cancel", "sleep-lost"):
            if name not in ids and (job_id := running_job(user, name)):
                ids[name] = job_id
        return len(ids) == 3

    assert wait_until(all_running, timeout=300, interval=0.5)
    assert all(served(user, p.pid) for p in (interrupted, cancelled, lost))

    interrupted.send_signal(signal.SIGINT)
    code, stdout, stderr = finish(interrupted)
    assert code == 1, stderr
    assert json.loads(stdout)["status"] == "cancelled" and "cancelling the job" in stderr

    other_shell = ombudsman(user, "jobs", "cancel", ids["sleep-jobs-cancel"])
    assert other_shell.returncode == 0, other_shell.stderr
    code, stdout, stderr = finish(cancelled)
    assert code == 1 and json.loads(stdout)["status"] == "cancelled", stderr

    child = re.search(rf"\[(\d+)\] job custom for client pid {lost.pid}\n", service_log(user))
    assert child is not None
    os.kill(int(child.group(1)), signal.SIGKILL)
    code, _, stderr = finish(lost)
    assert code == 1 and "the execution service stopped during the job" in stderr

    states = {
        name: httpx.get(f"{api(user)}/flow_runs/{job_id}", timeout=30).json()["state"]["type"]
        for name, job_id in ids.items()
    }
    assert states["sleep-ctrl-c"] == states["sleep-jobs-cancel"] == "CANCELLED"
    ombudsman(user, "jobs", "cancel", ids["sleep-lost"])  # its process is gone: tidy up


def test_an_inline_password_reaches_only_the_jobs_child(user: dict[str, str]):
    canary = "Cnry" + secrets.token_hex(12)
    url = f"postgresql+psycopg://someone:{canary}@127.0.0.1:{free_port()}/nowhere"
    client = start(
        user,
        "run",
        "compare",
        "--table",
        "orders",
        "--source-url",
        url,
        "--target-url",
        url,
        "--max-retries",
        "0",
        "--json",
    )
    code, stdout, stderr = finish(client)
    assert code == 1, stderr  # nothing listens there: the operation fails
    assert served(user, client.pid)
    summary = json.loads(stdout)
    assert summary["failed"] == 1 and summary["operations"][0]["error"]
    home, projects = Path(user["PREFECT_HOME"]), Path(user["OMBUDSMAN_PROJECTS_DIR"])
    files = [p for root in (home, projects) for p in root.rglob("*") if p.is_file()]
    assert any(p.name.startswith("prefect.db") for p in files)  # Prefect's database is searched
    assert any(p.name == execservice.LOG_FILE for p in files)  # and the service's log
    leaked = [str(p) for p in files if canary.encode() in p.read_bytes()]
    assert leaked == [] and canary not in stdout + stderr


def test_a_stale_record_is_replaced_and_the_escape_hatches_bypass_the_service(
    user: dict[str, str],
):
    home = Path(user["PREFECT_HOME"])
    execservice.stop(home)
    stale = {
        "pid": os.getpid(),  # alive, but not a service: never signalled
        "socket": str(home / execservice.SOCKET_FILE),
        "started": "x",
        "log": "x",
        "python": "x",
        "fingerprint": execservice.fingerprint(),
    }
    (home / execservice.STATE_FILE).write_text(json.dumps(stale))
    bypass = ombudsman(user | {"OMBUDSMAN_EXEC_SERVICE": "0"}, "run", "custom", "noop")
    assert bypass.returncode == 0, bypass.stderr
    assert json.loads((home / execservice.STATE_FILE).read_text()) == stale  # not touched

    replaced = start(user, "run", "custom", "noop", "--json")
    code, _, stderr = finish(replaced)
    assert code == 0, stderr
    record = execservice.read_record(home)
    assert record is not None and record.pid != os.getpid()
    assert execservice.is_service_process(record.pid) and served(user, replaced.pid)


def test_the_service_is_used_only_with_the_shared_local_server(
    monkeypatch: pytest.MonkeyPatch,
):
    from prefect_ombudsman.cli import app

    monkeypatch.delenv("OMBUDSMAN_NO_DAEMON", raising=False)
    monkeypatch.delenv("OMBUDSMAN_EXEC_SERVICE", raising=False)
    monkeypatch.setattr(localserver, "configured_api_url", lambda: None)
    assert execservice.wanted()
    monkeypatch.setenv("OMBUDSMAN_EXEC_SERVICE", "0")
    assert not execservice.wanted()
    monkeypatch.delenv("OMBUDSMAN_EXEC_SERVICE")
    # recorded as unset first, so that the variable the command sets in this process is gone
    # after the test (later tests' subprocesses inherit this environment)
    monkeypatch.setenv("OMBUDSMAN_NO_DAEMON", "")
    assert CliRunner().invoke(app, ["--no-daemon", "operations"]).exit_code == 0
    assert os.environ["OMBUDSMAN_NO_DAEMON"] == "1" and not execservice.wanted()
    os.environ["OMBUDSMAN_NO_DAEMON"] = ""
    monkeypatch.setattr(localserver, "configured_api_url", lambda: "http://127.0.0.1:1/api")
    assert not execservice.wanted()  # an explicit Prefect API: jobs run in the command


def test_the_service_is_the_same_code_whichever_alias_of_the_interpreter_asks(monkeypatch):
    """`ombudsman` (its script's python3.11) and `python -m ...` share one service; a change of
    the package's sources does not."""
    before = execservice.fingerprint()
    monkeypatch.setattr(execservice.sys, "executable", "/elsewhere/bin/python3")
    assert execservice.fingerprint() == before
    newest = max(Path(execservice.__file__).parent.rglob("*.py"), key=lambda p: p.stat().st_mtime)
    stamp = newest.stat()
    try:
        os.utime(newest, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000_000))
        assert execservice.fingerprint() != before
    finally:
        os.utime(newest, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
