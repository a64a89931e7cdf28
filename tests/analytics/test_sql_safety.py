"""Trace SQL against hostile queries: per-scope table names, refused functions, time and
memory limits, bounded results, and the CLI's truncation line and exit codes.

All on a real SQLite MLflow store with 20 traces (tests/analytics/conftest.py).
"""

from __future__ import annotations

import json

import duckdb
import pytest
from typer.testing import CliRunner

from insights.analytics import AnalyticsSession, execute_sql
from insights.analytics.sql import run, sql_limits
from insights.cli import app
from insights.errors import InvalidInputError

runner = CliRunner()


def q(corpus, sql: str, **kw):
    uri, exp, _ = corpus
    with AnalyticsSession(uri, exp) as session:
        return execute_sql(session, sql, **kw)


def refused(corpus, sql: str, **kw) -> str:
    with pytest.raises(InvalidInputError) as err:
        q(corpus, sql, **kw)
    msg = str(err.value)
    assert "\n" not in msg and msg
    return msg


@pytest.mark.parametrize("sql", [
    # a CTE defined in a subquery does not unlock a same-named table outside it
    "SELECT count(*) FROM trace_rows WHERE trace_id IN "
    "(WITH trace_rows AS (SELECT 'x' AS trace_id) SELECT trace_id FROM trace_rows)",
    "SELECT * FROM cache_meta, (WITH cache_meta AS (SELECT 1 AS k) SELECT k FROM cache_meta) s",
    "SELECT * FROM (WITH pragma_database_list AS (SELECT 1) SELECT 1) s, pragma_database_list",
    "SELECT * FROM (WITH duckdb_tables AS (SELECT 1) SELECT 1) s, duckdb_tables",
    "SELECT * FROM (WITH span_rows AS (SELECT 1) SELECT 1) s JOIN span_rows ON true",
    # a non-reserved name: scope rules alone must refuse the outer use
    "SELECT * FROM (WITH t AS (SELECT 1 AS n) SELECT n FROM t) s, t",
    # a CTE sees only the CTEs before it; DuckDB would bind `t` here to a real table
    "WITH x AS (SELECT * FROM t), t AS (SELECT 1 AS n) SELECT * FROM x",
    "WITH t AS (SELECT * FROM t) SELECT * FROM t",
    # a recursive CTE's anchor does not see itself (DuckDB reads the real table there)
    "WITH RECURSIVE t AS (SELECT n FROM t UNION ALL SELECT 1) SELECT * FROM t",
    # table functions, in any position
    "SELECT * FROM duckdb_settings()",
    "SELECT (SELECT count(*) FROM duckdb_settings())",
    "SELECT * FROM traces WHERE trace_id IN (SELECT * FROM read_csv('/etc/passwd'))",
    "SELECT * FROM traces JOIN read_parquet('x.parquet') p ON true",
    "SELECT * FROM traces, LATERAL (SELECT * FROM read_json('x.json'))",
    "SELECT * FROM range(10)",
    "SELECT * FROM query('SELECT 1')",
    "SELECT * FROM pragma_database_list",
    "SELECT * FROM duckdb_tables",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM insights_store.trace_info",
    # functions that reveal or touch the system
    "SELECT getenv('HOME')",
    "SELECT current_setting('memory_limit')",
    "SELECT trace_id FROM traces WHERE getenv('HOME') IS NOT NULL",
    "SELECT read_text('/etc/passwd')",
    "SELECT nextval('s')",
    "SELECT json_execute_serialized_sql('x')",
])
def test_hostile_query_refused(sqlite_corpus, sql):
    refused(sqlite_corpus, sql)


def test_scoped_refusal_names_the_table(sqlite_corpus):
    msg = refused(sqlite_corpus, "SELECT * FROM (WITH t AS (SELECT 1 AS n) SELECT n FROM t) s, t")
    assert "unknown table 't'" in msg
    msg = refused(sqlite_corpus, "SELECT getenv('HOME')")
    assert "getenv" in msg


@pytest.mark.parametrize("sql, expected", [
    ("WITH a AS (SELECT trace_id FROM traces), b AS (SELECT count(*) AS n FROM a) "
     "SELECT n FROM b", [[20]]),
    ("SELECT n FROM (WITH e AS (SELECT trace_id FROM traces WHERE state = 'ERROR') "
     "SELECT count(*) AS n FROM e) s", [[2]]),
    ("WITH e AS (SELECT trace_id FROM traces WHERE state = 'ERROR') "
     "SELECT (SELECT count(*) FROM e) AS errors, count(*) FROM traces", [[2, 20]]),
    ("WITH a AS (SELECT 1 AS n) SELECT n FROM a UNION ALL SELECT n + 1 FROM a ORDER BY n",
     [[1], [2]]),
    ("WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 5) "
     "SELECT max(n) FROM r", [[5]]),
    ("WITH x AS (SELECT state FROM traces) SELECT count(*) FROM x "
     "WHERE state IN (WITH y AS (SELECT 'OK' AS s) SELECT s FROM y)", [[18]]),
    ("SELECT repeat('ab', 3), lpad('x', 3, '-'), size(sequence(1, 10))", [["ababab", "--x", 10]]),
])
def test_valid_nested_ctes_still_work(sqlite_corpus, sql, expected):
    assert q(sqlite_corpus, sql).rows == expected


def test_recursive_cte_stops_at_time_limit(sqlite_corpus):
    msg = refused(sqlite_corpus, "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL "
                                 "SELECT n + 1 FROM r) SELECT count(*) FROM r", timeout=1)
    assert msg == ("query exceeded the 1 s time limit (raise with --timeout or "
                   "$INSIGHTS_SQL_TIMEOUT)")


def test_self_join_stops_at_a_limit(sqlite_corpus):
    sql = ("SELECT count(*) FROM traces a, traces b, traces c, traces d, traces e, traces f, "
           "traces g, traces h WHERE a.request || b.request || c.request || d.request "
           "|| e.request || f.request || g.request || h.request LIKE '%zzz%'")
    msg = refused(sqlite_corpus, sql, timeout=1)
    assert "time limit" in msg or "memory limit" in msg


def test_timeout_from_environment(sqlite_corpus, monkeypatch):
    monkeypatch.setenv("INSIGHTS_SQL_TIMEOUT", "0.5")
    msg = refused(sqlite_corpus, "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL "
                                 "SELECT n + 1 FROM r) SELECT count(*) FROM r")
    assert "0.5 s time limit" in msg


@pytest.mark.parametrize("sql", [
    "SELECT repeat('x', 1000000000)",
    "SELECT length(repeat(repeat('x', 100000), 100000))",
    "SELECT lpad('x', 1000000000, 'y')",
    "SELECT size(sequence(1, 1000000000))",
    "SELECT len(range(1000000000))",
    "SELECT length(space(1000000000))",
])
def test_value_blow_up_refused(sqlite_corpus, sql):
    assert "would build a value over 1,000,000" in refused(sqlite_corpus, sql, timeout=5)


def test_memory_cap_and_restore(sqlite_corpus):
    """A query over the cap fails with the memory message; the connection's limit comes back."""
    con = duckdb.connect()
    con.execute("SET memory_limit = '1GB'")
    with pytest.raises(InvalidInputError, match="exceeded the 40MB memory limit"):
        run(con, "SELECT list(repeat('x', 100000)) FROM range(20000)", 10,
            timeout=10, max_memory="40MB", session_memory="1GB")
    setting = "SELECT current_setting('memory_limit')"
    assert con.execute(setting).fetchone()[0] == "953.6 MiB"  # 1GB, as DuckDB shows it
    for _ in range(3):  # no drift, no leftover interrupt
        assert run(con, "SELECT 42", 10, session_memory="1GB").rows == [[42]]
    assert con.execute(setting).fetchone()[0] == "953.6 MiB"


def test_memory_cap_through_sdk(sqlite_corpus):
    msg = refused(sqlite_corpus, "SELECT count(DISTINCT a.trace_id || b.trace_id || "
                  "c.trace_id || repeat(a.request, 50)) FROM traces a, traces b, traces c",
                  max_memory="10MB", timeout=20)
    assert "10MB memory limit" in msg


@pytest.mark.parametrize("timeout, memory", [(0, None), (-1, None), ("soon", None),
                                             (None, "lots"), (None, "1GB; SELECT 1")])
def test_bad_limits_refused(timeout, memory):
    with pytest.raises(InvalidInputError):
        sql_limits(timeout, memory)


def test_truncated_when_max_rows_hit(sqlite_corpus):
    r = q(sqlite_corpus, "SELECT trace_id FROM traces", max_rows=5)
    assert len(r.rows) == 5 and r.truncated is True
    assert r.to_dict()["truncated"] is True
    r = q(sqlite_corpus, "SELECT trace_id FROM traces", max_rows=20)
    assert len(r.rows) == 20 and r.truncated is False


def test_result_byte_budget_truncates(sqlite_corpus, monkeypatch):
    monkeypatch.setenv("INSIGHTS_SQL_MAX_RESULT_MB", "0.01")  # 10 kB
    r = q(sqlite_corpus, "SELECT repeat('x', 1000) FROM traces")
    assert r.truncated is True and 1 <= len(r.rows) < 20


def _cli(corpus, *args):
    uri, exp, _ = corpus
    return runner.invoke(app, ["--tracking-uri", uri, "execute-sql", "--experiment-id", exp,
                               *args])


def test_cli_prints_truncation_line(sqlite_corpus):
    res = _cli(sqlite_corpus, "SELECT trace_id FROM traces", "--max-rows", "3")
    assert res.exit_code == 0, res.output
    assert "showing first 3 rows; result truncated" in res.output
    res = _cli(sqlite_corpus, "SELECT trace_id FROM traces", "--max-rows", "3", "-o", "json")
    data = json.loads(res.stdout)
    assert data["truncated"] is True and data["row_count"] == 3
    res = _cli(sqlite_corpus, "SELECT trace_id FROM traces")
    assert res.exit_code == 0 and "truncated" not in res.output


def test_cli_limit_errors_exit_2(sqlite_corpus):
    res = _cli(sqlite_corpus, "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 "
                              "FROM r) SELECT count(*) FROM r", "--timeout", "1")
    assert res.exit_code == 2
    assert "query exceeded the 1 s time limit (raise with --timeout" in res.output
    res = _cli(sqlite_corpus, "SELECT 1", "--max-memory", "plenty")
    assert res.exit_code == 2 and "memory limit must look like" in res.output
    res = _cli(sqlite_corpus, "SELECT getenv('HOME')")
    assert res.exit_code == 2 and "getenv" in res.output
