"""`insights-agent run --since-last` (and `--since`): an incremental analysis reads only the
traces after the previous completed analysis, everywhere it reads traces (census, analyst,
issues, report), and reports what changed against that analysis's census. Real SQLite store
(the demo app's), the real CLI, the offline analyst."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.entities import SpanType
from typer.testing import CliRunner

from helpers.insights_helpers import trace_calls
from insights.analytics.scope import window_sql
from tests.workflow.conftest import Store, offline_context, stream_unattended
from workflows.analyze_experiment.window import WindowedClient, resolve

NEW_TRACES = 24
NEW_TOOL = "book_rental_car"


class QuotaExceededError(Exception):
    pass


@mlflow.trace(name=NEW_TOOL, span_type=SpanType.TOOL)
def book_rental_car(i: int) -> float:
    if i % 2 == 0:
        raise QuotaExceededError("rental API quota exceeded")
    return 1.1 * i


@mlflow.trace(name="rental_agent", span_type=SpanType.AGENT)
def rental_agent(i: int) -> str:
    return f"car {book_rental_car(i):.2f}"


def add_new_traces(store: Store, n: int = NEW_TRACES) -> list[str]:
    """Log ``n`` traces now (after every demo trace): a tool the demo never calls, failing
    with an error type the demo never raises on every other call (those traces end in ERROR)."""
    return trace_calls(store.uri, store.experiment_id, rental_agent, n,
                       ending_in_error=QuotaExceededError)


def _cli(*args: str):
    from agent.cli import app

    return CliRunner().invoke(app, ["run", *args])


def _run_json(store: Store, tmp: Path, *args: str) -> dict[str, Any]:
    result = _cli("--experiment-id", store.experiment_id, "--tracking-uri", store.uri, "--yes",
                  "--report", str(tmp / "report.md"), "--output", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def incremental(small_demo_store: Store, tmp_path_factory: pytest.TempPathFactory):
    """A store analysed once in full, then given new traces and analysed with --since-last."""
    root = tmp_path_factory.mktemp("since-last")
    store = small_demo_store.copy_to(root / "store")
    first, _ = stream_unattended(store, offline_context(store, auto_answer=True),
                                 {"experiment_id": store.experiment_id})
    new_ids = add_new_traces(store)
    summary = _run_json(store, root, "--since-last")
    return store, first["run_id"], new_ids, summary, root / "report.md"


def test_every_analysis_records_the_window_it_read(incremental) -> None:
    store, first_run, _, _, _ = incremental
    client = store.client()
    window = client.get_analysis(first_run).metadata["window"]
    census = client.get_baseline_census(first_run)
    assert window == {"since_ms": None, "until_ms": census.time_range.end_ms,
                      "traces": census.total_traces}


def test_since_last_counts_only_the_new_traces(incremental) -> None:
    store, first_run, new_ids, summary, _ = incremental
    client = store.client()
    previous_end = client.get_analysis(first_run).metadata["window"]["until_ms"]
    assert summary["window"]["since_ms"] == previous_end + 1
    assert summary["window"]["traces"] == NEW_TRACES
    census = client.get_baseline_census(summary["run_id"])
    assert census.total_traces == NEW_TRACES
    assert census.error_traces == NEW_TRACES // 2
    assert census.start_time_ms == previous_end + 1


def test_the_window_reaches_issues_and_linked_traces(incremental) -> None:
    store, _, new_ids, summary, _ = incremental
    client = store.client()
    assert summary["issues"], "the new failing tool should give an issue"
    for issue in summary["issues"]:
        traces = client.get_issue(issue["issue_id"], store.experiment_id).trace_ids
        # issues merged into an earlier run's keep their old traces; this run's are new ones
        if client.get_issue(issue["issue_id"], store.experiment_id).source_run_id == summary["run_id"]:
            assert set(traces) <= set(new_ids), issue["title"]
    linked = client.linked_trace_ids(summary["run_id"], max_results=10_000)
    assert linked and set(linked) <= set(new_ids)


def test_changes_name_the_new_error_type_tool_and_error_rate(incremental) -> None:
    store, first_run, _, summary, _ = incremental
    changes = summary["changes"]
    before = store.client().get_baseline_census(first_run)
    assert changes["previous_run_id"] == first_run
    assert "QuotaExceededError" in changes["new_error_types"]
    assert changes["new_tools"] == [NEW_TOOL]
    assert changes["error_rate"]["before"] == pytest.approx(before.error_rate)
    assert changes["error_rate"]["after"] == pytest.approx(0.5)
    assert changes["error_rate"]["change"] == pytest.approx(0.5 - before.error_rate)
    assert changes["latency_ms"]["p95"]["before"] == before.latency_ms.all.p95
    assert changes["traces"] == {"before": before.total_traces, "after": NEW_TRACES}
    stored = store.client().get_analysis(summary["run_id"]).metadata["changes"]
    assert stored == changes


def test_report_has_the_since_the_last_analysis_section(incremental) -> None:
    _, first_run, _, _, report = incremental
    text = report.read_text()
    section = text.split("## Since the last analysis", 1)[1].split("\n## ", 1)[0]
    assert first_run in section
    assert NEW_TOOL in section and "QuotaExceededError" in section
    assert re.search(r"- error rate: [\d.]+% -> 50\.0%", section)
    assert "Traces analyzed (those since " in text and f": {NEW_TRACES};" in text


def test_no_new_traces_creates_no_analysis(incremental) -> None:
    store, _, _, _, _ = incremental
    before = store.client().list_analyses(store.experiment_id)
    result = _cli("--experiment-id", store.experiment_id, "--tracking-uri", store.uri, "--yes",
                  "--since-last")
    assert result.exit_code == 0, result.output
    assert result.output.strip().startswith("no new traces in experiment")
    assert len(result.output.strip().splitlines()) == 1
    assert store.client().list_analyses(store.experiment_id) == before
    json_out = _cli("--experiment-id", store.experiment_id, "--tracking-uri", store.uri, "--yes",
                    "--since-last", "--output", "json")
    assert json_out.exit_code == 0 and json.loads(json_out.stdout)["run_id"] is None


def test_since_last_with_no_previous_analysis_reads_everything(small_store: Store) -> None:
    client = small_store.client()
    window = resolve(client, small_store.experiment_id, since_last=True)
    total = client.execute_sql(small_store.experiment_id, "SELECT count(*) FROM traces").rows[0][0]
    assert window.since_ms is None and window.traces == total
    assert window.previous_run_id is None
    assert "analysing every trace" in window.note


def test_explicit_since_bounds_the_window(small_store: Store) -> None:
    client = small_store.client()
    new_ids = add_new_traces(small_store, 6)
    start = min(r[0] for r in client.execute_sql(
        small_store.experiment_id, "SELECT request_time_ms FROM traces WHERE trace_id IN ("
        + ", ".join(f"'{t}'" for t in new_ids) + ")").rows)
    window = resolve(client, small_store.experiment_id, since_ms=start)
    assert (window.since_ms, window.traces) == (start, 6)


@pytest.mark.parametrize("query", [
    "SELECT trace_id FROM traces WHERE state = 'ERROR'",
    "SELECT t.trace_id FROM traces t WHERE t.execution_time_ms > 0",
    "SELECT trace_id FROM traces LATERAL VIEW explode(spans) x AS s WHERE s.span_type = 'TOOL'",
    "SELECT trace_id FROM traces WHERE trace_id IN (SELECT trace_id FROM traces "
    "WHERE state = 'OK')",
    # outer joins: the window holds on a preserved side too, and keeps the join outer
    "WITH s AS (SELECT DISTINCT session_id FROM traces) "
    "SELECT t.trace_id FROM s RIGHT JOIN traces t ON s.session_id = t.session_id",
    "SELECT a.trace_id FROM traces a FULL JOIN traces b ON a.trace_id = b.trace_id "
    "WHERE a.trace_id IS NOT NULL",
    "SELECT a.trace_id FROM traces a LEFT JOIN traces b USING (trace_id)",
    # aliases that need quoting
    "SELECT `select`.trace_id FROM traces AS `select` WHERE `select`.state = 'OK'",
    "SELECT `tr-x`.trace_id FROM traces `tr-x`",
])
def test_windowed_trace_sql_sees_only_the_window(small_store: Store, query: str) -> None:
    client = small_store.client()
    exp = small_store.experiment_id
    times = sorted(r[0] for r in client.execute_sql(exp, "SELECT request_time_ms FROM traces").rows)
    lo, hi = times[len(times) // 3], times[2 * len(times) // 3]
    inside = {r[0] for r in client.execute_sql(
        exp, f"SELECT trace_id FROM traces WHERE request_time_ms >= {lo} "
        f"AND request_time_ms < {hi}").rows}
    got = {r[0] for r in WindowedClient(client, lo, hi).execute_sql(exp, query).rows}
    unwindowed = {r[0] for r in client.execute_sql(exp, query).rows}
    assert got == unwindowed & inside
    assert window_sql(query, None, None) == query


@pytest.mark.parametrize("args, message", [
    (["--since-last", "--since", "2025-01-01"], "cannot be used together"),
    (["--resume", "0" * 32, "--since-last"], "--resume"),
    (["--resume", "0" * 32, "--since", "2025-01-01"], "--resume"),
    (["--since", "last tuesday"], "--since"),
])
def test_bad_combinations_exit_2_and_write_nothing(small_store: Store, args: list[str],
                                                   message: str) -> None:
    result = _cli("--experiment-id", small_store.experiment_id, "--tracking-uri",
                  small_store.uri, "--yes", *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert small_store.client().list_analyses(small_store.experiment_id) == []
