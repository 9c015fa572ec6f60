"""A bounded schemathesis run over the app's OpenAPI (every built-in check, authenticated):
no 5xx, no status code the schema does not declare, responses as documented.

Jobs are refused before they start: `OMBUDSMAN_EXECUTION=deployment` with no deployment in the
Prefect API answers a valid create with 409 (declared), so random pipelines, targets and
connections never run; every other route runs for real against the Prefect API."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from prefect_ombudsman.jobs.accounts import create_token
from prefect_ombudsman.jobs.api import create_app
from prefect_ombudsman.jobs.auth import AuthSettings

# The app is built at import (schemathesis reads its schema while collecting); its files live
# in a directory of its own, nothing in the projects root.
_HOME = Path(tempfile.mkdtemp(prefix="ombudsman-schemathesis-"))
atexit.register(shutil.rmtree, _HOME, True)
_EMPTY = _HOME / "projects"
_EMPTY.mkdir()
_AUTH = AuthSettings(auth_file=_HOME / "auth.json")
_TOKEN = create_token(_AUTH.auth_file, "schemathesis")
# Schema-valid bodies may still be refused: the job models check rules JSON Schema does not
# carry (safe ids, "table or source_table+target_table"), the login checks the password.
_CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ["2xx", "404", "409"]},
            # a list over its maxItems may first meet the body-size limit: 413 is a refusal too
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "409", "413", "422"]
            },
        },
        # the bearer token is sent by the test; undeclared query parameters are ignored
        "generation": {"with-security-parameters": False, "allow-extra-parameters": False},
        # boundary values of every field, refused ones only: accepted ones reach Prefect and
        # are what the fuzzing phase samples (bounded by max_examples)
        "phases": {"coverage": {"generation": {"mode": "negative"}}},
        "operations": [
            {
                "include-path-regex": "^/batch/.*(execute|generate|validate|extract|compare)$",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": ["2xx", "409", "422"]}
                },
            },
            {
                "include-path-regex": "^/auth/(login|refresh)$",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401"]}},
            },
        ],
    }
)
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(str(_EMPTY), auth=_AUTH), config=_CONFIG
)
load_all_checks()


@pytest.fixture(autouse=True)
def _nothing_runs(prefect_api: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMBUDSMAN_PROJECTS_DIR", str(_EMPTY))
    monkeypatch.setenv("OMBUDSMAN_EXECUTION", "deployment")


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {_TOKEN}"}, checks=CHECKS.get_all())
