"""A job's parameters: given by hand (CLI, console), validated by the job's model.

A job declares `params=Model`, a pydantic model. A scheduled run uses the model's
defaults; a job whose model has required fields runs only by hand. What an
operator gives is checked field by field before anything is written, and each
bad field gets a line: its name, the value given, and why it was refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from app.errors import ConfigError, shown


@dataclass(frozen=True)
class ParamProblem:
    """One refused field: its name, the value given (None when missing), and why."""

    field: str
    value: Any
    message: str

    @property
    def line(self) -> str:
        """`field=value: why`, as the CLI prints it."""
        return f"{self.field}={self.shown_value}: {self.message}"

    @property
    def shown_value(self) -> str:
        """The value as echoed back: cut, with control characters escaped."""
        return "missing" if self.value is _MISSING else shown(self.value)

    @property
    def given(self) -> Any:
        """The value, or None when it was missing."""
        return None if self.value is _MISSING else self.value


_MISSING = object()


class InvalidParams(ConfigError):  # noqa: N818 - reads as the condition it reports
    """Parameters the job's model refuses; one line per field."""

    def __init__(self, job_name: str, fields: Sequence[ParamProblem]) -> None:
        self.problems = [problem.line for problem in fields]
        super().__init__(
            f"job {job_name!r} refused its parameters:\n  " + "\n  ".join(self.problems)
        )
        self.fields = list(fields)


def requires_params(model: type[BaseModel] | None) -> bool:
    """True when the model has a field without a default: the job runs only by hand."""
    return model is not None and any(f.is_required() for f in model.model_fields.values())


def validate_params(
    job_name: str, model: type[BaseModel] | None, given: Mapping[str, Any]
) -> dict[str, Any] | None:
    """`given`, checked by `model`, as the JSON stored on the run (defaults filled in).

    None for a job without parameters given none. Raises InvalidParams.
    """
    if model is None:
        if given:
            raise InvalidParams(
                job_name,
                [ParamProblem(name, v, "the job takes no parameters") for name, v in given.items()],
            )
        return None
    known = model.model_fields
    unknown = [
        ParamProblem(
            name, value, "unknown parameter; the job takes " + (", ".join(known) or "none")
        )
        for name, value in given.items()
        if name not in known
    ]
    try:
        checked = model.model_validate(dict(given))
    except ValidationError as exc:
        raise InvalidParams(job_name, unknown + _field_problems(exc)) from None
    if unknown:
        raise InvalidParams(job_name, unknown)
    dumped: dict[str, Any] = checked.model_dump(mode="json")
    return dumped


def _field_problems(exc: ValidationError) -> list[ParamProblem]:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(the parameters)"
        value = _MISSING if error["type"] == "missing" else error.get("input")
        problems.append(ParamProblem(where, value, error["msg"]))
    return problems


def params_from_cli(pairs: Sequence[str], params_json: str | None) -> dict[str, Any]:
    """`--params-json '{...}'` then `--param key=value` pairs (which win), as given."""
    given: dict[str, Any] = {}
    if params_json is not None:
        try:
            loaded = json.loads(params_json)
        except ValueError as exc:
            raise ConfigError(f"--params-json is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"--params-json must be a JSON object, not {type(loaded).__name__}; "
                "e.g. '{\"limit\": 100}'"
            )
        given.update(loaded)
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise ConfigError(f"--param {shown(pair)} is not key=value; e.g. --param limit=100")
        given[name.strip()] = value
    return given


def model_of(model: type[BaseModel] | None, stored: Mapping[str, Any] | None) -> BaseModel | None:
    """The model instance a body gets: the run's stored parameters, or the defaults."""
    if model is None:
        return None
    return model.model_validate(dict(stored or {}))
