"""The pure rules of HTTP jobs: which answers are retried, how long to wait, what is kept."""

import math
from datetime import UTC, datetime

import pytest

from app.core.backoff import Backoff
from app.http_jobs.policy import (
    MAX_EXCERPT_CHARS,
    Verdict,
    attempt_backoff,
    excerpt,
    join_url,
    next_wait_s,
    query_secrets,
    quoted,
    retry_after_s,
    shown_target,
    target_host,
    verdict,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Verdict.SUCCESS),
        (202, Verdict.SUCCESS),
        (204, Verdict.SUCCESS),
        (401, Verdict.REFRESH),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (301, Verdict.FAIL),
        (400, Verdict.FAIL),
        (403, Verdict.FAIL),
        (404, Verdict.FAIL),
        (409, Verdict.FAIL),
        (422, Verdict.FAIL),
    ],
)
def test_what_each_status_leads_to(status: int, expected: Verdict):
    assert verdict(status) is expected


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Sun, 01 Mar 2026 12:00:30 GMT", 30.0),
        ("Sun, 01 Mar 2026 11:59:00 GMT", 0.0),  # already past: at once
        ("soon", None),
        ("-5", None),
        ("1.5", None),  # delta-seconds are whole
        ("٣", None),  # other scripts' digits
        ("9" * 40, 1e9),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header, seconds):
    assert retry_after_s(header, NOW) == seconds


def test_the_backoff_doubles_is_jittered_and_capped():
    backoff = attempt_backoff(1.0)
    for attempts, base in ((1, 1.0), (2, 2.0), (3, 4.0), (9, 30.0)):
        for _ in range(50):
            assert base * 0.5 <= backoff.delay_s(attempts) <= base * 1.5


def test_a_wait_never_ends_past_the_deadline():
    steady = Backoff(2.0)
    assert next_wait_s(steady, 1, None, remaining_s=10) == 2.0
    assert next_wait_s(steady, 1, None, remaining_s=2.0) is None
    assert next_wait_s(steady, 1, None, remaining_s=1.9) is None
    assert next_wait_s(steady, 3, None, remaining_s=7.9) is None  # 8 s would pass it


def test_retry_after_wins_over_the_backoff_but_not_over_the_deadline():
    steady = Backoff(2.0)
    assert next_wait_s(steady, 1, 0.5, remaining_s=10) == 0.5
    assert next_wait_s(steady, 1, 20.0, remaining_s=10) is None
    assert next_wait_s(steady, 1, math.inf, remaining_s=10) is None


def test_a_small_json_answer_is_kept_as_json():
    assert excerpt(b'{"released": 3}', "application/json", ()) == {"released": 3}
    assert excerpt(b"[1, 2]", None, ()) == [1, 2]


def test_a_text_answer_is_kept_as_text_and_cut():
    assert excerpt(b"done", "text/plain", ()) == "done"
    assert excerpt(b"", "text/plain", ()) is None
    long = excerpt(b"x" * 10_000, "text/plain", ())
    assert long.startswith("x" * MAX_EXCERPT_CHARS)
    assert long.endswith("(7952 more characters)")


def test_a_large_or_unstorable_json_answer_is_kept_as_text():
    big = b'{"ids": [' + b",".join(b"%d" % i for i in range(3000)) + b"]}"
    kept = excerpt(big, "application/json", ())
    assert isinstance(kept, str)
    assert kept.startswith('{"ids": [0,1,2')
    assert excerpt(b'{"ratio": NaN}', "application/json", ()) == '{"ratio": NaN}'
    assert excerpt(b'{"a\\u0000": "b\\u0000c"}', "application/json", ()) == {"a": "bc"}


def test_secrets_and_nul_characters_never_stay_in_an_excerpt():
    assert excerpt(b'{"echo": "Bearer tok-123456"}', "application/json", ("tok-123456",)) == {
        "echo": "Bearer ***"
    }
    assert excerpt(b"key=s3cret-value\x00!", "text/plain", ("s3cret-value",)) == "key=***!"


def test_an_excerpt_is_quoted_on_one_short_line():
    assert quoted({"error": "busy"}) == '{"error": "busy"}'
    assert quoted("line one\nline two") == "line one line two"
    assert quoted(None) == "(empty answer)"
    assert len(quoted("y" * 5000)) < 600


def test_the_url_joins_the_base_path_and_both_queries():
    assert (
        join_url("https://membership.internal/api/?code=k3y", "/v1/release?limit=10")
        == "https://membership.internal/api/v1/release?code=k3y&limit=10"
    )
    assert join_url("http://127.0.0.1:8080", "/x") == "http://127.0.0.1:8080/x"


def test_the_target_is_shown_by_host_and_path_never_its_query():
    url = "https://user@membership.internal:8443/v1/x?code=k3y-value"
    assert target_host(url) == "membership.internal:8443"
    assert target_host("http://[::1]:9000/x") == "[::1]:9000"
    assert target_host("https://membership.internal/x") == "membership.internal"
    assert shown_target("POST", url) == "POST membership.internal:8443/v1/x"
    assert query_secrets(url) == ["k3y-value"]
    assert query_secrets("https://h/x?v=2&debug=1") == []  # too short to be a key
