"""The planted faults: where, when and how often the demo app misbehaves.

Every knob lives here so the ground truth is easy to read next to the code that causes it.
Rates are chosen so a Fisher exact test separates each fault from its control at ~300
traces, while the harmless pattern (Spanish-language requests) has no effect at all.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

TOOL_OUTAGE = "tool_outage"
SLOW_LONG_INPUTS = "slow_long_inputs"
EMPTY_RESPONSES = "empty_responses"
FAILING_ASSESSMENT = "failing_assessment"
HARMLESS = "harmless"
# A cause, not a ground-truth set: the planner skipped stops of a multi-city trip.
DROPPED_LEGS = "dropped_legs"


@dataclass(frozen=True)
class FaultPlan:
    """Rates and windows of the planted faults; times are seconds from the corpus start."""

    outage_start_s: float = 36 * 3600
    outage_end_s: float = 39 * 3600
    outage_failure_rate: float = 0.8
    background_failure_rate: float = 0.01
    long_request_chars: int = 400
    slow_long_rate: float = 0.85
    slow_seconds: tuple[float, float] = (8.0, 20.0)
    empty_currency_rate: float = 0.6
    dropped_legs_rate: float = 0.8

    def in_outage(self, offset_s: float) -> bool:
        return self.outage_start_s <= offset_s < self.outage_end_s

    def flight_provider_fails(self, offset_s: float, rng: random.Random) -> bool:
        """The flight provider returns 503s: mostly inside the outage window, rarely outside."""
        in_window = self.in_outage(offset_s)
        rate = self.outage_failure_rate if in_window else self.background_failure_rate
        return rng.random() < rate

    def model_is_slow(self, prompt_user_chars: int, rng: random.Random) -> bool:
        """Long user messages push the model onto a slow path most of the time."""
        return prompt_user_chars > self.long_request_chars and rng.random() < self.slow_long_rate

    def describe(self) -> dict[str, str]:
        """Plain-words description of each planted fault and of the harmless pattern."""
        hours = (self.outage_start_s / 3600, self.outage_end_s / 3600)
        return {
            TOOL_OUTAGE: (
                f"The flight search tool (search_flights) raises FlightProviderError "
                f"('503 Service Unavailable') for {self.outage_failure_rate:.0%} of its calls "
                f"between hour {hours[0]:g} and hour {hours[1]:g} of the corpus; the exception "
                f"is not caught, so the whole trace ends in ERROR. Outside that window it fails "
                f"for {self.background_failure_rate:.0%} of calls (background, not in the set)."
            ),
            SLOW_LONG_INPUTS: (
                f"When the user message is longer than {self.long_request_chars} characters "
                f"the planning chat-model call takes {self.slow_seconds[0]:g}-"
                f"{self.slow_seconds[1]:g} s instead of ~1 s ({self.slow_long_rate:.0%} of such "
                f"requests). Short requests are never slow this way."
            ),
            EMPTY_RESPONSES: (
                f"For currency-conversion questions the final chat-model call returns empty "
                f"content {self.empty_currency_rate:.0%} of the time; the app returns the empty "
                f"string with OK status."
            ),
            FAILING_ASSESSMENT: (
                f"For multi-city trip requests the planner only searches flights and hotels for "
                f"the first stop ({self.dropped_legs_rate:.0%} of them), so the human "
                f"'user_satisfaction' feedback is False far more often than for other requests. "
                f"The set holds multi-city traces whose user_satisfaction is False."
            ),
            HARMLESS: (
                "About 20% of requests are written in Spanish and carry the trace tag "
                "locale=es. They look different but have the same error rate, latency, "
                "empty-response rate and satisfaction as English requests: any hypothesis "
                "that Spanish requests are handled worse should be rejected."
            ),
        }
