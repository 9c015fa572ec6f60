"""Generate a star schema once and load it into every target, table by table.

Each chunk is generated once and written to every target (the drift target gets its drifted
copy), so all targets receive identical data without drift. Each table commits per target
through `TableLoad` (staging table + swap), so a failure or a cancel between chunks leaves
every target with either its old table or the complete new one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prefect_ombudsman.credentials import mask_text
from prefect_ombudsman.datagen.drift import DriftPlan, DriftSpec, write_manifest
from prefect_ombudsman.datagen.generator import ContentDigest, GenerationPlan, iter_chunks, rebatch
from prefect_ombudsman.datagen.load import TableLoad, Target, prepare_target
from prefect_ombudsman.dialects.base import driver_cause
from prefect_ombudsman.errors import ConfigurationError, OmbudsmanError, OperationCancelled

ProgressCallback = Callable[[str, int, int], None]


def _no_cancel() -> None:
    return None


def resolve_drift_target(spec: DriftSpec, labels: Sequence[str]) -> int:
    """Index of the target that gets the drift: by reference, by index, else the last one."""
    if spec.target is None:
        return len(labels) - 1
    if isinstance(spec.target, int):
        if 0 <= spec.target < len(labels):
            return spec.target
    elif spec.target in labels:
        return list(labels).index(spec.target)
    elif mask_text(spec.target) in labels:  # a URL with a password: labels show it masked
        return list(labels).index(mask_text(spec.target))
    raise ConfigurationError(
        f"drift.target {mask_text(str(spec.target))!r} is not one of the targets: "
        + ", ".join(f"{i}: {label}" for i, label in enumerate(labels))
    )


def _wrap(target: Target, table: str, exc: Exception) -> Exception:
    """Name the target and table in the error; keep the classes callers act on."""
    if isinstance(exc, (ConfigurationError, OperationCancelled)):
        return exc
    # the driver's own error (not SQLAlchemy's wrapper with the SQL); the cause stays attached,
    # so a transient one (lost connection, DuckDB file lock) is retried by the runner
    return OmbudsmanError(f"target {target.label!r}, table {table}: {driver_cause(exc)}")


def generate_warehouse(
    plan: GenerationPlan,
    targets: Sequence[Target],
    *,
    if_exists: str = "replace",
    drift: DriftSpec | None = None,
    manifest_path: Path | None = None,
    batch_rows: int | None = None,
    check_cancelled: Callable[[], None] = _no_cancel,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Generate `plan` into `targets`; returns the operation result (JSON)."""
    if not targets:
        raise ConfigurationError("no targets to load: give at least one connection")
    engines = [id(t.engine) for t in targets]
    duplicates = sorted({t.label for t in targets if engines.count(id(t.engine)) > 1})
    if duplicates:
        raise ConfigurationError(
            f"the same database is named twice as a target: {', '.join(duplicates)}"
        )
    started = time.perf_counter()
    drift_index = resolve_drift_target(drift, [t.label for t in targets]) if drift else None
    drift_plan = (
        DriftPlan(drift, plan, targets[drift_index].label)
        if drift and drift_index is not None
        else None
    )

    for target in targets:
        check_cancelled()
        try:
            prepare_target(target, plan.tables, if_exists)
        except Exception as exc:
            raise _wrap(target, "(schemas)", exc) from exc

    tables: list[dict[str, Any]] = []
    loaded: dict[str, dict[str, Any]] = {t.label: {} for t in targets}
    for table in plan.tables:
        check_cancelled()
        table_started = time.perf_counter()
        total = plan.sizes[table.name]
        loads = [TableLoad(target, table, if_exists, rows=total) for target in targets]
        opened: list[TableLoad] = []
        digest = ContentDigest()
        current = loads[0]
        try:
            for load in sorted(
                loads, key=lambda item: item.lock_key
            ):  # one lock order: no deadlock
                current = load
                load.open()
                opened.append(load)
            done = 0
            for chunk in rebatch(iter_chunks(plan, table), batch_rows):
                check_cancelled()
                digest.update(chunk)
                for index, load in enumerate(loads):
                    current = load
                    data = (
                        drift_plan.apply(table, done, chunk)
                        if index == drift_index and drift_plan
                        else chunk
                    )
                    load.write(data)
                done += chunk.num_rows
                if on_progress is not None:
                    on_progress(table.name, done, total)
            if drift_plan is not None and drift_index is not None:
                extra = drift_plan.extra_rows(table)
                if extra is not None:
                    current = loads[drift_index]
                    loads[drift_index].write(extra)
            check_cancelled()
            for load in loads:
                current = load
                load.finish()
        except BaseException as exc:
            for load in opened:
                load.abort()
            if isinstance(exc, Exception):
                raise _wrap(current.target, current.where, exc) from exc
            raise
        seconds = time.perf_counter() - table_started
        tables.append(
            {
                "table": table.name,
                "schema": table.schema,
                "rows": total,
                "content_sha256": digest.hexdigest(),
                "seconds": round(seconds, 3),
            }
        )
        for load in loads:
            loaded[load.target.label][load.where] = {
                "rows": load.rows,
                "load_seconds": round(load.seconds, 3),
            }

    manifest = drift_plan.manifest() if drift_plan else None
    written = (
        write_manifest(manifest, manifest_path) if manifest is not None and manifest_path else None
    )
    duration = time.perf_counter() - started
    rows_total = sum(t["rows"] for t in tables)
    labels = ", ".join(t.label for t in targets)
    planted = f"; drift in {drift_plan.target}" if drift_plan else ""
    return {
        "summary": f"{plan.schema.name} seed {plan.seed}: {rows_total:,} rows in {len(tables)} tables "
        f"into {labels}{planted} ({duration:.1f} s)",
        **plan.describe(),
        "if_exists": if_exists,
        "rows_generated": rows_total,
        "duration_seconds": round(duration, 3),
        "rows_per_second": int(rows_total / duration) if duration > 0 else None,
        "tables": tables,
        "targets": [
            {
                "target": t.label,
                "dialect": t.dialect.name,
                "drift": index == drift_index,
                "tables": loaded[t.label],
            }
            for index, t in enumerate(targets)
        ],
        "drift": None
        if drift_plan is None
        else {
            "target": drift_plan.target,
            "drift_seed": drift_plan.seed,
            "manifest_path": str(written) if written else None,
            "counts": drift_plan.summary(),
            "manifest": manifest if written is None else None,
        },
    }
