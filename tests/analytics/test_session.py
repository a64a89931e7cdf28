"""One analytics session per experiment: one connection reused, refreshed, sandboxed, closable,
shared by threads, and usable when another process holds the cache file."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pytest
from analytics.conftest import log_agent_traces, log_feedback

from insights import InsightsClient
from insights.analytics import AnalyticsSession, cohort_stats, compute_census, execute_sql
from insights.errors import InvalidInputError

COUNT = "SELECT count(*), count(*) FILTER (WHERE state = 'ERROR') FROM traces"


def test_one_connection_serves_every_call_and_sees_new_traces(fresh_store, cache_dir):
    uri, exp = fresh_store
    ids = log_agent_traces(exp, 0, 10)
    with AnalyticsSession(uri, exp) as session:
        assert execute_sql(session, COUNT).rows == [[10, 1]]
        con = session.con
        assert compute_census(session).total_traces == 10
        more = log_agent_traces(exp, 10, 10)  # the store moves on: the next call notices
        assert execute_sql(session, COUNT).rows == [[20, 2]]
        log_feedback(ids + more)
        census = compute_census(session)
        assert census.total_traces == 20 and census.assessments[0].failing == 2
        r = cohort_stats(session, "length(request) > 100", "length(request) <= 100",
                         "state = 'ERROR'", samples=1)
        assert r["cohort"]["n"] + r["control"]["n"] == 20
        assert len(r["cohort"]["sample_nonevent_trace_ids"]) == 1  # samples is bound, not text
        assert session.con is con  # never reconnected
    assert session.closed
    assert len(list(cache_dir.glob("*.duckdb"))) == 1


def test_unchanged_store_costs_only_a_fingerprint(fresh_store):
    uri, exp = fresh_store
    log_agent_traces(exp, 0, 5)
    steps: list[str] = []
    with AnalyticsSession(uri, exp, progress=steps.append) as session:
        execute_sql(session, "SELECT count(*) FROM traces")
        assert any("loading" in s for s in steps)
        steps.clear()
        for _ in range(3):
            session.refresh()
            compute_census(session)
        assert steps == []


def test_connection_is_sandboxed_and_refresh_still_reads_the_store(fresh_store, tmp_path):
    uri, exp = fresh_store
    log_agent_traces(exp, 0, 3)
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    with AnalyticsSession(uri, exp) as session:
        execute_sql(session, COUNT)
        with pytest.raises(duckdb.Error, match="disabled"):
            session.con.execute(f"SELECT * FROM read_csv('{secret}')").fetchall()
        with pytest.raises(duckdb.Error, match="while database is running"):
            session.con.execute("SET enable_external_access = true")
        log_agent_traces(exp, 3, 3)
        assert execute_sql(session, COUNT).rows[0][0] == 6


def test_closed_session_refuses_work(fresh_store):
    uri, exp = fresh_store
    log_agent_traces(exp, 0, 2)
    session = AnalyticsSession(uri, exp)
    execute_sql(session, COUNT)
    session.close()
    session.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        execute_sql(session, COUNT)


def test_threads_share_one_session(fresh_store):
    uri, exp = fresh_store
    log_agent_traces(exp, 0, 10)
    queries = [COUNT, "SELECT count(*) FROM traces WHERE size(spans) = 3",
               "SELECT count(*) FROM traces WHERE exists(spans, s -> s.inputs IS NOT NULL)"]
    with AnalyticsSession(uri, exp) as session:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda q: execute_sql(session, q).rows,
                                    queries * 4))
            censuses = list(pool.map(lambda _: compute_census(session).total_traces, range(4)))
    assert results == [[[10, 1]], [[10]], [[10]]] * 4
    assert censuses == [10] * 4


def test_cache_file_held_by_another_process_falls_back_to_memory(fresh_store):
    uri, exp = fresh_store
    log_agent_traces(exp, 0, 4)
    path = AnalyticsSession(uri, exp).path
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('ready', flush=True); time.sleep(120)", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with AnalyticsSession(uri, exp) as session:
            assert execute_sql(session, COUNT).rows == [[4, 1]]
            assert compute_census(session).total_traces == 4
            db = session.con.execute("SELECT path FROM duckdb_databases() "
                                     "WHERE database_name = current_database()").fetchone()[0]
            assert not db  # in memory
    finally:
        holder.kill()
        holder.wait()


def test_two_sessions_on_one_cache_file_in_one_process(fresh_store):
    uri, exp = fresh_store
    log_agent_traces(exp, 0, 3)
    with AnalyticsSession(uri, exp) as a, AnalyticsSession(uri, exp) as b:
        assert execute_sql(a, COUNT).rows == [[3, 0]]
        assert execute_sql(b, COUNT).rows == [[3, 0]]
        assert a.source.native == b.source.native


def test_scope_values_are_checked_and_bound(fresh_store):
    uri, exp = fresh_store
    log_agent_traces(exp, 0, 3)
    with AnalyticsSession(uri, exp) as session:
        with pytest.raises(InvalidInputError, match="start_time_ms"):
            compute_census(session, start_time_ms="0 OR true")
        with pytest.raises(InvalidInputError, match="samples"):
            cohort_stats(session, "true", "true", "true", samples="5]")
        assert compute_census(session, start_time_ms=0).total_traces == 3


def test_client_keeps_one_session_per_experiment_and_closes_them(fresh_store):
    uri, exp = fresh_store
    log_agent_traces(exp, 0, 3)
    with InsightsClient(uri) as client:
        session = client.analytics_session(exp)
        assert client.execute_sql(exp, COUNT).rows == [[3, 0]]
        client.cohort_stats(exp, "true", "false", "state = 'OK'")
        assert client.analytics_session(exp) is session
        log_agent_traces(exp, 3, 2)
        client.refresh(exp)
        assert client.execute_sql(exp, COUNT).rows == [[5, 1]]
    assert session.closed
    # a closed client opens a new session on the next call
    assert client.execute_sql(exp, COUNT).rows == [[5, 1]]
    client.close()
