"""What a running job shows: one progress artifact (counters for the jobs service) and a
markdown card for people, updated from the flow thread, throttled; and the watcher that sees a
cancel of the flow run (Prefect itself never cancels an in-process run)."""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.exceptions import ObjectNotFound

from prefect_ombudsman.flows.execution import RunBoard
from prefect_ombudsman.jobs.models import BatchJobStatus, BatchProgress, utcnow

log = logging.getLogger("prefect_ombudsman.runner")


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
    settings: Any,
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

    def __init__(self, settings: Any, interval: float) -> None:
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
        """Create the progress artifact and the progress card (both at once: two API calls)."""
        together(lambda: self._create_bar(progress), lambda: self._create_card(progress))
        self._last = time.monotonic()

    def _create_bar(self, progress: BatchProgress) -> None:
        try:
            self.artifact_id = create_progress_artifact(
                progress=0.0, description=self._description(progress, BatchJobStatus.running)
            )
        except Exception as exc:
            log.warning("could not create the progress artifact: %s", exc)

    def _create_card(self, progress: BatchProgress) -> None:
        try:
            slug = self.settings.job_type.value.replace("_", "-")
            self.card_id = create_markdown_artifact(
                key=f"ombudsman-{slug}-progress",
                markdown=progress_markdown(self.settings, progress, BatchJobStatus.running),
                description=f"Progress of {self.settings.name}",
            )
        except Exception as exc:
            log.warning("could not create the progress card: %s", exc)

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


def together(*calls: Callable[[], Any]) -> None:
    """Run `calls` at once (each in a copy of this thread's context: the flow run's), the first
    in this thread; return when all ended (each of the others logs its own failure)."""
    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(call,), daemon=True)
        for call in calls[1:]
    ]
    for thread in threads:
        thread.start()
    try:
        calls[0]()
    finally:
        for thread in threads:
            thread.join()


class CancelWatcher:
    """Polls the flow run's state and trips the board when it reads Cancelling/Cancelled."""

    def __init__(self, flow_run_id: Any, board: RunBoard, interval: float) -> None:
        self.flow_run_id = flow_run_id
        self.board = board
        self.interval = interval
        self._stop = threading.Event()
        # in a copy of the flow thread's context: its Prefect settings name the API the run is on
        # (a plain thread reads the process's defaults, e.g. no API: another, temporary server)
        self._thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._run,),
            name="ombudsman-cancel-watcher",
            daemon=True,
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
                    except ObjectNotFound:  # the run was deleted: nobody waits for this job
                        log.warning("the flow run of this job was deleted: stopping the job")
                        self.board.cancel()
                        return
                    except Exception as exc:  # a slow API must not end the job
                        log.debug("cancel watcher: %s", exc)
                        continue
                    if state is not None and (state.is_cancelling() or state.is_cancelled()):
                        self.board.cancel()
                        return
        except Exception as exc:
            log.warning("cancel watcher stopped: %s", exc)
