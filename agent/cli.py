"""``insights-agent``: run the analyze-experiment workflow, the demo, or the web UI."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import uuid
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from insights.cli import quick_fail_defaults
from insights.errors import InsightsError


class _Group(TyperGroup):
    """The command group, whose own ``--help`` flag defaults to False instead of None.

    Why: on ``insights-agent run --help`` the group's flag is processed unset; typer coerces
    a None (not a bool) through a pydantic TypeAdapter, and importing that takes ~0.15 s, a
    quarter of the help's time. A bool is taken as it is. The help printed is unchanged."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option


app = typer.Typer(name="insights-agent", no_args_is_help=True, rich_markup_mode="rich",
                  pretty_exceptions_enable=False, add_completion=False, cls=_Group,
                  help="Investigate an MLflow experiment's traces and keep the findings in MLflow.")


class Output(str, Enum):
    table = "table"
    json = "json"


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def load_env_file(path: Optional[Path]) -> None:
    """KEY=VALUE lines into the environment (values already set by the shell win).

    Without ``--env-file``, a ``.env`` in the current directory is read, as the playbook's
    step 1.1 says.
    """
    if path is None:
        path = Path(".env")
        if not path.is_file():
            return
    if not path.is_file():
        _fail(f"env file {path} not found")
    from dotenv import dotenv_values

    for key, value in dotenv_values(path).items():
        if value is not None:
            os.environ.setdefault(key, value)


def checkpointer_path() -> Path:
    from platformdirs import user_data_dir

    folder = Path(user_data_dir("insights-agent"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "checkpoints.sqlite"


def make_analyst(model: Optional[str], max_calls: int):
    if not model:
        from agent.offline import OfflineAnalyst

        return OfflineAnalyst()
    from agent.llm import load_model

    try:
        return load_model(model, max_calls)
    except Exception as exc:  # provider package missing, bad name, no credentials
        _fail(f"cannot load model {model!r}: {str(exc).splitlines()[0] if str(exc) else exc}")


@app.command(epilog="[bold]Examples:[/bold]\n\n  insights-agent run --experiment-id 1\n\n"
             "  insights-agent run --experiment-id 1 --yes --report report.md --output json\n\n"
             "  insights-agent run --experiment-id 1 --yes --since-last\n\n"
             "  insights-agent run --resume 3f2a9c... --model openai:gpt-4.1-mini")
def run(
    experiment_id: Optional[str] = typer.Option(None, "--experiment-id", envvar="MLFLOW_EXPERIMENT_ID"),
    focus: Optional[str] = typer.Option(None, "--focus", help="What to look at (skips the question)."),
    model: Optional[str] = typer.Option(None, "--model", help="provider:name chat model; offline if omitted."),
    max_model_calls: int = typer.Option(30, "--max-model-calls", min=0),
    yes: bool = typer.Option(False, "--yes", "-y", help="Unattended: take every default answer."),
    report: Optional[Path] = typer.Option(None, "--report", help="Where to save the markdown report."),
    log_assessments: Optional[bool] = typer.Option(None, "--log-assessments/--no-log-assessments"),
    env_file: Optional[Path] = typer.Option(None, "--env-file", help="KEY=VALUE file, e.g. "
                                            "MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_ID "
                                            "(default: ./.env if present; the shell wins)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri"),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue an analysis run from MLflow."),
    since_last: bool = typer.Option(False, "--since-last", help="Analyze only the traces after "
                                    "the last completed analysis and report what changed."),
    since: Optional[str] = typer.Option(None, "--since", help="Analyze only the traces from this "
                                        "time (epoch ms or ISO date/time) and report what changed."),
    publish: bool = typer.Option(False, "--publish", help="When the analysis completes, write "
                                 "its experiment's issues into MLflow's own Issues "
                                 "(as mlflow-insights publish-issues does)."),
    engine: Optional[str] = typer.Option(
        None, "--engine", envvar="INSIGHTS_ENGINE", help="duckdb (default) or spark: where the "
        "analysis's Trace SQL and cohort statistics run (the census stays on DuckDB)."),
    output: Output = typer.Option(Output.table, "--output", "-o"),
) -> None:
    """Analyze an experiment's traces: census, issues, hypotheses tested with evidence, report."""
    since_ms = _window_options(since_last, since, resume)
    load_env_file(env_file)
    with _engine_for_the_run(engine):
        # The option's envvar was read before the env file: take the file's experiment now.
        experiment_id = experiment_id or os.environ.get("MLFLOW_EXPERIMENT_ID") or None
        quick_fail_defaults()
        if report is not None:
            report = check_report_path(report)
        console = Console(stderr=output == Output.json)
        try:
            summary = _run(console, experiment_id, focus, model, max_model_calls, yes, report,
                           log_assessments, tracking_uri, resume, (since_last, since_ms), publish)
        except InsightsError as exc:
            _fail(str(exc).splitlines()[0], exc.exit_code)
        except ValueError as exc:
            _fail(str(exc).splitlines()[0])
        except KeyboardInterrupt:
            _fail("interrupted; continue later with insights-agent run --resume RUN_ID", 130)
    _print_summary(console, summary, output)


@contextlib.contextmanager
def _engine_for_the_run(engine: Optional[str]) -> Iterator[None]:
    """Route the run's Trace SQL and cohort statistics to ``engine`` through $INSIGHTS_ENGINE,
    which the client reads on every call; exit 2 on an unknown engine before anything runs.
    The variable is put back when the run ends, so a process that runs the command in-process
    (a test, a notebook) keeps its own engine for what it does next."""
    before = os.environ.get("INSIGHTS_ENGINE")
    if engine is not None:
        from insights.analytics.spark_engine import resolve_engine

        try:
            os.environ["INSIGHTS_ENGINE"] = resolve_engine(engine)
        except InsightsError as exc:
            _fail(str(exc).splitlines()[0], exc.exit_code)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("INSIGHTS_ENGINE", None)
        else:
            os.environ["INSIGHTS_ENGINE"] = before


def _window_options(since_last: bool, since: Optional[str], resume: Optional[str]) -> Optional[int]:
    """``--since`` as epoch ms; exit 2 on a bad value or a combination with no one meaning."""
    if since_last and since is not None:
        _fail("--since-last and --since cannot be used together; pick one")
    if resume and (since_last or since is not None):
        _fail("--resume continues an analysis over its own traces; drop --since-last/--since")
    if since is None:
        return None
    from insights.recheck import parse_since

    try:
        return parse_since(since)
    except InsightsError as exc:
        _fail(str(exc).splitlines()[0], exc.exit_code)
    return None


def _run(console, experiment_id, focus, model, max_calls, yes, report, log_assessments,
         tracking_uri, resume, window_options=(False, None), publish=False) -> dict[str, Any]:
    from insights import InsightsClient
    from workflows.analyze_experiment import WorkflowContext

    client = InsightsClient(tracking_uri)
    if not experiment_id and not resume:
        experiment_id = _choose_experiment(client, console, yes)
    answers: dict[str, Any] = {}
    if focus:
        answers["choose_focus"] = {"focus": focus}
    if report:
        answers["report_path"] = {"path": str(report)}
        if resume:  # a new --report replaces the stored one, so a failed report can be redone
            client.update_analysis(resume, metadata={"report_path": str(report)})
    if log_assessments is not None:
        answers["log_assessments"] = {"log": log_assessments}
    analyst = make_analyst(model, max_calls)
    ctx = WorkflowContext(client=client, analyst=analyst, auto_answer=yes, answers=answers,
                          report_dir=os.getcwd())
    try:
        window = _resolve_window(console, client, experiment_id, *window_options)
        if window is not None and window.traces == 0:
            return _nothing_new(experiment_id, window)
        first = window.as_state() if window is not None else {}
        state = _drive(console, client, ctx, experiment_id, resume, yes, first)
        summary = _summary(client, state, analyst)
        if publish and summary.get("phase") == "complete":
            try:
                summary["published"] = _publish(console, client, summary["experiment_id"])
            except InsightsError as exc:   # the analysis stands; say why nothing was published
                summary["publish_error"] = str(exc).splitlines()[0]
                console.print(f"Warning: not published to MLflow's Issues: "
                              f"{summary['publish_error']}", markup=False, soft_wrap=True)
        return summary
    finally:
        client.close()  # the analytics sessions write their caches


def _publish(console, client, experiment_id: str) -> list[dict[str, Any]]:
    """The completed analysis's issues into MLflow's native Issues (created or updated)."""
    results = client.publish_issues(experiment_id)
    changed = sum(1 for r in results if r.get("action") != "unchanged")
    console.print(f"Published {len(results)} issues to MLflow's Issues ({changed} created or "
                  "updated).", markup=False)
    return results


def _resolve_window(console, client, experiment_id, since_last: bool, since_ms: Optional[int]):
    """The window of an incremental run (None for a plain one), its note printed."""
    if not since_last and since_ms is None:
        return None
    from workflows.analyze_experiment.window import resolve

    window = resolve(client, experiment_id, since_last=since_last, since_ms=since_ms)
    if window.note:
        console.print(f"Note: {window.note}", markup=False, soft_wrap=True)
    return window


def _nothing_new(experiment_id: str, window) -> dict[str, Any]:
    """No traces in the window: no analysis is created (an empty one would only become the
    next --since-last's starting point without having seen anything)."""
    from workflows.analyze_experiment.window import iso

    return {"run_id": None, "experiment_id": experiment_id, "phase": None,
            "message": f"no new traces in experiment {experiment_id} since "
                       f"{iso(window.since_ms)}: nothing to analyze",
            "window": {"since_ms": window.since_ms, "until_ms": None, "traces": 0},
            "previous_run_id": window.previous_run_id, "changes": None,
            "issues": [], "hypotheses": [], "usage": {}}


def _drive(console, client, ctx, experiment_id, resume, yes,
           window_state: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    from langgraph.checkpoint.sqlite import SqliteSaver

    from agent.terminal import TerminalPrompts, drive
    from workflows.analyze_experiment import build_graph

    first: Any = {"experiment_id": experiment_id, **(window_state or {})} if experiment_id else {}
    thread_id = uuid.uuid4().hex
    if resume:
        analysis = client.get_analysis(resume)
        first = {"run_id": analysis.run_id, "experiment_id": analysis.experiment_id}
        thread_id = (analysis.metadata or {}).get("thread_id") or thread_id
        # One model budget per analysis: start from what earlier runs of it spent.
        restore = getattr(ctx.analyst, "restore_usage", None)
        if restore is not None:
            restore((analysis.metadata or {}).get("model_usage") or {})
    from langgraph.types import Command

    ask = (lambda payload: payload.get("default", {})) if yes else TerminalPrompts(console)
    with SqliteSaver.from_conn_string(str(checkpointer_path())) as saver:
        graph = build_graph(checkpointer=saver)
        config = {"configurable": {"thread_id": thread_id}}
        pending = graph.get_state(config).interrupts if resume else ()
        if pending:
            console.print(f"continuing the paused session {thread_id}", style="dim", markup=False)
            first = Command(resume=ask(pending[0].value))
        elif resume:
            config = {"configurable": {"thread_id": uuid.uuid4().hex}}
        return drive(graph, config, ctx, first, console, ask)


def check_report_path(report: Path) -> Path:
    """The absolute report path, or exit 2 now if it cannot be written: better before the
    analysis starts than after it has run for minutes and is left ACTIVE. Missing folders
    are fine (the report creates them) when the nearest existing one is writable."""
    path = Path(os.path.abspath(os.path.expanduser(str(report))))
    if path.is_dir():
        _fail(f"--report {report} is a directory; give a file name")
    if path.exists():
        if not os.access(path, os.W_OK):
            _fail(f"--report {report} is not writable")
        return path
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        _fail(f"--report {report}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        _fail(f"--report {report}: folder {folder} is not writable")
    return path


def _choose_experiment(client, console, yes: bool) -> str:
    from mlflow.entities import ViewType

    experiments = client.mlflow_client.search_experiments(view_type=ViewType.ACTIVE_ONLY,
                                                          max_results=50)
    if yes or not sys.stdin.isatty():
        _fail("--experiment-id is required (or set MLFLOW_EXPERIMENT_ID)")
    table = Table(title="Experiments")
    table.add_column("id")
    table.add_column("name")
    for e in experiments:
        table.add_row(Text(e.experiment_id), Text(e.name))
    console.print(table)
    from rich.prompt import Prompt

    return Prompt.ask("Experiment id to analyze", console=console)


def _summary(client, state: dict[str, Any], analyst) -> dict[str, Any]:
    run_id = state.get("run_id")
    experiment_id = state.get("experiment_id")
    issues = [i for i in client.list_issues(experiment_id) if i.seen_by(run_id)]
    hypotheses = client.list_hypotheses(run_id) if run_id else []
    meta = client.get_analysis(run_id).metadata or {} if run_id else {}
    return {
        "run_id": run_id, "experiment_id": experiment_id, "phase": state.get("phase"),
        "report_path": state.get("report_path"),
        "issues": [{"issue_id": i.issue_id, "title": i.title, "severity": i.severity.value,
                    "status": i.status.value, "trace_count": i.trace_count} for i in issues],
        "hypotheses": [{"hypothesis_id": h.hypothesis_id, "statement": h.statement,
                        "status": h.status.value, "supports": h.supports_count,
                        "refutes": h.refutes_count} for h in hypotheses],
        "usage": analyst.usage(),
        "window": meta.get("window"),
        "changes": meta.get("changes"),
    }


def _print_summary(console: Console, summary: dict[str, Any], output: Output) -> None:
    if output == Output.json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    if summary.get("message"):
        console.print(summary["message"], markup=False, soft_wrap=True)
        return
    table = Table(title=Text(f"Issues from analysis {summary['run_id']}"))
    for col in ("severity", "title", "status", "traces"):
        table.add_column(col)
    for i in summary["issues"]:
        table.add_row(i["severity"], Text(i["title"]), i["status"], str(i["trace_count"]))
    console.print(table)
    verdicts = {}
    for h in summary["hypotheses"]:
        verdicts[h["status"]] = verdicts.get(h["status"], 0) + 1
    console.print(f"Hypotheses: {verdicts}; report: {summary['report_path']}", markup=False)
    usage = summary["usage"]
    if usage.get("max_model_calls") is not None:
        console.print(f"Model usage: {usage['model_calls']} calls, {usage['tokens']} tokens",
                      markup=False)
    if summary.get("changes"):
        console.print(_changes_table(summary["changes"]))


def _changes_table(changes: dict[str, Any]) -> Table:
    """What changed since the previous analysis, one row per measure."""
    from agent.report import change_rows

    table = Table(title=Text(f"Since analysis {changes.get('previous_run_id')}"))
    for col in ("measure", "before", "now", "change"):
        table.add_column(col)
    for row in change_rows(changes):
        table.add_row(*(Text(str(cell)) for cell in row))
    return table


@app.command(epilog="[bold]Example:[/bold]\n\n  insights-agent demo --dir ./insights-demo --traces 800")
def demo(
    directory: Path = typer.Option(Path("insights-demo"), "--dir", help="Where the demo store goes."),
    traces: int = typer.Option(800, "--traces", min=50, help="How many demo traces to generate."),
    seed: int = typer.Option(7, "--seed"),
    output: Output = typer.Option(Output.table, "--output", "-o"),
) -> None:
    """Build a local SQLite store from the traced demo app and analyze it unattended."""
    quick_fail_defaults()
    console = Console(stderr=output == Output.json)
    from agent.demo import run_demo

    try:
        summary = run_demo(directory, traces, seed, console)
    except InsightsError as exc:
        _fail(str(exc).splitlines()[0], exc.exit_code)
    _print_summary(console, summary, output)
    if output == Output.table:
        console.print(f"Browse it: mlflow ui --backend-store-uri {summary['tracking_uri']}",
                      markup=False)


@app.command(epilog="[bold]Example:[/bold]\n\n  insights-agent serve --tracking-uri sqlite:///mlflow.db --port 5050")
def serve(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(5050, "--port", min=1, max=65535),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI"),
    mlflow_ui_url: Optional[str] = typer.Option(None, "--mlflow-ui-url",
                                                help="Base URL of the MLflow UI for trace links."),
    allowed_host: Optional[list[str]] = typer.Option(
        None, "--allowed-host", help="A host name the server may be reached by besides its bind "
        "address (e.g. behind a proxy), repeatable; others get 400."),
) -> None:
    """Serve the Insights REST API and web UI (Issues and Runs pages) at /insights/."""
    from insights.server import serve as serve_app

    typer.echo(f"Insights UI: http://{host}:{port}/insights/", err=True)
    serve_app(host=host, port=port, tracking_uri=tracking_uri, mlflow_ui_url=mlflow_ui_url,
              allowed_hosts=allowed_host or [])


@app.command(epilog="[bold]Examples:[/bold]\n\n  insights-agent recheck --experiment-id 1\n\n"
             "  insights-agent recheck --experiment-id 1 --since 2025-06-01T00:00:00Z --output json")
def recheck(
    experiment_id: Optional[str] = typer.Option(None, "--experiment-id", envvar="MLFLOW_EXPERIMENT_ID"),
    since: Optional[str] = typer.Option(None, "--since", help="Epoch milliseconds or an ISO "
                                        "date/time (default: each issue's last check, else "
                                        "when an analysis last saw it)."),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI"),
    output: Output = typer.Option(Output.table, "--output", "-o"),
) -> None:
    """Recheck the open issues on newer traces by their signatures (no model): still present,
    worse, or not seen; each result is recorded in the issue's history."""
    quick_fail_defaults()
    try:
        from insights import InsightsClient
        from insights.cli import recheck_table
        from insights.recheck import parse_since, recheck as run_recheck

        since_ms = parse_since(since)
        client = InsightsClient(tracking_uri)
        try:
            results = run_recheck(client, experiment_id, since_ms)
        finally:
            client.close()
    except InsightsError as exc:
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, exc.exit_code)
    if output == Output.json:
        sys.stdout.write(json.dumps({"results": results}, indent=2, default=str) + "\n")
    else:
        Console().print(recheck_table(results))


@app.command(epilog="[bold]Examples:[/bold]\n\n"
             "  insights-agent mcp --tracking-uri sqlite:///mlflow.db\n\n"
             "  claude mcp add insights -- insights-agent mcp --tracking-uri sqlite:///mlflow.db\n\n"
             "  insights-agent mcp --tracking-uri sqlite:///mlflow.db --http 8765")
def mcp(
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI"),
    http: Optional[int] = typer.Option(None, "--http", min=1, max=65535, metavar="PORT",
                                       help="Serve streamable HTTP on 127.0.0.1:PORT/mcp "
                                       "instead of stdio."),
) -> None:
    """Serve the Insights tools (analyses, hypotheses, issues, census, trace SQL, recheck) to a
    coding agent over MCP: stdio by default. The default experiment is MLFLOW_EXPERIMENT_ID."""
    quick_fail_defaults()
    from agent.mcp_server import serve as serve_mcp

    if http:
        typer.echo(f"Insights MCP server: http://127.0.0.1:{http}/mcp", err=True)
    serve_mcp(tracking_uri, http)


@app.command(epilog="[bold]Examples:[/bold]\n\n  insights-agent skill\n\n"
             "  insights-agent skill --install-dir ~/.claude/skills/insights-investigation "
             "--output json")
def skill(
    install_dir: Optional[Path] = typer.Option(
        None, "--install-dir", help="Folder to write SKILL.md into (default: "
        ".claude/skills/insights-investigation under the current folder)."),
    force: bool = typer.Option(False, "--force", help="Replace a different SKILL.md there."),
    output: Output = typer.Option(Output.table, "--output", "-o"),
) -> None:
    """Install the investigation playbook as a coding-agent skill (SKILL.md) that uses the
    Insights MCP tools or the mlflow-insights CLI."""
    from agent.skill import SkillExistsError, install_skill

    try:
        path, changed = install_skill(install_dir, force=force)
    except SkillExistsError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write the skill: {exc}", 1)
    if output == Output.json:
        sys.stdout.write(json.dumps({"path": str(path), "written": changed}) + "\n")
    else:
        typer.echo(f"{'Wrote' if changed else 'Already up to date:'} {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
