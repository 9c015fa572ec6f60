"""Fixtures of the security suites: the REST client, no allow-list, and the adversarial tally
that the terminal summary prints as one line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from prefect_ombudsman.jobs.api import create_app


@dataclass
class Tally:
    """What the cases saw: how many ran, were refused, answered 5xx, left the canaries intact."""

    cases: int = 0
    refused: int = 0  # refused with the field named (422, exit 2, failed operation, database error)
    neutralised: int = 0  # hostile identifiers that ran as quoted names and harmed nothing
    server_errors: int = 0
    canary_intact: int = 0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"adversarial suite: {self.cases} cases, {self.refused} refused, "
            f"{self.neutralised} neutralised, "
            f"{self.server_errors} 5xx, canary intact {self.canary_intact}/{self.cases}"
        )


TALLY = Tally()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLY.cases:
        terminalreporter.write_line(TALLY.line())


@pytest.fixture
def tally() -> Tally:
    return TALLY


@pytest.fixture(autouse=True)
def no_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's allow-list of pytest's temp folders is off here: the root alone counts."""
    monkeypatch.delenv("OMBUDSMAN_ALLOWED_PATHS", raising=False)


@pytest.fixture
def client(tmp_projects: Path) -> TestClient:
    """The REST API as the tests of tests/jobs build it (the lead swaps in an authenticated one)."""
    return TestClient(create_app(str(tmp_projects)))
