"""The batch flows (one module per job type), all on the bounded runner of `runner.py`."""

from prefect_ombudsman.flows.custom import custom_batch

__all__ = ["custom_batch"]
