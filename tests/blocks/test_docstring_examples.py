"""Every code example in the blocks' docstrings runs, and prints what its `# -> ` comments say.

The examples are the ones Prefect shows for the block types (class docstrings) and the method
docs. `"BLOCK_NAME"` becomes a fresh block name; an example that loads a block (and saves none)
finds one the test saved first, pointing at a real database: SQLite, DuckDB and PostgreSQL for
`DatabaseConnection`, the fakesnow server for `SnowflakeConnection`. `SqlServerConnection`'s
examples do not connect (no SQL Server here), only build the engine.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import re
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from pydantic import SecretStr

from prefect_ombudsman.blocks import DatabaseConnection, SnowflakeConnection, SqlServerConnection
from prefect_ombudsman.blocks.database import ConnectionBlock

CODE = re.compile(r"```python\n(.*?)```", re.S)
EXPECTED = re.compile(r"# -> (.*)")


def examples(obj: object) -> list[str]:
    return [textwrap.dedent(code) for code in CODE.findall(inspect.getdoc(obj) or "")]


def _methods_with_examples() -> list[str]:
    return [
        name
        for name, member in vars(ConnectionBlock).items()
        if callable(member) and examples(member)
    ]


def _cases(cls: type[Block], kinds: list[str], methods: bool = False) -> list[object]:
    docs: list[tuple[str, object]] = [(cls.__name__, cls)]
    if methods:
        docs += [
            (f"ConnectionBlock.{m}", getattr(ConnectionBlock, m)) for m in _methods_with_examples()
        ]
    return [
        pytest.param(cls, code, kind, id=f"{label}-{i}-{kind}")
        for label, obj in docs
        for i, code in enumerate(examples(obj))
        for kind in kinds
    ]


def run_example(code: str, saved: Callable[[], Block] | None) -> tuple[str, list[str]]:
    """Runs one example under a fresh block name; returns (name, printed lines)."""
    name = f"doc-example-{uuid.uuid4().hex[:12]}"
    if ".save(" not in code:
        assert saved is not None
        saved().save(name)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace('"BLOCK_NAME"', f'"{name}"'), "<example>", "exec"), {})
    return name, out.getvalue().splitlines()


@pytest.fixture
def database_block(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Block]:
    def make(kind: str) -> Block:
        if kind == "postgresql":
            server = request.getfixturevalue("postgres_url")
            db = f"doc_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(server.replace("+psycopg", ""), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {db}")
            return DatabaseConnection(url=server.rsplit("/", 1)[0] + f"/{db}")
        suffix = "db" if kind == "sqlite" else "duckdb"
        return DatabaseConnection(url=f"{kind}:///{tmp_path / f'{uuid.uuid4().hex}.{suffix}'}")

    return make


def test_every_block_and_method_example_is_collected():
    assert all(
        examples(cls) for cls in (SqlServerConnection, SnowflakeConnection, DatabaseConnection)
    )
    assert {"get_connection", "fetch_many"} <= set(_methods_with_examples())


@pytest.mark.parametrize(
    "cls, code, kind",
    _cases(DatabaseConnection, ["sqlite", "duckdb", "postgresql"], methods=True),
)
def test_database_connection_examples(prefect_api, database_block, cls, code, kind):
    name, printed = run_example(code, lambda: database_block(kind))
    assert printed == EXPECTED.findall(code)
    if ".save(" in code:
        _assert_saved_with_secret_hidden(cls, name)


@pytest.mark.parametrize("cls, code, kind", _cases(SnowflakeConnection, ["fakesnow"]))
def test_snowflake_connection_examples(prefect_api, fakesnow_server, cls, code, kind):
    def saved() -> Block:
        return SnowflakeConnection(
            account="fakesnow",
            user="fake",
            password=SecretStr("change-me"),
            host=fakesnow_server["host"],
            port=fakesnow_server["port"],
            protocol="http",
        )

    name, printed = run_example(code, saved)
    assert printed == EXPECTED.findall(code)
    if ".save(" in code:
        _assert_saved_with_secret_hidden(cls, name)


@pytest.mark.parametrize("cls, code, kind", _cases(SqlServerConnection, ["no-server"]))
def test_sql_server_connection_examples(prefect_api, cls, code, kind):
    def saved() -> Block:
        return SqlServerConnection(
            host="127.0.0.1", username="etl", password=SecretStr("change-me")
        )

    name, printed = run_example(code, saved)
    assert printed == EXPECTED.findall(code)
    if ".save(" in code:
        _assert_saved_with_secret_hidden(cls, name)


def _assert_saved_with_secret_hidden(cls: type[Block], name: str) -> None:
    """The saved block loads back with its password, which the API shows only masked."""
    loaded = cls.load(name)
    assert loaded.password.get_secret_value() == "change-me"  # type: ignore[attr-defined]
    with get_client(sync_client=True) as client:
        doc = client.read_block_document_by_name(
            name, cls.get_block_type_slug(), include_secrets=False
        )
    assert "change-me" not in str(doc.data)
