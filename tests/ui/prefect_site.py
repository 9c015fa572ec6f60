"""A real `prefect server` (UI on), the deployments of prefect.yaml, `ombudsman setup`, a process
worker and a webhook receiver on 127.0.0.1: what a person (and the shipped automation) meets."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from support import PREFECT, deploy_and_start_worker, free_port, wait_until

OMBUDSMAN = [sys.executable, "-m", "prefect_ombudsman.cli"]
HOOK_BLOCK = "ombudsman-test-hook"


class Receiver:
    """The bodies POSTed to a tiny webhook server."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    received.append(json.loads(raw))
                except ValueError:
                    received.append({"raw": raw.decode("utf-8", "replace")})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def _stop(proc: subprocess.Popen[bytes], first: int = signal.SIGTERM) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, first)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def artifacts_folder() -> Path:
    """Where the browser tests leave their screenshots ($OMBUDSMAN_UI_ARTIFACTS, else a temp dir)."""
    folder = Path(
        os.environ.get("OMBUDSMAN_UI_ARTIFACTS") or tempfile.mkdtemp(prefix="ombudsman-ui-")
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def prefect_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Server + `ombudsman setup` (work pool, notification automation) + `prefect deploy --all` + worker."""
    root = tmp_path_factory.mktemp("prefect-site")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") or k in ("PREFECT_SERVER_ANALYTICS_ENABLED",)
    }
    env.update(
        PREFECT_HOME=str(root / "home"),
        PREFECT_API_URL=f"{base}/api",
        PREFECT_UI_API_URL=f"{base}/api",  # else the UI talks to :4200
        PREFECT_UI_URL=base,  # links in notifications
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        OMBUDSMAN_PROJECTS_DIR=str(root / "projects"),
        OMBUDSMAN_RETRY_BASE_SECONDS="0.05",
        OMBUDSMAN_PROGRESS_INTERVAL_SECONDS="0.5",
    )
    server_env = dict(env)
    server_env.pop("PREFECT_API_URL")
    logs = root / "logs"
    logs.mkdir()
    server = subprocess.Popen(
        [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env,
        stdout=(logs / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = None
    with Receiver() as receiver:
        try:

            def healthy() -> bool:
                try:
                    with urllib.request.urlopen(f"{base}/api/health", timeout=1) as resp:
                        return resp.status == 200
                except OSError:
                    return False

            assert wait_until(healthy, timeout=180, interval=0.3), (
                logs / "server.log"
            ).read_text()[-3000:]
            block = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys; from prefect.blocks.notifications import CustomWebhookNotificationBlock as B;"
                    "B(name='ombudsman', url=sys.argv[1], method='POST',"
                    " json_data={'subject': '{{subject}}', 'body': '{{body}}'}).save(sys.argv[2], overwrite=True)",
                    receiver.url,
                    HOOK_BLOCK,
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            assert block.returncode == 0, block.stderr
            setup = subprocess.run(
                [
                    *OMBUDSMAN,
                    "setup",
                    "--work-pool",
                    "ombudsman-process",
                    "--notify-block",
                    f"custom-webhook/{HOOK_BLOCK}",
                ],
                env=env,
                capture_output=True,
                text=True,
            )
            assert setup.returncode == 0, setup.stdout + setup.stderr
            worker = deploy_and_start_worker(env, root, logs)
            yield {
                "env": env,
                "base": base,
                "url": f"{base}/api",
                "root": root,
                "logs": logs,
                "receiver": receiver,
                "setup_output": setup.stdout,
            }
        finally:
            if worker is not None:
                _stop(worker, signal.SIGINT)
            _stop(server)
            shutil.rmtree(root / "home", ignore_errors=True)


class _Scoped:
    def __init__(self, url: str) -> None:
        self.url = url

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


def site_client(site: dict[str, Any]) -> _Scoped:
    """A sync Prefect client on the site's API (for this test process only)."""
    return _Scoped(site["url"])
