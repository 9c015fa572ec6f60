"""The deployments `prefect.yaml` declares, built in Python for `ombudsman serve` (no work pool needed)."""

from __future__ import annotations

from typing import Any

DEPLOYMENT_NAME = "ombudsman"


def deployment_tags(job_type: str) -> list[str]:
    return ["ombudsman", f"job-type:{job_type}"]


def build_deployments(limit: int | None = None) -> list[Any]:
    """One served deployment per installed batch flow, named `<flow-name>/ombudsman`."""
    from prefect_ombudsman.flows import available_flows

    deployments = []
    for job_type, flow in available_flows().items():
        deployments.append(
            flow.to_deployment(
                name=DEPLOYMENT_NAME,
                tags=deployment_tags(job_type),
                description=flow.description,
                concurrency_limit=limit,
            )
        )
    return deployments


def serve_all(limit: int | None = None) -> None:
    """Serve every batch flow from this process until interrupted (`ombudsman serve`)."""
    from prefect import serve

    serve(*build_deployments(limit))
