"""The consolidated report of a validation job: summary, per-table results, failures grouped by kind.

Built from a batch summary (SPEC §3) whose operations hold pipeline results (bulk pipeline jobs)
or project results (multi-project jobs; their full pipeline results are read from the
`results/<run_id>.json` files they name). Rendered as JSON and as markdown / table rows for the
Prefect artifacts the flows publish.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect_ombudsman.atomic import write_json_atomic
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.validation.registry import get_validator

MAX_FAILURES_PER_KIND = 200


def failure_kind(step: dict[str, Any]) -> str:
    if step.get("status") == "ERROR":
        return "execution_error"
    try:  # declared with the validator (`register_validator(..., failure_kind=...)`)
        return get_validator(str(step.get("validator"))).failure_kind
    except ConfigurationError:
        return "other"


def _pipeline_results(
    summary: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(full pipeline results, pipeline-level errors, project entries) from a batch summary."""
    results, errors, projects = [], [], []
    for op in summary.get("operations", []):
        result = op.get("result")
        meta = op.get("metadata") or {}
        if isinstance(result, dict) and "pipelines" in result and "project_id" in result:
            projects.append(
                {k: v for k, v in result.items() if k != "pipelines"}
                | {"operation_id": op.get("operation_id"), "operation_status": op.get("status")}
            )
            for entry in result.get("pipelines", []):
                full = _load(entry.get("results_path"))
                if full is not None:
                    results.append(full)
                elif entry.get("status") == "error" or entry.get("error"):
                    errors.append(
                        {
                            "project_id": result["project_id"],
                            "pipeline_id": entry.get("pipeline_id"),
                            "error": entry.get("error"),
                        }
                    )
                else:
                    results.append({**entry, "project_id": result["project_id"]})
        elif isinstance(result, dict) and "steps" in result:
            results.append(result)
        elif op.get("status") in ("failed", "skipped"):
            if meta.get("project_id") and "pipeline_ids" in meta:
                projects.append(
                    {
                        "project_id": meta["project_id"],
                        "operation_id": op.get("operation_id"),
                        "operation_status": op.get("status"),
                        "error": op.get("error"),
                    }
                )
            errors.append(
                {
                    "operation_id": op.get("operation_id"),
                    "project_id": meta.get("project_id") or summary.get("project_id"),
                    "pipeline_id": meta.get("pipeline_id"),
                    "status": op.get("status"),
                    "error": op.get("error"),
                }
            )
    return results, errors, projects


def _load(path: Any) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: bad JSON or not UTF-8
        return None
    data.pop("pipeline_def", None)
    return data


def build_report(summary: dict[str, Any], *, multi_project: bool = False) -> dict[str, Any]:
    """The consolidated report of one job (see the module docstring)."""
    results, errors, projects = _pipeline_results(summary)
    tables: dict[str, dict[str, Any]] = {}
    kinds: dict[str, dict[str, Any]] = {}
    counts = {"PASS": 0, "FAIL": 0, "ERROR": 0, "SKIPPED": 0}
    pipelines = []
    for result in results:
        project = result.get("project_id")
        pipelines.append(
            {
                k: result.get(k)
                for k in (
                    "project_id",
                    "pipeline_id",
                    "pipeline_name",
                    "run_id",
                    "status",
                    "summary",
                    "duration_ms",
                    "results_path",
                    "from_batch",
                )
            }
        )
        for step in result.get("steps", []):
            status = step.get("status", "ERROR")
            counts[status] = counts.get(status, 0) + 1
            name = step.get("table") or "(no table)"
            key = f"{project}:{name}" if multi_project and project else name
            details = step.get("details") or {}
            entry = tables.setdefault(
                key,
                {"table": name, "project_id": project, "source_table": details.get("source_table"), "target_table": details.get("target_table"),
                 "pipelines": [], "total_validations": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "issues": []},
            )  # fmt: skip
            entry["source_table"] = entry["source_table"] or details.get("source_table")
            entry["target_table"] = entry["target_table"] or details.get("target_table")
            if result.get("pipeline_id") not in entry["pipelines"]:
                entry["pipelines"].append(result.get("pipeline_id"))
            entry["total_validations"] += 1
            entry[
                {"PASS": "passed", "FAIL": "failed", "ERROR": "errors", "SKIPPED": "skipped"}.get(
                    status, "errors"
                )
            ] += 1
            if status in ("FAIL", "ERROR"):
                issue = {
                    "project_id": project,
                    "pipeline_id": result.get("pipeline_id"),
                    "run_id": result.get("run_id"),
                    "table": name,
                    "step": step.get("name"),
                    "validator": step.get("validator"),
                    "status": status,
                    "severity": step.get("severity"),
                    "message": step.get("message"),
                }
                entry["issues"].append(issue)
                bucket = kinds.setdefault(failure_kind(step), {"count": 0, "failures": []})
                bucket["count"] += 1
                if len(bucket["failures"]) < MAX_FAILURES_PER_KIND:
                    bucket["failures"].append({**issue, "details": step.get("details")})
    for error in errors:
        bucket = kinds.setdefault("pipeline_error", {"count": 0, "failures": []})
        bucket["count"] += 1
        bucket["failures"].append(error)
    table_rows = []
    for entry in tables.values():
        ran = entry["passed"] + entry["failed"] + entry["errors"]
        entry["pass_rate"] = round(entry["passed"] / ran * 100, 2) if ran else None
        entry["status"] = "FAIL" if entry["failed"] or entry["errors"] else "PASS"
        table_rows.append(entry)
    table_rows.sort(
        key=lambda e: (e["pass_rate"] if e["pass_rate"] is not None else 101, e["table"])
    )
    ran = counts["PASS"] + counts["FAIL"] + counts["ERROR"]
    report = {
        "job_id": summary.get("job_id"),
        "job_name": summary.get("name"),
        "job_type": summary.get("job_type"),
        "job_status": summary.get("status"),
        "generated_at": datetime.now(UTC).isoformat(),
        "status": "FAIL" if counts["FAIL"] or counts["ERROR"] or errors else "PASS",
        "summary": {
            "total_pipelines": len(results) + len(errors),
            "pipelines_passed": sum(r.get("status") == "passed" for r in results),
            "pipelines_failed": sum(r.get("status") == "failed" for r in results),
            "pipelines_error": sum(r.get("status") == "error" for r in results) + len(errors),
            "total_validations": sum(counts.values()),
            "passed": counts["PASS"],
            "failed": counts["FAIL"],
            "errors": counts["ERROR"],
            "skipped": counts["SKIPPED"],
            "pass_rate": round(counts["PASS"] / ran * 100, 2) if ran else None,
            "tables_validated": len(table_rows),
        },
        "tables": table_rows,
        "failures_by_kind": dict(sorted(kinds.items(), key=lambda kv: -kv[1]["count"])),
        "pipelines": pipelines,
        "run_ids": [p["run_id"] for p in pipelines if p.get("run_id")],
    }
    if multi_project:
        report["projects"] = projects
    return report


def report_markdown(report: dict[str, Any], report_path: str | None = None, limit: int = 60) -> str:
    """A readable summary for the Prefect markdown artifact."""
    s = report["summary"]
    lines = [
        f"# Validation report: {report.get('job_name') or report.get('job_id')}",
        "",
        f"**{report['status']}** · {s['total_pipelines']} pipelines ({s['pipelines_passed']} passed, {s['pipelines_failed']} failed, "
        f"{s['pipelines_error']} errors) · {s['total_validations']} validations: {s['passed']} PASS, {s['failed']} FAIL, "
        f"{s['errors']} ERROR, {s['skipped']} SKIPPED · pass rate {s['pass_rate']}% · {s['tables_validated']} tables",
        "",
    ]
    if report.get("projects"):
        lines += [
            "## Projects",
            "",
            "| project | pipelines | passed | failed | errors |",
            "|---|---|---|---|---|",
        ]
        for p in report["projects"]:
            lines.append(
                f"| {p.get('project_id')} | {p.get('total_pipelines', '')} | {p.get('passed', '')} | {p.get('failed', '')} | {p.get('errors', p.get('error', ''))} |"
            )
        lines.append("")
    lines += [
        "## Tables",
        "",
        "| table | validations | passed | failed | errors | pass rate |",
        "|---|---|---|---|---|---|",
    ]
    for t in report["tables"][:limit]:
        label = (
            f"{t['project_id']}:{t['table']}"
            if report.get("projects") and t.get("project_id")
            else t["table"]
        )
        lines.append(
            f"| {label} | {t['total_validations']} | {t['passed']} | {t['failed']} | {t['errors']} | {t['pass_rate']}% |"
        )
    if len(report["tables"]) > limit:
        lines.append(f"| ... {len(report['tables']) - limit} more | | | | | |")
    if report["failures_by_kind"]:
        lines += ["", "## Failures by kind", ""]
        shown = 0
        for kind, bucket in report["failures_by_kind"].items():
            lines.append(f"### {kind} ({bucket['count']})")
            for f in bucket["failures"][:10]:
                where = f"{f.get('table') or ''} · {f.get('pipeline_id') or ''}".strip(" ·")
                text = (f.get("message") or f.get("error") or "").replace("\n", " ")[:200]
                lines.append(
                    f"- `{where}` {f.get('step') or ''} **{f.get('status') or ''}** {text}"
                )
                shown += 1
            if bucket["count"] > 10:
                lines.append(f"- ... {bucket['count'] - 10} more")
            lines.append("")
    if report_path:
        lines += ["", f"Report: `{report_path}`"]
    return "\n".join(lines)


def report_table_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per table for the Prefect table artifact."""
    return [
        {
            "project": t.get("project_id"),
            "table": t["table"],
            "source_table": t.get("source_table"),
            "target_table": t.get("target_table"),
            "status": t["status"],
            "validations": t["total_validations"],
            "passed": t["passed"],
            "failed": t["failed"],
            "errors": t["errors"],
            "skipped": t["skipped"],
            "pass_rate": t["pass_rate"],
            "issues": "; ".join(f"{i['step']}: {i['status']}" for i in t["issues"][:5]),
        }
        for t in report["tables"]
    ]


def write_report(report: dict[str, Any], path: Path) -> Path:
    return write_json_atomic(path, report)
