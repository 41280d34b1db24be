import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from app import config
from app.cli import _set_in_file
from app.config import (
    ENV_VARIABLES,
    Settings,
    env_prefix,
    normalize_database_url,
    parse_bool,
)
from app.errors import ConfigError


def test_defaults():
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert settings.data_dir == Path(".cronlock")
    assert settings.jobs_module == "instrumentation"
    assert settings.default_schedule == "0 0 * * *"
    assert settings.cron_tz.key == "UTC"
    assert settings.stale_threshold_s == 60
    assert settings.heartbeat_interval_s == 15
    assert settings.shutdown_grace_s == 30
    assert settings.max_clock_skew_s == 2
    assert settings.history_retention_days == 30


def test_env_prefix_upper_cases_and_swaps_dashes():
    assert env_prefix("sync-invoices") == "SYNC_INVOICES"


@pytest.mark.parametrize(("raw", "value"), [("true", True), ("FALSE", False), (" 1 ", True)])
def test_parse_bool(raw: str, value: bool):
    assert parse_bool("X_ENABLED", raw) is value


def test_job_enabled_flag_defaults_true_and_reads_the_variable():
    settings = Settings.from_env({"SYNC_INVOICES_ENABLED": "false"})
    assert settings.job_enabled("sync-invoices") is False
    assert settings.job_enabled("prune-job-history") is True


def test_bad_boolean_names_variable_and_value():
    settings = Settings.from_env({"SYNC_INVOICES_ENABLED": "maybe"})
    with pytest.raises(ConfigError, match=r"SYNC_INVOICES_ENABLED='maybe' is not a boolean"):
        settings.job_enabled("sync-invoices")


def test_schedule_override_is_returned_with_its_variable():
    settings = Settings.from_env({"SYNC_INVOICES_SCHEDULE": "every 5m"})
    assert settings.job_schedule_override("sync-invoices") == ("SYNC_INVOICES_SCHEDULE", "every 5m")
    assert settings.job_schedule_override("other") is None


@pytest.mark.parametrize(
    "raw",
    ["postgresql://u:p@h:5432/d", "postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"],
)
def test_database_url_gets_the_psycopg_driver(raw: str):
    assert normalize_database_url(raw) == "postgresql+psycopg://u:p@h:5432/d"


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        (
            "postgresql://u:p@a:5432,b:5433/d?target_session_attrs=read-write",
            "postgresql+psycopg://u:p@/d?host=a%3A5432&host=b%3A5433&target_session_attrs=read-write",
        ),
        (
            "postgresql://u@/d?host=a:5432,b:5433&target_session_attrs=read-write",
            "postgresql+psycopg://u@/d?host=a%3A5432&host=b%3A5433&target_session_attrs=read-write",
        ),
        # libpq's own form reaches libpq intact already: left alone.
        (
            "postgresql://u@/d?host=a,b&port=5432,5433",
            "postgresql+psycopg://u@/d?host=a%2Cb&port=5432%2C5433",
        ),
    ],
)
def test_a_host_list_becomes_one_host_parameter_per_host(raw: str, normalized: str):
    assert normalize_database_url(raw) == normalized


def test_a_host_list_reaches_libpq_as_hosts_and_ports():
    from sqlalchemy import create_engine

    engine = create_engine(normalize_database_url("postgresql://u@/d?host=a:5432,b:5433"))
    params = engine.dialect.create_connect_args(engine.url)[1]
    assert (params["host"], params["port"]) == ("a,b", "5432,5433")


@pytest.mark.parametrize("raw", ["mysql://u@h/d", "not a url"])
def test_non_postgres_url_is_refused(raw: str):
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        Settings.from_env({"DATABASE_URL": raw})


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("STALE_JOB_THRESHOLD_SECONDS", "soon"),
        ("STALE_JOB_THRESHOLD_SECONDS", "-5"),
        ("JOB_HISTORY_RETENTION_DAYS", "0"),
        ("CRON_TZ", "Mars/Olympus"),
        ("LOG_LEVEL", "LOUD"),
        ("MAX_CLOCK_SKEW_SECONDS", "nan"),
        ("ALERT_WEBHOOK_URL", "https://[::1/hook"),
    ],
)
def test_bad_values_name_their_variable(variable: str, raw: str):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: raw})


def test_an_env_file_note_names_the_variables_with_bad_values_only():
    env_file = Path("project") / ".env"
    message = "LOG_LEVEL='DEBUG' is not a level; use DEBUG, INFO, WARNING or ERROR"
    assert _set_in_file(message, {"DEBUG"}, env_file) == ""
    assert _set_in_file(message, {"LOG_LEVEL", "DEBUG"}, env_file) == (
        f" (LOG_LEVEL set in {env_file})"
    )
    unparsable = "DATABASE_URL is not a database URL; expected postgresql://..."
    assert _set_in_file(unparsable, {"DATABASE_URL"}, env_file).startswith(" (DATABASE_URL")


class _Asked(Mapping[str, str]):
    """An empty environment that remembers which variables were asked for."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.names.add(key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_env_variables_are_the_variables_from_env_reads():
    environ = _Asked()
    Settings.from_env(environ)
    assert environ.names == set(ENV_VARIABLES)


def test_every_variable_named_in_config_is_in_env_variables():
    """A name read only on some branch is still a name the tests must strip."""
    source = ast.parse(Path(config.__file__).read_text())
    named = {
        node.value
        for node in ast.walk(source)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)+", node.value)
    }
    assert named <= set(ENV_VARIABLES), named - set(ENV_VARIABLES)
    assert len(set(ENV_VARIABLES)) == len(ENV_VARIABLES)


def test_a_per_job_variable_is_not_one_of_cronlocks_own():
    settings = Settings.from_env({"CRON_SCHEDULE": "* * * * *", "SYNC_SCHEDULE": "0 * * * *"})
    assert dict(settings.job_overrides) == {"SYNC_SCHEDULE": "0 * * * *"}


# -- values that used to pass, or crash, and now get one clear line ---------------

FULLWIDTH_PORT = "\uff19\uff14\uff16\uff14"  # 9464 in full-width digits


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CRON_TZ": "Europe"}, r"CRON_TZ='Europe' is not a known time zone"),
        ({"CRON_TZ": "Etc"}, r"CRON_TZ='Etc' is not a known time zone"),
        ({"CRON_TZ": "Z" * 256}, r"CRON_TZ='ZZZ.*… is not a known time zone"),
        ({"METRICS_PORT": FULLWIDTH_PORT}, rf"METRICS_PORT='{FULLWIDTH_PORT}' is not a port"),
        ({"METRICS_PORT": "9" * 5000}, r"METRICS_PORT='999.*… is not a port"),
        ({"JOB_HISTORY_RETENTION_DAYS": "١٢"}, r"is not a positive whole number in ASCII digits"),
        ({"JOB_HISTORY_RETENTION_DAYS": "1_0"}, r"is not a positive whole number"),
        ({"SHUTDOWN_GRACE_SECONDS": "1e3"}, r"is not a positive number of seconds"),
        ({"SHUTDOWN_GRACE_SECONDS": "inf"}, r"is not a positive number of seconds"),
        ({"SHUTDOWN_GRACE_SECONDS": "4" * 5000}, r"SHUTDOWN_GRACE_SECONDS='444.*… is not"),
        ({"STALE_JOB_THRESHOLD_SECONDS": "0.5"}, r"is too small; use at least 1"),
        (
            {"STALE_JOB_THRESHOLD_SECONDS": "60", "HEARTBEAT_INTERVAL_SECONDS": "0.01"},
            r"HEARTBEAT_INTERVAL_SECONDS='0.01' is too small; use at least 0.1",
        ),
        ({"LOG_LEVEL": "x" * 1000}, r"LOG_LEVEL='xxx.*… is not a level"),
    ],
)
def test_bad_values_get_one_clear_short_error(environ: dict[str, str], message: str):
    with pytest.raises(ConfigError, match=message) as raised:
        Settings.from_env(environ)
    assert len(raised.value.message) < 400


@pytest.mark.parametrize("raw", ["\uff13\uff10", "9" * 5000, "30s"])
def test_a_watchdog_value_that_is_not_ascii_digits_is_refused(raw: str):
    with pytest.raises(ConfigError, match=r"WATCHDOG_USEC=.* is not a whole number"):
        Settings.from_env({"WATCHDOG_USEC": raw})


def test_a_watchdog_value_in_ascii_digits_is_read():
    assert Settings.from_env({"WATCHDOG_USEC": "30000000"}).watchdog_usec == 30_000_000


def test_decimal_seconds_in_ascii_are_accepted():
    assert Settings.from_env({"SHUTDOWN_GRACE_SECONDS": "2.5"}).shutdown_grace_s == 2.5


# -- HTTP jobs: JOBS_FILE, the M2M client, the service URLs they name ---------------


def test_the_m2m_client_is_read_with_its_scopes_space_or_comma_separated():
    settings = Settings.from_env(
        {
            "M2M_TOKEN_URL": "https://auth.example.com/oauth/token",
            "M2M_CLIENT_ID": "cronlock",
            "M2M_CLIENT_SECRET": "s3cret-value",
            "M2M_AUDIENCE": "membership",
            "M2M_SCOPES": "admin:membership, read:x  read:x,",
            "JOBS_FILE": "jobs.toml",
        }
    )
    assert settings.m2m.token_url == "https://auth.example.com/oauth/token"
    assert settings.m2m.scopes == ("admin:membership", "read:x")
    assert settings.m2m.missing() == []
    assert settings.jobs_file == Path("jobs.toml")
    assert "s3cret-value" in settings.secrets
    assert "s3cret-value" not in repr(settings.m2m)


def test_an_incomplete_m2m_client_names_what_is_missing():
    assert Settings.from_env({"M2M_CLIENT_ID": "x"}).m2m.missing() == [
        "M2M_TOKEN_URL",
        "M2M_CLIENT_SECRET",
    ]


@pytest.mark.parametrize("raw", ["ftp://auth.example.com/token", "auth.example.com", "https://"])
def test_a_token_url_that_is_not_http_is_refused(raw: str):
    with pytest.raises(ConfigError, match=r"M2M_TOKEN_URL is not an http\(s\) URL"):
        Settings.from_env({"M2M_TOKEN_URL": raw})


def test_service_urls_are_the_url_variables_that_are_not_cronlocks_own():
    settings = Settings.from_env(
        {
            "MEMBERSHIP_URL": "https://membership.internal/?code=k3y-value",
            "ALERT_WEBHOOK_URL": "https://hooks.example.com/x",
            "OTHER": "https://x",
        }
    )
    assert dict(settings.service_urls) == {
        "MEMBERSHIP_URL": "https://membership.internal/?code=k3y-value"
    }
    assert settings.service_url("MEMBERSHIP_URL").startswith("https://membership.internal")
    assert "k3y-value" not in repr(settings)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, r"^MEMBERSHIP_URL is not set; set it"),
        ({"MEMBERSHIP_URL": "membership.internal"}, r"^MEMBERSHIP_URL is not an http\(s\) URL"),
        ({"MEMBERSHIP_URL": "ftp://k3y@x"}, r"^MEMBERSHIP_URL is not an http\(s\) URL"),
    ],
)
def test_a_missing_or_bad_service_url_names_its_variable_but_never_its_value(environ, message):
    with pytest.raises(ConfigError, match=message) as raised:
        Settings.from_env(environ).service_url("MEMBERSHIP_URL")
    assert "k3y" not in raised.value.message


@pytest.mark.parametrize(
    ("raw", "mode"),
    [("", "none"), ("none", "none"), ("Session", "session"), (" transaction ", "transaction")],
)
def test_database_pooler_names_the_pooling_mode(raw: str, mode: str):
    assert Settings.from_env({"DATABASE_POOLER": raw}).database_pooler == mode


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("statement", r"DATABASE_POOLER=statement cannot work"),
        ("pgbouncer", r"DATABASE_POOLER='pgbouncer' is not a pooling mode"),
    ],
)
def test_a_pooler_mode_cronlock_cannot_use_is_refused(raw: str, message: str):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"DATABASE_POOLER": raw})
