"""What a run leaves behind besides its status: the retry delay, and the checked result."""

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from app.core.job import Job
from app.core.outcomes import MAX_RESULT_BYTES, checked_result, retry_delay_s


def job(**options) -> Job:
    return Job(name="sync-invoices", body=lambda ctx: None, **options)


@pytest.fixture
def seeded() -> Iterator[None]:
    """A seeded global random, put back as it was afterwards."""
    state = random.getstate()
    random.seed(20260101)
    yield
    random.setstate(state)


# -- retry_delay_s -------------------------------------------------------------


def test_no_retry_without_retries():
    assert retry_delay_s(job(), 1) is None


def test_no_retry_once_the_retries_are_used_up():
    retrying = job(retries=2, retry_backoff_s=10.0)
    assert retry_delay_s(retrying, 1) is not None
    assert retry_delay_s(retrying, 2) is not None
    assert retry_delay_s(retrying, 3) is None
    assert retry_delay_s(retrying, 7) is None


def test_the_delay_doubles_with_each_attempt(monkeypatch: pytest.MonkeyPatch):
    drawn: list[tuple[float, float]] = []

    def no_jitter(low: float, high: float) -> float:
        drawn.append((low, high))
        return 1.0

    monkeypatch.setattr(random, "uniform", no_jitter)
    retrying = job(retries=4, retry_backoff_s=10.0)
    assert [retry_delay_s(retrying, attempt) for attempt in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert drawn == [(0.5, 1.5)] * 4


@pytest.mark.parametrize(("jitter", "expected"), [(0.5, 15.0), (1.5, 45.0)])
def test_the_jitter_scales_the_delay(monkeypatch: pytest.MonkeyPatch, jitter, expected):
    monkeypatch.setattr(random, "uniform", lambda low, high: jitter)
    assert retry_delay_s(job(retries=3, retry_backoff_s=7.5), 3) == expected


@pytest.mark.usefixtures("seeded")
def test_drawn_delays_stay_within_half_and_one_and_a_half_of_the_base():
    retrying = job(retries=3, retry_backoff_s=10.0)
    delays = [retry_delay_s(retrying, 3) for _ in range(2000)]
    assert all(isinstance(d, float) for d in delays)
    assert all(20.0 <= d <= 60.0 for d in delays)  # base 40 s
    # Spread over the whole range, not stuck at one value.
    assert min(delays) < 22.0
    assert max(delays) > 58.0
    assert 38.0 < sum(delays) / len(delays) < 42.0


# -- checked_result --------------------------------------------------------------


def test_no_result_stays_none():
    assert checked_result(None) is None


@pytest.mark.parametrize(
    ("value", "kind"), [([1, 2], "list"), ("done", "str"), (3, "int"), (True, "bool")]
)
def test_a_result_that_is_not_a_dict_is_refused(value, kind: str):
    with pytest.raises(TypeError, match=rf"^a job returns a dict or None, not {kind}$"):
        checked_result(value)


def test_a_result_comes_back_as_the_json_the_database_stores():
    value = {"deleted": 3, "ratio": 0.5, "names": ("a", "b"), 7: None, "ok": True}
    result = checked_result(value)
    assert result == {"deleted": 3, "ratio": 0.5, "names": ["a", "b"], "7": None, "ok": True}
    assert result is not value


@pytest.mark.parametrize(
    "value",
    [{"ratio": float("nan")}, {"n": [1, float("inf")]}, {"deep": {"x": -float("inf")}}],
)
def test_nan_and_infinity_are_refused(value):
    with pytest.raises(ValueError, match=r"^the result holds NaN or Infinity, which JSON cannot"):
        checked_result(value)


def test_a_result_that_json_cannot_encode_raises_type_error():
    with pytest.raises(TypeError, match="datetime is not JSON serializable"):
        checked_result({"when": datetime(2026, 1, 1, tzinfo=UTC)})


def _result_of_size(size: int) -> dict[str, str]:
    """A dict whose JSON encoding is exactly `size` bytes."""
    value = {"a": "x" * (size - len('{"a": ""}'))}
    assert len(json.dumps(value)) == size
    return value


def test_a_result_of_the_maximum_size_is_kept():
    value = _result_of_size(MAX_RESULT_BYTES)
    assert checked_result(value) == value


def test_a_larger_result_is_refused_with_its_size():
    with pytest.raises(
        ValueError,
        match=rf"^the result is {MAX_RESULT_BYTES + 1} bytes; keep it under {MAX_RESULT_BYTES}$",
    ):
        checked_result(_result_of_size(MAX_RESULT_BYTES + 1))


def test_the_size_counts_escaped_characters():
    """Non-ASCII text is sent escaped: é is six bytes (\\u00e9), not one character."""
    count = MAX_RESULT_BYTES // 6  # far fewer characters than the cap
    value = {"a": "é" * count}
    with pytest.raises(ValueError, match=rf"^the result is {9 + 6 * count} bytes"):
        checked_result(value)


@pytest.mark.parametrize(
    "value",
    [{"name": "a\x00b"}, {"names": ["ok", ["a\x00"]]}, {"deep": {"k\x00": 1}}, {"\x00": None}],
)
def test_a_nul_anywhere_is_refused(value):
    with pytest.raises(ValueError, match=r"^the result holds a NUL character"):
        checked_result(value)
