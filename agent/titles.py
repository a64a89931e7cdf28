"""Issue titles that name the mechanism the data shows, not a proxy for it.

"Tool 'send_invoice' fails with AuthError (401 Unauthorized) for tier=trial" rather than
"Errors concentrated in traces tagged tier=trial": the outcome says what broke (a span, an
error type and its message, a duration, a loop), the feature says under which condition. For
trace-level outcomes the failing span, its error type or the span that takes the extra time
is read from the cohort's own traces.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from agent.frame import TraceFrame, quote
from agent.vocabulary import Candidate, span_kind

TITLE_CHARS = 140


def issue_title(c: Candidate, frame: TraceFrame | None = None) -> str:
    what = c.outcome.title or f"{c.outcome.noun[:1].upper()}{c.outcome.noun[1:]} concentrated"
    if frame is not None and len(frame) and frame.spans is not None:
        hits = c.feature.mask & c.outcome.mask
        if c.outcome.kind in ("error", "loop"):
            failure = dominant_failure(frame, hits)
            if failure and c.outcome.kind == "error":
                what = f"Requests fail: {_failure_text(*failure)}"
            elif failure:
                same = failure[0] == c.outcome.detail.get("span")
                what = f"{what}, then " + (_failure_text(*failure, subject="") if same
                                          else _failure_text(*failure))
        elif c.outcome.kind == "slow":
            span = slowest_span(frame, hits, c.feature.mask & ~c.outcome.mask)
            if span:
                what = f"{what}, spent in {span}"
    return _clip(f"{what} {c.feature.phrase or 'in ' + c.feature.label}")


def dominant_failure(frame: TraceFrame, traces: np.ndarray) -> tuple[str, str, str, str] | None:
    """(span name, span type, error type, message) of the failure in most of these traces."""
    spans = frame.spans
    failed = traces[spans.trace] & (spans.origin_error != None)  # noqa: E711
    if not failed.any():
        return None
    seen: Counter = Counter()
    for t, name, stype, etype in zip(spans.trace[failed], spans.name[failed],
                                     spans.span_type[failed], spans.origin_error[failed]):
        seen[(t, name, stype, etype)] = 1
    per_failure = Counter((n, s, e) for (_t, n, s, e) in seen)
    (name, stype, etype), count = per_failure.most_common(1)[0]
    if count < 0.5 * traces.sum():
        return None
    mine = failed & (spans.name == name) & (spans.origin_error == etype)
    messages = [str(m).removeprefix(f"{etype}: ") for m in spans.error_message[mine] if m]
    message = max(set(messages), key=messages.count) if messages else ""
    message = message if len(message) <= 60 else message[:59].rsplit(" ", 1)[0] + "…"
    return str(name), str(stype), str(etype), message


def _failure_text(name: str, stype: str, etype: str, message: str, subject: str | None = None) -> str:
    """"tool 'x' fails with T (message)"; ``subject=""`` leaves the span out ("fails with ...")."""
    who = f"{span_kind(stype).lower()} {quote(name)} " if subject is None else subject
    return f"{who}fails with {etype}" + (f" ({message})" if message and message != etype else "")


def slowest_span(frame: TraceFrame, slow: np.ndarray, fast: np.ndarray) -> str:
    """The span name whose time per trace grows most between fast and slow traces."""
    spans = frame.spans
    if not slow.any() or not fast.any():
        return ""
    best, gain = "", 0.0
    for name in {str(n) for n in spans.name[slow[spans.trace]]}:
        mine = spans.name == name
        per_trace = np.bincount(spans.trace[mine], weights=spans.duration_ms[mine],
                                minlength=len(frame))
        extra = float(np.mean(per_trace[slow]) - np.mean(per_trace[fast]))
        if extra > gain:
            best, gain = name, extra
    total = float(np.mean(frame.latency_ms[slow]) - np.mean(frame.latency_ms[fast]))
    if not best or total <= 0 or gain < 0.5 * total:
        return ""
    stype = str(spans.span_type[spans.name == best][0])
    return f"{span_kind(stype).lower()} {quote(best)}"


def _clip(title: str) -> str:
    """A short title; a long one is cut at a word, never inside a quoted name."""
    if len(title) <= TITLE_CHARS:
        return title
    return title[:TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"
