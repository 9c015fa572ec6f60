"""Hostile files and options: each refused with the file or field named, nothing written.

Table-driven: every case returns (exit code or HTTP status, message). A refused case (exit 2 /
422) must leave the projects root exactly as it was. A bad pipeline file inside a job fails only
its own operation: the other pipelines still run and the job's report is written.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from prefect_ombudsman.cli import app
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.validation.loader import load_pipeline, parse_pipeline
from prefect_ombudsman.validation.spec import Tolerance
from prefect_ombudsman.validation.validators.timeseries import RollingDriftConfig
from prefect_ombudsman.yamlfiles import MAX_YAML_BYTES

# "Billion laughs": 9 levels of 9 aliases (about 400 bytes), 10^9 strings once expanded.
ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{b}: &{b} [{','.join(['*' + a] * 9)}]\n"
        for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "steps: [{name: x, validator: record_counts}]\n"
)
NOT_UTF8 = b"name: caf\xe9\nsource: sqlite:///s.db\n"
GOOD_PIPELINE = "steps:\n  - {name: counts, validator: record_counts, config: {table: t}}\n"


@dataclass
class World:
    root: Path
    runner: CliRunner
    client: TestClient

    def project(self, name: str = "p", yaml: str | bytes | None = None) -> Path:
        folder = self.root / name
        (folder / "pipelines").mkdir(parents=True, exist_ok=True)
        text = (
            yaml
            if yaml is not None
            else "name: P\nsource: sqlite:///s.db\ntarget: sqlite:///t.db\n"
        )
        target = folder / "project.yaml"
        target.write_bytes(text if isinstance(text, bytes) else text.encode())
        for db in ("s.db", "t.db"):
            with sqlite3.connect(folder / db) as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)")
                conn.execute("INSERT OR IGNORE INTO t VALUES (1), (2)")
        return folder

    def pipeline(self, name: str, body: str | bytes, project: str = "p") -> Path:
        path = self.root / project / "pipelines" / f"{name}.yaml"
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
        return path

    def cli(self, *args: str) -> tuple[int, str]:
        result = self.runner.invoke(app, [*args, "--projects-dir", str(self.root)])
        return result.exit_code, result.output

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, str]:
        reply = self.client.post(path, json={"job_name": "hostile", **body})
        return reply.status_code, reply.text


def _refusal(call: Callable[[], Any]) -> tuple[int, str]:
    """Engine-level refusal: 2 and the message when `call` raises a refusal, 0 when it accepts."""
    try:
        call()
    except (ConfigurationError, ValueError) as exc:
        return 2, str(exc)
    return 0, "accepted"


def _pipeline_text(step: str) -> Callable[[World], tuple[int, str]]:
    return lambda w: _refusal(
        lambda: parse_pipeline("steps:\n" + step, pipeline_id="p", file="p.yaml")
    )


def _cli_with_file(
    name: str, content: str | bytes, *args: str
) -> Callable[[World], tuple[int, str]]:
    """Write `content` to `<root>/<name>`, then run the CLI with the file's path as the last argument."""

    def run(w: World) -> tuple[int, str]:
        path = w.root / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return w.cli(*args, str(path))

    return run


def _big_arguments(n: int, size: int) -> list[dict[str, Any]]:
    return [{"operation": "noop", "arguments": {"blob": "x" * size}} for _ in range(n)]


CASES: dict[str, tuple[Callable[[World], tuple[int, str]], int, tuple[str, ...]]] = {
    # --- YAML bounds: one loader for every file
    "pipeline alias bomb": (
        lambda w: _refusal(lambda: load_pipeline(w.pipeline("bomb", ALIAS_BOMB))),
        2,
        ("bomb.yaml", "aliases", "100,000 nodes"),
    ),
    "recursive alias": (
        lambda w: _refusal(lambda: load_pipeline(w.pipeline("loop", "a: &a [*a]\n"))),
        2,
        ("loop.yaml", "recursive"),
    ),
    "project.yaml alias bomb (CLI)": (
        lambda w: (w.project("bomb", ALIAS_BOMB), w.cli("run", "pipelines", "--project", "bomb"))[
            1
        ],
        2,
        ("project.yaml", "aliases"),
    ),
    "pipeline over 1 MiB": (
        lambda w: _refusal(
            lambda: load_pipeline(w.pipeline("huge", "# " + "x" * MAX_YAML_BYTES + "\n"))
        ),
        2,
        ("huge.yaml", "1 MiB"),
    ),
    "project.yaml over 1 MiB (CLI)": (
        lambda w: (
            w.project("huge", "name: x\n# " + "x" * MAX_YAML_BYTES),
            w.cli("run", "pipelines", "--project", "huge"),
        )[1],
        2,
        ("project.yaml", "1 MiB"),
    ),
    "non-UTF-8 project.yaml (CLI)": (
        lambda w: (w.project("latin1", NOT_UTF8), w.cli("run", "pipelines", "--project", "latin1"))[
            1
        ],
        2,
        ("project.yaml", "not UTF-8", "offset"),
    ),
    "non-UTF-8 project.json (CLI)": (
        lambda w: (
            w.project("studio"),
            (w.root / "studio" / "project.json").write_bytes(b'{"name": "caf\xe9"}'),
            w.cli("run", "pipelines", "--project", "studio"),
        )[2],
        2,
        ("project.json", "not UTF-8"),
    ),
    "non-UTF-8 metadata/mapping.json (CLI run compare)": (
        lambda w: (
            (w.root / "p" / "metadata").mkdir(),
            (w.root / "p" / "metadata" / "mapping.json").write_bytes(b'{"tables": "caf\xe9"}'),
            w.cli("run", "compare", "--project", "p"),
        )[2],
        1,  # the job starts and fails at once: its plan cannot be read
        ("mapping.json", "can't decode byte 0xe9"),
    ),
    "drift file alias bomb (CLI)": (
        _cli_with_file("drift.yaml", ALIAS_BOMB, "run", "generate", "-s", "Retail", "--drift"),
        2,
        ("--drift", "drift.yaml", "aliases"),
    ),
    "non-UTF-8 drift file (CLI)": (
        _cli_with_file("drift.yaml", NOT_UTF8, "run", "generate", "-s", "Retail", "--drift"),
        2,
        ("--drift", "drift.yaml", "not UTF-8"),
    ),
    "non-UTF-8 --items file (CLI)": (
        _cli_with_file("items.json", b'[{"operation": "caf\xe9"}]', "run", "custom", "--items"),
        2,
        ("--items", "items.json", "not UTF-8"),
    ),
    # --- depends_on
    "depends_on itself": (
        _pipeline_text("  - {name: a, validator: record_counts, depends_on: a}\n"),
        2,
        ("p.yaml", "steps.0.depends_on", "step 'a'", "itself"),
    ),
    "depends_on cycle": (
        _pipeline_text(
            "  - {name: a, validator: record_counts, depends_on: [c]}\n"
            "  - {name: b, validator: record_counts, depends_on: [a]}\n"
            "  - {name: c, validator: record_counts, depends_on: [b]}\n"
        ),
        2,
        ("depends_on", "cycle", "a -> c -> b -> a"),
    ),
    # --- tolerances and windows
    "tolerance .inf": (
        _pipeline_text("  - {name: a, validator: record_counts, tolerance: .inf}\n"),
        2,
        ("steps.0.tolerance.absolute", "finite"),
    ),
    "tolerance 1e308": (
        _pipeline_text("  - {name: a, validator: record_counts, tolerance: 1e308}\n"),
        2,
        ("steps.0.tolerance.absolute", "less than or equal"),
    ),
    "tolerance NaN": (
        _pipeline_text("  - {name: a, validator: record_counts, tolerance: .nan}\n"),
        2,
        ("steps.0.tolerance.absolute", "finite"),
    ),
    "tolerance negative": (
        _pipeline_text("  - {name: a, validator: record_counts, tolerance: -0.5}\n"),
        2,
        ("steps.0.tolerance.absolute", "greater than or equal"),
    ),
    "tolerance 250%": (
        _pipeline_text("  - {name: a, validator: record_counts, tolerance: '250%'}\n"),
        2,
        ("steps.0.tolerance.relative",),
    ),
    "config tolerance -inf": (
        lambda w: _refusal(lambda: Tolerance.model_validate({"abs": float("-inf")})),
        2,
        ("absolute", "finite"),
    ),
    "windows [-7, 0]": (
        lambda w: _refusal(lambda: RollingDriftConfig.model_validate({"windows": [-7, 0]})),
        2,
        ("windows.0", "windows.1", "greater than or equal to 1"),
    ),
    "windows []": (
        lambda w: _refusal(lambda: RollingDriftConfig.model_validate({"windows": []})),
        2,
        ("windows", "at least 1"),
    ),
    "windows [1e9]": (
        lambda w: _refusal(lambda: RollingDriftConfig.model_validate({"windows": [10**9]})),
        2,
        ("windows.0", "less than or equal to 3660"),
    ),
    "windows [inf]": (
        lambda w: _refusal(lambda: RollingDriftConfig.model_validate({"windows": [float("inf")]})),
        2,
        ("windows.0",),
    ),
    # --- CLI numbers
    "run custom --repeat 20000": (
        lambda w: w.cli("run", "custom", "noop", "--repeat", "20000"),
        2,
        ("--repeat", "20000", "1-1000"),
    ),
    "run custom --repeat 0": (
        lambda w: w.cli("run", "custom", "noop", "--repeat", "0"),
        2,
        ("--repeat",),
    ),
    "run custom --max-parallel 0": (
        lambda w: w.cli("run", "custom", "noop", "--max-parallel", "0"),
        2,
        ("max_parallel",),
    ),
    "run compare --sample-size 100000": (
        lambda w: w.cli("run", "compare", "--table", "t", "--sample-size", "100000"),
        2,
        ("sample_size",),
    ),
    "run generate --rows 0": (
        lambda w: w.cli("run", "generate", "-s", "Retail", "--rows", "0"),
        2,
        ("row_count",),
    ),
    "run generate --table-rows 10^12": (
        lambda w: w.cli("run", "generate", "-s", "Retail", "--table-rows", f"dim_store={10**12}"),
        2,
        ("tables", "dim_store"),
    ),
    "serve --limit 0": (
        lambda w: (lambda r: (r.exit_code, r.output))(
            w.runner.invoke(app, ["serve", "--limit", "0"])
        ),
        2,
        ("--limit",),
    ),
    # --- Prefect's 512 KiB parameter limit, refused before any flow run exists
    "CLI parameters over 512 KiB": (
        _cli_with_file(
            "big.json", json.dumps(_big_arguments(10, 60_000)), "run", "custom", "--items"
        ),
        2,
        ("items", "524,288", "512 KiB", "PREFECT_SERVER_API_MAX_PARAMETER_SIZE"),
    ),
    "REST parameters over 512 KiB": (
        lambda w: w.post("/batch/custom/execute", {"items": _big_arguments(10, 60_000)}),
        422,
        ("items", "524,288", "512 KiB"),
    ),
    "REST 20,000 items": (
        lambda w: w.post("/batch/custom/execute", {"items": [{"operation": "noop"}] * 20_000}),
        422,
        ("items",),
    ),
}


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_refused_naming_it(
    case: str, tmp_projects: Path, client: TestClient, capsys: pytest.CaptureFixture[str]
):
    action, expected, fragments = CASES[case]
    world = World(tmp_projects, CliRunner(), client)
    world.project()
    before: dict[str, tuple[int, int]] | None = None

    # snapshot after the case's own files are in place: wrap writes done by the action
    original_cli, original_post = world.cli, world.post

    def snap_then(call: Callable[..., tuple[int, str]]) -> Callable[..., tuple[int, str]]:
        def run(*args: Any) -> tuple[int, str]:
            nonlocal before
            before = _snapshot(tmp_projects)
            return call(*args)

        return run

    world.cli, world.post = snap_then(original_cli), snap_then(original_post)  # type: ignore[method-assign]
    outcome = action(world)
    code, message = outcome if isinstance(outcome, tuple) else (outcome, "")
    compact = "".join(message.split())  # the CLI's console wraps long lines, even inside paths
    assert code == expected, message
    for fragment in fragments:
        assert "".join(fragment.split()) in compact, (fragment, message)
    assert "Traceback" not in message
    if before is not None:
        assert _snapshot(tmp_projects) == before, "a refused request wrote files"
    print(f"{case}: {code} {' '.join(message.split())[:160]}")


def test_hostile_case_count():
    assert len(CASES) >= 20


@pytest.mark.usefixtures("prefect_api")
def test_bad_pipeline_files_fail_only_their_own_operation(tmp_projects: Path):
    """A non-UTF-8 pipeline and an alias bomb in one job: the good pipeline still runs, the report is written."""
    world = World(tmp_projects, CliRunner(), None)  # type: ignore[arg-type]
    world.project()
    world.pipeline("good", GOOD_PIPELINE)
    world.pipeline("latin1", b"steps:\n  - {name: caf\xe9, validator: record_counts}\n")
    world.pipeline("bomb", ALIAS_BOMB)
    code, output = world.cli("run", "pipelines", "--project", "p", "--json")
    assert code == 1, output
    summary = json.loads(output[output.index("{") :])
    ops = {op["operation_id"].split("_", 2)[2]: op for op in summary["operations"]}
    assert ops["good"]["status"] == "completed"
    assert ops["latin1"]["status"] == "failed" and "latin1.yaml" in ops["latin1"]["error"]
    assert "not UTF-8" in ops["latin1"]["error"]
    assert ops["bomb"]["status"] == "failed" and "bomb.yaml" in ops["bomb"]["error"]
    assert "aliases" in ops["bomb"]["error"]
    assert summary["status"] == "partial_success"
    assert Path(summary["report_path"]).is_file()
    report = json.loads(Path(summary["report_path"]).read_text())
    assert {op["status"] for op in report["operations"]} == {"completed", "failed"}
