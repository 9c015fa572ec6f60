"""The built-in validators, one module per family; importing this package registers them."""

from prefect_ombudsman.validation.validators import (  # noqa: F401
    custom,
    dimensions,
    distribution,
    integrity,
    metrics,
    quality,
    schema,
    timeseries,
)
