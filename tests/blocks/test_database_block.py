"""The DatabaseBlock methods of the connection blocks, on SQLite (no Prefect server needed)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Connection, Engine

from prefect_ombudsman.blocks import DatabaseConnection, SqlServerConnection

CANARY = "canary-Pw-5f1e"


@pytest.fixture
def block(tmp_path: Path) -> DatabaseConnection:
    block = DatabaseConnection(url=f"sqlite:///{tmp_path / 'b.db'}")
    block.execute("CREATE TABLE t (n INTEGER, label VARCHAR(10))")
    block.execute_many(
        "INSERT INTO t (n, label) VALUES (:n, :label)",
        [{"n": n, "label": f"r{n}"} for n in range(1, 8)],
    )
    return block


def test_fetches_read_on_in_one_result_until_reset(block: DatabaseConnection):
    query = "SELECT n FROM t ORDER BY n"
    assert block.fetch_one(query) == (1,)
    assert block.fetch_many(query, size=3) == [(2,), (3,), (4,)]
    assert block.fetch_all(query) == [(5,), (6,), (7,)]
    assert block.fetch_one(query) is None and block.fetch_many(query) == []
    # other parameters are another result
    assert block.fetch_all("SELECT n FROM t WHERE n > :low ORDER BY n", {"low": 5}) == [(6,), (7,)]
    block.reset_connections()
    assert block.fetch_one(query) == (1,)
    block.close()
    assert block.fetch_many(query, size=2) == [(1,), (2,)]


def test_execute_commits_and_a_failing_statement_leaves_nothing(block: DatabaseConnection):
    block.execute("UPDATE t SET label = :label WHERE n = :n", {"label": "changed", "n": 3})
    with pytest.raises(Exception, match="no such table"):
        block.execute_many("INSERT INTO missing (n) VALUES (:n)", [{"n": 1}])
    with block:
        assert block.fetch_all("SELECT label FROM t WHERE n = 3") == [("changed",)]


def test_clients_engine_and_connection(block: DatabaseConnection):
    engine = block.get_client("engine")
    assert isinstance(engine, Engine) and engine is block.get_engine()
    with block.get_client("connection") as connection:  # begins; commits on success
        assert isinstance(connection, Connection)
        connection.exec_driver_sql("DELETE FROM t WHERE n > 5")
    with block.get_connection(begin=False) as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM t").scalar() == 5
    with pytest.raises(ValueError, match="client_type 'cursor'"):
        block.get_client("cursor")  # type: ignore[arg-type]


def test_a_block_with_open_results_pickles_without_them_and_keeps_its_secret(
    block: DatabaseConnection,
):
    block.password = SecretStr(CANARY)
    assert block.fetch_one("SELECT n FROM t ORDER BY n") == (1,)
    copy = pickle.loads(pickle.dumps(block))
    assert copy.password is not None and copy.password.get_secret_value() == CANARY
    assert copy.fetch_one("SELECT n FROM t ORDER BY n") == (1,)  # its own, new result
    assert block.fetch_one("SELECT n FROM t ORDER BY n") == (2,)  # the original read on
    block.close()
    copy.close()


def test_secrets_stay_out_of_repr_and_json():
    block = SqlServerConnection(host="h", password=SecretStr(CANARY))
    assert CANARY not in repr(block) and CANARY not in block.model_dump_json()
