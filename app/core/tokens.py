"""The console's bearer tokens: parsed from CONSOLE_TOKEN / CONSOLE_READ_TOKEN, matched
in constant time.

A variable holds one token, or several separated by commas, each optionally
labelled ``label:secret``. The label is what the ledger records as the run's
``requested_by`` (``console:deploy-bot``), so a team can tell its callers apart
and rotate one token without the others.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from app.errors import ConfigError

MIN_TOKEN_CHARS = 16
DEFAULT_LABEL = "console"
_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,40}", re.ASCII)
_SECRET = re.compile(r"[\x21-\x7e]+", re.ASCII)


@dataclass(frozen=True)
class ConsoleToken:
    """One accepted token and the name it acts under."""

    label: str
    secret: str = ""

    def __repr__(self) -> str:  # never print the secret
        return f"ConsoleToken(label={self.label!r})"


def parse_tokens(variable: str, raw: str) -> tuple[ConsoleToken, ...]:
    """The tokens a variable holds; ConfigError naming the entry that is wrong."""
    tokens: list[ConsoleToken] = []
    for position, written in enumerate(raw.split(","), start=1):
        entry = written.strip()
        if not entry:
            continue
        label, separator, secret = entry.partition(":")
        if not separator:
            label, secret = DEFAULT_LABEL, entry
        where = f"{variable} entry {position}"
        if not _LABEL.fullmatch(label):
            raise ConfigError(
                f"{where} has a label that is not 1-40 letters, digits, '.', '_' or '-'; "
                "write label:secret, e.g. deploy-bot:<secret>"
            )
        if not _SECRET.fullmatch(secret):
            raise ConfigError(
                f"{where} ({label}) has a secret with spaces or non-ASCII characters; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if len(secret) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"{where} ({label}) is {len(secret)} characters; a token needs at least "
                f"{MIN_TOKEN_CHARS}: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if any(t.label == label for t in tokens):
            raise ConfigError(f"{where}: the label {label!r} is used twice; give each its own")
        tokens.append(ConsoleToken(label, secret))
    return tuple(tokens)


def match_token(presented: str, tokens: Iterable[ConsoleToken]) -> ConsoleToken | None:
    """The token `presented` is, compared in constant time against every one."""
    found: ConsoleToken | None = None
    given = presented.encode()
    for token in tokens:
        # Every token is compared, so the time taken does not say which one matched.
        if hmac.compare_digest(given, token.secret.encode()):
            found = token
    return found
