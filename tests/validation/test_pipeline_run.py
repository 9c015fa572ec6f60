"""The pipeline runner: DAG order and skips, errors as ERROR steps (never a crash, never injected SQL), result files."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import warehouse
from sqlalchemy import func, select, text

from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
from prefect_ombudsman.errors import OperationCancelled
from prefect_ombudsman.validation import Side, parse_pipeline, register_validator, run_pipeline
from prefect_ombudsman.validation.configs import StepConfig
from prefect_ombudsman.validation.context import passed
from prefect_ombudsman.validation.loader import PipelineError
from prefect_ombudsman.validation.pipeline_run import new_run_id
from support import wait_until


@pytest.fixture
def sides(tmp_path: Path):
    src = get_engine(spec_from_url(f"sqlite:///{tmp_path / 's.db'}"))
    tgt = get_engine(spec_from_url(f"duckdb:///{tmp_path / 't.duckdb'}"))
    warehouse.build(src)
    warehouse.build(tgt, drift={"missing_sales": 1})
    return Side("source", src), Side("target", tgt)


def run(text_: str, sides, **kwargs):
    return run_pipeline(parse_pipeline(text_, pipeline_id="p"), *sides, **kwargs)


def by_name(result):
    return {s["step_id"]: s for s in result["steps"]}


def test_dependents_run_after_and_are_skipped_when_a_dependency_fails(sides):
    result = run(
        """
steps:
  - {name: counts, validator: record_counts, config: {table: fact_sales}}
  - {name: sums, validator: metric_sums, depends_on: counts, config: {table: fact_sales, metric_cols: [amount]}}
  - {name: customers, validator: record_counts, config: {table: dim_customer}}
  - {name: customer_nulls, validator: nulls, depends_on: [customers], config: {table: dim_customer}}
  - {name: disabled_step, validator: nulls, enabled: false, config: {table: dim_customer}}
  - {name: after_off, validator: nulls, depends_on: disabled_step, config: {table: dim_customer}}
""",
        sides,
    )
    steps = by_name(result)
    assert steps["counts"]["status"] == "FAIL" and steps["counts"]["severity"] == "HIGH"
    assert steps["sums"]["status"] == "SKIPPED" and "counts FAIL" in steps["sums"]["message"]
    assert steps["customers"]["status"] == "PASS" and steps["customer_nulls"]["status"] == "PASS"
    assert (
        steps["disabled_step"]["status"] == "SKIPPED" and steps["after_off"]["status"] == "SKIPPED"
    )
    assert result["status"] == "failed"
    assert result["summary"] == {"total": 6, "passed": 2, "failed": 1, "errors": 0, "skipped": 3}


def test_self_and_cyclic_dependencies_are_refused_when_the_pipeline_loads():
    for body, named in (
        ("  - {name: a, validator: record_counts, depends_on: a}\n", "step 'a'"),
        (
            "  - {name: a, validator: record_counts, depends_on: b}\n"
            "  - {name: b, validator: record_counts, depends_on: a}\n",
            "a -> b -> a",
        ),
    ):
        with pytest.raises(PipelineError) as refused:
            parse_pipeline("steps:\n" + body, pipeline_id="p", file="p.yaml")
        assert "depends_on" in str(refused.value) and named in str(refused.value)


def test_unknown_dependency_and_unknown_validator_are_error_steps(sides):
    result = run(
        """
steps:
  - {name: c, validator: record_counts, depends_on: zzz, config: {table: dim_customer}}
  - {name: validate_record_countz}
  - {name: d, validator: nulls, config: {table: dim_customer, colums: [email]}}
""",
        sides,
    )
    steps = by_name(result)
    assert "unknown step 'zzz'" in steps["c"]["message"]
    assert (
        steps["validate_record_countz"]["status"] == "ERROR"
        and "did you mean record_counts" in steps["validate_record_countz"]["message"]
    )
    assert "config.colums: unknown key; allowed keys: columns" in steps["d"]["message"]
    assert result["status"] == "error"


@pytest.mark.parametrize(
    "name",
    [
        'fact_sales"; DROP TABLE fact_sales; --',
        "fact_sales; drop table dim_customer",
        "dim_customer'--",
        "a.b.c.d",
    ],
)
def test_hostile_table_names_give_an_error_step_and_touch_nothing(sides, name):
    result = run(
        f"steps:\n  - name: record_counts\n    config: {{table: {json.dumps(name)}}}\n", sides
    )
    step = result["steps"][0]
    assert step["status"] == "ERROR" and "not" in step["message"]
    assert step["sql"] == {"source": None, "target": None}
    for side in sides:
        with side.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(text("fact_sales"))).scalar() > 0
            assert (
                conn.execute(select(func.count()).select_from(text("dim_customer"))).scalar()
                == warehouse.CUSTOMERS
            )


def test_missing_column_is_an_error_step_naming_near_matches(sides):
    result = run(
        "steps:\n  - {name: nulls, config: {table: fact_sales, columns: [amont]}}\n", sides
    )
    assert result["steps"][0]["status"] == "ERROR"
    assert (
        "column 'amont' not found in source table fact_sales; did you mean amount"
        in result["steps"][0]["message"]
    )


def test_result_file_per_run_with_unique_ids(sides, tmp_path: Path):
    results = tmp_path / "results"
    text_ = "steps:\n  - {name: record_counts, config: {table: dim_customer}}\n"
    outs = []
    threads = [
        threading.Thread(
            target=lambda: outs.append(run(text_, sides, results_dir=results, project_id="p1"))
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({o["run_id"] for o in outs}) == 4
    files = sorted(results.glob("run_*.json"))
    assert len(files) == 4
    stored = json.loads(files[0].read_text())
    assert (
        stored["project_id"] == "p1"
        and stored["status"] == "passed"
        and stored["pipeline_def"]["pipeline_id"] == "p"
    )
    assert set(stored) >= {
        "run_id",
        "pipeline_id",
        "project_id",
        "status",
        "started_at",
        "completed_at",
        "duration_ms",
        "summary",
        "steps",
    }
    step = stored["steps"][0]
    assert set(step) >= {
        "name",
        "validator",
        "status",
        "severity",
        "table",
        "details",
        "sql",
        "duration_ms",
    }
    assert "count(*)" in step["sql"]["source"].lower()
    assert new_run_id() != new_run_id()


def test_independent_steps_run_concurrently_within_the_bound(sides):
    active, peak, lock = [0], [0], threading.Lock()

    class Cfg(StepConfig):
        pause: float = 0.2

    def slow(ctx, cfg):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        # a step holds its worker until three run at once: only concurrent steps get there
        wait_until(lambda: peak[0] >= 3, timeout=30)
        with lock:
            active[0] -= 1
        return passed({})

    register_validator("test_slow", slow, Cfg)
    result = run(
        "steps:\n" + "".join(f"  - {{name: s{i}, validator: test_slow}}\n" for i in range(6)),
        sides,
        max_workers=3,
    )
    assert result["status"] == "passed" and peak[0] == 3  # reached, never exceeded


def test_cancellation_stops_between_steps(sides):
    calls = {"n": 0}

    def check():
        calls["n"] += 1
        if calls["n"] > 2:
            raise OperationCancelled("stop")

    with pytest.raises(OperationCancelled):
        run(
            "steps:\n"
            + "".join(
                f"  - {{name: c{i}, validator: record_counts, config: {{table: dim_customer}}}}\n"
                for i in range(20)
            ),
            sides,
            max_workers=1,
            check_cancelled=check,
        )


def test_every_built_in_validator_declares_what_its_failure_is():
    from prefect_ombudsman.validation.consolidated import failure_kind
    from prefect_ombudsman.validation.registry import available_validators, get_validator

    built_in = [get_validator(n) for n in available_validators()]
    kinds = {v.name: v.failure_kind for v in built_in if v.fn.__module__.startswith("prefect_")}
    assert len(kinds) >= 30
    assert "other" not in kinds.values(), [n for n, k in kinds.items() if k == "other"]
    assert kinds["record_counts"] == "row_count_mismatch"
    assert failure_kind({"validator": "validate_record_counts", "status": "FAIL"}) == (
        "row_count_mismatch"
    )
    assert failure_kind({"validator": "record_counts", "status": "ERROR"}) == "execution_error"
    assert failure_kind({"validator": "no_such_validator", "status": "FAIL"}) == "other"
