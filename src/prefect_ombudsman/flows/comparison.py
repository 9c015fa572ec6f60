"""`batch_comparison`: row-level comparison of many table pairs (SPEC §3, §7.3).

Items come from the request, and (with `from_mapping`) from the tables found on both sides of the
project's `metadata/mapping.json` (written by metadata extraction). Connections default to the
project's source and target.
"""

from __future__ import annotations

import json
import re
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact

import prefect_ombudsman.validation.row_checksum  # noqa: F401  (registers the row_checksum validator)
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.executors.comparison import compare_table_pair
from prefect_ombudsman.flows.parameters import job_flow, job_request
from prefect_ombudsman.flows.runner import (
    OperationPlan,
    register_executor,
    run_batch,
    settings_from,
)
from prefect_ombudsman.jobs.models import (
    BatchComparisonRequest,
    BatchJobType,
    ComparisonItem,
)
from prefect_ombudsman.jobs.types import entry_for
from prefect_ombudsman.projects import find_project, projects_root

register_executor("compare", compare_table_pair)

COMPARISON = entry_for(BatchJobType.batch_comparison)

MAPPING_FILE = "mapping.json"


def _qualified(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


def items_from_mapping(project_id: str | None, projects_dir: str | None) -> list[ComparisonItem]:
    """One item per table found in both sides of the project's `metadata/mapping.json`."""
    project = find_project(project_id, projects_root(projects_dir))
    if project is None:
        raise ConfigurationError(
            f"project {project_id!r} not found under {projects_root(projects_dir)}"
        )
    path = project.metadata_dir / MAPPING_FILE
    if not path.is_file():
        raise ConfigurationError(
            f"{path} does not exist: run metadata extraction of the project's source and target first "
            "(`ombudsman run metadata --project ...`), or name the tables"
        )
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        raise ConfigurationError(f"{path}: not readable JSON ({exc})") from None
    items = []
    for entry in mapping.get("tables") or []:
        if entry.get("status") != "found_in_both":
            continue
        source = _qualified(entry.get("source_schema"), entry["source_table"])
        target = _qualified(entry.get("target_schema"), entry["target_table"])
        items.append(
            ComparisonItem(table=entry["source_table"], source_table=source, target_table=target)
        )
    return items


def _op_name(item: ComparisonItem) -> str:
    name = item.table or item.source_table or "table"
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)[:100]


def plan_comparison(
    request: BatchComparisonRequest, *, job_id: str = "", projects_dir: str | None = None
) -> list[OperationPlan]:
    """One operation per table pair, id `compare_{i}_{table}`."""
    items = list(request.items)
    if request.from_mapping:
        items += items_from_mapping(request.project_id, projects_dir)
    plans = []
    for i, item in enumerate(items):
        arguments = item.model_dump(mode="json")
        plans.append(
            OperationPlan(
                operation_id=f"compare_{i}_{_op_name(item)}",
                operation_type="comparison",
                executor="compare",
                arguments=arguments,
                metadata={
                    "table": item.table or item.source_table,
                    "source_table": item.source_table or item.table,
                    "target_table": item.target_table,
                },
            )
        )
    return plans


def _publish_results(summary: Any) -> None:
    if not isinstance(summary, dict):
        return
    rows = []
    for op in summary.get("operations", []):
        result = op.get("result") if isinstance(op.get("result"), dict) else {}
        rows.append(
            {
                "operation_id": op["operation_id"],
                "table": result.get("table") or (op.get("metadata") or {}).get("table"),
                "status": result.get("status") or op["status"],
                "source_rows": result.get("source_rows"),
                "target_rows": result.get("target_rows"),
                "missing_in_target": result.get("missing_in_target"),
                "extra_in_target": result.get("extra_in_target"),
                "changed": result.get("changed"),
                "error": (op.get("error") or "")[:200] if not result else "",
            }
        )
    try:
        create_table_artifact(
            key="ombudsman-batch-comparison-results", table=rows, description="Row-level comparison"
        )
    except Exception as exc:  # artifacts are a view; the summary is the result
        get_run_logger().warning("could not publish the comparison table: %s", exc)


@job_flow(COMPARISON)
def batch_comparison(**parameters: Any) -> Any:
    """Compare table pairs row by row: missing, extra and changed rows with sample keys.

    One operation per table pair (plus every mapped table when asked); the results table
    appears on the run's Artifacts tab.
    """
    request, projects_dir = job_request(BatchComparisonRequest, parameters)
    summary = run_batch(
        settings_from(request, COMPARISON.job_type, projects_dir),
        plan_comparison(request, projects_dir=projects_dir),
    )
    _publish_results(getattr(summary, "data", summary))
    return summary
