"""Triage over REST: bulk status/severity, accept/reject, paged hypotheses and analyses, the
analysis's count of traces examined, and the status/severity history update_issue writes (also
checked at SDK level). Real SQLite store, read back with the SDK."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from insights.client import InsightsClient
from insights.server import create_app
from insights.server.api import API_PREFIX

pytest.importorskip("httpx")


@pytest.fixture()
def api(seeded):
    client = TestClient(create_app(seeded.uri, mlflow_ui_url="http://mlflow.example:5000"))

    def post(path: str, body=None, status: int = 200):
        res = client.post(API_PREFIX + path, json=body)
        assert res.status_code == status, res.text
        return res.json()

    return post


def _snapshot(uri: str, exp: str) -> dict:
    return {i.issue_id: (i.status.value, i.severity.value, i.updated_at,
                         len(i.metadata.get("history") or []))
            for i in InsightsClient(uri).list_issues(exp)}


# ---------------------------------------------------------------------- bulk update


def test_bulk_update_sets_status_and_severity_and_records_history(api, seeded):
    a, b, c = seeded.issue_ids            # HIGH, LOW, CRITICAL; all OPEN
    out = api("issues/bulk-update", {"experiment_id": seeded.experiment_id,
                                     "issue_ids": [a, b, a], "status": "in_progress",
                                     "severity": "low"})
    assert out["updated_count"] == 2 and out["failed_count"] == 0
    assert [(r["issue_id"], r["ok"], r["changed"], r["status"], r["severity"])
            for r in out["results"]] == [(a, True, True, "IN_PROGRESS", "LOW"),
                                         (b, True, True, "IN_PROGRESS", "LOW")]
    client = InsightsClient(seeded.uri)
    ia, ib, ic = (client.get_issue(i) for i in (a, b, c))
    assert (ia.status.value, ia.severity.value) == ("IN_PROGRESS", "LOW")
    assert (ic.status.value, ic.severity.value) == ("OPEN", "CRITICAL")      # untouched
    events = [(h["event"], h["from"], h["to"], h["by"]) for h in ia.metadata["history"]]
    assert events == [("status", "OPEN", "IN_PROGRESS", "insights-ui"),
                      ("severity", "HIGH", "LOW", "insights-ui")]
    # b was LOW already: only its status changed
    assert [h["event"] for h in ib.metadata["history"]] == ["status"]

    again = api("issues/bulk-update", {"experiment_id": seeded.experiment_id,
                                       "issue_ids": [a], "status": "IN_PROGRESS"})
    assert again["updated_count"] == 0 and again["results"][0]["changed"] is False
    assert len(client.get_issue(a).metadata["history"]) == 2              # nothing new noted


@pytest.mark.parametrize("body, status, fragment", [
    ({"issue_ids": ["UNKNOWN"], "status": "RESOLVED"}, 404, "not found"),
    ({"issue_ids": "FIRST+UNKNOWN", "status": "RESOLVED"}, 404, "nothing was changed"),
    ({"issue_ids": "ALL", "status": "DONE"}, 400, "status"),
    ({"issue_ids": "ALL", "severity": "URGENT"}, 400, "severity"),
    ({"issue_ids": "ALL"}, 400, "nothing to change"),
    ({"issue_ids": [], "status": "OPEN"}, 400, "issue_ids"),
    ({"status": "OPEN"}, 400, "issue_ids"),
    ({"issue_ids": "ALL", "status": "OPEN", "experiment_id": None}, 400, "experiment_id"),
])
def test_bulk_update_bad_input_writes_nothing(api, seeded, body, status, fragment):
    ids = {"ALL": seeded.issue_ids, "FIRST+UNKNOWN": [seeded.issue_ids[0], "nope"]}
    body = {"experiment_id": seeded.experiment_id, **body}
    if isinstance(body.get("issue_ids"), str):
        body["issue_ids"] = ids[body["issue_ids"]]
    before = _snapshot(seeded.uri, seeded.experiment_id)
    out = api("issues/bulk-update", body, status=status)
    assert fragment.lower() in out["message"].lower(), out["message"]
    assert out["error_code"] == ("RESOURCE_NOT_FOUND" if status == 404 else
                                 "INVALID_PARAMETER_VALUE")
    assert _snapshot(seeded.uri, seeded.experiment_id) == before


def test_bulk_update_unknown_experiment_is_404(api, seeded):
    api("issues/bulk-update", {"experiment_id": "987654", "issue_ids": seeded.issue_ids[:1],
                               "status": "OPEN"}, status=404)


# ---------------------------------------------------------------------- accept / reject


def test_reject_then_accept_in_one_call_each(api, seeded):
    iid = seeded.issue_ids[1]
    out = api("issues/review", {"issue_id": iid, "experiment_id": seeded.experiment_id,
                                "decision": "reject", "reason": "not a bug"})["issue"]
    assert out["status"] == "REJECTED" and out["metadata"]["review"] == "rejected"
    out = api("issues/review", {"issue_id": iid, "decision": "ACCEPT"})["issue"]
    assert out["status"] == "OPEN" and out["metadata"]["review"] == "accepted"
    issue = InsightsClient(seeded.uri).get_issue(iid)
    assert [(h["event"], h["from"], h["to"]) for h in issue.metadata["history"]] == [
        ("rejected", "OPEN", "REJECTED"), ("accepted", "REJECTED", "OPEN")]
    assert issue.metadata["history"][0]["reason"] == "not a bug"
    # accepting an IN_PROGRESS issue keeps it IN_PROGRESS
    other = seeded.issue_ids[0]
    api("issues/update", {"issue_id": other, "status": "IN_PROGRESS"})
    assert api("issues/review", {"issue_id": other, "decision": "accept"})["issue"]["status"] \
        == "IN_PROGRESS"


def test_review_bad_input(api, seeded):
    before = _snapshot(seeded.uri, seeded.experiment_id)
    api("issues/review", {"issue_id": seeded.issue_ids[0], "decision": "maybe"}, status=400)
    api("issues/review", {"issue_id": "nope", "decision": "accept",
                          "experiment_id": seeded.experiment_id}, status=404)
    assert _snapshot(seeded.uri, seeded.experiment_id) == before


# ---------------------------------------------------------------------- paging


def test_hypotheses_paged_and_old_shape_kept(api, seeded):
    client = InsightsClient(seeded.uri)
    for n in range(4):
        client.create_hypothesis(seeded.run_id, f"Extra hypothesis {n}")
    whole = api("hypotheses/list", {"insights_run_id": seeded.run_id})
    assert len(whole["hypotheses"]) == 5 and whole["next_page_token"] is None
    assert whole["total_count"] == 5 and whole["warnings"] == []
    seen, token = [], None
    while True:
        out = api("hypotheses/list", {"insights_run_id": seeded.run_id, "max_results": 2,
                                      **({"page_token": token} if token else {})})
        assert len(out["hypotheses"]) <= 2 and out["total_count"] == 5
        seen += [h["hypothesis_id"] for h in out["hypotheses"]]
        token = out["next_page_token"]
        if not token:
            break
    assert seen == [h["hypothesis_id"] for h in whole["hypotheses"]]
    for bad in ({"max_results": 0}, {"page_token": "abc"}, {"max_results": "lots"}):
        api("hypotheses/list", {"insights_run_id": seeded.run_id, **bad}, status=400)


def test_analyses_paged(api, seeded):
    client = InsightsClient(seeded.uri)
    for n in range(2):
        client.create_analysis(seeded.experiment_id, run_name=f"later-{n}", name=f"Later {n}")
    whole = api("analyses/list", {"experiment_id": seeded.experiment_id})
    assert len(whole["analyses"]) == 3 and whole["total_count"] == 3
    assert whole["next_page_token"] is None
    first = api("analyses/list", {"experiment_id": seeded.experiment_id, "max_results": 2})
    assert [a["run_id"] for a in first["analyses"]] == [a["run_id"] for a in whole["analyses"][:2]]
    assert first["analyses"][0]["hypothesis_count"] is not None
    rest = api("analyses/list", {"experiment_id": seeded.experiment_id, "max_results": 2,
                                 "page_token": first["next_page_token"]})
    assert [a["run_id"] for a in rest["analyses"]] == [whole["analyses"][2]["run_id"]]
    assert rest["next_page_token"] is None
    api("analyses/list", {"experiment_id": seeded.experiment_id, "page_token": "-1"}, status=400)


# ---------------------------------------------------------------------- traces examined


def test_analysis_counts_traces_examined_from_its_census(api, seeded):
    got = api("analyses/get", {"insights_run_id": seeded.run_id})["analysis"]
    assert got["traces_examined"] is None                           # no census yet
    InsightsClient(seeded.uri).create_baseline_census(seeded.run_id)
    got = api("analyses/get", {"insights_run_id": seeded.run_id})["analysis"]
    assert got["traces_examined"] == len(seeded.trace_ids)


# ---------------------------------------------------------------------- SDK history


def test_sdk_update_issue_notes_status_and_severity_changes(seeded):
    client = InsightsClient(seeded.uri)
    iid = seeded.issue_ids[0]                                      # HIGH, OPEN
    client.update_issue(issue_id=iid, status="RESOLVED", resolution="fixed")
    client.update_issue(issue_id=iid, severity="HIGH", title="Same severity, new title")
    client.update_issue(seeded.run_id, iid, severity="low", changed_by="ana")
    history = client.get_issue(iid).metadata["history"]
    assert [(h["event"], h["from"], h["to"]) for h in history] == [
        ("status", "OPEN", "RESOLVED"), ("severity", "HIGH", "LOW")]
    assert "by" not in history[0] and history[1]["by"] == "ana"
    assert history[1]["run_id"] == seeded.run_id and history[0]["at"] <= history[1]["at"]
    # a caller that writes the history itself (the workflow) is left to say it
    own = [*history, {"at": 1, "event": "reopened"}]
    client.update_issue(issue_id=iid, status="OPEN", metadata={"history": own})
    assert client.get_issue(iid).metadata["history"] == own
