"""The Insights tools as an MCP server (``insights-agent mcp``), for any coding agent.

Every tool is one call of the Insights SDK (``InsightsClient``), so a coding agent keeps its
investigation in MLflow exactly as the CLI and the workflow do. Arguments are typed with the
SDK's own pydantic models and enums (``EvidenceEntry``, ``IssueStatus``...), so the tool
schemas list the allowed values and a bad argument is refused before anything is written.
Every refusal, the SDK's included, comes back as a tool error (``isError``) of one or a few
lines that say what to change.

One ``InsightsClient`` serves every call for the life of the server: the MLflow client and
the DuckDB analytics cache stay warm between calls. SDK calls are blocking, so each runs in a
worker thread; the long ones (census, SQL, recheck) send MCP progress notifications while
they work. Transports: stdio (default), or streamable HTTP on 127.0.0.1 (``--http PORT``).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Optional, TextIO

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BeforeValidator, Field, ValidationError

from insights.errors import InsightsError, NotFoundError
from insights.models import AnalysisStatus, EvidenceEntry, HypothesisStatus, IssueStatus, Severity

SERVER_NAME = "mlflow-insights"

INSTRUCTIONS = """\
Tools over MLflow Insights: the memory of a trace investigation, kept in MLflow. An analysis
(create_analysis) is a run that holds hypotheses (testable statements, each with a testing
plan and trace evidence); issues are validated problems, kept per experiment. Start with
create_analysis, then create_baseline_census and execute_sql to look at the traces; record
every finding with create_hypothesis / update_hypothesis / create_issue as you go, and read
state back with the list_ and get_ tools rather than remembering it. Evidence always cites real
trace ids of the experiment. `insights-agent skill` installs the full playbook as a skill."""


def _upper(value: Any) -> Any:
    """Enum values are accepted in any case, as the SDK accepts them."""
    return value.strip().upper() if isinstance(value, str) else value


def _enum(enum_cls: type, description: str) -> Any:
    return Annotated[enum_cls, BeforeValidator(_upper), Field(description=description)]


RunId = Annotated[str, Field(description="The analysis run id (from create_analysis or "
                                         "list_analyses).")]
ExperimentId = Annotated[Optional[str], Field(
    description="MLflow experiment id; defaults to the server's MLFLOW_EXPERIMENT_ID.")]
Evidence = Annotated[Optional[list[EvidenceEntry]], Field(
    description='Traces cited as evidence: [{"trace_id": "tr-...", "rationale": "what this '
                'trace shows", "supports": true}]. supports=false marks refuting evidence. '
                "Every trace must exist in the experiment.")]
AddTraces = Annotated[Optional[list[str]], Field(
    description="Trace ids to cite without a rationale (ones already cited are skipped).")]
MaxTraces = Annotated[int, Field(ge=1, le=1000, description="At most this many traces.")]
Severity_ = _enum(Severity, "CRITICAL, HIGH, MEDIUM or LOW.")
IssueStatus_ = _enum(IssueStatus, "OPEN, IN_PROGRESS, RESOLVED or REJECTED.")

READ = ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False)
WRITE = ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False)


class InsightsMCP(FastMCP):
    """FastMCP whose tool errors are short and say what to change.

    FastMCP reports any exception as ``Error executing tool NAME: <str(exc)>``; a pydantic
    error's text runs to many lines with documentation links. Argument errors are rewritten
    here as one line per bad field, naming the field and what it accepts; SDK errors keep
    their own one-line message.
    """

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        try:
            return await super().call_tool(name, arguments)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError) and cause.title.endswith("Arguments"):
                # FastMCP's model of the tool's arguments: refused before the tool ran.
                raise ToolError(argument_error(name, cause)) from None
            if isinstance(cause, InsightsError):
                raise ToolError(f"{name} failed: {insights_error_text(cause)}") from None
            raise

    async def run_stdio_async(self) -> None:
        """Serve over stdio, with stdout kept for the protocol alone: anything else that
        writes to it (a library's print, a C extension) goes to stderr instead."""
        from mcp.server.stdio import stdio_server

        wire = claim_stdout()
        async with stdio_server(stdout=anyio.wrap_file(wire)) as (read, write):
            await self._mcp_server.run(read, write,
                                       self._mcp_server.create_initialization_options())


def claim_stdout() -> TextIO:
    """A text stream on the process's real stdout, for the protocol; file descriptor 1 then
    points at stderr, so stray output cannot corrupt the JSON-RPC stream."""
    sys.stdout.flush()
    wire = open(os.dup(1), "w", encoding="utf-8", closefd=True)  # noqa: SIM115 (kept open)
    os.dup2(2, 1)
    return wire


def argument_error(tool: str, exc: ValidationError) -> str:
    """One line per invalid argument: where it is, what was wrong, what was given."""
    lines = [f"Invalid arguments for {tool}; nothing was written. Fix:"]
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
        given = err.get("input")
        shown = "" if err.get("type") == "missing" or isinstance(given, dict) else \
            f" (got {given!r})"
        lines.append(f"- {where}: {err.get('msg', 'invalid')}{shown}")
    return "\n".join(lines)


def insights_error_text(exc: InsightsError) -> str:
    """The SDK's one-line message; an unknown id also says where the right ids come from."""
    text = str(exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, NotFoundError):
        text += (" (nothing was written; list_analyses, list_hypotheses and list_issues give "
                 "the ids; execute_sql finds trace ids)")
    return text


class Tools:
    """The server's state: one InsightsClient, opened on first use and closed at exit."""

    def __init__(self, tracking_uri: str | None):
        self.tracking_uri = tracking_uri
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from insights.client import InsightsClient

                self._client = InsightsClient(self.tracking_uri)
            return self._client

    def warm_up(self) -> None:
        """Open the client ahead of the first call; a failure is left for that call to report."""
        with contextlib.suppress(Exception):
            self.client()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()  # the analytics sessions write their caches

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking SDK call in a worker thread."""
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


class _Progress:
    """A progress callback for the SDK, called from a worker thread, that sends MCP progress
    notifications (a rising count and the SDK's message) on the server's event loop."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.count = 0

    def __call__(self, message: Any) -> None:
        self.count += 1
        with contextlib.suppress(Exception):  # a client that went away must not fail the call
            anyio.from_thread.run(self.ctx.report_progress, self.count, None, str(message))

    async def say(self, message: str) -> None:
        self.count += 1
        with contextlib.suppress(Exception):
            await self.ctx.report_progress(self.count, None, message)


def _trace_row(trace: Any, rationale: dict[str, str]) -> dict[str, Any]:
    info = trace.info
    state = getattr(info.state, "value", info.state)
    return {"trace_id": info.trace_id, "state": str(state),
            "execution_time_ms": info.execution_duration, "timestamp_ms": info.request_time,
            "request_preview": (info.request_preview or "")[:300],
            "response_preview": (info.response_preview or "")[:300],
            "evidence_rationale": rationale.get(info.trace_id, "")}


def _preview(client: Any, items: list, max_traces: int) -> dict[str, Any]:
    rationale: dict[str, str] = {}
    for item in items:
        for e in item.evidence:
            rationale.setdefault(e.trace_id, e.rationale)
    traces = client.get_traces(list(rationale), max_traces)
    return {"traces": [_trace_row(t, rationale) for t in traces],
            "total_count": len(rationale), "returned_count": len(traces)}


def _session(client: Any, experiment_id: str | None) -> Any:
    """The client's analytics session of an experiment that exists (checked first, so a
    wrong id is refused before any cache is opened for it)."""
    experiment_id = client._experiment(experiment_id)
    client._check_experiment(experiment_id)
    return client.analytics_session(experiment_id)


def _hypothesis_dict(h: Any) -> dict[str, Any]:
    return {**h.to_dict(), "trace_count": len(h.trace_ids), "supports_count": h.supports_count,
            "refutes_count": h.refutes_count}


def _issue_dict(i: Any) -> dict[str, Any]:
    return {**i.to_dict(), "trace_count": i.trace_count}


def _listing(items: Any, key: str, convert: Callable[[Any], dict]) -> dict[str, Any]:
    out: dict[str, Any] = {key: [convert(x) for x in items]}
    if getattr(items, "warnings", None):
        out["warnings"] = list(items.warnings)  # entity files that could not be read
    return out


def sql_description() -> str:
    from insights.analytics.schema import TRACES_SCHEMA_HELP

    return ("Run one read-only Spark SQL query (SELECT or WITH) over the experiment's traces. "
            "Returns columns, rows, row_count and truncated. Use it to count, find and read "
            "traces (request and response are JSON text; spans and assessments are arrays). "
            "Sends progress notifications while the trace cache loads.\n\n" + TRACES_SCHEMA_HELP)


def build_server(tracking_uri: str | None = None, *, port: int = 8000) -> InsightsMCP:
    """The MCP server with every Insights tool, over one InsightsClient for its lifetime."""
    tools = Tools(tracking_uri)

    @contextlib.asynccontextmanager
    async def lifespan(_server: FastMCP) -> AsyncIterator[Tools]:
        # Entered once per session (each HTTP session has its own), so it only opens the
        # client ahead of the first call (MLflow's import is most of a cold call) while the
        # client handshakes; the one client is closed when the server stops (serve()).
        threading.Thread(target=tools.warm_up, name="insights-warm-up", daemon=True).start()
        yield tools

    mcp = InsightsMCP(SERVER_NAME, instructions=INSTRUCTIONS, host="127.0.0.1", port=port,
                      lifespan=lifespan, log_level="WARNING")
    mcp.insights = tools
    call = tools.call

    # ------------------------------------------------------------------ analyses

    @mcp.tool(annotations=WRITE)
    async def create_analysis(
        run_name: Annotated[str, Field(description="Short 3-4 word run name, e.g. "
                                                   "'Error Investigation'.")],
        name: Annotated[Optional[str], Field(description="Descriptive analysis name "
                                                         "(default: run_name).")] = None,
        description: Annotated[str, Field(description="The agent under study, the focus, "
                                                      "first observations.")] = "",
        experiment_id: ExperimentId = None,
    ) -> dict[str, Any]:
        """Create an analysis: an MLflow run (status ACTIVE) that holds one investigation's
        hypotheses, census and linked traces. Returns its run_id, used by most other tools."""
        client = tools.client()
        run_id = await call(client.create_analysis, experiment_id, run_name, name or run_name,
                            description)
        return {"run_id": run_id}

    @mcp.tool(annotations=WRITE)
    async def update_analysis(
        run_id: RunId,
        name: Optional[str] = None,
        description: Optional[str] = None,
        status: _enum(Optional[AnalysisStatus], "ACTIVE, COMPLETED or ARCHIVED.") = None,
    ) -> dict[str, Any]:
        """Change an analysis's name, description or status (COMPLETED when the investigation
        is done; ACTIVE to reopen it). Returns the analysis."""
        analysis = await call(tools.client().update_analysis, run_id, name, description, status)
        return analysis.to_dict()

    @mcp.tool(annotations=READ)
    async def list_analyses(experiment_id: ExperimentId = None) -> dict[str, Any]:
        """List the experiment's analyses, newest first."""
        items = await call(tools.client().list_analyses, experiment_id)
        return _listing(items, "analyses", lambda a: a.to_dict())

    @mcp.tool(annotations=READ)
    async def get_analysis(run_id: RunId) -> dict[str, Any]:
        """Show one analysis: name, description, status, metadata."""
        return (await call(tools.client().get_analysis, run_id)).to_dict()

    # ------------------------------------------------------------------ hypotheses

    @mcp.tool(annotations=WRITE)
    async def create_hypothesis(
        run_id: RunId,
        statement: Annotated[str, Field(description="The testable statement.")],
        testing_plan: Annotated[str, Field(description="Numbered steps, each producing trace "
                                                       "ids, and the criterion that validates "
                                                       "or rejects it.")] = "",
        rationale: Annotated[Optional[str], Field(description="Why it is worth testing.")] = None,
        evidence: Evidence = None,
    ) -> dict[str, Any]:
        """Add a hypothesis (status TESTING) to an analysis. Cited traces are linked to the
        analysis run. Returns the hypothesis_id."""
        hid = await call(tools.client().create_hypothesis, run_id, statement, testing_plan,
                         evidence or [], rationale)
        return {"hypothesis_id": hid, "run_id": run_id}

    @mcp.tool(annotations=WRITE)
    async def update_hypothesis(
        run_id: RunId,
        hypothesis_id: str,
        status: _enum(Optional[HypothesisStatus], "TESTING, VALIDATED or REJECTED.") = None,
        add_evidence: Evidence = None,
        add_traces: AddTraces = None,
        testing_plan: Optional[str] = None,
        statement: Optional[str] = None,
        rationale: Optional[str] = None,
    ) -> dict[str, Any]:
        """Change a hypothesis: its verdict (VALIDATED / REJECTED), plan or statement.
        Evidence and traces are added to what it has, never replaced. Returns the hypothesis."""
        h = await call(tools.client().update_hypothesis, run_id, hypothesis_id, status=status,
                       add_evidence=add_evidence or [], add_traces=add_traces,
                       testing_plan=testing_plan, statement=statement, rationale=rationale)
        return _hypothesis_dict(h)

    @mcp.tool(annotations=READ)
    async def list_hypotheses(run_id: RunId) -> dict[str, Any]:
        """List an analysis's hypotheses with their status, plan and evidence counts."""
        items = await call(tools.client().list_hypotheses, run_id)
        return _listing(items, "hypotheses", _hypothesis_dict)

    @mcp.tool(annotations=READ)
    async def get_hypothesis(run_id: RunId, hypothesis_id: str) -> dict[str, Any]:
        """Show one hypothesis with its testing plan and every evidence entry."""
        return _hypothesis_dict(await call(tools.client().get_hypothesis, run_id, hypothesis_id))

    # ------------------------------------------------------------------ issues

    @mcp.tool(annotations=WRITE)
    async def create_issue(
        run_id: Annotated[str, Field(description="The analysis run that found the issue.")],
        title: Annotated[str, Field(description="Specific, actionable title (5-8 words).")],
        description: Annotated[str, Field(description="The observed fact with counts and "
                                                      "its impact.")] = "",
        severity: Severity_ = Severity.MEDIUM,
        hypothesis_id: Annotated[Optional[str], Field(
            description="The validated hypothesis it comes from, if any.")] = None,
        evidence: Evidence = None,
        status: IssueStatus_ = IssueStatus.OPEN,
    ) -> dict[str, Any]:
        """Record a validated problem as an issue of the experiment (issues outlive an
        analysis). Cited traces are linked to the analysis run. Returns the issue_id."""
        iid = await call(tools.client().create_issue, run_id, title, description, severity,
                         hypothesis_id, evidence or [], status)
        return {"issue_id": iid, "run_id": run_id}

    @mcp.tool(annotations=WRITE)
    async def update_issue(
        issue_id: str,
        run_id: Annotated[Optional[str], Field(
            description="The analysis run making the change (new traces are linked to it).")] = None,
        experiment_id: ExperimentId = None,
        severity: _enum(Optional[Severity], "CRITICAL, HIGH, MEDIUM or LOW.") = None,
        status: _enum(Optional[IssueStatus], "OPEN, IN_PROGRESS, RESOLVED or REJECTED.") = None,
        resolution: Optional[str] = None,
        title: Optional[str] = None,
        description: Optional[str] = None,
        add_evidence: Evidence = None,
        add_traces: AddTraces = None,
    ) -> dict[str, Any]:
        """Change an issue's severity, status, title, description or resolution; evidence is
        added, never replaced. Returns the issue."""
        issue = await call(tools.client().update_issue, run_id, issue_id, severity=severity,
                           status=status, add_evidence=add_evidence or [],
                           add_traces=add_traces, resolution=resolution, title=title,
                           description=description, experiment_id=experiment_id)
        return _issue_dict(issue)

    @mcp.tool(annotations=READ)
    async def list_issues(experiment_id: ExperimentId = None) -> dict[str, Any]:
        """List the experiment's issues, most traces first."""
        listed = await call(tools.client().list_issues, experiment_id)
        out = _listing(sorted(listed, key=lambda i: -i.trace_count), "issues", _issue_dict)
        if getattr(listed, "warnings", None):
            out["warnings"] = list(listed.warnings)  # issue files that could not be read
        return out

    @mcp.tool(annotations=READ)
    async def get_issue(issue_id: str, experiment_id: ExperimentId = None) -> dict[str, Any]:
        """Show one issue with its evidence and history (issues need no run id)."""
        return _issue_dict(await call(tools.client().get_issue, issue_id, experiment_id))

    # ------------------------------------------------------------------ traces

    @mcp.tool(annotations=READ)
    async def preview_hypotheses(run_id: RunId, max_traces: MaxTraces = 100) -> dict[str, Any]:
        """The traces cited by an analysis's hypotheses: state, latency, request and response
        previews, and the rationale they were cited with."""
        client = tools.client()
        items = await call(client.list_hypotheses, run_id)
        return await call(_preview, client, items, max_traces)

    @mcp.tool(annotations=READ)
    async def preview_issues(experiment_id: ExperimentId = None,
                             max_traces: MaxTraces = 100) -> dict[str, Any]:
        """The traces cited by the experiment's issues, most-cited issues first."""
        client = tools.client()
        items = await call(client.list_issues, experiment_id)
        return await call(_preview, client, items, max_traces)

    @mcp.tool(annotations=WRITE)
    async def link_traces(run_id: RunId, trace_ids: Annotated[list[str], Field(
            min_length=1, description="Trace ids of the run's experiment.")]) -> dict[str, Any]:
        """Link traces you examined to the analysis run, so the run shows what was looked at.
        Every trace must exist in the experiment (otherwise nothing is linked)."""
        client = tools.client()

        def link() -> int:
            from insights import runs
            from insights.ids import check_id

            runs.get_analysis_run(client.mlflow_client, check_id(run_id, "run id"))
            return client.link_traces(run_id, trace_ids)

        return {"run_id": run_id, "linked": await call(link)}

    # ------------------------------------------------------------------ analytics

    @mcp.tool(annotations=WRITE)
    async def create_baseline_census(
        ctx: Context,
        run_id: RunId,
        filter_string: Annotated[Optional[str], Field(
            description="MLflow trace filter, e.g. \"trace.status = 'ERROR'\".")] = None,
        start_time_ms: Optional[int] = None,
        end_time_ms: Optional[int] = None,
    ) -> dict[str, Any]:
        """Compute the baseline census of the analysis's experiment (error rates, span
        failures, latency, tools, response lengths, assessments, with sample trace ids) and
        store it in the analysis run. Can take a while on a big experiment: sends progress
        notifications. Returns the census."""
        progress = _Progress(ctx)
        await progress.say("computing the census")
        census = await call(tools.client().create_baseline_census, run_id, filter_string,
                            start_time_ms, end_time_ms, progress=progress)
        await progress.say("census stored")
        return census.model_dump(mode="json")

    @mcp.tool(annotations=READ)
    async def get_baseline_census(run_id: RunId) -> dict[str, Any]:
        """The census stored in an analysis run (run create_baseline_census first)."""
        return (await call(tools.client().get_baseline_census, run_id)).model_dump(mode="json")

    @mcp.tool(annotations=READ, description=sql_description())
    async def execute_sql(
        ctx: Context,
        sql: Annotated[str, Field(description="A SELECT or WITH query over `traces`.")],
        experiment_id: ExperimentId = None,
        max_rows: Annotated[int, Field(ge=1, le=10_000, description="Rows returned at most.")] = 200,
        timeout: Annotated[Optional[float], Field(
            gt=0, description="Time limit in seconds (default 30).")] = None,
    ) -> dict[str, Any]:
        client = tools.client()
        progress = _Progress(ctx)
        await progress.say("running the query")

        def run() -> Any:
            with _session(client, experiment_id).using(progress):
                return client.execute_sql(experiment_id, sql, max_rows=max_rows, timeout=timeout)

        result = await call(run)
        return result.to_dict()

    @mcp.tool(annotations=READ)
    async def cohort_stats(
        cohort: Annotated[str, Field(description="SQL predicate over traces for the cohort, "
                                                 "e.g. \"length(request) > 500\".")],
        outcome: Annotated[str, Field(description="SQL predicate for the outcome, e.g. "
                                                  "\"state = 'ERROR'\".")],
        control: Annotated[Optional[str], Field(description="Default: NOT (cohort).")] = None,
        experiment_id: ExperimentId = None,
    ) -> dict[str, Any]:
        """Compare an outcome's rate in a cohort and a control: both rates, the difference
        with a 95% interval, Fisher's exact p-value, and sample traces of each cell."""
        client = tools.client()

        def run() -> Any:
            session = _session(client, experiment_id)
            return client.cohort_stats(session.experiment_id, cohort,
                                       control or f"NOT ({cohort})", outcome)

        return await call(run)

    @mcp.tool(annotations=WRITE)
    async def recheck(
        ctx: Context,
        experiment_id: ExperimentId = None,
        since: Annotated[Optional[str], Field(
            description="Epoch milliseconds or an ISO date/time; default: each issue's last "
                        "check, else when an analysis last saw it.")] = None,
    ) -> dict[str, Any]:
        """Recheck every OPEN issue against newer traces by the SQL signature it was proven
        with (no model): 'still present', 'worse', 'not seen' or 'no new traces'. Each result
        is recorded in the issue's history. Sends progress notifications."""
        from insights.recheck import parse_since, recheck as run_recheck

        client = tools.client()
        progress = _Progress(ctx)
        since_ms = parse_since(since)
        await progress.say("rechecking the open issues")

        def run() -> Any:
            with _session(client, experiment_id).using(progress):
                return run_recheck(client, experiment_id, since_ms)

        results = await call(run)
        await progress.say(f"{len(results)} issues rechecked")
        return {"results": results}

    return mcp


def serve(tracking_uri: str | None = None, http_port: int | None = None) -> None:
    """Run the server until its client disconnects (stdio) or it is stopped (HTTP)."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # stdout is the wire
    server = build_server(tracking_uri, port=http_port or 8000)
    try:
        server.run("streamable-http" if http_port else "stdio")
    finally:
        server.insights.close()  # the analytics sessions write their caches
