"""The three star schemas of SPEC §8, by `schema_type`."""

from prefect_ombudsman.datagen.catalog import StarSchema
from prefect_ombudsman.datagen.schemas.finance import FINANCE
from prefect_ombudsman.datagen.schemas.healthcare import HEALTHCARE
from prefect_ombudsman.datagen.schemas.retail import RETAIL

SCHEMAS: dict[str, StarSchema] = {s.name: s for s in (RETAIL, FINANCE, HEALTHCARE)}

__all__ = ["SCHEMAS"]
