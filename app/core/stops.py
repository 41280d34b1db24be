"""The two ways cronlock itself stops a body, told apart from anything a body raises.

A body may raise anything, `SystemExit` and `KeyboardInterrupt` included; that is
its outcome (FAILURE), and the worker goes on. Only these two stop more than the run:

- `RunInterrupted`: raised into a running body by the worker's alarm (its timeout,
  the end of the shutdown grace, a second stop signal). The run ends FAILURE with
  `reason`; the worker goes on unless it was stopping anyway.
- `StopNow`: the process must stop at once (a second stop signal outside a body,
  a stop signal to `cronlock run`). It is a KeyboardInterrupt, so code that lets
  a Ctrl-C through lets it through.
"""

from __future__ import annotations


class RunInterrupted(BaseException):
    """A running body was stopped by cronlock; `reason` becomes the run's error message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StopNow(KeyboardInterrupt):
    """The process stops now; a run it interrupts is recorded FAILURE with `reason`."""

    def __init__(self, reason: str, *, exit_code: int = 130) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


def describe(exc: BaseException) -> str:
    """`Type: message` for an error a body or pre-check raised, even if its str() raises."""
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not turn a recorded FAILURE into a crash
        text = "(its message could not be read)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
