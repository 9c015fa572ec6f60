"""A warm execution service behind `ombudsman run …`: one per Prefect home, beside the local server.

Every `ombudsman run …` used to import Prefect, SQLAlchemy, the engines and the dialects and set up
a Prefect client before any work: 1-2 s per command. The first `run` command of a Prefect home
that uses the shared local server (docs/local-service.md) now starts one service process that
imports all of that once, records itself in `$PREFECT_HOME/ombudsman-exec.json` and listens on the
Unix socket `$PREFECT_HOME/ombudsman-exec.sock` (mode 0600; a peer of another user is refused by
its SO_PEERCRED uid). Later `run` commands are thin clients: they send one JSON request (the flow
by module and name, its parameters, the label, the working directory and the environment), and
the service **forks** a child per job. The child runs the flow as the command did in process (the
same credential sealing, parameter size check, `flow(**parameters, return_state=True)`, progress
listeners) and streams JSON lines back: progress bar operations, then the outcome (the summary, or
an error and its exit code). The service process itself never starts a Prefect client, thread or
event loop, so every child starts clean; it never reads a request (only the forked child does), so
inline credentials reach only the child's memory, never the service's log.

Start-up is serialised by an exclusive lock on `ombudsman-exec.lock`; a record whose process is
gone, is not our service, or was started from other code (another Python or a changed package)
is replaced. The service stops after `OMBUDSMAN_SERVER_IDLE_MINUTES` (as the server) without a
job, or on `ombudsman server stop`; its log is `$PREFECT_HOME/ombudsman-exec.log` (service events
only: never parameters).

Run as `python -m prefect_ombudsman.execservice serve`, this module is the service process.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect_ombudsman import localserver
from prefect_ombudsman.atomic import write_json_atomic
from prefect_ombudsman.errors import OmbudsmanError
from prefect_ombudsman.file_locks import exclusive

STATE_FILE = "ombudsman-exec.json"
LOCK_FILE = "ombudsman-exec.lock"
SOCKET_FILE = "ombudsman-exec.sock"
LOG_FILE = "ombudsman-exec.log"
STARTING_FILE = "ombudsman-exec.starting"
_MARKER = "prefect_ombudsman.execservice"
PROTOCOL = 1
_MAX_REQUEST_BYTES = 256 * 1024 * 1024

# Imported once by the service, before it forks a child per job (missing optional ones are skipped).
PRELOAD = (
    "prefect",
    "prefect.flows",
    "prefect.settings",
    "prefect.context",
    "prefect.client.orchestration",
    "prefect.task_runners",
    "prefect.artifacts",
    "prefect.logging",
    "pydantic",
    "sqlalchemy",
    "sqlalchemy.dialects.postgresql",
    "sqlalchemy.dialects.sqlite",
    "duckdb",
    "duckdb_engine",
    "psycopg",
    "pyarrow",
    "prefect_ombudsman.credentials",
    "prefect_ombudsman.connections",
    "prefect_ombudsman.jobs.service",
    "prefect_ombudsman.admission",
    "prefect_ombudsman.operations.builtin",
    "prefect_ombudsman.validation.execution",
    "prefect_ombudsman.validation.comparison",
    "prefect_ombudsman.metadata.extract",
    "prefect_ombudsman.datagen",
    "prefect_ombudsman.cli",
)


class ExecServiceError(OmbudsmanError):
    """The warm execution service could not be started or reached."""


@dataclass(frozen=True)
class ExecRecord:
    """What `ombudsman-exec.json` says about the running service."""

    pid: int
    socket: str
    started: str
    log: str
    python: str
    fingerprint: str


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _log(message: str) -> None:
    print(f"{_now()} [{os.getpid()}] {message}", flush=True)


def fingerprint() -> str:
    """The code a service runs: this Python environment (`sys.prefix`, whichever alias of its
    interpreter started the command), this package's folder and its newest source file."""
    package = Path(__file__).resolve().parent
    newest = 0
    for folder, _dirs, files in os.walk(package):
        for name in files:
            if name.endswith(".py"):
                with contextlib.suppress(OSError):
                    newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime_ns)
    return f"{sys.prefix}|{sys.version}|{package}|{newest}"


def _truthy_off(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("0", "false", "no", "off")


def wanted() -> bool:
    """Whether `run` commands of this process go through the service: only with the shared local
    server (no configured Prefect API, no `--no-daemon`), not with `OMBUDSMAN_EXEC_SERVICE=0`, and
    only where Unix sockets, `fork` and `fcntl` exist. Call it before the server is connected."""
    if _truthy_off("OMBUDSMAN_EXEC_SERVICE") or localserver.daemon_disabled():
        return False
    if localserver.fcntl is None or not hasattr(os, "fork") or not hasattr(socket, "AF_UNIX"):
        return False
    return localserver.configured_api_url() is None


# ------------------------------------------------------------------ records and lifecycle


def read_record(home: Path) -> ExecRecord | None:
    try:
        data = json.loads((home / STATE_FILE).read_text(encoding="utf-8"))
        return ExecRecord(
            pid=int(data["pid"]),
            socket=str(data["socket"]),
            started=str(data["started"]),
            log=str(data["log"]),
            python=str(data["python"]),
            fingerprint=str(data["fingerprint"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_service_process(pid: int) -> bool:
    """Whether `pid` is alive and is one of our services (not a reused pid)."""
    return localserver.runs_module(pid, _MARKER)


def find(home: Path | None = None) -> ExecRecord | None:
    """The running service of this Prefect home that runs this code, if any."""
    home = home or localserver.prefect_home()
    record = read_record(home)
    if (
        record
        and record.fingerprint == fingerprint()
        and is_service_process(record.pid)
        and Path(record.socket).exists()
    ):
        return record
    return None


_STARTING: dict[Path, tuple[int, subprocess.Popen[bytes] | None]] = {}


def _starting_pid(home: Path) -> int | None:
    try:
        return int((home / STARTING_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _start_or_join(home: Path) -> ExecRecord | tuple[int, subprocess.Popen[bytes] | None]:
    """Under the start-up lock: the running service, or the pid (and process, if this command
    started it) of the one starting. `ombudsman-exec.starting` names a service that is starting,
    so commands arriving meanwhile wait for it instead of starting another."""
    record = find(home)
    if record:
        return record
    starting = _starting_pid(home)
    if starting and is_service_process(starting):
        return starting, None
    _replace_stale(home)
    process = _spawn(home)
    (home / STARTING_FILE).write_text(str(process.pid))
    return process.pid, process


def prestart(home: Path | None = None) -> None:
    """Start the service in the background if none runs (the server starts meanwhile); `ensure`
    then waits for it. Errors are left to `ensure`."""
    home = home or localserver.prefect_home()
    if home in _STARTING or find(home):
        return
    with contextlib.suppress(OSError, OmbudsmanError):
        with exclusive(home / LOCK_FILE, label="the execution service's start-up lock", timeout=5):
            started = _start_or_join(home)
            if isinstance(started, tuple):
                _STARTING[home] = started


def ensure(home: Path | None = None) -> ExecRecord:
    """The service of this Prefect home, started if none runs (exactly one across processes)."""
    home = home or localserver.prefect_home()
    timeout = localserver.startup_timeout()
    started = _STARTING.pop(home, None)
    if started is None:
        record = find(home)
        if record:
            return record
        with exclusive(
            home / LOCK_FILE, label="the execution service's start-up lock", timeout=timeout + 60
        ):
            joined = _start_or_join(home)
        if isinstance(joined, ExecRecord):
            return joined
        started = joined
    pid, process = started
    answered = _wait_started(home, pid, process, time.monotonic() + timeout)
    if answered:
        return answered
    record = find(home)
    if record:
        return record
    if process is not None:
        localserver._terminate(process.pid, ours=is_service_process)
    raise ExecServiceError(
        f"the execution service did not start within {timeout:g} s; its log: {home / LOG_FILE}"
    )


def _replace_stale(home: Path) -> None:
    """Under the start-up lock: stop a service of other code (its running jobs finish) and drop a
    stale record and socket."""
    record = read_record(home)
    if record and is_service_process(record.pid):
        _log_line(home, f"replacing service pid {record.pid} (other code or not answering)")
        localserver._terminate(record.pid, ours=is_service_process)
    (home / STATE_FILE).unlink(missing_ok=True)
    (home / SOCKET_FILE).unlink(missing_ok=True)
    (home / STARTING_FILE).unlink(missing_ok=True)


def _log_line(home: Path, message: str) -> None:
    with contextlib.suppress(OSError), (home / LOG_FILE).open("a", encoding="utf-8") as log:
        log.write(f"{_now()} [{os.getpid()}] {message}\n")


def _spawn(home: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    return localserver.spawn_detached(home, _MARKER, LOG_FILE, env)


def _wait_started(
    home: Path, pid: int, process: subprocess.Popen[bytes] | None, deadline: float
) -> ExecRecord | None:
    pause = 0.02
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ExecServiceError(
                f"the execution service exited with code {process.returncode} while starting; "
                f"its log: {home / LOG_FILE}"
            )
        if process is None and not is_service_process(pid):
            return None
        record = read_record(home)
        if record and record.pid == pid:
            return record
        time.sleep(pause)
        pause = min(pause * 1.5, 0.25)
    return None


def stop(home: Path | None = None) -> ExecRecord | None:
    """Stop the service of this Prefect home (jobs it is running go on); its record, if it ran."""
    home = home or localserver.prefect_home()
    if not home.exists():
        return None
    with exclusive(home / LOCK_FILE, label="the execution service's start-up lock"):
        starting = _starting_pid(home)
        if starting and is_service_process(starting):
            localserver._terminate(starting, ours=is_service_process)
        record = read_record(home)
        running = bool(record and is_service_process(record.pid))
        if record and running:
            localserver._terminate(record.pid, ours=is_service_process)
        (home / STATE_FILE).unlink(missing_ok=True)
        (home / SOCKET_FILE).unlink(missing_ok=True)
        (home / STARTING_FILE).unlink(missing_ok=True)
        return record if running else None


def status(home: Path | None = None) -> dict[str, Any]:
    """Whether the service runs, its pid, socket, start time and log."""
    home = home or localserver.prefect_home()
    record = read_record(home)
    running = bool(record and is_service_process(record.pid))
    return {
        "running": running,
        "current": bool(running and record and record.fingerprint == fingerprint()),
        "pid": record.pid if record and running else None,
        "socket": record.socket if record and running else None,
        "started": record.started if record and running else None,
        "jobs_running": _children_of(record.pid) if record and running else 0,
        "log": str(home / LOG_FILE),
    }


def _children_of(pid: int) -> int:
    try:
        return len(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return 0


# ------------------------------------------------------------------ the job itself (both sides)


def resolve(reference: str) -> Any:
    """`module:attribute` -> the object."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def reference_of(obj: Any) -> str | None:
    """`module:attribute` naming `obj` (a flow or a module-level function), if importable so."""
    if obj is None:
        return None
    if isinstance(obj, str):
        return obj
    target = getattr(obj, "fn", obj)  # a Prefect flow wraps its function
    module_name = getattr(target, "__module__", None)
    module = sys.modules.get(module_name or "")
    if module is None or module_name == "__main__":
        return None
    for name in (getattr(target, "__name__", None), getattr(obj, "__name__", None)):
        if name and getattr(module, name, None) is obj:
            return f"{module_name}:{name}"
    for name, value in vars(module).items():
        if value is obj:
            return f"{module_name}:{name}"
    return None


def run_flow(
    flow: Any,
    parameters: dict[str, Any],
    *,
    label: str,
    progress: Any,
    extra_progress: Any = None,
    controls: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run a batch flow in this process with `progress` (a rich Progress or the service's proxy of
    one); the outcome: `{"summary": …}` or `{"error": message, "code": exit code}`.

    Ctrl-C (in the main thread) or `controls["cancel"](reason)` (any thread) cancel the job as
    `ombudsman jobs cancel` does: it ends Cancelled with its summary. A second Ctrl-C interrupts."""
    import prefect.settings as ps
    from prefect.settings import temporary_settings

    from prefect_ombudsman import credentials
    from prefect_ombudsman.flows import runner
    from prefect_ombudsman.jobs.service import RequestTooLarge, check_parameter_size

    if os.environ.get("PREFECT_API_URL"):  # the server `connect` chose, whenever Prefect loaded
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()
    if isinstance(flow, str):
        flow = resolve(flow)
    # Inline credentials stay in this process: the flow run's parameters keep references only.
    parameters, sealed = credentials.seal(parameters, credentials.memory_store)
    try:
        check_parameter_size(parameters)
    except RequestTooLarge as exc:
        credentials.forget(sealed)
        return {"error": str(exc), "code": 2}

    bar: dict[str, Any] = {}
    job: dict[str, Any] = {}
    lock = threading.Lock()

    def cancel(reason: str) -> None:
        with lock:
            if "cancel" in job:
                return
            job["cancel"] = reason
            job_id = job.get("id")
        if job_id:
            _cancel_in_background(job_id, reason)

    def listener(event: str, op: Any, state: Any) -> None:
        if event == "start":
            bar["id"] = progress.add_task(label, total=state.total_operations or 1, status="")
            with lock:
                job["id"] = _current_flow_run_id()
                reason = job.get("cancel")
            if reason and job["id"]:
                _cancel_in_background(job["id"], reason)
        elif "id" in bar:
            finished = (
                state.completed_operations + state.failed_operations + state.skipped_operations
            )
            status = f"{state.failed_operations} failed" if state.failed_operations else ""
            progress.update(bar["id"], completed=finished, status=status)

    if controls is not None:
        controls["cancel"] = cancel
        if controls.get("requested"):
            cancel(controls["requested"])
    stop_listening = runner.LISTENERS.add(listener)
    detach = extra_progress(progress) if extra_progress is not None else None
    try:
        with (
            _ctrl_c_cancels(cancel),
            progress,
            temporary_settings(updates={ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
        ):
            state = flow(**parameters, return_state=True)
    finally:
        stop_listening()
        credentials.forget(sealed)
        if detach is not None:
            detach()
    summary = state.result(raise_on_failure=False)
    if not isinstance(summary, dict):
        message = str(state.message or state.name)
        return {"error": message, "code": 2 if "validation" in message.lower() else 1}
    return {"summary": summary}


CANCEL_NOTICE = "cancelling the job (press Ctrl-C again to stop waiting)\n"


@contextlib.contextmanager
def _ctrl_c_cancels(cancel: Callable[[str], None]) -> Any:
    """In the main thread: the first Ctrl-C cancels the job, a second one interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed: list[int] = []

    def on_sigint(signum: int, frame: Any) -> None:
        if pressed:
            raise KeyboardInterrupt
        pressed.append(signum)
        sys.stderr.write(CANCEL_NOTICE)
        cancel("Ctrl-C in the command that started the job")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _current_flow_run_id() -> str | None:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return str(context.flow_run.id) if context and context.flow_run else None


def _cancel_in_background(job_id: str, reason: str) -> None:
    def work() -> None:
        from prefect_ombudsman.jobs.service import cancel_job

        try:
            cancel_job(job_id, reason)
        except Exception as exc:  # noqa: BLE001 - e.g. the job ended meanwhile
            print(f"could not cancel job {job_id}: {type(exc).__name__}", file=sys.stderr)

    threading.Thread(target=work, name="ombudsman-cancel", daemon=True).start()


# ------------------------------------------------------------------ the command side


class ServiceLost(ExecServiceError):
    """The service (or the job's child) went away before the job's outcome arrived."""


def _address(path: str) -> tuple[str, int | None]:
    """A socket address for `path` (AF_UNIX paths hold at most 107 bytes: a long one is reached
    through its folder's descriptor); the descriptor to close afterwards."""
    if len(os.fsencode(path)) < 100:
        return path, None
    folder, name = os.path.split(path)
    fd = os.open(folder, os.O_RDONLY)
    return f"/proc/self/fd/{fd}/{name}", fd


def _connect(path: str, timeout: float = 10.0) -> socket.socket:
    address, fd = _address(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.settimeout(None)
        return sock
    except OSError:
        sock.close()
        raise
    finally:
        if fd is not None:
            os.close(fd)


def submit(
    flow: Any,
    parameters: dict[str, Any],
    *,
    label: str,
    progress: Any,
    extra_progress: Any = None,
    warn: Callable[[str], None] = lambda message: None,
) -> dict[str, Any] | None:
    """Run the job in the warm service, showing its progress on `progress`; its outcome, or None
    when the service cannot take it (then run in process; `warn` was told why)."""
    flow_ref = reference_of(flow)
    extra_ref = reference_of(extra_progress)
    if flow_ref is None or (extra_progress is not None and extra_ref is None):
        warn(
            "the job names a flow the warm execution service cannot import; running in this process"
        )
        return None
    home = localserver.prefect_home()
    request = {
        "protocol": PROTOCOL,
        "flow": flow_ref,
        "extra_progress": extra_ref,
        "parameters": parameters,
        "label": label,
        "env": dict(os.environ),
        "client_pid": os.getpid(),
    }
    try:
        request["cwd"] = os.getcwd()
    except OSError:
        request["cwd"] = str(home)
    sock: socket.socket | None = None
    for attempt in range(2):
        try:
            record = ensure(home)
            sock = _connect(record.socket)
            break
        except (OSError, OmbudsmanError) as exc:
            if attempt == 0 and isinstance(exc, OSError):
                with contextlib.suppress(OSError, OmbudsmanError):
                    stop(home)  # a record without a listening service: start a new one
                continue
            warn(f"the warm execution service is unavailable ({exc}); running in this process")
            return None
    assert sock is not None
    try:
        sock.sendall(json.dumps(request, default=str).encode() + b"\n")
    except OSError as exc:
        sock.close()
        warn(f"the warm execution service is unavailable ({exc}); running in this process")
        return None
    return _stream(sock, progress, home)


def _stream(sock: socket.socket, progress: Any, home: Path) -> dict[str, Any]:
    """Replay the child's progress on `progress` until the outcome; Ctrl-C / SIGTERM cancel."""
    tasks: dict[int, Any] = {}
    reader = sock.makefile("rb")
    cancelled = False
    previous_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, on_term)
    try:
        with progress:
            while True:
                try:
                    outcome = _next(reader, progress, tasks, home)
                except KeyboardInterrupt:
                    if cancelled:  # a second Ctrl-C: stop waiting (the child sees us gone)
                        raise
                    cancelled = True
                    sys.stderr.write(CANCEL_NOTICE)
                    with contextlib.suppress(OSError):
                        sock.sendall(b'{"op": "cancel"}\n')
                    continue
                if outcome is not None:
                    return outcome
    except ServiceLost as exc:
        return {"error": str(exc), "code": 1}
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous_term)
        reader.close()
        sock.close()


def _next(reader: Any, progress: Any, tasks: dict[int, Any], home: Path) -> dict[str, Any] | None:
    """Apply the next line from the child; the outcome when it is the last one."""
    line = reader.readline()
    if not line:
        raise ServiceLost(
            "the execution service stopped during the job (the job may still be running: "
            f"`ombudsman jobs list`); its log: {home / LOG_FILE}"
        )
    message = json.loads(line)
    kind = message.get("e")
    if kind == "add_task":
        tasks[message["id"]] = progress.add_task(
            message["description"], total=message.get("total"), **message["fields"]
        )
    elif kind == "update" and message["id"] in tasks:
        progress.update(tasks[message["id"]], **message["fields"])
    elif kind == "outcome":
        outcome: dict[str, Any] = message["outcome"]
        return outcome
    return None


# ------------------------------------------------------------------ the job's child (service side)


class _Channel:
    """JSON lines to the client; a client gone away counts as a cancel."""

    def __init__(self, sock: socket.socket, on_gone: Callable[[], None]) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.gone = False
        self.on_gone = on_gone

    def send(self, message: dict[str, Any]) -> None:
        if self.gone:
            return
        data = json.dumps(message, default=str).encode() + b"\n"
        try:
            with self.lock:
                self.sock.sendall(data)
        except OSError:
            self.gone = True
            self.on_gone()


class ProgressProxy:
    """The part of rich's Progress the flow's listeners use, sent to the client's real bar."""

    def __init__(self, channel: _Channel) -> None:
        self.channel = channel
        self.next_id = 0
        self.lock = threading.Lock()

    def __enter__(self) -> ProgressProxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def add_task(self, description: str, total: float | None = 100.0, **fields: Any) -> int:
        with self.lock:
            task_id = self.next_id
            self.next_id += 1
        self.channel.send(
            {"e": "add_task", "id": task_id, "description": description, "total": total}
            | {"fields": fields}
        )
        return task_id

    def update(self, task_id: int, **fields: Any) -> None:
        self.channel.send({"e": "update", "id": task_id, "fields": fields})

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.channel.send({"e": "update", "id": task_id, "fields": {"advance": advance}})


def _run_child(conn: socket.socket, home: Path) -> int:
    """In the forked child: read the request, run the job, send the outcome."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    reader = conn.makefile("rb")
    raw = reader.readline(_MAX_REQUEST_BYTES)
    if not raw:
        return 0
    finished = threading.Event()
    controls: dict[str, Any] = {}

    def interrupt() -> None:  # the client asked, or went away: cancel the job as Ctrl-C does
        if finished.is_set():
            return
        reason = "Ctrl-C or SIGTERM of the command that started the job"
        controls.setdefault("requested", reason)
        if "cancel" in controls:
            controls["cancel"](reason)

    channel = _Channel(conn, interrupt)
    try:
        request = json.loads(raw)
        if request.get("protocol") != PROTOCOL:
            raise ExecServiceError(f"protocol {request.get('protocol')!r}, expected {PROTOCOL}")
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()
        localserver.attach(home)
        _log(f"job {request['label']} for client pid {request.get('client_pid')}")

        def watch() -> None:  # a cancel line or the client gone: interrupt the job
            for line in reader:
                if b"cancel" in line:
                    interrupt()
            interrupt()

        threading.Thread(target=watch, name="ombudsman-exec-client", daemon=True).start()
        flow = resolve(request["flow"])
        extra = resolve(request["extra_progress"]) if request.get("extra_progress") else None
        outcome = run_flow(
            flow,
            request["parameters"],
            label=request["label"],
            progress=ProgressProxy(channel),
            extra_progress=extra,
            controls=controls,
        )
    except KeyboardInterrupt:
        outcome = {"error": "Aborted: the job was interrupted before it ended", "code": 1}
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the command
        from prefect_ombudsman.credentials import mask_text

        message = mask_text(f"{type(exc).__name__}: {exc}")
        _log(f"job failed: {message}")
        outcome = {"error": message, "code": 1}
    finished.set()
    channel.send({"e": "outcome", "outcome": outcome})
    _log(f"job ended: {'summary' if 'summary' in outcome else 'exit ' + str(outcome['code'])}")
    return 0


def _child_main(conn: socket.socket, listener: socket.socket, home: Path) -> None:
    """The forked child's whole life; it never returns into the service's loop."""
    code = 1
    try:
        listener.close()
        code = _run_child(conn, home)
    except BaseException:  # noqa: BLE001
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            conn.close()
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()  # Prefect flushes its log and event workers at exit
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


# ------------------------------------------------------------------ the service process


def _peer_uid(conn: socket.socket) -> int | None:
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    _pid, uid, _gid = struct.unpack("3i", raw)
    return uid


def _preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - an optional extra not installed
            _log(f"preload {name}: {type(exc).__name__}")
    # every job type's flow (with its executors), the built-in dialects, validators and
    # job-finished hooks: from their registries, so a renamed module is never missed
    with contextlib.suppress(Exception):
        from prefect_ombudsman.jobs.types import JOB_TYPES

        for entry in JOB_TYPES:
            entry.load_flow()
    for warm_up in (
        "prefect_ombudsman.operations.registry:operation_sources",
        "prefect_ombudsman.dialects.registry:dialect_classes",
        "prefect_ombudsman.validation.registry:available_validators",
        "prefect_ombudsman.flows.finish:plugin_hooks",
    ):
        module, _, function = warm_up.partition(":")
        try:
            getattr(importlib.import_module(module), function)()
        except Exception as exc:  # noqa: BLE001 - a plugin that fails loads at job time instead
            _log(f"preload {warm_up}: {type(exc).__name__}")


def serve() -> None:  # pragma: no cover - runs in the service process (tests drive it end to end)
    """The service process: preload, listen, fork a child per job, stop when idle."""
    home = localserver.prefect_home()
    started = time.monotonic()
    _preload()
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others:
        _log(f"warning: threads running before the first fork: {others}")
    path = home / SOCKET_FILE
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous_umask = os.umask(0o177)
    try:
        address, fd = _address(str(path))
        try:
            listener.bind(address)
        finally:
            if fd is not None:
                os.close(fd)
    finally:
        os.umask(previous_umask)
    os.chmod(path, 0o600)
    listener.listen(64)
    record = ExecRecord(
        pid=os.getpid(),
        socket=str(path),
        started=_now(),
        log=str(home / LOG_FILE),
        python=sys.executable,
        fingerprint=fingerprint(),
    )
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    write_json_atomic(home / STATE_FILE, asdict(record))
    if _starting_pid(home) == os.getpid():
        (home / STARTING_FILE).unlink(missing_ok=True)
    _log(
        f"execution service for ombudsman on {path} (PREFECT_HOME={home}; "
        f"ready in {time.monotonic() - started:.1f} s)"
    )
    minutes = localserver.idle_minutes()
    children: set[int] = set()
    last = time.monotonic()
    uid = os.getuid()
    try:
        while not stopping:
            try:
                ready, _, _ = select.select([listener], [], [], 0.5)
            except InterruptedError:  # pragma: no cover - retried by Python itself
                ready = []
            while children:
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    children.clear()
                    break
                if pid == 0:
                    break
                children.discard(pid)
                last = time.monotonic()
            if ready:
                conn, _ = listener.accept()
                if _peer_uid(conn) != uid:
                    _log("refused a connection of another user")
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    _child_main(conn, listener, home)
                conn.close()
                children.add(pid)
                last = time.monotonic()
            if minutes > 0 and not children and time.monotonic() - last >= minutes * 60:
                _log(f"idle for {minutes:g} min with no job: stopping")
                break
    finally:
        listener.close()
        if (current := read_record(home)) and current.pid == os.getpid():
            (home / STATE_FILE).unlink(missing_ok=True)
            path.unlink(missing_ok=True)
        _log(f"stopped ({len(children)} job(s) still running finish on their own)")


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        sys.exit("usage: python -m prefect_ombudsman.execservice serve")
