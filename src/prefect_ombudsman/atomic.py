"""Files written whole or not at all: a uniquely named temp file beside the target, then a rename."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str, *, mode: int | None = None) -> Path:
    """Write `text` so that readers see the old file or the complete new one, never half of it.

    `mode` (e.g. 0o600) is the file's permission from its first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if mode is None:
            tmp.write_text(text, encoding="utf-8")
        else:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json_atomic(path: Path, data: Any, *, indent: int = 2) -> Path:
    """`write_text_atomic` of `data` as JSON (values JSON cannot hold are written as text)."""
    return write_text_atomic(path, json.dumps(data, indent=indent, default=str))
