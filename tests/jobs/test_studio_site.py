"""The Studio's built frontend served on the API's own origin: its plain `fetch` calls (no
Authorization header) are authenticated by the login's session cookie, the API stays closed."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from prefect_ombudsman.jobs.accounts import add_user
from prefect_ombudsman.jobs.api import create_app
from prefect_ombudsman.jobs.auth import AuthSettings

pytestmark = pytest.mark.usefixtures("prefect_api")

HTML = {"accept": "text/html,application/xhtml+xml"}


@pytest.fixture
def site(tmp_path: Path, tmp_projects: Path, auth_settings: AuthSettings) -> TestClient:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<html><body>studio-index-marker</body></html>")
    (dist / "assets" / "app.js").write_text("console.log('studio-asset-marker')")
    add_user(auth_settings.auth_file, "ada", "correct horse battery", role="admin")
    app = create_app(str(tmp_projects), auth=auth_settings, studio_dir=str(dist))
    return TestClient(app, base_url="http://studio.local")


def test_the_frontend_is_public_and_client_routes_get_index_html(site: TestClient):
    assert "studio-index-marker" in site.get("/", headers=HTML).text
    assert "studio-asset-marker" in site.get("/assets/app.js").text
    for route in ("/batch", "/batch-report/123", "/projects"):
        page = site.get(route, headers=HTML)
        assert page.status_code == 200 and "studio-index-marker" in page.text, route
    assert site.get("/no/such/file.js", headers={"accept": "application/json"}).status_code == 404


def test_the_api_behind_it_stays_closed_until_login_sets_the_cookie(site: TestClient):
    assert site.get("/batch/jobs").status_code == 401
    assert site.get("/projects/list").status_code == 401
    login = site.post("/auth/login", json={"username": "ada", "password": "correct horse battery"})
    assert login.status_code == 200, login.text
    assert "ombudsman_session" in site.cookies
    # the Studio's page: plain fetch, no Authorization header, same origin -> the cookie
    listed = site.get("/batch/jobs?limit=100")
    assert listed.status_code == 200, listed.text and "jobs" in listed.json()
    created = site.post(
        "/batch/custom/execute",
        json={"job_name": "from the page", "items": []},
        headers={"origin": "http://studio.local"},
    )
    assert created.status_code == 200, created.text
    # the same cookie from another site's page may not write
    forged = site.post(
        "/batch/custom/execute",
        json={"job_name": "forged", "items": []},
        headers={"origin": "http://evil.example"},
    )
    assert forged.status_code == 403


def test_an_unset_bearer_from_the_page_falls_back_to_the_cookie(site: TestClient):
    """The Studio's alerts drawer sends `Authorization: Bearer null` (its token key is unset)."""
    assert site.get("/alerts/count", headers={"authorization": "Bearer null"}).status_code == 401
    site.post("/auth/login", json={"username": "ada", "password": "correct horse battery"})
    for unset in ("null", "undefined"):
        answer = site.get("/alerts/count", headers={"authorization": f"Bearer {unset}"})
        assert answer.status_code == 200, answer.text
    wrong = site.get("/alerts/count", headers={"authorization": "Bearer not-a-token"})
    assert wrong.status_code == 401
