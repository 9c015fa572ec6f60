"""The validation engine: pipeline spec and loader, validator registry, validators, pipeline runner.

No Prefect here (the flows in `prefect_ombudsman.flows` call these functions):

    from prefect_ombudsman.connections import resolve_connection
    from prefect_ombudsman.validation import run_project_pipeline, run_project
    result = run_project_pipeline("fact_sales_checks", project_id="demo", resolve=resolve_connection)

The engine imports no Prefect blocks: connection references are resolved by the `resolve`
function the caller hands it (`prefect_ombudsman.connections.resolve_connection`).
"""

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
