"""What the three connection blocks share: Prefect's `CredentialsBlock` and `DatabaseBlock`.

A connection block holds the settings and secrets of one database and hands out what reaches it:
`get_engine()` (the plugin's pooled engine for that configuration, as the engine ring uses it),
`get_connection()`, `get_client()`, and the `fetch_*` / `execute*` methods of Prefect's
`DatabaseBlock` interface, synchronous as in Prefect's SQLAlchemy collection.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal, Self

from prefect.blocks.abstract import CredentialsBlock, DatabaseBlock
from pydantic import PrivateAttr
from sqlalchemy import text
from sqlalchemy.engine import Connection, CursorResult, Engine

from prefect_ombudsman.dialects import engines as dc

# Where the repository is published: the block types' documentation link and logo point into it
# (tests/blocks checks that both name files of this repository).
PROJECT_URL = "https://github.com/ombudsman-studio/prefect-ombudsman"
DOCUMENTATION_URL = f"{PROJECT_URL}/blob/main/docs/blocks.md"
# The logo is also shipped in the package (blocks/logo.png): tests check that file.
LOGO_URL = f"https://raw.githubusercontent.com/{PROJECT_URL.removeprefix('https://github.com/')}/main/src/prefect_ombudsman/blocks/logo.png"
LOGO_FILE = Path(__file__).with_name("logo.png")


class ConnectionBlock(CredentialsBlock, DatabaseBlock, ABC):
    """A database connection block: settings and `SecretStr` secrets, and the clients they make.

    `fetch_one`, `fetch_many` and `fetch_all` called again with the same operation and parameters
    go on reading the same result (the next rows), until `reset_connections()`, `close()` or the
    end of a `with` block; `execute` and `execute_many` run and commit at once.
    """

    _logo_url = LOGO_URL  # type: ignore[assignment]  # Prefect declares HttpUrl; a str is accepted
    _documentation_url = DOCUMENTATION_URL  # type: ignore[assignment]

    # results being read by the fetch methods: key -> (connection, result)
    _open_results: dict[str, tuple[Connection, CursorResult[Any]]] = PrivateAttr(
        default_factory=dict
    )

    @abstractmethod
    def to_spec(self, name: str | None = None, base_dir: Path | None = None) -> dc.ConnectionSpec:
        """The Prefect-free connection settings the engine ring works with."""

    def get_engine(self) -> Engine:
        """The pooled SQLAlchemy engine of this configuration (shared with the plugin's runs)."""
        return dc.get_engine(self.to_spec())

    def get_connection(self, begin: bool = True) -> AbstractContextManager[Connection]:
        """A connection; with `begin` (the default) a context manager that commits on success.

        Example:
            ```python
            from prefect_ombudsman.blocks import DatabaseConnection

            warehouse = DatabaseConnection.load("BLOCK_NAME")
            with warehouse.get_connection() as connection:
                connection.exec_driver_sql("CREATE TABLE visits (city VARCHAR(40))")
                connection.exec_driver_sql("INSERT INTO visits VALUES ('Lisbon')")
            print(warehouse.fetch_all("SELECT city FROM visits"))  # -> [('Lisbon',)]
            ```
        """
        engine = self.get_engine()
        return engine.begin() if begin else engine.connect()

    def get_client(
        self, client_type: Literal["engine", "connection"] = "engine", **kwargs: Any
    ) -> Engine | AbstractContextManager[Connection]:
        """`CredentialsBlock`'s client: the engine, or a connection (see `get_connection`)."""
        if client_type == "engine":
            return self.get_engine()
        if client_type == "connection":
            return self.get_connection(**kwargs)
        raise ValueError(f"client_type {client_type!r}: expected 'engine' or 'connection'")

    # ------------------------------------------------------------------ DatabaseBlock
    # Prefect declares these as coroutines; its collections implement them synchronously, as here.

    def _result(
        self, operation: str, parameters: dict[str, Any] | None, options: dict[str, Any]
    ) -> CursorResult[Any]:
        key = json.dumps([operation, parameters or {}, options], sort_keys=True, default=repr)
        if key not in self._open_results:
            connection = self.get_engine().connect()
            try:
                if options:
                    connection = connection.execution_options(**options)
                result = connection.execute(text(operation), parameters or {})
            except BaseException:
                connection.close()
                raise
            self._open_results[key] = (connection, result)
        return self._open_results[key][1]

    def fetch_one(  # type: ignore[override]
        self, operation: str, parameters: dict[str, Any] | None = None, **execution_options: Any
    ) -> tuple[Any, ...] | None:
        """The next row of the operation's result as a tuple (None when it has no more rows)."""
        row = self._result(operation, parameters, execution_options).fetchone()
        return None if row is None else tuple(row)

    def fetch_many(  # type: ignore[override]
        self,
        operation: str,
        parameters: dict[str, Any] | None = None,
        size: int | None = None,
        **execution_options: Any,
    ) -> list[tuple[Any, ...]]:
        """The next `size` rows (1 when not given) of the operation's result.

        Example:
            ```python
            from prefect_ombudsman.blocks import DatabaseConnection

            with DatabaseConnection.load("BLOCK_NAME") as warehouse:
                warehouse.execute("CREATE TABLE numbers (n INTEGER)")
                warehouse.execute_many(
                    "INSERT INTO numbers (n) VALUES (:n)", [{"n": n} for n in range(1, 6)]
                )
                query = "SELECT n FROM numbers WHERE n > :low ORDER BY n"
                print(warehouse.fetch_many(query, {"low": 1}, size=2))  # -> [(2,), (3,)]
                print(warehouse.fetch_many(query, {"low": 1}, size=2))  # -> [(4,), (5,)]
                warehouse.reset_connections()
                print(warehouse.fetch_one(query, {"low": 1}))  # -> (2,)
            ```
        """
        result = self._result(operation, parameters, execution_options)
        return [tuple(row) for row in result.fetchmany(size or 1)]

    def fetch_all(  # type: ignore[override]
        self, operation: str, parameters: dict[str, Any] | None = None, **execution_options: Any
    ) -> list[tuple[Any, ...]]:
        """Every remaining row of the operation's result."""
        result = self._result(operation, parameters, execution_options)
        return [tuple(row) for row in result.fetchall()]

    def execute(  # type: ignore[override]
        self, operation: str, parameters: dict[str, Any] | None = None, **execution_options: Any
    ) -> None:
        """Run one statement that returns no rows (DDL, INSERT, UPDATE, DELETE) and commit."""
        with self.get_engine().begin() as connection:
            if execution_options:
                connection = connection.execution_options(**execution_options)
            connection.execute(text(operation), parameters or {})
        self.logger.debug("executed one statement")

    def execute_many(  # type: ignore[override]
        self,
        operation: str,
        seq_of_parameters: list[dict[str, Any]],
        **execution_options: Any,
    ) -> None:
        """Run one statement once per parameter set, in one transaction, and commit."""
        with self.get_engine().begin() as connection:
            if execution_options:
                connection = connection.execution_options(**execution_options)
            connection.execute(text(operation), seq_of_parameters)
        self.logger.debug("executed one statement for %d parameter sets", len(seq_of_parameters))

    def reset_connections(self) -> None:
        """Close the results the fetch methods are reading (the next fetch runs its query again)."""
        open_results, self._open_results = self._open_results, {}
        for connection, result in open_results.values():
            try:
                result.close()
            finally:
                connection.close()

    def close(self) -> None:
        """Close this block's open results; the pooled engine stays for the plugin's other users."""
        self.reset_connections()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def __getstate__(self) -> dict[Any, Any]:
        """Picklable (open results are not carried over)."""
        state = dict(super().__getstate__())
        private = dict(state.get("__pydantic_private__") or {})
        private["_open_results"] = {}
        state["__pydantic_private__"] = private
        return state
