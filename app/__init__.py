"""cronlock: a cron worker whose jobs run once per scheduled instant, locked in PostgreSQL."""

__version__ = "0.1.0"
