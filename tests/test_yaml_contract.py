"""The YAML files are the entities (PRD file layout and field lists).

A file in the PRD's format written by another tool (no journal at all), or a snapshot edited by
hand after our writes, is read and then updated without losing any field, unknown ones
included. Unreadable files are named in list warnings (SDK, CLI, REST) and raise
``StorageError`` on get. Real SQLite stores throughout, and a real ``mlflow server`` where the
``store`` fixture is used.
"""

from __future__ import annotations

import json
import logging
import warnings

import pytest
import yaml
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from typer.testing import CliRunner

from helpers import forked
from helpers.fixtures import sqlite_template, tracking_uri  # noqa: F401  (faster fresh stores)
from helpers.insights_helpers import artifact_tree, make_traces, parent_runs, read_artifact_yaml
from insights import InsightsClient, journal
from insights.cli import app
from insights.errors import InsightsStorageWarning, InvalidInputError, StorageError
from insights.server import create_app
from insights.server.api import API_PREFIX
from test_concurrency import WORKERS, UPDATES, journal_changes, run_workers

runner = CliRunner()
HID = "0a1b2c3d4e5f40718293a4b5c6d7e8f9"
IID = "f9e8d7c6b5a4493827161504f3e2d1c0"


# ---------------------------------------------------------------------- files from another tool


def foreign_runs(mc: MlflowClient, exp: str) -> tuple[str, str]:
    """A parent run and an analysis run tagged as the PRD says, made without our SDK."""
    parent = mc.create_run(exp, run_name="Insights", tags={
        "mlflow.insights.type": "parent", "mlflow.insights.parent": "true"}).info.run_id
    run = mc.create_run(exp, run_name="Latency Investigation", tags={
        "mlflow.insights.type": "analysis", "mlflow.insights.name": "Checkout latency",
        "mlflow.parentRunId": parent}).info.run_id
    return parent, run


def spec_files(traces: list[str], run_id: str) -> dict[str, dict]:
    """One of each entity with every PRD field, plus fields our models do not know."""
    analysis = {
        "name": "Checkout latency", "description": "Written by another tool",
        "status": "ACTIVE", "created_at": 1700000000000, "updated_at": 1700000000000,
        "metadata": {"owner": "sre"}, "team_notes": "keep me",
    }
    hypothesis = {
        "hypothesis_id": HID, "statement": "Pool exhaustion causes slow checkouts",
        "testing_plan": "Compare slow and fast traces", "status": "TESTING",
        "evidence": [{"trace_id": traces[0], "rationale": "45s wait", "supports": True,
                      "span_id": "abc123"}],
        "metrics": {"p99_s": 31.5}, "created_at": "2024-05-01T10:00:00Z",
        "updated_at": "2024-05-01T10:00:00Z", "metadata": {"source": "notebook"},
        "reviewer": {"name": "Ana", "approved": False},
    }
    issue = {
        "issue_id": IID, "source_run_id": run_id, "hypothesis_id": HID,
        "title": "Connection pool too small", "description": "Peak traffic exhausts it",
        "severity": "HIGH", "status": "OPEN",
        "evidence": [{"trace_id": traces[1], "rationale": "timeout after 30s"}],
        "assessments": ["pool_exhaustion"], "resolution": None,
        "created_at": 1700000000000, "updated_at": 1700000000000,
        "metadata": {"ticket": "OPS-12"}, "jira_key": "OPS-12",
    }
    return {"analysis": analysis, "hypothesis": hypothesis, "issue": issue}


def write_yaml(mc: MlflowClient, run_id: str, path: str, data) -> None:
    mc.log_text(run_id, data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False),
                path)


def test_spec_files_from_another_tool_are_listed_got_and_updated_without_losing_fields(store):
    uri, exp = store
    mc, client = MlflowClient(uri), InsightsClient(uri)
    traces = make_traces(uri, exp, 4)
    parent, run_id = foreign_runs(mc, exp)
    files = spec_files(traces, run_id)
    write_yaml(mc, run_id, "insights/analysis.yaml", files["analysis"])
    write_yaml(mc, run_id, f"insights/hypothesis_{HID}.yaml", files["hypothesis"])
    write_yaml(mc, parent, f"insights/issue_{IID}.yaml", files["issue"])
    assert not any(p.startswith("insights_journal") for p in artifact_tree(mc, run_id))

    # listed and got, unknown fields included
    [a] = client.list_analyses(exp)
    assert (a.run_id, a.name, a.description, a.metadata) == (
        run_id, "Checkout latency", "Written by another tool", {"owner": "sre"})
    assert a.model_extra["team_notes"] == "keep me"
    hyps = client.list_hypotheses(run_id)
    assert hyps.warnings == [] and [h.hypothesis_id for h in hyps] == [HID]
    h = client.get_hypothesis(run_id, HID)
    assert h.run_id == run_id and h.trace_ids == [traces[0]]
    assert h.created_at == 1714557600000  # the ISO timestamp, read as epoch ms
    assert h.model_extra["reviewer"] == {"name": "Ana", "approved": False}
    assert h.evidence[0].model_extra["span_id"] == "abc123"
    [i] = client.list_issues(exp)
    assert i.issue_id == IID and client.get_issue(IID, exp).model_extra["jira_key"] == "OPS-12"

    # updated
    a2 = client.update_analysis(run_id, status="COMPLETED")
    h2 = client.update_hypothesis(run_id, HID, status="VALIDATED",
                                  add_evidence=[{"trace_id": traces[2], "rationale": "pool empty"}])
    i2 = client.update_issue(run_id, IID, severity="CRITICAL", add_traces=[traces[3]])
    assert a2.status.value == "COMPLETED" and a2.model_extra["team_notes"] == "keep me"
    assert h2.status.value == "VALIDATED" and h2.trace_ids == [traces[0], traces[2]]
    assert h2.model_extra["reviewer"]["name"] == "Ana"
    assert i2.severity.value == "CRITICAL" and i2.trace_ids == [traces[1], traces[3]]

    # every field of every file is still there, changed only where we changed it
    for path, rid, before, changed in (
        ("insights/analysis.yaml", run_id, files["analysis"], {"status": "COMPLETED"}),
        (f"insights/hypothesis_{HID}.yaml", run_id, files["hypothesis"], {"status": "VALIDATED"}),
        (f"insights/issue_{IID}.yaml", parent, files["issue"], {"severity": "CRITICAL"}),
    ):
        after = journal.strip_marker(read_artifact_yaml(mc, rid, path))
        assert set(before) <= set(after), path
        for key, value in before.items():
            if key in changed:
                assert after[key] == changed[key], (path, key)
            elif key == "evidence":
                assert after[key][0] == value[0], path  # the original entry, untouched
                assert len(after[key]) == 2
            elif key == "metadata" and "history" in after[key]:
                # the severity change is noted in the history; every other key untouched
                assert {k: v for k, v in after[key].items() if k != "history"} == value, path
                assert after[key]["history"][-1]["to"] == "CRITICAL"
            elif key != "updated_at":
                assert after[key] == value, (path, key)
        assert journal.to_ms(after["updated_at"]) > journal.to_ms(before["updated_at"])
    assert client.get_issue(IID, exp).model_extra["jira_key"] == "OPS-12"
    assert mc.get_run(run_id).data.tags["mlflow.insights.status"] == "COMPLETED"


# ---------------------------------------------------------------------- hand edits after our writes


def _edit(mc: MlflowClient, run_id: str, path: str, change) -> None:
    doc = read_artifact_yaml(mc, run_id, path)
    change(doc)
    write_yaml(mc, run_id, path, doc)


def test_hand_edit_of_a_snapshot_survives_the_next_sdk_update(tracking_uri, experiment_id):
    mc, client = MlflowClient(tracking_uri), InsightsClient(tracking_uri)
    t = make_traces(tracking_uri, experiment_id, 4)
    run_id = client.create_analysis(experiment_id, run_name="R")
    hid = client.create_hypothesis(run_id, "Original statement", evidence=[
        {"trace_id": t[0], "rationale": "keep"}, {"trace_id": t[1], "rationale": "wrong"}],
        metadata={"a": 1, "b": 2})
    client.update_hypothesis(run_id, hid, metrics={"n": 10})
    path = f"insights/hypothesis_{hid}.yaml"

    def by_hand(doc):
        doc["statement"] = "Edited by a person"
        doc["reviewer"] = "ana"                           # a field we do not know
        doc["evidence"] = [e for e in doc["evidence"] if e["rationale"] != "wrong"]
        doc["evidence"].append({"trace_id": t[2], "rationale": "added by hand", "supports": False})
        doc["metadata"] = {"a": 1, "c": 3}                # b removed, c added
    _edit(mc, run_id, path, by_hand)

    h = client.update_hypothesis(run_id, hid, status="VALIDATED",
                                 add_evidence=[{"trace_id": t[3], "rationale": "sdk"}])
    for got in (h, client.get_hypothesis(run_id, hid), client.list_hypotheses(run_id)[0]):
        assert got.statement == "Edited by a person"
        assert got.model_extra["reviewer"] == "ana"
        assert [(e.trace_id, e.rationale) for e in got.evidence] == [
            (t[0], "keep"), (t[2], "added by hand"), (t[3], "sdk")]
        assert got.metadata == {"a": 1, "c": 3} and got.metrics == {"n": 10}
        assert got.status.value == "VALIDATED"
    changes = journal_changes(mc, run_id, f"insights_journal/hypothesis_{hid}")
    assert [c["op"] for c in changes] == ["create", "update", "import", "update"]

    # the edit is in the journal now: later updates neither lose it nor import it again
    client.update_hypothesis(run_id, hid, rationale="why")
    assert client.get_hypothesis(run_id, hid).statement == "Edited by a person"
    changes = journal_changes(mc, run_id, f"insights_journal/hypothesis_{hid}")
    assert [c["op"] for c in changes].count("import") == 1


def test_rewrite_without_our_marker_keeps_its_changes_and_our_fields(tracking_uri, experiment_id):
    """Another tool that rewrites an issue file wholesale (dropping our bookkeeping)."""
    mc, client = MlflowClient(tracking_uri), InsightsClient(tracking_uri)
    t = make_traces(tracking_uri, experiment_id, 2)
    run_id = client.create_analysis(experiment_id, run_name="R")
    iid = client.create_issue(run_id, "Old title", evidence=[f"{t[0]}: first"])
    [parent] = parent_runs(mc, experiment_id)
    path = f"insights/issue_{iid}.yaml"

    def rewrite(doc):
        del doc[journal.MARKER]
        doc["title"] = "New title from a tool"
        doc["labels"] = ["perf"]
    _edit(mc, parent.info.run_id, path, rewrite)
    issue = client.update_issue(run_id, iid, severity="LOW", add_traces=[t[1]])
    assert issue.title == "New title from a tool" and issue.model_extra["labels"] == ["perf"]
    assert issue.severity.value == "LOW" and issue.trace_ids == [t[0], t[1]]
    assert issue.source_run_id == run_id


@pytest.mark.parametrize("outside", ["hand_edit", "no_journal"])
def test_concurrent_updates_while_an_outside_edit_exists_keep_both(tracking_uri, experiment_id,
                                                                   tmp_path, outside):
    forked.context()  # the workers' forkserver imports MLflow while this test sets up
    mc, client = MlflowClient(tracking_uri), InsightsClient(tracking_uri)
    run_id = client.create_analysis(experiment_id, run_name="Shared")
    hand = {"trace_id": "tr-hand", "rationale": "by hand", "supports": True}
    if outside == "hand_edit":
        hid = client.create_hypothesis(run_id, "Shared hypothesis")

        def by_hand(doc):
            doc["statement"] = "Edited before the race"
            doc["owner"] = "ana"
            doc["evidence"].append(hand)
        _edit(mc, run_id, f"insights/hypothesis_{hid}.yaml", by_hand)
    else:  # written by another tool: no journal at all
        hid = HID
        write_yaml(mc, run_id, f"insights/hypothesis_{hid}.yaml", {
            "hypothesis_id": hid, "statement": "Edited before the race", "status": "TESTING",
            "evidence": [hand], "owner": "ana", "created_at": 1700000000000,
            "updated_at": 1700000000000})

    names = [f"tr-w{i}-u{k}" for i in range(WORKERS) for k in range(UPDATES)]
    traces = dict(zip(names, make_traces(tracking_uri, experiment_id, len(names))))
    run_workers("hypothesis", WORKERS, {"uri": tracking_uri, "run_id": run_id, "traces": traces,
                                        "hypothesis_id": hid, "updates": UPDATES}, tmp_path)
    expected = set(traces.values()) | {"tr-hand"}
    changes = journal_changes(mc, run_id, f"insights_journal/hypothesis_{hid}")
    for h in (client.get_hypothesis(run_id, hid), client.list_hypotheses(run_id)[0]):
        assert set(h.trace_ids) == expected and len(h.evidence) == len(expected)
        assert h.statement == "Edited before the race" and h.model_extra["owner"] == "ana"
        assert h.status.value == [c["set"]["status"] for c in changes if c["op"] == "update"][-1]
    ops = [c["op"] for c in changes]
    # writers that noticed the edit at once wrote the same import file
    assert ops.count("import") == 1 and ops.count("update") == WORKERS * UPDATES


# ---------------------------------------------------------------------- unreadable files


@pytest.fixture()
def broken(tracking_uri, experiment_id):
    """One good hypothesis and issue, and beside each a malformed and an empty file."""
    mc, client = MlflowClient(tracking_uri), InsightsClient(tracking_uri)
    run_id = client.create_analysis(experiment_id, run_name="R")
    hid = client.create_hypothesis(run_id, "Readable")
    iid = client.create_issue(run_id, "Readable issue")
    [parent] = parent_runs(mc, experiment_id)
    parent_id = parent.info.run_id
    write_yaml(mc, run_id, "insights/hypothesis_bad.yaml", "statement: [never closed\n")
    write_yaml(mc, run_id, "insights/hypothesis_empty.yaml", "")
    write_yaml(mc, parent_id, "insights/issue_bad.yaml", "title: {oops\n")
    write_yaml(mc, parent_id, "insights/issue_empty.yaml", "")
    return {"uri": tracking_uri, "exp": experiment_id, "run_id": run_id, "hid": hid,
            "iid": iid, "client": client}


def test_lists_name_unreadable_files_in_warnings_and_list_the_others(broken):
    client = broken["client"]
    with pytest.warns(InsightsStorageWarning) as caught:
        hyps = client.list_hypotheses(broken["run_id"])
        issues = client.list_issues(broken["exp"])
    assert [h.hypothesis_id for h in hyps] == [broken["hid"]]
    assert [i.issue_id for i in issues] == [broken["iid"]]
    assert len(hyps.warnings) == 2 and len(issues.warnings) == 2
    assert "insights/hypothesis_bad.yaml" in hyps.warnings[0]
    assert "not valid YAML" in hyps.warnings[0]
    assert "insights/hypothesis_empty.yaml" in hyps.warnings[1] and "empty" in hyps.warnings[1]
    assert "insights/issue_bad.yaml" in issues.warnings[0]
    assert "insights/issue_empty.yaml" in issues.warnings[1]
    assert sorted(str(w.message) for w in caught) == sorted(hyps.warnings + issues.warnings)
    assert isinstance(hyps, list) and hyps[0].statement == "Readable"


@pytest.mark.parametrize("entity", ["bad", "empty"])
def test_get_on_an_unreadable_file_raises_storage_error(broken, entity):
    client = broken["client"]
    with pytest.raises(StorageError, match=f"insights/hypothesis_{entity}.yaml") as exc:
        client.get_hypothesis(broken["run_id"], entity)
    assert not isinstance(exc.value, InvalidInputError) and exc.value.exit_code == 1
    with pytest.raises(StorageError, match=f"insights/issue_{entity}.yaml"):
        client.get_issue(entity, broken["exp"])
    with pytest.raises(StorageError):  # an update cannot read it either, and writes nothing
        client.update_hypothesis(broken["run_id"], entity, status="REJECTED")
    assert not any(f"hypothesis_{entity}" in p for p in
                   artifact_tree(MlflowClient(broken["uri"]), broken["run_id"])
                   if p.startswith("insights_journal"))


def test_a_file_that_is_not_an_entity_is_a_storage_error_not_bad_input(broken):
    mc = MlflowClient(broken["uri"])
    write_yaml(mc, broken["run_id"], "insights/hypothesis_list.yaml", "- just\n- a list\n")
    write_yaml(mc, broken["run_id"], "insights/hypothesis_nostatement.yaml", "status: TESTING\n")
    with pytest.raises(StorageError, match="not a YAML mapping"):
        broken["client"].get_hypothesis(broken["run_id"], "list")
    with pytest.raises(StorageError, match="statement"):
        broken["client"].get_hypothesis(broken["run_id"], "nostatement")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsightsStorageWarning)
        assert len(broken["client"].list_hypotheses(broken["run_id"]).warnings) == 4


def test_unreadable_analysis_file_is_a_list_warning_and_a_get_error(tracking_uri, experiment_id):
    mc, client = MlflowClient(tracking_uri), InsightsClient(tracking_uri)
    _, run_id = foreign_runs(mc, experiment_id)   # no metadata tag: listing reads the file
    write_yaml(mc, run_id, "insights/analysis.yaml", "name: [broken\n")
    good = client.create_analysis(experiment_id, run_name="Good")
    with pytest.warns(InsightsStorageWarning):
        listed = client.list_analyses(experiment_id)
    assert sorted(a.run_id for a in listed) == sorted([run_id, good])  # still a run: listed
    assert len(listed.warnings) == 1 and "insights/analysis.yaml" in listed.warnings[0]
    with pytest.raises(StorageError, match="analysis.yaml"):
        client.get_analysis(run_id)


def test_cli_lists_warn_on_stderr_and_exit_0_get_exits_1(broken):
    env = {"MLFLOW_TRACKING_URI": broken["uri"]}
    out = runner.invoke(app, ["list-hypotheses", "--run-id", broken["run_id"], "-o", "json"],
                        env=env)
    assert out.exit_code == 0, out.stderr
    assert [h["hypothesis_id"] for h in json.loads(out.stdout)["hypotheses"]] == [broken["hid"]]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("Warning: ") for line in lines)
    assert "hypothesis_bad.yaml" in lines[0] and "hypothesis_empty.yaml" in lines[1]

    out = runner.invoke(app, ["list-issues", "--experiment-id", broken["exp"], "-o", "json"],
                        env=env)
    assert out.exit_code == 0
    assert [i["title"] for i in json.loads(out.stdout)["issues"]] == ["Readable issue"]
    assert len(out.stderr.strip().splitlines()) == 2 and "issue_bad.yaml" in out.stderr

    out = runner.invoke(app, ["get-hypothesis", "--run-id", broken["run_id"],
                              "--hypothesis-id", "bad"], env=env)
    assert out.exit_code == 1 and out.stdout == ""
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("Error: insights/hypothesis_bad.yaml") and "not valid YAML" in line
    out = runner.invoke(app, ["get-issue", "--issue-id", "empty", "--experiment-id",
                              broken["exp"]], env=env)
    assert out.exit_code == 1 and "issue_empty.yaml" in out.stderr


def test_rest_lists_answer_200_with_warnings_and_get_answers_500(broken):
    api = TestClient(create_app(broken["uri"]))

    def post(path, body):
        return api.post(API_PREFIX + path, json=body)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsightsStorageWarning)
        res = post("hypotheses/list", {"insights_run_id": broken["run_id"]})
        assert res.status_code == 200
        assert [h["hypothesis_id"] for h in res.json()["hypotheses"]] == [broken["hid"]]
        assert len(res.json()["warnings"]) == 2
        res = post("issues/list", {"experiment_id": broken["exp"]})
        assert res.status_code == 200 and res.json()["total_count"] == 1
        assert any("issue_bad.yaml" in w for w in res.json()["warnings"])
        res = post("analyses/list", {"experiment_id": broken["exp"]})
        assert res.status_code == 200 and res.json()["analyses"][0]["hypothesis_count"] == 1
        assert len(res.json()["warnings"]) == 2
    res = post("hypotheses/get", {"insights_run_id": broken["run_id"], "hypothesis_id": "bad"})
    assert res.status_code == 500
    assert res.json()["error_code"] == "STORAGE_ERROR"
    assert "insights/hypothesis_bad.yaml" in res.json()["message"]
    res = post("issues/get", {"issue_id": "empty", "experiment_id": broken["exp"]})
    assert res.status_code == 500 and "issue_empty.yaml" in res.json()["message"]


# ---------------------------------------------------------------------- writes that half fail


def test_update_whose_change_was_written_reports_success_when_a_later_step_fails(
        tracking_uri, experiment_id, caplog):
    mc, client = MlflowClient(tracking_uri), InsightsClient(tracking_uri)
    run_id = client.create_analysis(experiment_id, run_name="R")
    hid = client.create_hypothesis(run_id, "H")

    def mirror_fails(state):
        raise RuntimeError("tag mirror down")

    with caplog.at_level(logging.WARNING, logger="insights.journal"):
        state = journal.update(mc, run_id, "hypothesis", hid, {"set": {"status": "VALIDATED"}},
                               after_fold=mirror_fails)
    assert state["status"] == "VALIDATED"
    assert "was recorded" in caplog.text and "tag mirror down" in caplog.text
    # the change is in the journal, and the next write carries it
    client.update_hypothesis(run_id, hid, rationale="r")
    assert client.get_hypothesis(run_id, hid).status.value == "VALIDATED"


def test_a_stray_unreadable_change_file_does_not_block_updates(tracking_uri, experiment_id):
    mc, client = MlflowClient(tracking_uri), InsightsClient(tracking_uri)
    run_id = client.create_analysis(experiment_id, run_name="R")
    hid = client.create_hypothesis(run_id, "H")
    write_yaml(mc, run_id, f"insights_journal/hypothesis_{hid}/zz-notes.yaml", "not: a change\n")
    h = client.update_hypothesis(run_id, hid, status="REJECTED")
    assert h.status.value == "REJECTED"
    assert client.get_hypothesis(run_id, hid).status.value == "REJECTED"
