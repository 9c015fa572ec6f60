"""`ombudsman demo`: a Retail warehouse with planted drift, validated as one bulk job.

The project `demo` gets the Retail template (project.yaml + pipelines). The data generator loads
the same seeded warehouse into an embedded source (SQLite, standing in for SQL Server) and an
embedded target (DuckDB, standing in for Snowflake), planting known differences in the target and
writing a manifest of them. The project's pipelines then run as one `bulk_pipeline_execution` job,
and `account_for_drift` checks every planted difference against what the validations reported:
each must be found, with exactly the planted keys, and untouched tables must pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect_ombudsman.projects import projects_root

DEMO_PROJECT = "demo"
DEMO_ROWS = 20_000
DEMO_SEED = 42

# Small enough that every planted key fits in the row-comparison samples (10 per kind).
DEMO_DRIFT: dict[str, Any] = {
    "target": "target",
    "seed": 7,
    "tables": {
        "fact_sales": {
            "missing_rows": 3,
            "extra_rows": 2,
            "changed_values": {"count": 2, "columns": ["quantity"]},
            "nulls": {"count": 2, "columns": ["discount_amount"]},
            "orphan_fks": {"count": 2, "columns": ["dim_customer_key"]},
            "rounding": {"count": 2, "columns": ["unit_price"]},
        },
        "dim_customer": {
            "truncated_strings": {"count": 3, "columns": ["email"]},
            "shifted_timestamps": {"count": 2, "columns": ["created_at"]},
        },
    },
}

# Validators expected to reveal each kind of planted difference (beyond the row comparison).
DETECTORS: dict[str, tuple[str, ...]] = {
    "missing_rows": (
        "record_counts",
        "row_checksum",
        "metric_sums",
        "dim_surrogate_keys",
        "dim_business_keys",
    ),
    "extra_rows": (
        "record_counts",
        "row_checksum",
        "metric_sums",
        "dim_surrogate_keys",
        "dim_business_keys",
    ),
    "changed_values": (
        "row_checksum",
        "metric_sums",
        "metric_averages",
        "statistics",
        "scd1",
        "scd2",
    ),
    "nulls": ("nulls", "row_checksum", "metric_sums", "metric_averages", "statistics"),
    "orphan_fks": ("foreign_keys", "fact_dim_conformance", "row_checksum"),
    "rounding": ("metric_sums", "metric_averages", "statistics", "row_checksum"),
    "truncated_strings": ("row_checksum", "scd1", "scd2", "regex_patterns", "domain_values"),
    "shifted_timestamps": ("row_checksum", "scd1", "scd2", "ts_continuity", "late_arriving_facts"),
}
ROW_KINDS = {"missing_rows": "missing_in_target", "extra_rows": "extra_in_target"}
LABELS = {
    "missing_rows": "missing rows",
    "extra_rows": "extra rows",
    "changed_values": "changed values",
    "nulls": "injected NULLs",
    "orphan_fks": "orphan foreign keys",
    "rounding": "rounded decimals",
    "truncated_strings": "truncated strings",
    "shifted_timestamps": "shifted timestamps",
}


def prepare_project(root: Path | None = None) -> Path:
    """Create or refresh project `demo` from the Retail template (embedded SQLite and DuckDB)."""
    from prefect_ombudsman.datagen.project_template import install_template

    folder = (root or projects_root()) / DEMO_PROJECT
    folder.mkdir(parents=True, exist_ok=True)
    install_template("Retail", folder, overwrite=True)
    (folder / "warehouse").mkdir(exist_ok=True)
    return folder


def datagen_parameters(rows: int = DEMO_ROWS, root: Path | None = None) -> dict[str, Any]:
    return {
        "job_name": "Demo: Retail warehouse with planted drift",
        "items": [
            {"schema_type": "Retail", "row_count": rows, "seed": DEMO_SEED, "drift": DEMO_DRIFT}
        ],
        "parallel_execution": False,
        "project_id": DEMO_PROJECT,
        "projects_dir": str(root) if root else None,
    }


def pipeline_parameters(folder: Path, root: Path | None = None) -> dict[str, Any]:
    pipelines = sorted(p.stem for p in (folder / "pipelines").glob("*.yaml"))
    return {
        "job_name": "Demo: validate the Retail migration",
        "pipelines": [{"pipeline_id": pid} for pid in pipelines],
        "parallel_execution": True,
        "max_parallel": 3,
        "project_id": DEMO_PROJECT,
        "projects_dir": str(root) if root else None,
    }


@dataclass
class Finding:
    """One planted kind of difference on one table, and what the validations said about it."""

    table: str
    kind: str
    planted: int
    found_by: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    exact: bool = False
    detail: str = ""

    @property
    def found(self) -> bool:
        return bool(self.found_by) and self.exact


@dataclass
class DriftAccount:
    findings: list[Finding]
    false_alarms: list[str]
    untouched_tables: list[str]
    untouched_checks: int

    @property
    def ok(self) -> bool:
        return all(f.found for f in self.findings) and not self.false_alarms

    def as_json(self) -> dict[str, Any]:
        return {
            "all_found": all(f.found for f in self.findings),
            "false_alarms": self.false_alarms,
            "untouched_tables": self.untouched_tables,
            "untouched_checks": self.untouched_checks,
            "findings": [
                {**f.__dict__, "found": f.found, "label": LABELS.get(f.kind, f.kind)}
                for f in self.findings
            ],
        }


def manifest_path(datagen_summary: dict[str, Any]) -> Path:
    """Where the data generation job wrote its drift manifest."""
    for op in datagen_summary.get("operations", []):
        drift = (op.get("result") or {}).get("drift") or {}
        if drift.get("manifest_path"):
            return Path(drift["manifest_path"])
    raise RuntimeError("the data generation job wrote no drift manifest")


def manifest_of(datagen_summary: dict[str, Any]) -> dict[str, Any]:
    return json.loads(manifest_path(datagen_summary).read_text(encoding="utf-8"))


def _steps(validation_summary: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for op in validation_summary.get("operations", []):
        result = op.get("result") or {}
        steps.extend(result.get("steps") or [])
    return steps


def account_for_drift(manifest: dict[str, Any], validation_summary: dict[str, Any]) -> DriftAccount:
    """Match every planted difference with the failing validations; list failures elsewhere."""
    steps = _steps(validation_summary)
    failing: dict[str, list[dict[str, Any]]] = {}
    all_tables: dict[str, int] = {}
    for step in steps:
        table = str(step.get("table") or "")
        all_tables[table] = all_tables.get(table, 0) + 1
        if step.get("status") in ("FAIL", "ERROR"):
            failing.setdefault(table, []).append(step)
    findings: list[Finding] = []
    drifted = set()
    for table, info in (manifest.get("tables") or {}).items():
        counts = {k: v for k, v in (info.get("counts") or {}).items() if v}
        if counts:
            drifted.add(table)
        checksum = next(
            (s["details"] for s in failing.get(table, []) if s.get("validator") == "row_checksum"),
            None,
        )
        for kind, planted in counts.items():
            finding = Finding(table=table, kind=kind, planted=int(planted))
            detecting = [
                s for s in failing.get(table, []) if s.get("validator") in DETECTORS.get(kind, ())
            ]
            finding.found_by = sorted({str(s["validator"]) for s in detecting})
            finding.steps = sorted({str(s["name"]) for s in detecting})
            planted_entries = info.get(kind) or []
            if checksum is None:
                finding.detail = "no row comparison failed on this table"
            elif kind in ROW_KINDS:
                reported = {str(k) for k in checksum["samples"][ROW_KINDS[kind]]}
                keys = {str(k) for k in planted_entries}
                finding.exact = keys <= reported and checksum[ROW_KINDS[kind]] == len(keys)
                finding.detail = f"{len(keys & reported)}/{len(keys)} keys"
            else:
                reported_pairs = {
                    (str(c["key"]), col)
                    for c in checksum["samples"]["changed"]
                    for col in c["columns"]
                }
                planted_pairs = {(str(e["key"]), e["column"]) for e in planted_entries}
                finding.exact = planted_pairs <= reported_pairs
                columns = sorted({e["column"] for e in planted_entries})
                finding.detail = f"{len(planted_pairs & reported_pairs)}/{len(planted_pairs)} keys · {', '.join(columns)}"
            findings.append(finding)
    false_alarms = [
        f"{s['name']} ({s['validator']}) on {table}: {s.get('message') or s.get('status')}"
        for table, table_steps in failing.items()
        if table not in drifted
        for s in table_steps
    ]
    untouched = sorted(t for t in all_tables if t and t not in drifted)
    return DriftAccount(
        findings=findings,
        false_alarms=false_alarms,
        untouched_tables=untouched,
        untouched_checks=sum(all_tables[t] for t in untouched),
    )
