"""Progress and ETA of SPEC §6, computed from the operations of a job."""

from __future__ import annotations

from collections.abc import Iterable

from prefect_ombudsman.jobs.models import BatchOperation, BatchOperationStatus, BatchProgress


def compute_progress(
    operations: Iterable[BatchOperation], *, parallelism: int = 1, total: int | None = None
) -> BatchProgress:
    """Counters, percent and ETA (mean finished duration x left / effective parallelism)."""
    ops = list(operations)
    total = len(ops) if total is None else total
    completed = sum(op.status == BatchOperationStatus.completed for op in ops)
    failed = sum(op.status == BatchOperationStatus.failed for op in ops)
    skipped = sum(op.status == BatchOperationStatus.skipped for op in ops)
    finished = completed + failed + skipped
    running = [op.operation_id for op in ops if op.status == BatchOperationStatus.running]
    durations = [
        op.duration_ms
        for op in ops
        if op.duration_ms is not None and op.status in (BatchOperationStatus.completed, BatchOperationStatus.failed)
    ]
    left = max(total - finished, 0)
    eta = None
    if durations:
        effective = max(1, min(parallelism, left)) if left else 1
        eta = int(sum(durations) / len(durations) * left / effective)
    return BatchProgress(
        total_operations=total,
        completed_operations=completed,
        failed_operations=failed,
        skipped_operations=skipped,
        current_operation=running[0] if running else None,
        percent_complete=round(finished / total * 100, 2) if total else 100.0,
        estimated_time_remaining_ms=eta,
    )
