"""Process-local progress listeners: the one mechanism behind every progress bar.

A channel is a `Listeners` with the call signature its listeners take; the batch runner's job
events (`flows.runner.LISTENERS`) and data generation's rows loaded
(`executors.datagen.ROW_LISTENERS`) are two channels. Listeners are called from the thread that
reports (the flow thread, an operation's thread); one that raises is logged and skipped, so a
broken progress bar never fails a job.

    remove = ROW_LISTENERS.add(lambda operation_id, table, done, total: print(table, done))
    ...
    remove()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, ParamSpec

P = ParamSpec("P")

log = logging.getLogger("prefect_ombudsman.progress")


class Listeners(Generic[P]):
    """Listeners of one kind of progress, added and removed from any thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._listeners: tuple[Callable[P, None], ...] = ()

    def add(self, listener: Callable[P, None]) -> Callable[[], None]:
        """Register `listener`; returns the function that removes it again."""
        with self._lock:
            self._listeners = (*self._listeners, listener)
        return lambda: self.remove(listener)

    def remove(self, listener: Callable[P, None]) -> None:
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

    def notify(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for listener in self._listeners:  # a snapshot: the tuple is replaced, never mutated
            try:
                listener(*args, **kwargs)
            except Exception as exc:
                log.debug("%s listener failed: %s", self.name, exc)

    def __bool__(self) -> bool:
        return bool(self._listeners)


__all__ = ["Listeners"]
