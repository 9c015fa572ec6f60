"""The validation engine: pipeline spec and loader, validator registry, validators, pipeline runner.

No Prefect here (the flows in `prefect_ombudsman.flows` call these functions):

    from prefect_ombudsman.connections import resolve_connection
    from prefect_ombudsman.validation import run_project_pipeline, run_project
    result = run_project_pipeline("fact_sales_checks", project_id="demo", resolve=resolve_connection)

The engine imports no Prefect blocks: connection references are resolved by the `resolve`
function the caller hands it (`prefect_ombudsman.connections.resolve_connection`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names load on first use (PEP 562): a command that only reads a pipeline file (the CLI's request
# check) imports `validation.loader` without SQLAlchemy and the engine behind `execution`.
_WHERE = {
    "list_project_pipelines": "execution",
    "open_side": "execution",
    "run_project": "execution",
    "run_project_pipeline": "execution",
    "PipelineError": "loader",
    "expand_pipeline": "loader",
    "find_pipeline_file": "loader",
    "load_pipeline": "loader",
    "parse_pipeline": "loader",
    "new_run_id": "pipeline_run",
    "run_pipeline": "pipeline_run",
    "available_validators": "registry",
    "get_validator": "registry",
    "register_validator": "registry",
    "validator_catalog": "registry",
    "PipelineSpec": "spec",
    "Severity": "spec",
    "Status": "spec",
    "Tolerance": "spec",
    "Side": "tables",
}

if TYPE_CHECKING:
    from prefect_ombudsman.validation.execution import (
        list_project_pipelines,
        open_side,
        run_project,
        run_project_pipeline,
    )
    from prefect_ombudsman.validation.loader import (
        PipelineError,
        expand_pipeline,
        find_pipeline_file,
        load_pipeline,
        parse_pipeline,
    )
    from prefect_ombudsman.validation.pipeline_run import new_run_id, run_pipeline
    from prefect_ombudsman.validation.registry import (
        available_validators,
        get_validator,
        register_validator,
        validator_catalog,
    )
    from prefect_ombudsman.validation.spec import PipelineSpec, Severity, Status, Tolerance
    from prefect_ombudsman.validation.tables import Side


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "PipelineError",
    "PipelineSpec",
    "Severity",
    "Side",
    "Status",
    "Tolerance",
    "available_validators",
    "expand_pipeline",
    "find_pipeline_file",
    "get_validator",
    "list_project_pipelines",
    "load_pipeline",
    "new_run_id",
    "open_side",
    "parse_pipeline",
    "register_validator",
    "run_pipeline",
    "run_project",
    "run_project_pipeline",
    "validator_catalog",
]
