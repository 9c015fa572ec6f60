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


# --- MariaDB (dialect `mariadb`): a server of our own, like PostgresServer ---------------------

from typing import BinaryIO  # noqa: E402  (kept with the class it serves)


class MariaDbServer:
    """A MariaDB server of our own: mariadb-install-db in a temp dir, a free port, 127.0.0.1
    only, its socket in the temp dir, and a password login `ombudsman` allowed everything.

    `start()` waits until the server answers; `remove()` stops it and deletes its folder."""

    USER = "ombudsman"
    PASSWORD = "maria-test-secret"

    def __init__(self, prefix: str = "ombudsman-maria-") -> None:
        if shutil.which("mariadbd", path="/usr/sbin:/usr/bin") is None:
            raise RuntimeError(
                "MariaDB is not installed (apt-get install mariadb-server); .ci/run installs it"
            )
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.data = self.root / "data"
        self.socket = self.root / "mysqld.sock"
        self.port = free_port()
        self.user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(
            ["mariadb-install-db", "--no-defaults", f"--datadir={self.data}", *self.user,
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mysql+pymysql://{self.USER}:{self.PASSWORD}@127.0.0.1:{self.port}/ombudsman"

    def start(self) -> None:
        import pymysql

        with open(self.root / "server.log", "ab") as log:  # the server keeps its own copy
            self.process = self._spawn(log)

        def answers() -> bool:
            try:
                pymysql.connect(unix_socket=str(self.socket), user="root").close()
                return True
            except pymysql.err.OperationalError:
                assert self.process is not None and self.process.poll() is None, (
                    self.root / "server.log"
                ).read_text()
                return False

        assert wait_until(answers, timeout=120, interval=0.2), "MariaDB did not start"
        admin = pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)
        with admin.cursor() as cursor:
            for sql in (
                f"CREATE USER IF NOT EXISTS '{self.USER}'@'%' IDENTIFIED BY '{self.PASSWORD}'",
                f"GRANT ALL PRIVILEGES ON *.* TO '{self.USER}'@'%'",
                "CREATE DATABASE IF NOT EXISTS ombudsman",
            ):
                cursor.execute(sql)
        admin.close()

    def _spawn(self, log: BinaryIO) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={self.data}", *self.user,
             f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--pid-file={self.root / 'mariadbd.pid'}", "--skip-log-bin",
             "--innodb-buffer-pool-size=128M", "--innodb-flush-log-at-trx-commit=0",
             "--innodb-doublewrite=0", "--performance-schema=OFF", "--skip-name-resolve",
             "--character-set-server=utf8mb4"],
            stdout=log, stderr=log,
        )  # fmt: skip

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
