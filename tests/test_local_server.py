"""The shared local Prefect server behind the CLI: started once, reused, replaced when stale,
stopped on request or when idle; a configured API or --no-daemon starts nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefect_ombudsman import execservice, localserver
from support import free_port, wait_until

OMBUDSMAN = str(Path(sys.executable).parent / "ombudsman")


def ombudsman(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OMBUDSMAN, *args], env=env, capture_output=True, text=True, timeout=900, check=False
    )


def local_env(root: Path) -> dict[str, str]:
    """A user's environment: no PREFECT_API_URL, its own Prefect home and projects folder."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(root / "home"), OMBUDSMAN_PROJECTS_DIR=str(root / "projects"))
    return env


@pytest.fixture
def home_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = local_env(tmp_path)
    yield env
    stop_and_check(Path(env["PREFECT_HOME"]))


def stop_and_check(home: Path) -> None:
    """Teardown: stop the home's execution service and server; make sure the server is gone."""
    record = localserver.read_record(home)
    execservice.stop(home)
    localserver.stop(home)
    if record:
        assert wait_until(lambda: not localserver.is_server_process(record.pid), timeout=60)


@pytest.mark.slow
def test_commands_share_one_server_until_it_is_stopped(home_env: dict[str, str]):
    home = Path(home_env["PREFECT_HOME"])
    before = ombudsman(home_env, "server", "status")
    assert before.returncode == 1 and "not running" in before.stdout

    first = ombudsman(home_env, "run", "custom", "noop", "--name", "first", "--json")
    assert first.returncode == 0, first.stderr
    status = json.loads(ombudsman(home_env, "server", "status", "--json").stdout)
    assert status["running"] and status["healthy"]
    assert status["api_url"].startswith("http://127.0.0.1:")

    second = ombudsman(home_env, "run", "custom", "noop", "--name", "second", "--json")
    assert second.returncode == 0, second.stderr
    assert (
        json.loads(ombudsman(home_env, "server", "status", "--json").stdout)["pid"]
        == (status["pid"])
    )
    listed = json.loads(ombudsman(home_env, "jobs", "list", "--json").stdout)
    assert {job["name"] for job in listed["jobs"]} == {"first", "second"}
    log = (home / "ombudsman-server.log").read_text()
    assert log.count("Prefect server for ombudsman on") == 1

    stopped = ombudsman(home_env, "server", "stop")
    assert stopped.returncode == 0 and f"pid {status['pid']}" in stopped.stdout
    assert wait_until(lambda: not localserver.is_server_process(status["pid"]), timeout=60)
    assert not (home / "ombudsman-server.json").exists()
    assert ombudsman(home_env, "server", "status").returncode == 1


@pytest.mark.slow
def test_a_stale_record_is_replaced_without_touching_its_pid(home_env: dict[str, str]):
    home = Path(home_env["PREFECT_HOME"])
    home.mkdir(parents=True)
    stale_port = free_port()
    # The pid of a live process that is not our server (this test), and a port nobody answers on.
    (home / "ombudsman-server.json").write_text(
        json.dumps({"pid": os.getpid(), "port": stale_port, "started": "x", "log": "x"})
    )
    assert ombudsman(home_env, "server", "status").returncode == 1

    started = ombudsman(home_env, "server", "start")
    assert started.returncode == 0, started.stderr
    record = localserver.read_record(home)
    assert record is not None and record.pid != os.getpid() and record.port != stale_port
    assert started.stdout.strip() == record.url and localserver.healthy(record.url)


@pytest.mark.slow
def test_an_idle_server_stops_itself(tmp_path: Path):
    env = local_env(tmp_path) | {"OMBUDSMAN_SERVER_IDLE_MINUTES": "0.01"}
    home = Path(env["PREFECT_HOME"])
    try:
        assert ombudsman(env, "server", "start").returncode == 0
        record = localserver.read_record(home)
        assert record is not None
        assert wait_until(lambda: not localserver.is_server_process(record.pid), timeout=300)
        assert not (home / "ombudsman-server.json").exists()
        assert "with no command attached: stopping" in (home / "ombudsman-server.log").read_text()
    finally:
        stop_and_check(home)


def test_an_attached_command_counts_as_activity(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    assert not localserver._commands_attached(home)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from prefect_ombudsman import localserver; "
            "localserver.attach(Path(sys.argv[1])); print('attached', flush=True); sys.stdin.read()",
            str(home),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "attached"
    assert localserver._commands_attached(home)
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=60)
    assert not localserver._commands_attached(home)


CONNECT = "from prefect_ombudsman.localserver import connect; print(connect())"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"PREFECT_API_URL": "http://127.0.0.1:9/api"}, "http://127.0.0.1:9/api"),
        ({"OMBUDSMAN_NO_DAEMON": "1"}, "None"),
        ({"PREFECT_PROFILE": "team"}, "http://team-server:4200/api"),
    ],
    ids=["api-url-set", "no-daemon", "profile-api-url"],
)
def test_a_configured_api_or_no_daemon_starts_nothing(
    tmp_path: Path, extra: dict[str, str], expected: str
):
    env = local_env(tmp_path) | extra
    home = Path(env["PREFECT_HOME"])
    home.mkdir()
    (home / "profiles.toml").write_text(
        'active = "ephemeral"\n[profiles.ephemeral]\n'
        '[profiles.team]\nPREFECT_API_URL = "http://team-server:4200/api"\n'
    )
    shown = subprocess.run(
        [sys.executable, "-c", CONNECT], env=env, capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == expected
    assert not (home / "ombudsman-server.json").exists()


@pytest.mark.usefixtures("prefect_api")
def test_in_process_cli_tests_use_the_harness_not_a_local_server():
    from prefect.settings import get_current_settings

    home = localserver.prefect_home()
    assert localserver.connect() == str(get_current_settings().api.url)
    assert not (home / "ombudsman-server.json").exists()


def test_a_dead_or_foreign_pid_is_not_a_server():
    assert not localserver.is_server_process(os.getpid())
    assert not localserver.is_server_process(2**22 + 12345)
