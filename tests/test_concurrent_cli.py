"""Many `ombudsman` commands at once with the default embedded setup (no PREFECT_API_URL): they
share one local Prefect server, all succeed and all their jobs are listed; jobs on one DuckDB
file from different processes take turns instead of failing on DuckDB's file lock."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefect_ombudsman.demo import prepare_project
from test_local_server import OMBUDSMAN, local_env, ombudsman, stop_and_check

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # a busy 2-core machine


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A user's machine: own Prefect home and projects, the demo project loaded without drift."""
    root = tmp_path_factory.mktemp("concurrent")
    env = local_env(root)
    prepare_project(Path(env["OMBUDSMAN_PROJECTS_DIR"]))
    try:
        loaded = ombudsman(
            env, "run", "generate", "--project", "demo", "-s", "Retail", "-n", "300", "--seed", "5"
        )
        assert loaded.returncode == 0, loaded.stderr
        yield env
    finally:
        stop_and_check(Path(env["PREFECT_HOME"]))


def run_at_once(env: dict[str, str], commands: list[list[str]]) -> list[tuple[int, str, str]]:
    processes = [
        subprocess.Popen(
            [OMBUDSMAN, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for args in commands
    ]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=1800)
        results.append((process.returncode, stdout, stderr))
    return results


def test_eight_commands_at_once_start_one_server_and_all_jobs_are_listed(
    user: dict[str, str], tmp_path: Path
):
    home = Path(user["PREFECT_HOME"])
    assert ombudsman(user, "server", "stop").returncode == 0  # the eight start from cold
    started_before = (home / "ombudsman-server.log").read_text().count("for ombudsman on")
    generate = [
        ["run", "generate", "-s", "Retail", "-n", "200", "--seed", str(i), "--json"]
        + ["-t", f"sqlite:///{tmp_path / f'g{i}.sqlite'}", "--name", f"conc-generate-{i}"]
        for i in range(4)
    ]
    pipelines = [  # all four read the demo's SQLite source and DuckDB target
        ["run", "pipelines", "-p", "demo", "--json", "--name", f"conc-pipelines-{i}"]
        for i in range(4)
    ]
    results = run_at_once(user, generate + pipelines)

    for code, stdout, stderr in results:
        assert code == 0, stderr[-3000:]
        assert json.loads(stdout)["status"] == "completed"
    log = (home / "ombudsman-server.log").read_text()
    assert log.count("for ombudsman on") == started_before + 1
    listed = json.loads(ombudsman(user, "jobs", "list", "--json", "--limit", "50").stdout)
    names = {job["name"] for job in listed["jobs"]}
    assert {f"conc-generate-{i}" for i in range(4)} | {f"conc-pipelines-{i}" for i in range(4)} <= (
        names
    )


def test_two_jobs_writing_one_duckdb_file_from_two_processes_both_complete(
    user: dict[str, str], tmp_path: Path
):
    shared = tmp_path / "shared.duckdb"
    commands = [
        ["run", "generate", "-s", "Retail", "-n", "300", "--table", table, "--json"]
        + ["-t", f"duckdb:///{shared}", "--name", f"duck-{table}"]
        for table in ("dim_customer", "dim_product")
    ]
    results = run_at_once(user, commands)

    for code, stdout, stderr in results:
        assert code == 0, stderr[-3000:]
        summary = json.loads(stdout)
        assert summary["status"] == "completed" and summary["failed"] == 0
    import duckdb

    with duckdb.connect(str(shared), read_only=True) as db:
        tables = {row[0] for row in db.sql("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert {"dim_customer", "dim_product"} <= tables
