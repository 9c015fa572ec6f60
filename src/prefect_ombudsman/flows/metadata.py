"""`bulk_metadata_extraction`: the SPEC §9 catalog of many sources, limited per database server.

One operation per item (`metadata_{i}_{connection}_{schema|all}`). After the batch, from the
flow thread: a table artifact per extracted source and, when the job extracted both the
project's source and target, the project's `metadata/mapping.json`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact

from prefect_ombudsman.executors.metadata import run_metadata_extraction
from prefect_ombudsman.flows.parameters import job_flow, job_request
from prefect_ombudsman.flows.runner import (
    OperationPlan,
    register_executor,
    run_batch,
    settings_from,
)
from prefect_ombudsman.jobs.models import (
    BatchJobType,
    BatchMetadataRequest,
)
from prefect_ombudsman.jobs.types import entry_for
from prefect_ombudsman.metadata.catalog import Catalog
from prefect_ombudsman.metadata.mapping import map_catalogs
from prefect_ombudsman.metadata.store import connection_label, save_mapping
from prefect_ombudsman.projects import find_project, projects_root

log = logging.getLogger("prefect_ombudsman.metadata")

register_executor("metadata_extraction", run_metadata_extraction)

METADATA = entry_for(BatchJobType.bulk_metadata_extraction)

ARTIFACT_ROWS = 1000


def _schema_label(schema: str | None) -> str:
    return (
        (re.sub(r"[^A-Za-z0-9_.\-]+", "-", schema).strip("-.")[:60] or "schema")
        if schema
        else "all"
    )


def plan_metadata(
    request: BatchMetadataRequest, *, job_id: str = "", projects_dir: str | None = None
) -> list[OperationPlan]:
    """One operation per source item; a reference that does not resolve fails only its own operation."""
    plans = []
    for i, item in enumerate(request.items):
        label = connection_label(item.reference)
        plans.append(
            OperationPlan(
                operation_id=f"metadata_{i}_{label}_{_schema_label(item.schema_name)}",
                operation_type="metadata_extraction",
                executor="metadata_extraction",
                arguments={
                    "connection": item.reference,
                    "label": label,
                    "schema_name": item.schema_name,
                    "table_names": item.table_names,
                    "exact_counts": request.exact_counts,
                    "sessions_per_server": request.sessions_per_server,
                },
                metadata={
                    "connection": label,
                    "connection_type": item.connection_type,
                    "schema_name": item.schema_name,
                    "table_names": item.table_names,
                },
            )
        )
    return plans


def _completed_results(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        op["result"]
        for op in summary.get("operations", [])
        if op.get("status") == "completed"
        and isinstance(op.get("result"), dict)
        and "tables" in op["result"]
    ]


def _publish_catalog_artifacts(results: list[dict[str, Any]]) -> None:
    for result in results:
        label = str(result.get("connection", "source"))
        key = "ombudsman-metadata-" + (
            re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "source"
        )
        tables = result.get("tables", [])
        rows = [
            {
                "schema": t.get("schema"),
                "table": t.get("name"),
                "type": t.get("type"),
                "columns": len(t.get("columns", [])),
                "primary_key": ", ".join(t.get("primary_key", [])),
                "foreign_keys": len(t.get("foreign_keys", [])),
                "row_count": t.get("row_count"),
                "row_count_exact": t.get("row_count_exact"),
            }
            for t in tables[:ARTIFACT_ROWS]
        ]
        more = f" (first {ARTIFACT_ROWS} of {len(tables)})" if len(tables) > ARTIFACT_ROWS else ""
        problems = len(result.get("problems", []))
        try:
            create_table_artifact(
                key=key[:100],
                table=rows,
                description=(
                    f"Catalog of {label} ({result.get('dialect')}, database {result.get('database')}): "
                    f"{len(tables)} tables{more}, {problems} problems; file {result.get('file')}"
                ),
            )
        except Exception as exc:
            log.warning("could not publish the catalog artifact of %s: %s", label, exc)


def _write_mapping(
    results: list[dict[str, Any]], project_id: str | None, projects_dir: str | None
) -> str | None:
    """Pair the project's source and target when this job extracted both; returns the file path."""
    by_role: dict[str, list[Catalog]] = {"source": [], "target": []}
    for result in results:
        if result.get("role") in by_role:
            by_role[result["role"]].append(Catalog.model_validate(result))
    if not by_role["source"] or not by_role["target"]:
        return None
    project = find_project(project_id, projects_root(projects_dir))
    if project is None:
        return None
    source, target = (_union(by_role[r]) for r in ("source", "target"))
    mapping = map_catalogs(
        source, target, project.config.schema_mappings, project_id=project.project_id
    )
    return str(save_mapping(mapping, project.metadata_dir))


def _union(catalogs: list[Catalog]) -> Catalog:
    """Several extractions of one connection (e.g. one per schema) as one catalog."""
    merged = catalogs[0].model_copy(deep=True)
    seen = {(t.schema_name, t.name) for t in merged.tables}
    for other in catalogs[1:]:
        for tbl in other.tables:
            if (tbl.schema_name, tbl.name) not in seen:
                merged.tables.append(tbl)
                seen.add((tbl.schema_name, tbl.name))
    return merged


@job_flow(METADATA)
def bulk_metadata_extraction(**parameters: Any) -> Any:
    """Extract the metadata catalog (tables, columns, keys, row counts) of many sources.

    Each catalog is written to the project's `metadata/` folder and shown as a table artifact;
    when both the source and the target are extracted, their mapping is written too.
    """
    request, projects_dir = job_request(BatchMetadataRequest, parameters)
    state = run_batch(
        settings_from(request, METADATA.job_type, projects_dir),
        plan_metadata(request),
    )
    summary = getattr(state, "data", state)
    if isinstance(summary, dict):
        results = _completed_results(summary)
        _publish_catalog_artifacts(results)
        try:
            summary["mapping_path"] = _write_mapping(results, request.project_id, projects_dir)
        except Exception as exc:  # the catalogs are written; a mapping problem must not hide them
            get_run_logger().warning("could not write the source/target mapping: %s", exc)
            summary["mapping_path"] = None
    return state
