"""Each operation's Prefect task run, recorded the way Prefect's own task engine records it.

Prefect 3's task engine creates and updates task runs without API calls: it emits a
`prefect.task-run.<State>` event per state change (`emit_task_run_state_change_event`), and the
server's task-run recorder service creates or updates the task run (name, states, start/end
times, run counts) from those events. The runner runs operations in its own threads and emits
the same events itself (`Running` when it starts, then `Completed`, `Failed` or `Cancelled`; only
the final one when the operation ended before its `Running` event went out), queued by the
operation threads and sent in batches — one `POST /events` per batch, by one background thread —
instead of a task-engine run per operation (contexts, result store, telemetry, one websocket
message and a run-context lookup per event). Logs an operation
writes through `TaskRunRecorder.logger` carry its task run id, as `get_run_logger()` in a task.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect.client.orchestration import get_client
from prefect.logging.loggers import PrefectLogAdapter

from prefect_ombudsman.flows.execution import CANCELLED, COMPLETED, FAILED, Outcome

log = logging.getLogger("prefect_ombudsman.runner")

MESSAGE_LIMIT = 100_000  # as Prefect truncates state messages in its events
BATCH_LIMIT = 500  # events per request

_FINAL = {
    COMPLETED: ("COMPLETED", "Completed"),
    FAILED: ("FAILED", "Failed"),
    CANCELLED: ("CANCELLED", "Cancelled"),
}


@dataclass
class TaskRunHandle:
    """The task run of one operation while it runs."""

    id: uuid.UUID
    name: str
    started: datetime
    running_event: uuid.UUID
    logger: Any = None
    finished: bool = False
    running_sent: bool = False


# a queued state change: handle, state type, state name, message, when, after a sent Running
Change = tuple[TaskRunHandle, str, str, str | None, datetime, bool]


@dataclass
class _Sender:
    pending: deque[Change] = field(default_factory=deque)
    wake: threading.Event = field(default_factory=threading.Event)


class TaskRunRecorder:
    """Task runs of one job's operations, reported as state-change events, sent in batches.

    `start` and `finish` are called from operation threads and only queue a state change; a
    sender thread builds the events and posts them (the first at once, then at most every
    `interval` seconds). `close` ends task runs still open (an operation abandoned after the
    cancel grace period) and lets the sender deliver the rest and stop, without waiting.
    """

    def __init__(
        self,
        flow_run: Any,
        flow_name: str | None,
        task_key: str,
        interval: float = 0.2,
    ) -> None:
        self.flow_run_id = str(flow_run.id)
        self.flow_run_name = getattr(flow_run, "name", None)
        self.flow_name = flow_name
        self.run_count = int(getattr(flow_run, "run_count", 0) or 0)
        self.task_key = task_key
        self.interval = interval
        self.related = self._related(flow_run, flow_name)
        self._open: dict[uuid.UUID, TaskRunHandle] = {}
        self._lock = threading.Lock()
        self._sender = _Sender()
        self._retry: deque[dict[str, Any]] = deque()  # events a failed request sends again
        self._stopping = False
        self.sent = 0
        self.lost = 0
        self.error: str | None = None
        context = contextvars.copy_context()  # the flow's Prefect settings (API URL, ...)
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="ombudsman-task-runs", daemon=False
        )
        self._thread.start()

    @staticmethod
    def _related(flow_run: Any, flow_name: str | None) -> list[dict[str, str]]:
        related = [
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                "prefect.resource.role": "flow-run",
                "prefect.resource.name": str(getattr(flow_run, "name", "") or ""),
            }
        ]
        if getattr(flow_run, "flow_id", None):
            related.append(
                {
                    "prefect.resource.id": f"prefect.flow.{flow_run.flow_id}",
                    "prefect.resource.role": "flow",
                    "prefect.resource.name": flow_name or "",
                }
            )
        if getattr(flow_run, "deployment_id", None):
            related.append(
                {
                    "prefect.resource.id": f"prefect.deployment.{flow_run.deployment_id}",
                    "prefect.resource.role": "deployment",
                }
            )
        for tag in sorted(getattr(flow_run, "tags", None) or ()):
            related.append(
                {"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}
            )
        return related

    # ------------------------------------------------------------------ operation threads

    def start(self, operation_id: str) -> TaskRunHandle:
        """The operation starts: its task run appears, Running."""
        now = datetime.now(UTC)
        handle = TaskRunHandle(uuid.uuid4(), operation_id, now, uuid.uuid4())
        with self._lock:
            self._open[handle.id] = handle
            self._queue((handle, "RUNNING", "Running", None, now, False))
        return handle

    def finish(self, handle: TaskRunHandle, outcome: Outcome) -> None:
        """The operation ended: its task run's final state. When its Running event is still
        queued, only the final event goes out (it carries the start time as well)."""
        state_type, name = _FINAL[outcome.status]
        message = outcome.error if outcome.status != COMPLETED else None
        now = datetime.now(UTC)
        with self._lock:
            if handle.finished:
                return
            handle.finished = True
            self._open.pop(handle.id, None)
            # after a Running event already taken by the sender, else instead of it
            self._queue((handle, state_type, name, message, now, handle.running_sent))

    def logger(self, handle: TaskRunHandle) -> Any:
        """A logger whose records belong to the operation's task run (Prefect's API log handler)."""
        if handle.logger is None:
            handle.logger = PrefectLogAdapter(
                logging.getLogger("prefect.task_runs"),
                extra={
                    "task_run_id": str(handle.id),
                    "flow_run_id": self.flow_run_id,
                    "task_run_name": handle.name,
                    "task_name": "operation",
                    "flow_run_name": self.flow_run_name or "<unknown>",
                    "flow_name": self.flow_name or "<unknown>",
                },
            )
        return handle.logger

    # ------------------------------------------------------------------ events

    def _event(self, change: Change) -> dict[str, Any]:
        """A `prefect.task-run.<State>` event as `emit_task_run_state_change_event` builds it
        (`follows`: after this task run's Running event)."""
        handle, state_type, state_name, message, occurred, follows = change
        final = state_type != "RUNNING"
        message = (message or "")[:MESSAGE_LIMIT]
        stamp = occurred.isoformat()
        started = handle.started.isoformat()
        run_id = str(handle.id)
        task_run: dict[str, Any] = {
            "name": handle.name,
            "task_key": self.task_key,
            "dynamic_key": run_id,
            "empirical_policy": {
                "max_retries": 0,
                "retry_delay_seconds": 0.0,
                "retries": 0,
                "retry_delay": 0,
            },
            "tags": [],
            "labels": {},
            "task_inputs": {},
            "run_count": 1,
            "flow_run_run_count": self.run_count,
            "expected_start_time": started,
            "start_time": started,
            "total_run_time": 0.0,
        }
        if final:
            task_run["end_time"] = stamp
            task_run["total_run_time"] = (occurred - handle.started).total_seconds()
        event: dict[str, Any] = {
            "id": str(uuid.uuid4() if final else handle.running_event),
            "occurred": stamp,
            "event": f"prefect.task-run.{state_name}",
            "resource": {
                "prefect.resource.id": f"prefect.task-run.{run_id}",
                "prefect.resource.name": handle.name,
                "prefect.run-count": "1",
                "prefect.state-message": message,
                "prefect.state-name": state_name,
                "prefect.state-timestamp": stamp,
                "prefect.state-type": state_type,
                "prefect.orchestration": "client",
            },
            "related": self.related,
            "payload": {
                "intended": {"from": "RUNNING" if follows else None, "to": state_type},
                "initial_state": (
                    {"type": "RUNNING", "name": "Running", "message": "", "state_details": {}}
                    if follows
                    else None
                ),
                "validated_state": {
                    "type": state_type,
                    "name": state_name,
                    "message": message,
                    "state_details": {},
                    "data": None,
                },
                "task_run": task_run,
            },
        }
        if follows:
            event["follows"] = str(handle.running_event)
        return event

    def _queue(self, change: Change) -> None:
        """Under `_lock`: queue a state change for the sender (it builds the event)."""
        pending = self._sender.pending
        pending.append(change)
        if len(pending) % BATCH_LIMIT == 1 and not self._sender.wake.is_set():
            self._sender.wake.set()

    def _take(self) -> list[dict[str, Any]]:
        """The next batch of events: queued changes, without Running ones whose final state is
        queued (the final event carries the start time)."""
        changes: list[Change] = []
        with self._lock:
            pending = self._sender.pending
            while pending and len(changes) < BATCH_LIMIT:
                change = pending.popleft()
                handle = change[0]
                if change[1] == "RUNNING":
                    if handle.finished:
                        continue  # superseded by its final state, queued after it
                    handle.running_sent = True
                changes.append(change)
        return [self._event(change) for change in changes]

    # ------------------------------------------------------------------ sender thread

    def _run(self) -> None:
        try:
            with get_client(sync_client=True) as client:
                self._send_loop(client)
        except Exception as exc:  # no API at all: `close` reports what was not recorded
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("task runs of flow run %s not recorded: %s", self.flow_run_id, exc)
        finally:
            self._report_losses()

    def _send_loop(self, client: Any) -> None:
        wake = self._sender.wake
        delay, last = 0.5, 0.0
        while True:
            if not self._stopping:
                wake.wait()  # the first event of a quiet spell goes out at once ...
                pause = last + self.interval - time.monotonic()
                if pause > 0 and not self._stopping:  # ... later ones gather for `interval`
                    wake.clear()
                    wake.wait(pause)
            wake.clear()
            batch = self._retry_batch() or self._take()
            if not batch:
                if self._stopping:
                    return
                continue
            last = time.monotonic()
            try:
                response = client.request("POST", "/events", json=batch)
                status = response.status_code
            except Exception as exc:  # the API is away: keep the events and try again
                status, self.error = 0, f"{type(exc).__name__}: {exc}"
            else:
                self.error = None if status < 300 else f"HTTP {status}: {response.text[:300]}"
            if status and status < 300:
                self.sent += len(batch)
                delay = 0.5
                if self._sender.pending or self._retry:
                    wake.set()
            elif status and 400 <= status < 500 and status not in (408, 429):
                self.lost += len(batch)  # refused: sending it again cannot help
                log.warning("task-run events refused by the Prefect API: %s", self.error)
            else:
                self._retry_later(batch)
                if self._stopping and time.monotonic() > self._deadline:
                    return
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                wake.set()

    def _retry_later(self, batch: list[dict[str, Any]]) -> None:
        with self._lock:
            self._retry.extendleft(reversed(batch))

    def _retry_batch(self) -> list[dict[str, Any]]:
        with self._lock:
            batch = list(self._retry)
            self._retry.clear()
        return batch

    def _report_losses(self) -> None:
        left = len(self._sender.pending) + len(self._retry) + self.lost
        if left:
            log.warning(
                "%d task-run events of flow run %s were not recorded: %s",
                left,
                self.flow_run_id,
                self.error,
            )

    def close(self, timeout: float = 60.0, open_message: str | None = None) -> None:
        """End open task runs (Cancelled, `open_message`) and let the sender deliver what is
        queued, then stop, within `timeout`. It does not wait: the sender is not a daemon
        thread, so the process exits only once it delivered (or gave up), while the flow run
        goes on to its report and final state (`join` waits, for tests and tools)."""
        with self._lock:
            left = list(self._open.values())
        for handle in left:
            self.finish(
                handle,
                Outcome(CANCELLED, error=open_message or "its job ended while it was running"),
            )
        self._deadline = time.monotonic() + timeout
        self._stopping = True
        self._sender.wake.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until everything queued was delivered; False when some was not (or not yet)."""
        self._thread.join(timeout)
        return (
            not self._thread.is_alive()
            and not self._sender.pending
            and not self._retry
            and not self.lost
        )

    _deadline = float("inf")
