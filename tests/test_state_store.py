"""Job state in Prefect result storage: checkpoint segments, retry selections, stored reports."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect.filesystems import LocalFileSystem

from prefect_ombudsman import state_store
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.state_store import SegmentLog, StateStore, StateStoreError


def _store(tmp_path: Path) -> StateStore:
    return StateStore(LocalFileSystem(basepath=str(tmp_path / "results")))


class GatedFileSystem(LocalFileSystem):
    """A local file system whose writes wait for a gate (to see writes coalesce)."""

    _block_type_slug = "ombudsman-test-gated-file-system"

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        object.__setattr__(self, "_gate", threading.Event())
        object.__setattr__(self, "_writing", threading.Event())

    def write_path(self, path: str, content: bytes) -> str:  # type: ignore[override]
        self._writing.set()
        assert self._gate.wait(60)
        return super().write_path(path, content, _sync=True)


class BrokenFileSystem(LocalFileSystem):
    _block_type_slug = "ombudsman-test-broken-file-system"

    def read_path(self, path: str) -> bytes:  # type: ignore[override]
        raise OSError("Input/output error")


def test_segments_are_append_only_and_a_retry_reads_them_all(tmp_path: Path):
    job_id = str(uuid.uuid4())
    store = _store(tmp_path)
    first = SegmentLog(store, job_id)
    assert first.load() == [] and first.next_seq == 0
    for i in range(3):
        first.append(json.dumps({"operation_id": f"op_{i}"}))
        assert first.flush()
    assert first.close()
    root = tmp_path / "results" / "ombudsman" / "checkpoints" / job_id
    assert sorted(p.name for p in root.iterdir()) == [f"{i:06d}.jsonl" for i in range(3)]

    second = SegmentLog(store, job_id)  # the retry, on any host sharing the storage
    assert [e["operation_id"] for e in second.load()] == ["op_0", "op_1", "op_2"]
    second.append(json.dumps({"operation_id": "op_3"}))
    assert second.close()
    assert (root / "000003.jsonl").is_file()  # the earlier segments are never rewritten
    assert [e["operation_id"] for e in SegmentLog(store, job_id).load()] == [
        "op_0",
        "op_1",
        "op_2",
        "op_3",
    ]


def test_a_line_cut_by_a_crash_is_not_a_recorded_completion(tmp_path: Path):
    job_id = str(uuid.uuid4())
    store = _store(tmp_path)
    store.write(
        state_store.checkpoint_key(job_id, 0),
        b'{"operation_id": "op_0"}\n{"operation_id": "op_1", "resu',
    )
    log = SegmentLog(store, job_id)
    assert [e["operation_id"] for e in log.load()] == ["op_0"]
    assert log.next_seq == 1


def test_lines_completed_during_a_write_share_the_next_segment(tmp_path: Path):
    job_id = str(uuid.uuid4())
    storage = GatedFileSystem(basepath=str(tmp_path / "results"))
    log = SegmentLog(StateStore(storage), job_id)
    log.load()
    log.append(json.dumps({"operation_id": "op_0"}))
    assert storage._writing.wait(60)  # the writer is inside its first write
    for i in range(1, 6):
        log.append(json.dumps({"operation_id": f"op_{i}"}))
    storage._gate.set()
    assert log.close()
    root = tmp_path / "results" / "ombudsman" / "checkpoints" / job_id
    segments = sorted(root.iterdir())
    assert [len(p.read_text().splitlines()) for p in segments] == [1, 5]


def test_a_minimum_interval_gathers_lines_until_a_flush(tmp_path: Path):
    job_id = str(uuid.uuid4())
    log = SegmentLog(_store(tmp_path), job_id, min_interval=3600)
    log.load()
    log.append(json.dumps({"operation_id": "op_0"}))
    assert log.flush()  # written at once: the interval only holds back the writes after it
    for i in range(1, 6):
        log.append(json.dumps({"operation_id": f"op_{i}"}))
    assert log.close()  # the close ends the interval and writes the rest
    root = tmp_path / "results" / "ombudsman" / "checkpoints" / job_id
    assert [len(p.read_text().splitlines()) for p in sorted(root.iterdir())] == [1, 5]


def test_unreadable_storage_is_an_error_not_an_empty_checkpoint(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(state_store, "_READ_ATTEMPTS", 2)
    log = SegmentLog(StateStore(BrokenFileSystem(basepath=str(tmp_path))), str(uuid.uuid4()))
    with pytest.raises(StateStoreError, match="cannot read ombudsman/checkpoints/.*Input/output"):
        log.load()


def test_retry_selection_is_taken_once(tmp_path: Path):
    job_id = str(uuid.uuid4())
    store = _store(tmp_path)
    assert state_store.take_retry_selection(store, job_id) is None
    state_store.write_retry_selection(store, job_id, ["op_1", "op_3"])
    assert state_store.take_retry_selection(store, job_id) == {"op_1", "op_3"}
    assert state_store.take_retry_selection(store, job_id) is None


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "x", "", "00000000-0000-0000-0000-00000000000g"]
)
def test_only_a_uuid_picks_a_storage_key(bad: str):
    with pytest.raises(ConfigurationError, match="job_id: .* is not a job id"):
        state_store.job_key(bad, "report.json")
    with pytest.raises(ConfigurationError, match="job_id"):
        state_store.checkpoint_key(bad, 0)
    job_id = uuid.uuid4()
    assert state_store.job_id_of(str(job_id).upper()) == str(job_id)


def test_only_known_job_files_are_stored():
    with pytest.raises(ConfigurationError, match="name: '../x' is not a stored job file"):
        state_store.job_key(str(uuid.uuid4()), "../x")


def test_the_jobs_service_reads_the_latest_report_local_or_stored(tmp_path: Path, monkeypatch):
    from prefect_ombudsman.jobs.service import _read_report

    store = _store(tmp_path)
    monkeypatch.setattr(state_store, "default_store", lambda ttl=0: store)
    monkeypatch.delenv("OMBUDSMAN_ALLOWED_PATHS", raising=False)  # only the projects root
    projects = tmp_path / "projects"
    job_id = str(uuid.uuid4())
    local = projects / "results" / f"batch_{job_id}.json"
    local.parent.mkdir(parents=True)
    local.write_text(json.dumps({"job_id": job_id, "report_id": "first", "where": "local"}))
    stored = {"job_id": job_id, "report_id": "second", "where": "storage"}
    state_store.write_job_files(store, job_id, {"report.json": json.dumps(stored)})

    def read(path: Any, report_id: str, job: str = job_id) -> Any:
        progress = {"report_id": report_id, "job_id": job, "state_storage": None}
        found = _read_report(str(path) if path else None, str(projects), progress)
        return found and found["where"]

    assert read(local, "second") == "storage"  # a retry elsewhere wrote a newer report
    assert read(local, "first") == "local"  # the local copy is the latest: no storage read
    assert read(None, "second") == "storage"  # written on another host
    outside = tmp_path / "elsewhere" / "batch.json"
    outside.parent.mkdir()
    outside.write_text(json.dumps({"job_id": job_id, "report_id": "second", "where": "outside"}))
    assert read(outside, "second") == "storage"  # never read outside the projects root
    assert read(None, "third") is None  # not the report the job names
    assert read(None, "second", job="../../etc") is None
