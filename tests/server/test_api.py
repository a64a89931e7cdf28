"""The Agentic REST API over a real SQLite store with real traces: every endpoint's success
shape, error shapes (400 / 404 / 503), and that writes land in MLflow (read back with the SDK)."""

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

    def post(path: str, body=None, status: int = 200, **kw):
        res = client.post(API_PREFIX + path, json=body, **kw) if not kw else \
            client.post(API_PREFIX + path, **kw)
        assert res.status_code == status, res.text
        return res.json()

    post.client = client
    return post


def assert_error(body: dict, code: str, fragment: str) -> None:
    assert body["error_code"] == code
    assert body["error"] == {"code": code, "message": body["message"]}
    assert fragment.lower() in body["message"].lower(), body["message"]


# ---------------------------------------------------------------------- reads


def test_analyses_list_and_get(api, seeded):
    out = api("analyses/list", {"experiment_id": seeded.experiment_id})
    [a] = out["analyses"]
    assert a["run_id"] == seeded.run_id and a["run_name"] == "error-sweep"
    assert a["name"] == "Production error analysis" and a["status"] == "ACTIVE"
    assert a["hypothesis_count"] == 1 and a["validated_count"] == 0
    assert a["created_at"] > 0 and a["updated_at"] >= a["created_at"]
    got = api("analyses/get", {"insights_run_id": seeded.run_id})["analysis"]
    assert got["description"] == "Why do lookups time out?" and got["hypothesis_count"] == 1


def test_experiment_id_may_be_a_number(api, seeded):
    out = api("analyses/list", {"experiment_id": int(seeded.experiment_id)})
    assert len(out["analyses"]) == 1


def test_hypotheses_list_get_preview(api, seeded):
    [h] = api("hypotheses/list", {"insights_run_id": seeded.run_id})["hypotheses"]
    assert h["hypothesis_id"] == seeded.hypothesis_id
    assert (h["trace_count"], h["evidence_count"], h["supports_count"], h["refutes_count"]) == (2, 2, 1, 1)
    assert h["testing_plan"] == "Compare failing traces" and h["status"] == "TESTING"
    got = api("hypotheses/get", {"insights_run_id": seeded.run_id,
                                 "hypothesis_id": seeded.hypothesis_id})["hypothesis"]
    assert got == h
    prev = api("hypotheses/preview", {"insights_run_id": seeded.run_id, "max_traces": 1})
    assert prev["total_count"] == 2 and prev["returned_count"] == 1
    [t] = prev["traces"]
    assert t["trace_id"] == seeded.trace_ids[2] and t["status"] == "ERROR"
    assert t["evidence_rationale"] == "lookup timed out" and t["timestamp"] > 0
    assert t["execution_time_ms"] >= 0 and t["request_id"]
    nxt = api("hypotheses/preview", {"insights_run_id": seeded.run_id, "max_traces": 1,
                                     "page_token": prev["next_page_token"]})
    assert [x["trace_id"] for x in nxt["traces"]] == [seeded.trace_ids[0]]
    assert nxt["next_page_token"] is None and nxt["traces"][0]["status"] == "OK"


def test_issues_list_sorted_by_trace_count(api, seeded):
    out = api("issues/list", {"experiment_id": seeded.experiment_id})
    titles = [i["title"] for i in out["issues"]]
    assert titles == ["Lookup timeouts", "Slow first token", "Empty answers"]
    assert [i["trace_count"] for i in out["issues"]] == [4, 2, 1]
    first = out["issues"][0]
    assert first["source_run_id"] == seeded.run_id and first["source_run_name"] == "error-sweep"
    assert first["created_at"] > 0 and first["severity"] == "HIGH" and first["status"] == "OPEN"
    assert out["total_count"] == 3


def test_issues_list_sort_filter_page(api, seeded):
    exp = seeded.experiment_id
    sev = api("issues/list", {"experiment_id": exp, "sort_by": "severity"})["issues"]
    assert [i["severity"] for i in sev] == ["CRITICAL", "HIGH", "LOW"]
    asc = api("issues/list", {"experiment_id": exp, "sort_by": "trace_count", "order": "asc"})
    assert [i["trace_count"] for i in asc["issues"]] == [1, 2, 4]
    only = api("issues/list", {"experiment_id": exp, "severity": ["low", "CRITICAL"]})
    assert {i["title"] for i in only["issues"]} == {"Empty answers", "Slow first token"}
    assert only["matching_count"] == 2 and only["total_count"] == 3
    none = api("issues/list", {"experiment_id": exp, "status": ["RESOLVED"]})
    assert none["issues"] == []
    later = api("issues/list", {"experiment_id": exp, "created_after": 4102444800000})
    assert later["issues"] == []
    p1 = api("issues/list", {"experiment_id": exp, "max_results": 2})
    assert len(p1["issues"]) == 2 and p1["next_page_token"] == "2"
    p2 = api("issues/list", {"experiment_id": exp, "max_results": 2, "page_token": "2"})
    assert [i["title"] for i in p2["issues"]] == ["Empty answers"] and p2["next_page_token"] is None


def test_issue_get_with_and_without_experiment(api, seeded):
    iid = seeded.issue_ids[0]
    a = api("issues/get", {"issue_id": iid})["issue"]
    b = api("issues/get", {"issue_id": iid, "experiment_id": seeded.experiment_id})["issue"]
    assert a == b and a["title"] == "Lookup timeouts" and a["trace_count"] == 4
    assert a["evidence"][0]["rationale"].startswith("Lookup timeouts in")


def test_issues_preview_all_and_one(api, seeded):
    allp = api("issues/preview", {"experiment_id": seeded.experiment_id, "max_traces": 100})
    assert allp["total_count"] == 6 and allp["returned_count"] == 6
    one = api("issues/preview", {"issue_id": seeded.issue_ids[1]})
    assert [t["trace_id"] for t in one["traces"]] == [seeded.trace_ids[0]]
    assert one["traces"][0]["evidence_rationale"].startswith("Empty answers")


def test_trace_span_tree(api, seeded):
    out = api("traces/get", {"trace_id": seeded.trace_ids[2], "max_value_chars": 20})
    assert out["span_count"] == 2 and out["experiment_id"] == seeded.experiment_id
    root, tool = out["spans"]
    assert (root["name"], root["depth"], root["parent_id"]) == ("agent", 0, None)
    assert (tool["name"], tool["depth"], tool["span_type"]) == ("lookup", 1, "TOOL")
    assert tool["parent_id"] == root["span_id"] and tool["status"] == "ERROR"
    assert tool["exceptions"] and "timed out" in tool["exceptions"][0]
    assert root["duration_ms"] >= tool["duration_ms"] >= 0
    ok = api("traces/get", {"trace_id": seeded.trace_ids[0], "max_value_chars": 20})
    assert "more chars" in ok["spans"][1]["outputs"]  # truncated


def test_experiments_and_config(api, seeded):
    ids = [e["experiment_id"] for e in api("experiments/list", {})["experiments"]]
    assert seeded.experiment_id in ids
    cfg = api.client.get(API_PREFIX + "config").json()
    assert cfg["mlflow_ui_url"] == "http://mlflow.example:5000"


def test_openapi_document_describes_every_endpoint(api):
    doc = api.client.get(API_PREFIX + "openapi.json").json()
    paths = doc["paths"]
    for p in ["analyses/list", "analyses/get", "analyses/update", "analyses/export",
              "hypotheses/list", "hypotheses/get", "hypotheses/preview", "hypotheses/create",
              "hypotheses/update", "hypotheses/add-evidence", "hypotheses/create-issue",
              "issues/list", "issues/get", "issues/preview", "issues/update",
              "issues/add-evidence", "issues/log-assessments", "issues/export",
              "traces/get", "experiments/list"]:
        op = paths[API_PREFIX + p]["post"]
        assert "requestBody" in op and {"200", "400", "404", "503"} <= set(op["responses"]), p
    assert "ErrorResponse" in doc["components"]["schemas"]


# ---------------------------------------------------------------------- writes land in MLflow


def test_update_issue_status_severity_resolution(api, seeded):
    iid = seeded.issue_ids[0]
    out = api("issues/update", {"issue_id": iid, "status": "resolved", "severity": "LOW",
                                "resolution": "Raised the lookup timeout"})["issue"]
    assert out["status"] == "RESOLVED" and out["severity"] == "LOW"
    stored = InsightsClient(seeded.uri).get_issue(iid)
    assert stored.status.value == "RESOLVED" and stored.severity.value == "LOW"
    assert stored.resolution == "Raised the lookup timeout"


def test_add_evidence_to_issue_and_hypothesis(api, seeded):
    iid = seeded.issue_ids[1]
    api("issues/add-evidence", {"issue_id": iid, "experiment_id": seeded.experiment_id,
                                "evidence": [{"trace_id": seeded.trace_ids[4], "rationale": "also empty"}]})
    sdk = InsightsClient(seeded.uri)
    assert seeded.trace_ids[4] in sdk.get_issue(iid).trace_ids
    api("hypotheses/add-evidence", {
        "insights_run_id": seeded.run_id, "hypothesis_id": seeded.hypothesis_id,
        "evidence": [{"trace_id": seeded.trace_ids[5], "rationale": "timeout", "supports": True},
                     {"trace_id": seeded.trace_ids[1], "rationale": "fine", "supports": False}]})
    h = sdk.get_hypothesis(seeded.run_id, seeded.hypothesis_id)
    assert h.supports_count == 2 and h.refutes_count == 2
    linked = set(sdk.linked_trace_ids(seeded.run_id))
    assert {seeded.trace_ids[4], seeded.trace_ids[5]} <= linked


def test_hypothesis_status_create_and_issue_from_hypothesis(api, seeded):
    sdk = InsightsClient(seeded.uri)
    api("hypotheses/update", {"insights_run_id": seeded.run_id, "hypothesis_id": seeded.hypothesis_id,
                              "status": "VALIDATED", "rationale": "4 of 4 slow traces time out"})
    h = sdk.get_hypothesis(seeded.run_id, seeded.hypothesis_id)
    assert h.status.value == "VALIDATED" and h.rationale == "4 of 4 slow traces time out"
    issue = api("hypotheses/create-issue", {"insights_run_id": seeded.run_id,
                                            "hypothesis_id": seeded.hypothesis_id,
                                            "severity": "high"})["issue"]
    stored = sdk.get_issue(issue["issue_id"], seeded.experiment_id)
    assert stored.hypothesis_id == seeded.hypothesis_id and stored.severity.value == "HIGH"
    assert stored.trace_ids == [seeded.trace_ids[2]]  # supporting evidence only
    new = api("hypotheses/create", {"insights_run_id": seeded.run_id, "statement": "Cold cache",
                                    "testing_plan": "first request of the day"})["hypothesis"]
    assert sdk.get_hypothesis(seeded.run_id, new["hypothesis_id"]).statement == "Cold cache"


def test_archive_and_reopen_analysis(api, seeded):
    sdk = InsightsClient(seeded.uri)
    out = api("analyses/update", {"insights_run_id": seeded.run_id, "status": "archived"})
    assert out["analysis"]["status"] == "ARCHIVED"
    assert sdk.get_analysis(seeded.run_id).status.value == "ARCHIVED"
    assert sdk.list_analyses(seeded.experiment_id)[0].status.value == "ARCHIVED"
    api("analyses/update", {"insights_run_id": seeded.run_id, "status": "ACTIVE"})
    assert sdk.get_analysis(seeded.run_id).status.value == "ACTIVE"


def test_log_assessments_on_every_trace(api, seeded):
    from mlflow import MlflowClient

    iid = seeded.issue_ids[0]
    out = api("issues/log-assessments", {"issue_id": iid})
    assert out["logged_count"] == 4 and out["failed"] == [] and not out["already_logged"]
    name = out["assessment_name"]
    assert name == "insights_issue_lookup_timeouts"
    issue = InsightsClient(seeded.uri).get_issue(iid)
    assert name in issue.assessments and issue.metadata["assessments_logged"] is True
    for tid in seeded.trace_ids[2:6]:
        trace = MlflowClient(seeded.uri).get_trace(tid)
        found = [a for a in trace.info.assessments if a.name == name]
        assert found and found[0].metadata["insights.issue_id"] == iid
    again = api("issues/log-assessments", {"issue_id": iid})
    assert again["already_logged"] and again["logged_count"] == 0


def test_exports(api, seeded):
    md = api("issues/export", {"issue_id": seeded.issue_ids[0]})
    assert md["markdown"].startswith("# Lookup timeouts")
    assert "**Severity:** HIGH" in md["markdown"]
    assert (f"http://mlflow.example:5000/#/experiments/{seeded.experiment_id}/traces?"
            f"selectedEvaluationId={seeded.trace_ids[2]}") in md["markdown"]
    assert md["filename"] == "issue-lookup-timeouts.md"
    jira = api("issues/export", {"issue_id": seeded.issue_ids[0], "format": "jira"})
    assert jira["markdown"].startswith("h1. Lookup timeouts")
    rep = api("analyses/export", {"insights_run_id": seeded.run_id})["markdown"]
    assert rep.startswith("# Production error analysis")
    assert "Lookup timeouts cause failed answers" in rep and "| HIGH | OPEN | 4 | Lookup timeouts |" in rep


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize("path,body,fragment", [
    ("issues/list", {}, "missing required field 'experiment_id'"),
    ("issues/list", [1, 2], "must be a json object"),
    ("issues/list", {"experiment_id": ""}, "experiment_id"),
    ("issues/list", {"experiment_id": "1", "sort_by": "colour"}, "sort_by"),
    ("issues/list", {"experiment_id": "1", "page_token": "abc"}, "page_token"),
    ("issues/update", {"issue_id": "x", "status": "DONE"}, "'OPEN', 'IN_PROGRESS'"),
    ("issues/update", {"issue_id": "x", "severity": "urgent"}, "severity"),
    ("issues/update", {"issue_id": "abc"}, "nothing to change"),
    ("issues/get", {"issue_id": "../../etc"}, "invalid issue id"),
    ("hypotheses/update", {"insights_run_id": "r", "hypothesis_id": "h", "status": "MAYBE"}, "status"),
    ("hypotheses/preview", {"insights_run_id": "r", "max_traces": 0}, "max_traces"),
    ("hypotheses/add-evidence", {"insights_run_id": "r", "hypothesis_id": "h", "evidence": []}, "evidence"),
    ("hypotheses/add-evidence", {"insights_run_id": "r", "hypothesis_id": "h",
                                 "evidence": [{"rationale": "no id"}]}, "evidence.0.trace_id"),
    ("analyses/update", {"insights_run_id": "r", "status": "PAUSED"}, "status"),
    ("issues/preview", {}, "experiment_id"),
    ("issues/export", {"issue_id": "x", "format": "pdf"}, "format"),
])
def test_bad_bodies_are_400(api, path, body, fragment):
    assert_error(api(path, body, status=400), "INVALID_PARAMETER_VALUE", fragment)


def test_malformed_json_is_400(api):
    out = api("issues/list", status=400, content=b'{"experiment_id": ',
              headers={"content-type": "application/json"})
    assert_error(out, "INVALID_PARAMETER_VALUE", "malformed json")
    out = api("analyses/list", status=400, content=b"")
    assert_error(out, "INVALID_PARAMETER_VALUE", "json object")


def test_unknown_ids_are_404(api, seeded):
    missing = "0123456789abcdef0123456789abcdef"
    cases = [
        ("analyses/list", {"experiment_id": "987654"}),
        ("analyses/get", {"insights_run_id": missing}),
        ("hypotheses/list", {"insights_run_id": missing}),
        ("hypotheses/get", {"insights_run_id": seeded.run_id, "hypothesis_id": missing}),
        ("issues/get", {"issue_id": missing}),
        ("issues/get", {"issue_id": seeded.issue_ids[0], "experiment_id": "987654"}),
        ("issues/update", {"issue_id": missing, "status": "OPEN"}),
        ("issues/log-assessments", {"issue_id": missing}),
        ("traces/get", {"trace_id": "tr-" + missing}),
    ]
    for path, body in cases:
        out = api(path, body, status=404)
        assert_error(out, "RESOURCE_NOT_FOUND", "")
        assert out["message"], path


def test_not_an_analysis_run_is_400(api, seeded):
    from mlflow import MlflowClient

    run = MlflowClient(seeded.uri).create_run(seeded.experiment_id)
    out = api("analyses/get", {"insights_run_id": run.info.run_id}, status=400)
    assert_error(out, "INVALID_PARAMETER_VALUE", "not an insights analysis run")


def test_unreachable_tracking_server_is_503(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = TestClient(create_app("http://127.0.0.1:9"))
    res = client.post(API_PREFIX + "issues/list", json={"experiment_id": "1"})
    assert res.status_code == 503, res.text
    assert res.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"


def test_ui_is_served(api):
    res = api.client.get("/insights/")
    assert res.status_code == 200 and "MLflow Insights" in res.text
    for asset in ("app.js", "app.css"):
        assert api.client.get(f"/insights/{asset}").status_code == 200
    assert api.client.get("/", follow_redirects=False).headers["location"] == "/insights/"
