"""Server identity and session slots, connection labels, catalog files, the source/target mapping."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from prefect_ombudsman.dialects.engines import snowflake_spec, spec_from_url, sqlserver_spec
from prefect_ombudsman.errors import OperationCancelled
from prefect_ombudsman.metadata.catalog import Catalog, CatalogColumn, CatalogTable
from prefect_ombudsman.metadata.mapping import map_catalogs
from prefect_ombudsman.metadata.sessions import ServerSlots, server_identity, sessions_per_server
from prefect_ombudsman.metadata.store import connection_label, save_catalog
from support import wait_until


def test_server_identity_ignores_database_user_and_secret(tmp_path: Path):
    a = server_identity(spec_from_url("postgresql://alice:pw1@DB1.example:5433/sales"))
    b = server_identity(spec_from_url("postgresql://bob:pw2@db1.example:5433/hr"))
    assert a == b == "postgresql://db1.example:5433"
    assert (
        server_identity(spec_from_url("postgresql://u@db1.example/x"))
        == "postgresql://db1.example:5432"
    )
    assert (
        server_identity(sqlserver_spec(name="s", host="sql1", port=1433, password="x"))
        == "sqlserver://sql1:1433"
    )
    assert server_identity(spec_from_url(f"sqlite:///{tmp_path}/a.db")) == f"sqlite:{tmp_path}/a.db"
    fake = snowflake_spec(
        name="f",
        account="acct",
        user="u",
        password=SecretStr("p"),
        host="127.0.0.1",
        port=9,
        protocol="http",
    )
    assert server_identity(fake) == "snowflake://127.0.0.1:9"
    assert server_identity(
        snowflake_spec(name="r", account="xy123", user="u", password="p")
    ).startswith("snowflake://xy123.snowflakecomputing.com")


def test_sessions_per_server_setting(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OMBUDSMAN_METADATA_SESSIONS_PER_SERVER", raising=False)
    assert sessions_per_server() == 4
    monkeypatch.setenv("OMBUDSMAN_METADATA_SESSIONS_PER_SERVER", "2")
    assert sessions_per_server() == 2 and sessions_per_server(7) == 7


def test_slots_bound_each_server_separately():
    slots = ServerSlots()
    lock = threading.Lock()
    current: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0}

    def work(server: str) -> None:
        with slots.slot(server, 2):
            with lock:
                current[server] += 1
                peak[server] = max(peak[server], current[server])
            # hold the slot until this server is full and a caller queues (no timing luck)
            wait_until(lambda: peak[server] == 2 and slots.stats(server)["waits"] > 0, timeout=30)
            with lock:
                current[server] -= 1

    threads = [threading.Thread(target=work, args=("a" if i % 2 else "b",)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == {"a": 2, "b": 2}
    assert (
        slots.stats("a")["peak"] == 2
        and slots.stats("a")["waits"] > 0
        and slots.stats("a")["in_use"] == 0
    )


def test_waiting_for_a_slot_stops_on_cancel():
    slots = ServerSlots()
    stop = threading.Event()
    outcome: list[BaseException] = []

    def wait_for_slot() -> None:
        try:
            with slots.slot("s", 1, should_stop=stop.is_set, poll_seconds=0.02):
                pass
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    with slots.slot("s", 1):  # held until the end: only the cancel can end the wait
        waiter = threading.Thread(target=wait_for_slot, daemon=True)
        waiter.start()
        assert wait_until(lambda: slots.stats("s")["waits"] == 1, timeout=30)
        assert waiter.is_alive()  # waiting, as long as nobody stops it
        stop.set()
        waiter.join(timeout=60)
        assert not waiter.is_alive() and isinstance(outcome[0], OperationCancelled)
        assert slots.stats("s")["in_use"] == 1


def test_connection_labels_are_safe_and_never_hold_secrets():
    assert connection_label("source") == "source"
    label = connection_label("postgresql://u:hunter2@db1:5432/sales")
    assert label.startswith("postgresql-sales-") and "hunter2" not in label
    assert connection_label("sqlite:///data/src.db").startswith("sqlite-src.db-")
    assert connection_label("sqlite:///a/src.db") != connection_label("sqlite:///b/src.db")
    inline = connection_label({"kind": "postgresql", "host": "h", "password": "hunter2"})
    assert inline.startswith("inline-postgresql-") and "hunter2" not in inline
    assert connection_label("../../etc/passwd") == "etc-passwd"


def _catalog(
    tables: list[CatalogTable], scope: str = "all", schemas: list[str] | None = None
) -> Catalog:
    return Catalog(
        connection="c",
        dialect="duckdb",
        database="db",
        extracted_at=datetime.now(UTC),
        scope=scope,
        schemas=schemas or sorted({t.schema_name for t in tables}),
        table_names=[t.name for t in tables] if scope == "tables" else None,
        tables=tables,
    )


def _t(schema: str, name: str, *cols: tuple[str, str], **kw) -> CatalogTable:
    columns = [
        CatalogColumn(name=n, ordinal=i, data_type=t.split("(")[0], **kw.get(n, {}))
        for i, (n, t) in enumerate(cols, 1)
    ]
    return CatalogTable(schema=schema, name=name, columns=columns)


def test_catalog_file_keeps_other_schemas_and_replaces_the_extracted_one(tmp_path: Path):
    save_catalog(_catalog([_t("dim", "d1"), _t("fact", "f1")]), tmp_path, "src")
    save_catalog(_catalog([_t("dim", "d2")], scope="schema", schemas=["dim"]), tmp_path, "src")
    assert [t.qualified_name for t in Catalog.load(tmp_path / "src.json").tables] == [
        "dim.d2",
        "fact.f1",
    ]
    save_catalog(_catalog([_t("fact", "f2")], scope="tables"), tmp_path, "src")
    assert [t.qualified_name for t in Catalog.load(tmp_path / "src.json").tables] == [
        "dim.d2",
        "fact.f1",
        "fact.f2",
    ]
    save_catalog(_catalog([_t("x", "only")]), tmp_path, "src")
    assert [t.qualified_name for t in Catalog.load(tmp_path / "src.json").tables] == ["x.only"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_schema_saves_lose_nothing(tmp_path: Path):
    threads = [
        threading.Thread(
            target=save_catalog,
            args=(_catalog([_t(f"s{i}", "t")], scope="schema", schemas=[f"s{i}"]), tmp_path, "src"),
        )
        for i in range(12)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(Catalog.load(tmp_path / "src.json").tables) == 12


def test_mapping_through_schema_mappings_case_insensitive():
    source = _catalog(
        [
            _t(
                "dbo",
                "Customers",
                ("CustomerID", "INT"),
                ("Name", "NVARCHAR"),
                ("Balance", "DECIMAL"),
                Balance={"precision": 12, "scale": 2},
            ),
            _t("dbo", "Orders", ("OrderID", "INT")),
            _t("dbo", "Legacy", ("id", "INT")),
        ]
    )
    target = _catalog(
        [
            _t(
                "PUBLIC",
                "CUSTOMERS",
                ("CUSTOMERID", "NUMBER"),
                ("NAME", "VARCHAR"),
                ("BALANCE", "VARCHAR"),
                ("EXTRA", "INT"),
                CUSTOMERID={"precision": 38, "scale": 0},
            ),
            _t(
                "PUBLIC",
                "ORDERS",
                ("ORDERID", "NUMBER"),
                ORDERID={"precision": 38, "scale": 0, "nullable": False},
            ),
            _t("PUBLIC", "NEWTABLE", ("ID", "NUMBER")),
        ]
    )
    mapping = map_catalogs(source, target, {"DBO": "public"})
    status = {(m.source_table, m.target_table): m.status for m in mapping.tables}
    assert status == {
        ("Customers", "CUSTOMERS"): "found_in_both",
        ("Orders", "ORDERS"): "found_in_both",
        ("Legacy", None): "only_in_source",
        (None, "NEWTABLE"): "only_in_target",
    }
    customers = next(m for m in mapping.tables if m.source_table == "Customers")
    cols = {c.name: c for c in customers.columns}
    assert cols["CustomerID"].type_match == "compatible" and cols["CustomerID"].differences == []
    assert cols["Name"].type_match == "compatible"
    assert cols["Balance"].type_match == "different" and cols["Balance"].differences == ["type"]
    assert cols["EXTRA"].status == "only_in_target"
    orders = next(m for m in mapping.tables if m.source_table == "Orders")
    assert orders.columns[0].differences == ["nullable"]
    assert (
        mapping.summary["tables_in_both"] == 2
        and mapping.summary["columns_with_type_differences"] == 1
    )
    assert mapping.summary["columns_with_nullability_differences"] == 1


def test_mapping_pairs_leftovers_by_unique_name():
    source = _catalog([_t("main", "dim_store", ("id", "INTEGER"))])
    target = _catalog([_t("dim", "dim_store", ("id", "INTEGER"))])
    (table,) = map_catalogs(source, target).tables
    assert (table.status, table.matched_by, table.target_schema) == ("found_in_both", "name", "dim")
    assert table.columns[0].type_match == "same"
