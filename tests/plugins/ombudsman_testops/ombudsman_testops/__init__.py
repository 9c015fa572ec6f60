"""Test operations for the runner's tests and benchmarks: `noop`, `sleep`, `fail`, `flaky`, `gate`.

Installed only for development (`make setup` runs `pip install -e tests/plugins/ombudsman_testops`);
a production install registers only the real operations.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prefect_ombudsman.confinement import confine_path
from prefect_ombudsman.errors import ConfigurationError, OperationFailed, TransientError
from prefect_ombudsman.operations.context import OperationContext


def noop(ctx: OperationContext) -> dict[str, Any]:
    """Do nothing (orchestration-overhead benchmark)."""
    return {"operation_id": ctx.operation_id}


def sleep(ctx: OperationContext, seconds: float = 1.0) -> dict[str, Any]:
    """Wait `seconds`, stopping early on cancel; reports its own start and end."""
    if not 0 <= float(seconds) <= 86_400:
        raise ConfigurationError(f"sleep: 'seconds' must be between 0 and 86400, got {seconds!r}")
    started = time.time()
    deadline = time.monotonic() + float(seconds)
    while (left := deadline - time.monotonic()) > 0:
        ctx.wait(min(left, 0.05))
    return {"started": started, "ended": time.time(), "seconds": float(seconds)}


def fail(
    ctx: OperationContext, message: str = "failed on request", transient: bool = False
) -> None:
    """Fail with `message`; `transient=true` makes it a retryable error."""
    if transient:
        raise TransientError(message)
    raise OperationFailed(message, result={"message": message})


def flaky(
    ctx: OperationContext, marker: str, failures: int = 1, seconds: float = 0.0
) -> dict[str, Any]:
    """Fail `failures` times (transiently) across attempts and runs, counted in file `marker`
    (inside the projects root, relative paths from it), then succeed."""
    path = confine_path(marker, root=ctx.projects_dir, field="flaky: 'marker'")
    count = int(path.read_text() or 0) if path.exists() else 0
    path.write_text(str(count + 1))
    if count < int(failures):
        raise TransientError(
            f"flaky: planned transient failure {count + 1} of {failures} (connection refused)"
        )
    if seconds:
        ctx.wait(float(seconds))
    return {"calls": count + 1}


def gate(ctx: OperationContext, marker: str, release_file: str) -> dict[str, Any]:
    """Count the call in file `marker` (this process's id in `<marker>.pid` first), then wait until
    `release_file` exists, stopping on cancel: an operation a test holds in flight at will."""
    path = confine_path(marker, root=ctx.projects_dir, field="gate: 'marker'")
    released = confine_path(release_file, root=ctx.projects_dir, field="gate: 'release_file'")
    count = int(path.read_text() or 0) if path.exists() else 0
    path.with_name(path.name + ".pid").write_text(str(os.getpid()))
    path.write_text(str(count + 1))
    while not released.exists():
        ctx.wait(0.05)
    return {"calls": count + 1}
