"""The cache notices new traces and new assessments, and reuses what it already loaded."""

from __future__ import annotations

from analytics.conftest import log_agent_traces, log_feedback

from analytics.conftest import census_of, sql_of

from insights.analytics import AnalyticsSession


def test_refresh_sees_new_traces_and_feedback(fresh_store, cache_dir):
    uri, exp = fresh_store
    ids = log_agent_traces(exp, 0, 10)
    count = "SELECT count(*), count(*) FILTER (WHERE state = 'ERROR') FROM traces"
    spans = "SELECT count(*) FROM traces WHERE size(filter(spans, s -> s.status_code = 'ERROR')) > 0"
    assert sql_of(uri, exp, count).rows == [[10, 1]]
    assert sql_of(uri, exp, spans).rows == [[3]]
    assert len(list(cache_dir.glob("*.duckdb"))) == 1

    more = log_agent_traces(exp, 10, 10)
    assert sql_of(uri, exp, count).rows == [[20, 2]]
    assert sql_of(uri, exp, spans).rows == [[6]]
    assert census_of(uri, exp)["total_traces"] == 20

    log_feedback(ids + more)
    r = sql_of(uri, exp, "SELECT count(*) FROM traces WHERE size(assessments) > 0")
    assert r.rows == [[8]]
    assert census_of(uri, exp)["assessments"][0]["failing"] == 2


def test_unchanged_store_loads_nothing(fresh_store):
    uri, exp = fresh_store
    log_agent_traces(exp, 0, 5)
    sql_of(uri, exp, "SELECT count(*) FROM traces WHERE size(spans) > 0")  # span lists
    sql_of(uri, exp, "SELECT count(*) FROM traces WHERE exists(spans, s -> s.inputs IS NULL)")
    steps: list[str] = []
    with AnalyticsSession(uri, exp, progress=steps.append) as table:
        table.ensure_span_lists()
        table.ensure_full()
    assert steps == []  # fingerprint matched: no load, no rebuild


def test_server_refresh(server_uri, server_experiment_id):
    exp = server_experiment_id
    log_agent_traces(exp, 0, 5)
    assert sql_of(server_uri, exp, "SELECT count(*) FROM traces").rows == [[5]]
    log_agent_traces(exp, 5, 5)
    r = sql_of(server_uri, exp, "SELECT count(*), sum(size(spans)) FROM traces")
    assert r.rows == [[10, 30]]
