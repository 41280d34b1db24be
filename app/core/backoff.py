"""Delays that grow after each failed try: one rule for every wait that backs off.

Polling a pending instant, reconnecting after an outage, rewriting an outcome,
resending a webhook and retrying a failed run all wait `first_s`, then `factor`
times longer after each further try, never longer than `cap_s`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """`first_s`, growing by `factor` per try, capped at `cap_s`; `jitter` spreads each
    delay over [1 - jitter, 1 + jitter] of itself, so replicas do not retry in step."""

    first_s: float
    factor: float = 2.0
    cap_s: float = math.inf
    jitter: float = 0.0

    def delay_s(self, tries: int) -> float:
        """The wait after `tries` failed tries (the first wait is after one)."""
        exponent = max(tries - 1, 0)
        # Past the cap, stop multiplying: a large exponent would overflow a float.
        steps_to_cap = math.log(self.cap_s / self.first_s, self.factor) if self.factor > 1 else 0
        if self.cap_s != math.inf and exponent >= steps_to_cap:
            delay = self.cap_s
        else:
            delay = min(self.first_s * self.factor**exponent, self.cap_s)
        if self.jitter:
            delay *= random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311 - not secrets
        return delay

    def delays_s(self, tries: int) -> list[float]:
        """The waits between `tries` tries, in order."""
        return [self.delay_s(n) for n in range(1, tries)]
