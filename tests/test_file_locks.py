"""Lock files between processes, and DuckDB files that wait their turn instead of failing."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from prefect_ombudsman.dialects.engines import get_engine, spec_from_url
from prefect_ombudsman.file_locks import FileLockTimeout, exclusive
from support import wait_until

HOLDER = """
import sys
from pathlib import Path
from prefect_ombudsman.file_locks import exclusive
with exclusive(Path(sys.argv[1]), label="held file", timeout=60):
    print("held", flush=True)
    sys.stdin.read()
"""

OPEN_DUCKDB = "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"


@contextmanager
def held_by_another_process(path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process that holds `path` until the block ends (it says `held` once it has it)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        if holder.stdin:
            holder.stdin.close()
        holder.wait(timeout=60)


def test_a_held_lock_times_out_with_the_file_and_holder_named(tmp_path: Path):
    path = tmp_path / "db.duckdb.ombudsman.lock"
    with held_by_another_process(path) as holder:
        with pytest.raises(FileLockTimeout) as err:
            with exclusive(path, label="DuckDB file db.duckdb", timeout=0.2):
                pass
    message = str(err.value)
    assert "DuckDB file db.duckdb is in use by another process" in message
    assert f"pid {holder.pid}" in message and "OMBUDSMAN_FILE_LOCK_TIMEOUT_SECONDS" in message


def test_a_waiting_process_gets_the_lock_when_the_holder_lets_go(tmp_path: Path):
    path = tmp_path / "f.lock"
    got = threading.Event()

    def wait_for_it() -> None:
        with exclusive(path, label="f", timeout=120):
            got.set()

    with held_by_another_process(path):
        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        assert not got.is_set()
    waiter.join(timeout=120)
    assert got.is_set()


def test_threads_of_one_process_share_the_lock(tmp_path: Path):
    path = tmp_path / "f.lock"
    inner_done = threading.Event()

    def inner() -> None:
        with exclusive(path, label="f", timeout=0):
            inner_done.set()

    with exclusive(path, label="f", timeout=0):
        thread = threading.Thread(target=inner)
        thread.start()
        thread.join(timeout=30)
    assert inner_done.is_set()


def test_a_duckdb_connection_waits_for_the_file_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    database = tmp_path / "t.duckdb"
    engine = get_engine(spec_from_url(f"duckdb:///{database}"))
    monkeypatch.setenv("OMBUDSMAN_FILE_LOCK_TIMEOUT_SECONDS", "0.2")
    with held_by_another_process(tmp_path / "t.duckdb.ombudsman.lock"):
        with pytest.raises(FileLockTimeout, match=f"DuckDB file {database} is in use"):
            engine.connect()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 42")).scalar() == 42


def test_no_process_keeps_a_duckdb_file_open_after_using_it(tmp_path: Path):
    database = tmp_path / "t.duckdb"
    engine = get_engine(spec_from_url(f"duckdb:///{database}"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t AS SELECT 1 AS a"))

    def another_process_opens_it() -> bool:
        opened = subprocess.run(
            [sys.executable, "-c", OPEN_DUCKDB, str(database)], capture_output=True, check=False
        )
        return opened.returncode == 0

    assert wait_until(another_process_opens_it, timeout=60, interval=0.2)
    with engine.connect() as conn:  # and this process can use it again afterwards
        assert conn.execute(text("SELECT a FROM t")).scalar() == 1
