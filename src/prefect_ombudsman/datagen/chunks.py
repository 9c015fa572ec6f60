"""What a table builder of a star schema gets: its chunk's positions and RNG, the plan's sizes
and calendar (`ChunkContext`), the per-table streams facts also read (`stream_rng`), and values
with a null mask (`WithNulls`). Below the schemas and the generator: both import it."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from prefect_ombudsman.datagen.calendar import Calendar


def name_hash(name: str) -> int:
    """A stable 63-bit number for a name (Python's `hash()` is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1


def chunk_rng(seed: int, table: str, chunk_index: int) -> np.random.Generator:
    """The RNG of one logical chunk of one table."""
    return np.random.default_rng(np.random.SeedSequence([seed, name_hash(table), chunk_index]))


def stream_rng(seed: int, name: str) -> np.random.Generator:
    """The RNG of a whole-table attribute stream (e.g. product list prices) that facts also read."""
    return np.random.default_rng(np.random.SeedSequence([seed, name_hash("stream:" + name)]))


@dataclass(frozen=True)
class WithNulls:
    """A column value plus a null mask (True = NULL)."""

    values: Any
    mask: np.ndarray


@dataclass
class ChunkContext:
    """What a table builder gets: the positions to build, their RNG, the plan's sizes and calendar."""

    seed: int
    table: str
    start: int
    count: int
    rng: np.random.Generator
    sizes: Mapping[str, int]
    calendar: Calendar
    profile: str

    @property
    def keys(self) -> np.ndarray:
        """Surrogate keys of the rows: positions + 1."""
        return np.arange(self.start + 1, self.start + self.count + 1, dtype=np.int64)

    def size(self, table: str) -> int:
        return int(self.sizes[table])

    def fact_dates(self) -> np.ndarray:
        """Indexes into the calendar, with the schema's weekday and seasonal pattern."""
        return self.calendar.sample(self.rng, self.count, self.profile)
