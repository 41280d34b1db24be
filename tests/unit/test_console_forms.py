"""The run-now form: fields from the params model, and posted strings back to values."""

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from app.console.errors import ConsoleError
from app.console.forms import form_fields, params_from_form
from app.console.schemas import FieldError


class Backfill(BaseModel):
    since: str = Field(description="first day")
    limit: int = 100
    ratio: float | None = None
    verbose: bool = False
    mode: Literal["fast", "safe"] = "safe"
    tables: list[str] = Field(default_factory=list)


def test_each_field_gets_its_kind_default_and_required_flag():
    fields = {f["name"]: f for f in form_fields(Backfill.model_json_schema())}
    assert fields["since"]["required"] is True
    assert fields["since"]["description"] == "first day"
    assert (fields["limit"]["kind"], fields["limit"]["value"]) == ("number", 100)
    assert fields["ratio"]["kind"] == "number"
    assert fields["verbose"]["kind"] == "checkbox"
    assert (fields["mode"]["kind"], fields["mode"]["options"]) == ("select", ["fast", "safe"])
    assert fields["tables"]["kind"] == "json"


def test_a_refused_form_shows_what_was_posted_and_each_error():
    refused = ConsoleError(400, "refused", [FieldError(field="limit", value="x", message="bad")])
    fields = {
        f["name"]: f
        for f in form_fields(Backfill.model_json_schema(), {"param.limit": "x"}, refused)
    }
    assert fields["limit"]["value"] == "x"
    assert fields["limit"]["error"].message == "bad"
    assert fields["since"]["error"] is None


def test_a_job_without_params_has_no_fields():
    assert form_fields(None) == []
    assert params_from_form(None, {"param.x": "1"}) == {}


def test_posted_strings_become_what_the_model_checks():
    given = params_from_form(
        Backfill,
        {
            "param.since": "2026-01-01",
            "param.limit": "",  # empty: the default applies
            "param.verbose": "on",
            "param.tables": '["a", "b"]',
            "param.unknown": "ignored",
        },
    )
    assert given == {"since": "2026-01-01", "verbose": True, "tables": ["a", "b"]}
    assert params_from_form(Backfill, {})["verbose"] is False


def test_json_that_does_not_parse_is_a_field_error():
    with pytest.raises(ConsoleError) as refused:
        params_from_form(Backfill, {"param.tables": "[oops"})
    assert refused.value.status == 400
    assert refused.value.fields[0].field == "tables"
