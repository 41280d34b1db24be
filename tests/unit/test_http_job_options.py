"""An HTTP job's options are checked where it is defined, and its environment when configured."""

import math

import pytest

from app.config import Settings
from app.errors import ConfigError, InvalidJob
from app.job import http_job
from app.registry import JobRegistry, configure

REQUIRED = {"url_env": "MEMBERSHIP_URL", "path": "/v1/admin/commission-locks/release-expired"}
M2M = {
    "M2M_TOKEN_URL": "https://auth.example.com/oauth/token",
    "M2M_CLIENT_ID": "cronlock",
    "M2M_CLIENT_SECRET": "s3cret-value",
}


def test_a_declaration_is_a_job_with_its_call_as_description():
    job = http_job(
        "release-commission-locks",
        schedule="0 * * * *",
        method="post",
        audience="membership",
        scopes=["admin:membership"],
        timeout_s=30,
        body={"older_than_minutes": 60},
        headers={"X-Team": "payments"},
        retries=2,
        **REQUIRED,
    )
    assert job.name == "release-commission-locks"
    assert job.schedule == "0 * * * *"
    assert job.timeout_s == 30
    assert job.retries == 2
    assert job.description == ("POST $MEMBERSHIP_URL/v1/admin/commission-locks/release-expired")
    assert job.body.target.method == "POST"
    assert job.body.target.scopes == ("admin:membership",)
    assert hash(job) == hash(job)  # hashable like any job, though its body and headers are dicts


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"method": "FETCH"}, r"method='FETCH' is not one of GET, POST, PUT, PATCH, DELETE"),
        ({"url_env": "https://membership.internal"}, r"url_env='https://.*' must name an upper"),
        ({"url_env": "membership_url"}, r"must name an upper-case variable ending in _URL"),
        ({"url_env": "MEMBERSHIP"}, r"ending in _URL"),
        ({"url_env": "DATABASE_URL"}, r"url_env='DATABASE_URL' is one of cronlock's own"),
        ({"path": "v1/x"}, r"path='v1/x' must start with '/'"),
        ({"path": "/v1/x y"}, r"must start with '/' and hold no spaces"),
        ({"path": "/v1/x#frag"}, r"or '#'"),
        ({"audience": ""}, r"audience='' is not a non-empty string"),
        ({"scopes": "admin"}, r"scopes='admin' must be a list of names"),
        ({"scopes": ["two words"]}, r"scopes=\('two words',\) must be a list of scope names"),
        ({"method": "GET", "body": {"a": 1}}, r"body is not sent with GET"),
        ({"body": {"when": object()}}, r"body is not JSON"),
        ({"body": {"ratio": math.nan}}, r"body is not JSON"),
        ({"body": "x" * 70_000}, r"body is 70002 bytes of JSON; keep it under 65536"),
        ({"headers": {"Authorization": "Bearer x"}}, r"header 'Authorization' is set by cronlock"),
        ({"headers": {"X-Cronlock-Run-Id": "1"}}, r"header 'X-Cronlock-Run-Id' is set by"),
        ({"headers": {"Bad Name": "x"}}, r"header name 'Bad Name' is not a valid"),
        ({"headers": {"X-Team": "a\nb"}}, r"header 'X-Team': 'a\\nb' is not printable"),
        ({"headers": ["X-Team"]}, r"headers=\['X-Team'\] is not a mapping"),
        ({"timeout_s": 0}, r"timeout_s=0 must be positive and at most 3600 seconds"),
        ({"timeout_s": 7200}, r"timeout_s=7200 must be positive and at most 3600"),
        ({"timeout_s": "30"}, r"timeout_s='30' is not a number of seconds"),
        ({"timeout_s": math.inf}, r"timeout_s=inf must be positive"),
        ({"attempt_backoff_s": -1}, r"attempt_backoff_s=-1 must be positive"),
        ({"max_attempts": 0}, r"max_attempts=0 must be between 1 and 20"),
        ({"max_attempts": 2.5}, r"max_attempts=2.5 is not a whole number"),
        ({"retries": -1}, r"retries=-1 must be between 0 and 100"),
        ({"run_after": "upstream"}, r"run_after='upstream' must be a list of names"),
    ],
)
def test_bad_options_are_refused_naming_the_job_and_the_option(options, message):
    with pytest.raises(InvalidJob, match=r"job 'calls'.*" + message):
        http_job("calls", **{**REQUIRED, **options})


def test_several_problems_are_named_together():
    with pytest.raises(InvalidJob, match=r"method='FETCH' .*; path='x' must start"):
        http_job("calls", url_env="MEMBERSHIP_URL", path="x", method="FETCH")


def test_the_name_follows_the_rules_of_every_job():
    with pytest.raises(InvalidJob, match="is not kebab-case"):
        http_job("Release_Locks", **REQUIRED)


def configured(environ: dict[str, str], **options):
    job = http_job("calls", **{**REQUIRED, **options})
    return configure(JobRegistry([job]), Settings.from_env(environ))


def test_an_enabled_http_job_needs_its_url_and_the_m2m_client_at_startup():
    with pytest.raises(ConfigError, match=r"^MEMBERSHIP_URL is not set"):
        configured(M2M)
    with pytest.raises(ConfigError, match=r"^MEMBERSHIP_URL is not an http\(s\) URL"):
        configured({**M2M, "MEMBERSHIP_URL": "membership.internal"})
    with pytest.raises(ConfigError, match=r"MEMBERSHIP_URL holds a user name or password"):
        configured({**M2M, "MEMBERSHIP_URL": "https://u:pw@membership.internal"})
    with pytest.raises(
        ConfigError,
        match=r"job 'calls' calls \$MEMBERSHIP_URL with an M2M token, but M2M_CLIENT_SECRET is "
        r"not set; .* CALLS_ENABLED=false",
    ):
        configured(
            {
                "MEMBERSHIP_URL": "https://membership.internal",
                "M2M_TOKEN_URL": "https://auth.example.com/t",
                "M2M_CLIENT_ID": "cronlock",
            }
        )
    (job,) = configured({**M2M, "MEMBERSHIP_URL": "https://membership.internal"})
    assert job.enabled


def test_a_disabled_http_job_needs_nothing():
    (job,) = configured({"CALLS_ENABLED": "false"})
    assert not job.enabled
