"""Read-only questions about an experiment's traces, asked through InsightsClient.

Both analysts use this toolkit; the chat-model analyst reaches it through LangChain tools
(``agent.tools``). Every trace it hands out as evidence is linked to the analysis run.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from agent.frame import TraceFrame, quote

SAMPLE_SIZE = 20
FRAME_SQL_TIMEOUT = 600.0


class TraceToolkit:
    def __init__(self, client, experiment_id: str, run_id: str | None = None,
                 progress: Callable[[str], None] | None = None):
        self.client = client
        self.experiment_id = experiment_id
        self.run_id = run_id
        self.progress = progress or (lambda _msg: None)
        self._frames: dict[str, TraceFrame] = {}

    def sql(self, query: str):
        return self.client.execute_sql(self.experiment_id, query)

    def stats(self, cohort: str, control: str, outcome: str, samples: int = 10) -> dict[str, Any]:
        return self.client.cohort_stats(self.experiment_id, cohort, control, outcome, samples)

    def frame(self, where: str = "TRUE") -> TraceFrame:
        if where not in self._frames:
            self._frames[where] = TraceFrame.load(self.frame_sql, where)
        return self._frames[where]

    def frame_sql(self, query: str):
        """Trace SQL for the analyst's own frame queries: every row as DuckDB returns it (no
        per-value conversion), a generous time limit."""
        from insights.analytics import execute_sql

        session = self.client.analytics_session(self.experiment_id)
        return execute_sql(session, query, None, timeout=FRAME_SQL_TIMEOUT, raw=True)

    def link(self, trace_ids: list[str]) -> None:
        if self.run_id and trace_ids:
            self.client.link_traces(self.run_id, trace_ids)

    def count(self, where: str = "TRUE") -> int:
        return int(self.sql(f"SELECT count(*) AS n FROM traces WHERE {where}").rows[0][0])

    def summaries(self, trace_ids: list[str]) -> dict[str, dict[str, Any]]:
        """A few facts per trace, enough to write an evidence rationale that cites it."""
        if not trace_ids:
            return {}
        ids = ", ".join(quote(t) for t in trace_ids)
        result = self.sql(
            "SELECT trace_id, state, execution_time_ms, length(request) AS request_chars, "
            "coalesce(length(response), 0) AS response_chars, request_time_ms, "
            "transform(filter(spans, s -> s.status_code = 'ERROR'), "
            "s -> concat(s.name, ': ', coalesce(s.status_message, ''))) AS errors, "
            "transform(filter(spans, s -> s.span_type = 'TOOL'), s -> s.name) AS tools "
            f"FROM traces WHERE trace_id IN ({ids})"
        )
        cols = result.columns
        return {row[0]: dict(zip(cols, row)) for row in result.rows}

    def agent_facts(self) -> dict[str, Any]:
        """What the traced application looks like: names, tools, span types, sample exchanges."""
        facts: dict[str, Any] = {"experiment_id": self.experiment_id}
        facts["total_traces"] = self.count()
        facts["trace_names"] = self._pairs(
            "SELECT trace_name, count(*) AS n FROM traces GROUP BY trace_name ORDER BY n DESC LIMIT 5")
        facts["tools"] = self._pairs(
            "SELECT s.name, count(*) AS n FROM traces LATERAL VIEW explode(spans) x AS s "
            "WHERE s.span_type = 'TOOL' GROUP BY s.name ORDER BY n DESC LIMIT 20")
        facts["span_types"] = self._pairs(
            "SELECT s.span_type, count(*) AS n FROM traces LATERAL VIEW explode(spans) x AS s "
            "GROUP BY s.span_type ORDER BY n DESC")
        sample = self.sql(
            "SELECT trace_id, request, response FROM traces "
            f"ORDER BY request_time_ms DESC LIMIT {SAMPLE_SIZE}")
        facts["samples"] = [
            {"trace_id": r[0], "request": _clip(r[1]), "response": _clip(r[2])} for r in sample.rows
        ]
        facts["tool_inputs"] = self._tool_inputs([t for t, _ in facts["tools"]])
        self.link([s["trace_id"] for s in facts["samples"]])
        return facts

    def _tool_inputs(self, tools: list[str]) -> dict[str, list[str]]:
        """Argument names each tool is called with: a hint of what the tool does."""
        out: dict[str, list[str]] = {}
        for tool in tools[:10]:
            rows = self.sql(
                "SELECT s.inputs FROM traces LATERAL VIEW explode(spans) x AS s "
                f"WHERE s.span_type = 'TOOL' AND s.name = {quote(tool)} LIMIT 5").rows
            keys: list[str] = []
            for (raw,) in rows:
                try:
                    value = json.loads(raw) if raw else {}
                except (TypeError, ValueError):
                    value = {}
                if isinstance(value, dict):
                    keys += [k for k in value if k not in keys]
            out[tool] = keys
        return out

    def _pairs(self, query: str) -> list[tuple[str, int]]:
        return [(str(r[0]), int(r[1])) for r in self.sql(query).rows]


def _clip(text: Any, limit: int = 300) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[:limit] + "..."
