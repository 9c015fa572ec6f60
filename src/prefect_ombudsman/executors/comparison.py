"""Executor of `compare` operations: one table pair, compared row by row (SPEC §7.3)."""

from __future__ import annotations

from typing import Any

from prefect_ombudsman.errors import OperationFailed
from prefect_ombudsman.operations.context import OperationContext
from prefect_ombudsman.projects import find_project, map_schema
from prefect_ombudsman.validation.comparison import ComparisonOptions, compare_tables

OPTION_FIELDS = ("key_columns", "columns", "sample_size", "buckets", "hash_mode", "float_scale")


def compare_table_pair(ctx: OperationContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Compare one pair; a pair with differences is a failed operation carrying its result."""
    project = find_project(ctx.project_id, ctx.projects_dir)
    mappings = dict(project.config.schema_mappings) if project else {}
    source_table = arguments.get("source_table") or arguments["table"]
    target_table = arguments.get("target_table") or map_schema(
        arguments.get("table") or source_table, mappings
    )
    options = ComparisonOptions(
        **{k: arguments[k] for k in OPTION_FIELDS if arguments.get(k) is not None}
    )
    outcome = compare_tables(
        ctx.engine(arguments.get("source") or "source"),
        ctx.engine(arguments.get("target") or "target"),
        source_table,
        target_table,
        table_label=arguments.get("table") or source_table,
        options=options,
        cancel_check=ctx.check_cancelled,
    )
    result = outcome.result.model_dump(mode="json")
    if outcome.result.status != "PASS":
        raise OperationFailed(
            f"{result['table']}: {result['missing_in_target']} missing in target, "
            f"{result['extra_in_target']} extra, {result['changed']} changed "
            f"({result['source_rows']} source rows, {result['target_rows']} target rows)",
            result=result,
        )
    return result
