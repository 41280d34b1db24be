"""Working through many items in one run: batches, per-item errors, progress, a summary.

A backfill or a sync handles thousands of items. One bad item should not fail the
run, a stop should be honoured between batches rather than lost mid-way, and the
run's result should say what happened. `ctx.batches(items, size=, limit=)`
returns a `Batches`; `each(handle)` calls `handle(item)` for every item and
returns the summary that the body returns as the run's result.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from sqlalchemy import Select
from sqlalchemy.orm import Session

from app.core.stops import describe
from app.errors import InvalidJob, shown

# The result keeps the first item errors only: it is stored on the run (64 KiB at most).
MAX_ITEM_ERRORS = 20
PROGRESS_EVERY_S = 5.0


class BatchContext(Protocol):
    """What `Batches` needs of the run: to stop, to log, to read, and whether it is dry."""

    @property
    def logger(self) -> logging.Logger:
        """The job's logger."""
        ...

    @property
    def dry_run(self) -> bool:
        """Whether this run may write nothing."""
        ...

    def should_stop(self) -> bool:
        """True once the worker asks the body to stop."""
        ...

    def session(self) -> Session:
        """A session on cronlock's database (rolled back in a dry run)."""
        ...


class Batches:
    """Items taken `size` at a time, at most `limit`; counted, with their errors kept."""

    def __init__(
        self,
        context: BatchContext,
        items: Iterable[Any] | Select[Any],
        *,
        size: int,
        limit: int | None,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise InvalidJob(f"batches(size={shown(size)}): give a whole number of at least 1")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise InvalidJob(f"batches(limit={shown(limit)}): give None or a whole number >= 0")
        self._context = context
        self._items = items
        self.size = size
        self.limit = limit
        self.processed = self.succeeded = self.failed = 0
        self.stopped = False
        self.errors: list[dict[str, str]] = []
        self._started = time.monotonic()
        self._reported_at = self._started

    def each(self, handle: Callable[[Any], object]) -> dict[str, Any]:
        """Call `handle(item)` for every item; an Exception from it is counted and kept
        (the first MAX_ITEM_ERRORS), and the next item goes on. Returns the summary."""
        for batch in self._batches():
            if self._context.should_stop():
                self.stopped = True
                break
            for item in batch:
                self.processed += 1
                try:
                    handle(item)
                except Exception as exc:  # one bad item does not fail the run
                    self.failed += 1
                    if len(self.errors) < MAX_ITEM_ERRORS:
                        self.errors.append({"item": shown(item, 200), "error": describe(exc)})
                else:
                    self.succeeded += 1
            self._report_progress()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """What the run did, as its result: counts, the first errors, whether it stopped."""
        return {
            "processed": self.processed,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "errors": self.errors,
            "errors_not_listed": self.failed - len(self.errors),
            "stopped_early": self.stopped,
            "dry_run": self._context.dry_run,
        }

    def _batches(self) -> Iterator[list[Any]]:
        items = self._rows() if isinstance(self._items, Select) else iter(self._items)
        if self.limit is not None:
            items = itertools.islice(items, self.limit)
        while batch := list(itertools.islice(items, self.size)):
            yield batch

    def _rows(self) -> Iterator[Any]:
        """A select's rows, streamed `size` at a time on one session."""
        assert isinstance(self._items, Select)  # noqa: S101 - narrowed by the caller
        with self._context.session() as session:
            yield from session.execute(self._items.execution_options(yield_per=self.size))

    def _report_progress(self) -> None:
        now = time.monotonic()
        if now - self._reported_at < PROGRESS_EVERY_S:
            return
        self._reported_at = now
        rate = self.processed / max(now - self._started, 1e-9)
        self._context.logger.info(
            "processed %d items (%d failed), %.0f a second",
            self.processed,
            self.failed,
            rate,
            extra={"event": "batch_progress", "processed": self.processed, "failed": self.failed},
        )


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
