"""Census numbers against a corpus with known counts, on SQLite and on a real server."""

from __future__ import annotations

import json

import mlflow
import pytest

from analytics.conftest import census_of, sql_of
from insights.errors import InvalidInputError, TrackingServerError


def test_census_counts(corpus):
    uri, exp, ids = corpus
    steps: list[str] = []
    c = census_of(uri, exp, progress=steps.append)
    json.dumps(c)  # JSON-able
    assert steps
    assert c["total_traces"] == 20
    assert c["error_traces"] == 2 and c["error_rate"] == 0.1
    assert c["time_range"]["start_ms"] <= c["time_range"]["end_ms"]
    assert set(c["latency_ms"]["all"]) == {"p50", "p90", "p95", "p99", "max"}

    spans = {s["name"]: s for s in c["spans"]}
    assert spans["agent"]["count"] == 20 and spans["agent"]["error_count"] == 2
    assert spans["search"]["span_type"] == "TOOL"
    assert spans["search"]["error_count"] == 4 and spans["search"]["traces_with_error"] == 4
    failed_search = {ids[i] for i in (0, 5, 10, 15)}
    assert set(spans["search"]["sample_trace_ids"][:4]) == failed_search  # errors first
    assert spans["llm"]["error_rate"] == 0.1

    errors = {e["message"]: e for e in c["errors"]}
    assert errors["ValueError: search down"]["count"] == 4
    assert errors["ValueError: search down"]["span_names"] == ["search"]
    assert errors["RuntimeError: llm overloaded"]["traces"] == 2
    assert set(errors["RuntimeError: llm overloaded"]["sample_trace_ids"]) == {ids[3], ids[13]}

    (tool,) = c["tools"]
    assert (tool["name"], tool["calls"], tool["failures"], tool["failure_rate"]) == (
        "search", 20, 4, 0.2)

    assert c["responses"]["empty_responses"]["count"] == 2
    assert set(c["responses"]["empty_responses"]["sample_trace_ids"]) == {ids[7], ids[17]}
    assert c["responses"]["request_length"]["max"] > c["responses"]["request_length"]["p25"]
    assert c["tokens"]["total_tokens"] == 20 * 15
    assert c["cost"] is None

    (corr,) = c["assessments"]
    assert corr["name"] == "correctness" and corr["count"] == 8
    assert corr["values"] == {"true": 6, "false": 2}
    assert corr["failing"] == 2 and set(corr["sample_trace_ids"][:2]) == {ids[0], ids[4]}

    buckets = c["time_buckets"]["buckets"]
    assert c["time_buckets"]["granularity"] == "hour"
    assert sum(b["traces"] for b in buckets) == 20 and sum(b["errors"] for b in buckets) == 2
    assert all(len(b["sample_trace_ids"]) <= 5 for b in buckets)


def test_census_filter_and_time_window(sqlite_corpus):
    uri, exp, ids = sqlite_corpus
    c = census_of(uri, exp, filter_string="trace.status = 'ERROR'")
    assert c["total_traces"] == 2 and c["error_traces"] == 2
    assert {s["name"] for s in c["spans"]} == {"agent", "search", "llm"}
    times = sorted(mlflow.MlflowClient(uri).get_trace(t).info.request_time for t in ids)
    mid = times[10]
    before = sum(t < mid for t in times)
    c = census_of(uri, exp, end_time_ms=mid)  # end is exclusive
    assert c["total_traces"] == before
    c = census_of(uri, exp, start_time_ms=mid)
    assert c["total_traces"] == 20 - before
    c = census_of(uri, exp, start_time_ms=mid, filter_string="trace.status = 'ERROR'")
    assert c["total_traces"] == sum(mlflow.MlflowClient(uri).get_trace(ids[i]).info.request_time
                                    >= mid for i in (3, 13))


def test_census_bad_filter(sqlite_corpus):
    uri, exp, _ = sqlite_corpus
    with pytest.raises(InvalidInputError):
        census_of(uri, exp, filter_string="nonsense ===")


def test_unreachable_stores(tmp_path):
    with pytest.raises(TrackingServerError):
        census_of("http://127.0.0.1:9", "1")
    with pytest.raises(TrackingServerError):
        census_of(f"sqlite:///{tmp_path}/missing.db", "1")


def test_both_sqlite_readers_fill_the_same_cache(sqlite_corpus, monkeypatch, tmp_path):
    """DuckDB's SQLite extension and the Python sqlite3 reader give identical results."""
    import importlib.util

    from insights.analytics import AnalyticsSession

    if importlib.util.find_spec("duckdb_ext") is None:
        pytest.skip("duckdb-ext-sqlite has no wheel for this platform")
    uri, exp, _ = sqlite_corpus
    seen = {}
    for reader in ("python", "duckdb"):
        monkeypatch.setenv("INSIGHTS_CACHE_DIR", str(tmp_path / reader))
        monkeypatch.setenv("INSIGHTS_SQLITE_READER", reader)
        with AnalyticsSession(uri, exp) as table:
            table.ensure_full()
            native = table.source.native
        census = census_of(uri, exp)
        rows = sql_of(uri, exp, "SELECT * FROM traces ORDER BY trace_id").rows
        spans = sql_of(uri, exp, "SELECT trace_id, spans FROM traces ORDER BY 1").rows
        seen[reader] = (native, census, rows, spans)
    assert seen["python"][0] is False and seen["duckdb"][0] is True
    assert seen["python"][1:] == seen["duckdb"][1:]
    assert len(seen["duckdb"][2]) == 20


def test_sqlite_extension_that_will_not_load_falls_back_to_python(sqlite_corpus, monkeypatch):
    import duckdb

    from insights.analytics import AnalyticsSession, sqlite_source

    def broken(con):
        raise duckdb.IOException("extension not found")

    monkeypatch.setattr(sqlite_source, "_load_sqlite_extension", broken)
    monkeypatch.setenv("INSIGHTS_SQLITE_READER", "duckdb")  # small stores never load it anyway
    uri, exp, ids = sqlite_corpus
    c = census_of(uri, exp)
    assert c["total_traces"] == 20 and c["error_traces"] == 2
    assert sql_of(uri, exp, "SELECT count(*) FROM traces WHERE size(spans) = 3").rows == [[20]]
    with AnalyticsSession(uri, exp) as table:
        assert table.source.native is False
