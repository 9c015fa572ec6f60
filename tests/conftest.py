"""Real databases and a real Prefect API for the tests, started and stopped here.

PostgreSQL: initdb into a temp dir, a free port, 127.0.0.1 only. Snowflake: a fakesnow server
thread. Prefect: one session-scoped test harness (a temporary API server on a fresh database).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import PostgresServer, free_port

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="ombudsman-tests-"))
os.environ.setdefault("PREFECT_HOME", str(_SESSION_TMP / "prefect-home"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["OMBUDSMAN_RETRY_BASE_SECONDS"] = "0.05"
os.environ["OMBUDSMAN_PROGRESS_INTERVAL_SECONDS"] = "0.2"
os.environ["OMBUDSMAN_PROJECTS_DIR"] = str(_SESSION_TMP / "projects")
# never the real ~/.ombudsman/auth.json (tests that serve the API bring their own auth file)
os.environ["OMBUDSMAN_AUTH_FILE"] = str(_SESSION_TMP / "auth.json")
os.environ.pop("PREFECT_API_URL", None)


def pytest_configure(config: pytest.Config) -> None:
    import importlib.util

    if importlib.util.find_spec("ombudsman_testops") is None:
        raise pytest.UsageError(
            "the test operations plugin is not installed: run `make setup` "
            "(pip install -e tests/plugins/ombudsman_testops)"
        )


@pytest.fixture(scope="session", autouse=True)
def allowed_test_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Tests keep their databases in pytest's tmp_path folders, outside the projects root: the
    operator's allow-list (OMBUDSMAN_ALLOWED_PATHS) admits pytest's base temp folder. The
    adversarial suite (tests/security) removes it to prove the confinement."""
    base = tmp_path_factory.getbasetemp().resolve()
    os.environ["OMBUDSMAN_ALLOWED_PATHS"] = str(base)
    yield base
    os.environ.pop("OMBUDSMAN_ALLOWED_PATHS", None)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A real Prefect API for flows: the harness's temporary server, heartbeats off."""
    import prefect.settings as ps
    from prefect.settings import temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        with temporary_settings(updates={ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of our own (tests/support.py), stopped at the end."""
    try:
        server = PostgresServer()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


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
    from prefect_ombudsman import execservice, localserver
    from prefect_ombudsman.dialects.engines import dispose_engines

    dispose_engines()
    home = localserver.prefect_home()
    if home.is_relative_to(_SESSION_TMP.resolve()):  # a test reached Prefect without the harness
        execservice.stop(home)
        localserver.stop(home)
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)
