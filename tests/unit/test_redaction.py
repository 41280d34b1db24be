"""Secrets kept out of log lines, and the `[job]` prefix every line of a job carries."""

import json
import logging
from collections.abc import Iterator

import pytest

from app.config import Settings
from app.core.redaction import scrub, secrets_in
from app.ops.logs import TEXT_FORMAT, JsonFormatter, Redactor, job_scope

DB_PASSWORD = "hunter2-db"
TOKEN = "tok-abcdef-123"


# -- secrets_in ----------------------------------------------------------------


def test_secret_variables_are_those_ending_in_secret_password_or_token():
    environ = {
        "STRIPE_API_SECRET": "sk-live-0123456789",
        "SMTP_PASSWORD": "mail-pass-1",
        "github_token": "ghp-lower",  # the name is matched in any case
        "SECRET_KEY": "not-a-suffix-1",
        "TOKEN": "no-prefix-12",
        "API_TOKENS": "plural-name-1",
        "PASSWORD_FILE": "/run/secrets/pw",
        "HOME": "/home/cronlock",
    }
    assert secrets_in(environ, None) == ["sk-live-0123456789", "mail-pass-1", "ghp-lower"]


def test_empty_and_short_values_are_not_secrets():
    environ = {"A_TOKEN": "", "B_TOKEN": "abc", "C_TOKEN": "abcd", "D_SECRET": "   "}
    assert secrets_in(environ, None) == ["abcd"]


def test_the_database_password_is_a_secret():
    url = f"postgresql+psycopg://cronlock:{DB_PASSWORD}@db:5432/cronlock"
    assert secrets_in({}, url) == [DB_PASSWORD]


def test_the_database_password_is_read_decoded_from_the_url():
    url = "postgresql+psycopg://cronlock:p%40ss%2Fword@db/cronlock"
    # Decoded, and as the URL writes it: either may end up in a message.
    assert secrets_in({}, url) == ["p%40ss%2Fword", "p@ss/word"]


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "postgresql+psycopg://cronlock@db/cronlock",
        "postgresql+psycopg://cronlock:pw1@db/cronlock",
    ],
)
def test_no_database_password_or_a_short_one_adds_nothing(url: str | None):
    assert secrets_in({}, url) == []


def test_a_value_found_twice_is_listed_once():
    environ = {"DB_PASSWORD": DB_PASSWORD, "REPLICA_PASSWORD": DB_PASSWORD}
    url = f"postgresql+psycopg://cronlock:{DB_PASSWORD}@db/cronlock"
    assert secrets_in(environ, url) == [DB_PASSWORD]


def test_secrets_come_longest_first():
    environ = {"A_TOKEN": "abcd", "B_TOKEN": "abcdefgh", "C_TOKEN": "abcdef"}
    url = "postgresql+psycopg://u:abcdefghij@db/cronlock"
    assert secrets_in(environ, url) == ["abcdefghij", "abcdefgh", "abcdef", "abcd"]


def test_settings_carry_the_secrets_of_their_environment():
    settings = Settings.from_env(
        {"DATABASE_URL": f"postgres://cronlock:{DB_PASSWORD}@db/cronlock", "CI_TOKEN": TOKEN}
    )
    assert settings.secrets == (TOKEN, DB_PASSWORD)


# -- scrub -----------------------------------------------------------------------


def test_scrub_replaces_every_occurrence():
    text = f"login {DB_PASSWORD} failed; retried with {DB_PASSWORD}, then {TOKEN}"
    assert scrub(text, [TOKEN, DB_PASSWORD]) == "login *** failed; retried with ***, then ***"


def test_scrub_without_secrets_changes_nothing():
    assert scrub("nothing to hide", []) == "nothing to hide"


def test_a_secret_containing_another_is_replaced_whole_when_longest_comes_first():
    environ = {"A_TOKEN": "abcd", "B_TOKEN": "abcdefgh"}
    assert scrub("key=abcdefgh; short=abcd", secrets_in(environ, None)) == "key=***; short=***"
    # The order is what makes it whole.
    assert scrub("key=abcdefgh", ["abcd", "abcdefgh"]) == "key=***efgh"


# -- Redactor --------------------------------------------------------------------


class Collect(logging.Handler):
    """Keeps the records that passed its filters, as the next formatter would get them."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def logger_with(redactor: Redactor) -> Iterator[tuple[logging.Logger, Collect]]:
    logger = logging.getLogger("tests.unit.redaction")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = Collect()
    handler.addFilter(redactor)
    logger.addHandler(handler)
    try:
        yield logger, handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def redacted() -> Iterator[tuple[logging.Logger, Collect]]:
    yield from logger_with(Redactor([TOKEN, DB_PASSWORD]))


@pytest.fixture
def plain() -> Iterator[tuple[logging.Logger, Collect]]:
    yield from logger_with(Redactor())


def test_secrets_in_the_message_and_its_args_are_replaced(redacted):
    logger, handler = redacted
    logger.info("connecting as %s with %s", "cronlock", DB_PASSWORD)
    logger.warning(f"token {TOKEN} refused")
    first, second = handler.records
    assert (first.msg, first.args) == ("connecting as cronlock with ***", None)
    assert first.getMessage() == "connecting as cronlock with ***"
    assert second.getMessage() == "token *** refused"


def test_a_redacted_message_is_not_formatted_twice(redacted):
    logger, handler = redacted
    logger.info("100%% done with %s", TOKEN)
    [record] = handler.records
    assert logging.Formatter(TEXT_FORMAT).format(record).endswith(" 100% done with ***")


def test_string_extras_are_redacted_and_others_kept(redacted):
    logger, handler = redacted
    logger.error(
        "run failed",
        extra={"event": "run_failed", "error": f"auth {TOKEN} expired", "run_id": 42},
    )
    [record] = handler.records
    assert record.event == "run_failed"
    assert record.error == "auth *** expired"
    assert record.run_id == 42


def test_exception_text_is_redacted(redacted):
    logger, handler = redacted
    try:
        raise ConnectionError(f"password {DB_PASSWORD} rejected")
    except ConnectionError:
        logger.exception("could not connect")
    [record] = handler.records
    assert record.exc_info is None
    assert record.exc_text is not None
    assert record.exc_text.startswith("Traceback (most recent call last):")
    assert record.exc_text.endswith("ConnectionError: password *** rejected")
    text_line = logging.Formatter(TEXT_FORMAT).format(record)
    json_line = json.loads(JsonFormatter().format(record))
    assert DB_PASSWORD not in text_line
    assert json_line["traceback"] == record.exc_text


def test_a_json_line_holds_no_secret(redacted):
    logger, handler = redacted
    logger.info("sent %s", TOKEN, extra={"event": "sent", "job": "sync-invoices", "to": TOKEN})
    [record] = handler.records
    line = JsonFormatter().format(record)
    assert TOKEN not in line
    assert json.loads(line)["message"] == "sent ***"
    assert json.loads(line)["to"] == "***"


def test_without_secrets_the_record_is_left_as_logged(plain):
    logger, handler = plain
    logger.info("connecting with %s", DB_PASSWORD, extra={"note": TOKEN})
    [record] = handler.records
    assert (record.msg, record.args) == ("connecting with %s", (DB_PASSWORD,))
    assert record.note == TOKEN
    assert record.job_prefix == ""


def test_a_line_outside_any_job_has_no_prefix(redacted):
    logger, handler = redacted
    logger.info("tick")
    [record] = handler.records
    assert record.job_prefix == ""
    assert not hasattr(record, "job")


def test_the_job_in_extra_gives_the_prefix(plain):
    logger, handler = plain
    logger.info("claimed", extra={"job": "prune-job-history"})
    [record] = handler.records
    assert record.job_prefix == "[prune-job-history] "
    line = logging.Formatter(TEXT_FORMAT).format(record)
    assert line.endswith(" [prune-job-history] claimed")


def test_job_scope_gives_the_prefix_and_the_job_field(redacted):
    logger, handler = redacted
    with job_scope("sync-invoices"):
        logging.getLogger("tests.unit.redaction.body").info("from the body")  # any logger
        with job_scope("report-database-stats"):
            logger.info("inner")
        logger.info("outer again")
    logger.info("after")
    body, inner, outer, after = handler.records
    assert (body.job_prefix, body.job) == ("[sync-invoices] ", "sync-invoices")
    assert inner.job_prefix == "[report-database-stats] "
    assert outer.job_prefix == "[sync-invoices] "
    assert after.job_prefix == ""


def test_the_job_in_extra_wins_over_the_scope(plain):
    logger, handler = plain
    with job_scope("sync-invoices"):
        logger.info("upstream waits", extra={"job": "prune-job-history"})
    [record] = handler.records
    assert (record.job_prefix, record.job) == ("[prune-job-history] ", "prune-job-history")


def test_the_filter_never_drops_a_record():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, TOKEN, None, None)
    assert Redactor([TOKEN]).filter(record) is True
    assert record.msg == "***"


# -- every form a database password takes ---------------------------------------


def test_a_percent_encoded_url_password_is_secret_in_both_forms():
    found = secrets_in({}, "postgresql+psycopg://app:p%40ss%2Fw0rd@db.internal/app")
    assert "p@ss/w0rd" in found
    assert "p%40ss%2Fw0rd" in found


def test_a_password_given_as_a_url_parameter_is_secret():
    found = secrets_in(
        {}, "postgresql+psycopg://app@db.internal/app?password=hunter22&sslmode=require"
    )
    assert "hunter22" in found


def test_pgpassword_is_secret():
    assert secrets_in({"PGPASSWORD": "correct-horse"}, None) == ["correct-horse"]


def test_the_raw_database_url_counts_even_when_another_is_given():
    found = secrets_in({"DATABASE_URL": "postgresql://app:s3cr3t-raw@h/db"}, None)
    assert "s3cr3t-raw" in found


def test_a_url_that_does_not_parse_yields_no_secret_and_no_error():
    assert secrets_in({}, "not a url at all") == []


def test_the_display_url_hides_the_password_wherever_it_is():
    from app.store.database import redact

    shown = redact("postgresql+psycopg://app:s3cr3t!@db/app?password=hunter22")
    assert "s3cr3t" not in shown
    assert "hunter22" not in shown
    assert "db/app" in shown


def test_scrub_json_reaches_nested_strings_and_keys():
    from app.core.redaction import scrub_json

    value = {"token hunter22": ["a hunter22 b", 3, {"x": "hunter22"}], "n": None}
    assert scrub_json(value, ["hunter22"]) == {"token ***": ["a *** b", 3, {"x": "***"}], "n": None}
