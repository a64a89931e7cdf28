"""Features: what a trace has, any of which may go with an outcome.

Structure first: which spans ran (the route through agents and sub-agents), a span failing
with a given error type, a retriever returning more than k documents or nothing, a
generation cut off, bounded-cardinality span inputs and attributes (model name, filters,
tool argument values), prompt tokens, the turn of a session and the session's length, trace
tags; then request length, words of the request and time windows. Numeric cut points are
chosen on the frame they are given (the exploration half).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy.stats import hypergeom

from agent.frame import (
    TURN_SQL,
    TraceFrame,
    documents_sql,
    origin_failure_sql,
    empty_output_sql,
    quote,
    truncated_sql,
)
from agent.outcomes import MIN_EVENTS, span_sql
from agent.vocabulary import Feature, Outcome, span_kind

PRESENCE_MIN, PRESENCE_MAX = 0.03, 0.97
SEGMENT_MIN_SHARE, SEGMENT_MAX_SHARE = 0.05, 0.5
VALUE_MIN_SHARE, VALUE_MAX_SHARE = 0.05, 0.7
MAX_VALUE_COLUMNS = 24
MAX_DISTINCT = 8
MAX_WORDS = 150
CUT_PERCENTILES = (50, 60, 70, 75, 80, 85, 90, 95)
WINDOW_MAX_P = 0.01
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
_WORD = re.compile(r"[a-z][a-z\-]{3,}")
# JSON and chat-protocol tokens that fill every serialised request: not words of its content
_STOP = {"that", "this", "with", "from", "have", "what", "which", "about", "your", "there",
         "would", "could", "should", "please", "content", "role", "user", "messages", "assistant",
         "system", "text", "type", "input", "inputs", "query", "question", "request", "true",
         "false", "null", "none"}
MODEL_ATTRIBUTE = '$["mlflow.llm.model"]'


@dataclass
class NumericField:
    """A number per trace (NaN where absent); ``cut_feature`` picks its cut per outcome.

    ``label``, ``sql`` and ``phrase`` hold ``{cut}`` where the chosen cut point goes.
    """

    key: str
    kind: str
    values: np.ndarray
    label: str
    sql: str
    phrase: str
    detail: dict = field(default_factory=dict)


def cut_feature(f: NumericField, outcome: Outcome) -> Feature | None:
    """``value > cut`` at the cut (a percentile of the values) where the outcome is most
    over-represented on these traces (the exploration half): chosen from the data, then
    tested on traces the choice never saw."""
    seen = f.values[~np.isnan(f.values)]
    if len(seen) < 2 * MIN_EVENTS:
        return None
    scope = outcome.scope if outcome.scope is not None else np.ones(len(f.values), dtype=bool)
    events = outcome.mask & scope
    total, hits = int(scope.sum()), int(events.sum())
    best: tuple[float, float] | None = None
    for cut in sorted({float(np.percentile(seen, q)) for q in CUT_PERCENTILES}):
        mask = np.nan_to_num(f.values, nan=-np.inf) > cut
        n, k = int((mask & scope).sum()), int((mask & events).sum())
        if k < MIN_EVENTS or n == total:
            continue
        p = float(hypergeom.sf(k - 1, total, hits, n))
        if best is None or p < best[0]:
            best = (p, cut)
    if best is None:
        return None
    cut = best[1]
    shown = f"{cut:g}" if abs(cut) < 100 else f"{cut:.0f}"
    return Feature(f"{f.key}>{shown}", f.kind, f.label.format(cut=shown),
                   f.sql.format(cut=repr(cut)), np.nan_to_num(f.values, nan=-np.inf) > cut,
                   {**f.detail, "threshold": cut}, phrase=f.phrase.format(cut=shown))


def numeric_fields(frame: TraceFrame, span_fields: list[NumericField] = ()) -> list[NumericField]:
    """Numbers whose cut point is chosen per outcome: request length, prompt tokens, numeric
    span input/output fields."""
    fields = []
    if len(frame):
        lengths = np.array([len(r) for r in frame.request], dtype=np.float64)
        fields.append(NumericField("long_request", "length", lengths,
                                   "requests longer than {cut} characters", "length(request) > {cut}",
                                   "for requests longer than {cut} characters"))
    tokens = frame.input_tokens
    if tokens is not None and (~np.isnan(tokens)).sum() >= 2 * MIN_EVENTS:
        fields.append(NumericField("input_tokens", "tokens", tokens,
                                   "traces with more than {cut} input tokens", "input_tokens > {cut}",
                                   "when prompts exceed {cut} tokens"))
    if frame.spans is not None and len(frame.spans):
        fields += document_fields(frame)
    return fields + list(span_fields)


def features(frame: TraceFrame, span_values: list[Feature] = ()) -> list[Feature]:
    """Every fixed feature of the frame; ``span_values`` from ``value_features``."""
    feats: list[Feature] = list(span_values)
    if frame.spans is not None and len(frame.spans):
        feats += span_features(frame)
    feats += session_features(frame)
    feats += segment_features(frame)
    feats += [_word_feature(frame, w) for w in _frequent_words(frame)]
    return [f for f in feats if 0 < f.mask.sum() < len(frame)]


# ---------------------------------------------------------------- spans


def span_features(frame: TraceFrame) -> list[Feature]:
    spans, n = frame.spans, len(frame)
    feats = []
    for name, calls in frame.span_names().most_common():
        mine = spans.name == name
        stype = str(spans.span_type[mine][0])
        kind = span_kind(stype)
        present = frame.traces_where(mine)
        if PRESENCE_MIN * n <= present.sum() <= PRESENCE_MAX * n:
            label = (f"traces that call the {quote(name)} tool" if stype == "TOOL"
                     else f"traces where the {kind.lower()} {quote(name)} runs")
            feats.append(Feature(f"span:{name}", "tool" if stype == "TOOL" else "span", label,
                                 span_sql(name), present, {"span": name, "tool": name},
                                 phrase=f"when the {kind.lower()} {quote(name)} runs"))
        failed = mine & (spans.origin_error != None)  # noqa: E711
        for etype in sorted({str(t) for t in spans.origin_error[failed]}):
            mask = frame.traces_where(failed & (spans.origin_error == etype))
            if mask.sum() >= MIN_EVENTS:
                feats.append(Feature(
                    f"span_error:{name}:{etype}", "span_error",
                    f"traces where {kind.lower()} {quote(name)} fails with {etype}",
                    span_sql(name, origin_failure_sql("s", etype)),
                    mask, {"span": name, "error_type": etype},
                    phrase=f"after {kind.lower()} {quote(name)} fails with {etype}"))
        empty = mine & spans.empty_output
        if empty.any() and empty.sum() < mine.sum():
            mask = frame.traces_where(empty)
            feats.append(Feature(f"span_empty:{name}", "span_empty",
                                 f"traces where {kind.lower()} {quote(name)} returns nothing",
                                 span_sql(name, empty_output_sql("s")), mask, {"span": name},
                                 phrase=f"when {kind.lower()} {quote(name)} returns nothing"))
    truncated = frame.traces_where(spans.truncated)
    if truncated.sum() >= MIN_EVENTS:
        feats.append(Feature("truncated", "truncated", "traces with a generation cut off at its token limit",
                             f"exists(spans, s -> {truncated_sql('s')})", truncated,
                             phrase="after a generation is cut off at its token limit"))
    return feats


def document_fields(frame: TraceFrame) -> list[NumericField]:
    """How many documents each retriever returned (its largest call per trace)."""
    spans, fields = frame.spans, []
    names = sorted({str(n) for n in spans.name[spans.span_type == "RETRIEVER"]})
    counted = ~np.isnan(spans.documents)
    if len(names) > 1 and counted.sum() >= 2 * MIN_EVENTS:
        top = np.full(len(frame), np.nan)
        np.fmax.at(top, spans.trace[counted], spans.documents[counted])
        fields.append(NumericField(
            "documents:*", "documents", top, "traces where a retriever returns more than {cut} documents",
            f"exists(spans, s -> s.parent_id IS NOT NULL AND {documents_sql('s')} > {{cut}})",
            "when a retriever returns more than {cut} documents", {"spans": names}))
    for name in names:
        counted = (spans.name == name) & ~np.isnan(spans.documents)
        if counted.sum() < 2 * MIN_EVENTS:
            continue
        top = np.full(len(frame), np.nan)
        np.fmax.at(top, spans.trace[counted], spans.documents[counted])
        kind = span_kind("RETRIEVER").lower()
        fields.append(NumericField(
            f"documents:{name}", "documents", top,
            f"traces where {kind} {quote(name)} returns more than {{cut}} documents",
            span_sql(name, f"{documents_sql('s')} > {{cut}}"),
            f"when {kind} {quote(name)} returns more than {{cut}} documents", {"span": name}))
    return fields


def value_features(frame: TraceFrame, sql_fn: Callable[[str], Any], where: str
                   ) -> tuple[list[Feature], list[NumericField]]:
    """Span inputs and outputs read for the frame's traces: fields with few distinct values
    (filters, argument values, the model attribute) become features; numeric fields (rows
    returned, sizes) are cut per outcome (``cut_feature``)."""
    columns = _value_columns(frame, sql_fn, where)
    if not columns:
        return [], []
    select = ", ".join(f"transform(filter(spans, s -> s.parent_id IS NOT NULL AND s.name = "
                       f"{quote(name)}), s -> {expr}) AS c{i}"
                       for i, (name, _key, expr, _numeric) in enumerate(columns))
    result = sql_fn(f"SELECT trace_id, {select} FROM traces WHERE {where}")
    index = {t: i for i, t in enumerate(frame.trace_id)}
    rows = [(index[r[0]], r[1:]) for r in result.rows if r[0] in index]
    feats, fields = [], []
    for c, (name, key, expr, numeric) in enumerate(columns):
        per_trace = [(i, {v for v in (vals[c] or []) if v is not None}) for i, vals in rows]
        if numeric:
            fields += _numeric_field(frame, name, key, expr, per_trace)
        else:
            feats += _categorical_value_features(frame, name, key, expr, per_trace)
    return feats, fields


def _categorical_value_features(frame, name, key, expr, per_trace) -> list[Feature]:
    running = sum(1 for _, v in per_trace if v)
    counts = Counter(v for _, vs in per_trace for v in vs)
    if not 2 <= len(counts) <= MAX_DISTINCT or not running:
        return []
    feats = []
    for value, k in counts.items():
        if not VALUE_MIN_SHARE * running <= k <= VALUE_MAX_SHARE * running or len(value) > 60:
            continue
        mask = np.zeros(len(frame), dtype=bool)
        mask[[i for i, vs in per_trace if value in vs]] = True
        shown = value.strip('"')
        feats.append(Feature(
            f"value:{name}:{key}={value}", "value", f"traces where {quote(name)} runs with {key}={shown}",
            span_sql(name, f"{expr} = {quote(value)}"), mask, {"span": name, "key": key, "value": shown},
            phrase=f"when {quote(name)} runs with {key}={shown}"))
    return feats


def _numeric_field(frame, name, key, expr, per_trace) -> list[NumericField]:
    top = np.full(len(frame), np.nan)
    for i, vs in per_trace:
        numbers = [f for v in vs if (f := _as_float(v)) is not None]
        if numbers:
            top[i] = max(numbers)
    if (~np.isnan(top)).sum() < 2 * MIN_EVENTS:
        return []
    return [NumericField(
        f"number:{name}:{key}", "number", top,
        label=f"traces where {quote(name)} has {key} over {{cut}}",
        sql=span_sql(name, f"CAST({expr} AS DOUBLE) > {{cut}}"),
        phrase=f"when {quote(name)} has {key} over {{cut}}", detail={"span": name, "key": key})]


def _as_float(v: str) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _value_columns(frame: TraceFrame, sql_fn, where: str) -> list[tuple[str, str, str, bool]]:
    """(span name, field, Trace SQL expression, numeric?) of span inputs, outputs and the model
    attribute whose values are few or numeric, from a sample of each busy span's calls."""
    names = [n for n, _ in frame.span_names().most_common(12)]
    if not names:
        return []
    listed = ", ".join(quote(n) for n in names)
    sample = sql_fn(
        "SELECT name, inputs, outputs, model FROM (SELECT s.name AS name, s.inputs AS inputs, "
        f"s.outputs AS outputs, get_json_object(s.attributes, '{MODEL_ATTRIBUTE}') AS model, "
        "row_number() OVER (PARTITION BY s.name ORDER BY trace_id) AS k FROM traces "
        f"LATERAL VIEW explode(spans) x AS s WHERE {where} AND s.parent_id IS NOT NULL "
        f"AND s.name IN ({listed})) WHERE k <= 200")
    values: dict[tuple[str, str, str], list] = {}
    for name, inputs, outputs, model in sample.rows:
        if model:
            values.setdefault((name, "model", "attributes"), []).append(model)
        for source, raw in (("inputs", inputs), ("outputs", outputs)):
            for key, v in _top_fields(raw):
                values.setdefault((name, key, source), []).append(v)
    out = []
    for (name, key, source), seen in sorted(values.items()):
        distinct = set(map(str, seen))
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen)
        expr = (f"get_json_object(s.attributes, '{MODEL_ATTRIBUTE}')" if source == "attributes"
                else f"get_json_object(s.{source}, '$.{key}')")
        if numeric and len(distinct) > MAX_DISTINCT:
            out.append((name, key, expr, True))
        elif 2 <= len(distinct) <= MAX_DISTINCT and source != "outputs":
            out.append((name, key, expr, False))
    return out[:MAX_VALUE_COLUMNS]


def _top_fields(raw: str | None) -> list[tuple[str, Any]]:
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    return [(k, v) for k, v in data.items()
            if _KEY.match(k) and isinstance(v, (str, int, float, bool)) and len(str(v)) <= 60]


# ---------------------------------------------------------------- numbers and sessions


def session_features(frame: TraceFrame) -> list[Feature]:
    """Later turns of a session, and long sessions: cut points from the data."""
    if frame.turn is None or not (frame.turn > 0).any():
        return []
    feats = []
    for k in (2, 3, 4, 5, 6, 8):
        mask = frame.turn >= k
        if MIN_EVENTS <= mask.sum() <= 0.7 * len(frame):
            feats.append(Feature(
                f"turn:{k}", "session", f"turns {k} and later of a session",
                f"trace_id IN (SELECT _tid FROM {TURN_SQL} _turns WHERE turn >= {k})", mask,
                {"turn": k}, phrase=f"from turn {k} of a session on"))
    length = frame.session_traces
    cut = int(np.percentile(length[length > 0], 75)) if (length > 0).any() else 0
    mask = length > cut
    if cut and MIN_EVENTS <= mask.sum() <= 0.7 * len(frame):
        feats.append(Feature(
            f"session_length:{cut}", "session", f"sessions of more than {cut} traces",
            f"trace_id IN (SELECT _tid FROM {TURN_SQL} _turns WHERE session_traces > {cut})",
            mask, {"threshold": cut}, phrase=f"in sessions of more than {cut} turns"))
    return feats


# ---------------------------------------------------------------- tags, words, time


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
                                     {"tag": key, "value": value}, phrase=f"for {key}={value}"))
    return feats


def _word_feature(frame: TraceFrame, word: str) -> Feature:
    mask = np.array([word in r.lower() for r in frame.request], dtype=bool)
    return Feature(f"word:{word}", "word", f"requests mentioning '{word}'",
                   f"lower(request) LIKE '%{word}%'", mask, {"word": word},
                   phrase=f"in requests mentioning '{word}'")


def _frequent_words(frame: TraceFrame) -> list[str]:
    df: Counter[str] = Counter()
    for text in frame.request:
        df.update(set(_WORD.findall(text.lower())) - _STOP)
    n = len(frame)
    ok = [(w, c) for w, c in df.items() if 0.02 * n <= c <= 0.6 * n and c >= MIN_EVENTS]
    ok.sort(key=lambda wc: (-wc[1], wc[0]))
    return [w for w, _ in ok[:MAX_WORDS]]


def window_feature(frame: TraceFrame, outcome: Outcome, max_hours: int = 12) -> Feature | None:
    """The run of consecutive hours where the outcome is most over-represented."""
    if not len(frame):
        return None
    scope = outcome.scope if outcome.scope is not None else np.ones(len(frame), dtype=bool)
    hour = (frame.time_ms // 3_600_000).astype(np.int64)
    first, last = int(hour.min()), int(hour.max())
    if last - first < 3:
        return None
    span = last - first + 1
    total = np.bincount(hour[scope] - first, minlength=span)
    events = np.bincount(hour[scope] - first, weights=outcome.mask[scope].astype(float),
                         minlength=span)
    starts, lengths = np.meshgrid(np.arange(span), np.arange(1, max_hours + 1), indexing="ij")
    ok = starts + lengths <= span
    starts, lengths = starts[ok], lengths[ok]
    cum_n = np.concatenate([[0], np.cumsum(total)])
    cum_e = np.concatenate([[0], np.cumsum(events)])
    n = cum_n[starts + lengths] - cum_n[starts]
    e = cum_e[starts + lengths] - cum_e[starts]
    # One-sided chance of seeing this many events in a window of this size (Fisher's tail).
    p = hypergeom.sf(e - 1, int(total.sum()), int(events.sum()), n)
    p[(n < MIN_EVENTS) | (n > 0.5 * total.sum()) | (e < MIN_EVENTS)] = 1.0
    if not len(p) or p.min() >= WINDOW_MAX_P:
        return None
    i = int(np.argmin(p))
    lo = (first + int(starts[i])) * 3_600_000
    hi = lo + int(lengths[i]) * 3_600_000
    mask = (frame.time_ms >= lo) & (frame.time_ms < hi)
    return Feature(f"window:{outcome.key}:{lo}", "window", f"traces between {_utc(lo)} and {_utc(hi)} UTC",
                   f"request_time_ms >= {lo} AND request_time_ms < {hi}", mask,
                   {"start_ms": lo, "end_ms": hi}, phrase=f"between {_utc(lo)} and {_utc(hi)} UTC")


def _utc(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
