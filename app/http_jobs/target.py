"""What an HTTP job calls: method, URL variable, path, token audience, body, headers.

Every option is checked where the job is defined (`check_target`), so a mistake
stops the jobs module or the JOBS_FILE from loading; what the environment must
provide (the URL variable, the M2M client) is checked when the deployment is
configured (`HttpTarget.check_settings`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from app.config import ENV_VARIABLES, SERVICE_URL_SUFFIX, Settings
from app.errors import ConfigError, InvalidJob, shown

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 3600.0  # an admin endpoint that needs longer should answer 202 and work on
MAX_ATTEMPTS = 20
MAX_BODY_BYTES = 64 * 1024
# Headers cronlock sets itself; a job cannot replace them.
RESERVED_HEADERS = frozenset(
    {"authorization", "idempotency-key", "user-agent", "content-type", "content-length", "host"}
)
_URL_ENV = re.compile(rf"[A-Z][A-Z0-9_]*{SERVICE_URL_SUFFIX}")
_PATH = re.compile(r"/[\x21-\x7e]*")  # printable ASCII, no spaces
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749's scope-token characters
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110's token


@dataclass(frozen=True, kw_only=True)
class HttpTarget:
    """The call an HTTP job makes at each run.

    `url_env` names the variable holding the service's base URL; `path` is appended
    to it. `audience` and `scopes` (None: M2M_AUDIENCE, M2M_SCOPES) pick the token.
    `body` is sent as JSON. `timeout_s` bounds the whole call, retries included;
    `max_attempts` and `attempt_backoff_s` shape the retries within one run.
    """

    method: str
    url_env: str
    path: str
    audience: str | None = None
    scopes: tuple[str, ...] | None = None
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_attempts: int = 4
    attempt_backoff_s: float = 1.0

    @property
    def shown(self) -> str:
        """`POST $MEMBERSHIP_URL/v1/...`: the call as the job's description shows it."""
        return f"{self.method} ${self.url_env}{self.path}"

    def base_url(self, settings: Settings) -> str:
        """The service's base URL from the settings; ConfigError naming the variable."""
        url = settings.service_url(self.url_env)
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                f"{self.url_env} holds a user name or password; HTTP jobs authenticate with "
                "an M2M token, so remove them from the URL"
            )
        if parts.fragment:
            raise ConfigError(f"{self.url_env} ends with a #fragment; remove it")
        return url

    def check_settings(self, settings: Settings, job_name: str) -> None:
        """What the job needs from the environment: its URL and the M2M client."""
        self.base_url(settings)
        missing = settings.m2m.missing()
        if missing:
            raise ConfigError(
                f"job {job_name!r} calls ${self.url_env} with an M2M token, but "
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; set "
                "them (see .env.example), or disable the job with "
                f"{job_name.upper().replace('-', '_')}_ENABLED=false"
            )


def check_target(job_name: str, target: HttpTarget) -> None:
    """Refuse options of the wrong type or out of range, naming the job and the option."""
    problems = [*_request_problems(target), *_limit_problems(target)]
    if problems:
        raise InvalidJob(f"job {job_name!r}: " + "; ".join(problems))


def _request_problems(target: HttpTarget) -> list[str]:
    problems = []
    if target.method not in METHODS:
        problems.append(f"method={shown(target.method)} is not one of {', '.join(METHODS)}")
    if not isinstance(target.url_env, str) or not _URL_ENV.fullmatch(target.url_env):
        problems.append(
            f"url_env={shown(target.url_env)} must name an upper-case variable ending in "
            f"{SERVICE_URL_SUFFIX} (e.g. 'MEMBERSHIP_URL'); the URL itself stays in the environment"
        )
    elif target.url_env in ENV_VARIABLES:
        problems.append(f"url_env={target.url_env!r} is one of cronlock's own variables")
    if not isinstance(target.path, str) or not _PATH.fullmatch(target.path) or "#" in target.path:
        problems.append(
            f"path={shown(target.path)} must start with '/' and hold no spaces or '#' "
            "(e.g. '/v1/admin/commission-locks/release-expired')"
        )
    if target.audience is not None and (
        not isinstance(target.audience, str) or not target.audience.strip()
    ):
        problems.append(f"audience={shown(target.audience)} is not a non-empty string")
    if target.scopes is not None and not all(
        isinstance(s, str) and _SCOPE.fullmatch(s) for s in target.scopes
    ):
        problems.append(f"scopes={shown(target.scopes)} must be a list of scope names")
    problems += _body_problems(target.body, target.method)
    problems += _header_problems(target.headers)
    return problems


def _body_problems(body: Any, method: str) -> list[str]:
    if body is None:
        return []
    if method == "GET":
        return ["body is not sent with GET; use POST, or put parameters in the path"]
    try:
        encoded = json.dumps(body, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return [f"body is not JSON: {exc}"]
    if len(encoded) > MAX_BODY_BYTES:
        return [f"body is {len(encoded)} bytes of JSON; keep it under {MAX_BODY_BYTES}"]
    return []


def _header_problems(headers: object) -> list[str]:
    if not isinstance(headers, Mapping):
        return [f"headers={shown(headers)} is not a mapping of names to values"]
    problems = []
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            problems.append(f"header name {shown(name)} is not a valid HTTP header name")
        elif name.lower() in RESERVED_HEADERS or name.lower().startswith("x-cronlock-"):
            problems.append(f"header {name!r} is set by cronlock; remove it")
        elif not isinstance(value, str) or not value.isprintable() or not value.isascii():
            problems.append(f"header {name!r}: {shown(value)} is not printable ASCII text")
    return problems


def _limit_problems(target: HttpTarget) -> list[str]:
    problems = []
    for option, value, lowest, highest in (
        ("timeout_s", target.timeout_s, 0.0, MAX_TIMEOUT_S),
        ("attempt_backoff_s", target.attempt_backoff_s, 0.0, 60.0),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{option}={shown(value)} is not a number of seconds")
        elif not (math.isfinite(value) and lowest < value <= highest):
            problems.append(f"{option}={value!r} must be positive and at most {highest:g} seconds")
    attempts = target.max_attempts
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        problems.append(f"max_attempts={shown(attempts)} is not a whole number")
    elif not 1 <= attempts <= MAX_ATTEMPTS:
        problems.append(f"max_attempts={attempts} must be between 1 and {MAX_ATTEMPTS}")
    return problems
