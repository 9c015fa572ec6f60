"""`batch_data_generation`: generate star schemas (SPEC §8) into every target, one operation per item."""

from __future__ import annotations

import hashlib
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext

from prefect_ombudsman.executors.datagen import DEFAULT_TARGETS, run_data_generation, target_label
from prefect_ombudsman.flows.parameters import job_flow, job_request
from prefect_ombudsman.flows.runner import (
    OperationPlan,
    register_executor,
    run_batch,
    settings_from,
)
from prefect_ombudsman.jobs.models import (
    BatchDataGenRequest,
    BatchJobType,
)
from prefect_ombudsman.jobs.types import entry_for

register_executor("datagen", run_data_generation)

DATAGEN = entry_for(BatchJobType.batch_data_generation)


def job_seed(job_id: str, index: int) -> int:
    """The seed of an item that gave none: random per job, but the same when the job is retried,
    so a retried operation loads the same data as its first attempt."""
    return int.from_bytes(hashlib.sha256(f"{job_id}:{index}".encode()).digest()[:8], "big") >> 2


def plan_datagen(
    request: BatchDataGenRequest, *, job_id: str = "local", projects_dir: str | None = None
) -> list[OperationPlan]:
    """One operation per item, id `datagen_{i}_{schema_type}`."""
    plans = []
    for i, item in enumerate(request.items):
        seed = item.seed if item.seed is not None else job_seed(job_id, i)
        arguments: dict[str, Any] = {
            **item.model_dump(mode="json"),
            "schema_type": item.schema_type.value,
            "seed": seed,
            "seed_source": "request" if item.seed is not None else "random",
        }
        refs = item.targets or list(DEFAULT_TARGETS)
        plans.append(
            OperationPlan(
                operation_id=f"datagen_{i}_{item.schema_type.value}",
                operation_type="data_generation",
                executor="datagen",
                arguments=arguments,
                metadata={
                    "schema_type": item.schema_type.value,
                    "table_name": item.table_name,
                    "row_count": item.row_count,
                    "seed": seed,
                    "seed_source": arguments["seed_source"],
                    "targets": [target_label(ref, n) for n, ref in enumerate(refs)],
                    "drift": bool(item.drift),
                },
            )
        )
    return plans


@job_flow(DATAGEN)
def batch_data_generation(**parameters: Any) -> Any:
    """Generate seeded Retail / Finance / Healthcare warehouses and load them into every target.

    One operation per item; the same seed gives the same data. The summary artifact lists the
    rows loaded per table and target.
    """
    request, projects_dir = job_request(BatchDataGenRequest, parameters)
    flow_ctx = FlowRunContext.get()
    job_id = str(flow_ctx.flow_run.id) if flow_ctx and flow_ctx.flow_run else "local"
    state = run_batch(
        settings_from(request, DATAGEN.job_type, projects_dir),
        plan_datagen(request, job_id=job_id),
    )
    publish_datagen(getattr(state, "data", state))
    return state


def datagen_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per generated table and target: what each target received (long, never cut)."""
    rows = []
    for op in summary.get("operations", []):
        result = op.get("result") if isinstance(op.get("result"), dict) else None
        if op.get("status") != "completed" or result is None:
            continue
        generated = {t["table"]: t for t in result.get("tables", [])}
        for target in result.get("targets", []):
            for where, load in target.get("tables", {}).items():
                table = where.rsplit(".", 1)[-1]
                rows.append(
                    {
                        "operation_id": op["operation_id"],
                        "schema": result.get("schema_type") or result.get("schema"),
                        "seed": result.get("seed"),
                        "target": target.get("target"),
                        "dialect": target.get("dialect"),
                        "table": where,
                        "rows_generated": generated.get(table, {}).get("rows"),
                        "rows_loaded": load.get("rows"),
                        "drift": target.get("drift"),
                        "load_seconds": load.get("load_seconds"),
                    }
                )
    return rows


def datagen_markdown(summary: dict[str, Any]) -> str:
    """Per item: its one-line summary, then rows per table and target."""
    lines = [f"# {summary.get('name')}: what was generated", ""]
    for op in summary.get("operations", []):
        result = op.get("result") if isinstance(op.get("result"), dict) else None
        if result is None:
            lines += [f"## `{op['operation_id']}`: {op.get('status')}", ""]
            if op.get("error"):
                lines += [f"> {str(op['error']).splitlines()[0][:500]}", ""]
            continue
        targets = [t.get("target") for t in result.get("targets", [])]
        lines += [f"## `{op['operation_id']}`", "", str(result.get("summary", "")), ""]
        lines += [
            "| table | generated | " + " | ".join(f"{t} (loaded)" for t in targets) + " |",
            "|---|---:|" + "---:|" * len(targets),
        ]
        loaded = {t.get("target"): t.get("tables", {}) for t in result.get("targets", [])}
        for table in result.get("tables", []):
            cells = []
            for target in targets:
                match: dict[str, Any] = next(
                    (
                        v
                        for k, v in loaded[target].items()
                        if k.rsplit(".", 1)[-1] == table["table"]
                    ),
                    {},
                )
                cells.append(f"{match.get('rows', '')!s}")
            lines.append(f"| {table['table']} | {table['rows']:,} | " + " | ".join(cells) + " |")
        if result.get("drift"):
            lines += ["", f"Planted differences in `{result['drift'].get('target')}`."]
        lines.append("")
    return "\n".join(lines)


def publish_datagen(summary: Any) -> None:
    """The datagen artifacts: rows per table and target, as a table and as a markdown card."""
    if not isinstance(summary, dict):
        return
    try:
        rows = datagen_rows(summary)
        if rows:
            create_table_artifact(
                key="ombudsman-batch-data-generation-tables",
                table=rows,
                description=f"Rows per table and target of {summary.get('name')}",
            )
        create_markdown_artifact(
            key="ombudsman-batch-data-generation-generated",
            markdown=datagen_markdown(summary),
            description=f"What {summary.get('name')} generated",
        )
    except Exception as exc:  # artifacts are a view; the summary is the result
        get_run_logger().warning("could not publish the data generation artifacts: %s", exc)
