"""A compact per-trace frame for mining hypotheses: one SQL query, then numpy masks.

The columns are what the offline analyst's rules speak of: time, latency, status, request
and response text, the TOOL spans called, and which assessments failed. Nothing here knows
any particular application.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# one definition of a failing assessment value, shared with the census
from insights.analytics.assessments import FAILING_VALUES, failing_predicate  # noqa: F401

EMPTY_RESPONSES = ("", '""', "null", "{}", "[]", "''")

_FRAME_SQL = """
SELECT trace_id, request_time_ms, execution_time_ms, state, request, response,
       transform(filter(spans, s -> s.span_type = 'TOOL'), s -> s.name) AS tools,
       transform(filter(assessments, a -> {failing}), a -> a.name) AS failing,
       transform(assessments, a -> a.name) AS assessed,
       tags
FROM traces WHERE {where}
"""


def sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(quote(v) for v in values)


def quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


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

    def __len__(self) -> int:
        return len(self.trace_id)

    @classmethod
    def load(cls, sql_fn, where: str = "TRUE") -> "TraceFrame":
        """``sql_fn(sql)`` returns an object with ``columns`` and ``rows`` (trace SQL)."""
        result = sql_fn(_FRAME_SQL.format(failing=failing_predicate("a.value"), where=where))
        col = {name: i for i, name in enumerate(result.columns)}
        rows = result.rows

        def column(name: str) -> list:
            return [r[col[name]] for r in rows]

        responses = column("response")
        return cls(
            trace_id=np.array(column("trace_id"), dtype=object),
            time_ms=np.array([v or 0 for v in column("request_time_ms")], dtype=np.int64),
            latency_ms=np.array([v or 0 for v in column("execution_time_ms")], dtype=np.float64),
            error=np.array([s == "ERROR" for s in column("state")], dtype=bool),
            request=[(r or "") for r in column("request")],
            empty_response=np.array([(r or "").strip() in EMPTY_RESPONSES for r in responses],
                                    dtype=bool),
            tools=[set(t or []) for t in column("tools")],
            failing=[set(f or []) for f in column("failing")],
            assessed=[set(a or []) for a in column("assessed")],
            tags=[{k: v for k, v in (t or {}).items() if not k.startswith("mlflow.")}
                  for t in column("tags")],
        )

    def has(self, sets: list[set[str]], name: str) -> np.ndarray:
        return np.array([name in s for s in sets], dtype=bool)
