"""Operations of one batch job on a Dask cluster (optional extra `prefect-ombudsman[dask]`).

The flow thread keeps everything it owns with threads: the `max_parallel` window (it submits at
most that many operations and refills as they finish), the checkpoint, progress and the report.
Only the operations (task runs `execute_operation`, one per operation id) run in Dask worker
processes, submitted through prefect-dask's `DaskTaskRunner`.

What a worker process does not share with the flow: the in-process `RunBoard` (cancel flag,
running operations). So a job on Dask has one `distributed.Event` named after the job: the flow
sets it when it sees the cancel (its watcher of the flow-run state, or the worker's SIGTERM);
in each worker process a board per job, shared by that job's operations there, is tripped by a
thread blocked on the event (the scheduler wakes it at once), which stops the operations at
their next safe point and fires their `ctx.on_cancel()` interrupts, as in process. Transient
retries happen inside the task as with threads; a failed operation's error, result and attempts
travel back in its task state.

Chosen per job by `OMBUDSMAN_DASK_ADDRESS` (a scheduler address such as `tcp://10.0.0.5:8786`,
or `local` / `local:N` for a temporary LocalCluster of 2 / N worker processes started for the
job), by the `dask_address` of the job's settings, or by a flow whose task runner is a
`DaskTaskRunner` (`custom_batch.with_options(task_runner=DaskTaskRunner(address=...))`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
import threading
from typing import Any
from uuid import uuid4

import cloudpickle

log = logging.getLogger("prefect_ombudsman.dask")

ENV_ADDRESS = "OMBUDSMAN_DASK_ADDRESS"
LOCAL_WORKERS = 2


def available() -> bool:
    return importlib.util.find_spec("prefect_dask") is not None


def resolve_address(explicit: str | None) -> str | None:
    """The Dask target of a job: its own setting, else `OMBUDSMAN_DASK_ADDRESS`; None = threads."""
    value = (explicit if explicit is not None else os.environ.get(ENV_ADDRESS, "")).strip()
    if value.lower() in ("", "threads", "none", "off"):
        return None
    return value


def local_workers(address: str) -> int | None:
    """`local` -> 2 worker processes, `local:N` -> N; None for a scheduler address."""
    head, _, count = address.partition(":")
    if head.lower() != "local":
        return None
    if not count:
        return LOCAL_WORKERS
    try:
        n = int(count)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{ENV_ADDRESS}: 'local:N' needs a worker count >= 1, got {address!r}")
    return n


def event_name(job_id: str) -> str:
    return f"ombudsman-cancel-{job_id}"


# ----------------------------------------------------------------------------- flow side


class DaskSubmitter:
    """Submits operations of one job to Dask and waits for them (the flow thread's side)."""

    kind = "dask"

    def __init__(
        self, address: str | None, window: int, job_id: str, task_runner: Any = None
    ) -> None:
        if not available():
            raise RuntimeError(
                "a Dask run needs the optional extra: pip install 'prefect-ombudsman[dask]'"
            )
        from prefect_dask import DaskTaskRunner

        self.job_id = job_id
        self.event_name = event_name(job_id)
        self.owned = task_runner is None  # the flow's own runner is started and stopped by Prefect
        if task_runner is not None:
            self.runner = task_runner
        else:
            assert address is not None
            n = local_workers(address)
            if n is None:
                self.runner = DaskTaskRunner(address=address)
            else:
                self.runner = DaskTaskRunner(
                    cluster_kwargs={
                        "n_workers": n,
                        "processes": True,
                        # the window bounds what runs; each worker can take its share of it
                        "threads_per_worker": max(1, math.ceil(window / n)),
                        "dashboard_address": None,
                    }
                )
        self.describe = (
            f"Dask ({address})" if address else f"Dask ({type(self.runner).__name__} of the flow)"
        )
        self._event: Any = None
        self._cancelled = False
        self._finished = threading.Event()
        self._context: dict[str, Any] = {}
        self._blob: bytes | None = None
        self._blob_task: Any = None

    def __enter__(self) -> DaskSubmitter:
        from distributed import Event

        if self.owned:
            self.runner.__enter__()
        from prefect.context import serialize_context

        client = self.runner.client  # connects (or starts the local cluster) now
        self._context = serialize_context()  # the flow run's, once for all its operations
        self._event = Event(self.event_name, client=client)
        self._event.clear()  # a retry of the job reuses its id: start uncancelled
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._event is not None:
                self._event.clear()
        except Exception as error:  # the cluster may be gone already
            log.debug("could not clear %s: %s", self.event_name, error)
        if self.owned:
            self.runner.__exit__(*exc)

    def job_payload(self, payload: dict[str, Any], executor_modules: dict[str, str]) -> dict:
        return {
            **payload,
            "dask_cancel_event": self.event_name,
            "executor_modules": executor_modules,
        }

    def submit(self, task: Any, parameters: dict[str, Any]) -> Any:
        """What prefect-dask's client does for a task, except that the task and the job's Prefect
        context are pickled once per job (`serialize_context` dumps every setting and Dask walks
        and pickles it again per submit: ~0.5 s per operation on a loaded 2-core machine, which
        capped a job near 2 operations/s), and each operation gets a key of its own."""
        from distributed import Client
        from prefect.context import AssetContext

        if self._blob is None or self._blob_task is not task:
            self._blob = cloudpickle.dumps((task, self._context))
            self._blob_task = task
        task_run_id = uuid4()
        dependencies: dict[str, set[Any]] = {name: set() for name in parameters}
        asset_context = AssetContext.from_task_and_inputs(
            task=task, task_run_id=task_run_id, task_inputs=dependencies, copy_to_child_ctx=True
        ).serialize()
        future = Client.submit(
            self.runner.client,
            run_task_in_worker,
            self._blob,
            pure=False,
            task_run_id=task_run_id,
            parameters=parameters,
            dependencies=dependencies,
            asset_context=asset_context,
        )
        setattr(future, "task_run_id", task_run_id)  # noqa: B010  (a Dask future: our tag)
        future.add_done_callback(lambda _: self._finished.set())
        return future

    def wait(self, futures: list[Any], timeout: float) -> set[Any]:
        """Those of `futures` that are done, waiting up to `timeout` for one (the client's own
        callbacks; `distributed.wait` would need a default client)."""
        done = {f for f in futures if f.done()}
        if not done and self._finished.wait(timeout):
            self._finished.clear()
            done = {f for f in futures if f.done()}
        return done

    def cancel(self) -> None:
        """Trip the boards of this job's operations in every worker process."""
        if self._cancelled or self._event is None:
            return
        self._cancelled = True
        try:
            self._event.set()
        except Exception as error:
            log.warning("could not signal the cancel to the Dask workers: %s", error)

    def abandon(self, futures: list[Any]) -> None:
        """Operations that did not stop within the grace period: release them in Dask."""
        for future in futures:
            try:
                future.cancel()
            except Exception:
                pass


# ----------------------------------------------------------------------------- worker side


_UNPICKLED: dict[bytes, tuple[Any, dict[str, Any]]] = {}  # blob digest -> (task, context)
_UNPICKLED_LOCK = threading.Lock()


def run_task_in_worker(
    blob: bytes,
    *,
    task_run_id: Any,
    parameters: dict[str, Any],
    dependencies: dict[str, Any],
    asset_context: dict[str, Any],
) -> Any:
    """An operation's task run in a Dask worker (module-level: pickled by reference). The task and
    the flow run's context arrive pickled once per job and are unpickled once per process."""
    from prefect.task_engine import run_task_sync

    digest = hashlib.sha256(blob).digest()
    with _UNPICKLED_LOCK:
        found = _UNPICKLED.get(digest)
    if found is None:
        found = cloudpickle.loads(blob)
        with _UNPICKLED_LOCK:
            if len(_UNPICKLED) >= 8:  # a few jobs at a time share a worker
                _UNPICKLED.pop(next(iter(_UNPICKLED)))
            _UNPICKLED[digest] = found
    task, context = found
    return run_task_sync(
        task=task,
        task_run_id=task_run_id,
        parameters=parameters,
        wait_for=None,
        return_type="state",
        dependencies=dependencies,
        context={**context, "asset_context": asset_context},
    )


_WORKER_USERS: dict[str, int] = {}  # running operations per job in this process (under `lock`)


class _EventWatcher(threading.Thread):
    """Blocks on the job's Dask event (in a worker process) and trips the job's board there;
    ends when the board is no longer this process's board of the job (its operations ended)."""

    def __init__(self, job_id: str, event: Any, board: Any, boards: dict, lock: Any) -> None:
        super().__init__(name=f"ombudsman-dask-cancel-{job_id}", daemon=True)
        self.job_id = job_id
        self.event: Any = event
        self.board: Any = board
        self.boards, self.lock = boards, lock

    def run(self) -> None:
        while True:
            with self.lock:
                current: Any = self.boards.get(self.job_id)
                if current is not self.board:
                    return
            try:
                if self.event.wait(timeout=1.0):
                    self.board.cancel()
                    return
            except Exception as error:  # scheduler gone: nothing more to hear
                log.debug("cancel event of %s: %s", self.job_id, error)
                return


def worker_board(job_id: str, name: str, boards: dict[str, Any], lock: Any, factory: Any) -> Any:
    """The board of `job_id` in this worker process, shared by the job's operations running here
    (created with its event watcher on first use); `release_worker_board` when one ends."""
    from distributed import Event

    with lock:
        board: Any = boards.get(job_id)
        fresh = board is None
        if fresh:
            board = boards[job_id] = factory()
        _WORKER_USERS[job_id] = _WORKER_USERS.get(job_id, 0) + 1
    if fresh:
        from prefect_ombudsman.redaction import install_log_filter

        install_log_filter()  # secrets scrubbed from this worker's logs too, as in the flow's process
        event = Event(name)  # the worker's client (we run in a Dask task thread)
        if event.is_set():
            board.cancel()
        else:
            _EventWatcher(job_id, event, board, boards, lock).start()
    return board


def release_worker_board(job_id: str, boards: dict[str, Any], lock: Any) -> None:
    with lock:
        left = _WORKER_USERS.get(job_id, 1) - 1
        if left > 0:
            _WORKER_USERS[job_id] = left
            return
        _WORKER_USERS.pop(job_id, None)
        boards.pop(job_id, None)
