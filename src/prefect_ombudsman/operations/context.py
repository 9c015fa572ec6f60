"""What a running operation may use: cancellation checks, connections, its job's project."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from prefect_ombudsman.errors import OperationCancelled


@dataclass
class OperationContext:
    """Handed to every operation. Long operations call `check_cancelled()` at safe points."""

    job_id: str
    operation_id: str
    project_id: str | None
    projects_dir: Path
    cancel_event: threading.Event
    attempt: int = 1
    resolve_engine: Callable[[str | Mapping[str, Any]], Engine] | None = None
    _on_cancel: list[Callable[[], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancelled(self) -> None:
        """Raise `OperationCancelled` when the job was cancelled."""
        if self.cancel_event.is_set():
            raise OperationCancelled(f"operation {self.operation_id} stopped: job cancelled")

    def wait(self, seconds: float) -> None:
        """Sleep that ends early (raising) when the job is cancelled."""
        if self.cancel_event.wait(max(seconds, 0.0)):
            self.check_cancelled()

    def engine(self, ref: str | Mapping[str, Any]) -> Engine:
        if self.resolve_engine is None:
            raise RuntimeError("this context cannot resolve connections")
        return self.resolve_engine(ref)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Register a callback (e.g. a DBAPI interrupt) run when the job is cancelled; returns an unregister."""
        with self._lock:
            self._on_cancel.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._on_cancel:
                    self._on_cancel.remove(callback)

        return remove

    def fire_cancel_callbacks(self) -> None:
        with self._lock:
            callbacks = list(self._on_cancel)
        for callback in callbacks:
            try:
                callback()
            except Exception:  # an interrupt that fails must not hide the cancel
                pass
