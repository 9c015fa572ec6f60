"""Dimensions: dim_business_keys, dim_surrogate_keys, composite_keys, scd1, scd2.

These compare key sets and per-key attributes across two databases, which aggregates cannot
prove; they read only the key (and the named attribute) columns, streamed in chunks, up to
`max_rows` per side (an ERROR beyond it: use row_checksum / batch_comparison for large tables).
Every one accepts the dimension as `dim` or `table` (the Studio's generated pipelines pass `table`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator
from sqlalchemy import select

from prefect_ombudsman.errors import ConfigurationError
from prefect_ombudsman.json_values import jsonable
from prefect_ombudsman.validation.configs import StepConfig, as_list
from prefect_ombudsman.validation.context import (
    SAMPLE_LIMIT,
    Outcome,
    StepContext,
    TablePair,
    failed,
    passed,
    skipped,
)
from prefect_ombudsman.validation.registry import register_validator
from prefect_ombudsman.validation.spec import Severity, Tolerance
from prefect_ombudsman.validation.values import canonical, numbers_match, to_decimal


class DimConfig(StepConfig):
    dim: str | None = None
    table: str | None = None
    source_table: str | None = None
    target_table: str | None = None
    max_rows: int = Field(default=2_000_000, ge=1)

    @model_validator(mode="after")
    def _name(self) -> DimConfig:
        if not (self.dim or self.table or (self.source_table and self.target_table)):
            raise ValueError("give dim (or table)")
        return self

    @property
    def logical(self) -> str | None:
        return self.dim or self.table


def _pair(ctx: StepContext, cfg: DimConfig) -> TablePair:
    return ctx.pair(cfg.logical, source=cfg.source_table, target=cfg.target_table)


def _meta(ctx: StepContext, cfg: DimConfig, key: str) -> Any:
    return ctx.meta(cfg.logical).get(key)


def pull(
    ctx: StepContext, pair: TablePair, label: str, keys: list[str], values: list[str], max_rows: int
) -> dict[tuple[Any, ...], list[tuple[Any, ...]]]:
    """{key tuple: [value tuples]} of one side, read in chunks (bounded by max_rows)."""
    t = pair.side(label)
    stmt = select(*[t.col(c) for c in keys], *[t.col(c) for c in values]).select_from(t.sa)
    out: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    seen = 0
    for chunk in t.side.stream(stmt, ctx.recorder(label), tables=(t,)):
        seen += len(chunk)
        if seen > max_rows:
            raise ConfigurationError(
                f"{t.display} ({label}) has more than {max_rows} rows; raise max_rows or use row_checksum"
            )
        for row in chunk:
            key = tuple(canonical(v) for v in row[: len(keys)])
            out.setdefault(key, []).append(tuple(row[len(keys) :]))
    return out


def _same(a: Any, b: Any, tolerance: Tolerance) -> bool:
    if (
        not isinstance(a, str)
        and not isinstance(b, str)
        and to_decimal(a) is not None
        and to_decimal(b) is not None
    ):
        return numbers_match(a, b, tolerance)
    return canonical(a) == canonical(b)


def _key_text(key: tuple[Any, ...]) -> Any:
    return jsonable(key[0]) if len(key) == 1 else jsonable(list(key))


def _set_diff(src: dict[Any, Any], tgt: dict[Any, Any]) -> dict[str, Any]:
    missing = [k for k in src if k not in tgt]
    extra = [k for k in tgt if k not in src]
    return {
        "source_keys": len(src),
        "target_keys": len(tgt),
        "missing_in_target": len(missing),
        "extra_in_target": len(extra),
        "samples": {
            "missing_in_target": [_key_text(k) for k in missing[:SAMPLE_LIMIT]],
            "extra_in_target": [_key_text(k) for k in extra[:SAMPLE_LIMIT]],
        },
    }


# ----------------------------------------------------------------------------- dim_business_keys / composite_keys


class BusinessKeysConfig(DimConfig):
    business_key: str | list[str] | None = None


def dim_business_keys(ctx: StepContext, cfg: BusinessKeysConfig) -> Outcome:
    """The same business keys on both sides (missing / extra keys with samples)."""
    keys = as_list(cfg.business_key or _meta(ctx, cfg, "business_key"))
    if not keys:
        return skipped("no business_key (config or metadata)")
    return _compare_key_sets(ctx, cfg, keys)


class CompositeKeysConfig(DimConfig):
    composite_keys: list[str] | None = Field(default=None, alias="columns")


def composite_keys(ctx: StepContext, cfg: CompositeKeysConfig) -> Outcome:
    """The same composite key tuples on both sides."""
    keys = list(cfg.composite_keys or as_list(_meta(ctx, cfg, "composite_keys")))
    if not keys:
        return skipped("no composite_keys (config or metadata)")
    return _compare_key_sets(ctx, cfg, keys)


def _compare_key_sets(ctx: StepContext, cfg: DimConfig, keys: list[str]) -> Outcome:
    pair = _pair(ctx, cfg)
    src = pull(ctx, pair, "source", keys, [], cfg.max_rows)
    tgt = pull(ctx, pair, "target", keys, [], cfg.max_rows)
    details = {**pair.names, "key_columns": keys, **_set_diff(src, tgt)}
    details["source_duplicate_keys"] = sum(1 for v in src.values() if len(v) > 1)
    details["target_duplicate_keys"] = sum(1 for v in tgt.values() if len(v) > 1)
    if details["missing_in_target"] or details["extra_in_target"]:
        return failed(
            details,
            f"key sets differ: {details['missing_in_target']} missing in target, {details['extra_in_target']} extra in target",
        )
    return passed(details, f"{len(src)} keys on both sides")


# ----------------------------------------------------------------------------- dim_surrogate_keys


class SurrogateKeysConfig(DimConfig):
    business_key: str | None = None
    surrogate_key: str | None = None


def dim_surrogate_keys(ctx: StepContext, cfg: SurrogateKeysConfig) -> Outcome:
    """A business key maps to the same surrogate key on both sides."""
    bk = cfg.business_key or _meta(ctx, cfg, "business_key")
    sk = cfg.surrogate_key or _meta(ctx, cfg, "surrogate_key")
    if not bk or not sk:
        return skipped("needs business_key and surrogate_key (config or metadata)")
    pair = _pair(ctx, cfg)
    src = pull(ctx, pair, "source", [bk], [sk], cfg.max_rows)
    tgt = pull(ctx, pair, "target", [bk], [sk], cfg.max_rows)
    differing = [
        k
        for k in src
        if k in tgt
        and sorted(map(canonical, (v[0] for v in src[k])), key=str)
        != sorted(map(canonical, (v[0] for v in tgt[k])), key=str)
    ]
    details = {**pair.names, "business_key": bk, "surrogate_key": sk, **_set_diff(src, tgt), "different_surrogate_keys": len(differing),
               "samples_different": [{"business_key": _key_text(k), "source": jsonable(src[k][0][0]), "target": jsonable(tgt[k][0][0])} for k in differing[:SAMPLE_LIMIT]]}  # fmt: skip
    if differing:
        return failed(details, f"{len(differing)} business keys map to different surrogate keys")
    return passed(
        details, f"{len(set(src) & set(tgt))} shared business keys map to the same surrogate keys"
    )


# ----------------------------------------------------------------------------- scd1


class Scd1Config(DimConfig):
    business_key: str | None = None
    scd1_attributes: list[str] | None = Field(default=None, alias="attributes")


def scd1(ctx: StepContext, cfg: Scd1Config) -> Outcome:
    """Type-1 attributes equal per shared business key (numbers within tolerance, text right-trimmed)."""
    bk = cfg.business_key or _meta(ctx, cfg, "business_key")
    attrs = list(cfg.scd1_attributes or as_list(_meta(ctx, cfg, "scd1_attributes")))
    if not bk or not attrs:
        return skipped("needs business_key and scd1_attributes (config or metadata)")
    pair = _pair(ctx, cfg)
    src = pull(ctx, pair, "source", [bk], attrs, cfg.max_rows)
    tgt = pull(ctx, pair, "target", [bk], attrs, cfg.max_rows)
    differing, columns = [], set()
    for key in src:
        if key not in tgt:
            continue
        a, b = src[key][-1], tgt[key][-1]
        cols = [attrs[i] for i in range(len(attrs)) if not _same(a[i], b[i], ctx.tolerance)]
        if cols:
            columns.update(cols)
            differing.append(
                {
                    "business_key": _key_text(key),
                    "columns": cols,
                    "source": jsonable(list(a)),
                    "target": jsonable(list(b)),
                }
            )
    details = {**pair.names, "business_key": bk, "attributes": attrs, **_set_diff(src, tgt), "changed_keys": len(differing),
               "changed_columns": sorted(columns), "samples_changed": differing[:SAMPLE_LIMIT]}  # fmt: skip
    if differing:
        return failed(
            details, f"{len(differing)} keys with changed attributes ({', '.join(sorted(columns))})"
        )
    return passed(details, "type-1 attributes match")


# ----------------------------------------------------------------------------- scd2


class Scd2Config(DimConfig):
    business_key: str | None = None
    effective_date: str | None = None
    end_date: str | None = None


def scd2(ctx: StepContext, cfg: Scd2Config) -> Outcome:
    """Version history per business key: same versions and dates on both sides, no overlapping periods."""
    bk = cfg.business_key or _meta(ctx, cfg, "business_key")
    eff = cfg.effective_date or _meta(ctx, cfg, "effective_date")
    end = cfg.end_date or _meta(ctx, cfg, "end_date")
    if not bk or not eff or not end:
        return skipped("needs business_key, effective_date and end_date (config or metadata)")
    pair = _pair(ctx, cfg)
    sides = {
        label: pull(ctx, pair, label, [bk], [eff, end], cfg.max_rows)
        for label in ("source", "target")
    }
    histories = {
        label: {k: sorted((canonical(v[0]), canonical(v[1])) for v in vs) for k, vs in rows.items()}
        for label, rows in sides.items()
    }
    different = [
        k
        for k in histories["source"]
        if k in histories["target"] and histories["source"][k] != histories["target"][k]
    ]
    overlaps = {
        label: [k for k, versions in h.items() if _overlapping(versions)]
        for label, h in histories.items()
    }
    details = {
        **pair.names, "business_key": bk, **_set_diff(sides["source"], sides["target"]),
        "different_histories": len(different), "source_overlapping_keys": len(overlaps["source"]), "target_overlapping_keys": len(overlaps["target"]),
        "samples_different": [{"business_key": _key_text(k), "source": histories["source"][k], "target": histories["target"][k]} for k in different[:SAMPLE_LIMIT]],
        "samples_overlapping": {label: [_key_text(k) for k in keys[:SAMPLE_LIMIT]] for label, keys in overlaps.items() if keys},
    }  # fmt: skip
    problems = (
        details["missing_in_target"]
        + details["extra_in_target"]
        + len(different)
        + len(overlaps["source"])
        + len(overlaps["target"])
    )
    if problems:
        return failed(
            details,
            f"SCD2 histories differ: {len(different)} keys with other versions, {details['missing_in_target']} missing, overlaps source {len(overlaps['source'])} / target {len(overlaps['target'])}",
        )
    return passed(details, "SCD2 histories match")


def _overlapping(versions: list[tuple[Any, Any]]) -> bool:
    for (_, end), (next_eff, _) in zip(versions, versions[1:], strict=False):
        if end is not None and next_eff is not None and str(end) > str(next_eff):
            return True
    return False


register_validator(
    "dim_business_keys",
    dim_business_keys,
    BusinessKeysConfig,
    category="dimensions",
    fail_severity=Severity.HIGH,
    failure_kind="dimension_mismatch",
)
register_validator(
    "dim_surrogate_keys",
    dim_surrogate_keys,
    SurrogateKeysConfig,
    category="dimensions",
    fail_severity=Severity.MEDIUM,
    failure_kind="dimension_mismatch",
)
register_validator(
    "composite_keys",
    composite_keys,
    CompositeKeysConfig,
    category="dimensions",
    fail_severity=Severity.HIGH,
    failure_kind="dimension_mismatch",
)
register_validator(
    "scd1",
    scd1,
    Scd1Config,
    category="dimensions",
    fail_severity=Severity.MEDIUM,
    failure_kind="dimension_mismatch",
)
register_validator(
    "scd2",
    scd2,
    Scd2Config,
    category="dimensions",
    fail_severity=Severity.HIGH,
    failure_kind="dimension_mismatch",
)
