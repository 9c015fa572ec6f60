"""One warm local Prefect server per Prefect home, shared by every `ombudsman` command.

Without `PREFECT_API_URL`, Prefect starts a temporary server per process: 6-8 s for every
command, and several started at once on one SQLite database time out. Instead, the first command
starts one Prefect server (Prefect's own app and services, as `prefect server start` runs them) on
127.0.0.1 and a free port, recorded in `$PREFECT_HOME/ombudsman-server.json`; later commands check
its `/api/health` and reuse it. Start-up is serialised by an exclusive lock on
`ombudsman-server.lock`, so commands started at once start exactly one server; a record whose
process is gone or does not answer is replaced. Every command holds a shared lock on
`ombudsman-server.clients` while it runs; the server stops itself after
`OMBUDSMAN_SERVER_IDLE_MINUTES` (default 60; 0 = never) with no command attached and no request,
or on `ombudsman server stop`. Its log is `$PREFECT_HOME/ombudsman-server.log`.

Run as `python -m prefect_ombudsman.localserver serve`, this module is the server process itself.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect_ombudsman.atomic import write_json_atomic
from prefect_ombudsman.errors import OmbudsmanError
from prefect_ombudsman.file_locks import exclusive

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no shared server, Prefect's temporary one
    fcntl = None  # type: ignore[assignment]

STATE_FILE = "ombudsman-server.json"
LOCK_FILE = "ombudsman-server.lock"
CLIENTS_FILE = "ombudsman-server.clients"
LOG_FILE = "ombudsman-server.log"
_MARKER = "prefect_ombudsman.localserver"
_LOG_ROTATE_BYTES = 10 * 1024 * 1024


class LocalServerError(OmbudsmanError):
    """The local Prefect server could not be started or stopped."""


@dataclass(frozen=True)
class ServerRecord:
    """What `ombudsman-server.json` says about the running server."""

    pid: int
    port: int
    started: str
    log: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


def prefect_home() -> Path:
    """`$PREFECT_HOME`, else Prefect's default `~/.prefect`."""
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser().resolve()


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise LocalServerError(f"{name}={raw!r}: expected a number") from None


def startup_timeout() -> float:
    """Seconds a command waits for the server to answer ($OMBUDSMAN_SERVER_STARTUP_TIMEOUT_SECONDS)."""
    return _env_number("OMBUDSMAN_SERVER_STARTUP_TIMEOUT_SECONDS", 180.0)


def read_record(home: Path) -> ServerRecord | None:
    try:
        data = json.loads((home / STATE_FILE).read_text(encoding="utf-8"))
        return ServerRecord(
            pid=int(data["pid"]), port=int(data["port"]), started=data["started"], log=data["log"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def runs_module(pid: int, module: str) -> bool:
    """Whether `pid` is alive and runs `python -m <module>` (not a reused pid)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():  # pragma: no cover - no /proc: trust the pid
        return True
    try:
        return module in cmdline.read_bytes().decode(errors="replace")
    except OSError:
        return False


def is_server_process(pid: int) -> bool:
    """Whether `pid` is alive and is one of our servers (not a reused pid)."""
    return runs_module(pid, _MARKER)


def healthy(url: str, timeout: float = 5.0) -> bool:
    """Whether the Prefect API at `url` answers `/health` with 200 (stdlib only: no import cost)."""
    host_port = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", "/api/health")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def find(home: Path | None = None) -> ServerRecord | None:
    """The running, answering server of this Prefect home, if any."""
    home = home or prefect_home()
    record = read_record(home)
    if record and is_server_process(record.pid) and healthy(record.url):
        return record
    return None


def ensure(home: Path | None = None) -> ServerRecord:
    """The server of this Prefect home, started if none answers (exactly one across processes)."""
    home = home or prefect_home()
    record = find(home)
    if record:
        return record
    timeout = startup_timeout()
    with exclusive(
        home / LOCK_FILE, label="the local Prefect server's start-up lock", timeout=timeout + 60
    ):
        record = read_record(home)
        if record and is_server_process(record.pid):
            # Started by a command that gave up waiting, or busy: give it the start-up time.
            answered = _wait_healthy(home, record.pid, None, time.monotonic() + timeout)
            if answered:
                return answered
            _terminate(record.pid)
        (home / STATE_FILE).unlink(missing_ok=True)
        process = _spawn(home)
        answered = _wait_healthy(home, process.pid, process, time.monotonic() + timeout)
        if answered:
            return answered
        _terminate(process.pid)
        raise LocalServerError(
            f"the local Prefect server did not answer within {timeout:g} s "
            f"(OMBUDSMAN_SERVER_STARTUP_TIMEOUT_SECONDS); its log: {home / LOG_FILE}"
            + _log_tail(home)
        )


def spawn_detached(
    home: Path, module: str, log_file: str, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """`python -m <module> serve` in its own session (Ctrl-C on the command that started it does
    not stop it), cwd and PREFECT_HOME `home`, output appended to `home/<log_file>` (rotated at
    10 MB); Prefect's analytics off."""
    home.mkdir(parents=True, exist_ok=True)
    log = home / log_file
    if log.exists() and log.stat().st_size > _LOG_ROTATE_BYTES:
        log.replace(log.with_name(log_file + ".1"))
    env = env | {
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, "serve"],
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _spawn(home: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "WARNING"
    return spawn_detached(home, _MARKER, LOG_FILE, env)


def _wait_healthy(
    home: Path, pid: int, process: subprocess.Popen[bytes] | None, deadline: float
) -> ServerRecord | None:
    """Poll until the server `pid` has written its record and answers, exits, or time is up."""
    pause = 0.05
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise LocalServerError(
                f"the local Prefect server exited with code {process.returncode} while starting; "
                f"its log: {home / LOG_FILE}" + _log_tail(home)
            )
        if process is None and not is_server_process(pid):
            return None
        record = read_record(home)
        if record and record.pid == pid and healthy(record.url):
            return record
        time.sleep(pause)
        pause = min(pause * 1.5, 0.5)
    return None


def _log_tail(home: Path, lines: int = 15) -> str:
    try:
        text = (home / LOG_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    tail = "\n".join(text.splitlines()[-lines:])
    return f"\n{tail}" if tail else ""


def _terminate(pid: int, timeout: float = 30.0, *, ours: Any = None) -> None:
    """SIGTERM our server `pid` (`ours(pid)`: whether it is ours, default `is_server_process`),
    SIGKILL it if it has not exited within `timeout`."""
    if not (ours or is_server_process)(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # our child: reap it
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    try:  # a zombie of another parent counts as gone
        return status.read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def stop(home: Path | None = None) -> ServerRecord | None:
    """Stop the server of this Prefect home; its record (None: none was running). Stop the
    execution service first (`execservice.stop`, as `ombudsman server stop` does): its jobs
    need this server."""
    home = home or prefect_home()
    with exclusive(home / LOCK_FILE, label="the local Prefect server's start-up lock"):
        record = read_record(home)
        if record is None:
            return None
        running = is_server_process(record.pid)
        if running:
            _terminate(record.pid)
        (home / STATE_FILE).unlink(missing_ok=True)
        return record if running else None


def status(home: Path | None = None) -> dict[str, Any]:
    """Whether the server runs and answers, with its url, pid, start time and log."""
    home = home or prefect_home()
    record = read_record(home)
    running = bool(record and is_server_process(record.pid))
    return {
        "prefect_home": str(home),
        "running": running,
        "healthy": bool(running and record and healthy(record.url)),
        "api_url": record.url if record and running else None,
        "ui_url": record.url.removesuffix("/api") if record and running else None,
        "pid": record.pid if record and running else None,
        "started": record.started if record and running else None,
        "log": str(home / LOG_FILE),
        "idle_minutes": idle_minutes(),
    }


# ------------------------------------------------------------------ the command side


_ATTACHED: dict[Path, int] = {}


def attach(home: Path) -> None:
    """Mark this process as a user of the server until it exits (a shared lock the kernel drops)."""
    if fcntl is None or home in _ATTACHED:
        return
    fd = os.open(home / CLIENTS_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _ATTACHED[home] = fd


def configured_api_url() -> str | None:
    """The Prefect API this process was told to use: the environment, an active
    `temporary_settings` (tests), or the active Prefect profile."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if "prefect.context" in sys.modules:
        from prefect.settings import get_current_settings

        url = get_current_settings().api.url
        if url:
            return str(url)
    return _profile_api_url()


def _profile_api_url() -> str | None:
    import tomllib

    path = Path(
        os.environ.get("PREFECT_PROFILES_PATH") or prefect_home() / "profiles.toml"
    ).expanduser()
    try:
        profiles = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    value = profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")
    return str(value) if value else None


def daemon_disabled() -> bool:
    """`--no-daemon` / `OMBUDSMAN_NO_DAEMON=1`: Prefect's temporary server per command, as before."""
    return os.environ.get("OMBUDSMAN_NO_DAEMON", "").strip().lower() in ("1", "true", "yes", "on")


def connect() -> str | None:
    """Point this process's Prefect client at a Prefect API; the URL (None: Prefect's temporary
    server). A configured API is used as is; otherwise the shared local server is found or started.
    """
    configured = configured_api_url()
    if configured:
        return configured
    if daemon_disabled() or fcntl is None:
        return None
    home = prefect_home()
    record = ensure(home)
    attach(home)
    os.environ["PREFECT_API_URL"] = record.url
    if "prefect.context" in sys.modules:  # imported before: make it read the variable again
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()
    return record.url


# ------------------------------------------------------------------ the server side


def idle_minutes() -> float:
    """Minutes without requests and without an attached command before the server stops."""
    return _env_number("OMBUDSMAN_SERVER_IDLE_MINUTES", 60.0)


class _Activity:
    """ASGI wrapper that remembers when the last request arrived."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last = time.monotonic()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            self.last = time.monotonic()
        await self.app(scope, receive, send)


def _commands_attached(home: Path) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    fd = os.open(home / CLIENTS_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock
    return False


def _watch_idle(home: Path, activity: _Activity, server: Any, minutes: float) -> None:
    limit = minutes * 60
    pause = min(30.0, max(limit / 4, 0.5))
    while not server.started and not server.should_exit:  # migrations can take a while
        time.sleep(0.5)
    activity.last = max(activity.last, time.monotonic())
    while not server.should_exit:
        time.sleep(pause)
        if time.monotonic() - activity.last >= limit and not _commands_attached(home):
            print(
                f"{_now()} idle for {minutes:g} min with no command attached: stopping", flush=True
            )
            server.should_exit = True


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def serve() -> None:  # pragma: no cover - runs in the server process (tests drive it end to end)
    """The server process: Prefect's API, UI and services on 127.0.0.1 and a free port."""
    import socket

    import uvicorn
    from prefect.server.api.server import create_app

    home = prefect_home()
    port = int(_env_number("OMBUDSMAN_SERVER_PORT", 0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    record = ServerRecord(pid=os.getpid(), port=port, started=_now(), log=str(home / LOG_FILE))
    activity = _Activity(create_app(final=True))
    config = uvicorn.Config(
        activity, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    minutes = idle_minutes()
    if minutes > 0:
        threading.Thread(
            target=_watch_idle, args=(home, activity, server, minutes), daemon=True
        ).start()
    write_json_atomic(home / STATE_FILE, asdict(record))
    print(
        f"{_now()} Prefect server for ombudsman on {record.url} (PREFECT_HOME={home})", flush=True
    )
    # uvicorn re-raises the SIGTERM it caught after shutting down: exit normally, so the record goes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run(sockets=[sock])
    finally:
        if (current := read_record(home)) and current.pid == os.getpid():
            (home / STATE_FILE).unlink(missing_ok=True)
        print(f"{_now()} stopped", flush=True)


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        sys.exit("usage: python -m prefect_ombudsman.localserver serve")
