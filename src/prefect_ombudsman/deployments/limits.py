"""Per-database concurrency across every job, worker and host: Prefect global concurrency limits.

`ombudsman setup --database-limit REF=N` creates (or updates) a global concurrency limit named
`ombudsman-db-<server>` (`postgresql://db1:5432` -> `ombudsman-db-postgresql-db1-5432`) with N
slots. While an operation runs, the first time it opens a connection to a server that has such a
limit it takes one slot, and gives it back when the operation ends: at most N operations of all
jobs on all workers touch that server at once. Servers without a limit are not slowed down (the
lookup is cached for a few seconds; no Prefect API means no limit).
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from prefect_ombudsman.dialects import engines as dc
from prefect_ombudsman.metadata.sessions import server_identity

log = logging.getLogger("prefect_ombudsman.limits")

DB_LIMIT_PREFIX = "ombudsman-db-"


_LIMIT_CACHE_SECONDS = 30.0
_limit_cache: dict[str, tuple[float, bool]] = {}
_limit_lock = threading.Lock()


def limit_name(prefix: str, server: str) -> str:
    """`prefix` + the server as a slug (`postgresql://db1:5432` -> `postgresql-db1-5432`), a GCL name."""
    slug = re.sub(r"[^a-z0-9]+", "-", server.lower()).strip("-")
    return (prefix + slug)[:200]


def database_limit_name(server: str) -> str:
    """`postgresql://db1:5432` -> `ombudsman-db-postgresql-db1-5432` (a GCL name)."""
    return limit_name(DB_LIMIT_PREFIX, server)


def limit_exists(name: str) -> bool:
    """Whether the global concurrency limit exists and is active (cached for 30 s; False when no
    Prefect API answers: the in-process bounds still hold)."""
    now = time.monotonic()
    with _limit_lock:
        hit = _limit_cache.get(name)
        if hit and now - hit[0] < _LIMIT_CACHE_SECONDS:
            return hit[1]
    exists = False
    try:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        with get_client(sync_client=True) as client:
            try:
                limit = client.read_global_concurrency_limit_by_name(name)
                exists = bool(getattr(limit, "active", True))
            except ObjectNotFound:
                exists = False
    except Exception as exc:  # no API, no permission
        log.debug("global concurrency limit %s not checked: %s", name, exc)
    with _limit_lock:
        _limit_cache[name] = (now, exists)
    return exists


@dataclass
class HeldLimits:
    """The database slots one running operation holds (released when it ends)."""

    stack: ExitStack = field(default_factory=ExitStack)
    names: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


_current: contextvars.ContextVar[HeldLimits | None] = contextvars.ContextVar(
    "ombudsman_database_limits", default=None
)


def take_database_slot(spec: dc.ConnectionSpec) -> None:
    """Hook of `get_engine`: inside an operation, hold a slot of the server's limit, if any."""
    held = _current.get()
    if held is None:
        return
    name = database_limit_name(server_identity(spec))
    with held.lock:
        if name in held.names:
            return
        held.names.add(name)
    if not limit_exists(name):
        return
    from prefect.concurrency.sync import concurrency

    try:
        held.stack.enter_context(concurrency(name, occupy=1, strict=False))
    except Exception as exc:  # the API went away between the check and the acquire
        log.warning("database limit %s not acquired, continuing without it: %s", name, exc)


@contextmanager
def operation_database_limits() -> Iterator[HeldLimits]:
    """Around one operation: slots taken by `take_database_slot` are given back at the end."""
    held = HeldLimits()
    token = _current.set(held)
    try:
        with held.stack:
            yield held
    finally:
        _current.reset(token)


def install() -> None:
    """Register the hook (idempotent); the runner's process calls this once."""
    if take_database_slot not in dc.ENGINE_HOOKS:
        dc.ENGINE_HOOKS.append(take_database_slot)


def ensure_database_limit(client: Any, server: str, slots: int) -> str:
    """Create or update the GCL of `server` with `slots` slots (setup)."""
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectNotFound

    name = database_limit_name(server)
    try:
        current = client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=slots, active=True)
        )
        return f"concurrency limit {name!r} ({server}): {slots} slots, created"
    if current.limit != slots or not current.active:
        client.update_global_concurrency_limit(
            name, GlobalConcurrencyLimitUpdate(limit=slots, active=True)
        )
        return f"concurrency limit {name!r} ({server}): {slots} slots, updated"
    return f"concurrency limit {name!r} ({server}): {slots} slots, already set"
