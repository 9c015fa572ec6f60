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
        if op.duration_ms is not None
        and op.status in (BatchOperationStatus.completed, BatchOperationStatus.failed)
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


class ProgressCounter:
    """Incremental SPEC §6 counters for a running job (O(1) per event, not a rescan of all operations)."""

    def __init__(self, total: int, parallelism: int) -> None:
        self.total = total
        self.parallelism = max(1, parallelism)
        self.completed = 0
        self.failed = 0
        self.skipped = 0
        self.running: dict[str, None] = {}
        self._duration_sum = 0
        self._duration_count = 0

    def started(self, operation_id: str) -> None:
        self.running[operation_id] = None

    def finished(self, operation: BatchOperation) -> None:
        self.running.pop(operation.operation_id, None)
        if operation.status == BatchOperationStatus.completed:
            self.completed += 1
        elif operation.status == BatchOperationStatus.failed:
            self.failed += 1
        elif operation.status == BatchOperationStatus.skipped:
            self.skipped += 1
            return
        if operation.duration_ms is not None:
            self._duration_sum += operation.duration_ms
            self._duration_count += 1

    def snapshot(self) -> BatchProgress:
        finished = self.completed + self.failed + self.skipped
        left = max(self.total - finished, 0)
        eta = None
        if self._duration_count:
            effective = max(1, min(self.parallelism, left)) if left else 1
            eta = int(self._duration_sum / self._duration_count * left / effective)
        return BatchProgress(
            total_operations=self.total,
            completed_operations=self.completed,
            failed_operations=self.failed,
            skipped_operations=self.skipped,
            current_operation=next(iter(self.running), None),
            percent_complete=round(finished / self.total * 100, 2) if self.total else 100.0,
            estimated_time_remaining_ms=eta,
        )
