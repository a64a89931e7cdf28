"""A compact frame of the traces for mining hypotheses: two SQL queries, then numpy arrays.

One row per trace (time, latency, status, request, answer emptiness, session turn, tokens,
tags, failing assessments) and one row per span (name, type, duration, error type, empty
output, truncated generation, documents returned). The columns are what the offline
analyst's rules speak of; nothing here knows any particular application. Every derived fact
has a Trace SQL twin in ``agent.outcomes`` / ``agent.features`` that selects the same traces.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

# one definition of a failing assessment value, shared with the census
from insights.analytics.assessments import (  # noqa: F401
    FAILING_VALUES,
    SCALES_SQL,
    AssessmentScale,
    failing_predicate,
    failing_sql_by_name,
    read_scales,
)
from insights.analytics.errors import error_type_sql

EMPTY_RESPONSES = ("", '""', "null", "{}", "[]", "''")
GENERATION_TYPES = ("LLM", "CHAT_MODEL")
SHORT_ANSWER_CHARS = 200   # answers this short may be a canned fallback repeated verbatim
# A generation stopped by its token limit, as OpenAI / LangChain ("finish_reason": "length")
# and Anthropic ("stop_reason": "max_tokens") record it in the span outputs.
TRUNCATED_RE = '"(finish_reason|stop_reason)" *: *"(length|max_tokens)"'
# A span output with nothing in it: empty text, an empty list/object, or one key wrapping one.
EMPTY_OUTPUT_RE = '^[{]"[^"]*": *([[][]]|[{][}]|""|null)[}]$'  # no backslashes: Spark SQL would unescape them

TURN_SQL = ("(SELECT trace_id AS _tid, row_number() OVER (PARTITION BY session_id "
            "ORDER BY request_time_ms, trace_id) AS turn, count(*) OVER (PARTITION BY session_id) "
            "AS session_traces FROM traces WHERE session_id IS NOT NULL)")

_TRACE_SQL = f"""
SELECT trace_id, request_time_ms, execution_time_ms, state, request, response_empty, session_id,
       CASE WHEN length(response) <= {{short}} THEN response END AS short_response,
       input_tokens, output_tokens, turn, session_traces,
       transform(filter(assessments, a -> {{failing}}), a -> a.name) AS failing,
       transform(assessments, a -> a.name) AS assessed,
       tags
FROM traces LEFT JOIN {TURN_SQL} ON _tid = trace_id WHERE {{where}}
"""


def sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(quote(v) for v in values)


def quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def empty_output_sql(span: str = "s") -> str:
    """A span that ended without failing and returned nothing (a failed span has no output)."""
    return (f"({span}.status_code <> 'ERROR' AND (trim(coalesce({span}.outputs, '')) IN "
            f"({sql_list(EMPTY_RESPONSES)}) OR trim({span}.outputs) RLIKE '{EMPTY_OUTPUT_RE}'))")


def truncated_sql(span: str = "s") -> str:
    types = ", ".join(f"'{t}'" for t in GENERATION_TYPES)
    return f"({span}.span_type IN ({types}) AND coalesce({span}.outputs, '') RLIKE '{TRUNCATED_RE}')"


def origin_failure_sql(span: str, etype: str) -> str:
    """Trace SQL: ``span`` failed with error type ``etype`` itself, not by passing on the same
    error from a child span (an agent re-raising its tool's exception)."""
    t = quote(etype)
    return (f"{span}.status_code = 'ERROR' AND {error_type_sql(span)} = {t} AND "
            f"size(filter(spans, k -> k.parent_id = {span}.span_id AND k.status_code = 'ERROR' "
            f"AND {error_type_sql('k')} = {t})) = 0")


def documents_sql(span: str = "s") -> str:
    """How many items a RETRIEVER span returned (NULL for other spans)."""
    return (f"CASE WHEN {span}.span_type = 'RETRIEVER' AND trim({span}.outputs) LIKE '[%' "
            f"THEN json_array_length({span}.outputs) END")


_SPAN_SQL = f"""
SELECT trace_id, s.name, s.span_type, s.duration_ms, s.parent_id IS NULL AS is_root,
       s.span_id, s.parent_id,
       CASE WHEN s.status_code = 'ERROR' THEN {error_type_sql('s')} END AS error_type,
       CASE WHEN s.status_code = 'ERROR' THEN substring(s.status_message, 1, 160) END AS error_message,
       {empty_output_sql('s')} AS empty_output,
       {truncated_sql('s')} AS truncated,
       {documents_sql('s')} AS documents
FROM traces LATERAL VIEW explode(spans) x AS s WHERE $where
"""


@dataclass
class SpanRows:
    """One entry per non-root span of the frame's traces; ``trace`` indexes the trace arrays."""

    trace: np.ndarray
    name: np.ndarray
    span_type: np.ndarray
    duration_ms: np.ndarray
    error_type: np.ndarray        # None where the span did not fail
    origin_error: np.ndarray      # the error type where the span failed of itself, else None
    error_message: np.ndarray
    empty_output: np.ndarray
    truncated: np.ndarray
    documents: np.ndarray         # NaN where not a retriever

    def __len__(self) -> int:
        return len(self.trace)


@dataclass
class TraceFrame:
    trace_id: np.ndarray
    time_ms: np.ndarray
    latency_ms: np.ndarray
    error: np.ndarray
    request: list[str]
    empty_response: np.ndarray
    tools: list[set[str]]
    failing: list[set[str]]
    assessed: list[set[str]]
    tags: list[dict[str, str]]
    session_id: np.ndarray | None = None
    turn: np.ndarray | None = None             # 1-based position in its session (0: none)
    session_traces: np.ndarray | None = None   # traces in its session (0: none)
    input_tokens: np.ndarray | None = None     # NaN where not recorded
    output_tokens: np.ndarray | None = None
    spans: SpanRows | None = None
    scales: dict[str, AssessmentScale] | None = None   # each assessment name's own scale
    short_response: list[str | None] | None = None     # the answer when it is short (else None)

    def __len__(self) -> int:
        return len(self.trace_id)

    @classmethod
    def load(cls, sql_fn: Callable[[str], Any], where: str = "TRUE") -> "TraceFrame":
        """``sql_fn(sql)`` returns an object with ``columns`` and ``rows`` (trace SQL)."""
        scales = read_scales(sql_fn(SCALES_SQL))
        result = sql_fn(_TRACE_SQL.format(failing=failing_sql_by_name(scales, "a"), where=where,
                                          short=SHORT_ANSWER_CHARS))
        column = _columns(result)
        n = len(result.rows)
        frame = cls(
            trace_id=np.array(column("trace_id"), dtype=object),
            time_ms=np.array([v or 0 for v in column("request_time_ms")], dtype=np.int64),
            latency_ms=np.array([v or 0 for v in column("execution_time_ms")], dtype=np.float64),
            error=np.array([s == "ERROR" for s in column("state")], dtype=bool),
            request=[(r or "") for r in column("request")],
            empty_response=np.array([bool(r) for r in column("response_empty")], dtype=bool),
            tools=[set() for _ in range(n)],
            failing=[set(f or []) for f in column("failing")],
            assessed=[set(a or []) for a in column("assessed")],
            tags=[{k: v for k, v in (t or {}).items() if not k.startswith("mlflow.")}
                  for t in column("tags")],
            session_id=np.array(column("session_id"), dtype=object),
            turn=np.array([v or 0 for v in column("turn")], dtype=np.int64),
            session_traces=np.array([v or 0 for v in column("session_traces")], dtype=np.int64),
            input_tokens=_floats(column("input_tokens")),
            output_tokens=_floats(column("output_tokens")),
            scales=scales,
            short_response=column("short_response"),
        )
        frame.spans = _load_spans(sql_fn, where, frame)
        for i, name, kind in zip(frame.spans.trace, frame.spans.name, frame.spans.span_type):
            if kind == "TOOL":
                frame.tools[i].add(name)
        return frame

    def has(self, sets: list[set[str]], name: str) -> np.ndarray:
        return np.array([name in s for s in sets], dtype=bool)

    def traces_where(self, span_mask: np.ndarray) -> np.ndarray:
        """A trace mask: traces with at least one span selected by ``span_mask``."""
        out = np.zeros(len(self), dtype=bool)
        out[self.spans.trace[span_mask]] = True
        return out

    def count_where(self, span_mask: np.ndarray) -> np.ndarray:
        """Per trace, how many of its spans ``span_mask`` selects."""
        return np.bincount(self.spans.trace[span_mask], minlength=len(self))

    def span_names(self) -> Counter:
        """Span name -> (type, calls), most called first."""
        return Counter(self.spans.name.tolist())


def _columns(result) -> Callable[[str], list]:
    col = {name: i for i, name in enumerate(result.columns)}
    rows = result.rows

    def column(name: str) -> list:
        if name not in col:
            return [None] * len(rows)
        i = col[name]
        return [r[i] for r in rows]

    return column


def _floats(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _load_spans(sql_fn, where: str, frame: TraceFrame) -> SpanRows:
    result = sql_fn(_SPAN_SQL.replace("$where", where))
    column = _columns(result)
    index = {t: i for i, t in enumerate(frame.trace_id)}
    keep = [i for i, (t, root) in enumerate(zip(column("trace_id"), column("is_root")))
            if not root and t in index]

    def pick(name: str, dtype=object, fill=None) -> np.ndarray:
        values = column(name)
        return np.array([fill if values[i] is None else values[i] for i in keep], dtype=dtype)

    trace = np.array([index[t] for t in pick("trace_id")], dtype=np.int64)
    error_type = pick("error_type")
    return SpanRows(
        trace=trace,
        name=pick("name", fill=""),
        span_type=pick("span_type", fill=""),
        duration_ms=pick("duration_ms", np.float64, 0.0),
        error_type=error_type,
        origin_error=_origins(trace, pick("span_id"), pick("parent_id"), error_type),
        error_message=pick("error_message"),
        empty_output=pick("empty_output", bool, False),
        truncated=pick("truncated", bool, False),
        documents=pick("documents", np.float64, np.nan),
    )


def _origins(trace: np.ndarray, span_id: np.ndarray, parent_id: np.ndarray,
             error_type: np.ndarray) -> np.ndarray:
    """Each failed span's error type, unless a child span failed with the same type."""
    passed_up = {(int(t), p, e) for t, p, e in zip(trace, parent_id, error_type) if e is not None}
    return np.array([e if e is not None and (int(t), s, e) not in passed_up else None
                     for t, s, e in zip(trace, span_id, error_type)], dtype=object)
