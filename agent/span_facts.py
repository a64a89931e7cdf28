"""What the spans say, for the chat-model analyst: generic facts in one or two Trace SQL queries.

Each function takes anything with a ``sql(query)`` method (a ``TraceToolkit``) and returns a
small JSON-ready dict. They speak only of span types, names, statuses, durations, outputs,
attributes, counts and sessions, never of one application's vocabulary, and their output is
bounded (``limit`` rows at most, a few sample trace ids per row), so a model can read them.

- ``span_stats``: per span name: calls, traces, errors by type, durations, empty outputs.
- ``loops``: span names called far more often in a trace than they usually are.
- ``truncation``: LLM / CHAT_MODEL outputs that stopped at the token limit; tokens per model.
- ``session_facts``: sessions, their lengths, and outcomes by turn index.
- ``digest``: a compact summary of all four, the model's first look at the traces.
"""

from __future__ import annotations

import json
import re
from typing import Any

from insights.analytics.errors import error_type_sql

LLM_TYPES = ("LLM", "CHAT_MODEL")
SAMPLES = 5
ERROR_TYPES_PER_SPAN = 3
# A span's or a trace's output that carries nothing.
EMPTY_TEXTS = ("", "[]", "{}", '""', "null")
# A completion that stopped at its token limit, as the autologgers record the provider's answer:
# OpenAI (and LangChain's OpenAI-shaped messages) write "finish_reason": "length", Anthropic
# "stop_reason": "max_tokens", Gemini "finish_reason": "MAX_TOKENS", OpenAI's Responses API
# "incomplete_details": {"reason": "max_output_tokens"}. Matched over the outputs JSON text.
TRUNCATION_REGEX = ('(?i)("(finish_reason|finishReason|stop_reason)" *: *"(length|max_tokens)")'
                    '|("reason" *: *"max_output_tokens")')
# Sessions: turn index buckets (1-based, by request_time within the session).
TURN_BUCKETS = ("1", "2-3", "4+")
SLOW_PERCENTILE = 0.9
# Loops: a trace calls a span name more than max(LOOP_MIN_CALLS, LOOP_FACTOR x the name's
# median calls per trace among the traces that call it).
LOOP_MIN_CALLS = 3
LOOP_FACTOR = 2

# A span type as given to a tool: a name (custom types included), never SQL.
_TYPE_NAME = re.compile(r"^[A-Za-z_][\w .-]{0,63}$")


def _lit(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _empty_sql(expr: str) -> str:
    texts = ", ".join(_lit(t) for t in EMPTY_TEXTS)
    return f"({expr} IS NULL OR trim({expr}) IN ({texts}))"


def _rate(part: Any, whole: Any) -> float | None:
    part, whole = float(part or 0), float(whole or 0)
    return round(part / whole, 3) if whole else None


def _ms(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


def _rows(toolkit, query: str) -> list[dict[str, Any]]:
    result = toolkit.sql(query)
    return [dict(zip(result.columns, row)) for row in result.rows]


def _ids(values: Any) -> list[str]:
    return [str(v) for v in (values or []) if v is not None][:SAMPLES]


# --------------------------------------------------------------------------- span_stats


def span_stats(toolkit, span_type: str | None = None, limit: int = 30) -> dict[str, Any]:
    """Per span name (and type): calls, traces, errors and their types, p50/p95/max duration,
    empty outputs (null, '', [], {}, "") among the calls that did not fail, and mean and max
    calls per trace (over the traces that call it). Most-called first; ``span_type`` keeps one
    type (TOOL, RETRIEVER, CHAT_MODEL, ...)."""
    where = ""
    if span_type:
        if not _TYPE_NAME.match(span_type.strip()):
            raise ValueError(f"not a span type: {span_type!r}")
        where = f"WHERE upper(s.span_type) = {_lit(span_type.strip().upper())}"
    limit = max(1, min(int(limit), 200))
    rows = _rows(toolkit, f"""
        WITH sp AS (
          SELECT trace_id, coalesce(s.name, '') AS name,
                 coalesce(s.span_type, 'UNKNOWN') AS span_type,
                 CASE WHEN coalesce(s.status_code, '') = 'ERROR' THEN 1 ELSE 0 END AS failed,
                 s.duration_ms AS duration_ms,
                 CASE WHEN coalesce(s.status_code, '') <> 'ERROR' AND {_empty_sql('s.outputs')}
                      THEN 1 ELSE 0 END AS empty
          FROM traces LATERAL VIEW explode(spans) x AS s {where}),
        per_trace AS (
          SELECT name, span_type, trace_id, count(*) AS n FROM sp
          GROUP BY name, span_type, trace_id),
        calls AS (
          SELECT name, span_type, count(*) AS calls, sum(failed) AS errors,
                 percentile_approx(duration_ms, 0.5) AS p50_ms,
                 percentile_approx(duration_ms, 0.95) AS p95_ms,
                 max(duration_ms) AS max_ms, sum(empty) AS empty_outputs
          FROM sp GROUP BY name, span_type),
        traces_of AS (
          SELECT name, span_type, count(*) AS traces, max(n) AS max_per_trace
          FROM per_trace GROUP BY name, span_type)
        SELECT c.name, c.span_type, c.calls, t.traces, c.errors, c.p50_ms, c.p95_ms, c.max_ms,
               c.empty_outputs, t.max_per_trace,
               (SELECT count(*) FROM traces) AS total_traces
        FROM calls c JOIN traces_of t ON c.name = t.name AND c.span_type = t.span_type
        ORDER BY c.calls DESC, c.name, c.span_type""")
    errors = _error_types(toolkit, where) if any(r["errors"] for r in rows) else {}
    total = int(rows[0]["total_traces"]) if rows else _total(toolkit)
    spans = []
    for r in rows[:limit]:
        calls, traces = int(r["calls"]), int(r["traces"])
        spans.append({
            "name": r["name"], "span_type": r["span_type"], "calls": calls, "traces": traces,
            "trace_share": _rate(traces, total),
            "errors": int(r["errors"] or 0), "error_rate": _rate(r["errors"], calls),
            "error_types": errors.get((r["name"], r["span_type"]), {}),
            "p50_ms": _ms(r["p50_ms"]), "p95_ms": _ms(r["p95_ms"]), "max_ms": _ms(r["max_ms"]),
            "empty_outputs": int(r["empty_outputs"] or 0),
            "empty_output_rate": _rate(r["empty_outputs"], calls - int(r["errors"] or 0)),
            "mean_per_trace": round(calls / traces, 2) if traces else None,
            "max_per_trace": int(r["max_per_trace"]),
        })
    return {"total_traces": total, "span_type": span_type.strip().upper() if span_type else None,
            "span_names": len(rows), "spans": spans, "omitted": max(0, len(rows) - limit)}


def _error_types(toolkit, where: str) -> dict[tuple[str, str], dict[str, int]]:
    cond = "s.status_code = 'ERROR'" + (" AND " + where[len("WHERE "):] if where else "")
    rows = _rows(toolkit, f"""
        SELECT name, span_type, error_type, count(*) AS n FROM (
          SELECT coalesce(s.name, '') AS name, coalesce(s.span_type, 'UNKNOWN') AS span_type,
                 {error_type_sql('s')} AS error_type
          FROM traces LATERAL VIEW explode(spans) x AS s WHERE {cond}) e
        GROUP BY name, span_type, error_type ORDER BY n DESC, error_type""")
    out: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        kinds = out.setdefault((r["name"], r["span_type"]), {})
        if len(kinds) < ERROR_TYPES_PER_SPAN:
            kinds[str(r["error_type"])] = int(r["n"])
    return out


def _total(toolkit) -> int:
    return int(toolkit.sql("SELECT count(*) AS n FROM traces").rows[0][0])


# --------------------------------------------------------------------------- loops


def loops(toolkit, limit: int = 20) -> dict[str, Any]:
    """Span names a trace calls far beyond their usual count: more than max(3, twice the
    name's median calls per trace). Per name: how many traces loop, how often they end in
    ERROR against the other traces calling that name, and sample trace ids."""
    limit = max(1, min(int(limit), 200))
    rows = _rows(toolkit, f"""
        WITH per_trace AS (
          SELECT trace_id, state, coalesce(s.name, '') AS name,
                 coalesce(s.span_type, 'UNKNOWN') AS span_type, count(*) AS n
          FROM traces LATERAL VIEW explode(spans) x AS s
          GROUP BY trace_id, state, coalesce(s.name, ''), coalesce(s.span_type, 'UNKNOWN')),
        usual AS (
          SELECT name, span_type, percentile(n, 0.5) AS median_calls, count(*) AS traces,
                 sum(CASE WHEN state = 'ERROR' THEN 1 ELSE 0 END) AS error_traces
          FROM per_trace GROUP BY name, span_type)
        SELECT p.name, p.span_type, u.median_calls, u.traces, u.error_traces,
               count(*) AS loop_traces,
               sum(CASE WHEN p.state = 'ERROR' THEN 1 ELSE 0 END) AS loop_errors,
               max(p.n) AS max_calls, avg(p.n) AS mean_calls,
               slice(array_sort(collect_list(p.trace_id)), 1, {SAMPLES}) AS samples
        FROM per_trace p JOIN usual u ON p.name = u.name AND p.span_type = u.span_type
        WHERE p.n > greatest({LOOP_MIN_CALLS}, {LOOP_FACTOR} * u.median_calls)
        GROUP BY p.name, p.span_type, u.median_calls, u.traces, u.error_traces
        ORDER BY loop_traces DESC, p.name, p.span_type""")
    out = []
    for r in rows[:limit]:
        looped, traces = int(r["loop_traces"]), int(r["traces"])
        loop_err, all_err = int(r["loop_errors"] or 0), int(r["error_traces"] or 0)
        median = float(r["median_calls"])
        out.append({
            "name": r["name"], "span_type": r["span_type"],
            "usual_calls_per_trace": median,
            "threshold": max(LOOP_MIN_CALLS, LOOP_FACTOR * median),
            "loop_traces": looped, "traces_calling": traces,
            "mean_calls_in_loop": round(float(r["mean_calls"]), 2), "max_calls": int(r["max_calls"]),
            "loop_error_rate": _rate(loop_err, looped),
            "other_error_rate": _rate(all_err - loop_err, traces - looped),
            "sample_trace_ids": _ids(r["samples"]),
        })
    return {"rule": f"calls in one trace > max({LOOP_MIN_CALLS}, {LOOP_FACTOR} x the name's "
                    "median calls per trace)", "loops": out, "omitted": max(0, len(rows) - limit)}


# --------------------------------------------------------------------------- truncation


def _json_text(value: Any) -> str | None:
    """An attribute value as MLflow stores it (JSON text) or a plain string, as text."""
    if value is None:
        return None
    text = str(value)
    try:
        decoded = json.loads(text)
    except ValueError:
        return text
    return decoded if isinstance(decoded, str) else text


def truncation(toolkit, limit: int = 30) -> dict[str, Any]:
    """LLM / CHAT_MODEL spans whose output says they stopped at the token limit, by span name
    and model (the ``mlflow.llm.model`` attribute, else a ``model`` input or output field),
    with counts, share and sample trace ids; and token usage per model from the
    ``mlflow.chat.tokenUsage`` attribute where it is recorded."""
    limit = max(1, min(int(limit), 200))
    usage = "get_json_object(s.attributes, '$[\"mlflow.chat.tokenUsage\"]')"
    types = ", ".join(_lit(t) for t in LLM_TYPES)
    rows = _rows(toolkit, f"""
        WITH llm AS (
          SELECT trace_id, coalesce(s.name, '') AS name, s.span_type AS span_type,
                 coalesce(get_json_object(s.attributes, '$["mlflow.llm.model"]'),
                          get_json_object(s.inputs, '$.model'),
                          get_json_object(s.outputs, '$.model')) AS model,
                 CASE WHEN rlike(coalesce(s.outputs, ''), {_lit(TRUNCATION_REGEX)})
                      THEN 1 ELSE 0 END AS truncated,
                 CAST(get_json_object({usage}, '$.input_tokens') AS BIGINT) AS input_tokens,
                 CAST(get_json_object({usage}, '$.output_tokens') AS BIGINT) AS output_tokens,
                 CAST(get_json_object({usage}, '$.total_tokens') AS BIGINT) AS total_tokens
          FROM traces LATERAL VIEW explode(spans) x AS s WHERE upper(s.span_type) IN ({types}))
        SELECT name, span_type, model, count(*) AS calls, sum(truncated) AS truncated,
               slice(array_sort(collect_list(CASE WHEN truncated = 1 THEN trace_id END)),
                     1, {SAMPLES}) AS samples,
               count(CASE WHEN input_tokens IS NOT NULL OR output_tokens IS NOT NULL
                          OR total_tokens IS NOT NULL THEN 1 END) AS usage_calls,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(coalesce(total_tokens, coalesce(input_tokens, 0) + coalesce(output_tokens, 0)))
                 AS total_tokens,
               max(output_tokens) AS max_output_tokens
        FROM llm GROUP BY name, span_type, model
        ORDER BY truncated DESC, calls DESC, name""")
    by_span = []
    models: dict[str, dict[str, Any]] = {}
    calls_all = truncated_all = 0
    for r in rows:
        model = _json_text(r["model"]) or "(not recorded)"
        calls, cut = int(r["calls"]), int(r["truncated"] or 0)
        calls_all, truncated_all = calls_all + calls, truncated_all + cut
        if len(by_span) < limit:
            by_span.append({"name": r["name"], "span_type": r["span_type"], "model": model,
                            "calls": calls, "truncated": cut, "truncated_rate": _rate(cut, calls),
                            "sample_trace_ids": _ids(r["samples"])})
        m = models.setdefault(model, {"model": model, "calls": 0, "calls_with_usage": 0,
                                      "input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
                                      "max_output_tokens": None, "truncated": 0})
        m["calls"] += calls
        m["truncated"] += cut
        n_usage = int(r["usage_calls"] or 0)
        if n_usage:
            m["calls_with_usage"] += n_usage
            for key in ("input_tokens", "output_tokens", "total_tokens"):
                m[key] += int(r[key] or 0)
            if r["max_output_tokens"] is not None:
                m["max_output_tokens"] = max(m["max_output_tokens"] or 0, int(r["max_output_tokens"]))
    token_usage = []
    for m in sorted(models.values(), key=lambda m: (-m["calls"], m["model"]))[:limit]:
        n = m["calls_with_usage"]
        m["truncated_rate"] = _rate(m["truncated"], m["calls"])
        m["mean_output_tokens"] = round(m["output_tokens"] / n, 1) if n else None
        if not n:
            for key in ("input_tokens", "output_tokens", "total_tokens"):
                m[key] = None
        token_usage.append(m)
    return {"llm_calls": calls_all, "truncated": truncated_all,
            "truncated_rate": _rate(truncated_all, calls_all), "by_span": by_span,
            "omitted": max(0, len(rows) - limit), "token_usage_by_model": token_usage}


# --------------------------------------------------------------------------- sessions


def session_facts(toolkit) -> dict[str, Any]:
    """Sessions (the ``session_id`` MLflow fills from ``mlflow.trace.session``): how many, how
    long, and the error / slow / empty-answer rates by turn index (1, 2-3, 4+; turns ordered by
    request_time within the session). Slow is beyond the 90th percentile of all traces; an
    empty answer is a trace that ended OK with no answer text."""
    def base(empty: str) -> str:
        return f"""
        WITH t AS (
          SELECT trace_id, session_id, state, execution_time_ms,
                 CASE WHEN {empty} THEN 1 ELSE 0 END AS empty_answer,
                 row_number() OVER (PARTITION BY session_id
                                    ORDER BY request_time_ms, trace_id) AS turn,
                 count(*) OVER (PARTITION BY session_id) AS session_length
          FROM traces WHERE session_id IS NOT NULL AND session_id <> '')"""

    slow_ms = f"(SELECT percentile_approx(execution_time_ms, {SLOW_PERCENTILE}) FROM traces)"
    bucket = "CASE WHEN turn = 1 THEN '1' WHEN turn <= 3 THEN '2-3' ELSE '4+' END"
    rows = _answer_rows(toolkit, lambda empty: base(empty) + f"""
        SELECT {bucket} AS bucket, count(*) AS traces,
               sum(CASE WHEN state = 'ERROR' THEN 1 ELSE 0 END) AS errors,
               sum(CASE WHEN execution_time_ms > {slow_ms} THEN 1 ELSE 0 END) AS slow,
               sum(empty_answer) AS empty, max({slow_ms}) AS slow_ms,
               (SELECT count(*) FROM traces) AS total_traces
        FROM t GROUP BY {bucket}""")
    lengths = _rows(toolkit, base("FALSE") + """
        SELECT session_length, count(DISTINCT session_id) AS sessions FROM t
        GROUP BY session_length ORDER BY session_length""")
    dist = {int(r["session_length"]): int(r["sessions"]) for r in lengths}
    sessions = sum(dist.values())
    in_sessions = sum(k * v for k, v in dist.items())
    total = int(rows[0]["total_traces"]) if rows else _total(toolkit)
    by_bucket = {r["bucket"]: r for r in rows}
    turns = []
    for bucket in TURN_BUCKETS:
        r = by_bucket.get(bucket)
        n = int(r["traces"]) if r else 0
        turns.append({"turn": bucket, "traces": n,
                      "error_rate": _rate(r["errors"], n) if r else None,
                      "slow_rate": _rate(r["slow"], n) if r else None,
                      "empty_answer_rate": _rate(r["empty"], n) if r else None})
    slow = next((r["slow_ms"] for r in rows if r["slow_ms"] is not None), None)
    return {
        "sessions": sessions, "traces_in_sessions": in_sessions, "total_traces": total,
        "length": {"mean": round(in_sessions / sessions, 2) if sessions else None,
                   "median": _median(dist), "max": max(dist) if dist else None,
                   "sessions_by_length": {"1": dist.get(1, 0),
                                          "2-3": dist.get(2, 0) + dist.get(3, 0),
                                          "4-9": sum(v for k, v in dist.items() if 4 <= k <= 9),
                                          "10+": sum(v for k, v in dist.items() if k >= 10)}},
        "slow_over_ms": _ms(slow), "by_turn": turns,
    }


def _answer_rows(toolkit, query) -> list[dict[str, Any]]:
    """Rows of ``query(empty_answer_predicate)``: the cache's one definition of an empty answer
    (``response_empty`` of a trace that ended OK) where this cache has it, else a blank
    response text."""
    try:
        from insights.analytics.answers import EMPTY_ANSWER_SQL

        return _rows(toolkit, query(EMPTY_ANSWER_SQL))
    except Exception:  # an older cache without the column
        return _rows(toolkit, query(f"state = 'OK' AND {_empty_sql('response')}"))


def _median(dist: dict[int, int]) -> float | None:
    values = [k for k in sorted(dist) for _ in range(dist[k])]
    if not values:
        return None
    mid = len(values) // 2
    return float(values[mid]) if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


# --------------------------------------------------------------------------- digest


def digest(toolkit, limit: int = 12) -> dict[str, Any]:
    """A compact summary of the four, for a model's first context: the most-called span names
    with their error, latency and empty-output figures, and only the loops, truncations and
    session effects there are. A part whose query fails is left out with the reason."""
    out: dict[str, Any] = {}
    try:
        stats = span_stats(toolkit, limit=limit)
        keep = ("name", "span_type", "calls", "traces", "error_rate", "error_types", "p95_ms",
                "empty_output_rate", "mean_per_trace", "max_per_trace")
        out["span_stats"] = {"total_traces": stats["total_traces"],
                             "span_names": stats["span_names"],
                             "spans": [{k: s[k] for k in keep if s[k] not in (None, {}, 0, 0.0)
                                        or k in ("name", "span_type", "calls")}
                                       for s in stats["spans"]]}
    except Exception as exc:  # a fact we cannot compute must not stop the analysis
        out["span_stats"] = {"unavailable": f"{type(exc).__name__}: {str(exc)[:160]}"}
    for key, fn in (("loops", loops), ("truncation", truncation), ("sessions", session_facts)):
        try:
            value = fn(toolkit)
        except Exception as exc:
            out[key] = {"unavailable": f"{type(exc).__name__}: {str(exc)[:160]}"}
            continue
        if key == "loops" and value["loops"]:
            out[key] = value["loops"][:5]
        elif key == "truncation" and value["llm_calls"]:
            out[key] = {"llm_calls": value["llm_calls"], "truncated": value["truncated"],
                        "by_span": [s for s in value["by_span"] if s["truncated"]][:5]}
        elif key == "sessions" and value["sessions"]:
            out[key] = {"sessions": value["sessions"], "length": value["length"],
                        "by_turn": value["by_turn"]}
    return out
