"""Project templates: shipped files match the catalog, and their pipelines pass on clean data and catch drift."""

from __future__ import annotations

import pytest
import yaml

from prefect_ombudsman.connections import engine_for
from prefect_ombudsman.datagen import (
    Target,
    build_plan,
    generate_warehouse,
    parse_drift,
    schema_types,
)
from prefect_ombudsman.datagen.project_template import (
    install_template,
    template_dir,
    template_files,
)
from prefect_ombudsman.projects import load_project
from prefect_ombudsman.validation.loader import load_pipeline
from prefect_ombudsman.validation.pipeline_run import run_pipeline
from prefect_ombudsman.validation.registry import available_validators
from prefect_ombudsman.validation.tables import Side


@pytest.mark.parametrize("schema_type", ["Retail", "Finance", "Healthcare"])
def test_shipped_templates_are_the_catalog_rendered(schema_type: str):
    shipped = template_dir(schema_type)
    for relative, text in template_files(schema_type).items():
        assert (shipped / relative).read_text(encoding="utf-8") == text, (
            f"{relative} is stale: run python -m prefect_ombudsman.datagen.project_template"
        )
    names = {entry.name for entry in (shipped / "pipelines").iterdir()}
    assert names == {
        f"{schema_type.lower()}_{kind}.yaml" for kind in ("quality", "dimensions", "facts")
    }


def test_pipelines_use_registered_validators_and_cover_every_table():
    known = set(available_validators())
    for schema_type in schema_types():
        covered = set()
        for relative, text in template_files(schema_type).items():
            if relative.startswith("pipelines/"):
                document = yaml.safe_load(text)
                assert {step["validator"] for step in document["steps"]} <= known
                covered |= {
                    step["config"].get("table") or step["config"].get("dim")
                    for step in document["steps"]
                }
        assert covered == set(build_plan(schema_type, 10, 1).sizes)


def _run_all(folder, project_id, root):
    project = load_project(project_id, root)
    source, target = engine_for("source", project=project), engine_for("target", project=project)
    results = {}
    for path in sorted((folder / "pipelines").glob("*.yaml")):
        results[path.stem] = run_pipeline(
            load_pipeline(path), Side("source", source), Side("target", target)
        )
    return source, target, results


@pytest.mark.parametrize("schema_type", ["Retail", "Finance", "Healthcare"])
def test_installed_project_passes_its_pipelines_on_clean_data(schema_type: str, tmp_path):
    folder = tmp_path / "proj"
    written = install_template(schema_type, folder)
    assert folder / "project.yaml" in written and len(written) == 4
    project = load_project("proj", tmp_path)
    targets = [
        Target("source", engine_for("source", project=project)),
        Target("target", engine_for("target", project=project)),
    ]
    generate_warehouse(build_plan(schema_type, 3000, 42), targets)
    _, target, results = _run_all(folder, "proj", tmp_path)
    target.dispose()
    for name, result in results.items():
        problems = [
            (s["name"], s["status"], s.get("message"))
            for s in result["steps"]
            if s["status"] != "PASS"
        ]
        assert result["status"] == "passed", (name, problems)


def test_retail_pipelines_find_the_planted_drift(tmp_path):
    folder = tmp_path / "shop"
    install_template("Retail", folder)
    project = load_project("shop", tmp_path)
    targets = [
        Target("source", engine_for("source", project=project)),
        Target("target", engine_for("target", project=project)),
    ]
    drift = parse_drift(
        {
            "tables": {
                "fact_sales": {
                    "missing_rows": 4,
                    "extra_rows": 2,
                    "changed_values": {"count": 3, "columns": ["quantity"]},
                }
            }
        }
    )
    result = generate_warehouse(build_plan("Retail", 3000, 42), targets, drift=drift)
    expected = result["drift"]["manifest"]["expected"]["fact_sales"]
    _, target, results = _run_all(folder, "shop", tmp_path)
    target.dispose()
    steps = {s["name"]: s for r in results.values() for s in r["steps"]}
    rows = steps["fact_sales_rows"]["details"]
    assert steps["fact_sales_rows"]["status"] == "FAIL"
    assert (rows["missing_in_target"], rows["extra_in_target"], rows["changed"]) == (4, 2, 3)
    assert sorted(rows["samples"]["missing_in_target"]) == expected["missing_in_target"]
    assert sorted(rows["samples"]["extra_in_target"]) == expected["extra_in_target"]
    assert steps["fact_sales_row_count"]["status"] == "FAIL"
    untouched = [s for s in steps.values() if s["table"] and "fact_sales" not in s["table"]]
    assert untouched and all(s["status"] == "PASS" for s in untouched)
