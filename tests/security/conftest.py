"""Fixtures of the security suites: the REST API's clients (tests/api_clients.py, also imported by
tests/jobs), no allow-list, and the adversarial tally that the terminal summary prints as one line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from api_clients import *  # noqa: F403


@dataclass
class Tally:
    """What the cases saw: how many ran, were refused, answered 5xx, left the canaries intact."""

    cases: int = 0
    refused: int = 0  # refused with the field named (422, exit 2, failed operation, database error)
    neutralised: int = 0  # hostile identifiers that ran as quoted names and harmed nothing
    server_errors: int = 0
    canary_intact: int = 0

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
