"""Trace SQL on Spark: the same answers as DuckDB, the Parquet export, and refusals.

Real parts only: a real MLflow SQLite store, a real local Spark (``local[2]``) started once
for the module. Skipped, with the reason, only when pyspark or Java is missing.
"""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from analytics.conftest import log_agent_traces, new_sqlite_store, rounded, tracking
from helpers import spark_conf
from insights.analytics import AnalyticsSession, cohort_stats, execute_sql
from insights.analytics.export import export_traces
from insights.errors import InvalidInputError

pytest.importorskip("pyspark", reason="pyspark is not installed (pip install '.[spark]')")
if not shutil.which("java"):
    pytest.skip("Java is not installed (the Spark engine needs Java 17+)", allow_module_level=True)

from insights.analytics import spark_engine  # noqa: E402
from insights.cli import app  # noqa: E402

pytestmark = pytest.mark.spark

# 25.6 billion rows of an eight-way cross join: over ten minutes of work here. Spark notices
# a cancel only when a task pulls its next input row, and a Parquet scan hands a small table
# over as one batch; so the first four tables are shuffled, the rest of the work runs on rows
# read one at a time from the shuffle, and a cancelled task stops within a second. (A query
# making millions of rows from one input row runs on after its limit: README, "Known limit".)
SLOW_QUERY = ("SELECT count(*) AS n FROM (SELECT a.trace_id FROM traces a, traces b, traces c, "
              "traces d DISTRIBUTE BY a.trace_id, b.trace_id, c.trace_id) x, "
              "traces e, traces f, traces g, traces h")

# Spec-style queries; names in the ids say what each exercises.
QUERIES = {
    "count_by_state": "SELECT state, count(*) AS n FROM traces GROUP BY state",
    "latency_percentiles": (
        "SELECT percentile(execution_time_ms, 0.5) AS p50, "
        "percentile(execution_time_ms, 0.95) AS p95, avg(execution_time_ms) AS mean, "
        "max(execution_time_ms) AS worst FROM traces"),
    "failed_span_count": ("SELECT trace_id, size(filter(spans, s -> s.status_code = 'ERROR')) "
                          "AS failed FROM traces"),
    "exists_failed_tool": ("SELECT trace_id FROM traces WHERE exists(spans, s -> "
                           "s.span_type = 'TOOL' AND s.status_code = 'ERROR')"),
    "lateral_view_spans": (
        "SELECT s.name, s.span_type, count(*) AS calls, sum(CASE WHEN s.status_code = 'ERROR' "
        "THEN 1 ELSE 0 END) AS failures, round(avg(s.duration_ms), 3) AS mean_ms "
        "FROM traces LATERAL VIEW explode(spans) x AS s GROUP BY s.name, s.span_type"),
    "tag_access": "SELECT tags['parity'] AS parity, count(*) AS n FROM traces GROUP BY tags['parity']",
    "assessments": ("SELECT a.name, a.value, a.source_type, count(*) AS n FROM traces "
                    "LATERAL VIEW explode(assessments) y AS a GROUP BY a.name, a.value, a.source_type"),
    "exists_assessment": ("SELECT count(*) AS n FROM traces "
                          "WHERE exists(assessments, a -> a.value = 'false')"),
    "empty_answers": ("SELECT trace_name, count(*) AS n FROM traces "
                      "WHERE state = 'OK' AND response_empty GROUP BY trace_name"),
    "ordered_top": ("SELECT trace_id, length(request) AS req_len, total_tokens FROM traces "
                    "ORDER BY req_len DESC, trace_id LIMIT 5"),
    "span_attribute_json": (
        "SELECT trace_id, get_json_object(s.attributes, '$[\"mlflow.chat.tokenUsage\"]') AS usage "
        "FROM traces LATERAL VIEW explode(spans) x AS s WHERE s.span_type = 'CHAT_MODEL'"),
    "cte_and_window": (
        "WITH slow AS (SELECT trace_id, execution_time_ms, row_number() OVER "
        "(ORDER BY execution_time_ms DESC, trace_id) AS rk FROM traces) "
        "SELECT trace_id FROM slow WHERE rk <= 3"),
    "whole_rows": "SELECT * FROM traces",
}


def canonical(rows: list[list], ordered: bool) -> list:
    """Rows with floats rounded (engines sum in different orders); sorted unless ordered."""
    out = rounded(rows, 6)
    return out if ordered else sorted(out, key=lambda r: json.dumps(r, sort_keys=True))


@pytest.mark.parametrize("name", list(QUERIES))
def test_spark_answers_equal_duckdb(name, sqlite_session, spark):
    sql = QUERIES[name]
    duck = execute_sql(sqlite_session, sql)
    on_spark = spark_engine.execute_sql_spark(sql, session=sqlite_session)
    assert on_spark.columns == duck.columns
    assert duck.rows, "the query should return rows on this corpus"
    ordered = "ORDER BY" in sql and "OVER" not in sql
    assert canonical(on_spark.rows, ordered) == canonical(duck.rows, ordered)


@pytest.mark.parametrize("cohort, outcome", [
    ("length(request) > 50", "state = 'ERROR'"),
    ("tags['parity'] = 'even'", "exists(spans, s -> s.span_type = 'TOOL' AND s.status_code = 'ERROR')"),
    ("size(spans) > 2", "exists(assessments, a -> a.value = 'false')"),
])
def test_cohort_stats_equal_on_both_engines(cohort, outcome, sqlite_session, spark):
    control = f"NOT ({cohort})"
    duck = cohort_stats(sqlite_session, cohort, control, outcome, samples=3, engine="duckdb")
    on_spark = cohort_stats(sqlite_session, cohort, control, outcome, samples=3, engine="spark")
    assert on_spark == duck
    assert duck["cohort"]["n"] + duck["control"]["n"] == 20


def test_agent_evidence_query_runs_on_both_engines(sqlite_session, spark):
    """The agent orders evidence by its busiest failing hour; Spark refuses a window function
    in ORDER BY, so the query computes it in a subquery and both engines answer it."""
    from agent.census_issues import densest_first

    sql = densest_first(["trace_id AS trace_id", "s.status_message AS status_message",
                         "state AS state"], "FROM traces LATERAL VIEW explode(spans) x AS s "
                        "WHERE s.status_code = 'ERROR'", 45)
    duck = execute_sql(sqlite_session, sql)
    on_spark = spark_engine.execute_sql_spark(sql, session=sqlite_session)
    assert on_spark.columns == duck.columns == ["trace_id", "status_message", "state"]
    assert len(duck.rows) == 8  # 4 failed searches, 2 failed llm calls and their 2 agent spans
    assert canonical(on_spark.rows, False) == canonical(duck.rows, False)


def test_timestamps_maps_and_structs_come_back_alike(sqlite_session, spark):
    sql = "SELECT request_time, tags, assessments FROM traces ORDER BY request_time_ms LIMIT 1"
    row = spark_engine.execute_sql_spark(sql, session=sqlite_session).rows[0]
    assert row == execute_sql(sqlite_session, sql).rows[0]
    assert isinstance(row[0], str) and "T" in row[0]
    assert row[1]["parity"] == "even" and row[2][0]["name"] == "correctness"


def test_max_rows_truncates_like_duckdb(sqlite_session, spark):
    r = spark_engine.execute_sql_spark("SELECT trace_id FROM traces", session=sqlite_session,
                                       max_rows=3)
    assert len(r.rows) == 3 and r.truncated


def test_export_writes_day_partitions_and_then_only_new_traces(template_db, tmp_path, spark):
    uri, exp = new_sqlite_store(template_db, tmp_path / "store")
    out = tmp_path / "export"
    with tracking(uri):
        first_ids = log_agent_traces(exp, 0, 6)
        with AnalyticsSession(uri, exp) as s:
            first = export_traces(s, out)
            files_before = sorted(out.glob("day=*/*.parquet"))
            again = export_traces(s, out)
            files_after_again = sorted(out.glob("day=*/*.parquet"))
            log_agent_traces(exp, 6, 4)
            second = export_traces(s, out)
            duck_columns = execute_sql(s, "SELECT * FROM traces LIMIT 1").columns
    assert (first.written, first.total) == (6, 6)
    assert first.days and all((out / f"day={d}").is_dir() for d in first.days)
    assert again.written == 0 and files_after_again == files_before
    assert (second.written, second.total) == (4, 10)
    assert all(f.exists() for f in files_before)  # earlier files untouched
    df = spark.read.parquet(str(out)).drop("day")
    assert df.columns == duck_columns
    got = sorted(r.trace_id for r in df.select("trace_id").collect())
    assert len(got) == 10 and set(first_ids) < set(got)


def test_queries_keep_reading_the_experiment_as_new_traces_arrive(template_db, tmp_path, spark):
    """The `traces` view is kept between queries while the export is unchanged, and follows it
    when new traces are exported."""
    uri, exp = new_sqlite_store(template_db, tmp_path / "store")
    count = "SELECT count(*) AS n FROM traces"
    with tracking(uri):
        log_agent_traces(exp, 0, 3)
        with AnalyticsSession(uri, exp) as s:
            first = spark_engine.execute_sql_spark(count, session=s).rows
            again = spark_engine.execute_sql_spark(count, session=s).rows
            log_agent_traces(exp, 3, 2)
            s.refresh()
            after = spark_engine.execute_sql_spark(count, session=s).rows
    assert (first, again, after) == ([[3]], [[3]], [[5]])


def test_table_option_reads_an_existing_parquet_path(sqlite_session, spark, tmp_path):
    out = tmp_path / "table"
    export_traces(sqlite_session, out)
    sql = "SELECT state, count(*) AS n FROM traces GROUP BY state"
    r = spark_engine.execute_sql_spark(sql, table=str(out))
    duck = execute_sql(sqlite_session, sql).rows
    assert canonical(r.rows, False) == canonical(duck, False)


def test_table_option_reads_a_catalog_table(sqlite_session, spark, tmp_path):
    """--table NAME (no slash): a table of Spark's catalog, here a managed table saved in a
    local warehouse from the experiment's export, answers like DuckDB."""
    out = tmp_path / "export"
    export_traces(sqlite_session, out)
    spark.read.parquet(str(out)).drop("day").write.mode("overwrite") \
        .option("path", str(tmp_path / "warehouse" / "traces_catalog")) \
        .saveAsTable("traces_catalog")
    try:
        sql = ("SELECT s.span_type, count(*) AS n FROM traces LATERAL VIEW explode(spans) x AS s "
               "GROUP BY s.span_type")
        r = spark_engine.execute_sql_spark(sql, table="traces_catalog")
        duck = execute_sql(sqlite_session, sql).rows
        assert canonical(r.rows, False) == canonical(duck, False)
    finally:
        spark.sql("DROP TABLE IF EXISTS traces_catalog")


@pytest.mark.parametrize("sql, message", [
    ("DELETE FROM traces", "only SELECT/WITH"),
    ("SELECT * FROM traces; DROP TABLE traces", "one SQL statement"),
    ("SELECT * FROM other_table", "unknown table"),
    ("SELECT * FROM parquet.`/etc`", "only the `traces` table"),
    ("SELECT reflect('java.lang.System', 'getenv', 'HOME') FROM traces", "reflect() is not allowed"),
    ("SELECT no_such_column FROM traces", "Spark SQL error"),
])
def test_bad_queries_are_refused_in_one_line(sql, message, sqlite_session, spark):
    with pytest.raises(InvalidInputError) as info:
        spark_engine.execute_sql_spark(sql, session=sqlite_session)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_slow_query_is_interrupted_at_the_time_limit(sqlite_session, spark):
    with (spark_conf.default_codegen(spark),
          pytest.raises(InvalidInputError, match="exceeded the 1 s time limit")):
        spark_engine.execute_sql_spark(SLOW_QUERY, session=sqlite_session, timeout=1)
    # the session is still usable afterwards
    assert spark_engine.execute_sql_spark("SELECT count(*) AS n FROM traces",
                                          session=sqlite_session).rows == [[20]]


def test_a_query_still_planned_when_its_time_is_up_is_interrupted_too(sqlite_session, spark):
    """The limit passes while Spark is still planning: the job starts after the first
    interrupt, and must be stopped anyway instead of running to its end."""
    with (spark_conf.default_codegen(spark),
          pytest.raises(InvalidInputError, match="exceeded the 0.01 s time limit")):
        spark_engine.execute_sql_spark(SLOW_QUERY, session=sqlite_session, timeout=0.01)
    assert spark_engine.execute_sql_spark("SELECT count(*) AS n FROM traces",
                                          session=sqlite_session).rows == [[20]]


def test_unknown_engine_and_missing_table_are_refused(spark, tmp_path, monkeypatch):
    with pytest.raises(InvalidInputError, match="unknown engine 'presto'"):
        spark_engine.resolve_engine("presto")
    monkeypatch.setenv("INSIGHTS_ENGINE", "Spark")
    assert spark_engine.resolve_engine(None) == "spark"
    with pytest.raises(InvalidInputError, match="no such file"):
        spark_engine.execute_sql_spark("SELECT * FROM traces", table=str(tmp_path / "nope"))
    with pytest.raises(InvalidInputError, match="--table no_such_table"):
        spark_engine.execute_sql_spark("SELECT * FROM traces", table="no_such_table")


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_cli_execute_sql_on_spark_matches_duckdb(sqlite_corpus, spark):
    uri, exp, _ids = sqlite_corpus
    sql = "SELECT state, count(*) AS n FROM traces GROUP BY state ORDER BY state"
    base = ["--tracking-uri", uri, "execute-sql", "--experiment-id", exp, sql, "--output", "json"]
    duck = run_cli(*base)
    on_spark = run_cli(*base, "--engine", "spark")
    assert duck.exit_code == 0 and on_spark.exit_code == 0, on_spark.output
    assert json.loads(on_spark.stdout) == json.loads(duck.stdout)


def test_cli_cohort_stats_on_spark_matches_duckdb(sqlite_corpus, spark):
    uri, exp, _ids = sqlite_corpus
    base = ["--tracking-uri", uri, "cohort-stats", "--experiment-id", exp, "--cohort",
            "length(request) > 50", "--outcome", "state = 'ERROR'", "--output", "json"]
    duck, on_spark = run_cli(*base), run_cli(*base, "--engine", "spark")
    assert duck.exit_code == 0 and on_spark.exit_code == 0, on_spark.output
    assert json.loads(on_spark.stdout) == json.loads(duck.stdout)


def test_cli_bad_input_exits_2_with_one_line(sqlite_corpus, spark, tmp_path):
    uri, exp, _ids = sqlite_corpus
    base = ["--tracking-uri", uri, "execute-sql", "--experiment-id", exp]
    for args, text in [
        ([*base, "SELECT 1 FROM traces", "--engine", "presto"], "unknown engine"),
        ([*base, "SELECT 1 FROM traces", "--engine", "spark", "--table", str(tmp_path / "x")],
         "no such file"),
        ([*base, "INSERT INTO traces SELECT * FROM traces", "--engine", "spark"], "only SELECT"),
        ([*base, "SELECT 1 FROM traces", "--table", str(tmp_path)], "need --engine spark"),
    ]:
        r = run_cli(*args)
        assert r.exit_code == 2, (args, r.output)
        assert text in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_agent_run_refuses_an_unknown_engine_in_one_line(monkeypatch):
    from agent.cli import app as agent_app

    monkeypatch.delenv("INSIGHTS_ENGINE", raising=False)
    r = CliRunner().invoke(agent_app, ["run", "--experiment-id", "1", "--engine", "presto"])
    assert r.exit_code == 2 and "unknown engine 'presto'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_export_traces(sqlite_corpus, tmp_path):
    uri, exp, ids = sqlite_corpus
    out = tmp_path / "exported"
    args = ["--tracking-uri", uri, "export-traces", "--experiment-id", exp, "--out", str(out),
            "--output", "json"]
    first, second = run_cli(*args), run_cli(*args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["written"] == len(ids)
    assert json.loads(second.stdout)["written"] == 0 and json.loads(second.stdout)["total"] == 20
    bad = run_cli("--tracking-uri", uri, "export-traces", "--experiment-id", exp, "--out",
                  str(next(out.glob("day=*/*.parquet"))))
    assert bad.exit_code == 2 and "not a directory" in bad.stderr
