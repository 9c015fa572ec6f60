"""`ombudsman setup`: crash detection automation and per-database concurrency limits, idempotent."""

from __future__ import annotations

import pytest

from prefect_ombudsman.deployments import limits
from prefect_ombudsman.deployments.setup import (
    CRASH_DETECTION,
    SetupError,
    load_automations,
    parse_database_limits,
    run_setup,
)

CRASH = "ombudsman: crashed when heartbeats stop"


@pytest.fixture
def no_crash_automation(prefect_api):
    """The session's Prefect API without our crash automation (another test may have made one)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for automation in client.read_automations_by_name(CRASH):
            client.delete_automation(automation.id)


def test_the_shipped_crash_detection_is_prefects_zombie_flow_trigger():
    from prefect.events.schemas.automations import AutomationCore, Posture

    (definition,) = load_automations(CRASH_DETECTION)
    automation = AutomationCore.model_validate(definition)
    trigger = automation.trigger
    assert trigger.posture == Posture.Proactive
    assert trigger.after == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed"} <= trigger.expect
    assert trigger.within.total_seconds() == 90
    assert automation.actions[0].type == "change-flow-run-state"
    # the notifications are not mixed in: they need a block
    assert [a["name"] for a in load_automations()] == ["ombudsman: job failed, partial or crashed"]


def test_database_limit_values_are_checked_before_anything_is_created(tmp_path, prefect_api):
    assert parse_database_limits(["postgresql://u:pw@db1/x=3"], tmp_path) == {
        "postgresql://db1:5432": 3
    }
    for bad in ["postgresql://db1/x", "postgresql://db1/x=0", "=2", "nosuch=2"]:
        with pytest.raises(SetupError, match="--database-limit"):
            parse_database_limits([bad], tmp_path)
    assert limits.database_limit_name("postgresql://db1:5432") == "ombudsman-db-postgresql-db1-5432"


def test_setup_creates_and_updates_the_automation_and_the_limits(no_crash_automation):
    from prefect.client.orchestration import get_client

    first = run_setup(database_limits={"postgresql://db9:5432": 2}, crash_after=60)
    assert first == [
        f"automation {CRASH!r} created",
        "concurrency limit 'ombudsman-db-postgresql-db9-5432' (postgresql://db9:5432): 2 slots, created",
    ]
    again = run_setup(database_limits={"postgresql://db9:5432": 5})
    assert again[0] == f"automation {CRASH!r} updated"
    assert again[1].endswith("5 slots, updated")
    with get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name(CRASH)
        assert automation.trigger.within.total_seconds() == 90
        limit = client.read_global_concurrency_limit_by_name("ombudsman-db-postgresql-db9-5432")
        assert limit.limit == 5
        client.delete_global_concurrency_limit_by_name(limit.name)
        client.delete_automation(automation.id)


def test_serve_and_api_create_the_crash_detection_only_when_missing(no_crash_automation):
    from prefect.client.orchestration import get_client

    from prefect_ombudsman.deployments.setup import apply_crash_detection

    assert apply_crash_detection() == f"automation {CRASH!r} created"
    run_setup(crash_after=120)  # an operator's tuning survives the next `ombudsman api` start
    assert apply_crash_detection() == f"automation {CRASH!r} present"
    with get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name(CRASH)
        assert automation.trigger.within.total_seconds() == 120
        client.delete_automation(automation.id)
