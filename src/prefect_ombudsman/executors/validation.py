"""Executors of `pipeline_execution` and `project_validation` operations (thin: call the engine)."""

from __future__ import annotations

from typing import Any

from prefect_ombudsman.connections import resolve_connection
from prefect_ombudsman.errors import OperationFailed
from prefect_ombudsman.operations.context import OperationContext
from prefect_ombudsman.projects import default_project_id
from prefect_ombudsman.validation.execution import run_project, run_project_pipeline
from prefect_ombudsman.validation.loader import find_pipeline_file


def run_pipeline_operation(ctx: OperationContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run one pipeline of the job's project; a FAIL or ERROR step fails the operation (with the result)."""
    project_id = ctx.project_id or default_project_id()
    ref = find_pipeline_file(arguments["pipeline_id"], project_id, ctx.projects_dir)
    if arguments.get("from_batch"):
        ref = type(ref)(ref.pipeline_id, ref.path, arguments["from_batch"], ref.searched)
    result = run_project_pipeline(
        arguments["pipeline_id"],
        project_id=project_id,
        projects_dir=ctx.projects_dir,
        config_override=arguments.get("config_override"),
        check_cancelled=ctx.check_cancelled,
        max_workers=int(arguments.get("max_parallel_steps") or 4),
        ref=ref,
        on_cancel=ctx.on_cancel,
        resolve=resolve_connection,
    )
    if arguments.get("pipeline_name"):
        result["requested_name"] = arguments["pipeline_name"]
    if result["status"] != "passed":
        s = result["summary"]
        raise OperationFailed(
            f"pipeline {result['pipeline_id']} {result['status']}: {s['failed']} FAIL, {s['errors']} ERROR of {s['total']} steps "
            f"(run {result['run_id']})",
            result=result,
        )
    return result


def run_project_operation(ctx: OperationContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run the listed pipelines (all when none) of one project against that project's connections."""
    result = run_project(
        arguments["project_id"],
        list(arguments.get("pipeline_ids") or []),
        projects_dir=ctx.projects_dir,
        check_cancelled=ctx.check_cancelled,
        on_cancel=ctx.on_cancel,
        resolve=resolve_connection,
    )
    if result["status"] != "passed":
        raise OperationFailed(
            f"project {result['project_id']}: {result['failed']} failed, {result['errors']} errors of "
            f"{result['total_pipelines']} pipelines",
            result=result,
        )
    return result
