"""Run one pipeline: a DAG of steps over two sides, shared scans, a result file per run.

Independent steps run concurrently (up to `max_workers`); a step runs after the steps it
depends on, and is SKIPPED when one of them did not PASS. Steps announce their aggregates first
(`plan`), so steps on the same table share one scan per side. The pipeline result has the keys of
SPEC §2 and is written to `results/<run_id>.json` (run ids are unique, never second-based).
"""

from __future__ import annotations

import concurrent.futures as cf
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from prefect_ombudsman.atomic import write_json_atomic
from prefect_ombudsman.dialects.base import driver_cause
from prefect_ombudsman.errors import OmbudsmanError, OperationCancelled, TransientError
from prefect_ombudsman.json_values import jsonable
from prefect_ombudsman.redaction import scrub, scrub_data
from prefect_ombudsman.validation.context import Outcome, RunContext, StepContext
from prefect_ombudsman.validation.registry import Validator, get_validator
from prefect_ombudsman.validation.spec import (
    PipelineSpec,
    Severity,
    Status,
    StepSpec,
    Tolerance,
    step_result,
)
from prefect_ombudsman.validation.tables import Side


def new_run_id(now: datetime | None = None) -> str:
    """`run_YYYYmmdd_HHMMSS_ffffff_<8 hex>`: unique even for parallel runs in the same second."""
    now = now or datetime.now(UTC)
    return f"run_{now.strftime('%Y%m%d_%H%M%S_%f')}_{uuid.uuid4().hex[:8]}"


def _config_error(validator: Validator, exc: ValidationError) -> str:
    allowed = ", ".join(sorted(validator.config_model.model_fields))
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        if err["type"] == "extra_forbidden":
            parts.append(f"config.{loc}: unknown key; allowed keys: {allowed}")
        else:
            parts.append(f"config.{loc}: {err['msg']}")
    return "; ".join(parts)


class _Prepared:
    """A step with its validator and typed config, or the reason it cannot run."""

    def __init__(self, step: StepSpec) -> None:
        self.step = step
        self.validator: Validator | None = None
        self.config: Any = None
        self.problem: str | None = None
        self.deps: list[str] = []
        self.ctx: StepContext | None = None


def run_pipeline(
    pipeline: PipelineSpec,
    source: Side,
    target: Side,
    *,
    project_id: str | None = None,
    schema_mappings: Mapping[str, str] | None = None,
    results_dir: Path | None = None,
    max_workers: int = 4,
    check_cancelled: Callable[[], None] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Run every step and return the pipeline result (written to `results_dir/<run_id>.json` when given)."""
    run_id = run_id or new_run_id()
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    check = check_cancelled or (lambda: None)
    run = RunContext(pipeline, source, target, dict(schema_mappings or {}), check)
    prepared = [_prepare(step, run) for step in pipeline.steps]
    _link(prepared)
    for item in prepared:
        if item.problem is None and item.validator is not None and item.validator.plan is not None:
            try:
                item.validator.plan(item.ctx, item.config)
            except Exception:  # the step itself will report the problem when it runs
                pass
    results = _execute(prepared, max(1, max_workers), check, [*source.tables(), *target.tables()])
    check()  # a cancel that interrupted the last queries ends the run, it is not a result
    if source.cancelled or target.cancelled:
        raise OperationCancelled(f"pipeline {pipeline.pipeline_id}: cancelled")
    steps = [results[item.step.id] for item in prepared]
    summary = {
        "total": len(steps),
        "passed": sum(s["status"] == "PASS" for s in steps),
        "failed": sum(s["status"] == "FAIL" for s in steps),
        "errors": sum(s["status"] == "ERROR" for s in steps),
        "skipped": sum(s["status"] == "SKIPPED" for s in steps),
    }
    status = "error" if summary["errors"] else "failed" if summary["failed"] else "passed"
    completed_at = datetime.now(UTC)
    result: dict[str, Any] = {
        "run_id": run_id,
        "pipeline_id": pipeline.pipeline_id,
        "pipeline_name": pipeline.name,
        "project_id": project_id,
        "status": status,
        "started_at": started_at.isoformat(),
        "completed_at": completed_at.isoformat(),
        "duration_ms": int((time.perf_counter() - clock) * 1000),
        "summary": summary,
        "steps": steps,
        "source": source.name,
        "target": target.name,
        "file": pipeline.file,
        "from_batch": pipeline.from_batch,
        "tables": sorted({s["table"] for s in steps if s.get("table")}),
        "stats": {
            side.label: {
                "queries": side.stats.queries,
                "table_scans": dict(side.stats.scans),
                "rows_pulled": side.stats.rows_pulled,
            }
            for side in (source, target)
        },
    }
    result = scrub_data(result)
    if results_dir is not None:
        path = write_result(results_dir, result, pipeline)
        result["results_path"] = str(path)
    return result


def write_result(results_dir: Path, result: dict[str, Any], pipeline: PipelineSpec) -> Path:
    """`results/<run_id>.json`, created exclusively (never overwrites another run), then renamed in."""
    path = results_dir / f"{result['run_id']}.json"
    if path.exists():
        raise OmbudsmanError(f"result file {path} already exists; run ids must be unique")
    record = {**result, "pipeline_def": scrub_data(pipeline.model_dump(mode="json", by_alias=True))}
    return write_json_atomic(path, record)


def _prepare(step: StepSpec, run: RunContext) -> _Prepared:
    item = _Prepared(step)
    try:
        item.validator = get_validator(step.validator)
    except OmbudsmanError as exc:
        item.problem = str(exc)
        return item
    config = dict(step.config)
    tolerance_given = step.tolerance is not None or "tolerance" in config
    step_tol: Tolerance | None
    if "tolerance" in config and "tolerance" not in item.validator.config_model.model_fields:
        try:
            step_tol = Tolerance.model_validate(config.pop("tolerance"))
        except ValidationError as exc:
            item.problem = f"config.tolerance: {exc.errors()[0]['msg']}"
            return item
    else:
        step_tol = step.tolerance
    try:
        item.config = item.validator.config_model.model_validate(config)
    except ValidationError as exc:
        item.problem = _config_error(item.validator, exc)
        return item
    item.ctx = StepContext(run, step, step_tol or Tolerance(), tolerance_given=tolerance_given)
    return item


def _link(prepared: list[_Prepared]) -> None:
    by_name: dict[str, list[str]] = {}
    for item in prepared:
        by_name.setdefault(item.step.name, []).append(item.step.id)
        if item.step.id != item.step.name:
            by_name.setdefault(item.step.id, []).append(item.step.id)
    for item in prepared:
        for dep in item.step.depends_on:
            ids = by_name.get(dep)
            if not ids:
                if item.problem is None:
                    item.problem = f"depends_on names unknown step {dep!r}; steps: {', '.join(sorted(by_name))}"
                continue
            item.deps.extend(i for i in ids if i != item.step.id)


def _execute(
    prepared: list[_Prepared],
    workers: int,
    check: Callable[[], None],
    tables: list[Any] | None = None,
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    pending = {item.step.id: item for item in prepared}
    for item in prepared:
        if not item.step.enabled:
            results[item.step.id] = _static(item, Status.SKIPPED, "step disabled (enabled: false)")
            del pending[item.step.id]
    with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ombudsman-step") as pool:
        running: dict[cf.Future[dict[str, Any]], str] = {}
        # the shared scans of both sides start at once, so the source and target scans overlap
        for table in tables or []:
            pool.submit(table.prefetch)
        try:
            while pending or running:
                check()
                progressed = False
                for step_id, item in list(pending.items()):
                    if any(d in pending or d in running.values() for d in item.deps):
                        continue
                    del pending[step_id]
                    progressed = True
                    blocked = [d for d in item.deps if results.get(d, {}).get("status") != "PASS"]
                    if blocked:
                        states = ", ".join(
                            f"{d} {results[d]['status']}" for d in blocked if d in results
                        )
                        results[step_id] = _static(
                            item, Status.SKIPPED, f"dependency did not pass: {states}"
                        )
                    elif item.problem is not None:
                        results[step_id] = _static(item, Status.ERROR, item.problem)
                    else:
                        running[pool.submit(_run_step, item, check)] = step_id
                if not running:
                    if pending and not progressed:
                        for step_id, item in list(pending.items()):
                            results[step_id] = _static(
                                item,
                                Status.ERROR,
                                "circular dependency: " + " -> ".join([step_id, *item.deps]),
                            )
                            del pending[step_id]
                    continue
                done, _ = cf.wait(list(running), timeout=0.2, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    step_id = running.pop(future)
                    results[step_id] = future.result()
        except BaseException:
            for future in running:
                future.cancel()
            raise
    return results


def _static(item: _Prepared, status: Status, message: str) -> dict[str, Any]:
    severity = Severity.NONE
    if status == Status.ERROR:
        severity = item.step.severity or Severity.HIGH
    return step_result(
        name=item.step.name,
        validator=item.validator.name if item.validator else item.step.validator,
        status=status,
        severity=severity,
        table=_step_table(item),
        details={"reason": message} if status == Status.SKIPPED else {"error": message},
        sql={},
        duration_ms=0,
        step_id=item.step.id,
        message=scrub(message),
    )


def _step_table(item: _Prepared) -> str | None:
    if item.ctx is not None and item.ctx.tables_used:
        return item.ctx.tables_used[0]
    cfg = item.step.config
    for key in ("table", "fact", "dim"):
        if isinstance(cfg.get(key), str):
            return str(cfg[key])
    return None


def _run_step(item: _Prepared, check: Callable[[], None]) -> dict[str, Any]:
    assert item.validator is not None and item.ctx is not None
    started = time.perf_counter()
    ctx = item.ctx
    try:
        check()
        outcome = item.validator.fn(ctx, item.config)
        if not isinstance(outcome, Outcome):
            raise OmbudsmanError(
                f"validator {item.validator.name} returned {type(outcome).__name__}, not an Outcome"
            )
    except (OperationCancelled, TransientError):
        raise  # a transient fault is no verdict on the data: the operation is retried
    except OmbudsmanError as exc:
        outcome = Outcome(Status.ERROR, {"error": str(exc)}, str(exc))
    except SQLAlchemyError as exc:
        # a query on a side's engine outside `Side.connect` (the comparison's own connections)
        lost = [s for s in (ctx.run.source, ctx.run.target) if s.dialect.is_transient(exc)]
        if lost:
            raise (
                lost[0].transient_error(exc)
                if len(lost) == 1
                else TransientError(
                    f"{lost[0].label} database {lost[0].name} or {lost[1].label} database "
                    f"{lost[1].name}: {driver_cause(exc)}"
                )
            ) from exc
        text = scrub(str(getattr(exc, "orig", None) or exc)).strip().splitlines()[0][:500]
        outcome = Outcome(
            Status.ERROR,
            {"error": text, "exception_type": type(exc).__name__},
            f"query failed: {text}",
        )
    except Exception as exc:
        text = scrub(f"{type(exc).__name__}: {exc}")[:500]
        outcome = Outcome(Status.ERROR, {"error": text, "exception_type": type(exc).__name__}, text)
    status = outcome.status
    if status == Status.PASS or status == Status.SKIPPED:
        severity = Severity.NONE
    elif status == Status.FAIL:
        severity = item.step.severity or outcome.severity or item.validator.fail_severity
    else:
        severity = item.step.severity or Severity.HIGH
    sql = {label: (";\n".join(dict.fromkeys(lines)) or None) for label, lines in ctx.sql.items()}
    return step_result(
        name=item.step.name,
        validator=item.validator.name,
        status=status,
        severity=severity,
        table=outcome.table or _step_table(item),
        details=jsonable(outcome.details),
        sql=sql,
        duration_ms=int((time.perf_counter() - started) * 1000),
        step_id=item.step.id,
        message=scrub(outcome.message) if outcome.message else None,
    )
