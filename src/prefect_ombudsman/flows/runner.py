"""The bounded batch runner every batch flow is built on.

One operation = one Prefect task run named by its operation id. The flow thread submits in a
window of at most `max_parallel` operations, counts outcomes as they finish, keeps one progress
artifact up to date (throttled, flow thread only), watches for cancellation (also for in-process
runs, which Prefect itself never cancels), and ends in the states of SPEC §3.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib
import inspect
import json
import logging
import os
import random
import signal
import sys
import threading
import time
import typing
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import TerminationSignal
from prefect.states import Cancelled, Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from sqlalchemy.exc import SQLAlchemyError

from prefect_ombudsman import state_store
from prefect_ombudsman.atomic import write_json_atomic
from prefect_ombudsman.connections import get_engine
from prefect_ombudsman.credentials import unseal
from prefect_ombudsman.deployments import limits as database_limits
from prefect_ombudsman.dialects.base import driver_cause, is_transient
from prefect_ombudsman.errors import OmbudsmanError, OperationCancelled
from prefect_ombudsman.jobs.models import (
    BatchJobStatus,
    BatchJobType,
    BatchOperation,
    BatchOperationStatus,
    BatchProgress,
    utcnow,
)
from prefect_ombudsman.jobs.progress import ProgressCounter, compute_progress
from prefect_ombudsman.operations.context import OperationContext
from prefect_ombudsman.projects import find_project, projects_root
from prefect_ombudsman.redaction import install_log_filter, scrub, scrub_data
from prefect_ombudsman.reports import render_reports, write_reports
from prefect_ombudsman.state_store import SegmentLog, StateStore

log = logging.getLogger("prefect_ombudsman.runner")
RequestT = TypeVar("RequestT", bound=BaseModel)

PARTIAL_SUCCESS = "PartialSuccess"
CANCEL_GRACE_SECONDS = 1.5


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


# ----------------------------------------------------------------------------- plans and settings


@dataclass(frozen=True)
class OperationPlan:
    """One operation of a job, before it runs."""

    operation_id: str
    operation_type: str
    executor: str
    arguments: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobSettings:
    """The batch settings every request shares."""

    job_type: BatchJobType
    name: str
    description: str | None = None
    parallel_execution: bool = False
    max_parallel: int = 5
    stop_on_error: bool = False
    retry_failed: bool = True
    max_retries: int = 3
    project_id: str | None = None
    projects_dir: str | None = None
    tags: tuple[str, ...] = ()
    created_by: str | None = None
    # where operations run: None = OMBUDSMAN_DASK_ADDRESS or threads (see flows/dask.py)
    dask_address: str | None = None

    @property
    def window(self) -> int:
        return self.max_parallel if self.parallel_execution else 1

    def for_task(self) -> dict[str, Any]:
        """What an operation needs of the job (JSON, part of the task's cache key)."""
        return {
            "job_type": self.job_type.value,
            "project_id": self.project_id,
            "projects_dir": str(projects_root(self.projects_dir)),
            "retry_failed": self.retry_failed,
            "max_retries": self.max_retries,
        }


def request_from(
    model: type[RequestT], parameters: Mapping[str, Any], **overrides: Any
) -> RequestT:
    """A flow run's request model from its parameters (a None parameter takes the model's default)."""
    values = {k: v for k, v in parameters.items() if k in model.model_fields and v is not None}
    values.update(overrides)
    return model.model_validate(values)


def settings_from(request: Any, job_type: BatchJobType, projects_dir: str | None) -> JobSettings:
    """The runner settings of any batch request."""
    return JobSettings(
        job_type=job_type,
        name=request.job_name,
        description=request.description,
        parallel_execution=request.parallel_execution,
        max_parallel=request.max_parallel,
        stop_on_error=request.stop_on_error,
        retry_failed=request.retry_failed,
        max_retries=request.max_retries,
        project_id=getattr(request, "project_id", None),
        projects_dir=projects_dir,
        tags=tuple(request.tags),
        created_by=request.created_by,
        dask_address=getattr(request, "dask_address", None),
    )


def batch_flow(name: str) -> Callable[[Callable[..., Any]], Any]:
    """`@flow` of a batch job: its docstring is the flow's description (the Prefect UI shows it)
    and each parameter's description comes from its annotated type (the request models' fields),
    written into the docstring's Args section, which is where Prefect reads parameter docs."""

    def decorate(fn: Callable[..., Any]) -> Any:
        description = inspect.getdoc(fn) or ""
        hints = typing.get_type_hints(fn, include_extras=True)
        lines = []
        for param in inspect.signature(fn).parameters:
            info = next(
                (
                    m
                    for m in getattr(hints.get(param), "__metadata__", ())
                    if isinstance(m, FieldInfo)
                ),
                None,
            )
            if info is not None and info.description:
                lines.append(f"    {param}: {' '.join(info.description.split())}")
        fn.__doc__ = description + ("\n\nArgs:\n" + "\n".join(lines) if lines else "")
        return flow(
            name=name,
            description=description,
            task_runner=cast(
                Any, ThreadPoolTaskRunner(max_workers=64)
            ),  # Prefect's generic is invariant
            validate_parameters=True,
        )(fn)

    return decorate


database_limits.install()

Executor = Callable[[OperationContext, dict[str, Any]], Any]
EXECUTORS: dict[str, Executor] = {}
# executor -> the module that registered it (a Dask worker process imports it to find it)
EXECUTOR_MODULES: dict[str, str] = {}


def register_executor(name: str, function: Executor) -> None:
    """Flows register how their operations run; the task looks the executor up by name."""
    EXECUTORS[name] = function
    module = sys._getframe(1).f_globals.get("__name__")
    if module and module != "__main__":
        EXECUTOR_MODULES[name] = module


def _find_executor(name: str, job: Mapping[str, Any]) -> Executor | None:
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


_BOARDS: dict[str, RunBoard] = {}
_BOARDS_LOCK = threading.Lock()

# Process-local listeners (the CLI's progress bar): called from the flow thread.
Listener = Callable[[str, BatchOperation | None, BatchProgress], None]
LISTENERS: list[Listener] = []


# ----------------------------------------------------------------------------- the task


def _backoff(attempt: int) -> float:
    base = _env_float("OMBUDSMAN_RETRY_BASE_SECONDS", 1.0)
    cap = _env_float("OMBUDSMAN_RETRY_MAX_SECONDS", 30.0)
    delay = min(cap, base * 2 ** (attempt - 1))
    return delay * (1 + 0.25 * random.random())


def _task_logger() -> Any:
    try:
        return get_run_logger()
    except Exception:
        return log


def run_attempts(
    board: RunBoard,
    operation_id: str,
    executor: str,
    arguments: dict[str, Any],
    job: dict[str, Any],
    job_id: str,
) -> dict[str, Any] | State:
    """Run one operation, retrying transient errors with backoff; the engine of the task."""
    function = _find_executor(executor, job)
    if function is None:
        raise OmbudsmanError(f"no executor {executor!r} registered for operation {operation_id}")
    record = board.record(operation_id)
    record.started_at = utcnow()
    project_id = job.get("project_id")
    projects_dir = Path(job["projects_dir"])
    project_cache: dict[str, Any] = {}

    def resolve_engine(ref: Any) -> Any:
        if "project" not in project_cache:
            project_cache["project"] = find_project(project_id, projects_dir)
        return get_engine(ref, project=project_cache["project"], root=projects_dir)

    ctx = OperationContext(
        job_id=job_id,
        operation_id=operation_id,
        project_id=project_id,
        projects_dir=projects_dir,
        cancel_event=board.cancel_event,
        resolve_engine=resolve_engine,
    )
    with board.lock:
        board.contexts[operation_id] = ctx
    max_attempts = 1 + (int(job.get("max_retries", 0)) if job.get("retry_failed", True) else 0)
    started = time.perf_counter()
    try:
        for attempt in range(1, max_attempts + 1):
            record.attempts = ctx.attempt = attempt
            try:
                ctx.check_cancelled()
                result = scrub_data(function(ctx, unseal(arguments)))
            except OperationCancelled as exc:
                record.cancelled = True
                return Cancelled(message=str(exc))
            except Exception as exc:
                message = scrub(
                    str(exc)
                    if isinstance(exc, OmbudsmanError)
                    else driver_cause(exc)  # the driver's error, not SQLAlchemy's wrapper text
                    if isinstance(exc, SQLAlchemyError)
                    else f"{type(exc).__name__}: {exc}"
                )
                if is_transient(exc) and attempt < max_attempts:
                    delay = _backoff(attempt)
                    _task_logger().warning(  # the run's logs, not only the worker's stdout
                        "%s: transient error on attempt %d, retrying in %.2fs: %s",
                        operation_id,
                        attempt,
                        delay,
                        message,
                    )
                    if board.cancel_event.wait(delay):
                        record.cancelled = True
                        return Cancelled(
                            message=f"operation {operation_id} stopped: job cancelled during retry wait"
                        )
                    continue
                record.error = message if attempt == 1 else f"{message} (after {attempt} attempts)"
                record.result = scrub_data(getattr(exc, "result", None))
                if not isinstance(exc, OmbudsmanError):
                    # unexpected: keep the traceback in the run's logs for whoever debugs it
                    _task_logger().warning(
                        "%s failed unexpectedly: %s", operation_id, message, exc_info=exc
                    )
                # A failed outcome, not a crash: a Failed state without Prefect's traceback logging
                return Failed(message=record.error)
            record.result = result
            return {
                "result": result,
                "attempts": attempt,
                "started_at": record.started_at.isoformat(),
                "completed_at": utcnow().isoformat(),
                "duration_ms": int((time.perf_counter() - started) * 1000),
            }
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        with board.lock:
            board.contexts.pop(operation_id, None)


def _operation(
    operation_id: str, executor: str, arguments: dict[str, Any], job: dict[str, Any]
) -> Any:
    """One operation of a batch job (retries of transient errors happen inside)."""
    task_ctx = TaskRunContext.get()
    flow_run_id = (
        str(task_ctx.task_run.flow_run_id)
        if task_ctx and task_ctx.task_run.flow_run_id
        else "standalone"
    )
    event = job.get("dask_cancel_event")
    if event:  # in a Dask worker process: the job's board here, tripped by the job's Dask event
        from prefect_ombudsman.flows import dask

        board = dask.worker_board(flow_run_id, event, _BOARDS, _BOARDS_LOCK, RunBoard)
        try:
            outcome = run_attempts(board, operation_id, executor, arguments, job, flow_run_id)
            return _with_record(outcome, board.records.pop(operation_id, None))
        finally:
            dask.release_worker_board(flow_run_id, _BOARDS, _BOARDS_LOCK)
    with _BOARDS_LOCK:
        board = _BOARDS.get(flow_run_id) or RunBoard()
    with database_limits.operation_database_limits():  # per-database GCL slots, when set up
        return run_attempts(board, operation_id, executor, arguments, job, flow_run_id)


# A plain module-level function under the task, so a Dask worker unpickles it by reference.
execute_operation = task(
    name="operation",
    task_run_name="{operation_id}",
    persist_result=False,  # the runner's checkpoint persists results (see Checkpoint)
    cache_policy=NO_CACHE,
    retries=0,
)(_operation)


def _with_record(outcome: Any, record: OperationRecord | None) -> Any:
    """A failed or cancelled outcome of another process carries its record in the state's data
    (the flow reads it back with `_record_of`); a completed one carries it in its payload."""
    if not isinstance(outcome, State) or record is None:
        return outcome
    data = RemoteRecord(
        ombudsman_record={
            "started_at": record.started_at.isoformat() if record.started_at else None,
            "attempts": record.attempts,
            "result": record.result,
            "error": record.error,
            "cancelled": record.cancelled,
        }
    )
    return State(type=outcome.type, name=outcome.name, message=outcome.message, data=data)


class RemoteRecord(dict[str, Any]):
    """An operation record in a task state's data, with a short repr (the engine logs the state)."""

    def __repr__(self) -> str:
        raw = self.get("ombudsman_record") or {}
        return f"OperationRecord(attempts={raw.get('attempts')})"


def _record_of(state: State) -> OperationRecord | None:
    """The record a worker process sent back with a failed or cancelled state (see `_with_record`)."""
    if state.is_completed():
        return None
    data = state.data
    if data is not None and not isinstance(data, dict):
        try:  # the engine wraps a returned state's data in an (in-memory) result record
            data = state.result(raise_on_failure=False)
        except Exception:
            return None
    raw = data.get("ombudsman_record") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        return None
    return OperationRecord(
        started_at=_parse_time(raw.get("started_at")),
        attempts=int(raw.get("attempts") or 0),
        result=raw.get("result"),
        error=raw.get("error"),
        cancelled=bool(raw.get("cancelled")),
    )


# ----------------------------------------------------------------------------- flow-side helpers


class Checkpoint:
    """Completed operations of a job, one JSON line each, kept in Prefect result storage.

    A retry of the flow run (same job id: Prefect's Retry, `prefect flow-run retry`, the jobs
    service), on any worker that shares the result storage, restores completed operations from
    here and executes only the others. The flow thread only queues a line per completed operation;
    a background writer stores queued lines as the next append-only segment
    (`ombudsman/checkpoints/<job_id>/<seq>.jsonl`, see `state_store.SegmentLog`), flushed at the
    end of the job and on SIGTERM. Lines carry a fingerprint of the operation's inputs, so changed
    inputs re-run. It replaces Prefect's per-task result caching, which costs a cache transaction
    and result-file I/O per operation.
    """

    def __init__(self, store: StateStore, job_id: str) -> None:
        self.log = SegmentLog(
            store, job_id, _env_float("OMBUDSMAN_CHECKPOINT_INTERVAL_SECONDS", 0.1)
        )

    @staticmethod
    def fingerprint(plan: OperationPlan) -> str:
        raw = json.dumps([plan.executor, plan.arguments], sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def load(self) -> dict[str, dict[str, Any]]:
        return {
            entry["operation_id"]: entry
            for entry in self.log.load()
            if isinstance(entry.get("operation_id"), str)
        }

    def append(self, plan: OperationPlan, op: BatchOperation) -> None:
        try:
            entry = {
                "operation_id": op.operation_id,
                "fingerprint": self.fingerprint(plan),
                "result": op.result,
                "started_at": op.started_at.isoformat() if op.started_at else None,
                "completed_at": op.completed_at.isoformat() if op.completed_at else None,
                "duration_ms": op.duration_ms,
                "attempts": (op.metadata or {}).get("attempts"),
            }
            self.log.append(json.dumps(entry, default=str))
        except (TypeError, ValueError) as exc:
            log.warning("could not checkpoint %s: %s", op.operation_id, exc)

    def close(self) -> None:
        if not self.log.close(timeout=_env_float("OMBUDSMAN_CHECKPOINT_FLUSH_SECONDS", 60.0)):
            log.warning(
                "the checkpoint of job %s is not fully stored (%s): a retry runs the missing "
                "operations again",
                self.log.job_id,
                self.log.error,
            )


class CancelWatcher:
    """Polls the flow run's state and trips the board when it reads Cancelling/Cancelled."""

    def __init__(self, flow_run_id: Any, board: RunBoard, interval: float) -> None:
        self.flow_run_id = flow_run_id
        self.board = board
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="ombudsman-cancel-watcher", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            with get_client(sync_client=True) as client:
                while not self._stop.wait(self.interval):
                    try:
                        state = client.read_flow_run(self.flow_run_id).state
                    except Exception as exc:  # a slow API must not end the job
                        log.debug("cancel watcher: %s", exc)
                        continue
                    if state is not None and (state.is_cancelling() or state.is_cancelled()):
                        self.board.cancel()
                        return
        except Exception as exc:
            log.warning("cancel watcher stopped: %s", exc)


def _duration(ms: int | None) -> str:
    if ms is None:
        return "unknown until an operation finishes"
    seconds = max(0, round(ms / 1000))
    if seconds < 90:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 90:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def progress_markdown(
    settings: JobSettings,
    progress: BatchProgress,
    status: BatchJobStatus,
    extra: dict[str, Any] | None = None,
) -> str:
    """The progress card a person reads on the run page: counts, what runs now, time left."""
    finished = (
        progress.completed_operations + progress.failed_operations + progress.skipped_operations
    )
    running = status == BatchJobStatus.running
    lines = [
        f"## {settings.name}: {status.value.replace('_', ' ')}",
        "",
        f"**{finished} of {progress.total_operations}** operations finished "
        f"({progress.percent_complete:.0f}%)",
        "",
        "| completed | failed | skipped | left |",
        "|---:|---:|---:|---:|",
        f"| {progress.completed_operations} | {progress.failed_operations} | "
        f"{progress.skipped_operations} | {max(progress.total_operations - finished, 0)} |",
        "",
    ]
    if running:
        current = progress.current_operation
        lines.append(f"Running now: `{current}`" if current else "Running now: starting")
        lines.append("")
        lines.append(f"Estimated time left: {_duration(progress.estimated_time_remaining_ms)}")
    elif extra and extra.get("report_path"):
        lines.append(f"Report: `{extra['report_path']}`")
    lines += ["", f"_{settings.job_type.value}, updated {utcnow():%Y-%m-%d %H:%M:%S} UTC_"]
    return "\n".join(lines)


class ProgressReporter:
    """One progress artifact (counters as JSON in its description, read by the jobs service) and
    one markdown card a person reads, per job; written from the flow thread only, throttled."""

    def __init__(self, settings: JobSettings, interval: float) -> None:
        self.settings = settings
        self.interval = interval
        self.artifact_id: Any = None
        self.card_id: Any = None
        self._last = 0.0

    def _update_card(
        self, progress: BatchProgress, status: BatchJobStatus, extra: dict[str, Any] | None
    ) -> None:
        if self.card_id is None:
            return
        try:
            from prefect.client.schemas.actions import ArtifactUpdate

            with get_client(sync_client=True) as client:
                client.update_artifact(
                    self.card_id,
                    ArtifactUpdate(data=progress_markdown(self.settings, progress, status, extra)),
                )
        except Exception as exc:
            log.warning("could not update the progress card: %s", exc)

    def _description(
        self, progress: BatchProgress, status: BatchJobStatus, extra: dict[str, Any] | None = None
    ) -> str:
        return json.dumps(
            {
                "job_status": status.value,
                "job_type": self.settings.job_type.value,
                **progress.model_dump(),
                **(extra or {}),
            }
        )

    def start(self, progress: BatchProgress) -> None:
        try:
            self.artifact_id = create_progress_artifact(
                progress=0.0, description=self._description(progress, BatchJobStatus.running)
            )
        except Exception as exc:
            log.warning("could not create the progress artifact: %s", exc)
        try:
            slug = self.settings.job_type.value.replace("_", "-")
            self.card_id = create_markdown_artifact(
                key=f"ombudsman-{slug}-progress",
                markdown=progress_markdown(self.settings, progress, BatchJobStatus.running),
                description=f"Progress of {self.settings.name}",
            )
        except Exception as exc:
            log.warning("could not create the progress card: %s", exc)
        self._last = time.monotonic()

    def due(self) -> bool:
        return self.artifact_id is not None and time.monotonic() - self._last >= self.interval

    def update(
        self,
        progress: BatchProgress,
        status: BatchJobStatus = BatchJobStatus.running,
        force: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        now = time.monotonic()
        if self.artifact_id is None or (not force and now - self._last < self.interval):
            return
        self._last = now
        try:
            update_progress_artifact(
                artifact_id=self.artifact_id,
                progress=progress.percent_complete,
                description=self._description(progress, status, extra),
            )
        except Exception as exc:
            log.warning("could not update the progress artifact: %s", exc)
        self._update_card(progress, status, extra)


@contextmanager
def _deferred_termination() -> Iterator[None]:
    """Hold a SIGTERM while the job's report and final state are written, then deliver it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if received and callable(previous):
            previous(signal.SIGTERM, None)


def _run_is_cancelling(flow_run_id: Any) -> bool:
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state
    except Exception:
        return False
    return state is not None and (state.is_cancelling() or state.is_cancelled())


def crash_unfinished_task_runs(flow_run_id: Any) -> int:
    """Mark Crashed the task runs an earlier attempt of this flow run left Running or Pending
    (its process was killed): a retried job shows no operation running that nothing runs."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    try:
        with get_client(sync_client=True) as client:
            stale = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                task_run_filter=TaskRunFilter(
                    state=TaskRunFilterState(
                        type=TaskRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
                    )
                ),
            )
            for task_run in stale:
                client.set_task_run_state(
                    task_run.id,
                    Crashed(message="its flow-run process stopped (the job was retried)"),
                    force=True,
                )
    except Exception as exc:  # the retry itself must not fail on this clean-up
        log.warning("could not mark the task runs of %s crashed: %s", flow_run_id, exc)
        return 0
    return len(stale)


def _tag_flow_run(flow_run: Any, settings: JobSettings) -> None:
    wanted = {"ombudsman", f"job-type:{settings.job_type.value}"}
    if settings.project_id:
        wanted.add(f"project:{settings.project_id}")
    wanted.update(settings.tags)
    if wanted.issubset(set(flow_run.tags or ())):
        return
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.id, tags=sorted(set(flow_run.tags or ()) | wanted))
    except Exception as exc:
        log.warning("could not tag the flow run: %s", exc)


def _notify(event: str, op: BatchOperation | None, progress: BatchProgress) -> None:
    for listener in list(LISTENERS):
        try:
            listener(event, op, progress)
        except Exception as exc:
            log.debug("progress listener failed: %s", exc)


def _apply_outcome(op: BatchOperation, state: State, record: OperationRecord | None) -> None:
    """Turn a finished task state (and the operation's own record) into the operation's fields."""
    now = utcnow()
    if state.is_completed():
        payload = state.result(raise_on_failure=False)
        if isinstance(payload, dict) and "result" in payload:
            op.result = payload.get("result")
            op.started_at = _parse_time(payload.get("started_at")) or op.started_at
            op.completed_at = _parse_time(payload.get("completed_at")) or now
            op.duration_ms = payload.get("duration_ms")
            attempts = payload.get("attempts")
        else:
            op.result, op.completed_at, attempts = payload, now, None
        op.status = BatchOperationStatus.completed
        op.metadata = {
            **(op.metadata or {}),
            "attempts": attempts,
            "cached": state.name == "Cached",
        }
        return
    if record is not None and record.started_at is not None:
        op.started_at = record.started_at
    op.completed_at = now
    if op.started_at is not None:
        op.duration_ms = int((now - op.started_at).total_seconds() * 1000)
    if state.is_cancelled() or (record is not None and record.cancelled):
        op.status = BatchOperationStatus.skipped
        op.error = "cancelled while running"
        return
    op.status = BatchOperationStatus.failed
    if record is not None and record.error:
        op.error = record.error
        op.result = record.result
    else:
        op.error = scrub(state.message or f"task ended {state.name}")
    if record is not None:
        op.metadata = {**(op.metadata or {}), "attempts": record.attempts}


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def write_retry_selection(
    job_id: str, operation_ids: list[str], storage: str | None = None
) -> None:
    """The operations the next retry of the job runs (the others keep their outcome), stored in
    the result storage the job recorded (`storage`, a block slug) or the default one."""
    state_store.write_retry_selection(state_store.store_for(storage), job_id, operation_ids)


def store_job_report(
    summary: dict[str, Any],
    rendered: Mapping[str, str] | None = None,
    store: StateStore | None = None,
    files: Mapping[str, str] | None = None,
) -> bool:
    """The job report (its CSV/JUnit/HTML renderings, other `files` by name) into result storage
    under the job id."""
    named = {state_store.REPORT_FILES[kind]: text for kind, text in (rendered or {}).items()}
    named.update(files or {})
    named[state_store.REPORT_FILES["json"]] = json.dumps(summary, indent=2, default=str)
    try:
        state_store.write_job_files(store or state_store.run_store(), summary["job_id"], named)
    except Exception as exc:
        log.warning("could not store the report of job %s: %s", summary.get("job_id"), exc)
        return False
    return True


def _previous_outcomes(
    settings: JobSettings, store: StateStore, job_id: str
) -> dict[str, dict[str, Any]]:
    """Operations of the job's last report (what a partial retry keeps): stored, else local."""
    data = store.read_json(state_store.job_key(job_id, "report.json"))
    if not isinstance(data, dict):
        try:
            data = json.loads(
                (_report_dir(settings) / f"batch_{job_id}.json").read_text(encoding="utf-8")
            )
        except (OSError, json.JSONDecodeError):
            return {}
    ops = data.get("operations") if isinstance(data, dict) else None
    return {op["operation_id"]: op for op in ops or [] if isinstance(op, dict)}


def _report_dir(settings: JobSettings) -> Path:
    root = projects_root(settings.projects_dir)
    project = find_project(settings.project_id, root) if settings.project_id else None
    return project.results_dir if project else root / ".ombudsman" / "jobs"


def _status_of(completed: int, failed: int, cancelled: bool) -> BatchJobStatus:
    if cancelled:
        return BatchJobStatus.cancelled
    if failed and completed:
        return BatchJobStatus.partial_success
    if failed:
        return BatchJobStatus.failed
    return BatchJobStatus.completed


def _publish(settings: JobSettings, ops: list[BatchOperation], summary: dict[str, Any]) -> None:
    slug = settings.job_type.value.replace("_", "-")
    rows = [
        {
            "operation_id": op.operation_id,
            "type": op.operation_type,
            "status": op.status.value,
            "duration_ms": op.duration_ms,
            "attempts": (op.metadata or {}).get("attempts"),
            "error": (op.error or "")[:300],
        }
        for op in ops
    ]
    lines = [
        f"# {settings.name}",
        "",
        f"**{summary['status']}**: {summary['completed']} completed, {summary['failed']} failed, "
        f"{summary['skipped']} skipped of {summary['total_operations']} operations "
        f"in {summary['duration_ms'] / 1000:.1f} s.",
        "",
    ]
    failed = [op for op in ops if op.status == BatchOperationStatus.failed]
    if failed:
        lines += ["## Failed operations", ""]
        lines += [
            f"- `{op.operation_id}`: {(op.error or '').splitlines()[0][:300] if op.error else ''}"
            for op in failed[:50]
        ]
        if len(failed) > 50:
            lines.append(f"- ... and {len(failed) - 50} more")
    lines += ["", f"Report: `{summary['report_path']}`"]
    try:
        create_table_artifact(
            key=f"ombudsman-{slug}-operations",
            table=rows,
            description=f"Operations of {settings.name}",
        )
        create_markdown_artifact(
            key=f"ombudsman-{slug}-summary", markdown="\n".join(lines), description=settings.name
        )
    except Exception as exc:
        log.warning("could not publish the job artifacts: %s", exc)


# ----------------------------------------------------------------------------- the runner


def run_batch(settings: JobSettings, plans: Iterable[OperationPlan]) -> Any:
    """Run `plans` inside the current flow run and return the summary (or a terminal State)."""
    install_log_filter()
    install_failed_run_filter()
    flow_ctx = FlowRunContext.get()
    if flow_ctx is None or flow_ctx.flow_run is None:
        raise RuntimeError("run_batch must be called inside a flow run")
    flow_run = flow_ctx.flow_run
    job_id = str(flow_run.id)
    logger = get_run_logger()
    plans = list(plans)
    ops = {
        p.operation_id: BatchOperation(
            operation_id=p.operation_id, operation_type=p.operation_type, metadata=dict(p.metadata)
        )
        for p in plans
    }
    if len(ops) != len(plans):
        raise OmbudsmanError("duplicate operation ids in one job")
    board = RunBoard()
    with _BOARDS_LOCK:
        _BOARDS[job_id] = board
    _tag_flow_run(flow_run, settings)
    crash_unfinished_task_runs(flow_run.id)
    started_at = utcnow()
    window = settings.window
    counter = ProgressCounter(len(ops), window)
    store = state_store.run_store()
    checkpoint = Checkpoint(store, job_id)
    try:  # unreadable storage fails the run: a completed operation must not run twice
        restored = checkpoint.load()
        selection = state_store.take_retry_selection(store, job_id)
        previous = _previous_outcomes(settings, store, job_id) if selection is not None else {}
    except state_store.StateStoreError:
        with _BOARDS_LOCK:
            _BOARDS.pop(job_id, None)
        raise
    pending: deque[OperationPlan] = deque()
    for plan in plans:
        entry = restored.get(plan.operation_id)
        if entry is None or entry.get("fingerprint") != Checkpoint.fingerprint(plan):
            kept = previous.get(plan.operation_id)
            if selection is not None and plan.operation_id not in selection and kept:
                # a partial retry: this operation keeps its last outcome
                op = ops[plan.operation_id] = BatchOperation.model_validate(kept)
                counter.finished(op)
                continue
            pending.append(plan)
            continue
        op = ops[plan.operation_id]
        op.status = BatchOperationStatus.completed
        op.result = entry.get("result")
        op.started_at = _parse_time(entry.get("started_at"))
        op.completed_at = _parse_time(entry.get("completed_at"))
        op.duration_ms = entry.get("duration_ms")
        op.metadata = {**(op.metadata or {}), "attempts": entry.get("attempts"), "cached": True}
        counter.finished(op)
    if restored or selection is not None:
        logger.info(
            "Retry of job %s: %d operations restored or kept, %d to run",
            job_id,
            len(plans) - len(pending),
            len(pending),
        )
    progress = counter.snapshot()
    reporter = ProgressReporter(settings, _env_float("OMBUDSMAN_PROGRESS_INTERVAL_SECONDS", 1.0))
    reporter.start(progress)
    _notify("start", None, progress)
    try:
        submitter = _submitter(settings, job_id, flow_ctx)
        submitter.__enter__()
    except Exception as exc:
        with _BOARDS_LOCK:
            _BOARDS.pop(job_id, None)
        reporter.update(progress, BatchJobStatus.failed, force=True)
        raise OmbudsmanError(f"could not start the job's task runner: {exc}") from exc
    watcher = CancelWatcher(flow_run.id, board, _env_float("OMBUDSMAN_CANCEL_POLL_SECONDS", 0.5))
    watcher.start()
    job_payload = submitter.job_payload(settings.for_task(), dict(EXECUTOR_MODULES))
    inflight: dict[cf.Future[Any], OperationPlan] = {}
    stop_reason: str | None = None
    cancel_seen_at: float | None = None
    logger.info(
        "Job %s (%s): %d operations, %s, window %d, on %s",
        job_id,
        settings.job_type.value,
        len(plans),
        "parallel" if settings.parallel_execution else "sequential",
        window,
        submitter.describe,
    )
    terminated: TerminationSignal | None = None
    try:
        while pending or inflight:
            if board.cancel_event.is_set() and stop_reason is None:
                stop_reason = "job cancelled"
                cancel_seen_at = time.monotonic()
                submitter.cancel()
                logger.warning("Cancellation requested: no new operation starts")
            while pending and len(inflight) < window and stop_reason is None:
                plan = pending.popleft()
                op = ops[plan.operation_id]
                op.status = BatchOperationStatus.running
                op.started_at = utcnow()
                future = submitter.submit(
                    execute_operation,
                    {
                        "operation_id": plan.operation_id,
                        "executor": plan.executor,
                        "arguments": plan.arguments,
                        "job": job_payload,
                    },
                )
                inflight[future] = plan
                counter.started(plan.operation_id)
                if LISTENERS:
                    _notify("started", op, counter.snapshot())
            if not inflight:
                break
            done = submitter.wait(list(inflight), timeout=0.1)
            for wrapped in done:
                plan = inflight.pop(wrapped)
                op = ops[plan.operation_id]
                try:
                    state = wrapped.result()
                except Exception as exc:  # the engine itself failed around the task
                    state = Failed(message=scrub(str(exc)))
                _apply_outcome(op, state, board.records.get(plan.operation_id) or _record_of(state))
                counter.finished(op)
                if op.status == BatchOperationStatus.completed:
                    checkpoint.append(plan, op)
                if op.status == BatchOperationStatus.failed:
                    logger.warning("%s failed: %s", op.operation_id, op.error)
                    if settings.stop_on_error and stop_reason is None:
                        stop_reason = f"stop_on_error after {op.operation_id} failed"
                        logger.warning("Stopping: %s", stop_reason)
                if LISTENERS:
                    _notify("finished", op, counter.snapshot())
            if reporter.due():
                reporter.update(counter.snapshot())
            if (
                cancel_seen_at is not None
                and inflight
                and time.monotonic() - cancel_seen_at > CANCEL_GRACE_SECONDS
            ):
                for plan in inflight.values():
                    op = ops[plan.operation_id]
                    op.status = BatchOperationStatus.skipped
                    op.error = "cancelled while running (did not stop within the grace period)"
                    op.completed_at = utcnow()
                submitter.abandon(list(inflight))
                inflight.clear()
    except TerminationSignal as exc:
        # A worker (runner) cancels by SIGTERM, usually before our watcher's next poll. When the
        # run is being cancelled, stop cleanly: operations see the cancel, the report is written,
        # the run reads Cancelled at once; then the signal goes on to the engine.
        if not _run_is_cancelling(flow_run.id):
            raise
        terminated = exc
        board.cancel()
        submitter.cancel()
        stop_reason = "job cancelled"
        logger.warning("Cancellation requested (termination signal): no new operation starts")
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS / 2
        while inflight and time.monotonic() < deadline:
            if all(w.done() for w in inflight):
                break
            submitter.wait([w for w in inflight if not w.done()], timeout=0.1)
        for wrapped, plan in inflight.items():
            op = ops[plan.operation_id]
            if wrapped.done():
                try:
                    state = wrapped.result()
                    _apply_outcome(
                        op, state, board.records.get(plan.operation_id) or _record_of(state)
                    )
                except Exception:
                    op.status = BatchOperationStatus.skipped
                if op.status == BatchOperationStatus.completed:
                    checkpoint.append(plan, op)
            else:
                op.status = BatchOperationStatus.skipped
                op.error = "cancelled while running"
                op.completed_at = utcnow()
        inflight.clear()
    finally:
        checkpoint.close()
        watcher.stop()
        try:
            submitter.__exit__(None, None, None)
        except Exception as exc:
            logger.warning("could not close the job's %s: %s", submitter.describe, exc)
        with _BOARDS_LOCK:
            _BOARDS.pop(job_id, None)
    with _deferred_termination():
        if board.cancel_event.is_set() and stop_reason is None:
            stop_reason = "job cancelled"
        for plan in pending:
            op = ops[plan.operation_id]
            op.status = BatchOperationStatus.skipped
            op.error = f"not started: {stop_reason}"
        op_list = list(ops.values())
        progress = compute_progress(op_list, parallelism=window)
        cancelled = board.cancel_event.is_set()
        status = _status_of(progress.completed_operations, progress.failed_operations, cancelled)
        completed_at = utcnow()
        report_path = _report_dir(settings) / f"batch_{job_id}.json"
        summary: dict[str, Any] = {
            "job_id": job_id,
            "job_type": settings.job_type.value,
            "name": settings.name,
            "status": status.value,
            "project_id": settings.project_id,
            "total_operations": len(op_list),
            "completed": progress.completed_operations,
            "failed": progress.failed_operations,
            "skipped": progress.skipped_operations,
            "started_at": started_at.isoformat(),
            "completed_at": completed_at.isoformat(),
            "duration_ms": int((completed_at - started_at).total_seconds() * 1000),
            "operations": [scrub_data(op.model_dump(mode="json")) for op in op_list],
            "report_path": str(report_path),
            "report_id": uuid.uuid4().hex,  # which report is the job's latest (local copies may lag)
            "state_storage": store.slug,
        }
        rendered: dict[str, str] = {}
        try:
            rendered = render_reports(summary)
            report_path.parent.mkdir(parents=True, exist_ok=True)
            summary["reports"] = write_reports(summary, report_path, rendered)
        except (OSError, ValueError) as exc:
            logger.warning("could not write the CSV/JUnit/HTML reports of %s: %s", report_path, exc)
        try:
            write_json_atomic(report_path, summary)
        except OSError as exc:
            logger.warning("could not write the job report %s: %s", report_path, exc)
            summary["report_path"] = None
        store_job_report(summary, rendered, store)
        reporter.update(
            progress,
            status,
            force=True,
            extra={k: summary[k] for k in ("report_path", "report_id", "state_storage")},
        )
        _publish(settings, op_list, summary)
        _notify("end", None, progress)
        message = state_message(summary)
        logger.info("Job %s %s: %s", job_id, status.value, message)
        if status == BatchJobStatus.cancelled:
            # Read Cancelled at once: under a worker the runner would only mark it seconds later.
            try:
                with get_client(sync_client=True) as client:
                    client.set_flow_run_state(
                        flow_run.id,
                        Cancelled(message=f"cancelled on request: {message}"),
                        force=True,
                    )
            except Exception as exc:
                logger.warning("could not mark the run cancelled: %s", exc)
        if terminated is not None:
            raise terminated
        return final_state(status, JobSummary(summary))


class _ThreadSubmitter:
    """Operations as task runs of the flow's own task runner (threads of the flow's process)."""

    describe = "threads"

    def __enter__(self) -> _ThreadSubmitter:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def job_payload(self, payload: dict[str, Any], executor_modules: dict[str, str]) -> dict:
        return payload

    def submit(self, task: Any, parameters: dict[str, Any]) -> cf.Future[Any]:
        return task.submit(**parameters).wrapped_future

    def wait(self, futures: list[Any], timeout: float) -> set[Any]:
        done, _ = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return done

    def cancel(self) -> None:
        pass  # the operations share the flow's board, already tripped

    def abandon(self, futures: list[Any]) -> None:
        pass


def _submitter(settings: JobSettings, job_id: str, flow_ctx: Any) -> Any:
    """Threads, or a Dask cluster when the job's settings, `OMBUDSMAN_DASK_ADDRESS` or the flow's
    own task runner (a `DaskTaskRunner`) say so (see flows/dask.py)."""
    from prefect_ombudsman.flows import dask

    address = dask.resolve_address(settings.dask_address)
    flow_runner = getattr(flow_ctx, "task_runner", None)
    if address is not None:
        return dask.DaskSubmitter(address, settings.window, job_id)
    if type(flow_runner).__name__ == "DaskTaskRunner":
        return dask.DaskSubmitter(None, settings.window, job_id, task_runner=flow_runner)
    return _ThreadSubmitter()


class JobSummary(dict[str, Any]):
    """A job's summary as a flow run's result: a dict with a short repr.

    Prefect's engine, run under a worker, raises the state's result after a Failed state and
    puts its repr in the message ("Unexpected result for failed state: ..."); this keeps that
    short and lets `SuppressFailedRunTraceback` recognise our own deliberate failure."""

    def __repr__(self) -> str:
        return (
            f"JobSummary({self.get('status')}: {self.get('completed')} of "
            f"{self.get('total_operations')} completed)"
        )


def state_message(summary: Mapping[str, Any]) -> str:
    """`3 of 4 operations completed, 1 failed` (and skipped, when any)."""
    message = (
        f"{summary['completed']} of {summary['total_operations']} operations completed, "
        f"{summary['failed']} failed"
    )
    return message + (f", {summary['skipped']} skipped" if summary.get("skipped") else "")


def final_state(status: BatchJobStatus, summary: JobSummary) -> State:
    """The terminal state a batch flow returns: its name and a one-line message, the summary as data."""
    message = state_message(summary)
    if status == BatchJobStatus.cancelled:
        return Cancelled(message=f"cancelled on request: {message}", data=summary)
    if status == BatchJobStatus.partial_success:
        return Failed(name=PARTIAL_SUCCESS, message=message, data=summary)
    if status == BatchJobStatus.failed:
        return Failed(message=message, data=summary)
    return Completed(message=message, data=summary)


class SuppressFailedRunTraceback(logging.Filter):
    """Drop the engine's "Engine execution exited with unexpected exception" record when the
    exception is only the engine failing to turn our JobSummary into an exception: the run ended
    Failed/PartialSuccess on purpose and its state message says why (a real crash still logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (
            isinstance(exc, TypeError)
            and "JobSummary cannot be resolved into an exception" in str(exc)
        )


def install_failed_run_filter() -> None:
    target = logging.getLogger("prefect.flow_runs")
    if not any(isinstance(f, SuppressFailedRunTraceback) for f in target.filters):
        target.addFilter(SuppressFailedRunTraceback())
