"""Simulated time, so a corpus spans two days of traffic without sleeping."""

from __future__ import annotations

from dataclasses import dataclass

NS_PER_S = 1_000_000_000


@dataclass
class SimClock:
    """A clock the app advances by the latency it *would* have spent.

    Spans read their start and end times from here, so durations and timestamps in the
    stored traces are simulated while everything else goes through real MLflow tracing.
    """

    now_ns: int

    def advance(self, seconds: float) -> int:
        """Move time forward by `seconds` (instead of sleeping) and return the new time."""
        self.now_ns += int(seconds * NS_PER_S)
        return self.now_ns
