"""Settings.from_env: the one place that reads cronlock's environment variables.

Everything else receives a ``Settings``; tests build one from a plain dict, so no
test has to patch ``os.environ``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from app.core.hosts import spread_hosts
from app.core.redaction import secrets_in
from app.core.tokens import ConsoleToken, parse_tokens
from app.errors import ConfigError, shown

DEFAULT_SCHEDULE = "0 0 * * *"
DEFAULT_STALE_THRESHOLD_S = 60
DEFAULT_HEARTBEAT_INTERVAL_S = 15
DEFAULT_SHUTDOWN_GRACE_S = 30
DEFAULT_MAX_CLOCK_SKEW_S = 2
DEFAULT_RETENTION_DAYS = 30
MIN_STALE_S = 1.0
MIN_HEARTBEAT_S = 0.1  # at most ten renewals a second per run
MAX_STALE_S = 86_400  # a day: a live run renews its heartbeat long before
MAX_GRACE_S = 86_400
MAX_RETENTION_DAYS = 36_500

# Every variable Settings.from_env reads by name. The tests strip these (and the
# per-job ones below) so that a developer's shell cannot leak into a test, and a
# unit test checks this list against the names this module reads.
ENV_VARIABLES: tuple[str, ...] = (
    "DATABASE_URL",
    "DATABASE_POOLER",
    "CRONLOCK_DATA_DIR",
    "JOBS_MODULE",
    "CRON_SCHEDULE",
    "CRON_TZ",
    "STALE_JOB_THRESHOLD_SECONDS",
    "HEARTBEAT_INTERVAL_SECONDS",
    "SHUTDOWN_GRACE_SECONDS",
    "MAX_CLOCK_SKEW_SECONDS",
    "JOB_HISTORY_RETENTION_DAYS",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "METRICS_PORT",
    "METRICS_HOST",
    "CONSOLE_TOKEN",
    "CONSOLE_READ_TOKEN",
    "ALERT_AFTER_FAILURES",
    "ALERT_WEBHOOK_URL",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "JOBS_FILE",
    "M2M_TOKEN_URL",
    "M2M_CLIENT_ID",
    "M2M_CLIENT_SECRET",
    "M2M_AUDIENCE",
    "M2M_SCOPES",
)
# The per-job variables end so: <NAME>_ENABLED and <NAME>_SCHEDULE.
JOB_VARIABLE_SUFFIXES: tuple[str, ...] = ("_ENABLED", "_SCHEDULE")
# An HTTP job's `url_env` names a variable ending so (MEMBERSHIP_URL).
SERVICE_URL_SUFFIX = "_URL"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_DRIVER = "postgresql+psycopg"
_WHOLE = re.compile(r"[0-9]{1,15}", re.ASCII)
_DECIMAL = re.compile(r"[0-9]{1,15}(\.[0-9]{0,9})?|\.[0-9]{1,9}", re.ASCII)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)


def env_prefix(job_name: str) -> str:
    """Return the per-job variable prefix: `sync-invoices` -> `SYNC_INVOICES`."""
    return job_name.upper().replace("-", "_")


def parse_bool(variable: str, raw: str) -> bool:
    """Parse a boolean variable, naming it in the error when it is not one."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(
        f"{variable}={shown(raw)} is not a boolean; use true or false (also 1/0, yes/no, on/off)"
    )


def _positive(
    environ: Mapping[str, str],
    variable: str,
    default: float,
    *,
    whole: bool = False,
    maximum: float = 10**9,
    minimum: float = 0,
    why: str = "",
) -> float:
    """A positive, finite number up to `maximum`: larger ones overflow date arithmetic."""
    raw = environ.get(variable)
    if raw is None or raw.strip() == "":
        return default
    kind = "whole number" if whole else "number of seconds"
    text = raw.strip()
    # ASCII digits only: int() and float() also take other scripts' digits, '1_000', 'inf'.
    pattern = _WHOLE if whole else _DECIMAL
    value = (int(text) if whole else float(text)) if pattern.fullmatch(text) else 0
    if not value > 0:
        raise ConfigError(
            f"{variable}={shown(raw)} is not a positive {kind} in ASCII digits; e.g. {default:g}"
        )
    if not value <= maximum:
        raise ConfigError(f"{variable}={shown(raw)} is too large; use a {kind} up to {maximum:g}")
    if value < minimum:
        raise ConfigError(
            f"{variable}={shown(raw)} is too small; use at least {minimum:g}"
            + (f" ({why})" if why else "")
        )
    return value


def _http_url(raw: str) -> bool:
    try:
        parts = urlsplit(raw)
        _ = parts.port  # raises ValueError when out of range
    except ValueError:  # also an unclosed [IPv6 address
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def normalize_database_url(raw: str, *, variable: str = "DATABASE_URL") -> str:
    """Return the URL with the psycopg 3 driver; accept plain `postgresql://` and `postgres://`.

    A host list (libpq's multi-host form, for failover) becomes one `host`
    parameter per host, which SQLAlchemy passes on to libpq intact.
    """
    try:
        url: URL = make_url(spread_hosts(raw.strip()))
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(
            f"{variable} is not a database URL; expected postgresql://user:password@host:5432/db"
        ) from None
    if url.drivername in ("postgresql", "postgres", _DRIVER):
        return url.set(drivername=_DRIVER).render_as_string(hide_password=False)
    raise ConfigError(
        f"{variable} uses {url.drivername!r}; cronlock needs PostgreSQL: "
        "postgresql://user:password@host:5432/db"
    )


def _pooler(env: Mapping[str, str]) -> str:
    """DATABASE_POOLER: what sits between cronlock and PostgreSQL (none, session, transaction)."""
    raw = env.get("DATABASE_POOLER", "")
    value = raw.strip().lower() or "none"
    if value == "statement":
        raise ConfigError(
            "DATABASE_POOLER=statement cannot work: a claim is a transaction of several "
            "statements holding a row lock; use session or transaction pooling"
        )
    if value not in ("none", "session", "transaction"):
        raise ConfigError(
            f"DATABASE_POOLER={shown(raw)} is not a pooling mode; use none, session or "
            "transaction (PgBouncer's pool_mode)"
        )
    return value


def _zone(environ: Mapping[str, str]) -> ZoneInfo:
    raw = environ.get("CRON_TZ", "").strip() or "UTC"
    try:
        return ZoneInfo(raw)
    # OSError: a folder of the zone database ('Europe'), or a name too long for a file.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(
            f"CRON_TZ={shown(raw)} is not a known time zone; "
            "use an IANA name such as UTC or Europe/Paris"
        ) from None


def _log_level(env: Mapping[str, str]) -> str:
    raw_level = env.get("LOG_LEVEL", "INFO")
    level = raw_level.strip().upper() or "INFO"
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(
            f"LOG_LEVEL={shown(raw_level)} is not a level; "
            "use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    return level


def _lease_timing(env: Mapping[str, str]) -> tuple[float, float]:
    """STALE_JOB_THRESHOLD_SECONDS and HEARTBEAT_INTERVAL_SECONDS, checked together."""
    stale = _positive(
        env,
        "STALE_JOB_THRESHOLD_SECONDS",
        DEFAULT_STALE_THRESHOLD_S,
        maximum=MAX_STALE_S,
        minimum=MIN_STALE_S,
        why="a run must outlive a slow commit",
    )
    heartbeat = _positive(
        env,
        "HEARTBEAT_INTERVAL_SECONDS",
        DEFAULT_HEARTBEAT_INTERVAL_S,
        minimum=MIN_HEARTBEAT_S,
        why="each renewal is a commit",
    )
    if heartbeat > stale / 3:
        # A run fences itself one interval before it may go stale, and each renewal
        # then needs an interval to land: three must fit in the threshold.
        raise ConfigError(
            f"HEARTBEAT_INTERVAL_SECONDS={heartbeat:g} is more than a third of "
            f"STALE_JOB_THRESHOLD_SECONDS={stale:g}: one late renewal would make a live "
            "run look abandoned; keep the interval at about a quarter of the threshold"
        )
    return stale, heartbeat


def _webhook_url(env: Mapping[str, str]) -> str | None:
    webhook = env.get("ALERT_WEBHOOK_URL", "").strip() or None
    if webhook and not _http_url(webhook):
        raise ConfigError(
            f"ALERT_WEBHOOK_URL={shown(webhook)} is not an http(s) URL with a host; "
            "e.g. https://hooks.example.com/cronlock"
        )
    return webhook


def _metrics_port(env: Mapping[str, str]) -> str:
    raw_port = env.get("METRICS_PORT", "").strip()
    if raw_port and not (_PORT.fullmatch(raw_port) and 1 <= int(raw_port) <= 65535):
        raise ConfigError(f"METRICS_PORT={shown(raw_port)} is not a port; use 1-65535, e.g. 9464")
    return raw_port


@dataclass(frozen=True, kw_only=True)
class M2MClient:
    """The OAuth2 client-credentials client that HTTP jobs take their tokens with (M2M_*).

    Checked for completeness only when an enabled HTTP job needs it (`missing`).
    """

    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    audience: str | None = None
    scopes: tuple[str, ...] = ()

    def missing(self) -> list[str]:
        """The variables an HTTP job needs that are unset."""
        return [
            variable
            for variable, value in (
                ("M2M_TOKEN_URL", self.token_url),
                ("M2M_CLIENT_ID", self.client_id),
                ("M2M_CLIENT_SECRET", self.client_secret),
            )
            if not value
        ]


def parse_scopes(raw: str) -> tuple[str, ...]:
    """Scopes written space- or comma-separated, in their order, each once."""
    return tuple(dict.fromkeys(part for part in re.split(r"[\s,]+", raw) if part))


def _http_jobs(env: Mapping[str, str]) -> dict[str, Any]:
    """JOBS_FILE, the M2M client, and the *_URL variables HTTP jobs may name."""
    token_url = env.get("M2M_TOKEN_URL", "").strip() or None
    if token_url and not _http_url(token_url):
        raise ConfigError(
            "M2M_TOKEN_URL is not an http(s) URL with a host; "
            "e.g. https://auth.example.com/oauth/token"
        )
    jobs_file = env.get("JOBS_FILE", "").strip()
    return {
        "jobs_file": Path(jobs_file) if jobs_file else None,
        "m2m": M2MClient(
            token_url=token_url,
            client_id=env.get("M2M_CLIENT_ID", "").strip() or None,
            client_secret=env.get("M2M_CLIENT_SECRET", "").strip() or None,
            audience=env.get("M2M_AUDIENCE", "").strip() or None,
            scopes=parse_scopes(env.get("M2M_SCOPES", "")),
        ),
        "service_urls": {
            key: value
            for key, value in env.items()
            if key.endswith(SERVICE_URL_SUFFIX) and key not in ENV_VARIABLES
        },
    }


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything cronlock reads from its environment, validated once at startup."""

    database_url: str | None = None
    database_pooler: str = "none"
    data_dir: Path = Path(".cronlock")
    jobs_module: str = "instrumentation"
    default_schedule: str = DEFAULT_SCHEDULE
    cron_tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    stale_threshold_s: float = DEFAULT_STALE_THRESHOLD_S
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S
    history_retention_days: int = DEFAULT_RETENTION_DAYS
    log_level: str = "INFO"
    log_format: str | None = None
    secrets: tuple[str, ...] = ()
    alert_after_failures: int = 3
    alert_webhook_url: str | None = None
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"  # noqa: S104 - probes and scrapers come from outside the pod
    notify_socket: str | None = None
    watchdog_usec: int | None = None
    job_overrides: Mapping[str, str] = field(default_factory=dict)
    # Mutations through the console need one of these; reads need one of either
    # when read tokens are set, and nothing otherwise.
    console_tokens: tuple[ConsoleToken, ...] = ()
    console_read_tokens: tuple[ConsoleToken, ...] = ()
    # HTTP jobs: extra jobs from a TOML file, the client their tokens come from, and
    # the *_URL variables their `url_env` may name (values may hold secret parameters).
    jobs_file: Path | None = None
    m2m: M2MClient = field(default_factory=M2MClient)
    service_urls: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings; raise ConfigError naming the bad variable."""
        env = os.environ if environ is None else environ
        raw_url = env.get("DATABASE_URL", "").strip()
        stale, heartbeat = _lease_timing(env)
        log_format = env.get("LOG_FORMAT", "").strip().lower() or None
        if log_format not in (None, "json", "text"):
            raise ConfigError(f"LOG_FORMAT={shown(log_format)} is not a format; use json or text")
        database_url = normalize_database_url(raw_url) if raw_url else None
        raw_port = _metrics_port(env)
        raw_watchdog = env.get("WATCHDOG_USEC", "").strip()
        if raw_watchdog and not _WHOLE.fullmatch(raw_watchdog):
            raise ConfigError(
                f"WATCHDOG_USEC={shown(raw_watchdog)} is not a whole number of microseconds in "
                "ASCII digits; systemd sets it from WatchdogSec=, so unset it by hand"
            )
        webhook = _webhook_url(env)
        console_tokens = parse_tokens("CONSOLE_TOKEN", env.get("CONSOLE_TOKEN", ""))
        read_tokens = parse_tokens("CONSOLE_READ_TOKEN", env.get("CONSOLE_READ_TOKEN", ""))
        token_secrets = [t.secret for t in (*console_tokens, *read_tokens)]
        return cls(
            **_http_jobs(env),
            console_tokens=console_tokens,
            console_read_tokens=read_tokens,
            alert_after_failures=int(_positive(env, "ALERT_AFTER_FAILURES", 3, whole=True)),
            alert_webhook_url=webhook,
            metrics_port=int(raw_port) if raw_port else None,
            metrics_host=env.get("METRICS_HOST", "").strip() or "0.0.0.0",  # noqa: S104
            notify_socket=env.get("NOTIFY_SOCKET", "").strip() or None,
            watchdog_usec=int(raw_watchdog) if raw_watchdog else None,
            database_url=database_url,
            database_pooler=_pooler(env),
            log_format=log_format,
            secrets=tuple(
                sorted(set(secrets_in(env, database_url)) | set(token_secrets), key=len)[::-1]
            ),
            data_dir=Path(env.get("CRONLOCK_DATA_DIR", "").strip() or ".cronlock"),
            jobs_module=env.get("JOBS_MODULE", "").strip() or "instrumentation",
            default_schedule=env.get("CRON_SCHEDULE", "").strip() or DEFAULT_SCHEDULE,
            cron_tz=_zone(env),
            stale_threshold_s=stale,
            heartbeat_interval_s=heartbeat,
            shutdown_grace_s=_positive(
                env, "SHUTDOWN_GRACE_SECONDS", DEFAULT_SHUTDOWN_GRACE_S, maximum=MAX_GRACE_S
            ),
            max_clock_skew_s=_positive(env, "MAX_CLOCK_SKEW_SECONDS", DEFAULT_MAX_CLOCK_SKEW_S),
            history_retention_days=int(
                _positive(
                    env,
                    "JOB_HISTORY_RETENTION_DAYS",
                    DEFAULT_RETENTION_DAYS,
                    whole=True,
                    maximum=MAX_RETENTION_DAYS,
                )
            ),
            log_level=_log_level(env),
            job_overrides={
                key: value
                for key, value in env.items()
                if key.endswith(JOB_VARIABLE_SUFFIXES) and key not in ENV_VARIABLES
            },
        )

    def job_enabled(self, job_name: str) -> bool:
        """Return the job's `<NAME>_ENABLED` flag (default true)."""
        variable = f"{env_prefix(job_name)}_ENABLED"
        raw = self.job_overrides.get(variable)
        if raw is None or raw.strip() == "":
            return True
        return parse_bool(variable, raw)

    def job_schedule_override(self, job_name: str) -> tuple[str, str] | None:
        """Return `(variable, schedule)` when `<NAME>_SCHEDULE` is set for the job."""
        variable = f"{env_prefix(job_name)}_SCHEDULE"
        raw = self.job_overrides.get(variable, "").strip()
        return (variable, raw) if raw else None

    def service_url(self, variable: str) -> str:
        """The http(s) URL in `variable` (an HTTP job's `url_env`); ConfigError naming it.

        The value is never shown: its query may carry a key.
        """
        raw = self.service_urls.get(variable, "").strip()
        if not raw:
            raise ConfigError(
                f"{variable} is not set; set it to the service's base URL, "
                "e.g. https://membership.internal"
            )
        if not _http_url(raw):
            raise ConfigError(
                f"{variable} is not an http(s) URL with a host; e.g. https://membership.internal"
            )
        return raw
