"""The demo app's ground truth must hold in the traces as MLflow stores them."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Trace

from agent.demo_app import (
    EMPTY_RESPONSES, FAILING_ASSESSMENT, HARMLESS, SLOW_LONG_INPUTS, TOOL_OUTAGE, DemoCorpus,
    build_demo_corpus,
)
from agent.demo_app.corpus import EXPORT_TUNING
from helpers.fixtures import copy_template
from helpers.insights_helpers import all_traces
from insights import compat

START = datetime(2025, 3, 1, tzinfo=timezone.utc)
N = 120


def test_ground_truth_holds_in_stored_traces(tracking_uri: str) -> None:
    """One build (building is the slow part), then every fault checked on the stored traces."""
    built = _build_and_read_back(tracking_uri)
    check_every_trace_is_stored_with_a_real_app_shape(built)
    check_tool_outage_traces_fail_in_a_tool_inside_the_window(built)
    check_slow_traces_are_long_requests_with_a_slow_model_call(built)
    check_empty_responses_are_empty_and_ok(built)
    check_failing_assessment_is_concentrated_on_multi_city_trips(built)
    check_harmless_requests_are_spanish_and_behave_like_the_rest(built)


def _build_and_read_back(tracking_uri: str) -> tuple[DemoCorpus, dict[str, Trace]]:
    """A small corpus in a fresh SQLite store, and its traces read back from the store."""
    corpus = build_demo_corpus(tracking_uri, n_traces=N, seed=7, start=START)
    traces = all_traces(MlflowClient(tracking_uri), corpus.experiment_id, include_spans=True)
    return corpus, {t.info.trace_id: t for t in traces}


def _spans(trace: Trace, span_type: str) -> list:
    return [s for s in trace.data.spans if s.span_type == span_type]


def _root(trace: Trace):
    return next(s for s in trace.data.spans if s.parent_id is None)


def _satisfaction(trace: Trace) -> bool | None:
    values = [a.value for a in trace.info.assessments if a.name == "user_satisfaction"]
    return values[0] if values else None


def check_every_trace_is_stored_with_a_real_app_shape(built) -> None:
    corpus, traces = built
    assert set(traces) == set(corpus.trace_ids) and len(corpus.trace_ids) == N
    for trace in traces.values():
        root = _root(trace)
        assert root.span_type == "AGENT" and root.name == "travel_assistant"
        assert isinstance(root.inputs["request"], str)
        assert corpus.start_ms <= trace.info.request_time < corpus.end_ms + 60_000
        assert trace.info.tags["locale"] in {"en", "es"}
        assert _spans(trace, "CHAT_MODEL"), "every request calls the model"
        if trace.info.state == "OK":
            assert _spans(trace, "TOOL") and trace.info.token_usage["total_tokens"] > 0
    assert {k for k in corpus.descriptions} == {*corpus.faults, HARMLESS}
    assert all(corpus.faults.values()), {k: len(v) for k, v in corpus.faults.items()}


def check_tool_outage_traces_fail_in_a_tool_inside_the_window(built) -> None:
    corpus, traces = built
    lo, hi = (t * 1_000_000 for t in corpus.outage_window_ms)
    for trace_id in corpus.faults[TOOL_OUTAGE]:
        trace = traces[trace_id]
        assert trace.info.state == "ERROR"
        failed = [s for s in _spans(trace, "TOOL") if s.status.status_code == "ERROR"]
        assert len(failed) == 1
        events = [e for e in failed[0].events if e.name == "exception"]
        assert events and "503" in events[0].attributes["exception.message"]
        assert lo <= failed[0].start_time_ns and events[0].timestamp < hi + 60 * 10**9
    outside = [t for i, t in traces.items() if i not in corpus.faults[TOOL_OUTAGE]]
    errors_outside = sum(t.info.state == "ERROR" for t in outside)
    assert errors_outside <= 0.05 * len(outside)


def check_slow_traces_are_long_requests_with_a_slow_model_call(built) -> None:
    corpus, traces = built
    for trace_id in corpus.faults[SLOW_LONG_INPUTS]:
        trace = traces[trace_id]
        assert len(_root(trace).inputs["request"]) > 400
        assert trace.info.execution_duration >= 8_000
        slowest = max((s.end_time_ns - s.start_time_ns for s in _spans(trace, "CHAT_MODEL")))
        assert slowest >= 8 * 10**9
    short = [t for t in traces.values() if len(_root(t).inputs["request"]) <= 400]
    assert all(t.info.execution_duration < 8_000 for t in short)


def check_empty_responses_are_empty_and_ok(built) -> None:
    corpus, traces = built
    for trace_id in corpus.faults[EMPTY_RESPONSES]:
        trace = traces[trace_id]
        assert trace.info.state == "OK"
        assert _root(trace).outputs == ""
        assert corpus.traits[trace_id]["kind"] == "currency"
    others = set(traces) - corpus.faults[EMPTY_RESPONSES]
    assert all(_root(traces[i]).outputs for i in others if traces[i].info.state == "OK")


def check_failing_assessment_is_concentrated_on_multi_city_trips(built) -> None:
    corpus, traces = built
    for trace_id in corpus.faults[FAILING_ASSESSMENT]:
        trace = traces[trace_id]
        assert corpus.traits[trace_id]["multi_city"]
        feedback = [a for a in trace.info.assessments if a.name == "user_satisfaction"]
        assert feedback[0].value is False and feedback[0].source.source_type == "HUMAN"
    rated = {i: v for i, t in traces.items() if (v := _satisfaction(t)) is not None}
    assert len(rated) > 0.5 * N

    def fail_rate(ids: set[str]) -> float:
        votes = [rated[i] for i in ids if i in rated]
        return sum(v is False for v in votes) / len(votes)

    multi = {i for i in traces if corpus.traits[i]["multi_city"]}
    assert fail_rate(multi) > 0.5 > 0.25 > fail_rate(set(traces) - multi)


def check_harmless_requests_are_spanish_and_behave_like_the_rest(built) -> None:
    corpus, traces = built
    assert corpus.harmless == {i for i, t in traces.items() if t.info.tags["locale"] == "es"}
    assert 0.1 * N < len(corpus.harmless) < 0.3 * N

    def error_rate(ids: set[str]) -> float:
        return sum(traces[i].info.state == "ERROR" for i in ids) / len(ids)

    english = set(traces) - corpus.harmless
    assert abs(error_rate(corpus.harmless) - error_rate(english)) < 0.1


def test_caller_state_is_restored_and_seed_fixes_the_corpus(tracking_uri: str, tmp_path) -> None:
    other = copy_template(tmp_path / "other.db")  # a migrated store: skips MLflow's migrations
    env_before = {k: os.environ.get(k) for k in EXPORT_TUNING}
    active_before = mlflow.tracking.fluent._active_experiment_id
    first = build_demo_corpus(other, n_traces=15, seed=3, experiment_name="a", start=START)
    assert mlflow.get_tracking_uri() == tracking_uri
    assert {k: os.environ.get(k) for k in EXPORT_TUNING} == env_before
    assert mlflow.tracking.fluent._active_experiment_id == active_before
    assert len(MlflowClient(other).search_traces(locations=[first.experiment_id])) == 15

    second = build_demo_corpus(other, n_traces=15, seed=3, experiment_name="b", start=START)
    assert second.experiment_id != first.experiment_id
    assert list(first.traits.values()) == list(second.traits.values())


def test_a_caller_pointed_by_the_environment_stays_pointed_there(tmp_path, monkeypatch) -> None:
    mine = f"sqlite:///{tmp_path / 'mine.db'}"
    mlflow.set_tracking_uri(None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mine)
    build_demo_corpus(copy_template(tmp_path / "other.db"), n_traces=5, seed=3, start=START)
    assert compat.tracking_uri_set() is None       # nothing pinned ...
    assert os.environ.get("MLFLOW_TRACKING_URI") == mine  # ... and the variable kept
    assert mlflow.get_tracking_uri() == mine


def test_same_seed_gives_the_same_trace_ids_and_leaves_global_random_alone(tmp_path) -> None:
    import random

    random.seed(1234)
    expected_next = random.Random(1234).random()
    ids = []
    for name in ("one", "two"):
        uri = copy_template(tmp_path / f"{name}.db")  # a migrated store: skips migrations
        ids.append(sorted(build_demo_corpus(uri, n_traces=12, seed=5, experiment_name="x",
                                            start=START).trace_ids))
    assert ids[0] == ids[1]
    assert random.random() == expected_next      # the caller's random stream is untouched
    # A second build into the same experiment gets fresh ids instead of colliding.
    again = build_demo_corpus(f"sqlite:///{tmp_path / 'one.db'}", n_traces=12, seed=5,
                              experiment_name="x", start=START)
    assert not set(again.trace_ids) & set(ids[0])


def test_a_corpus_whose_spans_were_lost_fails_loudly(tmp_path, monkeypatch):
    """Trace infos stored but no spans (an exporter change that drops the span writes) must
    not pass for a corpus."""
    import pytest
    from mlflow.tracing.export import mlflow_v3

    monkeypatch.setattr(mlflow_v3.MlflowV3SpanExporter, "_log_spans",
                        lambda self, *args, **kwargs: None)
    with pytest.raises(RuntimeError, match="stored without their spans"):
        build_demo_corpus(copy_template(tmp_path / "lost.db"), n_traces=10, seed=3, start=START)
