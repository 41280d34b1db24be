"""Keeping secrets out of text: which values are secret, and replacing them with ***.

Pure string work, used by the log filter (`app.ops.logs`), by the settings (which
collect the secrets) and before an error is stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, quote_plus

SECRET_VARIABLE = re.compile(r".*_(SECRET|PASSWORD|TOKEN)$")
LIBPQ_SECRET_VARIABLES = frozenset({"PGPASSWORD"})
REDACTED = "***"
# Shorter values are too likely to be ordinary words or digits to replace.
MIN_SECRET_LENGTH = 4


def secrets_in(environ: Mapping[str, str], database_url: str | None) -> list[str]:
    """Values to keep out of logs and stored text: *_SECRET, *_PASSWORD, *_TOKEN and
    PGPASSWORD variables, and the database password, wherever the URL holds it (its
    user part or a `password=` parameter); each as written and as percent-encoded."""
    values = [
        v
        for k, v in environ.items()
        if v and (SECRET_VARIABLE.fullmatch(k.upper()) or k.upper() in LIBPQ_SECRET_VARIABLES)
    ]
    for url in {database_url, environ.get("DATABASE_URL")}:
        values += url_passwords(url)
    values = [v for v in values if len(v.strip()) >= MIN_SECRET_LENGTH]
    values += [form for v in values for form in (quote(v, safe=""), quote_plus(v))]
    # Longest first, so a secret containing another is replaced whole.
    return sorted(set(values), key=len, reverse=True)


def url_passwords(url: str | None) -> list[str]:
    """The passwords a database URL carries: in its user part, and as `password=`."""
    if not url:
        return []
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - only for this parse
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return []  # an unparseable URL is refused by the settings with its own error
    found = [str(parsed.password)] if parsed.password else []
    given = parsed.query.get("password")
    found += [given] if isinstance(given, str) else list(given or ())
    return found


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every value of `secrets` in `text` with ***."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def scrub_json(value: Any, secrets: Sequence[str]) -> Any:
    """`value` (JSON: dicts, lists, strings, numbers) with every secret in its strings,
    keys included, replaced."""
    if not secrets:
        return value
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {scrub(str(k), secrets): scrub_json(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_json(item, secrets) for item in value]
    return value
