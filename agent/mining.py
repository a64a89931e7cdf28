"""Find candidate hypotheses: features of traces that go with a problem outcome.

Outcomes: a trace ends in ERROR, is slow (beyond the 90th percentile), gets an empty
response, or fails an assessment. Features: a TOOL span is called, the request is long, the
request mentions a word, the trace falls in a time window. Each is both a numpy mask (for the
screen) and a SQL predicate (for the executable plan), and the two mean the same thing.

The screen runs on the exploration half only; the holdout half is left for testing.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import fisher_exact, hypergeom

from agent.frame import EMPTY_RESPONSES, TraceFrame, quote, sql_list
from insights.analytics.assessments import failing_predicate

# Documented screening thresholds: a candidate must clear all of these on the exploration half.
SCREEN_MAX_P = 0.01   # lenient: every candidate must still pass the holdout test
SCREEN_MIN_RATIO = 2.0
SCREEN_MIN_EVENTS = 5
MAX_PER_OUTCOME = 3
MAX_HYPOTHESES = 12
MAX_WORDS = 150
OVERLAP_FOR_EXCLUDE = 0.3
NESTED_SHARE = 0.9           # a feature with this share of its traces inside another's is nested in it
MAX_SEGMENT_CHECKS = 3
SEGMENT_MIN_SHARE, SEGMENT_MAX_SHARE = 0.05, 0.5
STRUCTURAL = ("tool", "length", "window", "segment")
COARSE = ("length", "window")   # threshold cuts: a pattern inside one describes it better
_WORD = re.compile(r"[a-z][a-z\-]{3,}")
_STOP = {"that", "this", "with", "from", "have", "what", "which", "about", "your", "there",
         "would", "could", "should", "please", "content", "role", "user", "messages", "assistant",
         "system", "text", "type", "input", "inputs", "query", "question", "request", "true",
         "false", "null", "none"}


@dataclass
class Outcome:
    key: str
    label: str          # "end in an error"
    noun: str           # "errors"
    sql: str
    mask: np.ndarray
    scope_sql: str | None = None   # assessment outcomes compare only assessed traces
    scope: np.ndarray | None = None


@dataclass
class Feature:
    key: str
    kind: str
    label: str          # "traces that call the `search` tool"
    sql: str
    mask: np.ndarray
    detail: dict = field(default_factory=dict)


@dataclass
class Candidate:
    outcome: Outcome
    feature: Feature
    events: int
    n: int
    control_events: int
    control_n: int
    p_value: float
    ratio: float
    exclude: list[str] = field(default_factory=list)
    within: list[str] = field(default_factory=list)


def outcomes(frame: TraceFrame) -> list[Outcome]:
    out = []
    if frame.error.sum() >= SCREEN_MIN_EVENTS:
        out.append(Outcome("error", "end in an error", "errors", "state = 'ERROR'", frame.error))
    if len(frame):
        p90 = float(np.percentile(frame.latency_ms, 90))
        slow = frame.latency_ms > p90
        if slow.sum() >= SCREEN_MIN_EVENTS:
            out.append(Outcome("slow", f"are slow (over {p90 / 1000:.1f} s, the 90th percentile)",
                               "slow traces", f"execution_time_ms > {int(p90)}", slow,
                               ))
    empty = frame.empty_response & ~frame.error   # a failed trace has no answer by definition
    if empty.sum() >= SCREEN_MIN_EVENTS:
        sql = f"state = 'OK' AND coalesce(trim(response), '') IN ({sql_list(EMPTY_RESPONSES)})"
        out.append(Outcome("empty", "get an empty response", "empty responses", sql, empty))
    for name in sorted(set().union(*frame.assessed) if len(frame) else set()):
        fails = frame.has(frame.failing, name)
        if fails.sum() >= SCREEN_MIN_EVENTS:
            q = quote(name)
            out.append(Outcome(
                f"assessment:{name}", f"fail the {q} assessment", f"failed {q} assessments",
                f"exists(assessments, a -> a.name = {q} AND {failing_predicate('a.value')})",
                fails, scope_sql=f"exists(assessments, a -> a.name = {q})",
                scope=frame.has(frame.assessed, name),
            ))
    return out


def features(frame: TraceFrame) -> list[Feature]:
    feats = [_tool_feature(frame, t) for t in sorted(set().union(*frame.tools) if len(frame) else set())]
    lengths = np.array([len(r) for r in frame.request], dtype=np.int64)
    if len(frame):
        p75 = int(np.percentile(lengths, 75))
        feats.append(Feature("long_request", "length", f"requests longer than {p75} characters",
                             f"length(request) > {p75}", lengths > p75, {"threshold": p75}))
    feats += segment_features(frame)
    feats += [_word_feature(frame, w) for w in _frequent_words(frame)]
    return [f for f in feats if 0 < f.mask.sum() < len(frame)]


def _tool_feature(frame: TraceFrame, tool: str) -> Feature:
    q = quote(tool)
    return Feature(f"tool:{tool}", "tool", f"traces that call the {q} tool",
                   f"exists(spans, s -> s.span_type = 'TOOL' AND s.name = {q})",
                   frame.has(frame.tools, tool), {"tool": tool})


def _word_feature(frame: TraceFrame, word: str) -> Feature:
    mask = np.array([word in r.lower() for r in frame.request], dtype=bool)
    return Feature(f"word:{word}", "word", f"requests mentioning '{word}'",
                   f"lower(request) LIKE '%{word}%'", mask, {"word": word})


def _frequent_words(frame: TraceFrame) -> list[str]:
    df: Counter[str] = Counter()
    for text in frame.request:
        df.update(set(_WORD.findall(text.lower())) - _STOP)
    n = len(frame)
    ok = [(w, c) for w, c in df.items() if 0.02 * n <= c <= 0.6 * n and c >= SCREEN_MIN_EVENTS]
    ok.sort(key=lambda wc: (-wc[1], wc[0]))
    return [w for w, _ in ok[:MAX_WORDS]]


def segment_features(frame: TraceFrame) -> list[Feature]:
    """Low-cardinality trace tags (locale, tier, channel, version...): segments worth checking."""
    values: dict[str, Counter[str]] = {}
    for tags in frame.tags:
        for key, value in tags.items():
            values.setdefault(key, Counter())[str(value)] += 1
    feats = []
    n = len(frame)
    for key, counts in sorted(values.items()):
        if not 2 <= len(counts) <= 10:
            continue
        for value, count in sorted(counts.items()):
            if SEGMENT_MIN_SHARE * n <= count <= SEGMENT_MAX_SHARE * n:
                mask = np.array([str(t.get(key)) == value for t in frame.tags], dtype=bool)
                feats.append(Feature(f"segment:{key}={value}", "segment",
                                     f"traces tagged {key}={value}",
                                     f"tags[{quote(key)}] = {quote(value)}", mask,
                                     {"tag": key, "value": value}))
    return feats


def window_feature(frame: TraceFrame, outcome: Outcome, max_hours: int = 12) -> Feature | None:
    """The run of consecutive hours where the outcome is most over-represented."""
    if not len(frame):
        return None
    hour = (frame.time_ms // 3_600_000).astype(np.int64)
    first, last = int(hour.min()), int(hour.max())
    if last - first < 3:
        return None
    span = last - first + 1
    total = np.bincount(hour - first, minlength=span)
    events = np.bincount(hour - first, weights=outcome.mask.astype(float), minlength=span)
    starts, lengths = np.meshgrid(np.arange(span), np.arange(1, max_hours + 1), indexing="ij")
    ok = starts + lengths <= span
    starts, lengths = starts[ok], lengths[ok]
    cum_n = np.concatenate([[0], np.cumsum(total)])
    cum_e = np.concatenate([[0], np.cumsum(events)])
    n = cum_n[starts + lengths] - cum_n[starts]
    e = cum_e[starts + lengths] - cum_e[starts]
    # One-sided chance of seeing this many events in a window of this size (Fisher's tail).
    p = hypergeom.sf(e - 1, int(total.sum()), int(events.sum()), n)
    p[(n < SCREEN_MIN_EVENTS) | (n > 0.5 * total.sum()) | (e < SCREEN_MIN_EVENTS)] = 1.0
    if not len(p) or p.min() >= SCREEN_MAX_P:
        return None
    i = int(np.argmin(p))
    best = (int(starts[i]), int(lengths[i]))
    lo = (first + best[0]) * 3_600_000
    hi = lo + best[1] * 3_600_000
    mask = (frame.time_ms >= lo) & (frame.time_ms < hi)
    return Feature(f"window:{outcome.key}:{lo}", "window", f"traces between {_utc(lo)} and {_utc(hi)} UTC",
                   f"request_time_ms >= {lo} AND request_time_ms < {hi}", mask,
                   {"start_ms": lo, "end_ms": hi})


def _utc(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def screen(frame: TraceFrame) -> list[Candidate]:
    """Candidates that clear the documented thresholds, strongest first per outcome."""
    chosen: list[Candidate] = []
    base_features = features(frame)
    for outcome in outcomes(frame):
        feats = list(base_features)
        window = window_feature(frame, outcome)
        if window is not None:
            feats.append(window)
        found = [c for f in feats if (c := _test(outcome, f)) is not None]
        found.sort(key=lambda c: (c.p_value, -c.ratio))
        chosen += _with_exclusions(_structural_first(found)[:MAX_PER_OUTCOME])
    chosen.sort(key=lambda c: c.p_value)
    chosen = chosen[:MAX_HYPOTHESES]
    return chosen + segment_checks(frame, chosen)


def segment_checks(frame: TraceFrame, chosen: list[Candidate]) -> list[Candidate]:
    """Each segment is checked for the outcome where it looks worst, significant or not.

    Segments are the first thing people suspect ("Spanish requests are handled worse"); a
    check that comes back REJECTED with refuting traces is a finding too.
    """
    taken = {c.feature.key for c in chosen}
    outs = outcomes(frame)
    checks = []
    for feature in segment_features(frame):
        if feature.key in taken or not outs:
            continue
        scored = [_score(o, feature) for o in outs]
        checks.append(max(scored, key=lambda c: (c.ratio, -c.p_value)))
    checks.sort(key=lambda c: c.p_value)
    return checks[:MAX_SEGMENT_CHECKS]


def _structural_first(found: list[Candidate]) -> list[Candidate]:
    """Order candidates so that each explanation is tested before its look-alikes.

    Of two overlapping candidates, the one whose effect survives with the other's traces set
    aside goes first (it explains the other, not the reverse); see ``_goes_first`` for
    patterns inside a coarse one and ``_entangled_goes_first`` when neither survives alone.
    One of several words selecting the same traces is kept.
    """
    ordered: list[Candidate] = []
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
            if _nested_in(cand, stronger):   # setting the broader aside would leave nothing
                cand.within.append(stronger.feature.sql)
            else:
                cand.exclude.append(stronger.feature.sql)
    return found
