"""The Studio's consolidated report (`GET /batch/jobs/{id}/report`), built from our job report.

The Studio's report pages read `executive_summary`, `aggregate_metrics`, `table_summary`,
`pipeline_details`, `failure_analysis` (`critical` / `warnings` lists plus one entry per failure
kind), `debugging_queries` and `generated_at` (reference/studio-today.md §1.11). Everything here
is derived from the pipeline results our flows write (steps with validator, status, severity,
message and details); counts come from the validators' own detail keys, never from step names.
No absolute server path is returned: paths become relative to the projects root.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect_ombudsman.validation.consolidated import failure_kind

NO_RUNS = "No completed pipeline runs found for this job. Report cannot be generated."
_FAILED = ("FAIL", "ERROR")


def pipeline_results(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Full pipeline results (with steps) of the job's completed and failed operations."""
    results: list[dict[str, Any]] = []
    for op in summary.get("operations", []):
        if op.get("status") not in ("completed", "failed"):
            continue
        result = op.get("result")
        if not isinstance(result, dict):
            continue
        if "steps" in result and result.get("run_id"):
            results.append(result)
        for entry in result.get("pipelines") or []:  # a multi-project operation
            full = _load(entry.get("results_path")) if isinstance(entry, dict) else None
            if full is not None and full.get("run_id"):
                results.append({**full, "project_id": result.get("project_id")})
    return results


def _load(path: Any) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    data.pop("pipeline_def", None)
    return data


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _table_of(result: dict[str, Any], step: dict[str, Any]) -> str:
    details = step.get("details") or {}
    return str(
        step.get("table")
        or details.get("source_table")
        or result.get("table")
        or result.get("pipeline_id")
        or "(no table)"
    )


def key_metrics(step: dict[str, Any]) -> dict[str, Any]:
    """The few numbers of a step worth a glance (flat, primitives only)."""
    details = step.get("details") or {}
    validator = step.get("validator")
    metrics: dict[str, Any] = {}
    if validator == "record_counts":
        metrics = {
            "sql_count": details.get("source_count"),
            "snow_count": details.get("target_count"),
            "diff": abs(_int(details.get("target_count")) - _int(details.get("source_count"))),
        }
        if details.get("pct_difference") is not None:
            metrics["percentage_diff"] = details.get("pct_difference")
    elif validator == "nulls":
        rows = details.get("columns") or []
        metrics = {
            "source_nulls": sum(_int(r.get("source_nulls")) for r in rows),
            "target_nulls": sum(_int(r.get("target_nulls")) for r in rows),
            "failing_columns": ", ".join(details.get("failing_columns") or []),
        }
    elif validator in ("uniqueness", "ts_duplicates"):
        metrics = {
            "source_duplicates": _duplicates(details, "source"),
            "target_duplicates": _duplicates(details, "target"),
        }
    elif validator in ("foreign_keys", "fact_dim_conformance"):
        metrics = {
            "source_orphans": _orphans(details, "source"),
            "target_orphans": _orphans(details, "target"),
        }
    for key in ("source_table", "target_table"):
        if details.get(key):
            metrics[key] = details[key]
    return {k: v for k, v in metrics.items() if v is not None and v != ""}


def _duplicates(details: dict[str, Any], side: str) -> int:
    total = sum(_int(k.get(f"{side}_duplicates")) for k in details.get("keys") or [])
    return total + _int(details.get(f"{side}_duplicate_rows"))


def _orphans(details: dict[str, Any], side: str) -> int:
    return sum(_int(fk.get(f"{side}_orphan_rows")) for fk in details.get("foreign_keys") or [])


def _debugging_queries(result: dict[str, Any], step: dict[str, Any]) -> list[dict[str, str]]:
    """Queries that show the rows behind a failure, on the tables the step compared."""
    details = step.get("details") or {}
    validator = step.get("validator")
    sides = [
        (label, details.get(f"{label}_table"))
        for label in ("source", "target")
        if details.get(f"{label}_table")
    ]
    queries: list[dict[str, str]] = []
    for label, table in sides:
        if validator == "nulls":
            for column in details.get("failing_columns") or []:
                queries.append(
                    {
                        "purpose": f"Rows with NULL {column}",
                        "database": label,
                        "query": f"SELECT * FROM {table} WHERE {column} IS NULL",
                    }
                )
        elif validator == "uniqueness":
            for key in details.get("keys") or []:
                columns = ", ".join(key.get("columns") or [])
                if columns and _int(key.get(f"{label}_duplicates")):
                    queries.append(
                        {
                            "purpose": f"Duplicate keys ({columns})",
                            "database": label,
                            "query": f"SELECT {columns}, COUNT(*) AS n FROM {table} "
                            f"GROUP BY {columns} HAVING COUNT(*) > 1",
                        }
                    )
        elif validator == "foreign_keys":
            for fk in details.get("foreign_keys") or []:
                column, ref_table, ref_column = (
                    fk.get("column"),
                    fk.get(f"{label}_ref_table") or fk.get("ref_table"),
                    fk.get("ref_column"),
                )
                if column and ref_table and ref_column and _int(fk.get(f"{label}_orphan_rows")):
                    queries.append(
                        {
                            "purpose": f"Orphan {column} values",
                            "database": label,
                            "query": f"SELECT f.{column}, COUNT(*) AS n FROM {table} f LEFT JOIN "
                            f"{ref_table} d ON f.{column} = d.{ref_column} "
                            f"WHERE d.{ref_column} IS NULL AND f.{column} IS NOT NULL GROUP BY f.{column}",
                        }
                    )
        if not queries or validator == "record_counts":
            queries.append(
                {
                    "purpose": f"Row count on the {label}",
                    "database": label,
                    "query": f"SELECT COUNT(*) FROM {table}",
                }
            )
    return queries


def build_studio_report(
    summary: dict[str, Any], validation: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The Studio's report keys from a job summary (and its validation report, when written)."""
    results = pipeline_results(summary)
    counts = {"PASS": 0, "FAIL": 0, "ERROR": 0, "SKIPPED": 0}
    metrics: dict[str, Any] = {
        "row_count_totals": {"sql": 0, "snowflake": 0, "diff": 0},
        "orphaned_keys_total": 0,
        "null_count_total": 0,
        "duplicate_count_total": 0,
        "distribution_mismatches": 0,
        "schema_mismatches": 0,
    }
    tables: dict[str, dict[str, Any]] = {}
    kinds: dict[str, dict[str, Any]] = {}
    critical: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    debugging: list[dict[str, Any]] = []
    pipelines: list[dict[str, Any]] = []
    for result in results:
        steps = [s for s in result.get("steps") or [] if isinstance(s, dict)]
        passed = sum(s.get("status") == "PASS" for s in steps)
        failed = sum(s.get("status") in _FAILED for s in steps)
        validations = []
        for step in steps:
            status = str(step.get("status") or "ERROR")
            counts[status] = counts.get(status, 0) + 1
            table = _table_of(result, step)
            details = step.get("details") or {}
            kind = failure_kind(step)
            entry = tables.setdefault(
                table,
                {
                    "table_name": table,
                    "total_validations": 0,
                    "passed": 0,
                    "failed": 0,
                    "critical_issues": [],
                    "warnings": [],
                },
            )
            entry["total_validations"] += 1
            if status == "PASS":
                entry["passed"] += 1
            elif status in _FAILED:
                entry["failed"] += 1
            validator = step.get("validator")
            if validator == "record_counts":
                metrics["row_count_totals"]["sql"] += _int(details.get("source_count"))
                metrics["row_count_totals"]["snowflake"] += _int(details.get("target_count"))
            elif validator == "nulls":
                metrics["null_count_total"] += sum(
                    abs(_int(r.get("target_nulls")) - _int(r.get("source_nulls")))
                    for r in details.get("columns") or []
                )
            elif validator in ("uniqueness", "ts_duplicates"):
                metrics["duplicate_count_total"] += _duplicates(details, "source") + _duplicates(
                    details, "target"
                )
            elif validator in ("foreign_keys", "fact_dim_conformance"):
                metrics["orphaned_keys_total"] += _orphans(details, "source") + _orphans(
                    details, "target"
                )
            if status in _FAILED and kind == "distribution_variance":
                metrics["distribution_mismatches"] += 1
            if status in _FAILED and kind in ("schema_mismatch", "datatype_mismatch"):
                metrics["schema_mismatches"] += 1
            if status in _FAILED:
                severity = str(step.get("severity") or ("HIGH" if status == "ERROR" else "MEDIUM"))
                issue = {
                    "table": table,
                    "pipeline": result.get("pipeline_name") or result.get("pipeline_id"),
                    "validation": step.get("name"),
                    "message": step.get("message") or "",
                    "severity": severity,
                    "details": step.get("message") or "",
                }
                bucket = kinds.setdefault(kind, {"count": 0, "failures": []})
                bucket["count"] += 1
                if len(bucket["failures"]) < 200:
                    bucket["failures"].append(issue)
                short = {"validation": step.get("name"), "message": step.get("message") or ""}
                if severity in ("HIGH", "CRITICAL") or status == "ERROR":
                    critical.append(issue)
                    entry["critical_issues"].append(short)
                else:
                    warnings.append(issue)
                    entry["warnings"].append(short)
                queries = _debugging_queries(result, step)
                if queries:
                    debugging.append(
                        {
                            "table": table,
                            "validation": step.get("name"),
                            "issue": step.get("message") or "",
                            "queries": queries,
                        }
                    )
            validations.append(
                {
                    "name": step.get("name"),
                    "validator": validator,
                    "status": status,
                    "severity": step.get("severity") or "NONE",
                    "message": step.get("message") or "",
                    "details": details,
                    "key_metrics": key_metrics(step),
                }
            )
        pipelines.append(
            {
                "pipeline_name": result.get("pipeline_name") or result.get("pipeline_id"),
                "pipeline_id": result.get("pipeline_id"),
                "project_id": result.get("project_id"),
                "run_id": result.get("run_id"),
                "table": _table_of(result, steps[0]) if steps else result.get("pipeline_id"),
                "execution_time": result.get("started_at"),
                "total_validations": len(steps),
                "passed": passed,
                "failed": failed,
                "pass_count": passed,
                "fail_count": failed,
                "status": "completed" if result.get("status") == "passed" else "failed",
                "duration_ms": result.get("duration_ms") or 0,
                "validations": validations,
            }
        )
    totals = metrics["row_count_totals"]
    totals["diff"] = abs(totals["sql"] - totals["snowflake"])
    table_rows = []
    for entry in tables.values():
        ran = entry["passed"] + entry["failed"]
        entry["pass_rate"] = round(entry["passed"] / ran * 100, 2) if ran else 0.0
        table_rows.append(entry)
    table_rows.sort(key=lambda e: (e["pass_rate"], e["table_name"]))
    total = sum(counts.values())
    failed_total = counts["FAIL"] + counts["ERROR"]
    ran_total = counts["PASS"] + failed_total
    failure_analysis: dict[str, Any] = dict(sorted(kinds.items(), key=lambda kv: -kv[1]["count"]))
    failure_analysis["critical"] = critical
    failure_analysis["warnings"] = warnings
    return {
        "job_id": summary.get("job_id"),
        "generated_at": datetime.now(UTC).isoformat(),
        "pipeline_count": len(results),
        "run_ids": [r.get("run_id") for r in results],
        "system_alerts": [],
        "executive_summary": {
            "total_pipelines": len(results),
            "total_validations": total,
            "passed": counts["PASS"],
            "failed": failed_total,
            "errors": counts["ERROR"],
            "skipped": counts["SKIPPED"],
            "pass_rate": round(counts["PASS"] / ran_total * 100, 2) if ran_total else 0.0,
            "tables_validated": len(table_rows),
            "table_list": sorted(tables),
            "overall_status": "FAIL" if failed_total else "PASS",
        },
        "aggregate_metrics": metrics,
        "table_summary": table_rows,
        "failure_analysis": failure_analysis,
        "debugging_queries": debugging,
        "pipeline_details": pipelines,
        "validation_summary": (validation or {}).get("summary"),
    }


def public_paths(value: Any, root: Path) -> Any:
    """`value` with every path under `root` made relative to it (also inside URLs) and any other absolute
    path under a `*path` / `*_dir` / `*_file` key cut to its file name (no server layout leaks)."""
    prefix = str(root).rstrip("/") + "/"

    def walk(item: Any, key: str = "") -> Any:
        if isinstance(item, dict):
            return {k: walk(v, str(k)) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v, key) for v in item]
        if isinstance(item, str) and prefix in item:
            return item.replace(prefix, "")  # also inside URLs and messages
        if isinstance(item, str) and item.startswith("/"):
            if key.endswith(("path", "_dir", "_file", "reports")) or key in (
                "csv",
                "junit",
                "html",
            ):
                return Path(item).name
        return item

    return walk(value)


def studio_operation(op: dict[str, Any]) -> dict[str, Any]:
    """A pipeline operation's result in the Studio's words: status completed/failed (the
    validation outcome stays as `validation_status`) and `results_summary {total_steps, passed, failed}`."""
    result = op.get("result")
    if not (
        isinstance(result, dict) and "steps" in result and isinstance(result.get("summary"), dict)
    ):
        return op
    s = result["summary"]
    studio = {
        **result,
        "validation_status": result.get("status"),
        "status": "completed" if op.get("status") == "completed" else "failed",
        "results_summary": {
            "total_steps": _int(s.get("total", len(result.get("steps") or []))),
            "passed": _int(s.get("passed")),
            "failed": _int(s.get("failed")) + _int(s.get("errors")),
        },
    }
    if op.get("error"):
        studio["error"] = op["error"]
    return {**op, "result": studio}
