"""How one operation runs: the executor registry, the state a job shares with its operations, and
the attempts loop (transient errors retried with backoff, cancellation at safe points, secrets
scrubbed). No Prefect here: whoever runs an operation (the runner's own threads, a Prefect task
in the flow's task runner, a Dask worker) calls `run_attempts` and reports its `Outcome`.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from prefect_ombudsman.connections import engine_for
from prefect_ombudsman.credentials import unseal
from prefect_ombudsman.dialects.base import driver_cause, is_transient
from prefect_ombudsman.errors import OmbudsmanError, OperationCancelled
from prefect_ombudsman.jobs.models import utcnow
from prefect_ombudsman.operations.context import OperationContext
from prefect_ombudsman.projects import find_project
from prefect_ombudsman.redaction import scrub, scrub_data

log = logging.getLogger("prefect_ombudsman.runner")

COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"


def env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


# ----------------------------------------------------------------------------- executors

Executor = Callable[[OperationContext, dict[str, Any]], Any]
EXECUTORS: dict[str, Executor] = {}
# executor -> the module that registered it (a Dask worker process imports it to find it)
EXECUTOR_MODULES: dict[str, str] = {}


def register_executor(name: str, function: Executor, module: str | None = None) -> None:
    """Flows register how their operations run; an operation looks its executor up by name."""
    EXECUTORS[name] = function
    module = module or sys._getframe(1).f_globals.get("__name__")
    if module and module != "__main__":
        EXECUTOR_MODULES[name] = module


def find_executor(name: str, job: Mapping[str, Any]) -> Executor | None:
    function = EXECUTORS.get(name)
    module = (job.get("executor_modules") or {}).get(name)
    if function is None and module:
        importlib.import_module(module)  # registers it (a Dask worker's first operation)
        function = EXECUTORS.get(name)
    return function


# ----------------------------------------------------------------------------- shared run state


@dataclass
class OperationRecord:
    started_at: datetime | None = None
    attempts: int = 0
    result: Any = None
    error: str | None = None
    cancelled: bool = False


@dataclass
class Outcome:
    """How an operation ended, whoever ran it."""

    status: str  # COMPLETED | FAILED | CANCELLED
    attempts: int = 0
    result: Any = None
    error: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    cached: bool = False

    def payload(self) -> dict[str, Any]:
        """A completed outcome as JSON (what a Prefect task of the operation returns)."""
        return {
            "result": self.result,
            "attempts": self.attempts,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "duration_ms": self.duration_ms,
        }


@dataclass
class RunBoard:
    """State shared by a flow run and its operation threads (same process)."""

    cancel_event: threading.Event = field(default_factory=threading.Event)
    contexts: dict[str, OperationContext] = field(default_factory=dict)
    records: dict[str, OperationRecord] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, operation_id: str) -> OperationRecord:
        with self.lock:
            return self.records.setdefault(operation_id, OperationRecord())

    def cancel(self) -> None:
        self.cancel_event.set()
        with self.lock:
            contexts = list(self.contexts.values())
        for ctx in contexts:
            ctx.fire_cancel_callbacks()


BOARDS: dict[str, RunBoard] = {}  # job id -> board, for operations run as Prefect tasks
BOARDS_LOCK = threading.Lock()


# ----------------------------------------------------------------------------- attempts


def backoff(attempt: int) -> float:
    base = env_float("OMBUDSMAN_RETRY_BASE_SECONDS", 1.0)
    cap = env_float("OMBUDSMAN_RETRY_MAX_SECONDS", 30.0)
    delay = min(cap, base * 2 ** (attempt - 1))
    return delay * (1 + 0.25 * random.random())


def _message(exc: Exception) -> str:
    return scrub(
        str(exc)
        if isinstance(exc, OmbudsmanError)
        else driver_cause(exc)  # the driver's error, not SQLAlchemy's wrapper text
        if isinstance(exc, SQLAlchemyError)
        else f"{type(exc).__name__}: {exc}"
    )


def _context(
    board: RunBoard, operation_id: str, job: Mapping[str, Any], job_id: str
) -> OperationContext:
    project_id = job.get("project_id")
    projects_dir = Path(job["projects_dir"])
    project_cache: dict[str, Any] = {}

    def resolve_engine(ref: Any) -> Any:
        if "project" not in project_cache:
            project_cache["project"] = find_project(project_id, projects_dir)
        return engine_for(ref, project=project_cache["project"], root=projects_dir)

    return OperationContext(
        job_id=job_id,
        operation_id=operation_id,
        project_id=project_id,
        projects_dir=projects_dir,
        cancel_event=board.cancel_event,
        resolve_engine=resolve_engine,
    )


def run_attempts(
    board: RunBoard,
    operation_id: str,
    executor: str,
    arguments: dict[str, Any],
    job: Mapping[str, Any],
    job_id: str,
    logger: Callable[[], Any] = lambda: log,
) -> Outcome:
    """Run one operation, retrying transient errors with backoff; `logger()` gives the logger of
    the operation's task run (asked for only when there is something to log)."""
    function = find_executor(executor, job)
    if function is None:
        raise OmbudsmanError(f"no executor {executor!r} registered for operation {operation_id}")
    record = board.record(operation_id)
    record.started_at = utcnow()
    ctx = _context(board, operation_id, job, job_id)
    with board.lock:
        board.contexts[operation_id] = ctx
    max_attempts = 1 + (int(job.get("max_retries", 0)) if job.get("retry_failed", True) else 0)
    started = time.perf_counter()

    def ended(status: str, **fields: Any) -> Outcome:
        return Outcome(
            status,
            attempts=record.attempts,
            started_at=record.started_at,
            completed_at=utcnow(),
            duration_ms=int((time.perf_counter() - started) * 1000),
            **fields,
        )

    try:
        for attempt in range(1, max_attempts + 1):
            record.attempts = ctx.attempt = attempt
            try:
                ctx.check_cancelled()
                result = scrub_data(function(ctx, unseal(arguments)))
            except OperationCancelled as exc:
                record.cancelled = True
                return ended(CANCELLED, error=str(exc))
            except Exception as exc:
                message = _message(exc)
                if is_transient(exc) and attempt < max_attempts:
                    delay = backoff(attempt)
                    logger().warning(  # the run's logs, not only the worker's stdout
                        "%s: transient error on attempt %d, retrying in %.2fs: %s",
                        operation_id,
                        attempt,
                        delay,
                        message,
                    )
                    if board.cancel_event.wait(delay):
                        record.cancelled = True
                        return ended(
                            CANCELLED,
                            error=f"operation {operation_id} stopped: job cancelled during retry wait",
                        )
                    continue
                record.error = message if attempt == 1 else f"{message} (after {attempt} attempts)"
                record.result = scrub_data(getattr(exc, "result", None))
                if not isinstance(exc, OmbudsmanError):
                    # unexpected: keep the traceback in the run's logs for whoever debugs it
                    logger().warning(
                        "%s failed unexpectedly: %s", operation_id, message, exc_info=exc
                    )
                return ended(FAILED, error=record.error, result=record.result)
            record.result = result
            return ended(COMPLETED, result=result)
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        with board.lock:
            board.contexts.pop(operation_id, None)
