"""Simulated human thumbs-up/down feedback (`user_satisfaction`) on served requests.

Users rate what they saw: errors and empty answers disappoint, and so does a multi-city plan
that covers only the first stop. Spanish-speaking users rate exactly like everyone else.
"""

from __future__ import annotations

import random

from mlflow.entities import AssessmentSource, Feedback

from .app import Outcome
from .clock import NS_PER_S
from .faults import DROPPED_LEGS, SLOW_LONG_INPUTS
from .turn import Turn

FEEDBACK_NAME = "user_satisfaction"
FEEDBACK_SHARE = 0.7
BASE_FAIL = 0.08
ERROR_FAIL = 0.75
EMPTY_FAIL = 0.8
SLOW_FAIL = 0.2
DROPPED_LEGS_FAIL = 0.85
MULTI_CITY_OK_FAIL = 0.2

RATIONALES = {
    "error": "It just showed an error.",
    "empty": "No answer at all.",
    "dropped": "I asked about several cities and it only planned the first one.",
    "slow": "Took forever.",
    "base": "Not what I was looking for.",
}


def user_feedback(turn: Turn, outcome: Outcome, rng: random.Random) -> Feedback | None:
    """The feedback this user leaves, if any, timestamped a little after the answer."""
    if rng.random() >= FEEDBACK_SHARE:
        return None
    reason, fail_rate = _fail_rate(turn, outcome)
    satisfied = rng.random() >= fail_rate
    created_ms = (turn.clock.now_ns + int(rng.uniform(5, 120) * NS_PER_S)) // 1_000_000
    return Feedback(
        name=FEEDBACK_NAME,
        value=satisfied,
        source=AssessmentSource(source_type="HUMAN", source_id=turn.request.user_id),
        rationale=None if satisfied or rng.random() < 0.5 else RATIONALES[reason],
        create_time_ms=created_ms,
    )


def _fail_rate(turn: Turn, outcome: Outcome) -> tuple[str, float]:
    """Why this user might be unhappy, and how likely they are to say so."""
    request = turn.request
    if outcome.error is not None:
        return "error", ERROR_FAIL
    if not outcome.response:
        return "empty", EMPTY_FAIL
    if request.is_multi_city:
        dropped = DROPPED_LEGS in turn.fired
        return ("dropped", DROPPED_LEGS_FAIL) if dropped else ("base", MULTI_CITY_OK_FAIL)
    if SLOW_LONG_INPUTS in turn.fired:
        return "slow", SLOW_FAIL
    return "base", BASE_FAIL
