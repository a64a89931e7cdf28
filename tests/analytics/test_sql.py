"""Trace SQL: Spark SQL answers checked by hand, refusals, and errors."""

from __future__ import annotations

import pytest

from analytics.conftest import sql_of
from insights.analytics import TRACES_SCHEMA_HELP, SqlResult
from insights.errors import InvalidInputError


def q(corpus, sql: str) -> SqlResult:
    uri, exp, _ = corpus
    return sql_of(uri, exp, sql)


def test_error_spans_query(corpus):
    uri, exp, ids = corpus
    r = q(corpus, "SELECT trace_id FROM traces "
                  "WHERE size(filter(spans, s -> s.status_code = 'ERROR')) > 0 ORDER BY trace_id")
    # search fails for i % 5 == 0, llm (and so agent) for i % 10 == 3
    assert r.columns == ["trace_id"]
    assert [row[0] for row in r.rows] == sorted(ids[i] for i in (0, 3, 5, 10, 13, 15))
    assert r.to_dict()["row_count"] == 6


def test_scalar_and_nested_columns(sqlite_corpus):
    c = sqlite_corpus
    r = q(c, "SELECT state, count(*) AS n FROM traces GROUP BY state ORDER BY state")
    assert r.rows == [["ERROR", 2], ["OK", 18]]
    r = q(c, "SELECT s.name, count(*) AS calls, sum(CASE WHEN s.status_code = 'ERROR' THEN 1 "
             "ELSE 0 END) AS failures FROM traces LATERAL VIEW explode(spans) x AS s "
             "WHERE s.span_type = 'TOOL' GROUP BY s.name")
    assert r.rows == [["search", 20, 4]]
    r = q(c, "SELECT tags['parity'] AS p, count(*) FROM traces GROUP BY 1 ORDER BY 1")
    assert r.rows == [["even", 10], ["odd", 10]]
    r = q(c, "SELECT a.value, count(*) FROM traces LATERAL VIEW explode(assessments) y AS a "
             "WHERE a.name = 'correctness' GROUP BY 1 ORDER BY 1")
    assert r.rows == [["false", 2], ["true", 6]]
    r = q(c, "SELECT count(*) FROM traces WHERE exists(assessments, a -> a.value = 'false')")
    assert r.rows == [[2]]
    r = q(c, "SELECT sum(total_tokens), count(*) FROM traces WHERE length(request) > 100")
    assert r.rows == [[7 * 15, 7]]  # i % 3 == 0 has the long question: 0,3,...,18
    r = q(c, "SELECT count(*) FROM traces WHERE response = '\"\"'")
    assert r.rows == [[2]]
    r = q(c, "SELECT s.inputs FROM traces LATERAL VIEW explode(spans) x AS s "
             "WHERE s.name = 'search' AND s.status_code = 'ERROR' LIMIT 1")
    assert "question" in r.rows[0][0]
    r = q(c, "SELECT * FROM traces LIMIT 1")
    assert r.columns[:3] == ["trace_id", "request_time", "request_time_ms"]
    assert isinstance(r.rows[0][1], str)  # timestamps come back as ISO strings


@pytest.mark.parametrize("sql", [
    "DELETE FROM traces",
    "INSERT INTO traces SELECT * FROM traces",
    "UPDATE traces SET state = 'OK'",
    "DROP TABLE traces",
    "CREATE TABLE x AS SELECT 1",
    "ATTACH 'other.db'",
    "COPY traces TO '/tmp/x.csv'",
    "PRAGMA database_list",
    "SET memory_limit = '1GB'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SELECT 1; SELECT 2",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_parquet('x.parquet')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM trace_rows",
    "WITH x AS (SELECT 1) DELETE FROM traces",
])
def test_refused(sqlite_corpus, sql):
    with pytest.raises(InvalidInputError) as err:
        q(sqlite_corpus, sql)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("sql, fragment", [
    ("SELECT no_such_column FROM traces", "no_such_column"),
    ("SELEC trace_id FROM traces", "SELEC"),
    ("SELECT trace_id FROM traces WHERE (", "parse"),
    ("", "empty"),
])
def test_bad_sql(sqlite_corpus, sql, fragment):
    with pytest.raises(InvalidInputError) as err:
        q(sqlite_corpus, sql)
    assert fragment.lower() in str(err.value).lower()
    assert "\n" not in str(err.value)


def test_schema_help_mentions_columns():
    for col in ("trace_id", "request_time", "execution_time_ms", "spans", "assessments",
                "status_code", "LATERAL VIEW explode"):
        assert col in TRACES_SCHEMA_HELP


def test_span_queries_do_not_wait_for_payloads(corpus):
    """Queries over span names/types/statuses/timings read span lists built without payloads,
    and those lists hold exactly what the full spans hold in those fields."""
    from insights.analytics import AnalyticsSession

    uri, exp, _ = corpus
    steps: list[str] = []
    r = sql_of(uri, exp, "SELECT count(*) FROM traces LATERAL VIEW explode(spans) x AS s "
                              "WHERE s.span_type = 'TOOL' AND s.status_code = 'ERROR'",
                    progress=steps.append)
    assert r.rows == [[4]]
    assert not any("payloads" in s for s in steps)
    fields = ["start_time_ms", "span_id", "parent_id", "name", "span_type", "status_code",
              "status_message", "end_time_ms", "duration_ms"]
    project = ", ".join(f"{f} := s.{f}" for f in fields)
    with AnalyticsSession(uri, exp) as table:
        table.ensure_full()
        lite = table.con.execute("SELECT trace_id, spans FROM span_lists ORDER BY 1").fetchall()
        full = table.con.execute(f"SELECT trace_id, list_transform(spans, lambda s: struct_pack("
                                 f"{project})) FROM traces ORDER BY 1").fetchall()
    assert len(lite) == 20 and lite == full


def test_a_span_condition_is_only_evaluated_where_the_ones_before_it_hold(sqlite_corpus):
    """Conditions inside a list lambda run left to right, as on Spark: a test that would fail on
    other spans (parsing a span's name as JSON) is reached only by the spans that passed the
    earlier ones, so guarding it with a span name works instead of raising."""
    guarded = ("SELECT count(*) FROM traces WHERE exists(spans, s -> s.name = 'no-such-span' "
               "AND get_json_object(s.name, '$.a') IS NULL)")
    assert q(sqlite_corpus, guarded).rows == [[0]]
    with pytest.raises(InvalidInputError, match="JSON"):  # the same test, unguarded
        q(sqlite_corpus, "SELECT count(*) FROM traces WHERE exists(spans, s -> "
                         "get_json_object(s.name, '$.a') IS NULL)")


@pytest.mark.parametrize("cond, expected", [
    # NULL and false both drop an element, wherever the NULL sits in the chain
    ("s.name = 'search' AND s.status_code = 'ERROR'", 4),
    ("s.name = 'search' AND NULL AND s.status_code = 'ERROR'", 0),
    ("(s.name = 'search' AND (s.status_code = 'ERROR' OR NULL))", 4),
    ("s.name = 'search' AND NOT (s.status_code = 'ERROR' AND NULL)", 16),
    ("s.name = 'search' AND (s.status_code = 'ERROR') IS NULL", 0),
])
def test_span_conditions_select_the_same_spans_however_they_are_chained(
        sqlite_corpus, cond, expected):
    """Gating the chain (CASE per condition) keeps exactly the elements a plain AND keeps,
    NULLs included: counted both through filter() and through an explode."""
    via_filter = q(sqlite_corpus, f"SELECT sum(size(filter(spans, s -> {cond}))) FROM traces")
    via_rows = q(sqlite_corpus, "SELECT count(*) FROM traces LATERAL VIEW explode(spans) x AS s "
                                f"WHERE coalesce({cond}, false)")
    assert via_filter.rows == via_rows.rows == [[expected]]
