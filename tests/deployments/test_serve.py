"""`ombudsman serve` serves one deployment per batch flow."""

from __future__ import annotations

from prefect_ombudsman.deployments import build_deployments
from prefect_ombudsman.flows import available_flows


def test_every_job_type_has_a_flow_and_a_served_deployment():
    flows = available_flows()
    assert set(flows) == {
        "bulk_pipeline_execution",
        "batch_data_generation",
        "multi_project_validation",
        "bulk_metadata_extraction",
        "batch_comparison",
        "custom",
    }
    deployments = build_deployments()
    assert sorted(d.flow_name for d in deployments) == sorted(f.name for f in flows.values())
    assert all(d.name == "ombudsman" and "ombudsman" in d.tags for d in deployments)
