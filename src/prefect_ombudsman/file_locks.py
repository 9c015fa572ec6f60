"""Cross-process exclusive locks on a lock file (`fcntl.flock`), with a bounded wait.

One process holds a lock file at a time; inside that process the lock is shared by every thread
(a count), so nested and parallel uses never wait on themselves. The holder writes who it is
(pid, command, since) into the file, so a process that gives up can say who kept it waiting.
The kernel drops the lock when the holder exits, however it exits: a stale file never blocks.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from prefect_ombudsman.errors import OmbudsmanError

try:  # POSIX only; elsewhere the locks are no-ops (and DuckDB's own lock error surfaces)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

DEFAULT_TIMEOUT_SECONDS = 300.0
TIMEOUT_VARIABLE = "OMBUDSMAN_FILE_LOCK_TIMEOUT_SECONDS"


class FileLockTimeout(OmbudsmanError):
    """Another process kept a lock file longer than the bounded wait."""


def lock_timeout() -> float:
    """Seconds to wait for a file another process holds ($OMBUDSMAN_FILE_LOCK_TIMEOUT_SECONDS)."""
    raw = os.environ.get(TIMEOUT_VARIABLE, "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_TIMEOUT_SECONDS
    except ValueError:
        raise OmbudsmanError(f"{TIMEOUT_VARIABLE}={raw!r}: expected a number of seconds") from None
    return max(value, 0.0)


def holder_of(path: Path) -> str:
    """Who the lock file says holds it ("pid 123: ombudsman run ..., since 06:50:01 UTC")."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "an unknown process"
    if not isinstance(info, dict) or "pid" not in info:
        return "an unknown process"
    return f"pid {info['pid']}: {info.get('command', '?')}, since {info.get('since', '?')}"


class _ProcessLock:
    """One lock file as this process sees it: the open descriptor and how many users hold it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.users = 0
        self.fd: int | None = None
        self.changed = threading.Condition()
        self.acquiring = False

    def acquire(self, timeout: float, label: str) -> None:
        with self.changed:
            while self.acquiring:
                self.changed.wait()
            if self.users:
                self.users += 1
                return
            self.acquiring = True
        try:
            fd = _lock_file(self.path, timeout, label)
        finally:
            with self.changed:
                self.acquiring = False
                self.changed.notify_all()
        with self.changed:
            self.fd = fd
            self.users = 1

    def release(self) -> None:
        with self.changed:
            self.users -= 1
            if self.users or self.fd is None:
                return
            fd, self.fd = self.fd, None
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _lock_file(path: Path, timeout: float, label: str) -> int:
    """Open and flock `path`, polling until `timeout`; write this process in as the holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is None:  # pragma: no cover - Windows
        return fd
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = holder_of(path)
                os.close(fd)
                raise FileLockTimeout(
                    f"{label} is in use by another process ({holder}); gave up after "
                    f"{timeout:g} s (set {TIMEOUT_VARIABLE} to wait longer)"
                ) from None
            time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
            pause = min(pause * 2, 0.5)
    me = {
        "pid": os.getpid(),
        "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))[:200],
        "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    return fd


_LOCKS: dict[Path, _ProcessLock] = {}
_LOCKS_GUARD = threading.Lock()


@contextmanager
def exclusive(path: Path, *, label: str, timeout: float | None = None) -> Iterator[None]:
    """Hold `path` against other processes (threads of this process share it).

    Waits up to `timeout` seconds (default `lock_timeout()`), then raises `FileLockTimeout`
    naming `label` and the holder."""
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(path, _ProcessLock(path))
    lock.acquire(lock_timeout() if timeout is None else timeout, label)
    try:
        yield
    finally:
        lock.release()
