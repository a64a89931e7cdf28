"""Find candidate hypotheses: features of traces that go with a problem outcome.

Outcomes (``agent.outcomes``) range from a trace ending in ERROR to one span failing with one
error type; features (``agent.features``) from which spans ran to a tag, a session turn or a
time window. Each is both a numpy mask (for the screen) and a SQL predicate (for the
executable plan), and the two mean the same thing.

The screen runs on the exploration half only; the holdout half is left for testing. Every
candidate, segment checks included, that overlaps a stronger one for the same outcome (a
time window above all) is tested with the stronger one's traces set aside.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.stats import fisher_exact

from agent.features import (
    cut_feature,
    features,
    numeric_fields,
    segment_features,
    value_features,
    window_feature,
)
from agent.frame import TraceFrame
from agent.outcomes import outcomes
from agent.vocabulary import Candidate, Feature, Outcome  # noqa: F401 (the vocabulary's home)

# Documented screening thresholds: a candidate must clear all of these on the exploration half.
SCREEN_MAX_P = 0.01   # lenient: every candidate must still pass the holdout test
SCREEN_MIN_RATIO = 2.0
SCREEN_MIN_EVENTS = 5
MAX_PER_OUTCOME = 3
MAX_HYPOTHESES = 24
SAME_HITS = 0.9
OVERLAP_FOR_EXCLUDE = 0.3
NESTED_SHARE = 0.9           # a feature with this share of its traces inside another's is nested in it
MAX_SEGMENT_CHECKS = 3
SPECIFIC_SHARE = 0.6
STRUCTURAL = ("tool", "span", "span_error", "span_empty", "documents", "value", "truncated",
              "tokens", "session", "length", "window", "segment")
COARSE = ("length", "window")   # threshold cuts: a pattern inside one describes it better


def screen(frame: TraceFrame, sql_fn: Callable[[str], Any] | None = None,
           where: str = "TRUE") -> list[Candidate]:
    """Candidates that clear the documented thresholds, strongest first per outcome."""
    chosen: list[Candidate] = []
    has_spans = frame.spans is not None and len(frame.spans)
    values, span_fields = value_features(frame, sql_fn, where) if sql_fn and has_spans else ([], [])
    base_features = features(frame, values)
    fields = numeric_fields(frame, span_fields)
    for outcome in outcomes(frame):
        feats = [f for f in base_features if not tautology(outcome, f)]
        feats += [f for f in (cut_feature(n, outcome) for n in fields)
                  if f is not None and not tautology(outcome, f)]
        window = window_feature(frame, outcome)
        if window is not None:
            feats.append(window)
        found = [c for f in feats if (c := _test(outcome, f)) is not None]
        found.sort(key=lambda c: (c.p_value, -c.ratio))
        chosen += _with_exclusions(_structural_first(found)[:MAX_PER_OUTCOME])
    chosen = _most_specific(chosen)
    chosen.sort(key=lambda c: c.p_value)
    chosen = _distinct(chosen)[:MAX_HYPOTHESES]
    return chosen + segment_checks(frame, chosen)


def _distinct(cands: list[Candidate]) -> list[Candidate]:
    """Strongest first, without candidates whose problem traces are (nearly) those of one
    already kept: two names for one set of traces would take two testing slots and end as
    one issue anyway. A candidate another one is tested against stays."""
    needed = {(e, c.outcome.key) for c in cands for e in c.exclude + c.within}
    kept: list[Candidate] = []
    for c in cands:
        hits = c.feature.mask & c.outcome.mask
        if (c.feature.sql, c.outcome.key) not in needed and any(
                _jaccard(hits, k.feature.mask & k.outcome.mask) >= SAME_HITS for k in kept):
            continue
        kept.append(c)
    return kept


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0


def _most_specific(cands: list[Candidate]) -> list[Candidate]:
    """Drop a trace-level error finding when a span failure under the same condition holds
    most of its failed traces: the span, its error type and message say more, and the rest
    are failures of other kinds that happen to fall under the condition."""
    def covered(c: Candidate) -> bool:
        hits = c.feature.mask & c.outcome.mask
        return any(o.outcome.kind == "span_error" and _same_condition(o.feature, c.feature)
                   and (hits & o.outcome.mask).sum() >= SPECIFIC_SHARE * hits.sum()
                   for o in cands)
    return [c for c in cands if c.outcome.kind != "error" or not covered(c)]


def tautology(outcome: Outcome, feature: Feature) -> bool:
    """Pairs where the feature restates the outcome rather than explaining it.

    A span outcome is judged only where its span runs, so that span's presence, failures and
    empty results say nothing new; an error of the same type in another span is the same
    error passing through the span tree; a failed span is how a trace ends in ERROR (the
    census reports those facts); a cut-off generation is the truncation outcome itself.
    """
    span = outcome.detail.get("span")
    same_span = span is not None and feature.detail.get("span") == span
    if same_span and feature.kind in ("tool", "span", "span_error", "span_empty"):
        return True
    etype = outcome.detail.get("error_type")
    if etype is not None and feature.detail.get("error_type") == etype:
        return True   # the same error raised through a parent or child span
    if outcome.kind == "error" and feature.kind == "span_error":
        return True
    return outcome.kind == "truncated" and feature.kind == "truncated"


def segment_checks(frame: TraceFrame, chosen: list[Candidate]) -> list[Candidate]:
    """Each segment is checked for the outcome where it looks worst, significant or not.

    Segments are the first thing people suspect ("Spanish requests are handled worse"); a
    check that comes back REJECTED with refuting traces is a finding too. A check is tested
    like any candidate: with the traces of stronger findings for its outcome (a time window
    above all) set aside, so a segment whose traffic peaks in an incident is not blamed for it.
    """
    taken = {c.feature.key for c in chosen}
    outs = outcomes(frame)
    checks, windows = [], {}
    for feature in segment_features(frame):
        if feature.key in taken or not outs:
            continue
        scored = [_score(o, feature) for o in outs if o.kind in ("error", "slow", "empty", "assessment")]
        if not scored:
            continue
        check = max(scored, key=lambda c: (c.ratio, -c.p_value))
        stronger = [c for c in chosen if c.outcome.key == check.outcome.key]
        window = window_feature(frame, check.outcome)
        if window is not None and window.key not in {c.feature.key for c in stronger}:
            stronger.insert(0, windows.setdefault(window.key, _score(check.outcome, window)))
        _with_exclusions(stronger + [check])
        checks.append(check)
    checks.sort(key=lambda c: c.p_value)
    checks = checks[:MAX_SEGMENT_CHECKS]
    # A window a check is tested against must be a finding itself (tested first), or there
    # would be nothing validated to set aside.
    used = {e for c in checks for e in c.exclude + c.within}
    return [w for w in windows.values() if w.feature.sql in used] + checks


def _structural_first(found: list[Candidate]) -> list[Candidate]:
    """Order candidates so that each explanation is tested before its look-alikes.

    Of two overlapping candidates, the one whose effect survives with the other's traces set
    aside goes first (it explains the other, not the reverse); see ``_goes_first`` for
    patterns inside a coarse one and ``_entangled_goes_first`` when neither survives alone.
    One of several words selecting the same traces is kept.
    """
    ordered: list[Candidate] = []
    # Time first: an incident window is the commonest confounder of everything inside it.
    found = [c for c in found if c.feature.kind == "window"] + [
        c for c in found if c.feature.kind != "window"]
    for cand in found:
        if any(_same_traces(cand, other) for other in ordered):
            continue
        position = len(ordered)
        for i, other in enumerate(ordered):
            if _overlap(cand, other) >= OVERLAP_FOR_EXCLUDE and _goes_first(cand, other):
                position = min(position, i)
        ordered.insert(position, cand)
    return _independent_first(ordered)


def _goes_first(cand: Candidate, other: Candidate) -> bool:
    """Is ``cand`` tested before ``other``, an overlapping candidate for the same outcome?

    A pattern lying inside a coarse one (a length threshold, a time window) goes first: the
    coarse cut is arbitrary and the narrower pattern is the more specific description of what
    went wrong; the coarse one is then re-tested without it. Otherwise the one that survives
    without the other goes first.
    """
    if other.feature.kind == "window" or cand.feature.kind == "window":
        return cand.feature.kind == "window"
    if other.feature.kind in COARSE and _nested_in(cand, other):
        return True
    if cand.feature.kind in COARSE and _nested_in(other, cand):
        return False
    mine, theirs = _survives_without(cand, other), _survives_without(other, cand)
    if not mine and not theirs:
        return _entangled_goes_first(cand, other)
    return mine and not theirs


def _entangled_goes_first(cand: Candidate, other: Candidate) -> bool:
    """Neither survives without the other: which of the two is tested first?

    When one feature's traces lie (almost) inside the other's, the narrower one is the specific
    explanation: the broader pattern's effect vanished once the narrower traces were set aside,
    and the narrower one cannot be tried outside the broader by construction. Otherwise a tool,
    length, window or segment goes ahead of a word that merely tracks it.
    """
    if _nested_in(cand, other):
        return True
    if _nested_in(other, cand):
        return False
    return other.feature.kind == "word" and cand.feature.kind in STRUCTURAL


def _nested_in(inner: Candidate, outer: Candidate) -> bool:
    n = int(inner.feature.mask.sum())
    return n < int(outer.feature.mask.sum()) and (
        int((inner.feature.mask & outer.feature.mask).sum()) >= NESTED_SHARE * n)


def _independent_first(ordered: list[Candidate]) -> list[Candidate]:
    """Candidates explained by an earlier one go last, so they don't crowd out real ones.

    A candidate whose effect disappears once an earlier, overlapping candidate's traces are set
    aside would be rejected by its plan anyway; it only takes a slot under MAX_PER_OUTCOME
    when nothing independent is left. A candidate nested in an earlier one cannot survive
    without it by construction; its plan compares it with the rest of that one instead, so it
    keeps its place.
    """
    independent, explained = [], []
    for cand in ordered:
        earlier = independent + explained
        covered = any(_overlap(cand, e) >= OVERLAP_FOR_EXCLUDE and not _nested_in(cand, e)
                      and not _survives_without(cand, e) for e in earlier)
        (explained if covered else independent).append(cand)
    return independent + explained


def _survives_without(cand: Candidate, other: Candidate) -> bool:
    """Does ``cand`` still go with its outcome once ``other``'s traces are set aside?"""
    keep = ~other.feature.mask
    if cand.outcome.scope is not None:
        keep = keep & cand.outcome.scope
    m, o = cand.feature.mask & keep, cand.outcome.mask & keep
    a, n1 = int((m & o).sum()), int(m.sum())
    b, n0 = int((~cand.feature.mask & keep & o).sum()), int((~cand.feature.mask & keep).sum())
    if a < 3 or not n0:
        return False
    ratio = (a / n1) / (b / n0) if b else float("inf")
    p = float(fisher_exact([[a, n1 - a], [b, n0 - b]], alternative="greater")[1])
    return p < 0.05 and ratio >= 1.5


def _same_condition(a: Feature, b: Feature) -> bool:
    """One condition, or two selecting (nearly) the same traces (each outcome finds its own
    time window; two windows over one incident are one condition)."""
    if a.key == b.key:
        return True
    union = (a.mask | b.mask).sum()
    return bool(union) and (a.mask & b.mask).sum() / union >= 0.8


def _same_traces(a: Candidate, b: Candidate) -> bool:
    union = (a.feature.mask | b.feature.mask).sum()
    return bool(union) and (a.feature.mask & b.feature.mask).sum() / union >= 0.9


def _overlap(a: Candidate, b: Candidate) -> float:
    hits_a, hits_b = a.feature.mask & a.outcome.mask, b.feature.mask & b.outcome.mask
    union = (hits_a | hits_b).sum()
    return float((hits_a & hits_b).sum() / union) if union else 0.0


def _test(outcome: Outcome, feature: Feature) -> Candidate | None:
    """The candidate if it clears the screen's thresholds, else None."""
    cand = _score(outcome, feature)
    if cand.events < SCREEN_MIN_EVENTS or cand.control_n == 0 or cand.ratio < SCREEN_MIN_RATIO:
        return None
    return cand if cand.p_value < SCREEN_MAX_P else None


def _score(outcome: Outcome, feature: Feature) -> Candidate:
    scope = outcome.scope if outcome.scope is not None else np.ones(len(feature.mask), dtype=bool)
    m, o = feature.mask & scope, outcome.mask & scope
    a, n1 = int((m & o).sum()), int(m.sum())
    b, n0 = int((~feature.mask & o).sum()), int((~feature.mask & scope).sum())
    rate1, rate0 = a / max(n1, 1), b / max(n0, 1)
    ratio = rate1 / rate0 if rate0 else (float("inf") if rate1 else 1.0)
    p = float(fisher_exact([[a, n1 - a], [b, n0 - b]], alternative="greater")[1]) if n1 and n0 else 1.0
    return Candidate(outcome, feature, a, n1, b, n0, p, ratio)


def _with_exclusions(found: list[Candidate]) -> list[Candidate]:
    """A weaker candidate whose problem traces overlap a stronger one's must survive without them,
    or, when it lies inside the stronger one, must stand out against the rest of it."""
    for i, cand in enumerate(found):
        hits = cand.feature.mask & cand.outcome.mask
        for stronger in found[:i]:
            other = stronger.feature.mask & stronger.outcome.mask
            union = (hits | other).sum()
            if not union or (hits & other).sum() / union < OVERLAP_FOR_EXCLUDE:
                continue
            into = cand.within if _nested_in(cand, stronger) else cand.exclude
            if stronger.feature.sql not in cand.within + cand.exclude:
                into.append(stronger.feature.sql)   # within: setting the broader aside leaves nothing
    return found
