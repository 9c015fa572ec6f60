"""The parameters of a batch flow, declared once: its request model's fields plus `projects_dir`.

`@job_flow(entry)` gives the flow function the signature Prefect reads (names, annotated types
with their descriptions, defaults) from the job type's request model, so the six flows do not
repeat the shared parameters and their defaults cannot drift from the model's. The function itself
takes `**parameters` and turns them into the validated request with `job_request`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

from prefect_ombudsman.flows.runner import batch_flow, request_from
from prefect_ombudsman.jobs.models import BatchRequest, ProjectsDir
from prefect_ombudsman.jobs.types import JobType

RequestT = TypeVar("RequestT", bound=BaseModel)

PROJECTS_DIR = "projects_dir"
"""The one flow parameter that is not a request field: where the projects live on this worker."""


def field_annotation(field: FieldInfo) -> Any:
    """`Annotated[type, constraints..., Field(title, description, examples)]` of a model field: what
    Prefect's run form and parameter validation read (the default stays the parameter's own)."""
    info = Field(title=field.title, description=field.description, examples=field.examples)
    return Annotated[(field.annotation, *field.metadata, info)]


def flow_signature(model: type[BaseModel]) -> inspect.Signature:
    """`job_name`, the fields the model adds (its items first), the shared fields, `projects_dir`;
    keyword-only, each annotated with the model's field type and defaulting to the model's default."""
    defaults = model()
    shared = list(BatchRequest.model_fields)
    own = [name for name in model.model_fields if name not in shared]
    ordered = ["job_name", *own, *(name for name in shared if name != "job_name")]
    parameters = []
    for name in ordered:
        parameters.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=getattr(defaults, name),
                annotation=field_annotation(model.model_fields[name]),
            )
        )
    parameters.append(
        inspect.Parameter(
            PROJECTS_DIR, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ProjectsDir
        )
    )
    return inspect.Signature(parameters, return_annotation=Any)


def job_flow(entry: JobType) -> Callable[[Callable[..., Any]], Any]:
    """The Prefect flow of a job type: named by the registry, its parameters the request model's."""

    def decorate(fn: Callable[..., Any]) -> Any:
        signature = flow_signature(entry.request)
        fn.__signature__ = signature  # type: ignore[attr-defined]
        fn.__annotations__ = {
            **{p.name: p.annotation for p in signature.parameters.values()},
            "return": Any,
        }
        return batch_flow(entry.flow_name)(fn)

    return decorate


def job_request(
    model: type[RequestT], parameters: dict[str, Any], **overrides: Any
) -> tuple[RequestT, str | None]:
    """A flow run's parameters as (validated request, projects_dir)."""
    return request_from(model, parameters, **overrides), parameters.get(PROJECTS_DIR)
