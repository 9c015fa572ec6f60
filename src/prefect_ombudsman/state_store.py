"""Job state in Prefect result storage, so every worker and API process on any host sees it.

What lives here, under keys built from the job id (= flow run id) only:

    ombudsman/checkpoints/<job_id>/<seq>.jsonl   completed operations, append-only segments
    ombudsman/jobs/<job_id>/retry.json           the operations the next retry runs
    ombudsman/jobs/<job_id>/report.json          the job report (+ report.csv, .junit.xml, .html)

The storage is Prefect's result storage: the block named by `PREFECT_DEFAULT_RESULT_STORAGE_BLOCK`,
else the server's default (`prefect result-storage set <block>`), else a `LocalFileSystem` at
`PREFECT_LOCAL_STORAGE_PATH` (`$PREFECT_HOME/storage`). Any `WritableFileSystem` works: only
`read_path` / `write_path` are used (no listing, no append), which is why the checkpoint is a run of
numbered segments a retry reads until the first missing one.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Coroutine, Mapping
from typing import Any, cast
from uuid import UUID

from prefect_ombudsman.errors import ConfigurationError, OmbudsmanError

log = logging.getLogger("prefect_ombudsman.state_store")

PREFIX = "ombudsman"
REPORT_FILES = {
    "json": "report.json",
    "csv": "report.csv",
    "junit": "report.junit.xml",
    "html": "report.html",
}
_MISSING = re.compile(r"does not exist|not found|no such|nosuchkey|404", re.IGNORECASE)
_READ_ATTEMPTS = 4
_DEFAULT_TTL_SECONDS = 30.0


class StateStoreError(OmbudsmanError):
    """The result storage could not be read or written (the job state there is not trusted)."""


def job_id_of(value: Any) -> str:
    """The canonical form of a job id; anything but a UUID is refused (it picks a storage key)."""
    try:
        return str(UUID(str(value)))
    except (TypeError, ValueError, AttributeError):
        raise ConfigurationError(f"job_id: {str(value)[:80]!r} is not a job id (a UUID)") from None


def checkpoint_key(job_id: Any, seq: int) -> str:
    return f"{PREFIX}/checkpoints/{job_id_of(job_id)}/{seq:06d}.jsonl"


def job_key(job_id: Any, name: str) -> str:
    if (
        name != "retry.json"
        and name not in REPORT_FILES.values()
        and name != "validation_report.json"
    ):
        raise ConfigurationError(f"name: {name!r} is not a stored job file")
    return f"{PREFIX}/jobs/{job_id_of(job_id)}/{name}"


def _sync(result: Any) -> Any:
    """A block method's result: storage blocks may be async-dispatching or async-only."""
    if inspect.isawaitable(result):
        from prefect.utilities.asyncutils import run_coro_as_sync

        return run_coro_as_sync(cast(Coroutine[Any, Any, Any], result))
    return result


def _is_missing(exc: BaseException) -> bool:
    return isinstance(exc, (FileNotFoundError, KeyError)) or bool(_MISSING.search(str(exc)))


class StateStore:
    """A Prefect `WritableFileSystem` seen as a key/value store of job state."""

    def __init__(self, storage: Any, slug: str | None = None) -> None:
        self.storage = storage
        self.slug = slug if slug is not None else block_slug(storage)

    def __repr__(self) -> str:
        return f"StateStore({self.slug or type(self.storage).__name__})"

    def read(self, key: str) -> bytes | None:
        """The object's bytes, None when it does not exist; other errors are retried, then raised."""
        for attempt in range(1, _READ_ATTEMPTS + 1):
            try:
                data = _sync(self.storage.read_path(key))
            except Exception as exc:
                if _is_missing(exc):
                    return None
                if attempt == _READ_ATTEMPTS:
                    raise StateStoreError(
                        f"result storage {self.slug or type(self.storage).__name__}: "
                        f"cannot read {key}: {type(exc).__name__}: {exc}"
                    ) from exc
                time.sleep(0.2 * 2**attempt)
                continue
            return data if isinstance(data, bytes) else str(data).encode()
        return None  # pragma: no cover

    def write(self, key: str, data: bytes) -> None:
        try:
            _sync(self.storage.write_path(key, data))
        except Exception as exc:
            raise StateStoreError(
                f"result storage {self.slug or type(self.storage).__name__}: "
                f"cannot write {key}: {type(exc).__name__}: {exc}"
            ) from exc

    def read_json(self, key: str) -> Any:
        data = self.read(key)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None

    def write_json(self, key: str, value: Any) -> None:
        self.write(key, json.dumps(value, default=str).encode())


def block_slug(storage: Any) -> str | None:
    """`<block-type>/<name>` of a saved storage block (None: an anonymous one, e.g. the local default)."""
    name = getattr(storage, "_block_document_name", None)
    if not name or getattr(storage, "_is_anonymous", False):
        return None
    try:
        return f"{storage.get_block_type_slug()}/{name}"
    except Exception:
        return None


# ----------------------------------------------------------------------------- which storage

_CACHE_LOCK = threading.Lock()
_DEFAULT: tuple[float, StateStore] | None = None
_NAMED: dict[str, StateStore] = {}


def default_store(ttl: float = _DEFAULT_TTL_SECONDS) -> StateStore:
    """Prefect's default result storage (settings, then the server's default, then local)."""
    global _DEFAULT
    with _CACHE_LOCK:
        if _DEFAULT is not None and time.monotonic() - _DEFAULT[0] < ttl:
            return _DEFAULT[1]
    from prefect.results import get_default_result_storage

    storage = get_default_result_storage(_sync=True)  # type: ignore[call-arg]
    store = StateStore(storage)
    with _CACHE_LOCK:
        _DEFAULT = (time.monotonic(), store)
    return store


def run_store() -> StateStore:
    """The storage of the current flow run (resolved by Prefect at flow start), else the default."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    storage = getattr(getattr(ctx, "result_store", None), "result_storage", None)
    if storage is not None and hasattr(storage, "write_path"):
        return StateStore(storage)
    return default_store()


def store_for(slug: str | None) -> StateStore:
    """The block a job recorded (`<block-type>/<name>`, loaded through the Prefect API), else the
    default; a block that cannot be loaded falls back to the default with a warning."""
    if not slug or not isinstance(slug, str) or slug.count("/") != 1:
        return default_store()
    with _CACHE_LOCK:
        if slug in _NAMED:
            return _NAMED[slug]
    try:
        from prefect.blocks.core import Block

        block = Block.load(slug, _sync=True)  # type: ignore[call-arg]
        if not (hasattr(block, "read_path") and hasattr(block, "write_path")):
            raise TypeError(f"{type(block).__name__} is not a file system")
        store = StateStore(block, slug)
    except Exception as exc:
        log.warning(
            "result storage block %s could not be loaded (%s): using the default", slug, exc
        )
        return default_store()
    with _CACHE_LOCK:
        _NAMED[slug] = store
    return store


# ----------------------------------------------------------------------------- checkpoint segments


class SegmentLog:
    """An append-only log over storage without append: numbered segment objects.

    `append` only queues a line (microseconds); a background thread writes all queued lines as the
    next segment, at most one write per `min_interval` seconds, so lines that complete while a write
    is in flight (or within the interval) share the next segment: a retry reads few segments.
    `flush`/`close` wait for the queue to be written. A line is recorded once its segment is written.
    """

    def __init__(self, store: StateStore, job_id: str, min_interval: float = 0.0) -> None:
        self.store = store
        self.job_id = job_id_of(job_id)
        self.min_interval = min_interval
        self.next_seq: int | None = None
        self._pending: list[str] = []
        self._written = 0  # lines written so far
        self._queued = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._flushing = 0
        self.error: str | None = None

    def load(self) -> list[dict[str, Any]]:
        """Every entry of every segment, in order (a line cut by a crash is skipped)."""
        entries: list[dict[str, Any]] = []
        seq = 0
        while True:
            data = self.store.read(checkpoint_key(self.job_id, seq))
            if data is None:
                break
            for line in data.decode("utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    entries.append(entry)
            seq += 1
        self.next_seq = seq
        return entries

    def append(self, line: str) -> None:
        with self._cond:
            self._pending.append(line)
            self._queued += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ombudsman-checkpoint-writer", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every line appended so far is written (False: not within `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._queued
            self._flushing += 1
            self._cond.notify_all()
            try:
                while (
                    self._written < target and self._thread is not None and self._thread.is_alive()
                ):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
                return self._written >= target
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 60.0) -> bool:
        done = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return done

    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                batch = list(self._pending)
            try:
                if self.next_seq is None:
                    self.load()
                seq = self.next_seq or 0
                self.store.write(
                    checkpoint_key(self.job_id, seq), ("\n".join(batch) + "\n").encode()
                )
            except Exception as exc:
                failures += 1
                self.error = str(exc)
                with self._cond:
                    if self._closing and failures >= 3:
                        # what is not written is not recorded: a retry runs those operations again
                        log.warning("checkpoint lines lost after %d attempts: %s", failures, exc)
                        self._written += len(batch)
                        del self._pending[: len(batch)]
                        self._cond.notify_all()
                        continue
                    self._pause(min(5.0, 0.1 * 2**failures), on_flush=False)
                continue
            failures = 0
            with self._cond:
                self.next_seq = seq + 1
                del self._pending[: len(batch)]
                self._written += len(batch)
                self._cond.notify_all()
                self._pause(self.min_interval)

    def _pause(self, seconds: float, on_flush: bool = True) -> None:
        """Wait `seconds` (lock held) while lines gather; a close, or a flush of queued lines,
        ends it at once."""
        deadline = time.monotonic() + seconds
        while not self._closing and not (on_flush and self._flushing and self._pending):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)


# ----------------------------------------------------------------------------- retry selections


def write_retry_selection(store: StateStore, job_id: str, operation_ids: list[str]) -> None:
    store.write_json(job_key(job_id, "retry.json"), {"operation_ids": list(operation_ids)})


def take_retry_selection(store: StateStore, job_id: str) -> set[str] | None:
    """The selection of this retry, consumed (overwritten: storage has no delete), or None."""
    data = store.read_json(job_key(job_id, "retry.json"))
    ids = data.get("operation_ids") if isinstance(data, dict) else None
    if not isinstance(ids, list):
        return None
    store.write_json(job_key(job_id, "retry.json"), {"operation_ids": None, "consumed": True})
    return {str(i) for i in ids}


# ----------------------------------------------------------------------------- reports

_REPORTS: OrderedDict[tuple[str, str, str], dict[str, Any]] = OrderedDict()
_REPORTS_MAX = 64


def write_job_files(store: StateStore, job_id: str, files: dict[str, str]) -> None:
    """Store a job's files (name → text), e.g. `report.json` and its CSV/JUnit/HTML renderings."""
    for name, text in files.items():
        store.write(job_key(job_id, name), text.encode("utf-8"))


def store_job_report(
    summary: dict[str, Any],
    rendered: Mapping[str, str] | None = None,
    store: StateStore | None = None,
    files: Mapping[str, str] | None = None,
) -> bool:
    """The job report (`summary` as `report.json`, its renderings by kind — `csv`, `junit`,
    `html` — and other `files` by name) into result storage under the job id; False on failure."""
    named = {REPORT_FILES[kind]: text for kind, text in (rendered or {}).items()}
    named.update(files or {})
    named[REPORT_FILES["json"]] = json.dumps(summary, indent=2, default=str)
    try:
        write_job_files(store or run_store(), summary["job_id"], named)
    except Exception as exc:
        log.warning("could not store the report of job %s: %s", summary.get("job_id"), exc)
        return False
    return True


def read_job_file(store: StateStore, job_id: str, name: str) -> bytes | None:
    return store.read(job_key(job_id, name))


def read_report(
    job_id: Any,
    *,
    storage: str | None = None,
    report_id: str | None = None,
    name: str = "report.json",
) -> dict[str, Any] | None:
    """A job's stored JSON report (`report_id`: only that version; cached in this process by it)."""
    job_id = job_id_of(job_id)
    cache_key = (job_id, name, report_id or "")
    if report_id:
        with _CACHE_LOCK:
            if cache_key in _REPORTS:
                _REPORTS.move_to_end(cache_key)
                return _REPORTS[cache_key]
    try:
        data = store_for(storage).read_json(job_key(job_id, name))
    except StateStoreError as exc:
        log.warning("%s", exc)
        return None
    if not isinstance(data, dict) or (report_id and data.get("report_id") != report_id):
        return None
    if report_id:
        with _CACHE_LOCK:
            _REPORTS[cache_key] = data
            while len(_REPORTS) > _REPORTS_MAX:
                _REPORTS.popitem(last=False)
    return data
