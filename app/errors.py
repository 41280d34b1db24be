"""The errors cronlock raises, one root so callers can catch them all.

    CronlockError
    ├── ConfigError            an environment variable or option is wrong (exit 2)
    │   ├── InvalidSchedule    a schedule that is neither cron nor an interval
    │   ├── InvalidJob         a job definition breaks a rule (name, run_after, ...)
    │   ├── UnknownJob         a job name that is not registered
    │   ├── JobsModuleError    the module that registers jobs cannot be loaded
    │   └── JobsFileError      the TOML file of HTTP jobs (JOBS_FILE) is unreadable or wrong
    ├── HttpCallFailed         an HTTP job's call did not succeed (its run ends FAILURE)
    └── DatabaseError          anything the database layer could not do
        ├── DatabaseUnavailable   cannot connect, or the connection was lost
        ├── ValueRefused          the server refused a value it cannot store (SQLSTATE 22)
        ├── SchemaNotAtHead       the schema needs `cronlock migrate`
        ├── SchemaAhead           a newer cronlock migrated the schema: upgrade this one
        └── SchemaMissing         cronlock's tables are gone from under a running worker

Losing a lock race is not an error: a claim returns ``None`` instead. Every
message says what was wrong, where, and how to fix it, because the CLI prints it
as the one line an operator sees.
"""

from __future__ import annotations


class CronlockError(Exception):
    """cronlock could not do what was asked."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__ or type(self).__name__)

    @property
    def message(self) -> str:
        """The one-line explanation shown to the operator."""
        return str(self.args[0])


class ConfigError(CronlockError):
    """The configuration is invalid; fix the environment or the command line."""


class InvalidSchedule(ConfigError):  # noqa: N818 - the name reads as the condition it reports
    """A schedule is neither a 5/6-field cron expression nor an `every <n><unit>` interval."""


class InvalidJob(ConfigError):  # noqa: N818
    """A job definition breaks a registry rule."""


class UnknownJob(ConfigError):  # noqa: N818
    """No job of that name is registered."""


class JobsModuleError(ConfigError):
    """The module that registers jobs (JOBS_MODULE) could not be loaded."""


class JobsFileError(ConfigError):
    """The TOML file of HTTP jobs (JOBS_FILE) could not be read, or an entry is wrong."""


class HttpCallFailed(CronlockError):  # noqa: N818
    """An HTTP job's call did not succeed; the message says what the target answered."""


class DatabaseError(CronlockError):
    """The database could not do what was asked."""


class DatabaseUnavailable(DatabaseError):  # noqa: N818
    """The database cannot be reached; check DATABASE_URL and that the server is up."""


class ValueRefused(DatabaseError):  # noqa: N818
    """The server refused a value it cannot store: sending it again would fail again."""


class SchemaNotAtHead(DatabaseError):  # noqa: N818
    """The database schema is not at the latest revision; run `cronlock migrate`."""


class SchemaAhead(DatabaseError):  # noqa: N818
    """A newer cronlock migrated this database; upgrade cronlock, never migrate back."""


class SchemaMissing(DatabaseError):  # noqa: N818
    """cronlock's tables are gone; restore them (`cronlock migrate`) and restart the worker."""


def shown(value: object, limit: int = 80) -> str:
    """`value` as an error message shows it: its repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
