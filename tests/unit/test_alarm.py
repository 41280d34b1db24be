"""The SIGALRM deadline that interrupts a job body: timeouts and the end of the shutdown grace.

Timers are milliseconds long. A body that should be interrupted sleeps 2 s: if the alarm
does not fire, the sleep ends and `pytest.raises` fails; a run never passes by luck.
"""

import signal
import threading
import time
from collections.abc import Iterator

import pytest

from app.runtime.interrupts import Alarm, RunInterrupted

pytestmark = pytest.mark.timeout(10)

BLOCKED_S = 2.0  # far longer than any deadline below


@pytest.fixture
def alarm() -> Iterator[Alarm]:
    previous = signal.getsignal(signal.SIGALRM)
    alarm = Alarm()
    yield alarm
    alarm.disarm()
    signal.signal(signal.SIGALRM, previous)


def no_timer() -> bool:
    return signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def blocked_body(alarm: Alarm, *deadlines: tuple[float, str]) -> None:
    """A body that arms `deadlines` in order, then blocks far longer than any of them."""
    with alarm.body():
        for seconds, reason in deadlines:
            alarm.arm(seconds, reason)
        time.sleep(BLOCKED_S)


def interruption(alarm: Alarm, *deadlines: tuple[float, str]) -> RunInterrupted:
    with pytest.raises(RunInterrupted) as caught:
        blocked_body(alarm, *deadlines)
    return caught.value


def test_a_deadline_interrupts_the_body_with_its_reason(alarm: Alarm):
    started = time.monotonic()
    interrupted = interruption(alarm, (0.01, "timed out after 0.01s"))
    assert interrupted.reason == "timed out after 0.01s"
    assert str(interrupted) == "timed out after 0.01s"
    assert time.monotonic() - started < BLOCKED_S / 2


def test_a_body_catching_exception_cannot_swallow_the_interrupt(alarm: Alarm):
    swallowed: list[Exception] = []

    def stubborn_body() -> None:
        with alarm.body():
            alarm.arm(0.01, "timed out")
            try:
                time.sleep(BLOCKED_S)
            except Exception as exc:
                swallowed.append(exc)

    with pytest.raises(RunInterrupted):
        stubborn_body()
    assert swallowed == []


def test_an_earlier_deadline_is_not_pushed_back_by_a_later_one(alarm: Alarm):
    interrupted = interruption(alarm, (0.02, "timed out after 0.02s"), (60, "shutdown"))
    assert interrupted.reason == "timed out after 0.02s"


def test_an_earlier_deadline_replaces_a_later_one(alarm: Alarm):
    started = time.monotonic()
    interrupted = interruption(alarm, (60, "timed out after 60s"), (0.02, "shutdown"))
    assert interrupted.reason == "shutdown"
    assert time.monotonic() - started < BLOCKED_S / 2


def test_a_deadline_that_passes_outside_a_body_is_dropped(alarm: Alarm):
    alarm.arm(0.01, "while writing the outcome")
    give_up = time.monotonic() + BLOCKED_S
    while not no_timer():  # until the signal has come
        assert time.monotonic() < give_up, "the timer never expired"
        time.sleep(0.005)
    time.sleep(0.01)  # nothing is raised here
    # Later than the dropped deadline, yet accepted: that one is gone.
    assert interruption(alarm, (0.02, "next deadline")).reason == "next deadline"


def test_disarm_cancels_the_timer(alarm: Alarm):
    alarm.arm(1.0, "cancelled")
    assert not no_timer()
    alarm.disarm()
    assert no_timer()
    with alarm.body():
        time.sleep(0.02)


def test_disarm_forgets_the_deadline_so_a_later_one_can_be_set(alarm: Alarm):
    alarm.arm(0.05, "cancelled")
    alarm.disarm()
    assert interruption(alarm, (0.06, "armed again")).reason == "armed again"


def test_a_body_is_interrupted_once_so_its_cleanup_runs(alarm: Alarm):
    cleaned_up = []

    def body_with_cleanup() -> None:
        with alarm.body():
            try:
                alarm.arm(0.01, "timed out")
                time.sleep(BLOCKED_S)
            finally:
                alarm.interrupt_now("a second stop signal")  # does not cut the cleanup short
                cleaned_up.append(True)

    with pytest.raises(RunInterrupted, match=r"^timed out$"):
        body_with_cleanup()
    assert cleaned_up == [True]


def test_interrupt_now_raises_inside_a_body_once(alarm: Alarm):
    cleaned_up = []

    def stopped_body() -> None:
        with alarm.body():
            try:
                alarm.interrupt_now("interrupted by a second stop signal")
            finally:
                alarm.interrupt_now("a third stop signal")
                cleaned_up.append(True)

    with pytest.raises(RunInterrupted) as caught:
        stopped_body()
    assert caught.value.reason == "interrupted by a second stop signal"
    assert cleaned_up == [True]


def test_interrupt_now_does_nothing_outside_a_body(alarm: Alarm):
    alarm.interrupt_now("between runs")
    with alarm.body():
        pass
    alarm.interrupt_now("after the run")


def test_outside_the_main_thread_arming_does_nothing(alarm: Alarm):
    errors: list[BaseException] = []
    available: list[bool] = []

    def arm_from_a_thread() -> None:
        try:
            available.append(alarm.available())
            alarm.arm(0.01, "from a thread")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=arm_from_a_thread)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert (available, errors) == ([False], [])
    assert no_timer()
    assert alarm.available()


# -- stop_now: a stop that cannot wait, wherever it lands ---------------------------


def test_stop_now_in_a_body_interrupts_it(alarm: Alarm):
    with pytest.raises(RunInterrupted, match="interrupted by SIGTERM"), alarm.body():
        alarm.stop_now("interrupted by SIGTERM")


def test_stop_now_between_runs_raises_stop_now_with_its_exit_code(alarm: Alarm):
    from app.core.stops import StopNow

    with pytest.raises(StopNow) as raised:
        alarm.stop_now("interrupted by SIGTERM", exit_code=143)
    assert (raised.value.reason, raised.value.exit_code) == ("interrupted by SIGTERM", 143)


def test_stop_now_while_a_run_is_set_up_interrupts_its_body_as_it_starts(alarm: Alarm):
    ran: list[str] = []
    with alarm.protected():
        alarm.stop_now("interrupted by a second stop signal")  # no raise: bookkeeping goes on
        with pytest.raises(RunInterrupted, match="a second stop signal"), alarm.body():
            ran.append("body")
        assert alarm.take_fired() == "interrupted by a second stop signal"
    assert ran == []


def test_stop_now_after_a_body_lets_the_outcome_be_recorded(alarm: Alarm):
    with alarm.protected():
        with alarm.body():
            pass
        alarm.stop_now("interrupted by SIGINT")  # while recording: no raise
        recorded = True
    assert recorded
