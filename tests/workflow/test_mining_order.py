"""How the miner orders overlapping candidates for one outcome (agent/mining.py).

Synthetic masks stand in for traces here: the ordering is pure arithmetic on which traces have
the feature and the outcome, so no store is needed to state it exactly.
"""

from __future__ import annotations

import numpy as np

from agent.mining import Candidate, Feature, Outcome, _score, _structural_first, _with_exclusions

N = 600


def _mask(idx) -> np.ndarray:
    m = np.zeros(N, dtype=bool)
    m[list(idx)] = True
    return m


def _every(start: int, stop: int, step: int) -> set[int]:
    return set(range(start, stop, step))


def _candidates(outcome_idx: set[int], features: dict[str, tuple[str, set[int]]]) -> dict[str, Candidate]:
    outcome = Outcome("assessment:x", "fail x", "failed x", "FAILED", _mask(outcome_idx))
    return {key: _score(outcome, Feature(key, kind, key, f"<{key}>", _mask(idx)))
            for key, (kind, idx) in features.items()}


# A broad structural pattern (say, long requests: traces 0-149) that holds a narrow one (a word
# in traces 0-39). The narrow traces fail 30/40 times; the rest fail 1 in 10 everywhere.
NARROW = set(range(40))
BROAD = set(range(150))
FAILS_IN_NARROW = set(range(30))
BACKGROUND = _every(40, N, 10)


def test_a_narrow_pattern_that_carries_a_broad_ones_effect_is_tested_first() -> None:
    c = _candidates(FAILS_IN_NARROW | BACKGROUND,
                    {"long": ("length", BROAD), "word": ("word", NARROW)})
    assert c["long"].p_value < 0.01 and c["word"].p_value < 0.01
    ordered = _with_exclusions(_structural_first([c["long"], c["word"]]))
    assert [x.feature.key for x in ordered] == ["word", "long"]
    # The broad pattern is re-tested without the narrow one's traces (where it shows nothing).
    assert c["long"].exclude == ["<word>"] and c["long"].within == []
    assert c["word"].exclude == [] and c["word"].within == []


def _standing_broad(kind: str) -> dict[str, Candidate]:
    """The broad pattern's other traces fail often too (1 in 2): it stands on its own, and
    setting it aside would leave the narrow pattern no traces at all."""
    fails = FAILS_IN_NARROW | _every(40, 150, 2) | _every(150, N, 10)
    return _candidates(fails, {"broad": (kind, BROAD), "word": ("word", NARROW)})


def test_a_narrow_pattern_inside_a_broad_real_tool_is_compared_with_the_rest_of_it() -> None:
    c = _standing_broad("tool")
    ordered = _with_exclusions(_structural_first([c["word"], c["broad"]]))
    assert [x.feature.key for x in ordered] == ["broad", "word"]
    assert c["word"].within == ["<broad>"] and c["word"].exclude == []


def test_a_pattern_inside_a_length_threshold_goes_first_even_when_the_threshold_stands() -> None:
    # A length cut is coarse: the narrow pattern is the more specific description, so it is
    # tested first and the length cut is re-tested without its traces.
    c = _standing_broad("length")
    ordered = _with_exclusions(_structural_first([c["broad"], c["word"]]))
    assert [x.feature.key for x in ordered] == ["word", "broad"]
    assert c["broad"].exclude == ["<word>"] and c["word"].within == []


def test_a_word_tracking_a_tool_goes_after_the_tool() -> None:
    # The word and the tool select mostly the same traces, neither nested in the other; neither
    # survives without the other, so the structural feature is tried first.
    tool, word = set(range(60)), set(range(10, 70))
    fails = _every(0, 60, 2) | _every(70, N, 12)
    c = _candidates(fails, {"word": ("word", word), "tool": ("tool", tool)})
    ordered = _with_exclusions(_structural_first([c["word"], c["tool"]]))
    assert [x.feature.key for x in ordered] == ["tool", "word"]
    assert c["word"].exclude == ["<tool>"]


def test_an_explained_candidate_does_not_crowd_out_an_independent_one() -> None:
    # "tool" explains "word" (same failing traces); "other" is an unrelated real pattern with a
    # weaker p-value. With three slots the independent one must come before the explained one.
    tool, word, other = set(range(60)), set(range(15, 67)), set(range(300, 340))
    fails = _every(0, 60, 2) | _every(300, 340, 3) | _every(60, 300, 15) | _every(340, N, 15)
    c = _candidates(fails, {"tool": ("tool", tool), "word": ("word", word), "other": ("tool", other)})
    found = sorted(c.values(), key=lambda x: x.p_value)
    assert [x.feature.key for x in found][-1] == "other", "premise: the independent one is weakest"
    ordered = _structural_first(found)
    assert [x.feature.key for x in ordered] == ["tool", "other", "word"]


def test_a_nested_pattern_keeps_its_place_among_independent_ones() -> None:
    # A tool stands on its own and holds "word", which can never survive without it: that is
    # what its within-comparison is for, not a reason to push it behind weaker patterns.
    broad_rest_fails = _every(40, 150, 2)
    other = set(range(300, 340))
    fails = (FAILS_IN_NARROW | broad_rest_fails | _every(300, 340, 2) | _every(150, 300, 10)
             | _every(340, N, 10))
    c = _candidates(fails, {"tool": ("tool", BROAD), "word": ("word", NARROW),
                            "other": ("tool", other)})
    assert c["word"].p_value < c["other"].p_value < 0.01, "premise: the word ranks ahead"
    keys = [x.feature.key for x in _structural_first(sorted(c.values(), key=lambda x: x.p_value))]
    assert keys.index("word") < keys.index("other"), keys
