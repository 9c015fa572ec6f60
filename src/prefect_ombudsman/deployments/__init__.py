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


HEARTBEAT_SECONDS = "30"  # Prefect's minimum; the crash automation waits for three missed beats


def serve_all(limit: int | None = None) -> None:
    """Serve every batch flow from this process until interrupted (`ombudsman serve`): flow runs
    send heartbeats, and the automation that crashes silent runs is applied first."""
    import os

    from prefect import serve

    from prefect_ombudsman.deployments.setup import apply_crash_detection

    # the flow-run processes the runner starts inherit this environment
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", HEARTBEAT_SECONDS)
    print(apply_crash_detection(), flush=True)
    serve(*build_deployments(limit))
