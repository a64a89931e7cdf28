"""What one request carries through the app: its clock, randomness and fault plan."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .clock import NS_PER_S, SimClock
from .faults import FaultPlan
from .workload import UserRequest


@dataclass
class Turn:
    """Per-request state handed to the model and the tools.

    `fired` collects the names of planted faults that actually happened in this request, so
    the corpus builder records ground truth from what occurred rather than from intent.
    """

    request: UserRequest
    clock: SimClock
    rng: random.Random
    plan: FaultPlan
    corpus_start_ns: int
    fired: set[str] = field(default_factory=set)

    @property
    def offset_s(self) -> float:
        """Seconds since the corpus start, at the current simulated time."""
        return (self.clock.now_ns - self.corpus_start_ns) / NS_PER_S

    def wait(self, low: float, high: float) -> None:
        """Spend a simulated latency drawn uniformly from [low, high] seconds."""
        self.clock.advance(self.rng.uniform(low, high))
