"""The Studio's live job updates: WebSocket `/batch/ws` and `/batch/ws/{project_id}`.

One poller per app (only while someone listens) reads what changed in Prefect and fans the
Studio's `job_update` messages out to every subscriber; subscribers never poll. Each tick costs
three Prefect calls whatever the number of subscribers or jobs: the unfinished job runs, the runs
that ended since the last tick, and the progress artifacts of both (one `read_artifacts`); plus
one call for runs that vanished from the unfinished set without an end time (cancelled before
they started) and one for the planned operations of runs without progress yet. A job's message
goes out when its state (type, name, time) or its progress counters change, so a change reaches
the browser within one tick (`OMBUDSMAN_WS_POLL_SECONDS`, default 0.25 s) plus the Prefect reads.

A subscriber to `/batch/ws/{project_id}` gets the jobs of that project; `/batch/ws` gets every
job. A text frame `ping` is answered `pong`. Message (reference/studio-today.md §1.12):
`{"type": "job_update", "timestamp", "data": {job_id, status, name, project_id, progress:
{total_operations, completed_operations, failed_operations, percent_complete} | null,
success_count, failure_count, started_at, completed_at, total_duration_ms}}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from prefect_ombudsman.jobs import service

log = logging.getLogger("prefect_ombudsman.jobs.websocket")
router = APIRouter(prefix="/batch", tags=["batch"])
_SEND_TIMEOUT = 5.0


def _authorize(websocket: WebSocket) -> bool:
    """The handshake's Origin is allowed or it carries a valid `?token=` (the app-level auth
    dependency checks the same before the endpoint runs)."""
    from prefect_ombudsman.jobs.auth import authorize_websocket

    return authorize_websocket(websocket)


def job_update(job: Any, now: datetime | None = None) -> dict[str, Any]:
    """The Studio's `job_update` message for a `BatchJob`."""
    progress = job.progress
    return {
        "type": "job_update",
        "timestamp": (now or datetime.now(UTC)).isoformat(),
        "data": {
            "job_id": job.job_id,
            "status": job.status.value,
            "name": job.name,
            "project_id": job.project_id,
            "progress": (
                {
                    "total_operations": progress.total_operations,
                    "completed_operations": progress.completed_operations,
                    "failed_operations": progress.failed_operations,
                    "percent_complete": progress.percent_complete,
                }
                if progress
                else None
            ),
            "success_count": job.success_count,
            "failure_count": job.failure_count,
            "started_at": job.started_at.isoformat() if job.started_at else None,
            "completed_at": job.completed_at.isoformat() if job.completed_at else None,
            "total_duration_ms": job.total_duration_ms,
        },
    }


class JobUpdateHub:
    """Subscribers of one app and the single poller that feeds them."""

    def __init__(self, interval: float | None = None) -> None:
        self.interval = (
            interval
            if interval is not None
            else float(os.environ.get("OMBUDSMAN_WS_POLL_SECONDS", "0.25"))
        )
        self.subscribers: dict[WebSocket, str | None] = {}
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        self._seen: dict[UUID, tuple[Any, ...]] = {}
        self._unfinished: set[UUID] = set()
        self._watermark = datetime.now(UTC)

    async def connect(self, websocket: WebSocket, project_id: str | None) -> None:
        await websocket.accept()
        self.subscribers[websocket] = project_id
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="ombudsman-job-updates")

    def disconnect(self, websocket: WebSocket) -> None:
        self.subscribers.pop(websocket, None)
        if not self.subscribers and self._task is not None:
            self._task.cancel()
            self._task = None

    async def broadcast(self, message: dict[str, Any]) -> None:
        project = message["data"].get("project_id")
        text = json.dumps(message)
        targets = [ws for ws, p in list(self.subscribers.items()) if p is None or p == project]

        async def send(ws: WebSocket) -> None:
            try:
                await asyncio.wait_for(ws.send_text(text), _SEND_TIMEOUT)
            except Exception:
                self.subscribers.pop(ws, None)

        await asyncio.gather(*(send(ws) for ws in targets))

    async def _run(self) -> None:
        while self.subscribers:
            try:
                messages = await asyncio.to_thread(self.poll)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Prefect briefly unreachable: keep the sockets, try again
                log.warning("job updates: %s", exc)
                messages = []
            for message in messages:
                await self.broadcast(message)
            await asyncio.sleep(self.interval)

    def _prefect(self) -> Any:
        if self._client is None:
            self._client = service.get_client(sync_client=True)
            self._client.__enter__()
        return self._client

    def poll(self) -> list[dict[str, Any]]:
        """One tick: the messages for every job whose state or progress changed."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterEndTime,
            FlowRunFilterId,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )

        client = self._prefect()
        now = datetime.now(UTC)
        since = self._watermark - timedelta(seconds=2)
        self._watermark = now
        flows = service.run_filters()["flow_filter"]
        runs = {
            r.id: r
            for r in service.read_all(
                client.read_flow_runs,
                flow_filter=flows,
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=list(service.ACTIVE_STATE_TYPES))
                    )
                ),
            )
        }
        unfinished = set(runs)
        for r in service.read_all(
            client.read_flow_runs,
            flow_filter=flows,
            flow_run_filter=FlowRunFilter(
                end_time=FlowRunFilterEndTime.model_validate({"after_": since})
            ),
        ):
            runs[r.id] = r
        vanished = [rid for rid in self._unfinished if rid not in runs]
        if vanished:
            for r in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=vanished))
            ):
                runs[r.id] = r
        self._unfinished = unfinished
        if not runs:
            self._seen.clear()
            return []
        ids = list(runs)
        arts = service.read_run_artifacts(client, ids, types=(service.PROGRESS_ARTIFACT,))
        no_progress = [rid for rid in ids if arts[rid].progress is None]
        service.read_run_artifacts(client, no_progress, types=(service.PLAN_ARTIFACT,), into=arts)
        names = service.flow_names_by_id(client, {r.flow_id for r in runs.values()})
        messages = []
        for rid, run in runs.items():
            job_type = service.FLOW_NAMES.get(names.get(run.flow_id, ""))
            if job_type is None:
                continue
            progress = arts[rid].progress or {}
            state = run.state
            signature = (
                state.type if state else None,
                state.name if state else None,
                state.timestamp if state else None,
                progress.get("completed_operations"),
                progress.get("failed_operations"),
                progress.get("skipped_operations"),
                progress.get("job_status"),
                len(arts[rid].plan or []),
            )
            if self._seen.get(rid) == signature:
                continue
            self._seen[rid] = signature
            job = service.build_job(
                client, run, job_type, with_operations=False, artifacts=arts[rid]
            )
            messages.append(job_update(job, now))
        for rid in [rid for rid in self._seen if rid not in runs]:
            del self._seen[rid]
        return messages


def hub_of(websocket: WebSocket) -> JobUpdateHub:
    app = websocket.app
    hub = getattr(app.state, "job_hub", None)
    if hub is None:
        hub = app.state.job_hub = JobUpdateHub()
    return hub


async def _serve(websocket: WebSocket, project_id: str | None) -> None:
    if not _authorize(websocket):
        await websocket.close(code=1008)
        return
    hub = hub_of(websocket)
    await hub.connect(websocket, project_id)
    try:
        while True:
            text = await websocket.receive_text()
            if text == "ping":
                await websocket.send_text("pong")
    except WebSocketDisconnect:
        pass
    finally:
        hub.disconnect(websocket)


@router.websocket("/ws/{project_id}")
async def project_updates(websocket: WebSocket, project_id: str) -> None:
    """`job_update` messages for the jobs of one project."""
    await _serve(websocket, project_id)


@router.websocket("/ws")
async def all_updates(websocket: WebSocket) -> None:
    """`job_update` messages for every job."""
    await _serve(websocket, None)
