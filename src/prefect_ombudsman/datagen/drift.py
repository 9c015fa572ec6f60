"""Drift: known differences planted in one target, and a manifest of exactly what was planted.

A drift spec names counts (or rates) per table and kind. Rows are picked once per table from a
seeded RNG (disjoint across kinds, so each changed row changes one column of one kind), applied
while the chunks stream past, and every change is recorded with its key, column, source value
and target value. A change that would not change anything (rounding 10.00, truncating "A") is
not made and not listed, so the manifest is exactly what a row-by-row diff finds.

Spec (YAML or JSON), e.g.::

    target: target            # which of the item's targets (reference or index); default: the last
    seed: 7                   # default: derived from the item's seed
    manifest: results/drift/retail.json   # default: <project>/results/drift/<job>_<operation>.json
    tables:
      fact_sales:
        missing_rows: 0.001             # a rate (< 1) or a count
        extra_rows: 25
        changed_values: {count: 40, columns: [quantity, discount_amount]}
        nulls: {count: 10}
        orphan_fks: {count: 5, columns: [dim_customer_key]}
        rounding: {count: 10, scale: 0}
      dim_customer:
        truncated_strings: {count: 8, columns: [email]}
        shifted_timestamps: {count: 6, seconds: 7200}
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prefect_ombudsman.atomic import write_json_atomic
from prefect_ombudsman.datagen.catalog import Column, StarSchema, TableSpec
from prefect_ombudsman.datagen.chunks import name_hash
from prefect_ombudsman.datagen.generator import GenerationPlan, rows_at
from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.json_values import jsonable

MANIFEST_FORMAT = "ombudsman-drift-manifest/1"
ROW_KINDS = ("missing_rows", "extra_rows")
VALUE_KINDS = (
    "changed_values",
    "nulls",
    "orphan_fks",
    "truncated_strings",
    "shifted_timestamps",
    "rounding",
)
KINDS = ROW_KINDS + VALUE_KINDS
IMPLIED_ORPHAN_SAMPLE = 1000


class KindSpec(BaseModel):
    """How many rows (a count, or a rate of the table's rows) and which columns."""

    model_config = ConfigDict(extra="forbid")

    count: int | None = Field(default=None, ge=0, le=1_000_000_000)
    rate: float | None = Field(default=None, gt=0, le=1)
    columns: list[str] | None = None
    seconds: int | None = Field(
        default=None, description="shifted_timestamps: shift of timestamp columns"
    )
    days: int | None = Field(default=None, description="shifted_timestamps: shift of date columns")
    scale: int | None = Field(
        default=None, ge=0, description="rounding: decimal places kept (default 0)"
    )
    length: int | None = Field(
        default=None, ge=0, description="truncated_strings: characters kept (default half)"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected a count, a rate or a mapping")
        if isinstance(value, int):
            return {"count": value}
        if isinstance(value, float):
            return {"rate": value} if value < 1 else {"count": int(value)}
        return value

    @model_validator(mode="after")
    def _one_amount(self) -> KindSpec:
        if self.count is None and self.rate is None:
            raise ValueError("give 'count' or 'rate'")
        if self.count is not None and self.rate is not None:
            raise ValueError("give either 'count' or 'rate', not both")
        return self

    def rows(self, table_rows: int) -> int:
        if self.count is not None:
            return self.count
        return max(1, int(round((self.rate or 0) * table_rows)))


class TableDrift(BaseModel):
    model_config = ConfigDict(extra="forbid")

    missing_rows: KindSpec | None = None
    extra_rows: KindSpec | None = None
    changed_values: KindSpec | None = None
    nulls: KindSpec | None = None
    orphan_fks: KindSpec | None = None
    truncated_strings: KindSpec | None = None
    shifted_timestamps: KindSpec | None = None
    rounding: KindSpec | None = None


class DriftSpec(BaseModel):
    """The drift of one item: which target, which seed, where the manifest goes, what per table."""

    model_config = ConfigDict(extra="forbid")

    target: str | int | None = None
    seed: int | None = Field(default=None, ge=0)
    manifest: str | None = None
    tables: dict[str, TableDrift] = Field(default_factory=dict)


def parse_drift(raw: Any, source: str = "drift") -> DriftSpec:
    """Validate a drift spec; the error names the field (and `source`, e.g. the file)."""
    if isinstance(raw, DriftSpec):
        return raw
    try:
        return DriftSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigurationError(f"{source}: {problems}") from None


def load_drift_file(path: str | Path) -> DriftSpec:
    """Read a drift spec from a YAML or JSON file."""
    from prefect_ombudsman.yamlfiles import load_yaml_file

    file = Path(path)
    raw = load_yaml_file(file, "drift file")
    return parse_drift(raw, f"drift file {file}")


# ----------------------------------------------------------------------------- eligibility


def eligible_columns(table: TableSpec, kind: str) -> list[Column]:
    """The columns a kind of drift may touch in `table`."""
    key = table.key.name
    plain = [c for c in table.columns if c.name != key and not c.references]
    if kind == "changed_values":
        return plain
    if kind == "nulls":
        return [c for c in table.columns if c.nullable and c.name != key]
    if kind == "orphan_fks":
        return table.foreign_keys
    if kind == "truncated_strings":
        return [c for c in plain if c.type.kind == "string"]
    if kind == "shifted_timestamps":
        return [c for c in plain if c.type.kind in ("date", "timestamp")]
    if kind == "rounding":
        return [c for c in plain if c.type.kind == "decimal" and (c.type.scale or 0) > 0]
    return []


def _chosen_columns(table: TableSpec, kind: str, spec: KindSpec) -> list[Column]:
    allowed = eligible_columns(table, kind)
    if not allowed:
        raise ConfigurationError(
            f"drift.tables.{table.name}.{kind}: table {table.name!r} has no column this kind can change"
        )
    if not spec.columns:
        return allowed
    names = {c.name: c for c in allowed}
    unknown = [c for c in spec.columns if c not in names]
    if unknown:
        raise ConfigurationError(
            f"drift.tables.{table.name}.{kind}.columns: {', '.join(unknown)} cannot be used; "
            f"allowed columns: {', '.join(names)}"
        )
    return [names[c] for c in spec.columns]


def check_drift(spec: DriftSpec, schema: StarSchema) -> None:
    """Refuse tables and columns the schema does not have (before any data is generated)."""
    for name, table_drift in spec.tables.items():
        table = schema.table(name)
        for kind in VALUE_KINDS:
            kind_spec = getattr(table_drift, kind)
            if kind_spec is not None:
                _chosen_columns(table, kind, kind_spec)


# ----------------------------------------------------------------------------- the plan


@dataclass
class TableDriftPlan:
    """Row positions per kind (sorted, disjoint) and what each changed row gets."""

    table: TableSpec
    rows: int
    missing: np.ndarray
    extra: int
    # kind -> (positions, column index into `columns[kind]`, uniform draws)
    changes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    columns: dict[str, list[Column]]
    options: dict[str, KindSpec]
    entries: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    missing_keys: list[int] = field(default_factory=list)
    extra_keys: list[int] = field(default_factory=list)
    implied_orphans: dict[str, dict[str, Any]] = field(default_factory=dict)


class DriftPlan:
    """Drift for one target of one generation plan; `apply` changes chunks, `manifest` reports."""

    def __init__(self, spec: DriftSpec, plan: GenerationPlan, target_label: str) -> None:
        self.spec = spec
        self.plan = plan
        self.target = target_label
        self.seed = (
            spec.seed
            if spec.seed is not None
            else (plan.seed ^ name_hash("drift")) & ((1 << 62) - 1)
        )
        self.tables: dict[str, TableDriftPlan] = {}
        self._implied: dict[str, dict[str, dict[str, Any]]] = {}
        generated = {t.name for t in plan.tables}
        for name, table_drift in spec.tables.items():
            table = plan.schema.table(name)
            if table.name not in generated:
                raise ConfigurationError(
                    f"drift.tables.{name}: this item generates only {', '.join(sorted(generated))}"
                )
            self.tables[table.name] = self._plan_table(table, table_drift)

    def _plan_table(self, table: TableSpec, drift: TableDrift) -> TableDriftPlan:
        rows = self.plan.sizes[table.name]
        rng = np.random.default_rng(
            np.random.SeedSequence([self.seed, name_hash(table.name), 0x0D21F7])
        )
        kinds = {k: getattr(drift, k) for k in KINDS if getattr(drift, k) is not None}
        columns = {k: _chosen_columns(table, k, s) for k, s in kinds.items() if k in VALUE_KINDS}
        wanted = {k: s.rows(rows) for k, s in kinds.items() if k != "extra_rows"}
        total = sum(wanted.values())
        if total > rows:
            raise ConfigurationError(
                f"drift.tables.{table.name}: {total} rows asked for ({', '.join(f'{k}={v}' for k, v in wanted.items())}) "
                f"but the table has {rows}"
            )
        picked = distinct_positions(rng, rows, total)
        offset = 0
        missing = np.empty(0, dtype=np.int64)
        changes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for kind in KINDS:
            if kind not in wanted:
                continue
            positions = np.asarray(picked[offset : offset + wanted[kind]], dtype=np.int64)
            offset += wanted[kind]
            order = np.argsort(positions)
            if kind == "missing_rows":
                missing = positions[order]
                continue
            which = rng.integers(0, len(columns[kind]), len(positions))[order]
            draws = rng.random(len(positions))[order]
            changes[kind] = (positions[order], which, draws)
        extra = kinds["extra_rows"].rows(rows) if "extra_rows" in kinds else 0
        return TableDriftPlan(table, rows, missing, extra, changes, columns, kinds)

    # ------------------------------------------------------------------------- applying

    def apply(self, table: TableSpec, start: int, chunk: pa.Table) -> pa.Table:
        """The chunk as the drift target receives it (rows at positions start..start+len-1)."""
        plan = self.tables.get(table.name)
        stop = start + chunk.num_rows
        keys = chunk.column(table.key.name).to_numpy()
        if plan is not None:
            for kind, (positions, which, draws) in plan.changes.items():
                lo, hi = np.searchsorted(positions, [start, stop])
                if lo == hi:
                    continue
                chunk = self._change(
                    plan, kind, chunk, keys, positions[lo:hi] - start, which[lo:hi], draws[lo:hi]
                )
        removed = np.zeros(chunk.num_rows, dtype=bool)
        if plan is not None and len(plan.missing):
            lo, hi = np.searchsorted(plan.missing, [start, stop])
            local = plan.missing[lo:hi] - start
            removed[local] = True
            plan.missing_keys.extend(int(k) for k in keys[local])
        self._count_implied_orphans(table, chunk, keys, removed)
        if removed.any():
            chunk = chunk.filter(pa.array(~removed))
        return chunk

    def extra_rows(self, table: TableSpec) -> pa.Table | None:
        """Rows only the drift target gets: new keys after the last generated one."""
        plan = self.tables.get(table.name)
        if plan is None or not plan.extra:
            return None
        rng = np.random.default_rng(
            np.random.SeedSequence([self.seed, name_hash(table.name), 0xE7A5])
        )
        rows = rows_at(self.plan, table, plan.rows, plan.extra, rng)
        plan.extra_keys.extend(int(k) for k in rows.column(table.key.name).to_numpy())
        return rows

    def _change(
        self,
        plan: TableDriftPlan,
        kind: str,
        chunk: pa.Table,
        keys: np.ndarray,
        local: np.ndarray,
        which: np.ndarray,
        draws: np.ndarray,
    ) -> pa.Table:
        options = plan.options[kind]
        for column_index in np.unique(which):
            column = plan.columns[kind][column_index]
            rows = local[which == column_index]
            row_draws = draws[which == column_index]
            position = chunk.schema.get_field_index(column.name)
            array = chunk.column(position).combine_chunks()
            before = array.take(pa.array(rows)).to_pylist()
            after = [
                _changed_value(
                    kind, column, value, draw, options, self._orphan_base(plan.table, column), n
                )
                for n, (value, draw) in enumerate(zip(before, row_draws, strict=True))
            ]
            keep = [
                i
                for i, (b, a) in enumerate(zip(before, after, strict=True))
                if a is not _UNCHANGED and a != b
            ]
            if not keep:
                continue
            mask = np.zeros(len(array), dtype=bool)
            mask[rows[keep]] = True
            replacement = pa.array([after[i] for i in keep], type=array.type)
            new_array = pc.replace_with_mask(array, pa.array(mask), replacement)
            chunk = chunk.set_column(position, chunk.schema.field(position), new_array)
            for i in keep:
                plan.entries[kind].append(
                    {
                        "key": int(keys[rows[i]]),
                        "column": column.name,
                        "source": jsonable(before[i]),
                        "target": jsonable(after[i]),
                    }
                )
        return chunk

    def _orphan_base(self, table: TableSpec, column: Column) -> int:
        """The first key past the referenced dimension's keys (orphans count up from it)."""
        if not column.references:
            return 0
        ref_table, _, _ = column.references.partition(".")
        if ref_table == "dim_date":
            return int(self.plan.calendar.keys[-1]) + 1
        return int(self.plan.sizes[ref_table]) + 1_000_001

    def _removed_dim_keys(self, table: str) -> dict[str, np.ndarray] | None:
        """FK column -> keys of referenced rows that this target does not get."""
        try:
            spec = self.plan.schema.table(table)
        except ConfigurationError:
            return None
        removed: dict[str, np.ndarray] = {}
        for column in spec.foreign_keys:
            ref_table = column.references.partition(".")[0] if column.references else ""
            ref_plan = self.tables.get(ref_table)
            if ref_plan is None or not len(ref_plan.missing):
                continue
            if ref_table == "dim_date":
                removed[column.name] = self.plan.calendar.keys[ref_plan.missing]
            else:
                removed[column.name] = ref_plan.missing + 1
        return removed or None

    def _count_implied_orphans(
        self, table: TableSpec, chunk: pa.Table, keys: np.ndarray, removed: np.ndarray
    ) -> None:
        dims = self._removed_dim_keys(table.name)
        if not dims:
            return
        for column, missing_keys in dims.items():
            values = chunk.column(column).to_numpy(zero_copy_only=False)
            hits = np.isin(values, missing_keys) & ~removed
            if not hits.any():
                continue
            record = self._implied.setdefault(table.name, {}).setdefault(
                column, {"count": 0, "keys": []}
            )
            record["count"] += int(hits.sum())
            room = IMPLIED_ORPHAN_SAMPLE - len(record["keys"])
            if room > 0:
                record["keys"].extend(int(k) for k in keys[hits][:room])

    # ------------------------------------------------------------------------- the manifest

    def manifest(self) -> dict[str, Any]:
        """Exactly what was planted, per table and kind, plus what a row diff must report."""
        tables: dict[str, Any] = {}
        expected: dict[str, Any] = {}
        for name, plan in self.tables.items():
            entries = {
                kind: sorted(plan.entries.get(kind, []), key=lambda e: e["key"])
                for kind in plan.changes
            }
            changed: dict[int, set[str]] = defaultdict(set)
            for kind_entries in entries.values():
                for entry in kind_entries:
                    changed[entry["key"]].add(entry["column"])
            tables[name] = {
                "schema": plan.table.schema,
                "key_columns": [plan.table.key.name],
                "rows_generated": plan.rows,
                "rows_in_target": plan.rows - len(plan.missing_keys) + len(plan.extra_keys),
                "missing_rows": sorted(plan.missing_keys),
                "extra_rows": sorted(plan.extra_keys),
                **entries,
                "counts": {  # per kind asked for: what was actually planted
                    kind: len(plan.missing_keys)
                    if kind == "missing_rows"
                    else len(plan.extra_keys)
                    if kind == "extra_rows"
                    else len(entries.get(kind, []))
                    for kind in KINDS
                    if kind in plan.options
                },
            }
            expected[name] = {
                "missing_in_target": sorted(plan.missing_keys),
                "extra_in_target": sorted(plan.extra_keys),
                "changed": [{"key": k, "columns": sorted(c)} for k, c in sorted(changed.items())],
            }
        for name, columns in self._implied.items():
            spec = self.plan.schema.table(name)
            tables.setdefault(name, {"schema": spec.schema, "key_columns": [spec.key.name]})
            tables[name]["implied_orphans"] = columns
        return {
            "format": MANIFEST_FORMAT,
            "schema_type": self.plan.schema.name,
            "seed": self.plan.seed,
            "drift_seed": self.seed,
            "target": self.target,
            "generation": self.plan.describe(),
            "tables": tables,
            "expected": expected,
        }

    def summary(self) -> dict[str, dict[str, int]]:
        """Counts per table and kind (what the operation's result shows)."""
        manifest = self.manifest()
        return {
            name: table.get("counts", {})
            for name, table in manifest["tables"].items()
            if "counts" in table
        }


_UNCHANGED = object()


def distinct_positions(rng: np.random.Generator, rows: int, count: int) -> np.ndarray:
    """`count` distinct positions below `rows` in random order, in O(count) memory for sparse picks."""
    if count == 0:
        return np.empty(0, dtype=np.int64)
    if count * 8 >= rows:
        return rng.permutation(rows)[:count].astype(np.int64)
    chosen = np.unique(rng.integers(0, rows, count + count // 4 + 16))
    while len(chosen) < count:
        chosen = np.unique(np.concatenate([chosen, rng.integers(0, rows, count)]))
    return rng.permutation(chosen)[:count].astype(np.int64)


def _changed_value(
    kind: str, column: Column, value: Any, draw: float, options: KindSpec, orphan_base: int, n: int
) -> Any:
    """The value a changed cell gets (or `_UNCHANGED` when this kind cannot change it)."""
    if kind == "nulls":
        return None if value is not None else _UNCHANGED
    if value is None:
        return _UNCHANGED
    column_kind = column.type.kind
    if kind == "orphan_fks":
        return orphan_base + int(draw * 1000) * 1000 + n
    if kind == "changed_values":
        if column_kind in ("int32", "int64"):
            return value + 1 + int(draw * 5)
        if column_kind == "decimal":
            step = Decimal(1).scaleb(-(column.type.scale or 0))
            return value + step * (1 + int(draw * 999))
        if column_kind == "date":
            return value + timedelta(days=1 + int(draw * 30))
        if column_kind == "timestamp":
            return value + timedelta(seconds=1 + int(draw * 3600))
        text = str(value)
        if not text:
            return "x"
        return text[:-1] + ("X" if text[-1] != "X" else "Y")
    if kind == "truncated_strings":
        keep = options.length if options.length is not None else max(1, len(value) // 2)
        return value[: max(0, keep)] if len(value) > keep else _UNCHANGED
    if kind == "shifted_timestamps":
        if column_kind == "date" or isinstance(value, date) and not isinstance(value, datetime):
            return value + timedelta(days=options.days if options.days is not None else 1)
        return value + timedelta(seconds=options.seconds if options.seconds is not None else 3600)
    if kind == "rounding":
        keep = options.scale if options.scale is not None else 0
        return value.quantize(Decimal(1).scaleb(-keep), rounding="ROUND_HALF_UP").quantize(
            Decimal(1).scaleb(-(column.type.scale or 0))
        )
    return _UNCHANGED


def write_manifest(manifest: dict[str, Any], path: Path) -> Path:
    return write_json_atomic(path, manifest, indent=1)


__all__ = [
    "KINDS",
    "DriftPlan",
    "DriftSpec",
    "KindSpec",
    "TableDrift",
    "check_drift",
    "eligible_columns",
    "load_drift_file",
    "parse_drift",
    "write_manifest",
]
