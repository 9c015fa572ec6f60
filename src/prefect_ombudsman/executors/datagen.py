"""Executor of `datagen` operations: generate one schema item and load it into its targets."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Any

from prefect_ombudsman.confinement import confine_path
from prefect_ombudsman.credentials import label_of
from prefect_ombudsman.datagen.drift import parse_drift
from prefect_ombudsman.datagen.generator import build_plan
from prefect_ombudsman.datagen.load import Target
from prefect_ombudsman.datagen.warehouse import generate_warehouse
from prefect_ombudsman.operations.context import OperationContext
from prefect_ombudsman.progress_listeners import Listeners
from prefect_ombudsman.projects import find_project

log = logging.getLogger("prefect_ombudsman.datagen")

DEFAULT_TARGETS = ("source", "target")

# The CLI's per-table bars: (operation_id, table, rows_done, rows_total), from operation threads.
ROW_LISTENERS: Listeners[[str, str, int, int]] = Listeners("rows loaded")


def target_label(ref: Any, index: int) -> str:
    """`source`, a URL with its password masked, else `inline-<index>`."""
    return label_of(ref, f"inline-{index}")


def manifest_path(ctx: OperationContext, requested: str | None) -> Path:
    """Where the drift manifest goes: the spec's path (relative to the project folder), else
    `<project>/results/drift/<job>_<operation>.json` (no project: under the projects root)."""
    project = find_project(ctx.project_id, ctx.projects_dir)
    base = project.path if project else ctx.projects_dir
    if requested:
        return confine_path(requested, root=ctx.projects_dir, field="drift.manifest", base=base)
    folder = (
        project.results_dir / "drift" if project else ctx.projects_dir / ".ombudsman" / "datagen"
    )
    return folder / f"{ctx.job_id}_{ctx.operation_id}.json"


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else value


def run_data_generation(ctx: OperationContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Plan, resolve the targets, generate and load; the result names seed, tables and drift."""
    plan = build_plan(
        arguments["schema_type"],
        int(arguments["row_count"]),
        arguments.get("seed"),
        tables=arguments.get("tables"),
        table_name=arguments.get("table_name"),
        start_date=_date(arguments.get("start_date")),
        end_date=_date(arguments.get("end_date")),
    )
    drift = parse_drift(arguments["drift"]) if arguments.get("drift") else None
    refs = list(arguments.get("targets") or DEFAULT_TARGETS)
    targets = [Target(target_label(ref, i), ctx.engine(ref)) for i, ref in enumerate(refs)]
    result = generate_warehouse(
        plan,
        targets,
        if_exists=arguments.get("if_exists") or "replace",
        drift=drift,
        manifest_path=manifest_path(ctx, drift.manifest) if drift else None,
        batch_rows=arguments.get("batch_rows"),
        check_cancelled=ctx.check_cancelled,
        on_progress=lambda table, done, total: ROW_LISTENERS.notify(
            ctx.operation_id, table, done, total
        ),
    )
    result["seed_source"] = arguments.get("seed_source", "request")
    return result
