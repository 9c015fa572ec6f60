"""Inline credentials of a job kept in Prefect `Secret` blocks (see credentials.py).

Lifecycle: `save_credential` runs in the jobs service before the flow run is created, one block
per credential, named `ombudsman-credential-<32 hex>` (128 random bits, never derived from the
value). The worker that runs the job loads it by name when an operation connects. Deleting the
job (`ombudsman jobs delete`, `DELETE /batch/jobs/{id}`) deletes the blocks its parameters name.
Prefect's server stores block values encrypted (Fernet; set `PREFECT_SERVER_ENCRYPTION_KEY` to keep
the key outside its database) and its API returns them obfuscated.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any, cast

from prefect.blocks.system import Secret
from prefect.exceptions import ObjectNotFound
from pydantic import SecretStr

from prefect_ombudsman.credentials import BLOCK_PREFIX
from prefect_ombudsman.errors import ConnectionReferenceError

log = logging.getLogger("prefect_ombudsman.credentials")


def save_credential(value: str) -> str:
    """Store one secret value in a new Secret block; returns the block's name."""
    name = BLOCK_PREFIX + secrets.token_hex(16)
    Secret(value=SecretStr(value)).save(name, overwrite=False)
    return name


def load_credential(name: str) -> str:
    """The value a job's Secret block holds; a clear error when it was deleted."""
    try:
        block = cast("Secret[Any]", Secret.load(name))  # loaded synchronously here
    except ValueError:
        raise ConnectionReferenceError(
            f"credential {name!r} no longer exists (it is deleted with its job); "
            "submit the job again with the connection"
        ) from None
    raw = block.value.get_secret_value()  # the JSON text as saved (`get()` would parse it)
    return raw if isinstance(raw, str) else json.dumps(raw)


def delete_credentials(names: list[str]) -> int:
    """Delete the Secret blocks of a job; returns how many were deleted (missing ones are fine)."""
    deleted = 0
    for name in dict.fromkeys(names):
        if not name.startswith(BLOCK_PREFIX):
            continue
        try:
            Secret.delete(name)
            deleted += 1
        except (ObjectNotFound, ValueError):
            continue
        except Exception as exc:  # a left-over block is harmless; the job deletion goes on
            log.warning("could not delete credential block %s: %s", name, type(exc).__name__)
    return deleted
