"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian layout)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    return candidates[-1] if candidates else None


class PostgresServer:
    """A PostgreSQL server of our own: initdb in a temp dir, a free port, 127.0.0.1 only.

    `start()` / `stop(mode)` can be called again (a test that restarts the server); `remove()`
    stops it and deletes its folder."""

    def __init__(self, prefix: str = "ombudsman-pg-") -> None:
        found = pg_bin()
        if found is None:
            raise RuntimeError(
                "PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it"
            )
        self.bin = found
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.data = self.root / "data"
        self.port = free_port()
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.prefix:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-locale",
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        subprocess.run(
            [*self.prefix, str(self.bin / program), *args], check=check, capture_output=True
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
            "-o", options, "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


REPO = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]

# Debian's chromium for the browser tests (Playwright launches it; it never downloads one).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # nothing but 127.0.0.1 is reachable (the UI bundle would call out otherwise)
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def deploy_and_start_worker(env: dict[str, str], root: Path, logs: Path) -> subprocess.Popen[bytes]:
    """`prefect deploy --all` from prefect.yaml, then a process worker on ombudsman-process."""
    deploy = subprocess.run(
        [*PREFECT, "--no-prompt", "deploy", "--all"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    return subprocess.Popen(
        [*PREFECT, "worker", "start", "-p", "ombudsman-process"],
        env=env,
        cwd=root,
        stdout=(logs / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
