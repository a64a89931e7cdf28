"""The typed census: stored censuses of earlier versions load and dump back unchanged, the
census sections are defined once, and census and analyst agree on failing assessments."""

from __future__ import annotations

import copy
import json

import mlflow
from analytics.conftest import log_agent_traces
from mlflow.entities import AssessmentSource

from agent.frame import TraceFrame
from insights import InsightsClient
from insights.analytics import AnalyticsSession, Census, compute_census, execute_sql
from insights.analytics.assessments import FAILING_VALUES, is_failing
from insights.analytics.sections import SECTIONS

_SPAN = {"name": "search", "span_type": "TOOL", "count": 20, "error_count": 4, "error_rate": 0.2,
         "traces_with_error": 4, "p50_ms": 0.12, "p95_ms": 0.3, "max_ms": 1,
         "sample_trace_ids": ["tr-1", "tr-2"]}
# A census as an earlier version stored it (exact path, with the run context).
OLD_EXACT = {
    "total_traces": 20, "error_traces": 2, "error_rate": 0.1,
    "time_range": {"start_ms": 1700000000000, "end_ms": 1700000100000},
    "latency_ms": {"all": {"p50": 12.5, "p90": 20, "p95": 30.1, "p99": 40, "max": 41},
                   "ok": {"p50": 11, "p90": 19, "p95": 29, "p99": 39, "max": 40}},
    "spans": [_SPAN],
    "errors": [{"message": "ValueError: search down", "count": 4, "traces": 4,
                "span_names": ["search"], "sample_trace_ids": ["tr-1"]}],
    "tools": [{"name": "search", "calls": 20, "failures": 4, "failure_rate": 0.2, "p50_ms": 0.12,
               "p95_ms": 0.3, "sample_trace_ids": ["tr-1", "tr-2"]}],
    "responses": {
        "request_length": {"p25": 10, "p50": 12, "p90": 100.5, "p95": 110, "p99": 120,
                           "max": 121, "mean": 40.25},
        "response_length": {"p25": None, "p50": None, "p90": None, "p95": None, "p99": None,
                            "max": None, "mean": None},
        "empty_responses": {"count": 2, "sample_trace_ids": ["tr-7"],
                            "definition": "OK traces whose root span output is missing or "
                                          "empty ('', \"\", null, {}, [])"}},
    "tokens": {"traces_with_tokens": 20, "total_tokens": 300, "input_tokens": 200,
               "output_tokens": 100, "per_trace": {"mean": 15.0, "p50": 15.0, "p95": 15.0,
                                                   "max": 15}, "sample_trace_ids": ["tr-1"]},
    "cost": None,
    "assessments": [{"name": "correctness", "count": 8, "traces": 8,
                     "values": {"true": 6, "false": 2}, "failing": 2, "failing_rate": 0.25,
                     "sample_trace_ids": ["tr-0", "tr-4"]}],
    "time_buckets": {"granularity": "hour", "buckets": [
        {"start_ms": 1699999200000, "traces": 20, "errors": 2, "error_rate": 0.1,
         "sample_trace_ids": ["tr-3"]}]},
    "method": "exact",
    "experiment_id": "1", "run_id": "abc", "computed_at": 1700000200000,
    "filter_string": None, "start_time_ms": None, "end_time_ms": None,
}


def _old_server() -> dict:
    """The same census as the server path stored it: scaled counts keep the sample's own."""
    c = copy.deepcopy(OLD_EXACT)
    c["method"] = "server aggregates + sample"
    c["errors"][0].update(count=8, traces=8, sample_count=4)
    c["responses"]["empty_responses"].update(count=4, sample_count=2)
    c["cost"] = {"traces_with_cost": 20, "total_cost": 0.5,
                 "per_trace": {"p50": 0.02, "p95": 0.04, "max": 0.05}, "sample_trace_ids": []}
    c["sample"] = {"traces": 10, "of": 20, "scale": 2.0, "sections": ["errors", "responses"],
                   "how": "each time bucket gives its share of the sample"}
    c["some_future_key"] = {"kept": True}
    for key in ("experiment_id", "run_id", "computed_at", "filter_string", "start_time_ms",
                "end_time_ms"):
        del c[key]
    return c


def test_old_stored_censuses_load_and_dump_back_unchanged():
    for old in (OLD_EXACT, _old_server()):
        census = Census.model_validate_json(json.dumps(old))
        assert census.model_dump(mode="json") == old
        assert json.dumps(census.model_dump(mode="json")) == json.dumps(old)  # same text, too
    census = Census.model_validate(_old_server())
    assert census.sample.scale == 2.0 and census.errors[0].sample_count == 4
    assert census.spans[0].traces_with_error == 4 and census.cost.total_cost == 0.5
    assert "sample_count" not in Census.model_validate(OLD_EXACT).model_dump()["errors"][0]


def test_sections_fill_exactly_the_census_fields():
    keys = [k for s in SECTIONS for k in s.keys]
    assert len(keys) == len(set(keys))  # each key has one definition
    context = {"method", "sample", "experiment_id", "run_id", "computed_at", "filter_string",
               "start_time_ms", "end_time_ms"}
    assert set(keys) == set(Census.model_fields) - context


def test_census_is_typed_and_stored_as_its_json(fresh_store):
    uri, exp = fresh_store
    log_agent_traces(exp, 0, 6)
    with InsightsClient(uri) as client:
        run_id = client.create_analysis(exp, run_name="census-model")
        made = client.create_baseline_census(run_id)
        assert isinstance(made, Census) and made.total_traces == 6 and made.run_id == run_id
        stored = client.get_baseline_census(run_id)
        assert isinstance(stored, Census) and stored == made
        raw = mlflow.MlflowClient(uri).download_artifacts(run_id, "insights/baseline_census.json")
        with open(raw) as f:
            assert json.load(f) == made.model_dump(mode="json")
        with AnalyticsSession(uri, exp) as session:
            plain = compute_census(session).model_dump(mode="json")
        assert "sample" not in plain and "run_id" not in plain and plain["method"] == "exact"


def test_census_and_analyst_agree_on_failing_values(fresh_store):
    uri, exp = fresh_store
    ids = log_agent_traces(exp, 0, 16)
    values = [*FAILING_VALUES, " No ", "FALSE", "true", "yes", "pass", "0.9", 1, True, False]
    for tid, value in zip(ids, values):
        mlflow.log_feedback(trace_id=tid, name="verdict", value=value,
                            source=AssessmentSource("HUMAN", "tester"))
    with AnalyticsSession(uri, exp) as session:
        census = compute_census(session)
        frame = TraceFrame.load(lambda sql: execute_sql(session, sql))
    (verdict,) = census.assessments
    by_frame = sum("verdict" in f for f in frame.failing)
    expected = sum(is_failing(v if isinstance(v, str) else json.dumps(v))
                   for v in values[:len(ids)])
    assert verdict.failing == by_frame == expected
    assert expected >= len(FAILING_VALUES)  # every listed value (and ' No ', 'FALSE') fails
