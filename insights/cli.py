"""``mlflow-insights``: one command per InsightsClient method, a thin layer over the SDK.

Human output is a rich table or panel; ``--output json`` prints one JSON document. Errors
print one line to stderr and exit 2 (bad input, unknown ids) or 1 (tracking server failures,
unreadable entity files). A list that skipped an unreadable file says so on stderr and exits 0.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import sys
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer

# Only light modules at import time: --help must not load MLflow, DuckDB or SciPy (seconds).
# The client, and through it everything heavy, is imported by the commands that run.
from insights import render
from insights.errors import InsightsError, InvalidInputError

if TYPE_CHECKING:
    from insights.client import InsightsClient

app = typer.Typer(
    name="mlflow-insights",
    help="MLflow Insights: analyses, hypotheses and issues about traces, stored in MLflow.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)


class Output(str, Enum):
    table = "table"
    json = "json"


_state: dict[str, Any] = {"tracking_uri": None}

OutputOpt = typer.Option(Output.table, "--output", "-o", help="table (rich) or json (one document).")
RunIdOpt = typer.Option(..., "--run-id", help="The analysis run id.")
ExperimentOpt = typer.Option(
    None, "--experiment-id", envvar="MLFLOW_EXPERIMENT_ID", help="Experiment id (or MLFLOW_EXPERIMENT_ID)."
)
EvidenceOpt = typer.Option(
    None, "--evidence",
    help='Evidence as JSON, repeatable: \'{"trace_id": "tr-1", "rationale": "...", "supports": true}\'.',
)
AddEvidenceOpt = typer.Option(
    None, "--add-evidence", help="Evidence as 'TRACE_ID: rationale', repeatable."
)
EngineOpt = typer.Option(
    None, "--engine", envvar="INSIGHTS_ENGINE",
    help="duckdb (default: a local cached copy) or spark (the query runs as written).")
TableOpt = typer.Option(
    None, "--table", help="Spark only: a Parquet/Delta path or catalog table with the traces "
    "schema, instead of the experiment exported to Parquet.")
SparkRemoteOpt = typer.Option(
    None, "--spark-remote", envvar="INSIGHTS_SPARK_REMOTE", help="Spark Connect server, sc://HOST:PORT.")
SparkMasterOpt = typer.Option(None, "--spark-master", help="Spark master URL (default local[2]).")
TraceOpt = typer.Option(None, "--trace-id", "-t", help="A trace to cite (no rationale), repeatable.")


@app.callback()
def _main(
    tracking_uri: Optional[str] = typer.Option(
        None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI."
    ),
) -> None:
    _state["tracking_uri"] = tracking_uri
    # MLflow prints "View run at ..." to stdout on run updates over HTTP; keep stdout for JSON.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def _client() -> InsightsClient:
    from insights.client import InsightsClient

    client = InsightsClient(_state["tracking_uri"])
    atexit.register(client.close)  # analytics sessions flush their cache on close
    return client


def _fail(message: str, code: int) -> None:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def command(example: str, help_text: str | None = None) -> Callable:
    """Register a command whose --help ends with an example and whose errors are one line."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except InsightsError as exc:
                _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, exc.exit_code)

        name = fn.__name__.replace("_", "-")
        app.command(name, help=help_text, epilog=f"[bold]Example:[/bold]\n\n  {example}")(wrapper)
        return wrapper

    return decorate


def parse_evidence_json(values: list[str] | None) -> list[dict[str, Any]]:
    """Each ``--evidence`` is one JSON object; anything else is refused before writing."""
    entries = []
    for index, raw in enumerate(values or [], 1):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"--evidence #{index} is not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise InvalidInputError(f"--evidence #{index} must be a JSON object")
        entries.append(data)
    return entries


def escape(value: Any) -> str:
    """Data inside a markup string is shown literally (see ``render.plain``)."""
    from rich.markup import escape as rich_escape

    return rich_escape(str(value))


def emit(output: Output, data: Any, human: Callable[[], Any]) -> None:
    if output == Output.json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        render.console.print(human())


def _listed(fetch: Callable[[], Any]) -> Any:
    """Run a list call; name each unreadable entity file on stderr (one line each) instead of
    Python's warning format. The listing itself still succeeds."""
    import warnings

    from insights.errors import InsightsStorageWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsightsStorageWarning)
        items = fetch()
    for message in getattr(items, "warnings", []):
        typer.echo(f"Warning: {message}", err=True)
    return items


def _evidence(evidence: list[str] | None, add_evidence: list[str] | None) -> list[Any]:
    return [*parse_evidence_json(evidence), *(add_evidence or [])]


# ---------------------------------------------------------------------- create


@command('mlflow-insights create-analysis --experiment-id 1 --run-name "Error Investigation" '
         '--name "Production Error Analysis" --description "500s since Monday"')
def create_analysis(
    run_name: str = typer.Option(..., "--run-name", help="Short 3-4 word run name."),
    experiment_id: Optional[str] = ExperimentOpt,
    name: Optional[str] = typer.Option(None, "--name", help="Descriptive analysis name."),
    description: str = typer.Option("", "--description", help="Goals and guidance."),
    output: Output = OutputOpt,
) -> None:
    """Create an analysis: a nested run under the experiment's Insights parent run."""
    run_id = _client().create_analysis(experiment_id, run_name, name or run_name, description)
    emit(output, {"run_id": run_id}, lambda: f"Created analysis run [bold]{escape(run_id)}[/bold]")


@command('mlflow-insights create-hypothesis --run-id RUN --statement "Lock waits cause timeouts" '
         '--testing-plan "Step 1: ..." --evidence \'{"trace_id": "tr-1", "rationale": "32s lock wait", '
         '"supports": true}\'')
def create_hypothesis(
    run_id: str = RunIdOpt,
    statement: str = typer.Option(..., "--statement", help="The testable statement."),
    testing_plan: str = typer.Option("", "--testing-plan", help="How it will be validated or rejected."),
    rationale: Optional[str] = typer.Option(None, "--rationale", help="Why it is worth testing."),
    evidence: Optional[list[str]] = EvidenceOpt,
    add_evidence: Optional[list[str]] = AddEvidenceOpt,
    output: Output = OutputOpt,
) -> None:
    """Add a hypothesis (status TESTING) to an analysis run."""
    items = _evidence(evidence, add_evidence)
    hid = _client().create_hypothesis(run_id, statement, testing_plan, items, rationale)
    emit(output, {"hypothesis_id": hid, "run_id": run_id},
         lambda: f"Created hypothesis [bold]{escape(hid)}[/bold] in run {escape(run_id)}")


@command('mlflow-insights create-issue --run-id RUN --title "Search tool times out after 30s" '
         '--severity HIGH --evidence \'{"trace_id": "tr-1", "rationale": "30s timeout"}\'')
def create_issue(
    run_id: str = RunIdOpt,
    title: str = typer.Option(..., "--title", help="Specific, actionable title (5-8 words)."),
    description: str = typer.Option("", "--description"),
    severity: str = typer.Option("MEDIUM", "--severity", help="CRITICAL, HIGH, MEDIUM or LOW."),
    hypothesis_id: Optional[str] = typer.Option(None, "--hypothesis-id", help="Source hypothesis."),
    status: str = typer.Option("OPEN", "--status", help="OPEN, IN_PROGRESS, RESOLVED or REJECTED."),
    evidence: Optional[list[str]] = EvidenceOpt,
    add_evidence: Optional[list[str]] = AddEvidenceOpt,
    output: Output = OutputOpt,
) -> None:
    """Record an issue in the experiment's Insights parent run."""
    items = _evidence(evidence, add_evidence)
    iid = _client().create_issue(run_id, title, description, severity, hypothesis_id, items, status)
    emit(output, {"issue_id": iid, "run_id": run_id}, lambda: f"Created issue [bold]{escape(iid)}[/bold]")


# ---------------------------------------------------------------------- update


@command("mlflow-insights update-analysis --run-id RUN --status COMPLETED")
def update_analysis(
    run_id: str = RunIdOpt,
    name: Optional[str] = typer.Option(None, "--name"),
    description: Optional[str] = typer.Option(None, "--description"),
    status: Optional[str] = typer.Option(None, "--status", help="ACTIVE, COMPLETED or ARCHIVED."),
    output: Output = OutputOpt,
) -> None:
    """Change an analysis's name, description or status."""
    analysis = _client().update_analysis(run_id, name, description, status)
    emit(output, analysis.to_dict(), lambda: render.analysis_panel(analysis))


@command('mlflow-insights update-hypothesis --run-id RUN --hypothesis-id H --status VALIDATED '
         '--evidence \'{"trace_id": "tr-4", "rationale": "pool empty for 50s", "supports": true}\'')
def update_hypothesis(
    run_id: str = RunIdOpt,
    hypothesis_id: str = typer.Option(..., "--hypothesis-id"),
    status: Optional[str] = typer.Option(None, "--status", help="TESTING, VALIDATED or REJECTED."),
    testing_plan: Optional[str] = typer.Option(None, "--testing-plan"),
    statement: Optional[str] = typer.Option(None, "--statement"),
    rationale: Optional[str] = typer.Option(None, "--rationale"),
    evidence: Optional[list[str]] = EvidenceOpt,
    add_evidence: Optional[list[str]] = AddEvidenceOpt,
    trace_id: Optional[list[str]] = TraceOpt,
    output: Output = OutputOpt,
) -> None:
    """Change a hypothesis; evidence and traces are added, never replaced."""
    h = _client().update_hypothesis(
        run_id, hypothesis_id, status=status, add_evidence=_evidence(evidence, add_evidence),
        add_traces=trace_id, testing_plan=testing_plan, statement=statement, rationale=rationale,
    )
    emit(output, h.to_dict(), lambda: render.hypothesis_panel(h))


@command('mlflow-insights update-issue --issue-id I --run-id RUN --status RESOLVED '
         '--resolution "Raised the pool size to 50"')
def update_issue(
    issue_id: str = typer.Option(..., "--issue-id"),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Analysis run making the change."),
    experiment_id: Optional[str] = ExperimentOpt,
    severity: Optional[str] = typer.Option(None, "--severity"),
    status: Optional[str] = typer.Option(None, "--status"),
    resolution: Optional[str] = typer.Option(None, "--resolution"),
    title: Optional[str] = typer.Option(None, "--title"),
    description: Optional[str] = typer.Option(None, "--description"),
    evidence: Optional[list[str]] = EvidenceOpt,
    add_evidence: Optional[list[str]] = AddEvidenceOpt,
    trace_id: Optional[list[str]] = TraceOpt,
    output: Output = OutputOpt,
) -> None:
    """Change an issue's severity, status, evidence or resolution."""
    issue = _client().update_issue(
        run_id, issue_id, severity=severity, status=status,
        add_evidence=_evidence(evidence, add_evidence), add_traces=trace_id,
        resolution=resolution, title=title, description=description, experiment_id=experiment_id,
    )
    emit(output, issue.to_dict(), lambda: render.issue_panel(issue))


# ---------------------------------------------------------------------- read


@command("mlflow-insights list-analyses --experiment-id 1 --output json")
def list_analyses(experiment_id: Optional[str] = ExperimentOpt, output: Output = OutputOpt) -> None:
    """List the experiment's analyses, newest first."""
    items = _listed(lambda: _client().list_analyses(experiment_id))
    emit(output, {"analyses": [a.to_dict() for a in items]}, lambda: render.analyses_table(items))


@command("mlflow-insights list-hypotheses --run-id RUN --output json")
def list_hypotheses(run_id: str = RunIdOpt, output: Output = OutputOpt) -> None:
    """List the hypotheses of an analysis run."""
    items = _listed(lambda: _client().list_hypotheses(run_id))
    data = {"hypotheses": [_with_counts(h.to_dict(), h) for h in items]}
    emit(output, data, lambda: render.hypotheses_table(items))


@command("mlflow-insights list-issues --experiment-id 1")
def list_issues(experiment_id: Optional[str] = ExperimentOpt, output: Output = OutputOpt) -> None:
    """List the experiment's issues, most traces first."""
    items = _listed(lambda: _client().list_issues(experiment_id))
    items = sorted(items, key=lambda i: -i.trace_count)  # true counts; ties keep the SDK order
    data = {"issues": [{**i.to_dict(), "trace_count": i.trace_count} for i in items]}
    emit(output, data, lambda: render.issues_table(items))


@command("mlflow-insights get-analysis --run-id RUN")
def get_analysis(run_id: str = RunIdOpt, output: Output = OutputOpt) -> None:
    """Show one analysis."""
    a = _client().get_analysis(run_id)
    emit(output, a.to_dict(), lambda: render.analysis_panel(a))


@command("mlflow-insights get-hypothesis --run-id RUN --hypothesis-id H")
def get_hypothesis(
    run_id: str = RunIdOpt,
    hypothesis_id: str = typer.Option(..., "--hypothesis-id"),
    output: Output = OutputOpt,
) -> None:
    """Show one hypothesis with its testing plan and evidence."""
    h = _client().get_hypothesis(run_id, hypothesis_id)
    emit(output, _with_counts(h.to_dict(), h), lambda: render.hypothesis_panel(h))


@command("mlflow-insights get-issue --issue-id I")
def get_issue(
    issue_id: str = typer.Option(..., "--issue-id"),
    experiment_id: Optional[str] = ExperimentOpt,
    output: Output = OutputOpt,
) -> None:
    """Show one issue (issues are experiment-level: no run id needed)."""
    i = _client().get_issue(issue_id, experiment_id)
    emit(output, {**i.to_dict(), "trace_count": i.trace_count}, lambda: render.issue_panel(i))


# ---------------------------------------------------------------------- preview and links


@command("mlflow-insights preview-hypotheses --run-id RUN --max-traces 20")
def preview_hypotheses(
    run_id: str = RunIdOpt,
    max_traces: int = typer.Option(100, "--max-traces", min=1),
    output: Output = OutputOpt,
) -> None:
    """Show the traces cited by an analysis's hypotheses."""
    client = _client()
    items = _listed(lambda: client.list_hypotheses(run_id))
    _preview(client, items, max_traces, output)


@command("mlflow-insights preview-issues --experiment-id 1 --max-traces 100")
def preview_issues(
    experiment_id: Optional[str] = ExperimentOpt,
    max_traces: int = typer.Option(100, "--max-traces", min=1),
    output: Output = OutputOpt,
) -> None:
    """Show the traces cited by the experiment's issues, most-cited issues first."""
    client = _client()
    items = _listed(lambda: client.list_issues(experiment_id))
    _preview(client, items, max_traces, output)


@command("mlflow-insights link-traces --run-id RUN -t tr-1 -t tr-2")
def link_traces(
    run_id: str = RunIdOpt,
    trace_id: list[str] = typer.Option(..., "--trace-id", "-t", help="Trace to link, repeatable."),
    output: Output = OutputOpt,
) -> None:
    """Link traces to an analysis run (any number; sent in batches MLflow accepts)."""
    client = _client()
    from insights import runs
    from insights.ids import check_id

    runs.get_analysis_run(client.mlflow_client, check_id(run_id, "run id"))
    count = client.link_traces(run_id, trace_id)
    emit(output, {"run_id": run_id, "linked": count}, lambda: f"Linked {count} traces to {escape(run_id)}")


# ---------------------------------------------------------------------- trace analytics


@command("mlflow-insights create-baseline-census --run-id RUN")
def create_baseline_census(
    run_id: str = RunIdOpt,
    filter_string: Optional[str] = typer.Option(None, "--filter-string",
                                                help="MLflow trace filter, e.g. \"trace.status = 'ERROR'\"."),
    start_time_ms: Optional[int] = typer.Option(None, "--start-time-ms"),
    end_time_ms: Optional[int] = typer.Option(None, "--end-time-ms"),
    exact: bool = typer.Option(False, "--exact", help="On a tracking server, load every trace "
                               "instead of server aggregates plus a sample (slow, then cached)."),
    engine: Optional[str] = EngineOpt,
    table: Optional[str] = TableOpt,
    spark_remote: Optional[str] = SparkRemoteOpt,
    spark_master: Optional[str] = SparkMasterOpt,
    output: Output = OutputOpt,
) -> None:
    """Compute the baseline census over the analysis's experiment and store it in the run.

    On a tracking server, a census of the whole experiment is aggregated by the server; error
    messages, response lengths and sample trace ids come from a sample of 1,000 traces and
    are marked under "sample". --exact reads every trace instead. --engine spark computes
    the same census on Spark (the experiment exported to Parquet, or --table).
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False),
                  console=render.err_console,
                  transient=True) as progress:
        task = progress.add_task("computing the census", total=None)
        census = _client().create_baseline_census(
            run_id, filter_string, start_time_ms, end_time_ms, exact=exact, engine=engine,
            table=table, spark_remote=spark_remote, spark_master=spark_master,
            progress=lambda msg: progress.update(task, description=str(msg)),
        ).model_dump(mode="json")
    emit(output, census, lambda: render.census_view(census))


@command("mlflow-insights get-baseline-census --run-id RUN --output json")
def get_baseline_census(run_id: str = RunIdOpt, output: Output = OutputOpt) -> None:
    """Show the baseline census stored in an analysis run."""
    census = _client().get_baseline_census(run_id).model_dump(mode="json")
    emit(output, census, lambda: render.census_view(census))


def _sql_help() -> str:
    from rich.markup import escape

    from insights.analytics.schema import TRACES_SCHEMA_HELP

    return ("Run a read-only Spark SQL query over the experiment's traces table.\n\n"
            + escape(TRACES_SCHEMA_HELP).replace("\n", "\n\n"))


@command('mlflow-insights execute-sql --experiment-id 1 "SELECT state, count(*) AS n FROM traces GROUP BY state"',
         help_text=_sql_help())
def execute_sql(
    sql: str = typer.Argument(..., help="A SELECT or WITH query over `traces`."),
    experiment_id: Optional[str] = ExperimentOpt,
    timeout: Optional[float] = typer.Option(
        None, "--timeout", help="Time limit in seconds (default 30, or INSIGHTS_SQL_TIMEOUT)."),
    max_memory: Optional[str] = typer.Option(
        None, "--max-memory", help="Memory cap, e.g. 2GB (default 1GB, or INSIGHTS_SQL_MEMORY)."),
    max_rows: int = typer.Option(10_000, "--max-rows", min=1, help="Rows returned at most."),
    engine: Optional[str] = EngineOpt,
    table: Optional[str] = TableOpt,
    spark_remote: Optional[str] = SparkRemoteOpt,
    spark_master: Optional[str] = SparkMasterOpt,
    output: Output = OutputOpt,
) -> None:
    result = _client().execute_sql(experiment_id, sql, max_rows=max_rows, timeout=timeout,
                                   max_memory=max_memory, engine=engine, table=table,
                                   spark_remote=spark_remote, spark_master=spark_master)
    emit(output, result.to_dict(), lambda: render.sql_table(result.columns, result.rows))
    if result.truncated and output == Output.table:
        render.console.print(f"showing first {len(result.rows)} rows; result truncated "
                             "(raise with --max-rows)", markup=False, highlight=False)


@command("mlflow-insights export-traces --experiment-id 1 --out ./traces-parquet")
def export_traces(
    out: str = typer.Option(..., "--out", help="Folder for the Parquet files (created)."),
    experiment_id: Optional[str] = ExperimentOpt,
    output: Output = OutputOpt,
) -> None:
    """Write the experiment's traces as Parquet in the `traces` table's schema, partitioned by
    day (OUT/day=YYYY-MM-DD/), for Spark; later calls add only traces not yet exported.
    Traces still IN_PROGRESS wait until they finish."""
    result = _client().export_traces(experiment_id, out).to_dict()
    emit(output, result, lambda: (f"Wrote {result['written']} new traces to "
                                  f"{escape(result['out'])} ({result['total']} in total)"))


@command("mlflow-insights cohort-stats --experiment-id 1 --cohort \"length(request) > 500\" "
         "--outcome \"state = 'ERROR'\"")
def cohort_stats(
    cohort: str = typer.Option(..., "--cohort", help="SQL predicate for the cohort."),
    outcome: str = typer.Option(..., "--outcome", help="SQL predicate for the outcome."),
    control: Optional[str] = typer.Option(None, "--control", help="Defaults to NOT (cohort)."),
    experiment_id: Optional[str] = ExperimentOpt,
    engine: Optional[str] = EngineOpt,
    table: Optional[str] = TableOpt,
    spark_remote: Optional[str] = SparkRemoteOpt,
    spark_master: Optional[str] = SparkMasterOpt,
    output: Output = OutputOpt,
) -> None:
    """Compare an outcome's rate in a cohort and a control: rates, difference with a 95% CI,
    Fisher exact p-value, sample traces of each cell."""
    stats = _client().cohort_stats(experiment_id, cohort, control or f"NOT ({cohort})", outcome,
                                   engine=engine, table=table, spark_remote=spark_remote,
                                   spark_master=spark_master)
    emit(output, stats, lambda: render.cohort_view(stats))


@command("mlflow-insights recheck --experiment-id 1 --since 2025-06-01T00:00:00Z",
         help_text="Recheck each OPEN issue's signature (the SQL predicate it was proven with) "
         "on the traces since a time, without a model: 'still present' (with the count), "
         "'worse' (rate >= 1.5x the issue's earlier rate), 'not seen', or 'no new traces'. "
         "Each result is recorded in the issue's history and metadata.last_check.")
def recheck(
    experiment_id: Optional[str] = ExperimentOpt,
    since: Optional[str] = typer.Option(
        None, "--since", help="Epoch milliseconds or an ISO date/time (default: each issue's "
        "last check, else when an analysis last saw it)."),
    output: Output = OutputOpt,
) -> None:
    from insights.recheck import parse_since, recheck as run_recheck

    since_ms = parse_since(since)
    client = _client()
    results = run_recheck(client, experiment_id, since_ms)
    emit(output, {"results": results}, lambda: recheck_table(results))


def recheck_table(results: list[dict[str, Any]]) -> Any:
    """The recheck results as a rich table (shared with ``insights-agent recheck``)."""
    import datetime as dt

    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"Recheck: {len(results)} open issues with a signature")
    for name in ("Issue", "Result", "Since", "Matching", "Rate", "Before"):
        table.add_column(name, justify="right" if name in ("Matching", "Rate", "Before") else "left")
    styles = {"worse": "bold red", "still present": "yellow", "not seen": "green"}

    def pct(value: Any) -> str:
        return "-" if value is None else f"{value:.1%}"

    for r in results:
        since = dt.datetime.fromtimestamp(r.get("since", 0) / 1000, dt.timezone.utc)
        table.add_row(Text(str(r.get("title", ""))),
                      Text(str(r.get("result")), style=styles.get(r.get("result"), "")),
                      since.strftime("%Y-%m-%d %H:%M"),
                      f"{r.get('count', '-')}/{r.get('traces', '-')}",
                      pct(r.get("rate")), pct(r.get("rate_before")))
    return table


@command("mlflow-insights publish-issues --experiment-id 1 --link-traces 20 --output json",
         help_text="Write the experiment's issues into MLflow's own Issues (the MLflow UI's "
         "Issues tab): create each one, or update it when published before (never a twin), and "
         "link up to --link-traces of its traces. Without --issue-id, REJECTED issues are "
         "published only when MLflow already shows them.")
def publish_issues(
    experiment_id: Optional[str] = ExperimentOpt,
    issue_id: Optional[list[str]] = typer.Option(
        None, "--issue-id", help="Publish only this issue, repeatable (default: all)."),
    link_traces: int = typer.Option(
        50, "--link-traces", help="Link at most this many traces per issue."),
    output: Output = OutputOpt,
) -> None:
    results = _client().publish_issues(experiment_id, issue_id or None, link_traces)
    emit(output, {"results": results}, lambda: publish_table(results))


def publish_table(results: list[dict[str, Any]]) -> Any:
    """The publish results as a rich table: what happened to each native issue."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"Published {len(results)} issues to MLflow")
    for name in ("Issue", "MLflow issue", "Action", "Status", "Linked traces"):
        table.add_column(name, justify="right" if name == "Linked traces" else "left")
    styles = {"created": "green", "updated": "yellow", "unchanged": "dim"}
    for r in results:
        table.add_row(Text(str(r.get("title", ""))), Text(str(r.get("mlflow_issue_id", ""))),
                      Text(str(r.get("action")), style=styles.get(r.get("action"), "")),
                      Text(str(r.get("status", ""))),
                      f"{r.get('linked_traces', 0)} of {r.get('trace_count', 0)}")
    return table


def _preview(client: InsightsClient, items: list, max_traces: int, output: Output) -> None:
    rationale: dict[str, str] = {}
    for item in items:
        for e in item.evidence:
            rationale.setdefault(e.trace_id, e.rationale)
    traces = client.get_traces(list(rationale), max_traces)
    rows = [_trace_row(t, rationale) for t in traces]
    data = {"traces": rows, "total_count": len(rationale), "returned_count": len(rows)}
    emit(output, data, lambda: render.traces_table(rows, len(rationale)))


def _trace_row(trace, rationale: dict[str, str]) -> dict[str, Any]:
    info = trace.info
    return {
        "trace_id": info.trace_id,
        "request_id": info.trace_id,
        "state": str(getattr(info.state, "value", info.state)),
        "execution_time_ms": info.execution_duration,
        "timestamp": info.request_time,
        "request_preview": (info.request_preview or "")[:200],
        "response_preview": (info.response_preview or "")[:200],
        "evidence_rationale": rationale.get(info.trace_id, ""),
    }


def _with_counts(data: dict[str, Any], h) -> dict[str, Any]:
    return {**data, "trace_count": len(h.trace_ids), "evidence_count": len(h.evidence),
            "supports_count": h.supports_count, "refutes_count": h.refutes_count}


def quick_fail_defaults() -> None:
    """A dead tracking server should fail in seconds, not after MLflow's minutes of retries."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def main() -> None:
    quick_fail_defaults()
    app()


if __name__ == "__main__":
    main()
