"""A job's parameters: validated field by field before anything is written."""

import pytest
from pydantic import BaseModel, Field

from app.core.params import (
    InvalidParams,
    model_of,
    params_from_cli,
    requires_params,
    validate_params,
)
from app.errors import ConfigError, InvalidJob
from app.job import Job


class Backfill(BaseModel):
    batch_size: int = Field(100, ge=1)
    limit: int | None = None
    dry_label: str = "x"


class NeedsDay(BaseModel):
    day: str


def test_valid_params_are_stored_with_their_defaults_filled_in():
    assert validate_params("b", Backfill, {"batch_size": "50"}) == {
        "batch_size": 50,
        "limit": None,
        "dry_label": "x",
    }


def test_each_bad_field_gets_a_line_naming_it_its_value_and_why():
    with pytest.raises(InvalidParams) as raised:
        validate_params("b", Backfill, {"batch_size": "0", "limit": "lots", "colour": "red"})
    problems = raised.value.problems
    assert problems[0].startswith("colour='red': unknown parameter; the job takes batch_size")
    assert any(
        p.startswith("batch_size='0': Input should be greater than or equal to 1") for p in problems
    )
    assert any(p.startswith("limit='lots': Input should be a valid integer") for p in problems)
    assert raised.value.message.count("\n") == 3


def test_a_missing_required_field_says_missing():
    with pytest.raises(InvalidParams, match="day=missing: Field required"):
        validate_params("d", NeedsDay, {})


def test_a_job_without_parameters_refuses_any():
    assert validate_params("p", None, {}) is None
    with pytest.raises(InvalidParams, match="limit='3': the job takes no parameters"):
        validate_params("p", None, {"limit": "3"})


def test_cli_pairs_win_over_json():
    assert params_from_cli(["limit=5", "label=a=b"], '{"limit": 1, "x": true}') == {
        "limit": "5",
        "x": True,
        "label": "a=b",
    }


@pytest.mark.parametrize(
    ("pairs", "json_text", "message"),
    [
        (["limit"], None, "--param 'limit' is not key=value"),
        (["=5"], None, "--param '=5' is not key=value"),
        ([], "{oops", "--params-json is not JSON"),
        ([], "[1, 2]", "--params-json must be a JSON object, not list"),
    ],
)
def test_bad_cli_parameters_are_usage_errors(pairs, json_text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        params_from_cli(pairs, json_text)


def test_a_model_with_a_required_field_makes_the_job_manual_only():
    assert requires_params(NeedsDay)
    assert not requires_params(Backfill)
    assert not requires_params(None)
    assert Job(name="d", body=lambda ctx: None, params=NeedsDay).manual_only
    assert not Job(name="b", body=lambda ctx: None, params=Backfill).manual_only


def test_params_must_be_a_pydantic_model_class():
    with pytest.raises(InvalidJob, match=r"params=.* is not a pydantic model class"):
        Job(name="b", body=lambda ctx: None, params=dict)  # type: ignore[arg-type]


def test_the_body_gets_the_stored_params_or_the_defaults():
    assert model_of(Backfill, {"batch_size": 7}) == Backfill(batch_size=7)
    assert model_of(Backfill, None) == Backfill()
    assert model_of(None, None) is None
