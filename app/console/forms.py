"""The run-now form of a job with parameters: fields from its model's JSON Schema, and
the posted strings back into the values the model checks.

Numbers and strings are sent as typed; pydantic converts "5" to 5 as it does for
`cronlock run --param`. A checkbox that is not ticked is false. A list or an
object is typed as JSON. An empty field is left out, so the model's default applies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from app.console.errors import ConsoleError
from app.console.schemas import FieldError


def _kind(spec: Mapping[str, Any]) -> str:
    if "enum" in spec:
        return "select"
    kinds = {spec.get("type")} | {option.get("type") for option in spec.get("anyOf", [])}
    kinds.discard(None)
    kinds.discard("null")
    if kinds == {"boolean"}:
        return "checkbox"
    if kinds <= {"integer", "number"} and kinds:
        return "number"
    if kinds <= {"string"}:
        return "text"
    return "json"


def form_fields(
    schema: Mapping[str, Any] | None,
    posted: Mapping[str, Any] | None = None,
    refused: ConsoleError | None = None,
) -> list[dict[str, Any]]:
    """One entry per parameter: name, kind, value to show, and the error it got, if any."""
    if not schema:
        return []
    required = set(schema.get("required", []))
    errors: dict[str, FieldError] = {e.field: e for e in (refused.fields if refused else [])}
    fields = []
    for name, spec in schema.get("properties", {}).items():
        default = spec.get("default")
        kind = _kind(spec)
        shown = (posted or {}).get(f"param.{name}")
        if shown is None and default is not None:
            shown = json.dumps(default) if kind == "json" else default
        fields.append(
            {
                "name": name,
                "label": spec.get("title", name),
                "kind": kind,
                "value": "" if shown is None else shown,
                "required": name in required,
                "description": spec.get("description", ""),
                "options": spec.get("enum", []),
                "error": errors.get(name),
            }
        )
    return fields


def params_from_form(model: type[BaseModel] | None, form: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a posted form gives, as the job's model will check them."""
    if model is None:
        return {}
    given: dict[str, Any] = {}
    schema = model.model_json_schema()
    for name, spec in schema.get("properties", {}).items():
        raw = form.get(f"param.{name}")
        kind = _kind(spec)
        if kind == "checkbox":
            given[name] = raw == "on"
            continue
        if raw is None or str(raw).strip() == "":
            continue
        if kind == "json":
            try:
                given[name] = json.loads(str(raw))
            except ValueError as exc:
                raise ConsoleError(
                    400,
                    "a parameter is not valid JSON",
                    [FieldError(field=name, value=str(raw), message=f"not JSON: {exc}")],
                ) from None
            continue
        given[name] = str(raw)
    return given
