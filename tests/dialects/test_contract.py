"""The dialect contract: declared pieces, registration, plugins, and a clear error elsewhere."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from prefect_ombudsman.dialects import registry
from prefect_ombudsman.dialects.base import Dialect, GenericDialect, dialect_for, dialect_kind
from prefect_ombudsman.dialects.engines import spec_from_url
from prefect_ombudsman.errors import ConfigurationError


class _Complete(Dialect):
    """The least a database must give: the canonical text and the row hash."""

    name = "plugin_db"
    backends = ("plugindb",)
    driver_aliases = {"plugindb": "plugindb+driver"}

    def canonical_text(self, expr: Any, field: Any) -> Any:
        return expr

    def row_hash(self, fields: list[Any], build_text: Any) -> list[Any]:
        return [build_text()]


def test_a_misspelt_override_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match="validation_stdev overrides nothing"):

        class _Misspelt(_Complete):
            def validation_stdev(self, expr: Any, info: Any) -> Any:  # stddev, misspelt
                return expr

    with pytest.raises(TypeError, match="hash_bucktes overrides nothing"):

        class _Misspelt2(_Complete):
            def hash_bucktes(self, part: Any, buckets: int) -> Any:
                return part


def test_a_dialect_without_canonical_text_or_row_hash_cannot_be_used():
    class _Incomplete(Dialect):
        name = "incomplete"

    with pytest.raises(TypeError, match="canonical_text"):
        _Incomplete(None)


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("sqlite", "sqlite"),
        ("duckdb", "duckdb"),
        ("postgresql", "postgresql"),
        ("snowflake", "snowflake"),
        ("sqlserver", "sqlserver"),
        ("mssql", "sqlserver"),
    ],
)
def test_every_builtin_database_is_registered_by_name_and_backend(key: str, name: str):
    assert dialect_for(key).name == name
    assert dialect_kind(key) == name


def test_an_unregistered_database_gets_a_clear_error_not_an_attribute_error():
    generic = dialect_for("firebird")
    assert isinstance(generic, GenericDialect) and dialect_kind("firebird") == "other"
    with pytest.raises(ConfigurationError, match="no dialect is registered"):
        generic.row_hash([], lambda: None)
    with pytest.raises(ConfigurationError, match="prefect_ombudsman.dialects"):
        generic.canonical_text(None, None)


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry before its entry points were read (restored afterwards)."""
    registry.dialect_classes()  # the built-in modules are imported once per process
    monkeypatch.setattr(registry, "_BY_KEY", dict(registry._BY_KEY))
    monkeypatch.setattr(registry, "_LOADED", False)


def test_a_plugin_dialect_registers_through_its_entry_point(
    fresh_registry: None, monkeypatch: pytest.MonkeyPatch
):
    entry = EntryPoint(
        name="plugindb", value=f"{__name__}:_Complete", group=registry.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(
        registry,
        "entry_points",
        lambda group: [entry] if group == registry.ENTRY_POINT_GROUP else [],
    )
    assert type(dialect_for("plugindb")) is _Complete
    assert dialect_for("postgresql").name == "postgresql"  # the built-ins load as well
    spec = spec_from_url("plugindb://someone@host/db")
    assert spec.url.startswith("plugindb+driver://") and spec.kind == "plugin_db"


def test_two_dialects_for_one_database_are_refused(fresh_registry: None):
    registry.register(_Complete)

    class _Other(_Complete):
        name = "other_plugin"

    with pytest.raises(ConfigurationError, match="two dialects"):
        registry.register(_Other)


def test_the_migration_type_is_the_target_dialects_rule_for_its_source():
    snowflake, sqlserver, duckdb = (
        dialect_for("snowflake"),
        dialect_for("sqlserver"),
        dialect_for("duckdb"),
    )
    assert snowflake.migration_type("datetime2(7)", sqlserver) == "TIMESTAMP_NTZ"
    assert snowflake.migration_type("BIT", sqlserver) == "BOOLEAN"
    assert snowflake.migration_type("geography", sqlserver) is None
    # no rule for other sources or other targets: nothing is guessed
    assert snowflake.migration_type("int", duckdb) is None
    assert duckdb.migration_type("int", sqlserver) is None


@pytest.mark.parametrize(
    ("url", "file"),
    [
        ("sqlite:///data/a.db", "data/a.db"),
        ("sqlite:////abs/a.db", "/abs/a.db"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("duckdb:///w.duckdb", "w.duckdb"),
        ("duckdb:///:memory:", None),
        ("postgresql://u@h/db", None),
        ("mysql+pymysql://u@h/db", None),
    ],
)
def test_each_dialect_names_the_file_its_url_opens(url: str, file: str | None):
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    assert dialect_for(parsed.get_backend_name()).database_file(parsed) == file


def test_only_sqlite_refuses_uri_filenames():
    from sqlalchemy.engine import make_url

    for url in ("sqlite:///file:a.db?uri=true", "sqlite:///x/file:a.db", "sqlite:///a.db?uri=true"):
        parsed = make_url(url)
        assert "URI filenames" in (dialect_for("sqlite").unconfinable(parsed) or "")
    assert dialect_for("sqlite").unconfinable(make_url("sqlite:///a.db")) is None
    assert dialect_for("duckdb").unconfinable(make_url("duckdb:///file:a.db")) is None
