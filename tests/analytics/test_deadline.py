"""The query time limit's watch (insights.analytics.deadline), on its own: it interrupts only
once the time is up, keeps interrupting until the query ends (a query that starts its work after
the first interrupt is stopped too), and is quiet once the block has exited."""

from __future__ import annotations

import time

from insights.analytics.deadline import REPEAT_S, interrupt_after


def test_a_block_ending_in_time_is_never_interrupted():
    calls = []
    with interrupt_after(0.5, lambda: calls.append(time.monotonic())) as fired:
        time.sleep(0.05)
    time.sleep(0.6)
    assert calls == [] and not fired.is_set()


def test_a_block_running_past_its_time_is_interrupted_until_it_ends():
    calls = []
    start = time.monotonic()
    with interrupt_after(0.05, lambda: calls.append(time.monotonic())) as fired:
        time.sleep(0.05 + 3 * REPEAT_S)
    ended = time.monotonic()
    assert fired.is_set() and len(calls) >= 2
    assert all(start + 0.05 <= t <= ended for t in calls)
    seen = len(calls)
    time.sleep(2 * REPEAT_S)
    assert len(calls) == seen  # nothing after the block exited


def test_a_failing_interrupt_is_tried_again():
    calls = []

    def flaky() -> None:
        calls.append(1)
        raise RuntimeError("no job yet")

    with interrupt_after(0.01, flaky) as fired:
        time.sleep(0.01 + 2.5 * REPEAT_S)
    assert fired.is_set() and len(calls) >= 2
