"""One backoff rule for every wait that grows."""

import math

from app.core.backoff import Backoff


def test_delays_double_from_the_first_up_to_the_cap():
    assert Backoff(0.5, cap_s=5.0).delays_s(7) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_the_first_wait_follows_the_first_failed_try():
    assert Backoff(0.05, cap_s=1.0).delay_s(1) == 0.05
    assert Backoff(0.05, cap_s=1.0).delay_s(0) == 0.05


def test_a_factor_other_than_two():
    assert Backoff(1.0, factor=5.0, cap_s=5.0).delays_s(3) == [1.0, 5.0]


def test_a_huge_try_count_stays_at_the_cap_without_overflow():
    assert Backoff(0.5, cap_s=30.0).delay_s(10**6) == 30.0


def test_uncapped_backoff_keeps_doubling():
    assert Backoff(10.0).delay_s(4) == 80.0
    assert Backoff(10.0).cap_s == math.inf


def test_jitter_stays_within_its_spread():
    delays = [Backoff(10.0, jitter=0.5).delay_s(2) for _ in range(500)]
    assert all(10.0 <= d <= 30.0 for d in delays)
    assert max(delays) - min(delays) > 5  # it does spread
