"""Small helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import shutil
import signal
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


def prefect_env(**extra: str) -> dict[str, str]:
    """This environment without PREFECT_* settings (no profile of the machine leaks in), plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") or k == "PREFECT_SERVER_ANALYTICS_ENABLED"
    }
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", **extra)
    return env


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_process(proc: subprocess.Popen[bytes], first: int = signal.SIGTERM) -> None:
    """Stop a process started with `start_new_session=True` and its group; SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, first)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


class PrefectServer:
    """A real `prefect server start` on 127.0.0.1 whose database is a PostgreSQL database of its
    own (asyncpg, as a team runs it), `prefect deploy --all` of prefect.yaml, and process workers,
    each with its own working directory and PREFECT_HOME (standing in for hosts)."""

    POOL = "ombudsman-process"

    def __init__(self, postgres_port: int, root: Path, **env: str) -> None:
        import psycopg

        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        database = f"prefect_{self.port}"
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{postgres_port}/postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        self.database_url = f"postgresql+asyncpg://postgres@127.0.0.1:{postgres_port}/{database}"
        self.env = prefect_env(
            PREFECT_API_URL=self.url,
            PREFECT_HOME=str(root / "home-client"),
            PREFECT_WORKER_QUERY_SECONDS="1",
            **env,
        )
        self.server: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    def healthy(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def start(self) -> None:
        server_env = prefect_env(
            PREFECT_HOME=str(self.root / "home-server"),
            PREFECT_API_DATABASE_CONNECTION_URL=self.database_url,
        )
        self.server = subprocess.Popen(
            [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=server_env,
            stdout=(self.logs / "server.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not wait_until(self.healthy, timeout=240, interval=0.5):
            raise RuntimeError((self.logs / "server.log").read_text()[-3000:])

    def prefect(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run(
            [*PREFECT, *args], env=self.env, cwd=REPO, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def deploy(self) -> None:
        """The work pool and the deployments of prefect.yaml."""
        self.prefect("work-pool", "create", self.POOL, "--type", "process", "--overwrite")
        self.prefect("--no-prompt", "deploy", "--all")

    def start_worker(
        self, name: str, limit: int | None = None, **env: str
    ) -> subprocess.Popen[bytes]:
        """A process worker in its own directory and PREFECT_HOME (another host)."""
        home = self.root / "hosts" / name
        home.mkdir(parents=True, exist_ok=True)
        args = [*PREFECT, "worker", "start", "-p", self.POOL, "--name", name]
        if limit:
            args += ["--limit", str(limit)]
        worker = subprocess.Popen(
            args,
            env={**self.env, "PREFECT_HOME": str(home / "prefect"), **env},
            cwd=home,
            stdout=(self.logs / f"worker-{name}.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers[name] = worker
        return worker

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker and every flow-run process it started (a host that died)."""
        worker = self.workers.pop(name)
        for pid in [worker.pid, *descendants(worker.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.wait(timeout=30)

    def stop_worker(self, name: str) -> None:
        stop_process(self.workers.pop(name), signal.SIGINT)

    def log(self, name: str = "server") -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        for name in list(self.workers):
            self.stop_worker(name)
        if self.server is not None:
            stop_process(self.server)
            self.server = None


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
