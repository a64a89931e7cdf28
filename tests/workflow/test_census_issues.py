"""Issues the census proves by itself, on a real SQLite store: a span failing for two reasons
gives one issue per error type (with how many of its traces ended in ERROR), a failing
assessment is an issue by itself, the root span never is, and the trace error rate counts
trace states only."""

from __future__ import annotations

import os

import mlflow
import pytest
from mlflow.entities import AssessmentSource, SpanType

from agent.census_issues import census_issues
from agent.toolkit import TraceToolkit
from helpers.fixtures import copy_template
from helpers.insights_helpers import trace_calls
from insights import InsightsClient
from insights.analytics import AnalyticsSession, compute_census
from insights.analytics.errors import error_type_sql

N = 60


class AuthError(Exception):
    pass


@mlflow.trace(name="send_invoice", span_type=SpanType.TOOL)
def send_invoice(i: int) -> str:
    if i % 5 == 0:
        raise AuthError("401 Unauthorized")
    if i % 5 == 1:
        raise TimeoutError("upstream timed out after 30s")
    return "sent"


@mlflow.trace(name="rerank", span_type=SpanType.RERANKER)
def rerank(i: int) -> list:
    if i % 10 == 2:
        raise ValueError("scores missing")
    return [1, 2]


@mlflow.trace(name="billing_agent", span_type=SpanType.AGENT)
def app(i: int) -> str:
    try:
        rerank(i)
    except ValueError:
        pass  # recovered: the trace ends OK
    try:
        return send_invoice(i)
    except TimeoutError:
        return "queued for retry"  # recovered; AuthError ends the trace in ERROR


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The corpus, its census and the census issues, built once for the module. Read only."""
    folder = tmp_path_factory.mktemp("census-issues")
    tracking_uri = copy_template(folder / "mlflow.db")
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "INSIGHTS_CACHE_DIR")}
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    os.environ["INSIGHTS_CACHE_DIR"] = str(folder / "cache")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield from _build(tracking_uri, folder)
    finally:
        mlflow.set_tracking_uri(None)
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _build(tracking_uri, folder):
    exp = mlflow.create_experiment("census-issues",
                                   artifact_location=(folder / "artifacts").as_uri())
    ids = trace_calls(tracking_uri, exp, app, N, ending_in_error=AuthError)
    human = AssessmentSource("HUMAN", "reviewer")
    for i, tid in enumerate(ids[:50]):  # correctness fails on 17 of 50 (34%)
        why = "invoice total is wrong" if i % 2 == 0 else "wrong customer"
        mlflow.log_feedback(trace_id=tid, name="correctness", value=i % 3 != 0,
                            rationale=why if i % 3 == 0 else "fine", source=human)
        mlflow.log_feedback(trace_id=tid, name="tone", value=["formal", "casual"][i % 2],
                            source=human)
    with InsightsClient(tracking_uri) as client:
        with AnalyticsSession(tracking_uri, exp) as session:
            census = compute_census(session)
        drafts = census_issues(census, TraceToolkit(client, exp))
        yield census, {d.key: d for d in drafts}, ids, TraceToolkit(client, exp)


def _ids(toolkit, where: str) -> set[str]:
    return {r[0] for r in toolkit.sql(f"SELECT trace_id FROM traces WHERE {where}").rows}


def test_span_failing_for_two_reasons_gives_one_issue_per_error_type(store):
    census, drafts, ids, toolkit = store
    auth = drafts["census:span_failures:send_invoice:AuthError"]
    timeout = drafts["census:span_failures:send_invoice:TimeoutError"]
    assert "census:span_failures:send_invoice" not in drafts
    assert auth.title == ("Tool 'send_invoice' fails with AuthError (401 Unauthorized): "
                          "12 of 60 calls, 12 traces")
    assert timeout.title.startswith("Tool 'send_invoice' fails with TimeoutError (upstream")
    assert "12 of those 12 traces ended in ERROR, 0 recovered" in auth.description
    assert "0 of those 12 traces ended in ERROR, 12 recovered" in timeout.description
    assert error_type_sql("s") in auth.where
    assert _ids(toolkit, auth.where) == {ids[i] for i in range(N) if i % 5 == 0}
    assert _ids(toolkit, timeout.where) == {ids[i] for i in range(N) if i % 5 == 1}
    for draft in (auth, timeout):
        cited = {e.trace_id for e in draft.evidence}
        assert cited and cited <= _ids(toolkit, draft.where)
    assert all("401 Unauthorized" in e.rationale and "ERROR" in e.rationale
               for e in auth.evidence)


def test_any_span_type_counts_but_never_the_root_span(store):
    census, drafts, ids, toolkit = store
    rerank = drafts["census:span_failures:rerank:ValueError"]
    assert rerank.title.startswith("Reranker 'rerank' fails with ValueError (scores missing)")
    assert "0 of those 6 traces ended in ERROR, 6 recovered" in rerank.description
    assert not [k for k in drafts if "billing_agent" in k]  # the root span fails in 12 traces
    spans = {s.name: s for s in census.spans}
    assert spans["billing_agent"].root_count == N and spans["billing_agent"].error_count == 12


def test_census_error_types_agree_with_the_error_type_definition(store):
    census, _, _, toolkit = store
    by_sql = {(n, t): c for n, t, c in toolkit.sql(
        f"SELECT s.name, {error_type_sql('s')}, count(*) FROM traces "
        "LATERAL VIEW explode(spans) x AS s WHERE s.status_code = 'ERROR' GROUP BY 1, 2").rows}
    by_census = {(s.name, e.type): e.count for s in census.spans for e in s.error_types}
    assert by_census == by_sql
    errors = {e.error_type: e for e in census.errors}
    assert errors["AuthError"].failed_traces == 12 and errors["TimeoutError"].failed_traces == 0


def test_error_rate_counts_trace_states_not_recovered_span_errors(store):
    census, drafts, ids, toolkit = store
    assert (census.error_traces, census.error_rate) == (12, 0.2)  # 30 traces had a span error
    issue = drafts["census:error_rate"]
    assert issue.title == "20% of traces end in an error"
    assert "12 of 60 traces" in issue.description
    assert "Most frequent error in failed traces: AuthError: 401 Unauthorized" in issue.description
    failed = {ids[i] for i in range(N) if i % 5 == 0}
    assert _ids(toolkit, issue.where) == failed
    assert {e.trace_id for e in issue.evidence} <= failed


def test_failing_assessment_is_an_issue_by_itself(store):
    census, drafts, ids, toolkit = store
    issue = drafts["census:assessment:correctness"]
    assert issue.title == "'correctness' assessment fails on 34% of assessed traces (17 of 50)"
    assert '"invoice total is wrong" (9x)' in issue.description
    assert '"wrong customer" (8x)' in issue.description
    assert issue.severity == "MEDIUM"
    failing = {ids[i] for i in range(50) if i % 3 == 0}
    assert _ids(toolkit, issue.where) == failing
    assert issue.evidence and {e.trace_id for e in issue.evidence} <= failing
    assert {e.rationale for e in issue.evidence} <= {"invoice total is wrong", "wrong customer"}
    assert "census:assessment:tone" not in drafts  # categorical without a failing value
    (tone,) = [a for a in census.assessments if a.name == "tone"]
    assert tone.failing == 0 and tone.values == {"formal": 25, "casual": 25}
