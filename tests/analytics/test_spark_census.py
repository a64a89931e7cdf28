"""The census on Spark: the same sections give the same census as on DuckDB.

Real parts only: real MLflow SQLite stores (a small agent corpus and the two generated example
applications, with retrievers, sub-agents, sessions, assessments, tokens and costs), and a real
local Spark. Skipped, with the reason, only when pyspark or Java is missing.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analytics.conftest import (assert_same_census, log_agent_traces, log_feedback,
                                new_sqlite_store, rounded, tracking)
from helpers import fixtures
from insights.analytics import AnalyticsSession, compute_census
from insights.errors import InvalidInputError

pytest.importorskip("pyspark", reason="pyspark is not installed (pip install '.[spark]')")
if not shutil.which("java"):
    pytest.skip("Java is not installed (the Spark engine needs Java 17+)", allow_module_level=True)

from insights.analytics.spark_census import spark_census, spark_sql  # noqa: E402
from insights.cli import app  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `examples` is not an installed package
    sys.path.insert(0, str(ROOT))

pytestmark = pytest.mark.spark


def log_status_only_failures(n: int) -> None:
    """Traces whose failed span has an ERROR status and message but no exception event (a
    span ended by hand, as some instrumentations do)."""
    import mlflow
    from mlflow.entities import SpanStatus, SpanStatusCode, SpanType

    for i in range(n):
        with mlflow.start_span("pipeline", span_type=SpanType.CHAIN) as root:
            root.set_inputs({"q": f"status only {i}"})
            with mlflow.start_span("fetch", span_type=SpanType.RETRIEVER) as fetch:
                fetch.set_status(SpanStatus(SpanStatusCode.ERROR, "TimeoutError: fetch timed out"))
            root.set_outputs({"answer": ""})
    mlflow.flush_trace_async_logging()


@pytest.fixture(scope="module")
def corpus(template_db, tmp_path_factory):
    """20 agent traces with tags, failures and 8 feedbacks, plus 3 traces failed by status
    only, in a real SQLite store."""
    uri, exp = new_sqlite_store(template_db, tmp_path_factory.mktemp("spark-census-store"))
    with tracking(uri):
        ids = log_agent_traces(exp, 0, 20)
        log_feedback(ids)
        log_status_only_failures(3)
    return uri, exp, ids


@pytest.fixture(scope="module")
def duck_census(corpus):
    """The corpus's census on DuckDB, computed once for the module's comparisons."""
    uri, exp, _ids = corpus
    with AnalyticsSession(uri, exp) as session:
        return compute_census(session)


def test_census_on_spark_equals_duckdb_on_an_agent_corpus(corpus, duck_census, spark):
    uri, exp, _ids = corpus
    duck = duck_census
    with AnalyticsSession(uri, exp) as session:
        on_spark = spark_census(session)
    assert duck.total_traces == 23 and duck.errors and duck.assessments and duck.tools
    fetch = next(sp for sp in duck.spans if sp.name == "fetch")
    assert [e.type for e in fetch.error_types] == ["TimeoutError"]  # from the message
    assert_same_census(duck, on_spark)


@pytest.mark.parametrize("app_name", ["research_assistant", "data_agent"])
def test_census_on_spark_equals_duckdb_on_example_apps(app_name, spark, tmp_path):
    """Two application shapes: routed sub-agents with retrievers, rerankers and sessions;
    Anthropic-shaped tool calling. Every section (spans, error types, empty and repeated
    answers, tokens, cost, assessment scales and rationales, time buckets) must agree."""
    from examples.apps import truth as truth_mod

    store = truth_mod.cached_store(app_name, 300, 5, fixtures.migrated_template()).copy_to(tmp_path / "store")
    with AnalyticsSession(store.uri, store.truth.experiment_id) as session:
        duck = compute_census(session)
        on_spark = spark_census(session)
    assert duck.total_traces == 300 and duck.spans and duck.tokens is not None
    assert_same_census(duck, on_spark)


def test_scoped_census_on_spark_equals_duckdb(corpus, duck_census, spark):
    """A time window and an MLflow filter select the same traces on both engines."""
    uri, exp, _ids = corpus
    with AnalyticsSession(uri, exp) as session:
        whole = duck_census
        lo, hi = whole.time_range.start_ms, whole.time_range.end_ms
        mid = lo + (hi - lo) // 2
        for scope in ({"start_time_ms": mid}, {"end_time_ms": mid},
                      {"filter_string": "trace.status = 'ERROR'"}):
            duck = compute_census(session, **scope)
            on_spark = spark_census(session, **scope)
            assert 0 < duck.total_traces < 23, scope
            assert_same_census(duck, on_spark)


def test_spark_census_of_an_existing_table(corpus, duck_census, spark, tmp_path):
    """--table: a Parquet export read as given gives the experiment's census."""
    from insights.analytics.export import export_traces

    uri, exp, _ids = corpus
    with AnalyticsSession(uri, exp) as session:
        export_traces(session, tmp_path / "exported")
    assert_same_census(duck_census, spark_census(table=str(tmp_path / "exported")))


def test_spark_census_refuses_bad_scopes_in_one_line(corpus, spark, tmp_path):
    uri, exp, _ids = corpus
    with pytest.raises(InvalidInputError, match="--filter-string needs"):
        spark_census(table=str(tmp_path), filter_string="trace.status = 'OK'")
    with AnalyticsSession(uri, exp) as session:
        with pytest.raises(InvalidInputError, match="start_time_ms must be an integer"):
            spark_census(session, start_time_ms="yesterday")
        with pytest.raises(InvalidInputError, match="bad filter_string"):
            spark_census(session, filter_string="trace.nope ==== 1")


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_cli_census_on_spark_is_stored_like_the_duckdb_one(corpus, spark):
    uri, exp, _ids = corpus
    base = ["--tracking-uri", uri]

    def census(*extra: str) -> dict:
        made = run_cli(*base, "create-analysis", "--experiment-id", exp, "--run-name", "spark",
                       "--output", "json")
        assert made.exit_code == 0, made.output
        run_id = json.loads(made.stdout)["run_id"]
        r = run_cli(*base, "create-baseline-census", "--run-id", run_id, *extra,
                    "--output", "json")
        assert r.exit_code == 0, r.output
        stored = run_cli(*base, "get-baseline-census", "--run-id", run_id, "--output", "json")
        assert json.loads(stored.stdout) == json.loads(r.stdout)
        return {k: v for k, v in json.loads(r.stdout).items()
                if k not in ("run_id", "computed_at")}

    assert rounded(census("--engine", "spark")) == rounded(census())


def test_cli_census_engine_options_need_spark(corpus, tmp_path):
    uri, exp, _ids = corpus
    made = run_cli("--tracking-uri", uri, "create-analysis", "--experiment-id", exp,
                   "--run-name", "x", "--output", "json")
    run_id = json.loads(made.stdout)["run_id"]
    for args, text in [(["--table", str(tmp_path)], "need --engine spark"),
                       (["--engine", "presto"], "unknown engine")]:
        r = run_cli("--tracking-uri", uri, "create-baseline-census", "--run-id", run_id, *args)
        assert r.exit_code == 2 and text in r.stderr, r.output
        assert len(r.stderr.strip().splitlines()) == 1
    stored = run_cli("--tracking-uri", uri, "get-baseline-census", "--run-id", run_id)
    assert stored.exit_code != 0  # nothing was written


@pytest.mark.parametrize("duck, spark_text", [
    ("SELECT quantile_cont(x, [0.5, 0.9]) FROM t", "PERCENTILE(x, ARRAY(0.5, 0.9))"),
    ("SELECT mode(m ORDER BY m) FROM t", "MODE(m, TRUE)"),
    ("SELECT list_sort(list(DISTINCT x))[1:5] FROM t",
     "SLICE(ARRAY_SORT(COLLECT_LIST(DISTINCT x)), 1, 5)"),
    ("SELECT epoch_ms(date_trunc('hour', make_timestamp(x * 1000))) FROM t",
     "UNIX_MILLIS(DATE_TRUNC('HOUR', TIMESTAMP_MICROS(x * 1000)))"),
])
def test_the_duckdb_forms_sqlglot_misses_are_rewritten(duck, spark_text):
    assert spark_text in spark_sql(duck)
