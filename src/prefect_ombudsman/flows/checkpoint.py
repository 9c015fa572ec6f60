"""Completed operations of a job, kept in Prefect result storage: what a retry skips."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prefect_ombudsman import state_store
from prefect_ombudsman.flows.execution import env_float, parse_time
from prefect_ombudsman.jobs.models import BatchOperation, BatchOperationStatus
from prefect_ombudsman.state_store import SegmentLog, StateStore

log = logging.getLogger("prefect_ombudsman.runner")


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
            store, job_id, env_float("OMBUDSMAN_CHECKPOINT_INTERVAL_SECONDS", 0.1)
        )

    @staticmethod
    def fingerprint(plan: Any) -> str:
        raw = json.dumps([plan.executor, plan.arguments], sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def load(self) -> dict[str, dict[str, Any]]:
        return {
            entry["operation_id"]: entry
            for entry in self.log.load()
            if isinstance(entry.get("operation_id"), str)
        }

    def append(self, plan: Any, op: BatchOperation) -> None:
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
        if not self.log.close(timeout=env_float("OMBUDSMAN_CHECKPOINT_FLUSH_SECONDS", 60.0)):
            log.warning(
                "the checkpoint of job %s is not fully stored (%s): a retry runs the missing "
                "operations again",
                self.log.job_id,
                self.log.error,
            )


@dataclass
class Restored:
    """What a (re)started job begins with: the operations still to run, the others' outcomes."""

    pending: list[Any] = field(default_factory=list)
    finished: list[BatchOperation] = field(default_factory=list)
    retried: bool = False


def restore(
    plans: Iterable[Any],
    ops: dict[str, BatchOperation],
    checkpoint: Checkpoint,
    store: StateStore,
    job_id: str,
    previous_report: Any,
) -> Restored:
    """Operations a retry does not run again: recorded in the checkpoint with the same inputs
    (reported `cached`), or outside the operations a partial retry selected (they keep their
    last outcome from `previous_report()`). Unreadable storage raises `StateStoreError`."""
    restored = checkpoint.load()
    selection = state_store.take_retry_selection(store, job_id)
    previous = previous_report() if selection is not None else {}
    result = Restored(retried=bool(restored) or selection is not None)
    for plan in plans:
        entry = restored.get(plan.operation_id)
        if entry is None or entry.get("fingerprint") != Checkpoint.fingerprint(plan):
            kept = previous.get(plan.operation_id)
            if selection is not None and plan.operation_id not in selection and kept:
                # a partial retry: this operation keeps its last outcome
                op = ops[plan.operation_id] = BatchOperation.model_validate(kept)
                result.finished.append(op)
                continue
            result.pending.append(plan)
            continue
        op = ops[plan.operation_id]
        op.status = BatchOperationStatus.completed
        op.result = entry.get("result")
        op.started_at = parse_time(entry.get("started_at"))
        op.completed_at = parse_time(entry.get("completed_at"))
        op.duration_ms = entry.get("duration_ms")
        op.metadata = {**(op.metadata or {}), "attempts": entry.get("attempts"), "cached": True}
        result.finished.append(op)
    return result
