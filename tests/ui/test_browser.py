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

from support import CHROMIUM, CHROMIUM_ARGS, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


# every URL but the site's own (127.0.0.1) is aborted
OFF_SITE = re.compile(r"^(?!http://127\.0\.0\.1:)")

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
    # A regex, not a Python callable: Playwright matches a regex in its driver, but a callable
    # makes it hold *every* request until this process answers, and this process only answers
    # inside a Playwright call (not while a test waits on the Prefect client): the form's
    # POST create_flow_run then sat unsent until the next Playwright call.
    context.route(OFF_SITE, lambda route: route.abort())
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


def _artifact_links(page: Any) -> dict[str, str]:
    """The run page's Artifacts tab: artifact key -> detail page href."""
    page.locator("[role=tab], li.p-tab").filter(has_text=re.compile(r"^Artifacts$")).first.click()
    cards = page.locator('a[href*="/artifacts/artifact/"]')
    cards.first.wait_for()
    return {a.inner_text().split()[1]: a.get_attribute("href") for a in cards.all()}


def test_submit_a_job_from_the_run_form(prefect_site: dict[str, Any], page: Any, shots: Path):
    base = prefect_site["base"]
    deployment_id = _deployment_id(prefect_site, "custom-batch/custom-batch")
    page.goto(f"{base}/deployments/deployment/{deployment_id}/run")
    _body_has(page, "Shown in the jobs list, the run page and notifications.")
    page.locator("textarea").first.fill("Submitted from the browser")
    operations = 6
    for _ in range(operations):
        page.get_by_role("button", name=re.compile("Add item")).first.click()
    # text boxes: the job name, then each item's Operation; the Arguments code editors keep
    # textareas of their own, recognised by their ancestors' classes
    boxes = page.locator("textarea")
    chains = boxes.evaluate_all(
        """els => els.map(e => {
            const names = [];
            for (let n = e; n; n = n.parentElement) names.push(String(n.className || ''));
            return names.join(' ');
        })"""
    )
    fields = [i for i, chain in enumerate(chains) if not re.search(r"code|json|monaco|cm-", chain)]
    assert len(fields) == 1 + operations, chains
    for i in fields[1:]:
        boxes.nth(i).fill("sleep")  # default 1 s each, one after another: no JSON typed
    page.screenshot(path=str(shots / "submit-form-filled.png"), animations="disabled")
    submit = page.get_by_role("button", name=re.compile(r"^\s*Submit\s*$"))
    with page.expect_response(
        lambda r: r.request.method == "POST" and r.url.endswith("/create_flow_run")
    ) as created:
        submit.click()
    assert created.value.status == 201, created.value.text()
    run_id = created.value.json()["id"]
    # then the UI goes back to the deployment's page (its toast links to the new run)
    page.wait_for_url(re.compile(rf"/deployments/deployment/{deployment_id}$"))
    page.screenshot(path=str(shots / "submit-after.png"), animations="disabled")
    run = _run_named(prefect_site, "Submitted from the browser")
    assert run is not None and str(run.id) == run_id
    _watch_run_page(
        prefect_site, page, shots, "Submitted from the browser", operations, "submitted"
    )


def _run_named(site: dict[str, Any], job_name: str) -> Any:
    with site_client(site) as client:
        runs = client.read_flow_runs()
    return next((r for r in runs if (r.parameters or {}).get("job_name") == job_name), None)


def test_run_page_shows_progress_and_summary(prefect_site: dict[str, Any], page: Any, shots: Path):
    operations = 6
    with site_client(prefect_site) as client:
        deployment = client.read_deployment_by_name("custom-batch/custom-batch")
        client.create_flow_run_from_deployment(
            deployment.id,
            parameters={
                "job_name": "Watched in the browser",
                "items": [{"operation": "sleep"}] * operations,
            },
        )
    _watch_run_page(prefect_site, page, shots, "Watched in the browser", operations, "watched")


def _watch_run_page(
    prefect_site: dict[str, Any],
    page: Any,
    shots: Path,
    job_name: str,
    operations: int,
    prefix: str,
) -> None:
    """While the job runs, its progress card; at the end, Completed, the summary and the table."""
    base = prefect_site["base"]

    def submitted() -> Any:
        return _run_named(prefect_site, job_name)

    run = submitted()
    assert [i["operation"] for i in run.parameters["items"]] == ["sleep"] * operations
    assert wait_until(
        lambda: submitted().state.is_running() or submitted().state.is_final(),
        timeout=600,
        interval=0.3,
    ), (prefect_site["logs"] / "worker.log").read_text()[-3000:]

    # while it runs: the progress card a person reads
    def card_text() -> str:
        page.goto(f"{base}/runs/flow-run/{run.id}")
        links = _artifact_links(page)
        if "ombudsman-custom-progress" not in links:
            return ""
        page.goto(base + links["ombudsman-custom-progress"])
        page.get_by_text("operations finished").first.wait_for()
        return page.locator("body").inner_text()

    assert wait_until(lambda: "operations finished" in card_text(), timeout=300, interval=1)
    text = page.locator("body").inner_text()
    page.screenshot(path=str(shots / f"{prefix}-run-progress-card.png"), animations="disabled")
    assert job_name in text and f"of {operations}" in text
    assert "Running now:" in text or "completed" in text

    assert wait_until(lambda: submitted().state.is_final(), timeout=600, interval=0.5)
    assert submitted().state.is_completed()
    page.goto(f"{base}/runs/flow-run/{run.id}")
    _body_has(page, "Completed")
    links = _artifact_links(page)
    page.screenshot(path=str(shots / f"{prefix}-run-artifacts.png"), animations="disabled")
    assert {
        "ombudsman-custom-progress",
        "ombudsman-custom-operations",
        "ombudsman-custom-summary",
    } <= set(links)
    page.goto(base + links["ombudsman-custom-summary"])
    _body_has(page, f"{operations} completed, 0 failed, 0 skipped of {operations} operations")
    page.screenshot(path=str(shots / f"{prefix}-run-summary.png"), animations="disabled")
    page.goto(base + links["ombudsman-custom-progress"])
    _body_has(page, f"{operations} of {operations}")
    _body_has(page, "Report:")
    page.screenshot(
        path=str(shots / f"{prefix}-run-progress-card-final.png"), animations="disabled"
    )
    page.goto(base + links["ombudsman-custom-operations"])
    from playwright.sync_api import expect

    expect(page.locator("table tbody tr")).to_have_count(operations)
    page.screenshot(path=str(shots / f"{prefix}-run-operations-table.png"), animations="disabled")
