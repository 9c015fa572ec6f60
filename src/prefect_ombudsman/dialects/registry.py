"""Which `Dialect` class serves which database: every dialect module registers its class here.

The built-in modules are imported on the first lookup (`BUILTIN_MODULES`); plugins add theirs
through the entry-point group `prefect_ombudsman.dialects` (the entry point names a module that
registers its class, or the class itself), as sqlglot's dialects do:

    [project.entry-points."prefect_ombudsman.dialects"]
    oracle = "my_package.oracle_dialect:OracleDialect"
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, TypeVar

from prefect_ombudsman.errors import ConfigurationError

if TYPE_CHECKING:
    from prefect_ombudsman.dialects.base import Dialect

ENTRY_POINT_GROUP = "prefect_ombudsman.dialects"
#: modules of this package that hold one dialect each (imported on the first lookup)
BUILTIN_MODULES = ("sqlite", "duckdb", "postgresql", "snowflake", "sqlserver", "mariadb")

D = TypeVar("D", bound="type[Dialect]")

_BY_KEY: dict[str, type[Dialect]] = {}  # dialect name and SQLAlchemy backend names -> class
_LOADED = False
_LOCK = threading.RLock()


def register(cls: D) -> D:
    """Class decorator: serve `cls.name` and every backend of `cls.backends` with `cls`."""
    keys = {cls.name, *cls.backends}
    with _LOCK:
        for key in keys:
            known = _BY_KEY.get(key)
            if known is not None and known.__qualname__ != cls.__qualname__:
                raise ConfigurationError(
                    f"database {key!r} has two dialects: {known.__module__}.{known.__qualname__} "
                    f"and {cls.__module__}.{cls.__qualname__}"
                )
        for key in keys:
            _BY_KEY[key] = cls
    return cls


def _load() -> None:
    global _LOADED
    with _LOCK:
        if _LOADED:
            return
        _LOADED = True
        for module in BUILTIN_MODULES:
            importlib.import_module(f"{__package__}.{module}")
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            loaded = entry.load()
            if isinstance(loaded, type):
                register(loaded)


def dialect_class(key: str) -> type[Dialect] | None:
    """The class registered for a dialect name or SQLAlchemy backend name, None if none."""
    _load()
    return _BY_KEY.get(key)


def dialect_classes() -> list[type[Dialect]]:
    """Every registered dialect class, once each."""
    _load()
    return list(dict.fromkeys(_BY_KEY.values()))


def driver_alias(drivername: str) -> str:
    """The full SQLAlchemy driver name of a short one (`postgres` -> `postgresql+psycopg`)."""
    for cls in dialect_classes():
        if drivername in cls.driver_aliases:
            return cls.driver_aliases[drivername]
    return drivername
