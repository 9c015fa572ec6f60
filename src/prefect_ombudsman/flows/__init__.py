"""The batch flows (one module per job type), all on the bounded runner of `runner.py`."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from prefect_ombudsman.flows.custom import custom_batch

# job type -> (module, flow function); imported lazily so one broken engine never hides the others
FLOW_LOCATIONS: dict[str, tuple[str, str]] = {
    "bulk_pipeline_execution": ("prefect_ombudsman.flows.pipelines", "bulk_pipeline_execution"),
    "batch_data_generation": ("prefect_ombudsman.flows.datagen", "batch_data_generation"),
    "multi_project_validation": ("prefect_ombudsman.flows.projects", "multi_project_validation"),
    "bulk_metadata_extraction": ("prefect_ombudsman.flows.metadata", "bulk_metadata_extraction"),
    "batch_comparison": ("prefect_ombudsman.flows.comparison", "batch_comparison"),
    "custom": ("prefect_ombudsman.flows.custom", "custom_batch"),
}


def flow_for(job_type: Any) -> Any:
    """The flow object that runs jobs of `job_type`."""
    module, name = FLOW_LOCATIONS[str(getattr(job_type, "value", job_type))]
    return getattr(import_module(module), name)


def available_flows() -> dict[str, Any]:
    """Every batch flow that is installed, by job type."""
    found = {}
    for job_type in FLOW_LOCATIONS:
        try:
            found[job_type] = flow_for(job_type)
        except (ImportError, AttributeError):
            continue
    return found


def __getattr__(name: str) -> Any:
    """`from prefect_ombudsman.flows import bulk_pipeline_execution` without importing every engine up front."""
    for module, function in FLOW_LOCATIONS.values():
        if function == name:
            return getattr(import_module(module), function)
    raise AttributeError(f"module 'prefect_ombudsman.flows' has no attribute {name!r}")


__all__ = ["custom_batch", "flow_for", "available_flows", "FLOW_LOCATIONS"]
