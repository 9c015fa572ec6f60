"""The end of a job: its summary, the hooks that write what it leaves behind (reports), the
artifacts of the run page, and the terminal state of SPEC §3.

Job-finished hooks run in the flow thread once the summary is built (while the run's artifacts
and last progress update are published beside them) and before the flow returns its final state,
so whatever they write (the report files) is there when the run reads `Completed`. Hooks come from `on_finished(hook)` (in registration order), then from the
built-in hooks of `BUILTIN_HOOKS` (this package's reports,
`prefect_ombudsman.reports:write_job_reports`, loaded by name as plugins are), then from the
entry-point group `prefect_ombudsman.job_finished` (other packages' hooks). A hook takes a `FinishedJob`; it may add keys to
`job.summary` (the flow's return value) and must not raise (a failure is logged, never the job's).
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.exceptions import TerminationSignal
from prefect.states import Cancelled, Completed, Failed, State

from prefect_ombudsman.jobs.models import (
    BatchJobStatus,
    BatchOperation,
    BatchOperationStatus,
    BatchProgress,
    utcnow,
)
from prefect_ombudsman.jobs.progress import compute_progress
from prefect_ombudsman.redaction import scrub_data
from prefect_ombudsman.state_store import StateStore

log = logging.getLogger("prefect_ombudsman.runner")

PARTIAL_SUCCESS = "PartialSuccess"
HOOKS_GROUP = "prefect_ombudsman.job_finished"
#: this package's own job-finished hooks, `module:function`, loaded by name on the first job
BUILTIN_HOOKS = ("prefect_ombudsman.reports:write_job_reports",)


@dataclass
class FinishedJob:
    """What a job-finished hook gets: the summary (mutable), the job's settings and storage."""

    summary: dict[str, Any]
    settings: Any
    store: StateStore
    operations: list[BatchOperation]
    logger: Any = None  # the flow run's logger

    @property
    def report_path(self) -> Path | None:
        path = self.summary.get("report_path")
        return Path(path) if path else None


FinishedHook = Callable[[FinishedJob], None]
_HOOKS: list[tuple[FinishedHook, frozenset[str] | None]] = []
_PLUGIN_HOOKS: list[FinishedHook] | None = None


def on_finished(hook: FinishedHook, job_types: Any = None) -> FinishedHook:
    """Register `hook` to run at the end of every job (or of `job_types` only); idempotent."""
    kinds = frozenset(str(getattr(t, "value", t)) for t in job_types) if job_types else None
    if not any(h is hook for h, _ in _HOOKS):
        _HOOKS.append((hook, kinds))
    return hook


def remove_finished_hook(hook: FinishedHook) -> None:
    _HOOKS[:] = [(h, k) for h, k in _HOOKS if h is not hook]


def plugin_hooks() -> list[FinishedHook]:
    """The built-in hooks, then those of the entry-point group (loaded once per process)."""
    global _PLUGIN_HOOKS
    if _PLUGIN_HOOKS is None:
        found: list[FinishedHook] = []
        for name in BUILTIN_HOOKS:
            module, _, attribute = name.partition(":")
            found.append(getattr(importlib.import_module(module), attribute))
        for entry in sorted(entry_points(group=HOOKS_GROUP), key=lambda e: e.name):
            try:
                hook = entry.load()
            except Exception as exc:
                log.warning("job-finished hook %s could not be loaded: %s", entry.value, exc)
                continue
            if hook not in found:
                found.append(hook)
        _PLUGIN_HOOKS = found
    return _PLUGIN_HOOKS


def run_finished_hooks(job: FinishedJob, logger: Any) -> None:
    job_type = job.summary.get("job_type")
    hooks = [h for h, kinds in _HOOKS if kinds is None or job_type in kinds]
    for hook in hooks + [h for h in plugin_hooks() if h not in hooks]:
        try:
            hook(job)
        except TerminationSignal:
            raise
        except Exception as exc:
            name = getattr(hook, "__qualname__", repr(hook))
            logger.warning("job-finished hook %s failed: %s", name, exc)


# ----------------------------------------------------------------------------- summary and state


def status_of(completed: int, failed: int, cancelled: bool) -> BatchJobStatus:
    if cancelled:
        return BatchJobStatus.cancelled
    if failed and completed:
        return BatchJobStatus.partial_success
    if failed:
        return BatchJobStatus.failed
    return BatchJobStatus.completed


def build_summary(
    settings: Any,
    job_id: str,
    operations: list[BatchOperation],
    *,
    cancelled: bool,
    started_at: datetime,
    report_path: Path,
    store: StateStore,
) -> tuple[BatchJobStatus, BatchProgress, dict[str, Any]]:
    """The summary of SPEC §3 (JSON), the job status and its final progress counters."""
    progress = compute_progress(operations, parallelism=settings.window)
    status = status_of(progress.completed_operations, progress.failed_operations, cancelled)
    completed_at = utcnow()
    summary: dict[str, Any] = {
        "job_id": job_id,
        "job_type": settings.job_type.value,
        "name": settings.name,
        "status": status.value,
        "project_id": settings.project_id,
        "total_operations": len(operations),
        "completed": progress.completed_operations,
        "failed": progress.failed_operations,
        "skipped": progress.skipped_operations,
        "started_at": started_at.isoformat(),
        "completed_at": completed_at.isoformat(),
        "duration_ms": int((completed_at - started_at).total_seconds() * 1000),
        "operations": [scrub_data(op.model_dump(mode="json")) for op in operations],
        "report_path": str(report_path),
        "report_id": uuid.uuid4().hex,  # which report is the job's latest (local copies may lag)
        "state_storage": store.slug,
    }
    return status, progress, summary


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


def mark_cancelled(flow_run_id: Any, message: str, logger: Any) -> None:
    """Read Cancelled at once: under a worker the runner would only mark it seconds later."""
    try:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(
                flow_run_id, Cancelled(message=f"cancelled on request: {message}"), force=True
            )
    except Exception as exc:
        logger.warning("could not mark the run cancelled: %s", exc)


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


# ----------------------------------------------------------------------------- artifacts


def publish(settings: Any, ops: list[BatchOperation], summary: dict[str, Any]) -> None:
    """The run page's table of all operations and a markdown summary."""
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
