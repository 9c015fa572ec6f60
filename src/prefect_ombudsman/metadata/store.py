"""Catalog files in a project's `metadata/` folder: `<connection>.json` and `mapping.json`.

A catalog file holds the latest extraction of every table of that connection: a schema-level
extraction replaces that schema's tables, a table-level one replaces those tables, an
all-schemas one replaces everything. Files are written atomically (temp file + rename) under a
folder lock, so concurrent jobs never leave half a file or lose each other's schemas.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from prefect_ombudsman.atomic import write_json_atomic
from prefect_ombudsman.credentials import SECRET_REF, is_reference
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.metadata.catalog import Catalog
from prefect_ombudsman.metadata.mapping import CatalogMapping

MAPPING_FILE = "mapping.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def connection_label(ref: str | Mapping[str, Any]) -> str:
    """A safe file-name and operation-id label for a connection reference (never a secret).

    `source` -> `source`; `sqlite:///data/src.db` -> `sqlite-src.db-1a2b3c` (the hash keeps two
    URLs with the same database name apart); `{kind: postgresql, ...}` -> `inline-postgresql-...`.
    """
    if isinstance(ref, Mapping) and is_reference(ref) and isinstance(ref.get("url"), str):
        return connection_label(str(ref["url"]))  # a sealed URL: labelled as the URL was
    if isinstance(ref, Mapping):
        ref = {k: v for k, v in ref.items() if k != SECRET_REF}
        base = str(ref.get("name") or f"inline-{ref.get('kind') or 'connection'}")
        digest = hashlib.sha256(
            json.dumps(
                sorted(
                    (str(k), str(v))
                    for k, v in ref.items()
                    if "pass" not in str(k).lower()
                    and "secret" not in str(k).lower()
                    and "token" not in str(k).lower()
                )
            ).encode()
        ).hexdigest()[:6]
        label = f"{base}-{digest}"
    elif "://" in ref:
        try:
            url = make_url(ref)
            backend = url.get_backend_name()
            where = Path(url.database).name if url.database else (url.host or "")
            shown = url.render_as_string(hide_password=True)
        except Exception:
            backend, where, shown = "url", "", ref.split("://", 1)[0]
        digest = hashlib.sha256(shown.encode()).hexdigest()[:6]
        label = "-".join(p for p in (backend, where, digest) if p)
    else:
        label = ref
    label = _UNSAFE.sub("-", label).strip("-.")[:80].strip("-.")
    return label or "connection"


def catalog_path(folder: Path, label: str) -> Path:
    if label != connection_label(label):
        raise ConfigurationError(f"connection label {label!r} is not a safe file name")
    return folder / f"{label}.json"


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock on `folder` for this process's threads and (POSIX) other processes."""
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: threads only
            yield
            return
        fd = os.open(key, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _merge(previous: Catalog, new: Catalog) -> Catalog:
    if new.scope == "all":
        return new
    if new.scope == "tables":
        replaced = {((t.schema_name or "").casefold(), t.name.casefold()) for t in new.tables}
        kept = [
            t
            for t in previous.tables
            if ((t.schema_name or "").casefold(), t.name.casefold()) not in replaced
        ]
    else:
        covered = {s.casefold() for s in new.schemas}
        kept = [t for t in previous.tables if (t.schema_name or "").casefold() not in covered]
    merged = new.model_copy(deep=True)
    merged.tables = sorted([*kept, *new.tables], key=lambda t: (t.schema_name or "", t.name))
    merged.schemas = sorted({*previous.schemas, *new.schemas})
    merged.scope = "all" if previous.scope == "all" else "schema"
    merged.table_names = None
    return merged


def save_catalog(catalog: Catalog, folder: Path, label: str) -> Path:
    """Write `folder/<label>.json`, merged with what an earlier extraction of it left there."""
    path = catalog_path(folder, label)
    with folder_lock(folder):
        data = catalog
        if path.exists() and catalog.scope != "all":
            try:
                previous = Catalog.load(path)
            except ConfigurationError:
                previous = None  # unreadable: the new catalog replaces it
            if (
                previous is not None
                and previous.dialect == catalog.dialect
                and previous.database == catalog.database
            ):
                data = _merge(previous, catalog)
        write_json_atomic(path, data.to_json())
    return path


def save_mapping(mapping: CatalogMapping, folder: Path) -> Path:
    path = folder / MAPPING_FILE
    with folder_lock(folder):
        write_json_atomic(path, mapping.model_dump(mode="json"))
    return path
