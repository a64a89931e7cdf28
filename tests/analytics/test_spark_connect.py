"""The Spark engine through a real Spark Connect server (``--spark-remote sc://HOST:PORT``).

A Spark Connect server is started from the installed pyspark, once for the module, as its own
process group on a free 127.0.0.1 port; the engine connects to it as a client. Trace SQL,
cohort statistics, the census, ``--table`` and the CLI must answer as DuckDB does, and bad
input must end in one line. Real parts only: a real MLflow SQLite store, a real server.
Skipped, with the reason, only when pyspark, Java or the Connect client's modules are missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from insights.analytics import cohort_stats, compute_census, execute_sql
from insights.analytics.export import export_traces
from insights.errors import InvalidInputError

pytest.importorskip("pyspark", reason="pyspark is not installed (pip install '.[spark]')")
if not shutil.which("java"):
    pytest.skip("Java is not installed (the Spark engine needs Java 17+)", allow_module_level=True)
for _module, _package in (("grpc", "grpcio"), ("grpc_status", "grpcio-status"),
                          ("google.rpc", "googleapis-common-protos"), ("pandas", "pandas"),
                          ("pyarrow", "pyarrow"), ("zstandard", "zstandard")):
    pytest.importorskip(_module, reason=f"the Spark Connect client needs {_package} "
                                        "(pip install 'pyspark[connect]')")

from insights.analytics import spark_engine  # noqa: E402
from insights.analytics.spark_census import spark_census  # noqa: E402
from insights.cli import app  # noqa: E402
from analytics.conftest import assert_same_census  # noqa: E402
from analytics.test_spark_engine import QUERIES, SLOW_QUERY, canonical  # noqa: E402
from helpers import spark_conf  # noqa: E402

pytestmark = pytest.mark.spark

SERVER_START_S = 180  # generous: the server took ~25 s on a busy 2-core machine
DEAD_SERVER_BUDGET_S = 60  # how long a refusal of an unreachable server may take, start-up included
CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(log: Path, chars: int = 4000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no server log)"


def wait_for_port(proc: subprocess.Popen, port: int, log: Path) -> None:
    """Return once the server accepts connections on ``port``; raise with its log's tail if it
    exits first or does not listen within ``SERVER_START_S``."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the Spark Connect server exited with {proc.returncode}:\n"
                               f"{log_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the Spark Connect server did not listen on 127.0.0.1:{port} within "
                       f"{SERVER_START_S} s:\n{log_tail(log)}")


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left of it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """A real Spark Connect server on 127.0.0.1; its ``sc://`` URL, with this process's
    Spark session connected to it. The server's process group is always killed at the end."""
    import pyspark

    home = os.path.dirname(pyspark.__file__)
    port = free_port()
    log = tmp_path_factory.mktemp("spark-connect") / "server.log"
    cmd = [os.path.join(home, "bin", "spark-submit"), "--class", CONNECT_SERVER_CLASS,
           "--name", "insights-test", "--master", "local[1]",
           "--conf", f"spark.connect.grpc.binding.port={port}",
           "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
           "--conf", "spark.ui.enabled=false",
           # a server in a zone with a half-hour offset: the client must pin UTC, or the
           # census's hour buckets move by 30 minutes against DuckDB's
           "--conf", "spark.sql.session.timeZone=Asia/Kolkata",
           # the local engine's 2 GB: the time-limit test's query builds 800 MB arrays
           "--driver-memory", "2g", *spark_conf.submit_args(), "spark-internal"]
    spark_engine.stop_spark()  # one session per process: drop any classic one first
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, "SPARK_HOME": home},
                                start_new_session=True)
    try:
        wait_for_port(proc, port, log)
        url = f"sc://127.0.0.1:{port}"
        spark_engine.spark_session(url)
        yield url
    finally:
        try:
            spark_engine.stop_spark()  # while the server still answers the session's release
        finally:
            kill_group(proc)


def test_queries_run_on_the_connect_server_not_a_local_spark(remote):
    spark = spark_engine.spark_session(remote)
    assert type(spark).__module__ == "pyspark.sql.connect.session"
    assert spark.conf.get("spark.app.name") == "insights-test"  # the server's own name
    # asking for a local Spark while connected is refused rather than answered by the server
    with pytest.raises(InvalidInputError, match="cannot switch to master=local"):
        spark_engine.spark_session(master="local[1]")


@pytest.mark.parametrize("name", ["count_by_state", "lateral_view_spans", "assessments",
                                  "cte_and_window", "tag_access", "span_attribute_json",
                                  "whole_rows"])
def test_trace_sql_over_connect_equals_duckdb(name, sqlite_session, remote):
    sql = QUERIES[name]
    duck = execute_sql(sqlite_session, sql)
    over_connect = spark_engine.execute_sql_spark(sql, session=sqlite_session, remote=remote)
    assert duck.rows, "the query should return rows on this corpus"
    assert over_connect.columns == duck.columns
    assert canonical(over_connect.rows, False) == canonical(duck.rows, False)


@pytest.mark.parametrize("cohort, outcome", [
    ("length(request) > 50", "state = 'ERROR'"),
    ("tags['parity'] = 'even'", "exists(spans, s -> s.span_type = 'TOOL' AND s.status_code = 'ERROR')"),
])
def test_cohort_stats_over_connect_equal_duckdb(cohort, outcome, sqlite_session, remote):
    control = f"NOT ({cohort})"
    duck = cohort_stats(sqlite_session, cohort, control, outcome, samples=3, engine="duckdb")
    over_connect = cohort_stats(sqlite_session, cohort, control, outcome, samples=3,
                                engine="spark", spark={"remote": remote})
    assert duck["cohort"]["n"] + duck["control"]["n"] == 20
    assert duck["cohort"]["events"] + duck["control"]["events"] > 0
    assert over_connect == duck


def test_census_over_connect_equals_duckdb(sqlite_session, remote):
    duck = compute_census(sqlite_session)
    over_connect = spark_census(sqlite_session, remote=remote)
    assert duck.total_traces == 20 and duck.errors and duck.assessments and duck.tools
    assert_same_census(duck, over_connect)


def test_table_option_over_connect_reads_an_export(sqlite_session, remote, tmp_path):
    out = tmp_path / "table"
    export_traces(sqlite_session, out)
    for sql in (QUERIES["count_by_state"], QUERIES["lateral_view_spans"]):
        duck = execute_sql(sqlite_session, sql)
        over_connect = spark_engine.execute_sql_spark(sql, table=str(out), remote=remote)
        assert over_connect.columns == duck.columns
        assert canonical(over_connect.rows, False) == canonical(duck.rows, False)


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_cli_execute_sql_over_connect_matches_duckdb(sqlite_corpus, remote):
    uri, exp, _ids = sqlite_corpus
    sql = "SELECT state, count(*) AS n FROM traces GROUP BY state ORDER BY state"
    base = ["--tracking-uri", uri, "execute-sql", "--experiment-id", exp, sql, "--output", "json"]
    duck = run_cli(*base)
    over_connect = run_cli(*base, "--engine", "spark", "--spark-remote", remote)
    assert duck.exit_code == 0, duck.output
    assert over_connect.exit_code == 0, over_connect.output
    assert json.loads(duck.stdout)["rows"] == [["ERROR", 2], ["OK", 18]]
    assert json.loads(over_connect.stdout) == json.loads(duck.stdout)


def test_slow_query_over_connect_is_interrupted_at_the_time_limit(sqlite_session, remote):
    started = time.monotonic()
    with (spark_conf.default_codegen(spark_engine.spark_session(remote)),
          pytest.raises(InvalidInputError, match="exceeded the 1 s time limit")):
        spark_engine.execute_sql_spark(SLOW_QUERY, session=sqlite_session, remote=remote,
                                       timeout=1)
    assert time.monotonic() - started < 60  # interrupted, not run to its end
    # the connection and the server's session still answer afterwards
    assert spark_engine.execute_sql_spark("SELECT count(*) AS n FROM traces",
                                          session=sqlite_session,
                                          remote=remote).rows == [[20]]


@pytest.mark.parametrize("sql, message", [
    ("SELECT no_such_column FROM traces", "Spark SQL error"),
    ("SELECT reflect('java.lang.System', 'getenv', 'HOME') FROM traces", "reflect() is not allowed"),
])
def test_bad_queries_over_connect_are_refused_in_one_line(sql, message, sqlite_session, remote):
    with pytest.raises(InvalidInputError) as info:
        spark_engine.execute_sql_spark(sql, session=sqlite_session, remote=remote)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_table_on_the_server_is_refused_in_one_line(remote, tmp_path):
    missing = str(tmp_path / "no-such-export")
    with pytest.raises(InvalidInputError) as info:
        spark_engine.execute_sql_spark("SELECT count(*) FROM traces", table=missing, remote=remote)
    assert f"--table {missing}" in str(info.value) and "\n" not in str(info.value)


def test_unreachable_server_is_refused_in_one_line_in_bounded_time(sqlite_corpus):
    """The CLI against an ``sc://`` port nothing listens on, in a process of its own (a hang
    must not take this one's Spark session with it): exit 2 and one line on stderr, soon.

    pyspark warns about pandas 3 on stderr when its Connect client is imported; warnings are
    off in the child so that only the engine's own message is judged here."""
    uri, exp, _ids = sqlite_corpus
    dead = f"sc://127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "insights.cli", "--tracking-uri", uri, "execute-sql",
           "--experiment-id", exp, "SELECT count(*) AS n FROM traces", "--engine", "spark",
           "--spark-remote", dead, "--output", "json"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=DEAD_SERVER_BUDGET_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"no answer in {DEAD_SERVER_BUDGET_S} s; stacks:\n{err[-4000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == 2, err[-3000:]
    assert dead in err and len(err.strip().splitlines()) == 1, err[-3000:]


def test_a_local_spark_starts_after_a_connect_session_stops(remote, tmp_path):
    """pyspark marks the process Connect-only when a remote session starts and keeps the mark
    after stop(); stop_spark clears it, so the same process can start a local Spark later."""
    spark_engine.stop_spark()
    assert "SPARK_CONNECT_MODE_ENABLED" not in os.environ
    try:
        local = spark_engine.spark_session()
        assert local.sql("SELECT 1 AS x").collect()[0].x == 1
    finally:
        spark_engine.stop_spark()
        spark_engine.spark_session(remote)  # the module's remaining tests use the server
