"""The bounded batch runner every batch flow is built on.

One operation = one Prefect task run named by its operation id. The flow thread submits in a
window of at most `max_parallel` operations, counts outcomes as they finish, keeps one progress
artifact up to date (throttled, flow thread only), watches for cancellation (also for in-process
runs, which Prefect itself never cancels), and ends in the states of SPEC §3. The parts live
beside it: `execution` (one operation's attempts), `submitters` and `taskruns` (where operations
run and how their task runs are recorded), `checkpoint` (what a retry skips), `progress`, and
`finish` (summary, job-finished hooks such as the reports, final state).
"""

from __future__ import annotations

import inspect
import json
import signal
import threading
import time
import typing
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.context import FlowRunContext
from prefect.exceptions import TerminationSignal
from prefect.states import Crashed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from prefect_ombudsman import state_store
from prefect_ombudsman.deployments import limits as database_limits
from prefect_ombudsman.errors import OmbudsmanError
from prefect_ombudsman.flows.checkpoint import Checkpoint, restore
from prefect_ombudsman.flows.execution import (
    BOARDS,
    BOARDS_LOCK,
    CANCELLED,
    COMPLETED,
    EXECUTOR_MODULES,
    EXECUTORS,
    Executor,
    OperationRecord,
    Outcome,
    RunBoard,
    env_float,
    log,
    register_executor,
    run_attempts,
)
from prefect_ombudsman.flows.finish import (
    PARTIAL_SUCCESS,
    FinishedJob,
    JobSummary,
    SuppressFailedRunTraceback,
    build_summary,
    final_state,
    install_failed_run_filter,
    mark_cancelled,
    on_finished,
    publish,
    run_finished_hooks,
    state_message,
)
from prefect_ombudsman.flows.progress import (
    CancelWatcher,
    ProgressReporter,
    progress_markdown,
    together,
)
from prefect_ombudsman.flows.submitters import choose_submitter, execute_operation
from prefect_ombudsman.jobs.models import (
    BatchJobStatus,
    BatchJobType,
    BatchOperation,
    BatchOperationStatus,
    BatchProgress,
    utcnow,
)
from prefect_ombudsman.jobs.progress import ProgressCounter
from prefect_ombudsman.progress_listeners import Listeners
from prefect_ombudsman.projects import find_project, projects_root
from prefect_ombudsman.redaction import install_log_filter
from prefect_ombudsman.state_store import StateStore, store_job_report

RequestT = TypeVar("RequestT", bound=BaseModel)
CANCEL_GRACE_SECONDS = 1.5

__all__ = [
    "CANCEL_GRACE_SECONDS",
    "EXECUTORS",
    "EXECUTOR_MODULES",
    "LISTENERS",
    "PARTIAL_SUCCESS",
    "Checkpoint",
    "Executor",
    "FinishedJob",
    "JobSettings",
    "JobSummary",
    "OperationPlan",
    "OperationRecord",
    "RunBoard",
    "SuppressFailedRunTraceback",
    "batch_flow",
    "crash_unfinished_task_runs",
    "execute_operation",
    "final_state",
    "on_finished",
    "progress_markdown",
    "register_executor",
    "request_from",
    "run_attempts",
    "run_batch",
    "settings_from",
    "state_message",
    "store_job_report",
    "write_retry_selection",
]


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

# The CLI's and the execution service's progress bars: called from the flow thread with
# (event, operation or None, progress); events "start", "started", "finished", "end".
LISTENERS: Listeners[[str, BatchOperation | None, BatchProgress]] = Listeners("job progress")


# ----------------------------------------------------------------------------- flow-run helpers


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


def crash_unfinished_task_runs(flow_run_id: Any) -> int:
    """Mark Crashed the task runs an earlier attempt of this flow run left Running or Pending
    (its process was killed): a retried job shows no operation running that nothing runs."""
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


def _run_is_cancelling(flow_run_id: Any) -> bool:
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state
    except Exception:
        return False
    return state is not None and (state.is_cancelling() or state.is_cancelled())


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


def write_retry_selection(
    job_id: str, operation_ids: list[str], storage: str | None = None
) -> None:
    """The operations the next retry of the job runs (the others keep their outcome), stored in
    the result storage the job recorded (`storage`, a block slug) or the default one."""
    state_store.write_retry_selection(state_store.store_for(storage), job_id, operation_ids)


def _previous_outcomes(
    settings: JobSettings, store: StateStore, job_id: str
) -> dict[str, dict[str, Any]]:
    """Operations of the job's last report (what a partial retry keeps): stored, else local."""
    data = store.read_json(state_store.job_key(job_id, "report.json"))
    if not isinstance(data, dict):
        try:
            data = json.loads(
                (report_dir(settings) / f"batch_{job_id}.json").read_text(encoding="utf-8")
            )
        except (OSError, json.JSONDecodeError):
            return {}
    ops = data.get("operations") if isinstance(data, dict) else None
    return {op["operation_id"]: op for op in ops or [] if isinstance(op, dict)}


def report_dir(settings: JobSettings) -> Path:
    """Where the job's local report goes: its project's `results/`, else the projects root's
    `.ombudsman/jobs/`."""
    root = projects_root(settings.projects_dir)
    project = find_project(settings.project_id, root) if settings.project_id else None
    return project.results_dir if project else root / ".ombudsman" / "jobs"


# ----------------------------------------------------------------------------- the runner


def apply_outcome(op: BatchOperation, outcome: Outcome) -> None:
    """An operation's fields from how it ended."""
    op.completed_at = outcome.completed_at or utcnow()
    op.started_at = outcome.started_at or op.started_at
    op.duration_ms = outcome.duration_ms
    if op.duration_ms is None and op.started_at is not None and outcome.status != COMPLETED:
        op.duration_ms = int((op.completed_at - op.started_at).total_seconds() * 1000)
    if outcome.status == COMPLETED:
        op.status = BatchOperationStatus.completed
        op.result = outcome.result
        op.metadata = {
            **(op.metadata or {}),
            "attempts": outcome.attempts or None,
            "cached": outcome.cached,
        }
    elif outcome.status == CANCELLED:
        op.status = BatchOperationStatus.skipped
        op.error = "cancelled while running"
    else:
        op.status = BatchOperationStatus.failed
        op.error = outcome.error
        op.result = outcome.result
        if outcome.attempts:
            op.metadata = {**(op.metadata or {}), "attempts": outcome.attempts}


@dataclass
class _Job:
    """One call of `run_batch`: the state its parts share (flow thread only)."""

    settings: JobSettings
    plans: list[OperationPlan]
    flow_ctx: Any
    logger: Any
    ops: dict[str, BatchOperation]
    board: RunBoard = field(default_factory=RunBoard)
    started_at: datetime = field(default_factory=utcnow)
    pending: deque[OperationPlan] = field(default_factory=deque)
    inflight: dict[Any, OperationPlan] = field(default_factory=dict)
    stop_reason: str | None = None
    cancel_seen_at: float | None = None
    terminated: TerminationSignal | None = None
    counter: Any = None
    store: Any = None
    checkpoint: Any = None
    reporter: Any = None
    submitter: Any = None
    watcher: Any = None

    @property
    def job_id(self) -> str:
        return str(self.flow_ctx.flow_run.id)

    @property
    def window(self) -> int:
        return self.settings.window

    # ------------------------------------------------------------------ start

    def restore(self) -> None:
        """Checkpoint and retry selection: what this run still has to execute."""
        self.store = state_store.run_store()
        self.checkpoint = Checkpoint(self.store, self.job_id)
        restored = restore(
            self.plans,
            self.ops,
            self.checkpoint,
            self.store,
            self.job_id,
            lambda: _previous_outcomes(self.settings, self.store, self.job_id),
        )
        self.pending.extend(restored.pending)
        for op in restored.finished:
            self.counter.finished(op)
        if restored.retried:
            self.logger.info(
                "Retry of job %s: %d operations restored or kept, %d to run",
                self.job_id,
                len(self.plans) - len(self.pending),
                len(self.pending),
            )

    def open(self) -> None:
        """The progress artifact, where operations run, and the cancel watcher."""
        progress = self.counter.snapshot()
        self.reporter = ProgressReporter(
            self.settings, env_float("OMBUDSMAN_PROGRESS_INTERVAL_SECONDS", 1.0)
        )
        self.reporter.start(progress)
        LISTENERS.notify("start", None, progress)
        try:
            self.submitter = choose_submitter(self.settings, self.board, self.job_id, self.flow_ctx)
            self.submitter.__enter__()
        except Exception as exc:
            self.reporter.update(progress, BatchJobStatus.failed, force=True)
            raise OmbudsmanError(f"could not start the job's task runner: {exc}") from exc
        self.watcher = CancelWatcher(
            self.flow_ctx.flow_run.id, self.board, env_float("OMBUDSMAN_CANCEL_POLL_SECONDS", 0.5)
        )
        self.watcher.start()
        self.logger.info(
            "Job %s (%s): %d operations, %s, window %d, on %s",
            self.job_id,
            self.settings.job_type.value,
            len(self.plans),
            "parallel" if self.settings.parallel_execution else "sequential",
            self.window,
            self.submitter.describe,
        )

    # ------------------------------------------------------------------ the window loop

    def run(self) -> None:
        """Submit into the window, collect what finished, until nothing is left or it stops."""
        job = self.submitter.job_payload(self.settings.for_task(), dict(EXECUTOR_MODULES))
        while self.pending or self.inflight:
            self.see_cancel()
            self.fill(job)
            if not self.inflight:
                break
            for future in self.submitter.wait(list(self.inflight), timeout=0.1):
                self.collect(future)
            if self.reporter.due():
                self.reporter.update(self.counter.snapshot())
            self.expire_grace()

    def see_cancel(self) -> None:
        if self.board.cancel_event.is_set() and self.stop_reason is None:
            self.stop_reason = "job cancelled"
            self.cancel_seen_at = time.monotonic()
            self.submitter.cancel()
            self.logger.warning("Cancellation requested: no new operation starts")

    def fill(self, job: dict[str, Any]) -> None:
        while self.pending and len(self.inflight) < self.window and self.stop_reason is None:
            plan = self.pending.popleft()
            op = self.ops[plan.operation_id]
            op.status = BatchOperationStatus.running
            op.started_at = utcnow()
            self.inflight[self.submitter.submit(plan, job)] = plan
            self.counter.started(plan.operation_id)
            if LISTENERS:
                LISTENERS.notify("started", op, self.counter.snapshot())

    def collect(self, future: Any) -> None:
        plan = self.inflight.pop(future)
        op = self.ops[plan.operation_id]
        apply_outcome(op, self.submitter.outcome(future, plan.operation_id))
        self.counter.finished(op)
        if op.status == BatchOperationStatus.completed:
            self.checkpoint.append(plan, op)
        elif op.status == BatchOperationStatus.failed:
            self.logger.warning("%s failed: %s", op.operation_id, op.error)
            if self.settings.stop_on_error and self.stop_reason is None:
                self.stop_reason = f"stop_on_error after {op.operation_id} failed"
                self.logger.warning("Stopping: %s", self.stop_reason)
        if LISTENERS:
            LISTENERS.notify("finished", op, self.counter.snapshot())

    def expire_grace(self) -> None:
        """Operations that did not stop within the grace period after a cancel end skipped."""
        if self.cancel_seen_at is None or not self.inflight:
            return
        if time.monotonic() - self.cancel_seen_at <= CANCEL_GRACE_SECONDS:
            return
        for plan in self.inflight.values():
            op = self.ops[plan.operation_id]
            op.status = BatchOperationStatus.skipped
            op.error = "cancelled while running (did not stop within the grace period)"
            op.completed_at = utcnow()
        self.submitter.abandon(list(self.inflight))
        self.inflight.clear()

    # ------------------------------------------------------------------ stop

    def on_termination(self, exc: TerminationSignal) -> None:
        """A worker (runner) cancels by SIGTERM, usually before our watcher's next poll. When the
        run is being cancelled, stop cleanly: operations see the cancel, the report is written,
        the run reads Cancelled at once; then the signal goes on to the engine."""
        if not _run_is_cancelling(self.flow_ctx.flow_run.id):
            raise exc
        self.terminated = exc
        self.board.cancel()
        self.submitter.cancel()
        self.stop_reason = "job cancelled"
        self.logger.warning("Cancellation requested (termination signal): no new operation starts")
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS / 2
        while self.inflight and time.monotonic() < deadline:
            running = [f for f in self.inflight if not f.done()]
            if not running:
                break
            self.submitter.wait(running, timeout=0.1)
        for future in [f for f in self.inflight if f.done()]:
            self.collect(future)
        for plan in self.inflight.values():
            op = self.ops[plan.operation_id]
            op.status = BatchOperationStatus.skipped
            op.error = "cancelled while running"
            op.completed_at = utcnow()
        self.inflight.clear()

    def close(self) -> None:
        """Flush the checkpoint, stop the watcher and the submitter (it ends open task runs)."""
        if self.checkpoint is not None:
            self.checkpoint.close()
        if self.watcher is not None:
            self.watcher.stop()
        if self.submitter is not None:
            try:
                self.submitter.__exit__(None, None, None)
            except Exception as exc:
                self.logger.warning(
                    "could not close the job's %s: %s", self.submitter.describe, exc
                )
        with BOARDS_LOCK:
            BOARDS.pop(self.job_id, None)

    # ------------------------------------------------------------------ end

    def finish(self) -> Any:
        """Summary, job-finished hooks (reports), artifacts, final progress and state."""
        if self.board.cancel_event.is_set() and self.stop_reason is None:
            self.stop_reason = "job cancelled"
        for plan in self.pending:
            op = self.ops[plan.operation_id]
            op.status = BatchOperationStatus.skipped
            op.error = f"not started: {self.stop_reason}"
        operations = list(self.ops.values())
        status, progress, summary = build_summary(
            self.settings,
            self.job_id,
            operations,
            cancelled=self.board.cancel_event.is_set(),
            started_at=self.started_at,
            report_path=report_dir(self.settings) / f"batch_{self.job_id}.json",
            store=self.store,
        )
        # the hooks' files, the artifacts and the last progress update do not wait on each other
        extra = {k: summary.get(k) for k in ("report_path", "report_id", "state_storage")}
        together(
            lambda: run_finished_hooks(
                FinishedJob(summary, self.settings, self.store, operations, self.logger),
                self.logger,
            ),
            lambda: publish(self.settings, operations, summary),
            lambda: self.reporter.update(progress, status, force=True, extra=extra),
        )
        LISTENERS.notify("end", None, progress)
        message = state_message(summary)
        self.logger.info("Job %s %s: %s", self.job_id, status.value, message)
        if status == BatchJobStatus.cancelled:
            mark_cancelled(self.flow_ctx.flow_run.id, message, self.logger)
        if self.terminated is not None:
            raise self.terminated
        return final_state(status, JobSummary(summary))


def _start(settings: JobSettings, plans: Iterable[OperationPlan]) -> _Job:
    """The job of the current flow run: its operations, tags, board; stale task runs crashed."""
    install_log_filter()
    install_failed_run_filter()
    flow_ctx = FlowRunContext.get()
    if flow_ctx is None or flow_ctx.flow_run is None:
        raise RuntimeError("run_batch must be called inside a flow run")
    plans = list(plans)
    ops = {
        p.operation_id: BatchOperation(
            operation_id=p.operation_id, operation_type=p.operation_type, metadata=dict(p.metadata)
        )
        for p in plans
    }
    if len(ops) != len(plans):
        raise OmbudsmanError("duplicate operation ids in one job")
    job = _Job(settings, plans, flow_ctx, get_run_logger(), ops)
    with BOARDS_LOCK:
        BOARDS[job.job_id] = job.board
    _tag_flow_run(flow_ctx.flow_run, settings)
    if (flow_ctx.flow_run.run_count or 0) > 1:  # a retry: an earlier attempt may have left some
        crash_unfinished_task_runs(flow_ctx.flow_run.id)
    job.counter = ProgressCounter(len(ops), settings.window)
    return job


def run_batch(settings: JobSettings, plans: Iterable[OperationPlan]) -> Any:
    """Run `plans` inside the current flow run and return the summary (or a terminal State)."""
    job = _start(settings, plans)
    try:
        job.restore()  # unreadable storage fails the run: a completed operation must not run twice
        job.open()
        job.run()
    except TerminationSignal as exc:
        if job.submitter is None:
            raise
        job.on_termination(exc)
    finally:
        job.close()
    with _deferred_termination():
        return job.finish()
