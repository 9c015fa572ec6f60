"""Real databases and a real Prefect API for the tests, started and stopped here.

PostgreSQL: initdb into a temp dir, a free port, 127.0.0.1 only. Snowflake: a fakesnow server
thread. Prefect: one session-scoped test harness (a temporary API server on a fresh database).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import free_port

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="ombudsman-tests-"))
os.environ.setdefault("PREFECT_HOME", str(_SESSION_TMP / "prefect-home"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["OMBUDSMAN_RETRY_BASE_SECONDS"] = "0.05"
os.environ["OMBUDSMAN_PROGRESS_INTERVAL_SECONDS"] = "0.2"
os.environ["OMBUDSMAN_PROJECTS_DIR"] = str(_SESSION_TMP / "projects")
os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A real Prefect API for flows: the harness's temporary server, heartbeats off."""
    import prefect.settings as ps
    from prefect.settings import temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        with temporary_settings(updates={ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield


def _pg_bin() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    return candidates[-1] if candidates else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of our own: initdb in a temp dir, free port, stopped at the end."""
    pg_bin = _pg_bin()
    if pg_bin is None:
        pytest.fail("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
    root = Path(tempfile.mkdtemp(prefix="ombudsman-pg-"))
    data = root / "data"
    port = free_port()
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(root, "postgres", "postgres")
    subprocess.run(
        [
            *prefix,
            str(pg_bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
        ],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    subprocess.run(
        [
            *prefix,
            str(pg_bin / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_port(postgres_url: str) -> int:
    return int(postgres_url.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture(scope="session")
def fakesnow_server() -> Iterator[dict[str, object]]:
    """A fakesnow server (Snowflake's HTTP protocol over DuckDB) on a free loopback port."""
    import fakesnow

    port = free_port()
    with fakesnow.server(port=port) as kwargs:
        yield {
            "host": "127.0.0.1",
            "port": port,
            "protocol": "http",
            **{k: v for k, v in kwargs.items() if k not in ("host", "port", "protocol")},
        }
    for leftover in Path(tempfile.gettempdir()).glob("fakesnow_bucket_*"):
        shutil.rmtree(leftover, ignore_errors=True)


@pytest.fixture
def tmp_projects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "projects"
    root.mkdir()
    monkeypatch.setenv("OMBUDSMAN_PROJECTS_DIR", str(root))
    return root


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from prefect_ombudsman import localserver
    from prefect_ombudsman.dialects.connection import dispose_engines

    dispose_engines()
    home = localserver.prefect_home()
    if home.is_relative_to(_SESSION_TMP.resolve()):  # a test reached Prefect without the harness
        localserver.stop(home)
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)
