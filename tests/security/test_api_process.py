"""A real `ombudsman api` process on 127.0.0.1: auth over the wire, and its access and error
logs still written after it has run a job in-process (Prefect's logging setup once dropped them)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from prefect_ombudsman.jobs import accounts
from support import wait_until

pytestmark = pytest.mark.usefixtures("prefect_api")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _serving(auth: Path, log: Path, *options: str) -> Iterator[str]:
    """The base url of an `ombudsman api` process on 127.0.0.1, stopped at exit."""
    import prefect.settings as ps

    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_API_URL": str(ps.PREFECT_API_URL.value()),
        "OMBUDSMAN_AUTH_FILE": str(auth),
        "OMBUDSMAN_EXECUTION": "local",
    }
    command = [sys.executable, "-m", "prefect_ombudsman.cli", "api", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with _running([*command, *options], env, log, base):
        yield base


@contextmanager
def _running(command: list[str], env: dict[str, str], log: Path, url: str) -> Iterator[None]:
    """A process writing to `log`, once `url`/health answers; terminated at exit."""
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=sink)
    try:
        assert wait_until(lambda: _answers(url), timeout=180, interval=0.3), log.read_text()
        yield
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.fixture
def served(tmp_path: Path, tmp_projects: Path) -> Iterator[tuple[str, str, Path, Path]]:
    """(base url, full token, output log, auth file) of an `ombudsman api` process."""
    auth, log = tmp_path / "auth.json", tmp_path / "api.log"
    token = accounts.create_token(auth, "process")
    with _serving(auth, log, "--projects-dir", str(tmp_projects)) as base:
        yield base, token, log, auth


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_served_api_needs_a_token_and_keeps_its_logs_after_a_job(
    served: tuple[str, str, Path, Path],
):
    base, token, log, auth_file = served
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{base}/batch/jobs").status_code == 401
    created = httpx.post(
        f"{base}/batch/custom/execute",
        json={"job_name": "in process", "items": [{"operation": "noop"}]},
        headers=auth,
        timeout=60,
    )
    assert created.status_code == 200, created.text
    job = f"{base}/batch/jobs/{created.json()['job_id']}"
    assert wait_until(
        lambda: httpx.get(job, headers=auth, timeout=30).json()["job"]["status"] == "completed",
        timeout=120,
        interval=0.3,
    )
    marker = "/batch/jobs?after-the-job"
    assert httpx.get(f"{base}{marker}", headers=auth, timeout=30).status_code == 200
    assert wait_until(lambda: marker in log.read_text(), timeout=30, interval=0.2), log.read_text()
    failing = httpx.post(
        f"{base}/batch/custom/execute", content=b"x" * (2 << 20), headers=auth, timeout=30
    )
    assert failing.status_code == 413 and "1048576 bytes" in failing.json()["detail"]
    assert wait_until(
        lambda: '"POST /batch/custom/execute HTTP/1.1" 413' in log.read_text(), timeout=30
    )
    auth_file.write_text("{ not json")  # a broken auth file: 503, logged with the request id
    broken = httpx.get(f"{base}/batch/jobs", headers=auth, timeout=30)
    assert broken.status_code == 503 and broken.headers["x-request-id"]
    assert broken.json()["request_id"] == broken.headers["x-request-id"]
    assert wait_until(lambda: broken.json()["request_id"] in log.read_text(), timeout=30)


def test_loopback_without_credentials_answers_401_and_says_how_to_make_one(
    tmp_path: Path, tmp_projects: Path
):
    log = tmp_path / "api.log"
    with _serving(tmp_path / "none.json", log, "--projects-dir", str(tmp_projects)) as base:
        assert httpx.get(f"{base}/batch/jobs", timeout=30).status_code == 401
    assert "ombudsman api token create --name NAME" in log.read_text()
    assert not (tmp_path / "none.json").exists()
    log = tmp_path / "open.log"
    with _serving(tmp_path / "none.json", log, "--insecure-no-auth") as base:
        assert httpx.get(f"{base}/batch/jobs", timeout=30).status_code == 200
    assert "WARNING: --insecure-no-auth" in log.read_text()


@pytest.fixture
def guarded_prefect(tmp_path: Path) -> Iterator[str]:
    """A `prefect server start` with PREFECT_SERVER_API_AUTH_STRING=admin:s3cret (its API url)."""
    port, log = _free_port(), tmp_path / "prefect.log"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_API_AUTH_STRING": "admin:s3cret",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    url = f"http://127.0.0.1:{port}/api"
    with _running([*command, "--port", str(port)], env, log, url):
        yield url


def test_prefect_server_auth_string_as_docs_say(
    guarded_prefect: str, tmp_projects: Path, tmp_path: Path
):
    import prefect.settings as ps
    from prefect.settings import temporary_settings

    from api_clients import bearer_client
    from prefect_ombudsman.jobs.api import create_app
    from prefect_ombudsman.jobs.auth import AuthSettings

    settings = AuthSettings(auth_file=tmp_path / "auth.json")
    client = bearer_client(
        create_app(str(tmp_projects), auth=settings),
        accounts.create_token(settings.auth_file, "t"),
    )
    unauthenticated = httpx.post(f"{guarded_prefect}/flow_runs/filter", json={}, timeout=30)
    assert unauthenticated.status_code == 401
    with temporary_settings(
        updates={ps.PREFECT_API_URL: guarded_prefect, ps.PREFECT_API_AUTH_STRING: "admin:s3cret"}
    ):
        assert client.get("/batch/jobs").status_code == 200
    with temporary_settings(
        updates={ps.PREFECT_API_URL: guarded_prefect}, restore_defaults={ps.PREFECT_API_AUTH_STRING}
    ):
        refused = client.get("/batch/jobs")
    assert refused.status_code == 503 and "PREFECT_API_AUTH_STRING" in refused.json()["detail"]
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
