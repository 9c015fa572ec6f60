"""Who may call `ombudsman api`: every route of the app (enumerated, so routes added later are
covered) refuses missing, wrong, expired and forged credentials with 401, read-only ones on
writes with 403, and starts nothing; the Studio's login works; CORS only for listed origins."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from api_clients import bearer_client
from prefect_ombudsman.jobs import accounts
from prefect_ombudsman.jobs.api import create_app
from prefect_ombudsman.jobs.auth import AuthSettings, is_loopback, route_table

pytestmark = pytest.mark.usefixtures("prefect_api")

JOB = "00000000-0000-0000-0000-000000000000"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def _flow_runs() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return len(client.read_flow_runs(limit=200))


def _calls(app: FastAPI) -> list[tuple[str, str]]:
    """(method, concrete path) of every protected HTTP route; path parameters filled in."""
    calls = []
    for route in route_table(app):
        if not route.public and not route.websocket:
            path = re.sub(r"\{(\w*id)\}", JOB, route.path)
            path = re.sub(r"\{\w+\}", "x", path)
            calls += [(method, path) for method in sorted(route.methods)]
    assert len(calls) >= 12, calls
    return calls


def _send(client: TestClient, method: str, path: str, **headers: str) -> Any:
    body = {"job_name": "auth probe"} if method in WRITES else None
    return client.request(method, path, json=body, headers=headers)


def _expired_jwt(settings: AuthSettings, role: str = "admin") -> str:
    user = accounts.add_user(settings.auth_file, f"old-{role}", "password1", role=role)
    secret = accounts.read_auth(settings.auth_file)["secret_key"]
    claims = {"sub": user["user_id"], "username": user["username"], "type": "access"}
    return accounts.issue_jwt(secret, claims, ttl_seconds=-1)


def test_every_route_refuses_missing_wrong_expired_and_forged_credentials(
    api_app: FastAPI, anon_client: TestClient, auth_settings: AuthSettings
):
    expired = _expired_jwt(auth_settings)
    secret = accounts.read_auth(auth_settings.auth_file)["secret_key"]
    user_id = accounts.read_auth(auth_settings.auth_file)["users"][0]["user_id"]
    forged = accounts.issue_jwt("ab" * 32, {"sub": user_id, "type": "access"}, 3600)
    refresh_as_access = accounts.issue_jwt(secret, {"sub": user_id, "type": "refresh"}, 3600)
    payload = accounts.issue_jwt(secret, {"sub": user_id, "type": "access"}, 60).split(".")[1]
    unsigned = accounts._b64(b'{"alg":"none","typ":"JWT"}') + f".{payload}."
    wrong = {
        "none": None,
        "unknown token": "omb_" + "A" * 43,
        "garbage": "not-a-token",
        "expired": expired,
        "forged": forged,
        "refresh as access": refresh_as_access,
        "alg none": unsigned,
        "basic scheme": None,
    }
    before = _flow_runs()
    for method, path in _calls(api_app):
        for label, token in wrong.items():
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            if label == "basic scheme":
                headers = {"Authorization": "Basic dXNlcjpwYXNz"}
            answer = _send(anon_client, method, path, **headers)
            assert answer.status_code == 401, (label, method, path, answer.text)
            assert answer.headers["www-authenticate"].startswith("Bearer"), (label, path)
            assert token is None or token not in answer.text
    assert _flow_runs() == before


def test_read_only_token_and_viewer_may_read_but_not_write(
    api_app: FastAPI, readonly_client: TestClient, auth_settings: AuthSettings
):
    accounts.add_user(auth_settings.auth_file, "vera", "viewer-pass", role="viewer")
    login = TestClient(api_app).post(
        "/auth/login", json={"username": "vera", "password": "viewer-pass"}
    )
    viewer = bearer_client(api_app, login.json()["access_token"])
    before = _flow_runs()
    for client in (readonly_client, viewer):
        assert client.get("/batch/jobs").status_code == 200
        for method, path in _calls(api_app):
            if method in WRITES:
                answer = _send(client, method, path)
                assert answer.status_code == 403, (method, path, answer.text)
                assert "read-only" in answer.json()["detail"]
    assert _flow_runs() == before


def test_full_token_starts_a_job_and_revocation_is_live(
    client: TestClient, auth_settings: AuthSettings
):
    created = client.post("/batch/custom/execute", json={"job_name": "auth ok", "items": []})
    assert created.status_code == 200, created.text
    accounts.revoke_token(auth_settings.auth_file, "tests-full")
    answer = client.get(f"/batch/jobs/{created.json()['job_id']}")
    assert answer.status_code == 401 and "revoked" in answer.json()["detail"]


def test_login_me_and_refresh_in_the_studio_shapes(api_app: FastAPI, auth_settings: AuthSettings):
    accounts.add_user(
        auth_settings.auth_file,
        "Alice",
        "s3cret-pass",
        role="admin",
        email="alice@example.com",
        full_name="Alice Admin",
    )
    anon = TestClient(api_app)
    login = anon.post("/auth/login", json={"username": "alice", "password": "s3cret-pass"})
    assert login.status_code == 200, login.text
    body = login.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 8 * 3600
    user = body["user"]
    assert set(user) == {
        "user_id",
        "username",
        "email",
        "full_name",
        "role",
        "is_active",
        "is_verified",
        "created_at",
        "last_login",
    }
    assert (user["username"], user["role"], user["full_name"]) == ("alice", "admin", "Alice Admin")
    assert "password" not in login.text and "scrypt" not in login.text
    me = bearer_client(api_app, body["access_token"]).get("/auth/me")
    assert me.status_code == 200 and me.json()["email"] == "alice@example.com"
    by_email = anon.post(
        "/auth/login", json={"username": "alice@example.com", "password": "s3cret-pass"}
    )
    assert by_email.status_code == 200
    refreshed = anon.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200 and set(refreshed.json()) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
    }
    session = bearer_client(api_app, refreshed.json()["access_token"])
    assert session.post("/batch/jobs/x/cancel").status_code == 404  # admin: past auth
    assert (
        anon.post("/auth/refresh", json={"refresh_token": body["access_token"]}).status_code == 401
    )
    accounts.remove_user(auth_settings.auth_file, "alice")
    assert session.get("/auth/me").status_code == 401


def test_wrong_password_is_401_and_repeated_failures_lock_the_account(
    api_app: FastAPI, auth_settings: AuthSettings
):
    accounts.add_user(auth_settings.auth_file, "bob", "right-password", role="admin")
    anon = TestClient(api_app)
    for _ in range(5):
        answer = anon.post("/auth/login", json={"username": "bob", "password": "wrong-password"})
        assert answer.status_code == 401
        assert answer.json() == {"detail": "Incorrect username or password"}
    nobody = anon.post("/auth/login", json={"username": "nobody", "password": "whatever1"})
    assert nobody.status_code == 401 and nobody.json() == answer.json()
    locked = anon.post("/auth/login", json={"username": "bob", "password": "right-password"})
    assert locked.status_code == 403 and "locked" in locked.json()["detail"]


def test_a_token_passes_as_a_user_in_auth_me(client: TestClient, readonly_client: TestClient):
    full, ro = client.get("/auth/me").json(), readonly_client.get("/auth/me").json()
    assert (full["username"], full["role"]) == ("tests-full", "admin")
    assert (ro["username"], ro["role"]) == ("tests-read-only", "viewer")


def test_no_credential_configured_still_answers_401_but_health(tmp_projects: Path, tmp_path: Path):
    app = create_app(str(tmp_projects), auth=AuthSettings(auth_file=tmp_path / "none.json"))
    anon = TestClient(app)
    assert anon.get("/batch/jobs").status_code == 401
    assert anon.get("/health").status_code == 200
    assert not (tmp_path / "none.json").exists()


def test_insecure_no_auth_is_the_only_open_mode(tmp_projects: Path, tmp_path: Path):
    settings = AuthSettings(auth_file=tmp_path / "none.json", insecure_no_auth=True)
    anon = TestClient(create_app(str(tmp_projects), auth=settings))
    assert anon.get("/batch/jobs").status_code == 200


def test_cors_only_for_configured_origins(tmp_projects: Path, auth_settings: AuthSettings):
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    closed = TestClient(create_app(str(tmp_projects), auth=auth_settings))
    answer = closed.options("/batch/jobs", headers={"Origin": "http://localhost:3000", **preflight})
    assert "access-control-allow-origin" not in answer.headers
    settings = AuthSettings(
        auth_file=auth_settings.auth_file, cors_origins=("http://localhost:3000",)
    )
    open_ = TestClient(create_app(str(tmp_projects), auth=settings))
    allowed = open_.options("/batch/jobs", headers={"Origin": "http://localhost:3000", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    other = open_.options("/batch/jobs", headers={"Origin": "http://evil.example", **preflight})
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    simple = open_.get("/batch/jobs", headers={"Origin": "http://evil.example"})
    assert simple.status_code == 401 and "access-control-allow-origin" not in simple.headers


def test_cors_origins_from_the_environment_and_wildcard_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OMBUDSMAN_CORS_ORIGINS", "http://a.example:3000/, https://b.example")
    settings = AuthSettings.from_env(cors_origins=["http://c.example"])
    assert settings.cors_origins == (
        "http://c.example",
        "http://a.example:3000",
        "https://b.example",
    )
    monkeypatch.setenv("OMBUDSMAN_CORS_ORIGINS", "*")
    with pytest.raises(Exception, match="scheme://host"):
        AuthSettings.from_env()


def _with_probe_socket(app: FastAPI) -> FastAPI:
    @app.websocket("/probe/ws")
    async def probe(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"ok": True})
        await websocket.close()

    return app


def test_websockets_need_an_allowed_origin_or_a_token(
    tmp_projects: Path, auth_settings: AuthSettings, full_token: str
):
    settings = AuthSettings(
        auth_file=auth_settings.auth_file, cors_origins=("http://localhost:3000",)
    )
    app = _with_probe_socket(create_app(str(tmp_projects), auth=settings))
    anon = TestClient(app)
    paths = [r.path for r in route_table(app) if r.websocket]
    assert "/probe/ws" in paths
    for path in paths:
        concrete = path.replace("{project_id}", "demo")
        for headers in ({}, {"Origin": "http://evil.example"}):
            with pytest.raises(WebSocketDisconnect) as refused:
                with anon.websocket_connect(concrete, headers=headers) as ws:
                    ws.receive_json()
            assert refused.value.code == 1008, path
        with pytest.raises(WebSocketDisconnect):
            with anon.websocket_connect(f"{concrete}?token=omb_wrong") as ws:
                ws.receive_json()
    with anon.websocket_connect("/probe/ws", headers={"Origin": "http://localhost:3000"}) as ws:
        assert ws.receive_json() == {"ok": True}
    with anon.websocket_connect(f"/probe/ws?token={full_token}") as ws:
        assert ws.receive_json() == {"ok": True}
    accounts.add_user(auth_settings.auth_file, "wendy", "wendy-password")
    browser = TestClient(app)
    browser.post("/auth/login", json={"username": "wendy", "password": "wendy-password"})
    with browser.websocket_connect("/probe/ws", headers={"Origin": "http://testserver"}) as ws:
        assert ws.receive_json() == {"ok": True}  # same-origin page with the session cookie
    with pytest.raises(WebSocketDisconnect):
        with browser.websocket_connect("/probe/ws", headers={"Origin": "http://evil.example"}):
            pass


def test_loopback_rule():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("10.1.2.3")
    assert not is_loopback("no-such-host.invalid")


def test_auth_file_holds_only_hashes_and_is_private(auth_settings: AuthSettings):
    token = accounts.create_token(auth_settings.auth_file, "ci")
    accounts.add_user(auth_settings.auth_file, "carol", "carol-password")
    text = auth_settings.auth_file.read_text()
    assert token not in text and "carol-password" not in text
    assert auth_settings.auth_file.stat().st_mode & 0o777 == 0o600
    with pytest.raises(Exception, match="exists"):
        accounts.create_token(auth_settings.auth_file, "ci")
    with pytest.raises(Exception, match="at least 8"):
        accounts.add_user(auth_settings.auth_file, "dave", "short")


def test_cli_manages_tokens_and_users(tmp_path: Path):
    from typer.testing import CliRunner

    from prefect_ombudsman.cli import app

    runner, auth = CliRunner(), tmp_path / "home" / "auth.json"
    env = {"OMBUDSMAN_AUTH_FILE": str(auth)}
    made = runner.invoke(app, ["api", "token", "create", "--name", "ci", "--read-only"], env=env)
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("omb_") and token not in auth.read_text()
    listed = runner.invoke(app, ["api", "token", "list", "--json"], env=env)
    assert '"read_only": true' in listed.stdout and token not in listed.stdout
    added = runner.invoke(
        app,
        ["api", "user", "add", "Erin", "--role", "admin", "--password-stdin"],
        input="erin-password\n",
        env=env,
    )
    assert added.exit_code == 0, added.output
    assert accounts.check_login(accounts.read_auth(auth), "erin", "erin-password")
    bad_role = runner.invoke(
        app, ["api", "user", "add", "fay", "--role", "root"], input="fay-password\n", env=env
    )
    assert bad_role.exit_code == 2 and "role" in bad_role.output
    assert runner.invoke(app, ["api", "token", "revoke", "ci"], env=env).exit_code == 0
    gone = runner.invoke(app, ["api", "token", "revoke", "ci"], env=env)
    assert gone.exit_code == 2 and "no token named 'ci'" in gone.output
    assert runner.invoke(app, ["api", "user", "remove", "erin"], env=env).exit_code == 0


def test_cli_refuses_a_public_address_without_a_credential(tmp_path: Path):
    from typer.testing import CliRunner

    from prefect_ombudsman.cli import app

    env = {"OMBUDSMAN_AUTH_FILE": str(tmp_path / "empty.json")}
    answer = CliRunner().invoke(app, ["api", "--host", "0.0.0.0", "--port", "9"], env=env)
    assert answer.exit_code == 2
    assert "refusing to listen on 0.0.0.0" in answer.output
    assert "--insecure-no-auth" in answer.output
    bad_origin = CliRunner().invoke(app, ["api", "--cors-origin", "*"], env=env)
    assert bad_origin.exit_code == 2 and "CORS origin" in bad_origin.output


def test_login_cookie_signs_in_same_origin_calls_and_refuses_cross_origin_writes(
    api_app: FastAPI, auth_settings: AuthSettings
):
    accounts.add_user(auth_settings.auth_file, "gina", "gina-password", role="admin")
    browser = TestClient(api_app)  # keeps cookies, sends no Authorization header
    login = browser.post("/auth/login", json={"username": "gina", "password": "gina-password"})
    cookie = login.headers["set-cookie"]
    assert "ombudsman_session=" in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    assert browser.get("/batch/jobs").status_code == 200
    before = _flow_runs()
    evil = browser.post(
        "/batch/custom/execute",
        json={"job_name": "csrf", "items": []},
        headers={"Origin": "http://evil.example"},
    )
    assert evil.status_code == 403 and "same-origin" in evil.json()["detail"]
    assert _flow_runs() == before
    own = browser.post(
        "/batch/jobs/x/cancel", json={"reason": "r"}, headers={"Origin": "http://testserver"}
    )
    assert own.status_code == 404  # past authentication and the origin check
    token_cookie = TestClient(api_app, cookies={"ombudsman_session": "omb_" + "A" * 43})
    assert token_cookie.get("/batch/jobs").status_code == 401  # tokens never as cookies
    assert browser.post("/auth/logout").json()["success"] is True
    assert browser.get("/batch/jobs").status_code == 401


def test_an_endpoint_marked_for_readers_takes_their_writes(
    api_app: FastAPI, readonly_client: TestClient
):
    from prefect_ombudsman.jobs.auth import readers_may_call

    @api_app.put("/probe/active")
    @readers_may_call
    def set_active() -> dict[str, str]:
        return {"who": "reader"}

    @api_app.put("/probe/shared")
    def set_shared() -> dict[str, str]:
        return {"who": "writer"}

    assert readonly_client.put("/probe/active").json() == {"who": "reader"}
    assert readonly_client.put("/probe/shared").status_code == 403
    assert TestClient(api_app).put("/probe/active").status_code == 401
