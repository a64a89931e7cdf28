"""Fixtures for analytics tests: an isolated cache dir and a small agent corpus with known counts."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import AssessmentSource, SpanType

from helpers.insights_helpers import tracking_to as tracking  # noqa: F401 - the tests import it from here


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "insights-cache"
    monkeypatch.setenv("INSIGHTS_CACHE_DIR", str(path))
    return path


@mlflow.trace(span_type=SpanType.TOOL)
def search(q: str, fail: bool) -> str:
    if fail:
        raise ValueError("search down")
    return f"found {q}"


@mlflow.trace(span_type=SpanType.CHAT_MODEL)
def llm(q: str, fail: bool, empty: bool) -> str:
    mlflow.get_current_active_span().set_attribute(
        "mlflow.chat.tokenUsage", {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15})
    if fail:
        raise RuntimeError("llm overloaded")
    return "" if empty else f"answer to {q} " + "x" * (len(q) * 3)


@mlflow.trace(name="agent", span_type=SpanType.AGENT)
def agent(i: int, q: str) -> str:
    mlflow.update_current_trace(tags={"idx": str(i), "parity": "even" if i % 2 == 0 else "odd"})
    try:
        found = search(q, fail=i % 5 == 0)
    except ValueError:
        found = ""
    answer = llm(q, fail=i % 10 == 3, empty=i % 10 == 7)
    return answer + found if answer else ""


def log_agent_traces(experiment_id: str, start: int, n: int) -> list[str]:
    """Run the toy agent for i in [start, start+n); return the trace ids in order."""
    from agent.demo_app.corpus import tracing_to

    ids = []
    with tracing_to(mlflow.get_tracking_uri()):  # the demo corpus's export: ~5x less CPU
        mlflow.set_experiment(experiment_id=experiment_id)
        for i in range(start, start + n):
            try:
                agent(i, f"question {i} " + "q" * (100 if i % 3 == 0 else 5))
            except RuntimeError:
                pass
            ids.append(mlflow.get_last_active_trace_id())
        mlflow.flush_trace_async_logging(terminate=True)  # no wait on the next flush's poll
    # restoring the tracking URI clears the active experiment; callers log more traces to it
    mlflow.set_experiment(experiment_id=experiment_id)
    return ids


def log_feedback(ids: list[str]) -> None:
    """correctness on the first 8 traces: False where i % 4 == 0."""
    for i, tid in enumerate(ids[:8]):
        mlflow.log_feedback(trace_id=tid, name="correctness", value=i % 4 != 0,
                            rationale="checked", source=AssessmentSource("HUMAN", "tester"))


@pytest.fixture(scope="session")
def template_db(sqlite_template) -> Path:
    """An empty, fully migrated MLflow SQLite store; copying it skips MLflow's slow migrations."""
    return sqlite_template


def new_sqlite_store(template: Path, folder: Path) -> tuple[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    exp = mlflow.MlflowClient(uri).create_experiment(
        f"exp-{uuid.uuid4().hex[:8]}", artifact_location=(folder / "artifacts").as_uri())
    return uri, exp


@pytest.fixture()
def fresh_store(template_db, tmp_path):
    """A new empty SQLite store (uri, experiment_id), set as the active tracking URI."""
    uri, exp = new_sqlite_store(template_db, tmp_path / "store")
    with tracking(uri):
        yield uri, exp


def _corpus(uri: str, exp: str):
    with tracking(uri):
        ids = log_agent_traces(exp, 0, 20)
        log_feedback(ids)
    return uri, exp, ids


@pytest.fixture(scope="module")
def sqlite_corpus(template_db, tmp_path_factory):
    """20 traces (2 ERROR, 4 failed tool calls, 2 empty responses) + 8 feedbacks. Read only."""
    return _corpus(*new_sqlite_store(template_db, tmp_path_factory.mktemp("corpus")))


@pytest.fixture(scope="module")
def server_corpus(mlflow_server):
    """The same corpus logged through a real loopback `mlflow server`. Read only."""
    exp = mlflow.MlflowClient(mlflow_server.uri).create_experiment(f"c-{uuid.uuid4().hex[:8]}")
    return _corpus(mlflow_server.uri, exp)


@pytest.fixture(params=["sqlite", "server"])
def corpus(request):
    return request.getfixturevalue(f"{request.param}_corpus")


@pytest.fixture()
def sqlite_session(sqlite_corpus):
    """An AnalyticsSession over ``sqlite_corpus`` (the Spark tests read it through the export)."""
    from insights.analytics import AnalyticsSession

    uri, exp, _ids = sqlite_corpus
    with AnalyticsSession(uri, exp) as s:
        yield s


@pytest.fixture(scope="session")
def _local_spark_started():
    """Stops this worker's Spark at the end of the session (the Spark tests share it)."""
    yield
    from insights.analytics import spark_engine

    spark_engine.stop_spark()


@pytest.fixture()
def spark(_local_spark_started):
    """This process's local Spark: started by the first test that needs it and kept for the
    rest of the session (the Connect tests stop it and start their own)."""
    from insights.analytics import spark_engine

    return spark_engine.spark_session()


def rounded(value, digits: int = 2):
    """``value`` with its floats rounded: the engines sum in different orders. Censuses are
    compared to 2 decimals, query rows to 6."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def assert_same_census(duck, on_spark) -> None:
    """Section by section, so a failure names the section that differs."""
    d, s = rounded(duck.model_dump(mode="json")), rounded(on_spark.model_dump(mode="json"))
    assert set(d) == set(s)
    for key in d:
        assert s[key] == d[key], f"census section {key!r} differs between Spark and DuckDB"


DAY_NS = 86_400 * 10**9


@pytest.fixture(scope="module")
def ten_day_corpus(mlflow_server):
    """30 traces on a real server, 3 a day over 10 days (start times in the past); the last
    trace of each day fails. Read only."""
    import time

    client = mlflow.MlflowClient(mlflow_server.uri)
    exp = client.create_experiment(f"days-{uuid.uuid4().hex[:8]}")
    start = (int(time.time()) // 86_400 - 12) * DAY_NS  # midnight UTC, 12 days ago
    ids = []
    with tracking(mlflow_server.uri):
        for day in range(10):
            for k in range(3):
                t0 = start + day * DAY_NS + (k + 1) * 3_600 * 10**9
                root = client.start_trace("agent", span_type="AGENT", inputs={"q": f"d{day}k{k}"},
                                          experiment_id=exp, start_time_ns=t0)
                child = client.start_span("lookup", trace_id=root.trace_id, parent_id=root.span_id,
                                          span_type="TOOL", start_time_ns=t0 + 10**6)
                client.end_span(root.trace_id, child.span_id, end_time_ns=t0 + 5 * 10**6)
                client.end_trace(root.trace_id, outputs={"a": "ok"},
                                 status="ERROR" if k == 2 else "OK", end_time_ns=t0 + 9 * 10**6)
                ids.append(root.trace_id)
        mlflow.flush_trace_async_logging()
    return mlflow_server.uri, exp, ids


# One-shot helpers: open a session, make one call, close it (tests of a single call).
def census_of(uri: str, exp: str, **kw) -> dict:
    """The census as its JSON dict (what is stored), computed in a session of its own."""
    from insights.analytics import AnalyticsSession, compute_census

    with AnalyticsSession(uri, exp) as session:
        return compute_census(session, **kw).model_dump(mode="json")


def sql_of(uri: str, exp: str, sql: str, **kw):
    from insights.analytics import AnalyticsSession, execute_sql

    with AnalyticsSession(uri, exp) as session:
        return execute_sql(session, sql, **kw)


def cohort_of(uri: str, exp: str, *args, **kw) -> dict:
    from insights.analytics import AnalyticsSession, cohort_stats

    with AnalyticsSession(uri, exp) as session:
        return cohort_stats(session, *args, **kw)
