"""The shipped automation notifies a job's owner through a notification block (a webhook here)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect_site import HOOK_BLOCK, OMBUDSMAN, site_client

from support import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _run_custom(site: dict[str, Any], params: dict[str, Any]) -> str:
    with site_client(site) as client:
        deployment = client.read_deployment_by_name("custom-batch/custom-batch")
        return str(client.create_flow_run_from_deployment(deployment.id, parameters=params).id)


def _final_state(site: dict[str, Any], run_id: str) -> Any:
    def state() -> Any:
        with site_client(site) as client:
            return client.read_flow_run(run_id).state

    assert wait_until(lambda: state().is_final(), timeout=600, interval=0.5), (
        site["logs"] / "worker.log"
    ).read_text()[-4000:]
    return state()


def test_partial_job_notifies_its_owner_with_name_counts_and_link(prefect_site):
    run_id = _run_custom(
        prefect_site,
        {
            "job_name": "Notify me nightly",
            "created_by": "alice@example.com",
            "items": [
                {"operation": "noop"},
                {"operation": "noop"},
                {"operation": "noop"},
                {"operation": "fail", "arguments": {"message": "planted failure"}},
            ],
        },
    )
    state = _final_state(prefect_site, run_id)
    assert state.name == "PartialSuccess"
    assert state.message == "3 of 4 operations completed, 1 failed"

    receiver = prefect_site["receiver"]

    def ours() -> list[dict[str, Any]]:
        return [b for b in receiver.bodies if run_id in str(b.get("body", ""))]

    assert wait_until(lambda: ours(), timeout=300, interval=0.5), receiver.bodies
    message = ours()[0]
    assert "Notify me nightly" in message["subject"] and "PartialSuccess" in message["subject"]
    body = message["body"]
    assert "Owner: alice@example.com" in body
    assert "3 of 4 operations completed, 1 failed" in body
    assert f"{prefect_site['base']}/runs/flow-run/{run_id}" in body

    # the run's own logs: no engine traceback, no summary dumped into a log line
    def logs() -> list[Any]:
        with site_client(prefect_site) as client:
            return client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
            )

    assert wait_until(lambda: any("partial_success" in log.message for log in logs()), timeout=30)
    messages = [log.message for log in logs()]
    assert not [m for m in messages if "Engine execution exited" in m or "Traceback" in m], messages
    assert max(len(m) for m in messages) < 2000


def test_completed_job_sends_nothing(prefect_site):
    before = len(prefect_site["receiver"].bodies)
    run_id = _run_custom(prefect_site, {"job_name": "All good", "items": [{"operation": "noop"}]})
    assert _final_state(prefect_site, run_id).is_completed()
    # the failing job above proves delivery works; a completed one must not add a message
    assert not [b for b in prefect_site["receiver"].bodies[before:] if run_id in str(b)]


def test_setup_is_idempotent_and_names_a_missing_block(prefect_site):
    assert (
        "automation 'ombudsman: job failed, partial or crashed' created"
        in (prefect_site["setup_output"])
    )
    again = subprocess.run(
        [*OMBUDSMAN, "setup", "--work-pool", "ombudsman-process", "--notify-block", HOOK_BLOCK],
        env=prefect_site["env"],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    assert "work pool 'ombudsman-process' (process) already exists" in again.stdout
    assert "automation 'ombudsman: job failed, partial or crashed' updated" in again.stdout
    with site_client(prefect_site) as client:
        assert (
            len(client.read_automations_by_name("ombudsman: job failed, partial or crashed")) == 1
        )
    missing = subprocess.run(
        [*OMBUDSMAN, "setup", "--notify-block", "slack-webhook/nope"],
        env=prefect_site["env"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "no block 'slack-webhook/nope'" in missing.stderr
