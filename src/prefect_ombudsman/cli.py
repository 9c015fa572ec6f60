"""The `ombudsman` command line: run batches in process with a progress bar, manage jobs, serve.

Exit codes of `run ...`: 0 all operations completed, 1 some failed or the job was cancelled,
2 bad input (the request was refused before any work started).
"""

from __future__ import annotations

import inspect
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from prefect_ombudsman.jobs.models import BatchJobType
from prefect_ombudsman.jobs.types import JobType, entry_for

app = typer.Typer(
    help="Ombudsman batch operations on Prefect 3.", no_args_is_help=True, add_completion=False
)
run_app = typer.Typer(
    help="Run a batch job in this process, with a progress bar.", no_args_is_help=True
)
app.add_typer(run_app, name="run")

console = Console(stderr=True)
out = Console()


@app.callback()
def main_options(
    no_daemon: Annotated[
        bool,
        typer.Option(
            "--no-daemon",
            help="Use a temporary Prefect server for this command and run its job in this "
            "process, not the shared local server and execution service (also "
            "OMBUDSMAN_NO_DAEMON=1; OMBUDSMAN_EXEC_SERVICE=0 keeps the shared server but runs "
            "jobs in this process).",
        ),
    ] = False,
) -> None:
    if no_daemon:
        os.environ["OMBUDSMAN_NO_DAEMON"] = "1"


def quiet_prefect() -> None:
    """Before Prefect is imported: runs started here keep their full logs in the Prefect API, the
    terminal shows the progress bar and the summary instead of Prefect's console lines (set the
    variable to see them); no analytics."""
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def use_prefect() -> None:
    """Point Prefect at the shared local server (started on first use) unless an API is set."""
    quiet_prefect()
    from prefect_ombudsman.errors import OmbudsmanError
    from prefect_ombudsman.localserver import connect

    try:
        connect()
    except OmbudsmanError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def jobs_service() -> Any:
    """The jobs service, talking to the Prefect API `use_prefect` chose."""
    use_prefect()
    from prefect_ombudsman.jobs import service

    return service


ProjectsDir = Annotated[
    Path | None,
    typer.Option(
        "--projects-dir", help="Projects root (default $OMBUDSMAN_PROJECTS_DIR or ./projects)."
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the job summary as JSON.")]
ProjectOpt = Annotated[str | None, typer.Option("--project", help="Project id.")]
MAX_REPEAT = 1000  # `run custom --repeat`: more is a load test, not a batch


def refuse(message: str) -> None:
    """Bad input: say what is wrong and exit 2."""
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


def build_request(model: type[BaseModel], **fields: Any) -> Any:
    """Validate a request before any work starts (exit 2 with the field named)."""
    try:
        return model(**fields)
    except ValidationError as exc:
        refuse(validation_message(exc))


def run_job(
    flow: Any,
    parameters: dict[str, Any],
    *,
    label: str,
    quiet: bool = False,
    extra_progress: Any = None,
) -> dict[str, Any]:
    """Run a batch flow with a progress bar and return its summary (SPEC §3).

    With the shared local server, the job runs in the warm execution service of this Prefect home
    (started on first use; docs/local-service.md) and this process only shows its progress;
    otherwise, or when the service cannot start, in this process. `flow` is a flow or a
    `module:attribute` naming one. `extra_progress(progress)` may add bars of its own (e.g. rows
    per table) and returns a function that detaches them. A run that ends without a summary exits
    2 (parameters refused) or 1."""
    from prefect_ombudsman import execservice

    service = execservice.wanted()
    if service:
        execservice.prestart()  # the service imports while the server starts
    use_prefect()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=quiet or not console.is_terminal and os.environ.get("OMBUDSMAN_PROGRESS") != "1",
    )
    outcome = None
    if service:
        outcome = execservice.submit(
            flow,
            parameters,
            label=label,
            progress=progress,
            extra_progress=extra_progress,
            warn=lambda message: console.print(f"[yellow]warning:[/yellow] {message}"),
        )
    if outcome is None:
        outcome = execservice.run_flow(
            flow, parameters, label=label, progress=progress, extra_progress=extra_progress
        )
    if "summary" not in outcome:
        console.print(f"[red]error:[/red] {outcome['error']}")
        raise typer.Exit(outcome["code"])
    summary: dict[str, Any] = outcome["summary"]
    return summary


def execute_job(
    flow: Any,
    parameters: dict[str, Any],
    *,
    as_json: bool,
    label: str,
    extra_progress: Any = None,
) -> dict[str, Any]:
    """Run a batch flow in process with a progress bar; print the outcome; exit by SPEC §10."""
    summary = run_job(flow, parameters, label=label, quiet=as_json, extra_progress=extra_progress)
    if as_json:
        out.print_json(json.dumps(summary, default=str))
    else:
        print_summary(summary)
    raise typer.Exit(0 if summary["status"] == "completed" else 1)


# ----------------------------------------------------------------------------- run commands

# The options every `run` command shares, declared once; their defaults are the job type's request
# model's (`run generate` runs in parallel by default because `BatchDataGenRequest` does).
RUN_OPTIONS: dict[str, tuple[str, Any, Any]] = {
    # parameter: (request field, type, typer option)
    "parallel": (
        "parallel_execution",
        bool,
        typer.Option("--parallel/--sequential", help="Run operations in parallel."),
    ),
    "max_parallel": (
        "max_parallel",
        int,
        typer.Option("--max-parallel", help="Operations in flight at once (1-64)."),
    ),
    "stop_on_error": (
        "stop_on_error",
        bool,
        typer.Option("--stop-on-error", help="Start nothing new after the first failure."),
    ),
    "max_retries": (
        "max_retries",
        int,
        typer.Option("--max-retries", help="Retries of transient errors per operation."),
    ),
    "name": ("job_name", str | None, typer.Option("--name", help="Job name.")),
}


@dataclass(frozen=True)
class RunOptions:
    """What a `run` command's shared options asked for."""

    entry: JobType
    fields: dict[str, Any]
    """Request fields given by the shared options (`job_name` only when `--name` was given)."""
    projects_dir: Path | None
    as_json: bool

    def submit(self, *, extra_progress: Any = None, **fields: Any) -> None:
        """Validate the request (exit 2 naming the field) and run its flow in process."""
        request = build_request(self.entry.request, **(fields | self.fields))
        execute_request(self, request, extra_progress=extra_progress)


def run_command(job_type: BatchJobType) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """`ombudsman run <command>` of a job type (command name from the job-type registry): the
    function's own options, then the shared ones of `RUN_OPTIONS` with the request model's
    defaults, `--projects-dir` and `--json`; the function gets them as `options: RunOptions`."""
    entry = entry_for(job_type)
    defaults = entry.request()

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        kw = inspect.Parameter.KEYWORD_ONLY
        own = [
            p.replace(kind=kw)
            for p in inspect.signature(fn, eval_str=True).parameters.values()
            if p.name != "options"
        ]
        shared = [
            inspect.Parameter(
                name,
                kw,
                annotation=Annotated[kind, option],
                default=None if field == "job_name" else getattr(defaults, field),
            )
            for name, (field, kind, option) in RUN_OPTIONS.items()
        ]
        shared += [
            inspect.Parameter("projects_dir", kw, annotation=ProjectsDir, default=None),
            inspect.Parameter("as_json", kw, annotation=JsonFlag, default=False),
        ]

        def command(**values: Any) -> None:
            quiet_prefect()
            fields = {RUN_OPTIONS[n][0]: values.pop(n) for n in RUN_OPTIONS}
            if fields["job_name"] is None:
                del fields["job_name"]
            options = RunOptions(entry, fields, values.pop("projects_dir"), values.pop("as_json"))
            fn(**values, options=options)

        signature = inspect.Signature([*own, *shared], return_annotation=None)
        command.__signature__ = signature  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        command.__name__, command.__doc__ = fn.__name__, fn.__doc__
        run_app.command(entry.command)(command)
        return fn

    return decorate


def execute_request(options: RunOptions, request: BaseModel, *, extra_progress: Any = None) -> None:
    """Run a validated request's flow in process (the flow's parameters are the request's fields)."""
    from prefect_ombudsman.admission import check_request
    from prefect_ombudsman.errors import ConfigurationError
    from prefect_ombudsman.projects import projects_root

    try:
        check_request(request, root=projects_root(options.projects_dir))
    except ConfigurationError as exc:
        refuse(str(exc))
    params = request.model_dump(mode="json") | {
        "projects_dir": str(options.projects_dir) if options.projects_dir else None
    }
    execute_job(
        options.entry.flow,  # an import string: the warm service loads it, not this client
        params,
        as_json=options.as_json,
        label=options.entry.command,
        extra_progress=extra_progress,
    )


def _short(result: Any, width: int = 90) -> str:
    if result is None:
        return ""
    if isinstance(result, dict) and "columns" in result and "rows" in result:
        rows = result["rows"][:3]
        return "; ".join(
            ", ".join(f"{c}={v}" for c, v in zip(result["columns"], row, strict=False))
            for row in rows
        )[:width]
    text = json.dumps(result, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def print_summary(summary: dict[str, Any]) -> None:
    table = Table(title=f"{summary['name']} — {summary['status']}", show_lines=False)
    table.add_column("operation")
    table.add_column("status")
    table.add_column("ms", justify="right")
    table.add_column("detail", overflow="fold")
    colors = {"completed": "green", "failed": "red", "skipped": "yellow"}
    for op in summary["operations"][:200]:
        detail = op.get("error") or _short(op.get("result"))
        table.add_row(
            op["operation_id"],
            f"[{colors.get(op['status'], 'white')}]{op['status']}[/]",
            str(op.get("duration_ms") or ""),
            detail[:200],
        )
    out.print(table)
    if len(summary["operations"]) > 200:
        out.print(f"... {len(summary['operations']) - 200} more operations")
    out.print(
        f"{summary['completed']} completed, {summary['failed']} failed, {summary['skipped']} skipped "
        f"of {summary['total_operations']} in {summary['duration_ms'] / 1000:.1f} s · job {summary['job_id']}"
    )
    if summary.get("report_path"):
        out.print(f"report: {summary['report_path']}")


# ----------------------------------------------------------------------------- run custom


@run_command(BatchJobType.custom)
def run_custom(
    operation: Annotated[
        list[str] | None, typer.Argument(help="Registered operation names, one item each.")
    ] = None,
    args: Annotated[
        str | None, typer.Option("--args", help="JSON object of arguments for every item.")
    ] = None,
    repeat: Annotated[
        int, typer.Option("--repeat", help=f"Run each operation this many times (1-{MAX_REPEAT}).")
    ] = 1,
    items_file: Annotated[
        Path | None,
        typer.Option("--items", help="JSON file with a list of {operation, name?, arguments}."),
    ] = None,
    project: ProjectOpt = None,
    *,
    options: RunOptions,
) -> None:
    """Run registered custom operations (see `ombudsman operations`)."""
    from prefect_ombudsman.errors import ConfigurationError
    from prefect_ombudsman.yamlfiles import read_text_file

    items: list[dict[str, Any]] = []
    if items_file is not None:
        try:
            loaded = json.loads(read_text_file(items_file, "--items"))
        except ConfigurationError as exc:
            refuse(str(exc))
        except json.JSONDecodeError as exc:
            refuse(f"--items {items_file}: not valid JSON ({exc})")
        if not isinstance(loaded, list):
            refuse(f"--items {items_file}: expected a JSON list of items")
        items.extend(loaded)
    try:
        arguments = json.loads(args) if args else {}
    except json.JSONDecodeError as exc:
        refuse(f"--args: not valid JSON ({exc})")
    if not isinstance(arguments, dict):
        refuse("--args: expected a JSON object")
    if not 1 <= repeat <= MAX_REPEAT:
        refuse(f"--repeat: {repeat} is outside 1-{MAX_REPEAT} (the limit on repeats per operation)")
    for op_name in operation or []:
        items.extend({"operation": op_name, "arguments": arguments} for _ in range(repeat))
    options.submit(items=items, project_id=project)


# ----------------------------------------------------------------------------- jobs

jobs_app = typer.Typer(
    help="Inspect and control batch jobs (Prefect flow runs of the batch flows).",
    no_args_is_help=True,
)
app.add_typer(jobs_app, name="jobs")


def _service_call(function: Any, *args: Any, **kwargs: Any) -> Any:
    from prefect_ombudsman.jobs.service import JobNotFound, JobStateError

    try:
        return function(*args, **kwargs)
    except JobNotFound as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except JobStateError as exc:
        console.print(f"[yellow]{exc}[/yellow]")
        raise typer.Exit(1) from None


def _dump(model: Any) -> None:
    out.print_json(
        model.model_dump_json()
        if hasattr(model, "model_dump_json")
        else json.dumps(model, default=str)
    )


@jobs_app.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option("--status")] = None,
    job_type: Annotated[str | None, typer.Option("--type")] = None,
    project: Annotated[str | None, typer.Option("--project")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 100,
    offset: Annotated[int, typer.Option("--offset", min=0)] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Jobs, newest first."""
    service = jobs_service()
    from prefect_ombudsman.jobs.models import BatchJobStatus, BatchJobType

    try:
        status_value = BatchJobStatus(status) if status else None
        type_value = BatchJobType(job_type) if job_type else None
    except ValueError as exc:
        refuse(str(exc))
    jobs, total = service.list_jobs(
        status=status_value, job_type=type_value, project_id=project, limit=limit, offset=offset
    )
    if as_json:
        out.print_json(
            json.dumps({"jobs": [j.model_dump(mode="json") for j in jobs], "total": total})
        )
        return
    table = Table(title=f"{total} jobs")
    for column in ("job_id", "type", "status", "name", "done", "created"):
        table.add_column(column)
    for job in jobs:
        p = job.progress
        done = (
            f"{p.completed_operations + p.failed_operations + p.skipped_operations}/{p.total_operations}"
            if p
            else ""
        )
        table.add_row(
            job.job_id,
            job.job_type.value,
            job.status.value,
            job.name,
            done,
            job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    out.print(table)


@jobs_app.command("show")
def jobs_show(job_id: str) -> None:
    """The whole job (SPEC §4) as JSON."""
    service = jobs_service()

    _dump(_service_call(service.get_job, job_id))


@jobs_app.command("progress")
def jobs_progress(job_id: str) -> None:
    """Counters, percent and ETA of a job."""
    service = jobs_service()

    job = _service_call(service.get_job, job_id, with_operations=False)
    out.print_json(
        json.dumps(
            {
                "job_id": job.job_id,
                "job_status": job.status.value,
                "progress": job.progress.model_dump() if job.progress else None,
            }
        )
    )


@jobs_app.command("operations")
def jobs_operations(job_id: str) -> None:
    """The operations of a job with their status, timing, result and error."""
    service = jobs_service()

    job = _service_call(service.get_job, job_id)
    out.print_json(
        json.dumps(
            {
                "job_id": job.job_id,
                "total_operations": len(job.operations),
                "operations": [o.model_dump(mode="json") for o in job.operations],
            }
        )
    )


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: str, reason: Annotated[str | None, typer.Option("--reason")] = None
) -> None:
    """Cancel a job: no operation starts afterwards, running ones stop at their next safe point."""
    service = jobs_service()

    job = _service_call(service.cancel_job, job_id, reason)
    out.print(f"job {job.job_id}: {job.status.value}")


@jobs_app.command("retry")
def jobs_retry(job_id: str) -> None:
    """Re-run a failed job: only operations that did not complete execute again."""
    service = jobs_service()

    job = _service_call(service.retry_job, job_id)
    out.print(f"job {job.job_id}: {job.status.value}")
    raise typer.Exit(0 if job.status.value in ("completed", "queued", "pending") else 1)


@jobs_app.command("delete")
def jobs_delete(job_id: str) -> None:
    """Delete a finished job's flow run."""
    service = jobs_service()

    _service_call(service.delete_job, job_id)
    out.print(f"deleted {job_id}")


@jobs_app.command("stats")
def jobs_stats() -> None:
    """Counts by status and type, and the ten newest jobs."""
    service = jobs_service()

    stats = service.job_statistics()
    out.print_json(json.dumps(stats))


@jobs_app.command("report")
def jobs_report(job_id: str, projects_dir: ProjectsDir = None) -> None:
    """The job's JSON report: its local copy (read only inside the projects root) when current,
    else the copy in Prefect result storage, so any host that shares the storage can read it."""
    service = jobs_service()

    report = _service_call(
        service.read_job_report, job_id, str(projects_dir) if projects_dir else None
    )
    if report is None:
        job = _service_call(service.get_job, job_id, with_operations=False)
        console.print(
            f"[yellow]job {job_id} has no report yet (status {job.status.value})[/yellow]"
        )
        raise typer.Exit(1)
    sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")


@app.command("demo")
def demo_command(
    projects_dir: ProjectsDir = None,
    rows: Annotated[
        int, typer.Option("--rows", min=100, max=10_000_000, help="Fact rows to generate.")
    ] = 20_000,
    as_json: JsonFlag = False,
) -> None:
    """Generate the Retail warehouse (SQLite source, DuckDB target, planted drift), validate it as one
    bulk job, and show that every planted difference was found. No server, no credentials."""
    quiet_prefect()
    from prefect_ombudsman import demo
    from prefect_ombudsman.flows import batch_data_generation, bulk_pipeline_execution

    root = projects_dir.resolve() if projects_dir else None
    folder = demo.prepare_project(root)
    if not as_json:
        console.print(f"[bold]Ombudsman demo[/bold] — project {folder}")
        console.print(
            "source: SQLite (stands in for SQL Server) · target: DuckDB (stands in for Snowflake)"
        )
    generated = run_job(
        batch_data_generation,
        demo.datagen_parameters(rows, root),
        label="generate Retail",
        quiet=as_json,
    )
    if generated["status"] != "completed":
        print_summary(generated)
        raise typer.Exit(1)
    manifest = demo.manifest_of(generated)
    validated = run_job(
        bulk_pipeline_execution,
        demo.pipeline_parameters(folder, root),
        label="validate pipelines",
        quiet=as_json,
    )
    account = demo.account_for_drift(manifest, validated)
    report = validated.get("validation_report_path") or validated.get("report_path")
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "datagen": generated,
                    "validation": validated,
                    "drift": account.as_json(),
                    "report_path": report,
                },
                default=str,
            )
        )
        raise typer.Exit(0 if account.ok else 1)
    summary = validated.get("validation_summary") or {}
    out.print(
        f"validated {summary.get('total_pipelines', '?')} pipelines, {summary.get('total_validations', '?')} checks: "
        f"{summary.get('passed', '?')} passed, {summary.get('failed', '?')} failed, {summary.get('errors', '?')} errors"
    )
    table = Table(title="Planted differences and what found them")
    for column in ("table", "planted", "n", "found by (failing validators)", "row comparison", ""):
        table.add_column(column, overflow="fold")
    for f in account.findings:
        mark = "[green]found[/green]" if f.found else "[red]MISSED[/red]"
        table.add_row(
            f.table,
            demo.LABELS.get(f.kind, f.kind),
            str(f.planted),
            ", ".join(f.found_by) or "-",
            f.detail,
            mark,
        )
    out.print(table)
    if account.false_alarms:
        out.print("[red]false alarms on untouched tables:[/red]")
        for alarm in account.false_alarms:
            out.print(f"  {alarm}")
    else:
        out.print(
            f"untouched tables ({', '.join(account.untouched_tables)}): all {account.untouched_checks} checks passed"
        )
    out.print(f"drift manifest: {demo.manifest_path(generated)}")
    out.print(f"report: {report}")
    out.print(
        "[green]every planted difference was found, with no false alarm[/green]"
        if account.ok
        else "[red]some planted differences were missed[/red]"
    )
    raise typer.Exit(0 if account.ok else 1)


@app.command("serve")
def serve_command(
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, max=1000, help="Concurrent runs per deployment (1-1000)."),
    ] = None,
) -> None:
    """Serve every batch flow as a deployment (`<flow>/ombudsman`) from this process, no work pool needed."""
    use_prefect()
    from prefect_ombudsman.deployments import serve_all

    serve_all(limit)


# ----------------------------------------------------------------------------- run metadata


def split_source(value: str) -> tuple[str, str | None]:
    """`REF[:schema]` -> (REF, schema). In a URL the schema is a last `:part` without `/` or `@`."""
    head, sep, tail = value.rpartition(":")
    if not sep or not head or not tail or "/" in tail or "@" in tail or head.endswith(":"):
        return value, None
    if "://" in value and "://" not in head:
        return value, None  # `scheme://...`: the colon is the URL's own
    if "://" in head and tail.isdigit() and "/" not in head.split("://", 1)[1]:
        return value, None  # `postgresql://host:5432`: a port, not a schema
    return head, tail


@run_command(BatchJobType.bulk_metadata_extraction)
def run_metadata(
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            "-s",
            help="Connection REF[:schema], repeatable. Default with --project: its source and target.",
        ),
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option(
            "--table", "-t", help="Only these tables (repeatable; applies to every source)."
        ),
    ] = None,
    project: ProjectOpt = None,
    exact_counts: Annotated[
        bool, typer.Option("--exact-counts", help="COUNT(*) every table (default: statistics).")
    ] = False,
    sessions_per_server: Annotated[
        int | None,
        typer.Option(
            "--sessions-per-server", help="Sessions one server may hold at once (default 4)."
        ),
    ] = None,
    *,
    options: RunOptions,
) -> None:
    """Extract the metadata catalog of each source into the project's metadata/ folder."""
    if not source and not project:
        refuse("give --source (one or more) or --project (extracts its source and target)")
    items = []
    for value in source or ["source", "target"]:
        ref, schema = split_source(value.strip())
        items.append(
            {
                "connection": ref,
                "schema_name": schema,
                "table_names": list(table) if table else None,
            }
        )
    options.submit(
        items=items,
        project_id=project,
        exact_counts=exact_counts,
        sessions_per_server=sessions_per_server,
    )


# ----------------------------------------------------------------------------- run compare


@run_command(BatchJobType.batch_comparison)
def run_compare(
    project: Annotated[
        str | None, typer.Option("--project", help="Project id (its source/target and mapping).")
    ] = None,
    tables: Annotated[
        list[str] | None,
        typer.Option(
            "--table",
            help="[schema.]table on both sides, or SOURCE=TARGET; repeatable. "
            "None: every table of the project's metadata/mapping.json.",
        ),
    ] = None,
    source_url: Annotated[
        str | None,
        typer.Option(
            "--source-url", help="Source connection (URL or block) instead of the project's."
        ),
    ] = None,
    target_url: Annotated[
        str | None,
        typer.Option(
            "--target-url", help="Target connection (URL or block) instead of the project's."
        ),
    ] = None,
    keys: Annotated[
        list[str] | None, typer.Option("--key", help="Key column; repeat for a composite key.")
    ] = None,
    sample_size: Annotated[
        int, typer.Option("--sample-size", help="Sample keys per category (0-1000).")
    ] = 10,
    hash_mode: Annotated[
        str, typer.Option("--hash-mode", help="auto, canonical or native.")
    ] = "auto",
    *,
    options: RunOptions,
) -> None:
    """Compare tables row by row: missing, extra and changed rows with sample keys."""
    if not tables and (source_url or target_url):
        refuse("--source-url/--target-url: name the tables with --table")
    if not tables and not project:
        refuse(
            "give --table (one or more) or --project (its metadata/mapping.json lists the tables)"
        )
    items = []
    for spec in tables or []:
        source_table, _, target_table = spec.partition("=")
        item: dict[str, Any] = {
            "table": source_table.strip(),
            "sample_size": sample_size,
            "hash_mode": hash_mode,
        }
        if target_table.strip():
            item.update(source_table=source_table.strip(), target_table=target_table.strip())
        if keys:
            item["key_columns"] = keys
        if source_url:
            item["source"] = source_url
        if target_url:
            item["target"] = target_url
        items.append(item)
    options.submit(items=items, from_mapping=not tables, project_id=project)


# ----------------------------------------------------------------------------- run generate


def _drift_for(spec: Any, schema_type: str) -> dict[str, Any] | None:
    """A drift file may hold one spec, or one spec per schema type (`Retail: {...}`)."""
    if isinstance(spec, dict) and any(
        key.lower() in ("retail", "finance", "healthcare") for key in spec
    ):
        for key, value in spec.items():
            if key.lower() == schema_type.lower():
                return value
        return None
    return spec


def _row_bars(progress: Progress) -> Any:
    """Per-table bars of rows loaded, fed by the datagen executor's row listener."""
    from prefect_ombudsman.executors.datagen import ROW_LISTENERS

    bars: dict[tuple[str, str], Any] = {}

    def on_rows(operation_id: str, table: str, done: int, total: int) -> None:
        key = (operation_id, table)
        if key not in bars:
            bars[key] = progress.add_task(f"  {operation_id} {table}", total=total, status="rows")
        progress.update(bars[key], completed=done)

    return ROW_LISTENERS.add(on_rows)


@run_command(BatchJobType.batch_data_generation)
def run_generate(
    schema: Annotated[
        list[str],
        typer.Option(
            "--schema", "-s", help="Retail, Finance or Healthcare (repeat for more items)."
        ),
    ],
    rows: Annotated[
        int, typer.Option("--rows", "-n", help="Rows per fact table (dimensions scale with it).")
    ] = 1000,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed (default: random, reported in the result).")
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            "-t",
            help="Connection to load (URL, block, source/target); repeatable. "
            "Default: the project's source and target.",
        ),
    ] = None,
    drift: Annotated[
        Path | None, typer.Option("--drift", help="Drift spec (YAML/JSON) planted in one target.")
    ] = None,
    drift_target: Annotated[
        str | None,
        typer.Option(
            "--drift-target",
            help="The target that gets the drift (default: the file's, else the last).",
        ),
    ] = None,
    table: Annotated[str | None, typer.Option("--table", help="Generate only this table.")] = None,
    table_rows: Annotated[
        list[str] | None,
        typer.Option("--table-rows", help="NAME=ROWS size of one table; repeatable."),
    ] = None,
    if_exists: Annotated[
        str, typer.Option("--if-exists", help="replace, append or fail.")
    ] = "replace",
    start_date: Annotated[
        str | None, typer.Option("--start-date", help="First day of dim_date (YYYY-MM-DD).")
    ] = None,
    end_date: Annotated[
        str | None, typer.Option("--end-date", help="Last day of dim_date (YYYY-MM-DD).")
    ] = None,
    project: Annotated[
        str | None,
        typer.Option("--project", help="Project id (its source/target are the default targets)."),
    ] = None,
    *,
    options: RunOptions,
) -> None:
    """Generate seeded star schemas and load them into every target (rows per table as progress)."""
    from prefect_ombudsman.datagen import get_schema
    from prefect_ombudsman.datagen.drift import check_drift, parse_drift
    from prefect_ombudsman.errors import ConfigurationError

    sizes: dict[str, Any] = {}
    for spec in table_rows or []:
        key, _, value = spec.partition("=")
        if not key.strip() or not value.strip().isdigit():
            refuse(f"--table-rows {spec!r}: expected NAME=ROWS, e.g. dim_customer=5000")
        sizes[key.strip()] = int(value)
    raw_drift: Any = None
    if drift is not None:
        from prefect_ombudsman.yamlfiles import load_yaml_file

        try:
            raw_drift = load_yaml_file(drift, "--drift")
        except ConfigurationError as exc:
            refuse(str(exc))
    items = []
    for schema_type in schema:
        item: dict[str, Any] = {
            "schema_type": schema_type,
            "row_count": rows,
            "seed": seed,
            "table_name": table,
            "tables": sizes or None,
            "targets": list(target) if target else None,
            "if_exists": if_exists,
            "start_date": start_date,
            "end_date": end_date,
        }
        try:
            star = get_schema(schema_type)
            if table:
                star.table(table)
            for key in sizes:
                star.table(key)
            spec_raw = _drift_for(raw_drift, star.name) if raw_drift is not None else None
            if spec_raw is not None:
                if drift_target is not None:
                    spec_raw = {**spec_raw, "target": drift_target}
                if not isinstance(spec_raw, dict):
                    refuse(f"--drift {drift}: expected a mapping")
                check_drift(parse_drift(spec_raw, f"drift file {drift}"), star)
                item["drift"] = spec_raw
        except ConfigurationError as exc:
            refuse(str(exc))
        items.append(item)
    options.submit(items=items, project_id=project, extra_progress=_row_bars)


# ----------------------------------------------------------------------------- run pipelines / run projects


@run_command(BatchJobType.bulk_pipeline_execution)
def run_pipelines(
    project: Annotated[
        str | None,
        typer.Option(
            "--project", "-p", help="Project id (default $OMBUDSMAN_DEFAULT_PROJECT or demo)."
        ),
    ] = None,
    pipeline: Annotated[
        list[str] | None,
        typer.Option(
            "--pipeline", help="Pipeline id (repeatable; default: every pipeline of the project)."
        ),
    ] = None,
    override: Annotated[
        str | None,
        typer.Option("--override", help="JSON config_override applied to every pipeline."),
    ] = None,
    *,
    options: RunOptions,
) -> None:
    """Run validation pipelines of a project (source vs target) as one bulk job."""
    from prefect_ombudsman.errors import ConfigurationError
    from prefect_ombudsman.projects import default_project_id, load_project, projects_root
    from prefect_ombudsman.validation.execution import list_project_pipelines

    project_id = project or default_project_id()
    try:
        overrides = json.loads(override) if override else None
    except json.JSONDecodeError as exc:
        refuse(f"--override: not valid JSON ({exc})")
    if overrides is not None and not isinstance(overrides, dict):
        refuse("--override: expected a JSON object")
    ids = list(pipeline or [])
    if not ids:
        try:
            ids = list_project_pipelines(
                load_project(project_id, projects_root(options.projects_dir))
            )
        except ConfigurationError as exc:
            refuse(str(exc))
        if not ids:
            refuse(f"project {project_id!r} has no pipelines/*.yaml; name them with --pipeline")
    options.submit(
        job_name=f"Pipelines of {project_id}",
        pipelines=[{"pipeline_id": pid, "config_override": overrides} for pid in ids],
        project_id=project_id,
    )


@run_command(BatchJobType.multi_project_validation)
def run_projects(
    project: Annotated[
        list[str],
        typer.Option(
            "--project",
            "-p",
            help="PROJECT[:PIPELINE,PIPELINE] (repeatable; no list = every pipeline).",
        ),
    ],
    *,
    options: RunOptions,
) -> None:
    """Validate several projects in one job, each against its own source and target."""
    items = []
    for value in project:
        project_id, _, listed = value.partition(":")
        items.append(
            {
                "project_id": project_id.strip(),
                "pipeline_ids": [p.strip() for p in listed.split(",") if p.strip()],
            }
        )
    options.submit(projects=items)


api_app = typer.Typer(
    help="Serve the Studio's /batch REST API (no subcommand), or manage who may call it."
)
app.add_typer(api_app, name="api")
token_app = typer.Typer(help="API tokens (bearer credentials for scripts and CI).")
user_app = typer.Typer(help="Users who sign in through POST /auth/login (the Studio's login).")
api_app.add_typer(token_app, name="token")
api_app.add_typer(user_app, name="user")
AuthFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--auth-file", help="Auth file (default $OMBUDSMAN_AUTH_FILE or ~/.ombudsman/auth.json)."
    ),
]


def _auth_file(path: Path | None) -> Path:
    from prefect_ombudsman.jobs.accounts import default_auth_file

    return path.expanduser() if path else default_auth_file()


@api_app.callback(invoke_without_command=True)
def api_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    projects_dir: ProjectsDir = None,
    auth_file: AuthFileOpt = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            help="Origin allowed to call from a browser (repeatable; also $OMBUDSMAN_CORS_ORIGINS).",
        ),
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth", help="Serve with NO authentication (anyone may run jobs)."
        ),
    ] = False,
    studio_dir: Annotated[
        Path | None,
        typer.Option(
            "--studio-dir",
            envvar="OMBUDSMAN_STUDIO_DIR",
            help="The Studio's built frontend (its dist/ folder) to serve on this same origin.",
        ),
    ] = None,
) -> None:
    """Serve the Studio's /batch REST API (OpenAPI at /docs); jobs run as Prefect flow runs.

    Every route but /health needs a credential: `ombudsman api token create --name NAME`."""
    if ctx.invoked_subcommand is not None:
        return
    from prefect_ombudsman.errors import ConfigurationError
    from prefect_ombudsman.jobs.accounts import has_credentials, read_auth
    from prefect_ombudsman.jobs.auth import AuthSettings, is_loopback

    try:
        settings = AuthSettings.from_env(
            auth_file=_auth_file(auth_file),
            cors_origins=cors_origin or [],
            insecure_no_auth=insecure_no_auth,
        )
        configured = has_credentials(read_auth(settings.auth_file))
    except ConfigurationError as exc:
        refuse(str(exc))
    if insecure_no_auth:
        console.print(
            "[bold red]WARNING: --insecure-no-auth: anyone who can reach "
            f"{host}:{port} may start, cancel and delete jobs.[/bold red]",
            soft_wrap=True,
        )
    elif not configured and not is_loopback(host):
        refuse(
            f"no credential in {settings.auth_file}: refusing to listen on {host}. Create one with "
            "`ombudsman api token create --name NAME` (or pass --insecure-no-auth)"
        )
    elif not configured:
        console.print(
            f"[yellow]No credential in {settings.auth_file}: every route but /health answers "
            "401. Create one with `ombudsman api token create --name NAME`.[/yellow]",
            soft_wrap=True,
        )
    if settings.auth_file.exists() and settings.auth_file.stat().st_mode & 0o077:
        console.print(
            f"[yellow]{settings.auth_file} is readable by others: chmod 600 it.[/yellow]",
            soft_wrap=True,
        )
    if settings.cors_origins:
        console.print(f"CORS origins: {', '.join(settings.cors_origins)}")
    if studio_dir is not None and not (studio_dir / "index.html").is_file():
        refuse(f"--studio-dir: {studio_dir} has no index.html (give the frontend's built dist/)")
    use_prefect()
    from prefect_ombudsman.deployments.setup import apply_crash_detection
    from prefect_ombudsman.jobs.api import create_app
    from prefect_ombudsman.jobs.boundary import serve

    console.print(apply_crash_detection(), soft_wrap=True)

    serve(
        create_app(
            str(projects_dir.resolve()) if projects_dir else None,
            auth=settings,
            studio_dir=str(studio_dir.resolve()) if studio_dir else None,
        ),
        host=host,
        port=port,
    )


def _auth_call(action: Any, *args: Any, **kwargs: Any) -> Any:
    from prefect_ombudsman.errors import ConfigurationError

    try:
        return action(*args, **kwargs)
    except ConfigurationError as exc:
        refuse(str(exc))


def _print_listing(
    records: list[dict[str, Any]], columns: list[str], rows: list[list[str]], as_json: bool
) -> None:
    if as_json:
        out.print_json(data=records)
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    out.print(table)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option("--name", help="Name to list and revoke it by.")],
    read_only: Annotated[
        bool, typer.Option("--read-only", help="May list and read jobs, not change them.")
    ] = False,
    auth_file: AuthFileOpt = None,
) -> None:
    """Create an API token and print it once (only its hash is kept)."""
    from prefect_ombudsman.jobs.accounts import create_token

    path = _auth_file(auth_file)
    token = _auth_call(create_token, path, name, read_only=read_only)
    console.print(
        f"Token {name!r} ({'read-only' if read_only else 'full'}) saved in {path}; "
        "it is shown once:"
    )
    out.print(token, soft_wrap=True, highlight=False)


@token_app.command("list")
def token_list(auth_file: AuthFileOpt = None, as_json: JsonFlag = False) -> None:
    """List the API tokens (names, not the tokens)."""
    from prefect_ombudsman.jobs.accounts import list_tokens

    tokens = _auth_call(list_tokens, _auth_file(auth_file))
    rows = [[t["name"], "read-only" if t["read_only"] else "full", t["created_at"]] for t in tokens]
    _print_listing(tokens, ["name", "access", "created"], rows, as_json)


@token_app.command("revoke")
def token_revoke(name: str, auth_file: AuthFileOpt = None) -> None:
    """Revoke an API token; a running API refuses it from its next request."""
    from prefect_ombudsman.jobs.accounts import revoke_token

    _auth_call(revoke_token, _auth_file(auth_file), name)
    console.print(f"Token {name!r} revoked.")


@user_app.command("add")
def user_add(
    username: str,
    role: Annotated[
        str, typer.Option("--role", help="admin (read and write) or viewer.")
    ] = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    email: Annotated[str | None, typer.Option("--email")] = None,
    full_name: Annotated[str | None, typer.Option("--full-name")] = None,
    auth_file: AuthFileOpt = None,
) -> None:
    """Add a user who signs in with POST /auth/login (password prompted, or --password-stdin)."""
    from prefect_ombudsman.jobs.accounts import add_user

    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = _auth_call(
        add_user,
        _auth_file(auth_file),
        username,
        password,
        role=role,
        email=email,
        full_name=full_name,
    )
    console.print(f"User {user['username']!r} ({user['role']}) added.")


@user_app.command("list")
def user_list(auth_file: AuthFileOpt = None, as_json: JsonFlag = False) -> None:
    """List the users (no password hashes)."""
    from prefect_ombudsman.jobs.accounts import list_users

    users = _auth_call(list_users, _auth_file(auth_file))
    rows = [[u["username"], u["role"], u.get("email") or "", u["created_at"]] for u in users]
    _print_listing(users, ["username", "role", "email", "created"], rows, as_json)


@user_app.command("remove")
def user_remove(username: str, auth_file: AuthFileOpt = None) -> None:
    """Remove a user; their sessions stop working at their next request."""
    from prefect_ombudsman.jobs.accounts import remove_user

    _auth_call(remove_user, _auth_file(auth_file), username)
    console.print(f"User {username!r} removed.")


from prefect_ombudsman.deployments.setup import setup_command  # noqa: E402

app.command("setup")(setup_command)


@app.command("operations")
def list_operations() -> None:
    """List the registered custom operations and the package registering each."""
    from prefect_ombudsman.operations.registry import operation_sources

    for name, source in operation_sources().items():
        out.print(f"{name}  ({source})")


# ----------------------------------------------------------------------------- server

server_app = typer.Typer(
    help="The local Prefect server and the warm execution service the commands share (started by "
    "the first command that needs them; see docs/local-service.md).",
    no_args_is_help=True,
)
app.add_typer(server_app, name="server")


@server_app.command("status")
def server_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Whether the local server and the execution service run, their pids and logs (exit 1 when
    the server does not run)."""
    from prefect_ombudsman import execservice, localserver

    info = localserver.status()
    info["exec_service"] = execservice.status()
    service = info["exec_service"]
    if as_json:
        out.print_json(json.dumps(info))
    else:
        if info["running"]:
            out.print(
                f"running: {info['api_url']} (pid {info['pid']}, since {info['started']}, "
                f"{'answering' if info['healthy'] else 'NOT answering'}); UI {info['ui_url']}; "
                f"log {info['log']}"
            )
        else:
            out.print(f"not running (PREFECT_HOME {info['prefect_home']})")
        if service["running"]:
            out.print(
                f"execution service: pid {service['pid']}, since {service['started']}, "
                f"{service['jobs_running']} job(s) running"
                f"{'' if service['current'] else ' (older code: replaced by the next run)'}; "
                f"socket {service['socket']}; log {service['log']}"
            )
        else:
            out.print("execution service: not running")
    raise typer.Exit(0 if info["running"] else 1)


@server_app.command("start")
def server_start() -> None:
    """Start the local server (or find it running) and print its API URL."""
    from prefect_ombudsman import localserver
    from prefect_ombudsman.errors import OmbudsmanError

    try:
        record = localserver.ensure()
    except OmbudsmanError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    sys.stdout.write(record.url + "\n")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the execution service and the local server (commands still running lose their
    Prefect API)."""
    from prefect_ombudsman import execservice, localserver

    service = execservice.stop()
    if service:
        out.print(f"stopped the execution service (pid {service.pid})")
    record = localserver.stop()
    out.print(f"stopped {record.url} (pid {record.pid})" if record else "not running")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
