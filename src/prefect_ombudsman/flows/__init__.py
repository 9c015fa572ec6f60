"""The batch flows (one module per job type), all on the bounded runner of `runner.py`.

Which flow runs which job type is the job-type registry's (`prefect_ombudsman.jobs.types`); the
flows are imported lazily from it so one broken engine never hides the others.
"""

from __future__ import annotations

from typing import Any

from prefect_ombudsman.flows.custom import custom_batch
from prefect_ombudsman.jobs.types import JOB_TYPES, entry_for


def flow_for(job_type: Any) -> Any:
    """The flow object that runs jobs of `job_type`."""
    return entry_for(job_type).load_flow()


def available_flows() -> dict[str, Any]:
    """Every batch flow that is installed, by job type."""
    found = {}
    for entry in JOB_TYPES:
        try:
            found[entry.job_type.value] = entry.load_flow()
        except (ImportError, AttributeError):
            continue
    return found


def __getattr__(name: str) -> Any:
    """`from prefect_ombudsman.flows import bulk_pipeline_execution` without importing every engine up front."""
    for entry in JOB_TYPES:
        if entry.flow.rpartition(":")[2] == name:
            return entry.load_flow()
    raise AttributeError(f"module 'prefect_ombudsman.flows' has no attribute {name!r}")


__all__ = ["custom_batch", "flow_for", "available_flows"]
