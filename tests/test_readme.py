"""Every `ombudsman ...` example of README.md runs as written, in a temp folder with its own
projects root, against one Prefect API (the commands exit as the README says)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OMBUDSMAN = [sys.executable, "-m", "prefect_ombudsman.cli"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800), pytest.mark.usefixtures("prefect_api")]

# README line (without its comment) -> the exit code it must end with, in README order.
# 1: the demo warehouse has differences planted on purpose, so validating/comparing it "fails".
EXPECTED = {
    "ombudsman demo": 0,
    "ombudsman run generate --schema Retail --rows 100000 --seed 42 --target sqlite:///src.db --target duckdb:///tgt.duckdb": 0,
    "ombudsman run pipelines --project demo --parallel --max-parallel 4": 1,
    "ombudsman run projects --project demo --project demo:retail_facts": 1,
    "ombudsman run metadata --project demo --exact-counts": 0,
    "ombudsman run compare --project demo --table fact_sales=fact.fact_sales": 1,
    "ombudsman run compare --source-url sqlite:///src.db --target-url duckdb:///tgt.duckdb --table dim_customer=dim.dim_customer": 0,
    'ombudsman run custom sql_query --args \'{"connection": "source", "query": "SELECT count(*) FROM fact_sales"}\' --project demo --repeat 4 --parallel --max-parallel 4': 0,
    "ombudsman jobs list | show ID | progress ID | operations ID | cancel ID | retry ID | delete ID | stats | report ID": 0,
    "ombudsman operations": 0,
    "ombudsman setup --work-pool ombudsman-process --notify-block slack-webhook/ops": 0,
    # long-running servers: tests/deployments/test_serve.py and tests/jobs/ run them
    "ombudsman serve": None,
    # the shared local server: tests/test_local_server.py starts, reads and stops it
    "ombudsman server status | start | stop": None,
    "ombudsman setup --work-pool ombudsman-process": 0,  # Prefect deployments section
}


def readme_commands() -> list[str]:
    """The `ombudsman ...` lines of README.md's bash blocks, comments cut."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if line.startswith("ombudsman "):
                lines.append(re.sub(r"\s+#.*$", "", line).strip())
    return lines


def test_the_readme_lists_exactly_the_tested_commands():
    commands = [c for c in readme_commands() if not c.startswith("ombudsman api")]
    assert commands == list(EXPECTED)


def test_every_readme_command_runs_as_documented(tmp_path: Path):
    from prefect.blocks.notifications import SlackWebhook
    from prefect.settings import PREFECT_API_URL

    SlackWebhook(url="https://hooks.slack.invalid/services/T/B/x").save("ops", overwrite=True)
    env = dict(
        os.environ,
        PREFECT_API_URL=PREFECT_API_URL.value(),
        OMBUDSMAN_PROJECTS_DIR=str(tmp_path / "projects"),
        COLUMNS="200",
    )

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*OMBUDSMAN, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )

    job_id = None
    for command, code in EXPECTED.items():
        if code is None:
            continue
        if command.startswith("ombudsman jobs list |"):
            listed = run(["jobs", "list", "--json"])
            assert listed.returncode == 0, listed.stdout + listed.stderr
            job_id = re.search(r'"job_id": "([0-9a-f-]{36})"', listed.stdout).group(1)
            for sub in ("show", "progress", "operations", "report"):
                done = run(["jobs", sub, job_id])
                assert done.returncode == 0, (sub, done.stdout + done.stderr)
            assert run(["jobs", "stats"]).returncode == 0
            continue
        done = run(shlex.split(command)[1:])
        assert done.returncode == code, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert job_id
