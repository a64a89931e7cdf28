"""LangChain tools over InsightsClient: read-only trace tools and the Insights write tools.

``insights_tools`` is what you hand to your own tool-calling agent. ``testing_tools`` is the
narrower set the chat-model analyst gets while testing one hypothesis; both include
``span_fact_tools``, the facts the offline analyst computes from spans (``agent.span_facts``).
Tool results that carry trace text, titles or statements, and tool errors (which echo SQL and
ids), are quoted as data (see ``agent.prompts.quoted``).
"""

from __future__ import annotations

import functools
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from agent import span_facts
from agent.prompts import quoted, quoted_error
from insights.errors import InsightsError

MAX_ROWS = 50


def _safe(fn):
    """Tool errors go back to the model as text instead of ending the run."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> str:
        try:
            return fn(*args, **kwargs)
        except InsightsError as exc:
            return quoted_error(exc)

    return run


def sql_tool(client, experiment_id: str) -> BaseTool:
    @_safe
    def execute_sql(sql: str) -> str:
        """Run a read-only Spark SQL SELECT over the `traces` table (one row per trace)."""
        result = client.execute_sql(experiment_id, sql)
        rows = result.rows[:MAX_ROWS]
        return quoted({"columns": result.columns, "rows": rows, "total_rows": len(result.rows)})

    return StructuredTool.from_function(execute_sql)


def trace_tool(client, experiment_id: str, link_run: str | None = None) -> BaseTool:
    @_safe
    def get_traces(trace_ids: list[str]) -> str:
        """Summaries (status, latency, request, response, failed spans) of up to 10 traces."""
        ids = ", ".join("'" + t.replace("'", "''") + "'" for t in trace_ids[:10])
        if not ids:
            return "no trace ids given"
        result = client.execute_sql(
            experiment_id,
            "SELECT trace_id, state, execution_time_ms, request, response, "
            "transform(filter(spans, s -> s.status_code = 'ERROR'), s -> s.name) AS failed_spans "
            f"FROM traces WHERE trace_id IN ({ids})")
        if link_run:
            client.link_traces(link_run, [r[0] for r in result.rows])
        return quoted([dict(zip(result.columns, r)) for r in result.rows])

    return StructuredTool.from_function(get_traces)


def _safe_facts(fn):
    """Like ``_safe``; a bad argument (an unknown span type) is a tool error too."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> str:
        try:
            return fn(*args, **kwargs)
        except (InsightsError, ValueError) as exc:
            return quoted_error(exc)

    return run


def span_fact_tools(client, experiment_id: str) -> list[BaseTool]:
    """Span facts as tools: span_stats, span_loops, llm_truncation, session_facts (JSON, quoted:
    span names and error types come from the traces)."""
    from agent.toolkit import TraceToolkit

    toolkit = TraceToolkit(client, experiment_id)

    @_safe_facts
    def span_stats(span_type: str = "") -> str:
        """Per span name, most-called first: span_type, calls, traces calling it, errors,
        error_rate and error_types (failures by exception type), p50/p95/max duration in ms,
        empty_output_rate (calls that did not fail but returned null/''/[]/{}), mean and max
        calls per trace. span_type keeps one type: TOOL, RETRIEVER, RERANKER, AGENT,
        CHAT_MODEL, LLM, EMBEDDING, PARSER, CHAIN or a custom one; empty for all."""
        return quoted(span_facts.span_stats(toolkit, span_type or None))

    @_safe_facts
    def span_loops() -> str:
        """Span names a trace calls far more often than usual (more than max(3, twice the
        name's median calls per trace)): how many traces loop, their error rate against the
        other traces calling that name, and sample trace ids."""
        return quoted(span_facts.loops(toolkit))

    @_safe_facts
    def llm_truncation() -> str:
        """LLM / CHAT_MODEL calls whose output stopped at the token limit (finish_reason
        'length', stop_reason 'max_tokens'), by span name and model, with counts, share and
        sample trace ids; and token usage per model (mlflow.chat.tokenUsage)."""
        return quoted(span_facts.truncation(toolkit))

    @_safe_facts
    def session_facts() -> str:
        """Sessions: how many, their length distribution, and error / slow / empty-answer rates
        by turn index in the session (1, 2-3, 4+), turns ordered by request time."""
        return quoted(span_facts.session_facts(toolkit))

    return [StructuredTool.from_function(f)
            for f in (span_stats, span_loops, llm_truncation, session_facts)]


def insights_tools(client, experiment_id: str) -> list[BaseTool]:
    """Read and write tools for a tool-calling agent working on one experiment."""

    @_safe
    def list_issues() -> str:
        """The experiment's issues, most traces first."""
        return quoted([{"issue_id": i.issue_id, "title": i.title, "severity": i.severity.value,
                        "status": i.status.value, "trace_count": len(i.trace_ids)}
                       for i in client.list_issues(experiment_id)])

    @_safe
    def list_hypotheses(run_id: str) -> str:
        """The hypotheses of an analysis run with status and evidence counts."""
        return quoted([{"hypothesis_id": h.hypothesis_id, "statement": h.statement,
                        "status": h.status.value, "supports": h.supports_count,
                        "refutes": h.refutes_count} for h in client.list_hypotheses(run_id)])

    @_safe
    def create_hypothesis(run_id: str, statement: str, testing_plan: str, rationale: str = "") -> str:
        """Record a new hypothesis (status TESTING) in an analysis run."""
        return client.create_hypothesis(run_id, statement, testing_plan, rationale=rationale or None)

    @_safe
    def add_evidence(run_id: str, hypothesis_id: str, trace_id: str, rationale: str,
                     supports: bool) -> str:
        """Add one supporting (supports=true) or refuting (false) trace to a hypothesis."""
        h = client.update_hypothesis(run_id, hypothesis_id, add_evidence=[
            {"trace_id": trace_id, "rationale": rationale, "supports": supports}])
        return f"hypothesis now has {len(h.evidence)} evidence entries"

    @_safe
    def create_issue(run_id: str, title: str, description: str, severity: str,
                     trace_ids: list[str], rationale: str) -> str:
        """Record a validated issue with the traces that show it."""
        return client.create_issue(run_id, title, description, severity, evidence=[
            {"trace_id": t, "rationale": rationale} for t in trace_ids])

    tools = [StructuredTool.from_function(f) for f in
             (list_issues, list_hypotheses, create_hypothesis, add_evidence, create_issue)]
    return ([sql_tool(client, experiment_id), trace_tool(client, experiment_id)]
            + span_fact_tools(client, experiment_id) + tools)


class VerdictBox:
    """Collects what the model records while testing one hypothesis."""

    def __init__(self):
        self.evidence: list[dict[str, Any]] = []
        self.status: str | None = None
        self.reason = ""


def testing_tools(client, experiment_id: str, run_id: str, box: VerdictBox) -> list[BaseTool]:
    @_safe
    def record_evidence(trace_id: str, rationale: str, supports: bool) -> str:
        """Record one trace as supporting (true) or refuting (false) the hypothesis."""
        from insights.ids import check_trace_id

        box.evidence.append({"trace_id": check_trace_id(trace_id), "rationale": rationale,
                             "supports": bool(supports)})
        return f"recorded ({len(box.evidence)} so far)"

    def set_verdict(status: str, reason: str) -> str:
        """Finish testing: status VALIDATED or REJECTED, with the reason."""
        status = status.strip().upper()
        if status not in ("VALIDATED", "REJECTED"):
            return quoted_error("status must be VALIDATED or REJECTED")
        box.status, box.reason = status, reason
        return "verdict recorded"

    return [sql_tool(client, experiment_id), trace_tool(client, experiment_id, run_id),
            *span_fact_tools(client, experiment_id),
            StructuredTool.from_function(record_evidence), StructuredTool.from_function(set_verdict)]
