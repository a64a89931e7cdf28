"""Outcomes: what went wrong in a trace, at trace level and inside its spans.

Trace level: the trace ends in ERROR, is slow (beyond the 90th percentile), gets an empty
answer, fails an assessment, or has a generation cut off by its token limit. Span level, for
every span name of any type (TOOL, RETRIEVER, RERANKER, AGENT, CHAT_MODEL, LLM, EMBEDDING,
PARSER, custom): it fails with a given error type; it is slow against its own distribution
(``slow_limit``: well beyond its median); it returns nothing; it runs more often in one trace than it usually
does (a loop: more than twice its median count per trace, and at least 4). A span
outcome compares only traces where that span runs (its scope), so
"the span runs" can never pass for a cause of its own failure.
"""

from __future__ import annotations

import numpy as np

from agent.frame import (
    TraceFrame,
    empty_output_sql,
    origin_failure_sql,
    quote,
    truncated_sql,
)
from agent.vocabulary import Outcome, span_kind
from insights.analytics.assessments import failing_predicate

MIN_EVENTS = 5
SPAN_MIN_CALLS = 30
SLOW_SPAN_FACTOR = 2.5        # a span call is slow beyond this multiple of its median at least
MODE_SEPARATION = 4.0
SLOW_SPREADS = 3.0            # ... and beyond this many robust deviations of its log duration
SLOW_SPAN_MIN_SHARE = 0.02
EMPTY_SPAN_MAX_SHARE = 0.6    # a span that is usually empty returns nothing by design
LOOP_MIN_CALLS = 3
CANNED_MIN_TRACES, CANNED_MIN_SHARE, MAX_CANNED = 10, 0.03, 3
LOOP_MAX_SHARE = 0.5
MAX_SPAN_NAMES = 40

# one definition of an empty answer (insights.analytics.answers), computed once per trace
EMPTY_ANSWER_SQL = "state = 'OK' AND response_empty"


def outcomes(frame: TraceFrame) -> list[Outcome]:
    if not len(frame):
        return []
    out = _trace_outcomes(frame) + _assessment_outcomes(frame)
    if frame.spans is not None and len(frame.spans):
        out += _generation_outcomes(frame)
        per_name = [o for name in _busy_span_names(frame) for o in _span_outcomes(frame, name)]
        out += per_name + _slow_by_type(frame, per_name) + _errors_by_type(frame)
    return [o for o in out if _events(o) >= MIN_EVENTS]


def _errors_by_type(frame: TraceFrame) -> list[Outcome]:
    """One error type raised by several spans of one type (two retrievers behind one failing
    service): whichever of them runs, the same failure."""
    spans = frame.spans
    failed = spans.origin_error != None  # noqa: E711
    groups: dict[tuple[str, str], set[str]] = {}
    for name, stype, etype in zip(spans.name[failed], spans.span_type[failed], spans.origin_error[failed]):
        groups.setdefault((str(stype), str(etype)), set()).add(str(name))
    out = []
    for (stype, etype), names in sorted(groups.items()):
        if len(names) < 2:
            continue
        kind, listed = span_kind(stype), ", ".join(quote(n) for n in sorted(names))
        mine = np.isin(spans.name, sorted(names)) & (spans.span_type == stype)
        hit = mine & failed & (spans.origin_error == etype)
        message = _common_message(spans.error_message[hit], etype)
        out.append(Outcome(
            f"type_error:{stype}:{etype}", f"have a {kind.lower()} span fail with {etype}",
            f"{kind.lower()} failures with {etype}",
            f"exists(spans, s -> s.parent_id IS NOT NULL AND s.span_type = {quote(stype)} AND "
            f"{origin_failure_sql('s', etype)})",
            frame.traces_where(hit),
            scope_sql=f"exists(spans, s -> s.parent_id IS NOT NULL AND s.span_type = {quote(stype)})",
            scope=frame.traces_where(spans.span_type == stype), kind="span_error",
            title=f"{kind} spans ({listed}) fail with {etype}" + (f" ({message})" if message else ""),
            detail={"span_type": stype, "spans": sorted(names), "error_type": etype,
                    "message": message}))
    return out


def _slow_by_type(frame: TraceFrame, per_name: list[Outcome]) -> list[Outcome]:
    """Spans of one type slow against their own medians, whichever of them runs (two
    rerankers, three sub-agents): a condition that slows the step shows once, not per name."""
    by_type: dict[str, list[Outcome]] = {}
    for o in per_name:
        if o.kind == "span_slow":
            by_type.setdefault(o.detail["span_type"], []).append(o)
    out = []
    for stype, group in sorted(by_type.items()):
        if len(group) < 2:
            continue
        kind = span_kind(stype)
        names = [o.detail["span"] for o in group]
        cond = " OR ".join(f"(s.name = {quote(o.detail['span'])} AND s.duration_ms > "
                           f"{o.detail['threshold_ms']:.1f})" for o in group)
        scope = np.logical_or.reduce([o.scope for o in group])
        mask = np.logical_or.reduce([o.mask for o in group])
        listed = ", ".join(quote(n) for n in names)
        out.append(Outcome(
            f"type_slow:{stype}", f"have a {kind.lower()} span run slow",
            f"slow {kind.lower()} calls", f"exists(spans, s -> s.parent_id IS NOT NULL AND ({cond}))",
            mask, scope_sql=f"exists(spans, s -> s.parent_id IS NOT NULL AND s.name IN ({listed}))",
            scope=scope, kind="span_slow",
            title=f"{kind} spans ({listed}) are slow for their kind",
            detail={"span_type": stype, "spans": names}))
    return out


def _events(o: Outcome) -> int:
    return int((o.mask & o.scope).sum()) if o.scope is not None else int(o.mask.sum())


def span_sql(name: str, condition: str = "") -> str:
    """Trace SQL: the trace has a (non-root) span called ``name`` meeting ``condition``."""
    extra = f" AND {condition}" if condition else ""
    return f"exists(spans, s -> s.parent_id IS NOT NULL AND s.name = {quote(name)}{extra})"


def _trace_outcomes(frame: TraceFrame) -> list[Outcome]:
    out = [Outcome("error", "end in an error", "errors", "state = 'ERROR'", frame.error,
                   kind="error", title="Requests fail")]
    p90 = float(np.percentile(frame.latency_ms, 90))
    out.append(Outcome("slow", f"are slow (over {p90 / 1000:.1f} s, the 90th percentile)",
                       "slow traces", f"execution_time_ms > {int(p90)}",
                       frame.latency_ms > int(p90), kind="slow",
                       title=f"Requests take over {p90 / 1000:.1f} s", detail={"threshold_ms": p90}))
    empty = frame.empty_response & ~frame.error   # a failed trace has no answer by definition
    out.append(Outcome("empty", "get an empty response", "empty responses", EMPTY_ANSWER_SQL,
                       empty, kind="empty", title="Answers come back empty"))
    return out + _canned_answers(frame) + _token_outcomes(frame)


def _canned_answers(frame: TraceFrame) -> list[Outcome]:
    """One short answer repeated verbatim across many requests: a fallback, mined from the
    data (no word list decides what a fallback says)."""
    answers = frame.short_response or []
    ok = ~frame.error & ~frame.empty_response   # empty answers are their own outcome
    counts: dict[str, int] = {}
    for text, good in zip(answers, ok):
        if text and good:
            counts[text] = counts.get(text, 0) + 1
    floor = max(CANNED_MIN_TRACES, CANNED_MIN_SHARE * int(ok.sum()))
    out = []
    for text, n in sorted(counts.items(), key=lambda kv: -kv[1])[:MAX_CANNED]:
        if n < floor:
            break
        mask = np.array([a == text for a in answers], dtype=bool) & ok
        shown = text if len(text) <= 60 else text[:59] + "…"
        out.append(Outcome(
            f"canned:{text}", f"get the same canned answer {quote(shown)}",
            "canned answers", f"state = 'OK' AND response = {quote(text)}", mask, kind="canned",
            title=f"Requests get the same canned answer {quote(shown)}", detail={"answer": text}))
    return out


def _token_outcomes(frame: TraceFrame) -> list[Outcome]:
    """Unusually many output tokens: beyond the trace's usual band (``slow_limit``'s rule)."""
    tokens = frame.output_tokens
    if tokens is None:
        return []
    seen = ~np.isnan(tokens)
    if seen.sum() < SPAN_MIN_CALLS:
        return []
    limit = int(slow_limit(tokens[seen]))
    return [Outcome(
        "tokens", f"use more than {limit} output tokens", "heavy token use",
        f"output_tokens > {limit}", np.nan_to_num(tokens, nan=0) > limit,
        scope_sql="output_tokens IS NOT NULL", scope=seen, kind="tokens",
        title=f"Requests use unusually many output tokens (over {limit})",
        detail={"threshold": limit})]


def _assessment_outcomes(frame: TraceFrame) -> list[Outcome]:
    out = []
    for name in sorted(set().union(*frame.assessed)):
        q = quote(name)
        scale = (frame.scales or {}).get(name)
        if scale is not None and not scale.has_failing:
            continue   # a categorical assessment without a failing value
        failing = scale.failing_sql("a.value") if scale else failing_predicate("a.value")
        out.append(Outcome(
            f"assessment:{name}", f"fail the {q} assessment", f"failed {q} assessments",
            f"exists(assessments, a -> a.name = {q} AND {failing})",
            frame.has(frame.failing, name), scope_sql=f"exists(assessments, a -> a.name = {q})",
            scope=frame.has(frame.assessed, name), kind="assessment",
            title=f"The {q} assessment fails", detail={"assessment": name}))
    return out


def _generation_outcomes(frame: TraceFrame) -> list[Outcome]:
    spans = frame.spans
    generation = np.isin(spans.span_type, ("LLM", "CHAT_MODEL"))
    if not generation.any():
        return []
    types = "'LLM', 'CHAT_MODEL'"
    return [Outcome(
        "truncated", "have a generation cut off at its token limit", "truncated generations",
        f"exists(spans, s -> {truncated_sql('s')})", frame.traces_where(spans.truncated),
        scope_sql=f"exists(spans, s -> s.span_type IN ({types}))",
        scope=frame.traces_where(generation), kind="truncated",
        title="Generations are cut off at the token limit")]


def _busy_span_names(frame: TraceFrame) -> list[str]:
    counts = frame.span_names()
    return [n for n, c in counts.most_common(MAX_SPAN_NAMES) if c >= MIN_EVENTS]


def _span_outcomes(frame: TraceFrame, name: str) -> list[Outcome]:
    spans = frame.spans
    mine = spans.name == name
    kind = span_kind(str(spans.span_type[mine][0]))
    q = f"{kind} {quote(name)}"
    scope = frame.traces_where(mine)
    scope_sql = span_sql(name)
    common = {"scope_sql": scope_sql, "scope": scope}
    detail = {"span": name, "span_type": str(spans.span_type[mine][0])}
    out = []
    failed = mine & (spans.origin_error != None)  # noqa: E711 (numpy elementwise)
    for etype in sorted({str(t) for t in spans.origin_error[failed]}):
        hit = failed & (spans.origin_error == etype)
        message = _common_message(spans.error_message[hit], etype)
        out.append(Outcome(
            f"span_error:{name}:{etype}", f"have {q} fail with {etype}",
            f"failures of {q} with {etype}",
            span_sql(name, origin_failure_sql("s", etype)),
            frame.traces_where(hit), kind="span_error",
            title=f"{q} fails with {etype}" + (f" ({message})" if message else ""),
            detail={**detail, "error_type": etype, "message": message}, **common))
    durations = spans.duration_ms[mine]
    if len(durations) >= SPAN_MIN_CALLS:
        limit = slow_limit(durations)
        slow = mine & (spans.duration_ms > limit)
        if slow.sum() >= max(MIN_EVENTS, SLOW_SPAN_MIN_SHARE * mine.sum()) and limit > 0:
            out.append(Outcome(
                f"span_slow:{name}", f"have {q} run slow (over {_secs(limit)})",
                f"slow calls of {q}", span_sql(name, f"s.duration_ms > {limit:.1f}"),
                frame.traces_where(slow), kind="span_slow",
                title=f"{q} is slow (over {_secs(limit)}, {limit / np.median(durations):.1f}x its median)",
                detail={**detail, "threshold_ms": limit}, **common))
    empty = mine & spans.empty_output
    if 0 < empty.sum() <= EMPTY_SPAN_MAX_SHARE * mine.sum():
        out.append(Outcome(
            f"span_empty:{name}", f"have {q} return nothing", f"empty results of {q}",
            span_sql(name, empty_output_sql("s")), frame.traces_where(empty), kind="span_empty",
            title=f"{q} returns nothing", detail=detail, **common))
    out += _loop_outcome(frame, name, mine, q, detail, common)
    return out


def slow_limit(durations: np.ndarray) -> float:
    """Where a span's calls stop being ordinary.

    When the log durations fall into two clearly separate groups (a slow mode, however
    common) cut apart above 2.5x the median, the cut between them; otherwise three robust deviations above the median of the
    log durations (a span whose calls vary a lot by nature gets a wider band). Never under
    2.5x the median.
    """
    logs = np.sort(np.log(np.maximum(durations, 1e-3)))
    centre = float(np.median(logs))
    floor = centre + np.log(SLOW_SPAN_FACTOR)
    split = _two_modes(logs)
    if split is not None and split > floor:
        return float(np.exp(split))
    spread = 1.4826 * float(np.median(np.abs(logs - centre)))
    return float(np.exp(max(centre + SLOW_SPREADS * spread, floor)))


def _two_modes(logs: np.ndarray) -> float | None:
    """The cut between two well separated groups of sorted values (Otsu's split, accepted when
    the group means lie MODE_SEPARATION pooled deviations apart), else None."""
    n = len(logs)
    if n < 2 * MIN_EVENTS:
        return None
    k = np.arange(1, n)
    cum, cum2 = np.cumsum(logs)[:-1], np.cumsum(logs ** 2)[:-1]
    total, total2 = float(logs.sum()), float((logs ** 2).sum())
    mean_lo, mean_hi = cum / k, (total - cum) / (n - k)
    between = k * (n - k) * (mean_hi - mean_lo) ** 2
    i = int(np.argmax(between))
    lo_n, hi_n = i + 1, n - i - 1
    if min(lo_n, hi_n) < MIN_EVENTS:
        return None
    var_lo = cum2[i] / lo_n - mean_lo[i] ** 2
    var_hi = (total2 - cum2[i]) / hi_n - mean_hi[i] ** 2
    pooled = np.sqrt(max((lo_n * var_lo + hi_n * var_hi) / n, 1e-12))
    if (mean_hi[i] - mean_lo[i]) / pooled < MODE_SEPARATION:
        return None
    return float((logs[i] + logs[i + 1]) / 2)


def _loop_outcome(frame, name, mine, q, detail, common) -> list[Outcome]:
    calls = frame.count_where(mine)
    used = calls[calls > 0]
    if len(used) < SPAN_MIN_CALLS:
        return []
    # Twice the usual count (not a high percentile: a loop common enough to matter would
    # raise its own threshold past itself).
    limit = max(LOOP_MIN_CALLS, int(2 * np.median(used)))
    loops = calls > limit
    if not MIN_EVENTS <= loops.sum() or loops.sum() > LOOP_MAX_SHARE * len(used):
        return []
    return [Outcome(
        f"loop:{name}", f"call {q} more than {limit} times", f"repeated calls of {q}",
        f"size(filter(spans, s -> s.parent_id IS NOT NULL AND s.name = {quote(name)})) > {limit}",
        loops, kind="loop", title=f"{q} is called more than {limit} times in one request",
        detail={**detail, "limit": limit}, **common)]


def _common_message(messages: np.ndarray, etype: str) -> str:
    """The most frequent error message, without its type and cut short (an example)."""
    texts = [str(m).removeprefix(f"{etype}: ") for m in messages if m and str(m) != etype]
    if not texts:
        return ""
    top = max(set(texts), key=texts.count)
    return top if len(top) <= 60 else top[:59].rsplit(" ", 1)[0] + "…"


def _secs(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"
