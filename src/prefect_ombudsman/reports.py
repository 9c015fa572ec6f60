"""Job reports beside the JSON summary: CSV, JUnit XML and a self-contained HTML page (SPEC §10).

Every operation is one row / test case; an operation whose result is a pipeline result (it has
`steps`) contributes one test case per step, so a CI system shows each validation on its own.
`write_job_reports` is the batch runner's job-finished hook (entry-point group
`prefect_ombudsman.job_finished`): it writes every report of a job once, locally and into Prefect
result storage, before the run's final state.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from prefect_ombudsman.atomic import write_json_atomic, write_text_atomic
from prefect_ombudsman.redaction import scrub
from prefect_ombudsman.state_store import store_job_report

log = logging.getLogger("prefect_ombudsman.reports")

CSV_FIELDS = (
    "operation_id",
    "operation_type",
    "status",
    "started_at",
    "completed_at",
    "duration_ms",
    "attempts",
    "error",
)


def operations_csv(summary: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for op in summary.get("operations", []):
        row = {k: op.get(k) for k in CSV_FIELDS}
        row["attempts"] = (op.get("metadata") or {}).get("attempts")
        writer.writerow(row)
    return buffer.getvalue()


def _case(
    suite: ET.Element,
    classname: str,
    name: str,
    seconds: float,
    status: str,
    message: str,
    text: str,
) -> None:
    case = ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")
    if status in ("failed", "FAIL"):
        ET.SubElement(case, "failure", message=message[:500]).text = text
    elif status in ("ERROR",):
        ET.SubElement(case, "error", message=message[:500]).text = text
    elif status in ("skipped", "SKIPPED"):
        ET.SubElement(case, "skipped", message=message[:500])


def junit_xml(summary: dict[str, Any]) -> str:
    """One test suite per job; one test case per operation, or per step for pipeline results."""
    root = ET.Element("testsuites", name=str(summary.get("name", "ombudsman job")))
    suite = ET.SubElement(
        root, "testsuite", name=f"{summary.get('job_type')}:{summary.get('job_id')}"
    )
    for op in summary.get("operations", []):
        result = op.get("result") if isinstance(op.get("result"), dict) else {}
        steps = result.get("steps") if isinstance(result.get("steps"), list) else None
        if steps:
            for step in steps:
                details = json.dumps(step.get("details"), default=str, indent=1)[:4000]
                _case(
                    suite,
                    f"{op['operation_id']}.{step.get('table') or 'pipeline'}",
                    str(step.get("name")),
                    (step.get("duration_ms") or 0) / 1000,
                    str(step.get("status")),
                    str(step.get("message") or step.get("status")),
                    details,
                )
            if op.get("status") == "failed" and not any(
                s.get("status") in ("FAIL", "ERROR") for s in steps
            ):
                _case(
                    suite,
                    op["operation_id"],
                    "operation",
                    0,
                    "failed",
                    op.get("error") or "",
                    op.get("error") or "",
                )
            continue
        _case(
            suite,
            str(op.get("operation_type")),
            str(op.get("operation_id")),
            (op.get("duration_ms") or 0) / 1000,
            str(op.get("status")),
            str(op.get("error") or ""),
            str(op.get("error") or ""),
        )
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(c.find("failure") is not None for c in cases)))
    suite.set("errors", str(sum(c.find("error") is not None for c in cases)))
    suite.set("skipped", str(sum(c.find("skipped") is not None for c in cases)))
    suite.set("time", f"{(summary.get('duration_ms') or 0) / 1000:.3f}")
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


_CSS = """
body{font:14px system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.4em}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.completed,.PASS{color:#137333}.failed,.FAIL,.ERROR{color:#b3261e}.skipped,.SKIPPED{color:#8a6d00}
.counts span{margin-right:1.5em}details{margin:2px 0}pre{white-space:pre-wrap;margin:0;font-size:12px}
"""


def html_page(summary: dict[str, Any]) -> str:
    """A self-contained page (no scripts, no external assets) for people to read."""
    esc = html.escape
    rows = []
    for op in summary.get("operations", []):
        status = str(op.get("status"))
        detail = esc(op.get("error") or "")
        result = op.get("result") if isinstance(op.get("result"), dict) else None
        steps = result.get("steps") if result and isinstance(result.get("steps"), list) else None
        if steps:
            bad = [s for s in steps if s.get("status") in ("FAIL", "ERROR")]
            detail += "".join(
                f"<details><summary class='{esc(str(s.get('status')))}'>{esc(str(s.get('status')))} "
                f"{esc(str(s.get('name')))} ({esc(str(s.get('validator')))}, {esc(str(s.get('table')))})</summary>"
                f"<pre>{esc(json.dumps(s.get('details'), default=str, indent=1)[:4000])}</pre></details>"
                for s in bad
            )
            detail += f"<div>{len(steps) - len(bad)} of {len(steps)} steps passed</div>"
        rows.append(
            f"<tr><td>{esc(str(op.get('operation_id')))}</td><td class='{esc(status)}'>{esc(status)}</td>"
            f"<td>{esc(str(op.get('duration_ms') or ''))}</td><td>{detail}</td></tr>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{esc(str(summary.get('name')))}</title><style>{_CSS}</style></head><body>"
        f"<h1>{esc(str(summary.get('name')))} — <span class='{esc(str(summary.get('status')))}'>"
        f"{esc(str(summary.get('status')))}</span></h1>"
        f"<p>Job {esc(str(summary.get('job_id')))} ({esc(str(summary.get('job_type')))}), "
        f"{esc(str(summary.get('started_at')))} → {esc(str(summary.get('completed_at')))}</p>"
        f"<p class='counts'><span>{summary.get('total_operations')} operations</span>"
        f"<span class='completed'>{summary.get('completed')} completed</span>"
        f"<span class='failed'>{summary.get('failed')} failed</span>"
        f"<span class='skipped'>{summary.get('skipped')} skipped</span></p>"
        "<table><tr><th>operation</th><th>status</th><th>ms</th><th>detail</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )


SUFFIXES = {"csv": ".csv", "junit": ".junit.xml", "html": ".html"}


def render_reports(summary: dict[str, Any]) -> dict[str, str]:
    """The CSV, JUnit and HTML reports of a job summary by format, scrubbed of secrets."""
    return {
        "csv": scrub(operations_csv(summary)),
        "junit": scrub(junit_xml(summary)),
        "html": scrub(html_page(summary)),
    }


def write_reports(
    summary: dict[str, Any], json_path: Path, rendered: dict[str, str] | None = None
) -> dict[str, str]:
    """Write the CSV, JUnit and HTML reports beside `json_path`; returns their paths by format."""
    stem = json_path.with_suffix("")
    written = {}
    for kind, content in (rendered or render_reports(summary)).items():
        path = stem.with_suffix(SUFFIXES[kind])
        written[kind] = str(write_text_atomic(path, scrub(content)))
    return written


def write_job_reports(job: Any) -> None:
    """Job-finished hook: `report_path` (the JSON summary) with its CSV, JUnit and HTML siblings,
    and the same files in Prefect result storage under the job id (`job` is a
    `flows.finish.FinishedJob`). A local file that cannot be written is logged and left out."""
    summary: dict[str, Any] = job.summary
    logger = getattr(job, "logger", None) or log
    path = Path(summary["report_path"]) if summary.get("report_path") else None
    rendered: dict[str, str] = {}
    if path is not None:
        try:
            rendered = render_reports(summary)
            path.parent.mkdir(parents=True, exist_ok=True)
            summary["reports"] = write_reports(summary, path, rendered)
        except (OSError, ValueError) as exc:
            logger.warning("could not write the CSV/JUnit/HTML reports of %s: %s", path, exc)
        try:
            write_json_atomic(path, summary)
        except OSError as exc:
            logger.warning("could not write the job report %s: %s", path, exc)
            summary["report_path"] = None
    store_job_report(summary, rendered, job.store)
