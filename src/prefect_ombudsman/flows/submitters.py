"""Where a job's operations run, behind one small interface the runner's window loop uses.

* `ThreadSubmitter` (the default): the runner's own bounded thread pool; each operation's task
  run is recorded with state-change events sent in batches (`taskruns.TaskRunRecorder`).
* `TaskSubmitter`: each operation is a Prefect task run of `execute_operation`, through Prefect's
  task engine in the flow's task runner (`OMBUDSMAN_TASK_RUNS=engine`) or on a Dask cluster
  (`flows/dask.py`, which needs a real task to ship to its workers).

Every submitter gives `submit(plan, job) -> future`, `wait(futures, timeout) -> done`,
`outcome(future) -> Outcome`, `cancel()`, `abandon(futures)`, and is a context manager.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import os
import threading
from collections.abc import Mapping
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.states import Cancelled, Failed, State

from prefect_ombudsman.deployments import limits as database_limits
from prefect_ombudsman.flows import dask
from prefect_ombudsman.flows.execution import (
    BOARDS,
    BOARDS_LOCK,
    CANCELLED,
    COMPLETED,
    FAILED,
    OperationRecord,
    Outcome,
    RunBoard,
    env_float,
    log,
    parse_time,
    run_attempts,
)
from prefect_ombudsman.flows.taskruns import TaskRunRecorder
from prefect_ombudsman.jobs.models import utcnow
from prefect_ombudsman.redaction import scrub

ENV_TASK_RUNS = "OMBUDSMAN_TASK_RUNS"  # "recorded" (default) or "engine"


def task_runs_mode() -> str:
    value = os.environ.get(ENV_TASK_RUNS, "").strip().lower()
    return "engine" if value in ("engine", "prefect", "task-engine") else "recorded"


# ----------------------------------------------------------------------------- the Prefect task


def _task_logger() -> Any:
    try:
        return get_run_logger()
    except Exception:
        return log


def _operation(
    operation_id: str, executor: str, arguments: dict[str, Any], job: dict[str, Any]
) -> Any:
    """One operation of a batch job as a Prefect task (retries of transient errors happen inside)."""
    task_ctx = TaskRunContext.get()
    flow_run_id = (
        str(task_ctx.task_run.flow_run_id)
        if task_ctx and task_ctx.task_run.flow_run_id
        else "standalone"
    )
    event = job.get("dask_cancel_event")
    if event:  # in a Dask worker process: the job's board here, tripped by the job's Dask event
        board = dask.worker_board(flow_run_id, event, BOARDS, BOARDS_LOCK, RunBoard)
        try:
            outcome = run_attempts(
                board, operation_id, executor, arguments, job, flow_run_id, _task_logger
            )
            return _as_task_return(outcome, board.records.pop(operation_id, None))
        finally:
            dask.release_worker_board(flow_run_id, BOARDS, BOARDS_LOCK)
    with BOARDS_LOCK:
        board = BOARDS.get(flow_run_id) or RunBoard()
    with database_limits.operation_database_limits():  # per-database GCL slots, when set up
        outcome = run_attempts(
            board, operation_id, executor, arguments, job, flow_run_id, _task_logger
        )
    return _as_task_return(outcome, None)


# A plain module-level function under the task, so a Dask worker unpickles it by reference.
execute_operation = task(
    name="operation",
    task_run_name="{operation_id}",
    persist_result=False,  # the runner's checkpoint persists results (see Checkpoint)
    cache_policy=NO_CACHE,
    retries=0,
)(_operation)


class RemoteRecord(dict[str, Any]):
    """An operation record in a task state's data, with a short repr (the engine logs the state)."""

    def __repr__(self) -> str:
        raw = self.get("ombudsman_record") or {}
        return f"OperationRecord(attempts={raw.get('attempts')})"


def _as_task_return(outcome: Outcome, record: OperationRecord | None) -> Any:
    """What the task returns: a completed outcome's payload; a Failed / Cancelled state (no
    Prefect traceback) carrying the record when it ran in another process."""
    if outcome.status == COMPLETED:
        return outcome.payload()
    data = None
    if record is not None:
        data = RemoteRecord(
            ombudsman_record={
                "started_at": record.started_at.isoformat() if record.started_at else None,
                "attempts": record.attempts,
                "result": record.result,
                "error": record.error,
                "cancelled": record.cancelled,
            }
        )
    if outcome.status == CANCELLED:
        return Cancelled(message=outcome.error, data=data)
    return Failed(message=outcome.error, data=data)


def _record_of(state: State) -> OperationRecord | None:
    """The record a worker process sent back with a failed or cancelled state."""
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
        started_at=parse_time(raw.get("started_at")),
        attempts=int(raw.get("attempts") or 0),
        result=raw.get("result"),
        error=raw.get("error"),
        cancelled=bool(raw.get("cancelled")),
    )


def outcome_of_state(state: State, record: OperationRecord | None) -> Outcome:
    """A finished task state (and the operation's record) as an `Outcome`."""
    now = utcnow()
    if state.is_completed():
        payload = state.result(raise_on_failure=False)
        if isinstance(payload, dict) and "result" in payload:
            return Outcome(
                COMPLETED,
                attempts=payload.get("attempts") or 0,
                result=payload.get("result"),
                started_at=parse_time(payload.get("started_at")),
                completed_at=parse_time(payload.get("completed_at")) or now,
                duration_ms=payload.get("duration_ms"),
                cached=state.name == "Cached",
            )
        return Outcome(COMPLETED, result=payload, completed_at=now, cached=state.name == "Cached")
    started = record.started_at if record is not None else None
    ended = Outcome(
        FAILED,
        attempts=record.attempts if record else 0,
        started_at=started,
        completed_at=now,
        duration_ms=int((now - started).total_seconds() * 1000) if started else None,
    )
    if state.is_cancelled() or (record is not None and record.cancelled):
        ended.status, ended.error = CANCELLED, state.message
    elif record is not None and record.error:
        ended.error, ended.result = record.error, record.result
    else:
        ended.error = scrub(state.message or f"task ended {state.name}")
    return ended


# ----------------------------------------------------------------------------- submitters


class ThreadSubmitter:
    """Operations in the runner's own pool of `window` threads, each in a copy of the flow
    thread's context (Prefect settings, flow run), each reported as its own task run."""

    describe = "threads"

    def __init__(self, window: int, board: RunBoard, job_id: str, flow_run: Any, flow: Any):
        self.window = window
        self.board = board
        self.job_id = job_id
        self.flow_run = flow_run
        self.flow_name = getattr(flow, "name", None)
        self.recorder: TaskRunRecorder | None = None
        self.pool: cf.ThreadPoolExecutor | None = None
        self._context = contextvars.copy_context()

    def __enter__(self) -> ThreadSubmitter:
        self.recorder = TaskRunRecorder(
            self.flow_run,
            self.flow_name,
            execute_operation.task_key,
            env_float("OMBUDSMAN_TASK_RUN_EVENTS_SECONDS", 0.2),
        )
        self.pool = cf.ThreadPoolExecutor(self.window, thread_name_prefix="ombudsman-operation")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False)  # an abandoned operation finishes on its own
        if self.recorder is not None:
            self.recorder.close(
                env_float("OMBUDSMAN_CHECKPOINT_FLUSH_SECONDS", 60.0),
                "cancelled while running (did not stop within the grace period)",
            )

    def job_payload(self, payload: dict[str, Any], executor_modules: dict[str, str]) -> dict:
        return payload

    def submit(self, plan: Any, job: Mapping[str, Any]) -> cf.Future[Outcome]:
        assert self.pool is not None
        return self.pool.submit(self._context.copy().run, self._run, plan, job)

    def _run(self, plan: Any, job: Mapping[str, Any]) -> Outcome:
        recorder = self.recorder
        assert recorder is not None
        handle = recorder.start(plan.operation_id)
        try:
            with database_limits.operation_database_limits():  # per-database GCL slots
                outcome = run_attempts(
                    self.board,
                    plan.operation_id,
                    plan.executor,
                    plan.arguments,
                    job,
                    self.job_id,
                    lambda: recorder.logger(handle),
                )
        except BaseException as exc:  # the runner itself failed around the operation
            outcome = Outcome(FAILED, error=scrub(f"{type(exc).__name__}: {exc}"))
            recorder.finish(handle, outcome)
            if not isinstance(exc, Exception):
                raise
            return outcome
        recorder.finish(handle, outcome)
        return outcome

    def wait(self, futures: list[Any], timeout: float) -> set[Any]:
        done, _ = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return done

    def outcome(self, future: Any, operation_id: str) -> Outcome:
        try:
            return future.result()
        except BaseException as exc:
            return Outcome(FAILED, error=scrub(f"{type(exc).__name__}: {exc}"))

    def cancel(self) -> None:
        pass  # the operations share the flow's board, already tripped

    def abandon(self, futures: list[Any]) -> None:
        pass  # threads cannot be stopped; `close` of the recorder ends their task runs


class TaskSubmitter:
    """Operations as task runs of `execute_operation`: Prefect's task engine in the flow's task
    runner, or (with `inner`) a Dask cluster."""

    def __init__(self, board: RunBoard, inner: Any = None) -> None:
        self.board = board
        self.inner = inner
        self.describe = inner.describe if inner is not None else "threads (Prefect task engine)"
        self._finished = threading.Event()
        self._done: set[Any] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> TaskSubmitter:
        if self.inner is not None:
            self.inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.inner is not None:
            self.inner.__exit__(*exc)

    def job_payload(self, payload: dict[str, Any], executor_modules: dict[str, str]) -> dict:
        if self.inner is not None:
            return self.inner.job_payload(payload, executor_modules)
        return payload

    def submit(self, plan: Any, job: Mapping[str, Any]) -> Any:
        parameters = {
            "operation_id": plan.operation_id,
            "executor": plan.executor,
            "arguments": plan.arguments,
            "job": job,
        }
        if self.inner is not None:
            return self.inner.submit(execute_operation, parameters)
        future = execute_operation.submit(**parameters)
        future.add_done_callback(self._on_done)
        return future

    def _on_done(self, future: Any) -> None:
        with self._lock:
            self._done.add(future)
        self._finished.set()

    def wait(self, futures: list[Any], timeout: float) -> set[Any]:
        if self.inner is not None:
            return self.inner.wait(futures, timeout)
        with self._lock:
            done = self._done.intersection(futures)
        if not done and self._finished.wait(timeout):
            self._finished.clear()
            with self._lock:
                done = self._done.intersection(futures)
        with self._lock:
            self._done.difference_update(done)
        return done

    def outcome(self, future: Any, operation_id: str) -> Outcome:
        try:
            if self.inner is not None:
                state = future.result()
            else:
                future.wait()  # done: takes the final state from the engine, no API read
                state = future.state
        except Exception as exc:  # the engine itself failed around the task
            return Outcome(FAILED, error=scrub(str(exc)), completed_at=utcnow())
        return outcome_of_state(state, self.board.records.get(operation_id) or _record_of(state))

    def cancel(self) -> None:
        if self.inner is not None:
            self.inner.cancel()

    def abandon(self, futures: list[Any]) -> None:
        if self.inner is not None:
            self.inner.abandon(futures)


def choose_submitter(settings: Any, board: RunBoard, job_id: str, flow_ctx: Any) -> Any:
    """Dask when the job's settings, `OMBUDSMAN_DASK_ADDRESS` or the flow's own task runner (a
    `DaskTaskRunner`) say so (see flows/dask.py); else threads: the runner's own with recorded
    task runs, or Prefect's task engine with `OMBUDSMAN_TASK_RUNS=engine`."""
    address = dask.resolve_address(settings.dask_address)
    flow_runner = getattr(flow_ctx, "task_runner", None)
    if address is not None:
        return TaskSubmitter(board, dask.DaskSubmitter(address, settings.window, job_id))
    if type(flow_runner).__name__ == "DaskTaskRunner":
        return TaskSubmitter(
            board, dask.DaskSubmitter(None, settings.window, job_id, task_runner=flow_runner)
        )
    if task_runs_mode() == "engine":
        return TaskSubmitter(board)
    return ThreadSubmitter(settings.window, board, job_id, flow_ctx.flow_run, flow_ctx.flow)
