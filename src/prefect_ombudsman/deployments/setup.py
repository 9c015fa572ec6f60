"""`ombudsman setup`: create or update the Prefect objects the batch jobs use, idempotently.

- a work pool for `prefect deploy --all` and `prefect worker start` (`--work-pool NAME`);
- the crash detection automation (`automations/crashed-on-missing-heartbeats.yaml`, always): a
  run whose heartbeats stop (worker or host killed) is marked Crashed, so it can be retried;
- the notification automations (`automations/job-failed.yaml`, or `--automations FILE`) that
  notify a job's owner through a notification block (`--notify-block TYPE/NAME`) when a job ends
  failed, partial or crashed;
- per-database global concurrency limits (`--database-limit REF=N`, see `limits.py`).

Running it again updates what it created (matched by name) instead of adding copies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

SHIPPED = Path(__file__).parent / "automations"
CRASH_DETECTION = SHIPPED / "crashed-on-missing-heartbeats.yaml"
NOTIFICATIONS = SHIPPED / "job-failed.yaml"


class SetupError(Exception):
    """A setup input that cannot be used; the message names it."""


def load_automations(path: Path | None = None) -> list[dict[str, Any]]:
    """The automation definitions of one YAML/JSON file (one mapping or a list), or the shipped
    notification ones."""
    files = [path if path is not None else NOTIFICATIONS]
    found: list[dict[str, Any]] = []
    for file in files:
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise SetupError(f"cannot read the automation file {file}: {exc}") from exc
        for entry in data if isinstance(data, list) else [data]:
            if not isinstance(entry, dict) or not entry.get("name"):
                raise SetupError(f"{file}: every automation needs a mapping with a 'name'")
            found.append(entry)
    return found


def find_notification_block(client: Any, reference: str) -> Any:
    """The block document named `TYPE/NAME` (e.g. `slack-webhook/ops`) or a unique bare `NAME`."""
    from prefect.exceptions import ObjectNotFound

    slug, _, name = reference.rpartition("/")
    if slug:
        try:
            return client.read_block_document_by_name(name=name, block_type_slug=slug)
        except ObjectNotFound:
            raise SetupError(f"no block {reference!r} (type {slug!r}, name {name!r})") from None
    matches = [b for b in client.read_block_documents() if b.name == name]
    if len(matches) != 1:
        kinds = ", ".join(f"{b.block_type.slug}/{b.name}" for b in matches if b.block_type)
        raise SetupError(
            f"--notify-block {reference!r}: "
            + (
                f"several blocks have that name ({kinds}); give TYPE/NAME"
                if matches
                else "no block has that name"
            )
        )
    return matches[0]


def ensure_work_pool(client: Any, name: str, pool_type: str) -> str:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
        return f"work pool {name!r} ({pool_type}) created"
    return f"work pool {name!r} ({pool.type}) already exists"


def ensure_automation(client: Any, definition: dict[str, Any], block_id: Any) -> str:
    """Create the automation, or update the one of the same name; send-notification actions get
    the block's id."""
    from prefect.events.schemas.automations import AutomationCore

    spec = dict(definition)
    actions = []
    for action in spec.get("actions", []):
        action = dict(action)
        if action.get("type") == "send-notification" and not action.get("block_document_id"):
            action["block_document_id"] = str(block_id)
        actions.append(action)
    spec["actions"] = actions
    try:
        automation = AutomationCore.model_validate(spec)
    except ValueError as exc:
        raise SetupError(f"automation {spec['name']!r} is not valid: {exc}") from exc
    existing = client.read_automations_by_name(automation.name)
    if existing:
        client.update_automation(existing[0].id, automation)
        for extra in existing[1:]:
            client.delete_automation(extra.id)
        return f"automation {automation.name!r} updated"
    client.create_automation(automation)
    return f"automation {automation.name!r} created"


CRASH_AFTER_SECONDS = 90  # three missed heartbeats of 30 s


def ensure_crash_detection(client: Any, crash_after: int = CRASH_AFTER_SECONDS) -> str:
    """Create or update the automation that marks a run Crashed when no heartbeat came for
    `crash_after` seconds (more than PREFECT_FLOWS_HEARTBEAT_FREQUENCY, at least 30)."""
    (definition,) = load_automations(CRASH_DETECTION)
    definition["trigger"] = {**definition["trigger"], "within": crash_after}
    definition["actions"] = [
        {**action, "message": f"Crashed: no heartbeat for {crash_after} seconds (worker or "
         "flow-run process gone)"}
        for action in definition["actions"]
    ]  # fmt: skip
    return ensure_automation(client, definition, None)


def apply_crash_detection() -> str:
    """`ombudsman serve` / `api` at start: create the crash detection automation when missing (one
    that `ombudsman setup --crash-after` tuned stays as it is); says what it did, never raises."""
    from prefect.client.orchestration import get_client

    (definition,) = load_automations(CRASH_DETECTION)
    try:
        with get_client(sync_client=True) as client:
            if client.read_automations_by_name(definition["name"]):
                return f"automation {definition['name']!r} present"
            return ensure_crash_detection(client)
    except Exception as exc:  # a server without automations (Prefect Cloud free tier, old server)
        return f"crash detection automation not applied: {exc}"


def parse_database_limits(values: list[str], projects_dir: Path | None) -> dict[str, int]:
    """`REF=N` (REF a connection URL or a connection name of the projects folder) -> {server: N}."""
    from prefect_ombudsman.connections import resolve_connection
    from prefect_ombudsman.errors import OmbudsmanError
    from prefect_ombudsman.metadata.sessions import server_identity

    limits: dict[str, int] = {}
    for value in values:
        ref, sep, count = value.rpartition("=")
        if not sep or not ref or not count.strip().isdigit() or int(count) < 1:
            raise SetupError(
                f"--database-limit {value!r}: expected REF=N (a connection URL or name, N >= 1 slots)"
            )
        try:
            spec = resolve_connection(ref.strip(), root=projects_dir, field="--database-limit")
        except OmbudsmanError as exc:
            raise SetupError(f"--database-limit {value!r}: {exc}") from None
        limits[server_identity(spec)] = int(count)
    return limits


def run_setup(
    *,
    work_pool: str | None = None,
    pool_type: str = "process",
    notify_block: str | None = None,
    automations: Path | None = None,
    database_limits: dict[str, int] | None = None,
    crash_after: int = CRASH_AFTER_SECONDS,
) -> list[str]:
    """Create/update the objects asked for and the crash detection; one line per object."""
    from prefect.client.orchestration import get_client

    from prefect_ombudsman.deployments.limits import ensure_database_limit

    if automations is not None and not notify_block:
        raise SetupError("--automations needs --notify-block (where the notifications go)")
    done: list[str] = []
    with get_client(sync_client=True) as client:
        # everything that can be refused is checked before anything is written
        block = find_notification_block(client, notify_block) if notify_block else None
        notifications = load_automations(automations) if block is not None else []
        if work_pool:
            done.append(ensure_work_pool(client, work_pool, pool_type))
        done.append(ensure_crash_detection(client, crash_after))
        for definition in notifications:
            assert block is not None  # notifications are loaded only for a found block
            done.append(ensure_automation(client, definition, block.id))
        for server, slots in (database_limits or {}).items():
            done.append(ensure_database_limit(client, server, slots))
    return done


def setup_command(
    work_pool: Annotated[
        str | None,
        typer.Option(
            "--work-pool",
            help="Create this work pool if missing (prefect.yaml uses ombudsman-process).",
        ),
    ] = None,
    pool_type: Annotated[str, typer.Option("--pool-type", help="Work pool type.")] = "process",
    notify_block: Annotated[
        str | None,
        typer.Option(
            "--notify-block",
            help="Notification block TYPE/NAME (e.g. slack-webhook/ops, email/oncall): create or "
            "update the automation that notifies a job's owner when the job fails, ends partial "
            "or crashes.",
        ),
    ] = None,
    automations: Annotated[
        Path | None,
        typer.Option("--automations", help="Automation YAML/JSON file instead of the shipped one."),
    ] = None,
    database_limit: Annotated[
        list[str] | None,
        typer.Option(
            "--database-limit",
            help="REF=N (repeatable): at most N operations of all jobs and workers use the server "
            "of connection REF (a URL or a connection name) at once; a Prefect global "
            "concurrency limit ombudsman-db-<server>.",
        ),
    ] = None,
    projects_dir: Annotated[
        Path | None,
        typer.Option("--projects-dir", help="Projects root the connection names resolve in."),
    ] = None,
    crash_after: Annotated[
        int,
        typer.Option(
            "--crash-after",
            min=35,
            max=86_400,
            help="Mark a run Crashed after this many seconds without a heartbeat (the flow runs "
            "send one every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds, 30 in prefect.yaml).",
        ),
    ] = CRASH_AFTER_SECONDS,
) -> None:
    """Create or update the Prefect objects of the batch jobs (idempotent): crash detection, work
    pool, notifications, per-database concurrency limits."""
    from prefect_ombudsman.errors import OmbudsmanError
    from prefect_ombudsman.localserver import connect

    try:
        limits = parse_database_limits(database_limit or [], projects_dir)
    except SetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:  # the shared local Prefect server unless an API is configured (docs/local-service.md)
        connect()
    except OmbudsmanError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        lines = run_setup(
            work_pool=work_pool,
            pool_type=pool_type,
            notify_block=notify_block,
            automations=automations,
            database_limits=limits,
            crash_after=crash_after,
        )
    except SetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in lines:
        typer.echo(line)
