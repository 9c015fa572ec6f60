"""Fixtures of the REST API over real HTTP (TestClient): a full, a read-only and an anonymous
client of one app whose credentials live in a temporary auth file (imported by the conftests of
tests/jobs and tests/security)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from prefect_ombudsman.jobs.accounts import create_token
from prefect_ombudsman.jobs.api import create_app
from prefect_ombudsman.jobs.auth import AuthSettings

__all__ = [
    "anon_client",
    "api_app",
    "auth_settings",
    "client",
    "full_token",
    "readonly_client",
    "readonly_token",
]


@pytest.fixture
def auth_settings(tmp_path: Path) -> AuthSettings:
    return AuthSettings(auth_file=tmp_path / "auth" / "auth.json")


@pytest.fixture
def api_app(tmp_projects: Path, auth_settings: AuthSettings) -> FastAPI:
    return create_app(str(tmp_projects), auth=auth_settings)


def bearer_client(app: FastAPI, token: str | None) -> TestClient:
    client = TestClient(app)
    if token:
        client.headers["Authorization"] = f"Bearer {token}"
    return client


@pytest.fixture
def full_token(auth_settings: AuthSettings) -> str:
    return create_token(auth_settings.auth_file, "tests-full")


@pytest.fixture
def readonly_token(auth_settings: AuthSettings) -> str:
    return create_token(auth_settings.auth_file, "tests-read-only", read_only=True)


@pytest.fixture
def client(api_app: FastAPI, full_token: str) -> TestClient:
    """Authenticated with a full API token."""
    return bearer_client(api_app, full_token)


@pytest.fixture
def readonly_client(api_app: FastAPI, readonly_token: str) -> TestClient:
    """Authenticated with a read-only API token."""
    return bearer_client(api_app, readonly_token)


@pytest.fixture
def anon_client(api_app: FastAPI, full_token: str) -> TestClient:
    """No credential (the auth file has one, so the service is configured)."""
    return bearer_client(api_app, None)
