"""The console's tokens: parsed with clear errors, matched in constant time, never printed."""

import pytest

from app.config import Settings
from app.core.tokens import ConsoleToken, match_token, parse_tokens
from app.errors import ConfigError

SECRET = "s3cret-token-0123456789"


def test_a_bare_token_acts_as_console():
    assert parse_tokens("CONSOLE_TOKEN", SECRET) == (ConsoleToken("console", SECRET),)


def test_labelled_tokens_separated_by_commas():
    tokens = parse_tokens("CONSOLE_TOKEN", f"ops:{SECRET}, deploy-bot:{SECRET}x ,")
    assert [t.label for t in tokens] == ["ops", "deploy-bot"]
    assert match_token(SECRET + "x", tokens) == tokens[1]
    assert match_token(SECRET, tokens) == tokens[0]
    assert match_token("nope", tokens) is None
    assert match_token("", ()) is None


def test_unset_means_no_tokens():
    assert parse_tokens("CONSOLE_TOKEN", "") == ()
    assert parse_tokens("CONSOLE_TOKEN", " , ") == ()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("short", "CONSOLE_TOKEN entry 1 \\(console\\) is 5 characters; a token needs at least 16"),
        (f"bad label:{SECRET}", "entry 1 has a label that is not"),
        (f"ops:{SECRET},ops:{SECRET}y", "entry 2: the label 'ops' is used twice"),
        ("ops:contains blank xyzzy 1234", "entry 1 \\(ops\\) has a secret with spaces"),
        ("ops:séçret-xyzzy-long-enough", "non-ASCII"),
    ],
)
def test_bad_tokens_are_refused_with_the_entry_named(raw: str, message: str):
    with pytest.raises(ConfigError, match=message) as refused:
        parse_tokens("CONSOLE_TOKEN", raw)
    assert "xyzzy" not in str(refused.value)


def test_the_secret_never_shows_in_a_repr():
    assert SECRET not in repr(ConsoleToken("ops", SECRET))


def test_settings_read_both_variables_and_mask_each_secret():
    settings = Settings.from_env(
        {"CONSOLE_TOKEN": f"ops:{SECRET},bot:{SECRET}-bot", "CONSOLE_READ_TOKEN": "r" * 20}
    )
    assert [t.label for t in settings.console_tokens] == ["ops", "bot"]
    assert [t.label for t in settings.console_read_tokens] == ["console"]
    assert SECRET in settings.secrets
    assert SECRET + "-bot" in settings.secrets
    assert "r" * 20 in settings.secrets


def test_a_bad_token_is_a_configuration_error():
    with pytest.raises(ConfigError, match="CONSOLE_READ_TOKEN entry 1"):
        Settings.from_env({"CONSOLE_READ_TOKEN": "tiny"})
