"""The one error the console's handlers raise: an HTTP status and a message for the caller."""

from __future__ import annotations

from app.console.schemas import FieldError


class ConsoleError(Exception):
    """A request the console refuses (4xx), or cannot serve now (503).

    The API answers it as `{"error": message, "fields": [...]}`; the pages show the
    message on the page the action came from.
    """

    def __init__(self, status: int, message: str, fields: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or []
