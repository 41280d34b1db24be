"""Stopping a job body from outside: timeouts and the end of the shutdown grace.

Python cannot kill a thread, so bodies run in the main thread and are interrupted
by SIGALRM: the handler raises `RunInterrupted`, a BaseException so a body's own
``except Exception`` does not swallow it; a body that swallows it anyway still
ends FAILURE for that reason (`take_fired`). A signal also wakes a body blocked in
``time.sleep`` or a socket read. The alarm fires only while a body is running; a
deadline that passes while cronlock itself is writing an outcome is ignored.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from app.core.stops import RunInterrupted, StopNow

logger = logging.getLogger(__name__)


class Alarm:
    """One deadline at a time for the body running in the main thread."""

    def __init__(self) -> None:
        self._deadline: float | None = None
        self._reason = ""
        self._in_body = False
        self._fired: str | None = None
        self._protected = 0
        self._deferred: str | None = None

    @staticmethod
    def available() -> bool:
        """SIGALRM handlers can only be installed from the main thread."""
        return threading.current_thread() is threading.main_thread()

    def arm(self, seconds: float, reason: str) -> None:
        """Interrupt the body in `seconds`, unless an earlier deadline is already set."""
        if not self.available():
            return
        deadline = time.monotonic() + max(seconds, 0.0)
        if self._deadline is not None and self._deadline <= deadline:
            return
        self._deadline, self._reason = deadline, reason
        signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))

    def disarm(self) -> None:
        """Cancel any deadline."""
        if self.available():
            signal.setitimer(signal.ITIMER_REAL, 0)
        self._deadline = None

    def interrupt_now(self, reason: str) -> None:
        """Raise RunInterrupted at once if a body is running (a second stop signal)."""
        if self._in_body:
            self._in_body = False
            self._fired = reason
            raise RunInterrupted(reason)

    def stop_now(self, reason: str, *, exit_code: int = 130) -> None:
        """A stop that cannot wait (a second signal; a signal to a command).

        In a body: interrupt it now (its run ends FAILURE with `reason`). Around a
        claimed run (`protected`): never cut its bookkeeping short; interrupt its body
        as it starts, if it has not yet. Elsewhere: raise StopNow.
        """
        self.interrupt_now(reason)
        if self._protected:
            self._deferred = reason
            return
        raise StopNow(reason, exit_code=exit_code)

    @contextmanager
    def protected(self) -> Iterator[None]:
        """The span of a claimed run, from its claim to its recorded outcome (nests)."""
        self._protected += 1
        try:
            yield
        finally:
            self._protected -= 1
            if not self._protected:
                # The stop is not lost: whoever deferred it also set the worker's stop
                # event, or the command's record of the signal.
                self._deferred = None

    def take_fired(self) -> str | None:
        """Why the body was interrupted since the last call, if it was: a body that
        caught the interrupt and returned still ends FAILURE for that reason."""
        fired, self._fired = self._fired, None
        return fired

    @contextmanager
    def body(self) -> Iterator[None]:
        """Mark the span in which an interrupt may be raised."""
        self._fired = None
        if self._deferred is not None:  # a stop came while the run was being set up
            self._fired, self._deferred = self._deferred, None
            raise RunInterrupted(self._fired)
        self._in_body = True
        try:
            yield
        finally:
            self._in_body = False

    def _fire(self, _signum: int, _frame: FrameType | None) -> None:
        self._deadline = None
        if self._in_body:
            self._in_body = False
            self._fired = self._reason
            raise RunInterrupted(self._reason)
