"""Fixtures of the jobs API tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from prefect_ombudsman.jobs.api import create_app


@pytest.fixture
def client(tmp_projects: Path) -> TestClient:
    return TestClient(create_app(str(tmp_projects)))
