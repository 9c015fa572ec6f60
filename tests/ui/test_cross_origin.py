"""Our API from a page on another origin in headless chromium: CORS lets the configured origin
create a job with its token and its WebSocket receives the job's `job_update` messages live;
a page on any other origin can neither call the API nor open the socket."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from prefect_ombudsman.jobs.accounts import create_token
from prefect_ombudsman.jobs.api import create_app
from prefect_ombudsman.jobs.auth import AuthSettings
from support import CHROMIUM, CHROMIUM_ARGS, free_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.usefixtures("prefect_api")]

PAGE = """<!doctype html><html><body><script>
const API = "%(api)s";
window.messages = []; window.socket = "opening";
const ws = new WebSocket(API.replace("http", "ws") + "/batch/ws");
ws.onopen = () => { window.socket = "open"; };
ws.onclose = (e) => { window.socket = "closed:" + e.code; };
ws.onmessage = (e) => { window.messages.push(JSON.parse(e.data)); };
window.create = async (body, token) => {
  try {
    const r = await fetch(API + "/batch/custom/execute", {method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token},
      body: JSON.stringify(body)});
    return {status: r.status, body: await r.json()};
  } catch (e) { return {error: String(e)}; }
};
</script></body></html>"""


def _serve_page(port: int, html: str) -> http.server.HTTPServer:
    body = html.encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def api(tmp_projects: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    allowed_port, other_port = free_port(), free_port()
    allowed = f"http://127.0.0.1:{allowed_port}"
    settings = AuthSettings(auth_file=tmp_path / "auth.json", cors_origins=(allowed,))
    token = create_token(settings.auth_file, "browser")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(str(tmp_projects), auth=settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started, timeout=120)
    base = f"http://127.0.0.1:{port}"
    pages = [_serve_page(p, PAGE % {"api": base}) for p in (allowed_port, other_port)]
    other = f"http://127.0.0.1:{other_port}"
    yield {"base": base, "token": token, "allowed": allowed, "other": other}
    for page_server in pages:
        page_server.shutdown()
    server.should_exit = True
    thread.join(timeout=60)


@pytest.fixture
def tab() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def _messages_for(tab: Any, job_id: str) -> list[dict[str, Any]]:
    messages = tab.evaluate("window.messages")
    return [m["data"] for m in messages if m.get("data", {}).get("job_id") == job_id]


def test_allowed_origin_creates_a_job_and_watches_it_over_the_websocket(
    api: dict[str, Any], tab: Any
):
    tab.goto(api["allowed"])
    assert wait_until(lambda: tab.evaluate("window.socket") != "opening", timeout=60)
    assert tab.evaluate("window.socket") == "open"
    body = {
        "job_name": "cross-origin",
        "items": [{"operation": "sleep", "arguments": {"seconds": 1}}] * 3,
    }
    created = tab.evaluate("([b, t]) => window.create(b, t)", [body, api["token"]])
    assert created.get("status") == 200, created
    job_id = created["body"]["job_id"]
    assert wait_until(
        lambda: any(m["status"] == "completed" for m in _messages_for(tab, job_id)),
        timeout=300,
        interval=0.5,
    ), tab.evaluate("window.messages")
    seen = _messages_for(tab, job_id)
    statuses = [m["status"] for m in seen]
    # the page saw the job before it ended (running or pending), then its end with full progress
    assert statuses.index("completed") > 0 and statuses[0] in ("pending", "queued", "running")
    final = next(m for m in seen if m["status"] == "completed")
    assert final["name"] == "cross-origin" and final["progress"]["completed_operations"] == 3
    assert final["progress"]["percent_complete"] == 100.0


def test_other_origin_can_neither_call_nor_subscribe(api: dict[str, Any], tab: Any):
    tab.goto(api["other"])
    assert wait_until(lambda: tab.evaluate("window.socket") != "opening", timeout=60)
    assert tab.evaluate("window.socket").startswith("closed:")
    refused = tab.evaluate(
        "([b, t]) => window.create(b, t)", [{"job_name": "not allowed", "items": []}, api["token"]]
    )
    assert "error" in refused and "fetch" in refused["error"].lower(), refused
