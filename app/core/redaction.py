"""Keeping secrets out of text: which values are secret, and replacing them with ***.

Pure string work, used by the log filter (`app.ops.logs`), by the settings (which
collect the secrets) and before an error is stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

SECRET_VARIABLE = re.compile(r".*_(SECRET|PASSWORD|TOKEN)$")
REDACTED = "***"


def secrets_in(environ: Mapping[str, str], database_url: str | None) -> list[str]:
    """Values to keep out of logs: *_SECRET, *_PASSWORD, *_TOKEN variables; the DB password."""
    values = [v for k, v in environ.items() if SECRET_VARIABLE.fullmatch(k.upper()) and v]
    if database_url:
        from sqlalchemy.engine import make_url  # noqa: PLC0415 - only for this parse

        password = make_url(database_url).password
        if password:
            values.append(str(password))
    # Longest first, so a secret containing another is replaced whole.
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every value of `secrets` in `text` with ***."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text
