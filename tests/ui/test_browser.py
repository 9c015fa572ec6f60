"""The Prefect UI in headless Debian chromium: run forms, a run submitted from its form, the run page.

Screenshots go to $OMBUDSMAN_UI_ARTIFACTS (else a temp folder; its path is printed).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect_site import artifacts_folder, site_client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # nothing but 127.0.0.1 is reachable (the UI bundle would call out otherwise)
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]

# deployment -> (list parameter, its description, an item field title, that field's description)
FORMS = {
    "bulk-pipeline-execution/bulk-pipeline-execution": (
        "pipelines",
        "The pipelines to run, one operation each.",
        "Pipeline",
        "File name in the project's pipelines/ folder",
    ),
    "batch-data-generation/batch-data-generation": (
        "items",
        "The warehouses to generate, one operation each.",
        "Schema",
        "Star schema to generate: Retail, Finance or Healthcare.",
    ),
    "multi-project-validation/multi-project-validation": (
        "projects",
        "The projects to validate, one operation each.",
        "Project",
        "Project folder under the projects root.",
    ),
    "bulk-metadata-extraction/bulk-metadata-extraction": (
        "items",
        "The databases to catalog, one operation each.",
        "Connection",
        "The database to catalog",
    ),
    "batch-comparison/batch-comparison": (
        "items",
        "The table pairs to compare, one operation each.",
        "Key columns",
        "Columns that identify a row; empty: the primary key.",
    ),
    "custom-batch/custom-batch": (
        "items",
        "The operations to call, one operation each.",
        "Operation",
        "A registered operation name",
    ),
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = artifacts_folder()
    print(f"\nbrowser screenshots: {folder}")
    return folder


@pytest.fixture
def page(browser: Any, prefect_site: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.route(lambda url: not url.startswith("http://127.0.0.1:"), lambda route: route.abort())
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    yield tab
    context.close()


def _deployment_id(site: dict[str, Any], name: str) -> str:
    with site_client(site) as client:
        return str(client.read_deployment_by_name(name).id)


def _body_has(page: Any, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("body")).to_contain_text(text)


@pytest.mark.parametrize("deployment", list(FORMS))
def test_run_form_has_labels_descriptions_and_typed_items(
    prefect_site: dict[str, Any], page: Any, shots: Path, deployment: str
):
    list_name, list_description, item_title, item_description = FORMS[deployment]
    page.goto(
        f"{prefect_site['base']}/deployments/deployment/{_deployment_id(prefect_site, deployment)}/run"
    )
    _body_has(page, "Shown in the jobs list, the run page and notifications.")  # job_name
    _body_has(page, list_description)
    _body_has(page, "Operations in flight at once when running in parallel (1-64).")
    # the list is a list of typed items: adding one opens the item's own form, not a JSON box
    page.get_by_role("button", name=re.compile("Add item")).first.click()
    _body_has(page, item_title)
    _body_has(page, item_description)
    slug = deployment.split("/")[0]
    page.screenshot(path=str(shots / f"form-{slug}.png"), full_page=True, animations="disabled")
