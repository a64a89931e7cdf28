"""Publishing Insights issues into MLflow's native Issues (insights/publish.py), on real stores.

Every check reads MLflow's own store back (``search_issues(include_trace_count=True)`` counts the
traces linked by IssueReference assessments) or our issue's stored metadata; nothing is mocked.
"""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import IssueSeverity, IssueStatus
from rich.console import Console
from typer.testing import CliRunner

from helpers.insights_helpers import make_traces
from insights import compat, render
from insights.cli import app
from insights.client import InsightsClient
from insights.errors import InvalidInputError, NotFoundError
from insights.publish import MARKER, NAME_MAX, marker_of, native_name

runner = CliRunner()


# ---------------------------------------------------------------------- helpers


def natives(uri: str, experiment_id: str) -> list:
    """MLflow's native issues of the experiment, with MLflow's own linked-trace counts."""
    store = compat.native_issue_store(MlflowClient(uri))
    return compat.search_native_issues(store, experiment_id, include_trace_count=True)


def by_marker(uri: str, experiment_id: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for native in natives(uri, experiment_id):
        out.setdefault(marker_of(native.description), []).append(native)
    return out


@pytest.fixture()
def world(tracking_uri: str, experiment_id: str):
    """An InsightsClient on a fresh SQLite store: an analysis run, six traces and three issues
    (one with a signature and a true count above its evidence, one LOW, one REJECTED)."""
    client = InsightsClient(tracking_uri)
    traces = make_traces(tracking_uri, experiment_id, 6)
    run_id = client.create_analysis(experiment_id, run_name="publish-test")
    slow = client.create_issue(
        run_id, "Slow retrieval", "Retrieval takes over 5 s.\n\nSeen on long queries.", "CRITICAL",
        evidence=[{"trace_id": t, "rationale": f"slow {t}"} for t in traces[:4]],
        metadata={"trace_count": 120, "base_description": "Retrieval takes over 5 s.",
                  "signature": {"kind": "census", "key": "k1", "where": "latency_ms > 5000"}})
    empty = client.create_issue(run_id, "Empty answers", "No text returned.", "LOW",
                                evidence=[{"trace_id": traces[4], "rationale": "empty"}])
    rejected = client.create_issue(run_id, "Not a problem", "", "MEDIUM", status="REJECTED",
                                   evidence=[{"trace_id": traces[5], "rationale": "fine"}])
    return {"client": client, "uri": tracking_uri, "exp": experiment_id, "traces": traces,
            "slow": slow, "empty": empty, "rejected": rejected}


def cli(uri: str, *args: str):
    result = runner.invoke(app, ["--tracking-uri", uri, *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"raised {result.exception!r}\nstderr: {result.stderr}")
    return result


# ---------------------------------------------------------------------- publishing


def test_publish_creates_one_native_issue_per_issue_with_mapped_fields_and_linked_traces(world):
    results = world["client"].publish_issues(world["exp"])

    assert {r["issue_id"] for r in results} == {world["slow"], world["empty"]}  # not REJECTED
    assert {r["action"] for r in results} == {"created"}
    found = by_marker(world["uri"], world["exp"])
    assert set(found) == {world["slow"], world["empty"]}
    slow = found[world["slow"]][0]
    assert slow.name == "Slow retrieval"
    assert slow.status == IssueStatus.PENDING and slow.severity == IssueSeverity.HIGH
    assert slow.description.startswith("Retrieval takes over 5 s.")
    assert "Affected traces (MLflow Insights' count): 120" in slow.description
    assert slow.description.splitlines()[-1] == f"{MARKER}: {world['slow']}"
    assert slow.root_causes == ["Retrieval takes over 5 s.", "Traces matching: latency_ms > 5000"]
    assert slow.categories == ["insights-agent", "census"]
    assert slow.source_run_id == world["client"].get_issue(world["slow"]).source_run_id
    assert slow.trace_count == 4  # MLflow's own count of linked traces
    assert found[world["empty"]][0].severity == IssueSeverity.LOW
    result = next(r for r in results if r["issue_id"] == world["slow"])
    assert (result["linked_traces"], result["trace_count"]) == (4, 120)
    assert result["mlflow_issue_id"] == slow.issue_id and result["status"] == "pending"
    recorded = world["client"].get_issue(world["slow"]).metadata["mlflow_issue"]
    assert recorded["id"] == slow.issue_id
    assert sorted(recorded["linked_traces"]) == sorted(world["traces"][:4])


def test_link_traces_caps_the_traces_linked_and_a_later_publish_links_the_rest(world):
    client, exp = world["client"], world["exp"]
    first = client.publish_issues(exp, [world["slow"]], link_traces=2)
    assert (first[0]["linked_traces"], first[0]["trace_count"]) == (2, 120)
    assert by_marker(world["uri"], exp)[world["slow"]][0].trace_count == 2

    second = client.publish_issues(exp, [world["slow"]], link_traces=3)
    assert (second[0]["linked_traces"], second[0]["new_links"]) == (3, 1)
    assert by_marker(world["uri"], exp)[world["slow"]][0].trace_count == 3


def test_publishing_twice_keeps_one_native_issue_per_issue(world):
    client, exp = world["client"], world["exp"]
    client.publish_issues(exp)
    again = client.publish_issues(exp)

    assert {r["action"] for r in again} == {"unchanged"}
    assert all(r["new_links"] == 0 for r in again)
    found = by_marker(world["uri"], exp)
    assert {k: len(v) for k, v in found.items()} == {world["slow"]: 1, world["empty"]: 1}
    assert found[world["slow"]][0].trace_count == 4  # no trace linked twice


def test_republish_updates_name_status_and_severity_when_ours_changed(world):
    client, exp = world["client"], world["exp"]
    created = {r["issue_id"]: r["mlflow_issue_id"] for r in client.publish_issues(exp)}
    client.update_issue(issue_id=world["slow"], experiment_id=exp, status="RESOLVED",
                        title="Slow retrieval on long queries", severity="MEDIUM",
                        resolution="Added a cache.")

    results = {r["issue_id"]: r for r in client.publish_issues(exp)}

    assert results[world["slow"]]["action"] == "updated"
    assert results[world["empty"]]["action"] == "unchanged"
    assert results[world["slow"]]["mlflow_issue_id"] == created[world["slow"]]
    found = by_marker(world["uri"], exp)[world["slow"]]
    assert len(found) == 1
    native = found[0]
    assert native.status == IssueStatus.RESOLVED and native.severity == IssueSeverity.MEDIUM
    assert native.name == "Slow retrieval on long queries"
    assert "Resolution: Added a cache." in native.description


def test_rejecting_a_published_issue_publishes_the_rejection(world):
    client, exp = world["client"], world["exp"]
    client.publish_issues(exp)
    client.update_issue(issue_id=world["empty"], experiment_id=exp, status="REJECTED")

    results = {r["issue_id"]: r for r in client.publish_issues(exp)}

    assert results[world["empty"]]["status"] == "rejected"
    assert world["rejected"] not in results  # never published: still left out
    assert by_marker(world["uri"], exp)[world["empty"]][0].status == IssueStatus.REJECTED


def test_issue_ids_publish_only_those_even_a_rejected_one(world):
    results = world["client"].publish_issues(world["exp"], [world["rejected"]])
    assert [(r["issue_id"], r["status"]) for r in results] == [(world["rejected"], "rejected")]
    assert set(by_marker(world["uri"], world["exp"])) == {world["rejected"]}


def test_marker_finds_the_native_issue_when_our_record_of_it_was_lost(world):
    """A publish that crashed after creating the native issue and linking its traces, before
    recording its id, is modelled by dropping the record: the next publish must not make a twin
    nor link a trace twice."""
    client, exp = world["client"], world["exp"]
    first = client.publish_issues(exp, [world["slow"]])
    client.update_issue(issue_id=world["slow"], experiment_id=exp,
                        metadata={"mlflow_issue": None})
    assert "id" not in (client.get_issue(world["slow"]).metadata.get("mlflow_issue") or {})

    again = client.publish_issues(exp, [world["slow"]])

    assert again[0]["mlflow_issue_id"] == first[0]["mlflow_issue_id"]
    assert (again[0]["linked_traces"], again[0]["new_links"]) == (4, 0)
    found = by_marker(world["uri"], exp)[world["slow"]]
    assert len(found) == 1 and found[0].trace_count == 4
    assert client.get_issue(world["slow"]).metadata["mlflow_issue"]["id"] == found[0].issue_id


@pytest.mark.parametrize("marker_at", ["end", "middle"])
def test_a_native_issue_written_by_someone_else_is_never_claimed_by_its_marker(world, marker_at):
    """A person's native issue that quotes our marker (copied from one of ours, say) is not
    ours: the marker counts only on an issue we created, as the last line we always write."""
    client, exp, slow = world["client"], world["exp"], world["slow"]
    store = compat.native_issue_store(MlflowClient(world["uri"]))
    quoted = f"{MARKER}: {slow}"
    text = f"Copied from the agent.\n\n{quoted}" if marker_at == "end" else \
        f"{quoted}\nwritten by hand"
    theirs = compat.create_native_issue(store, experiment_id=exp, name="By hand",
                                        description=text, status=IssueStatus("pending"),
                                        severity=IssueSeverity("low"), created_by="a person")

    [result] = client.publish_issues(exp, [slow])

    assert result["mlflow_issue_id"] != theirs.issue_id
    kept = compat.get_native_issue(store, theirs.issue_id)
    assert (kept.name, kept.description, kept.severity) == ("By hand", text, theirs.severity)
    assert {n.issue_id for n in natives(world["uri"], exp)} == {theirs.issue_id,
                                                                result["mlflow_issue_id"]}


def test_a_long_title_is_cut_to_mlflows_name_limit():
    name = native_name("word " * 100)
    assert len(name) <= NAME_MAX and name.endswith("…") and " wor…" not in name


# ---------------------------------------------------------------------- bad input


def test_unknown_issue_id_fails_and_writes_nothing(world):
    client, exp = world["client"], world["exp"]
    with pytest.raises(NotFoundError, match="no-such-issue"):
        client.publish_issues(exp, [world["slow"], "no-such-issue"])
    assert natives(world["uri"], exp) == []
    assert "mlflow_issue" not in client.get_issue(world["slow"]).metadata


@pytest.mark.parametrize("link_traces", [-1, "5", True])
def test_bad_link_traces_fails_and_writes_nothing(world, link_traces):
    with pytest.raises(InvalidInputError, match="link_traces"):
        world["client"].publish_issues(world["exp"], link_traces=link_traces)
    assert natives(world["uri"], world["exp"]) == []


# ---------------------------------------------------------------------- CLI


def test_cli_publish_issues_json_then_table(world, monkeypatch):
    monkeypatch.setattr(render, "console", Console(width=220, color_system=None))
    uri, exp = world["uri"], world["exp"]
    result = cli(uri, "publish-issues", "--experiment-id", exp, "--issue-id", world["slow"],
                 "--link-traces", "1", "--output", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    [row] = data["results"]
    assert row["issue_id"] == world["slow"] and row["action"] == "created"
    assert (row["linked_traces"], row["trace_count"]) == (1, 120)

    table = cli(uri, "publish-issues", "--experiment-id", exp, "--link-traces", "1")
    assert table.exit_code == 0, table.stderr
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines()
            if line.count("│") > 2}
    assert "unchanged" in rows["Slow retrieval"] and "1 of 120" in rows["Slow retrieval"]
    assert "created" in rows["Empty answers"] and "1 of 1" in rows["Empty answers"]


@pytest.mark.parametrize("args, message", [
    (["--issue-id", "no-such-issue"], "not found"),
    (["--link-traces", "-3"], "link_traces"),
])
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(world, args, message):
    result = cli(world["uri"], "publish-issues", "--experiment-id", world["exp"], *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert natives(world["uri"], world["exp"]) == []


def test_cli_unknown_experiment_exits_2(world):
    result = cli(world["uri"], "publish-issues", "--experiment-id", "987654")
    assert result.exit_code == 2 and "987654" in result.stderr


# ---------------------------------------------------------------------- no issue support


def test_a_file_store_has_no_native_issue_support(tmp_path, monkeypatch):
    """MLflow 3.17's file store (allowed only with MLFLOW_ALLOW_FILE_STORE) inherits
    create_issue & co. from the abstract store, which raise MlflowNotImplementedException."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    try:
        exp = MlflowClient(uri).create_experiment("file-exp")
        client = InsightsClient(uri)
        run_id = client.create_analysis(exp, run_name="file-analysis")
        issue_id = client.create_issue(run_id, "An issue", "On a file store.")

        result = cli(uri, "publish-issues", "--experiment-id", exp)

        assert result.exit_code == 2
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("Error: this tracking backend has no native issue support (")
        assert "FileStore" in line
        assert "mlflow_issue" not in client.get_issue(issue_id, exp).metadata
    finally:
        mlflow.set_tracking_uri(None)


def test_a_store_without_the_issue_methods_is_named():
    """A store object lacking the methods at all (an older MLflow): the compat boundary names
    the missing ones. A tiny real object stands in for such a store's client."""

    class OldStore:
        def search_traces(self) -> None: ...

    class OldTracingClient:
        store = OldStore()

    class OldClient:
        _tracing_client = OldTracingClient()

    with pytest.raises(compat.NoNativeIssuesError) as err:
        compat.native_issue_store(OldClient())
    assert str(err.value) == ("this tracking backend has no native issue support (OldStore "
                              "lacks create_issue, get_issue, update_issue, search_issues)")


# ---------------------------------------------------------------------- REST


def test_publish_over_a_real_mlflow_server(server_uri, server_experiment_id):
    client = InsightsClient(server_uri)
    traces = make_traces(server_uri, server_experiment_id, 2)
    run_id = client.create_analysis(server_experiment_id, run_name="rest-publish")
    issue_id = client.create_issue(run_id, "Timeouts over REST", "Calls time out.", "HIGH",
                                   evidence=[{"trace_id": t, "rationale": "t"} for t in traces])

    first = client.publish_issues(server_experiment_id)
    client.update_issue(issue_id=issue_id, experiment_id=server_experiment_id,
                        status="RESOLVED")
    second = client.publish_issues(server_experiment_id)

    assert [r["action"] for r in first] == ["created"]
    assert [r["action"] for r in second] == ["updated"]
    [native] = by_marker(server_uri, server_experiment_id)[issue_id]
    assert native.status == IssueStatus.RESOLVED and native.trace_count == 2
    assert f"Insights issue: {server_uri}/insights/#/issues/{issue_id}" in native.description
