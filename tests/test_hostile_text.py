"""Text from traces, titles, statements and SQL results is shown literally in the terminal.

Rich reads ``[...]`` as markup: an unbalanced ``[/x]`` in an error message used to crash the
CLI, and ``[link=...]`` turned into a hidden OSC-8 hyperlink. These tests put such text in real
traces (request, response, error message, tag, span name) and in analyses, hypotheses and
issues on a real SQLite store, then run the commands and the interactive prompts with a console
that writes terminal escapes, and check: exit 0, the text appears as typed, no hyperlink escape.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import MlflowExperimentLocation
from rich.console import Console
from typer.testing import CliRunner

from helpers.fixtures import copy_template
from insights import InsightsClient, render
from insights.cli import app

CRASH = "pool exhausted [/x] retry"  # an unbalanced closing tag: a MarkupError if parsed
LINK = "see [link=https://evil.example]the docs[/link] now"  # a hidden hyperlink if parsed
LOUD = "[bold red]PANIC[/bold red] in tool"  # styling that would hide the brackets
HOSTILE = (CRASH, LINK, LOUD)
OSC8 = "\x1b]8;"
runner = CliRunner()


def visible(output: str) -> str:
    """The output with colour/style escapes removed (hyperlink escapes are kept)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", output)


def assert_literal(output: str, *texts: str) -> None:
    assert OSC8 not in output, "data became a terminal hyperlink"
    shown = visible(output)
    for text in texts:
        assert text in shown, f"{text!r} not shown literally in:\n{shown}"


@pytest.fixture()
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The CLI's console as a colour terminal (escapes are written), captured in a buffer."""
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="truecolor", width=400)
    monkeypatch.setattr(render, "console", console)
    return buffer


def _log_hostile_traces(experiment_id: str) -> list[str]:
    """Traces whose request, response, tag, span name and error message carry markup."""
    location = MlflowExperimentLocation(experiment_id=experiment_id)
    ids = []
    for n, text in enumerate(HOSTILE):
        with mlflow.start_span(name=f"agent {text}", trace_destination=location) as root:
            root.set_inputs({"question": text})
            mlflow.update_current_trace(tags={"note": text})
            try:
                with mlflow.start_span(name="search_tool", span_type="TOOL") as tool:
                    tool.set_inputs({"query": text})
                    raise RuntimeError(text)
            except RuntimeError:
                pass
            root.set_outputs({"answer": f"answer {n}: {text}"})
        ids.append(root.trace_id)
    mlflow.flush_trace_async_logging()
    return ids


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An experiment with hostile traces, an analysis with a census, a hypothesis and an issue,
    all named with markup-like text; built once, since the tests only read it."""
    root = tmp_path_factory.mktemp("hostile")
    tracking_uri = copy_template(root / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        patch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        mlflow.set_tracking_uri(tracking_uri)
        try:
            yield _build_hostile_store(tracking_uri, root)
        finally:
            mlflow.set_tracking_uri(None)


def _build_hostile_store(tracking_uri: str, root: Path) -> dict[str, str]:
    experiment_id = MlflowClient(tracking_uri).create_experiment(
        "hostile", artifact_location=(root / "artifacts").as_uri())
    trace_ids = _log_hostile_traces(experiment_id)
    client = InsightsClient(tracking_uri)
    run_id = client.create_analysis(experiment_id, "Hostile run", f"Analysis {LINK}", CRASH)
    evidence = [{"trace_id": t, "rationale": f"rationale {text}"}
                for t, text in zip(trace_ids, HOSTILE)]
    hypothesis_id = client.create_hypothesis(run_id, f"Statement {CRASH}", f"Plan {LINK}",
                                             evidence, rationale=LOUD)
    issue_id = client.create_issue(run_id, f"Title {CRASH}", f"Description {LINK}", "HIGH",
                                   hypothesis_id, evidence)
    client.create_baseline_census(run_id)
    return {"uri": tracking_uri, "experiment_id": experiment_id, "run_id": run_id,
            "hypothesis_id": hypothesis_id, "issue_id": issue_id}


def run_cli(store: dict[str, str], terminal: io.StringIO, *args: str) -> str:
    result = runner.invoke(app, ["--tracking-uri", store["uri"], *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert result.exit_code == 0, (args[0], result.output)
    return terminal.getvalue()


def test_census_shows_error_messages_and_span_names_literally(hostile, terminal) -> None:
    out = run_cli(hostile, terminal, "get-baseline-census", "--run-id", hostile["run_id"])
    assert_literal(out, CRASH, LINK, LOUD, f"agent {CRASH}")


def test_sql_results_and_column_names_are_literal(hostile, terminal) -> None:
    out = run_cli(hostile, terminal, "execute-sql", "--experiment-id", hostile["experiment_id"],
                  "SELECT request, response, tags['note'] AS `[/col]`, "
                  "transform(spans, s -> s.status_message) AS errors FROM traces")
    assert_literal(out, CRASH, LINK, LOUD, "[/col]")


def test_preview_issues_shows_requests_and_rationales_literally(hostile, terminal) -> None:
    out = run_cli(hostile, terminal, "preview-issues", "--experiment-id", hostile["experiment_id"])
    # (the request and evidence columns wrap at 48 characters: look for pieces of each)
    assert_literal(out, f"rationale {CRASH}", '{"question": "pool exhausted [/x] retry"}',
                   "rationale see [link=https://evil.example]the", "[bold red]PANIC[/bold red]")


def test_issue_list_and_detail_are_literal(hostile, terminal) -> None:
    out = run_cli(hostile, terminal, "list-issues", "--experiment-id", hostile["experiment_id"])
    assert_literal(out, f"Title {CRASH}")
    out = run_cli(hostile, terminal, "get-issue", "--issue-id", hostile["issue_id"])
    assert_literal(out, f"Title {CRASH}", f"Description {LINK}", f"rationale {LOUD}")


def test_hypotheses_and_analysis_are_literal(hostile, terminal) -> None:
    out = run_cli(hostile, terminal, "list-hypotheses", "--run-id", hostile["run_id"])
    assert_literal(out, f"Statement {CRASH}")
    out = run_cli(hostile, terminal, "get-hypothesis", "--run-id", hostile["run_id"],
                  "--hypothesis-id", hostile["hypothesis_id"])
    assert_literal(out, f"Statement {CRASH}", f"Plan {LINK}", LOUD, f"rationale {CRASH}")
    out = run_cli(hostile, terminal, "get-analysis", "--run-id", hostile["run_id"])
    assert_literal(out, f"Analysis {LINK}", CRASH)




# ---------------------------------------------------------------------- insights-agent prompts


def _prompts(*typed: str):
    from agent.terminal import TerminalPrompts

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="truecolor", width=400)
    answers = list(typed)
    console.input = lambda prompt="", **kwargs: (console.print(prompt, end=""), answers.pop(0))[1]
    return TerminalPrompts(console), buffer, answers


def test_every_interactive_prompt_shows_hostile_text_literally() -> None:
    prompts, buffer, left = _prompts("", "", "", "y", "", "")
    issue = {"issue_id": "i1", "title": CRASH, "severity": "HIGH", "description": LINK,
             "trace_count": 2, "examples": [{"trace_id": "tr-1", "rationale": LOUD}]}
    assert prompts({"kind": "confirm_description", "description": CRASH})["description"] == CRASH
    assert prompts({"kind": "choose_focus", "options": [LINK, CRASH]})["focus"] == LINK
    assert prompts({"kind": "review_hypotheses", "hypotheses": [
        {"hypothesis_id": "h1", "statement": CRASH, "rationale": LINK}]})["approve"] is True
    assert prompts({"kind": "review_issues", "issues": [issue]})["decisions"] == {"i1": "accept"}
    assert prompts({"kind": "log_assessments", "question": f"Log on {CRASH}?"})["log"] is False
    path = prompts({"kind": "report_path", "question": f"Report {LINK}",
                    "default": {"path": "r.md"}})["path"]
    assert path == "r.md" and left == []
    out = buffer.getvalue()
    assert_literal(out, CRASH, LINK, LOUD, f"[HIGH] {CRASH}", f"Log on {CRASH}? [y/n]",
                   f"Report {LINK}")


def test_progress_messages_are_literal() -> None:
    from agent.terminal import show_progress

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="truecolor", width=400)
    show_progress(console, {"message": f"testing hypothesis: {CRASH}"})
    show_progress(console, {"message": f"testing plan\n{LINK}"})
    show_progress(console, {"message": f"issue: {LOUD}", "verdict": "VALIDATED"})
    assert_literal(buffer.getvalue(), CRASH, LINK, LOUD)


def test_interactive_agent_run_on_hostile_traces(hostile, tmp_path: Path, monkeypatch) -> None:
    """``insights-agent run`` answering every prompt at the terminal (Enter = the default)."""
    from agent.cli import app as agent_app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(agent_app, [
        "run", "--experiment-id", hostile["experiment_id"], "--tracking-uri", hostile["uri"],
        "--report", str(tmp_path / "report.md")], input="\n" * 200)
    assert result.exit_code == 0, (result.output, result.exception)
    assert OSC8 not in result.output
    assert CRASH in result.output  # the error message reached the screen, as typed
    assert (tmp_path / "report.md").exists()
