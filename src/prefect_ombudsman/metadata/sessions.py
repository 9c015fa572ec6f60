"""Per-server session limits: at most N catalog extractions hold a session on one server at once.

The limit is process-wide (every job and thread in the process shares it) and keyed by the
server's identity: `host:port` for network databases, the file path for SQLite and DuckDB.
Fifty sources on one server in one job (or in several jobs) therefore never open more than N
sessions. Across processes, the Prefect layer adds a global concurrency limit per server.

    with server_slot(server_identity(spec), limit=4):
        ...  # open the session, extract, close it
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

from prefect_ombudsman.dialects.base import dialect_for
from prefect_ombudsman.dialects.engines import ConnectionSpec
from prefect_ombudsman.errors import OperationCancelled

DEFAULT_SESSIONS_PER_SERVER = 4


def sessions_per_server(explicit: int | None = None) -> int:
    """`explicit`, else `OMBUDSMAN_METADATA_SESSIONS_PER_SERVER`, else 4."""
    if explicit is not None:
        return max(1, int(explicit))
    raw = os.environ.get("OMBUDSMAN_METADATA_SESSIONS_PER_SERVER", "")
    try:
        return max(1, int(raw)) if raw.strip() else DEFAULT_SESSIONS_PER_SERVER
    except ValueError:
        return DEFAULT_SESSIONS_PER_SERVER


def server_identity(spec: ConnectionSpec) -> str:
    """Which server a connection talks to (no user, database or secret in it)."""
    url = make_url(spec.url)
    return dialect_for(url.get_backend_name()).server_identity(url, spec.connect_args)


@dataclass
class _Server:
    in_use: int = 0
    peak: int = 0
    waits: int = 0


@dataclass
class ServerSlots:
    """Counting slots per server key; a caller waits while its server holds `limit` slots."""

    _servers: dict[str, _Server] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @contextmanager
    def slot(
        self,
        server: str,
        limit: int,
        *,
        should_stop: Callable[[], bool] | None = None,
        poll_seconds: float = 0.2,
    ) -> Iterator[int]:
        """Hold one slot of `server` (yields the number in use, this one included)."""
        limit = max(1, limit)
        with self._cond:
            state = self._servers.setdefault(server, _Server())
            if state.in_use >= limit:
                state.waits += 1
            while state.in_use >= limit:
                if should_stop is not None and should_stop():
                    raise OperationCancelled(
                        f"stopped while waiting for a session slot on {server}"
                    )
                self._cond.wait(poll_seconds)
            state.in_use += 1
            state.peak = max(state.peak, state.in_use)
            holding = state.in_use
        try:
            yield holding
        finally:
            with self._cond:
                state.in_use -= 1
                self._cond.notify_all()

    def stats(self, server: str) -> dict[str, int]:
        """`in_use`, `peak` (highest ever held at once) and `waits` for one server."""
        with self._cond:
            state = self._servers.get(server, _Server())
            return {"in_use": state.in_use, "peak": state.peak, "waits": state.waits}

    def reset_peaks(self) -> None:
        with self._cond:
            for state in self._servers.values():
                state.peak, state.waits = state.in_use, 0


#: the process-wide slots every extraction goes through
SLOTS = ServerSlots()


def server_slot(
    server: str, limit: int | None = None, *, should_stop: Callable[[], bool] | None = None
) -> AbstractContextManager[int]:
    """Hold one of the process-wide session slots of `server` (limit: `sessions_per_server`)."""
    return SLOTS.slot(server, sessions_per_server(limit), should_stop=should_stop)
