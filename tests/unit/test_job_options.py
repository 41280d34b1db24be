"""A job's options are checked where it is defined: one clear error at import, never at run time."""

import math

import pytest

from app.errors import InvalidJob
from app.job import Job, job


def body(ctx):
    return None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"schedule": 5}, r"schedule=5 is not a string"),
        ({"body": 42}, r"body=42 is not callable"),
        ({"pre_check": "nope"}, r"pre_check='nope' is not callable"),
        ({"run_after": "upstream"}, r"run_after='upstream' must name jobs"),
        ({"run_after": (1,)}, r"run_after=\(1,\) must name jobs"),
        ({"retries": 1.5}, r"retries=1.5 is not a whole number"),
        ({"retries": True}, r"retries=True is not a whole number"),
        ({"retries": -1}, r"retries=-1 must be between 0 and 100"),
        ({"retries": 10**6}, r"must be between 0 and 100"),
        ({"transactional": "yes"}, r"transactional='yes' is not True or False"),
        ({"timeout_s": 0}, r"timeout_s=0 must be positive"),
        ({"timeout_s": 10**12}, r"timeout_s=1000000000000 must be positive and at most"),
        ({"timeout_s": math.inf}, r"timeout_s=inf must be positive"),
        ({"timeout_s": math.nan}, r"timeout_s=nan must be positive"),
        ({"timeout_s": "30"}, r"timeout_s='30' is not a number of seconds"),
        (
            {"retry_backoff_s": 1e14},
            r"retry_backoff_s=100000000000000.0 must be positive and at most 31622400",
        ),
        ({"misfire_grace_s": -1}, r"misfire_grace_s=-1 must be at least 0"),
    ],
)
def test_bad_options_are_refused_when_the_job_is_defined(options, message):
    arguments = {"name": "sync", "body": body, **options}
    with pytest.raises(InvalidJob, match=message):
        Job(**arguments)


def test_the_decorator_refuses_them_too():
    with pytest.raises(InvalidJob, match=r"job 'sync': timeout_s=-5 must be positive"):
        job("sync", timeout_s=-5)(body)


def test_a_name_that_is_not_a_string_is_refused():
    with pytest.raises(InvalidJob, match="is not kebab-case"):
        Job(name=7, body=body)  # type: ignore[arg-type]


def test_several_problems_are_named_together():
    with pytest.raises(
        InvalidJob, match="body=42 is not callable; decorate a function; schedule=5 is not a string"
    ):
        Job(name="sync", body=42, schedule=5)  # type: ignore[arg-type]


def test_a_huge_repr_is_cut():
    with pytest.raises(InvalidJob) as raised:
        Job(name="sync", body=body, schedule=["x" * 10_000])  # type: ignore[arg-type]
    assert len(raised.value.message) < 300


def test_zero_grace_and_upper_bounds_are_allowed():
    Job(name="sync", body=body, misfire_grace_s=0, timeout_s=30 * 86_400, retries=100)
