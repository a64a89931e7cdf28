"""Trace SQL on Spark: the same read-only queries, run as written by Spark SQL.

Why: Trace SQL is Spark SQL already, and experiments too big for one machine live where Spark
runs. DuckDB stays the embedded default; ``engine="spark"`` (``--engine spark``,
``$INSIGHTS_ENGINE``) sends a query here instead.

Data: either the experiment's traces exported (incrementally, see ``export``) into a folder
beside the DuckDB cache and read back as Parquet, or ``table``: an existing Parquet or Delta
path, or a catalog table name, with the `traces` schema. Either way it is the temp view
``traces`` the query reads. The export holds finished traces only, and assessments as they
were when a trace was exported, so on a live experiment the two engines can differ there.

Safety: a query passes the DuckDB path's guard (``sql.parse_query``: one SELECT/WITH that reads
only `traces`) plus a refusal of Spark's functions that call into the JVM; it then runs under
a time limit (``interruptAll`` from a timer) and only ``max_rows`` rows are collected.

Results: collected rows are converted as the DuckDB path converts them for JSON (timestamps
as ISO strings, structs and maps as objects, decimals as floats), so both engines answer with
the same columns and values. pyspark is imported only here, and only when a query runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from insights.errors import InvalidInputError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from insights.analytics.session import AnalyticsSession
    from insights.analytics.sql import SqlResult

ENGINE_ENV = "INSIGHTS_ENGINE"
ENGINES = ("duckdb", "spark")
DEFAULT_MASTER = "local[2]"
DRIVER_MEMORY_ENV = "INSIGHTS_SPARK_DRIVER_MEMORY"
_CONNECT_MODE_ENV = "SPARK_CONNECT_MODE_ENABLED"  # set by pyspark when a Connect session starts
# Spark functions that reach outside the query: static Java method calls, file names.
_DENIED_SPARK_FUNCTIONS = ("reflect", "java_method", "try_reflect", "input_file_name",
                           "input_file_block_start", "input_file_block_length", "current_user",
                           "session_user", "user", "version")

_JSON_PATH_LITERAL = re.compile(r"'\$[^'\\]*'")  # a single-quoted literal starting with $
_JSON_KEY_STEP = re.compile(r'\["([^"\[\]]+)"\]')
_lock = threading.RLock()  # one query at a time owns the `traces` temp view
_spark: dict[str, Any] = {"session": None, "key": None}
# The last export read: its files (name, size, mtime) and its DataFrame, reused while they are
# unchanged (each read lists the files and runs a Spark job to read the schema).
_export_frame: dict[str, Any] = {"files": None, "frame": None}
# The frame the `traces` view was last made from, and on which session: registering it again
# costs Spark an analysis of the plan (~40-90 ms a query), so an unchanged frame is kept.
_registered: dict[str, Any] = {"spark": None, "frame": None}

SPARK_TRACES_SCHEMA = (
    "trace_id STRING, request_time TIMESTAMP_NTZ, request_time_ms BIGINT, "
    "execution_time_ms BIGINT, state STRING, request STRING, response STRING, "
    "response_empty BOOLEAN, trace_name STRING, session_id STRING, "
    "tags MAP<STRING, STRING>, metadata MAP<STRING, STRING>, input_tokens BIGINT, "
    "output_tokens BIGINT, total_tokens BIGINT, total_cost DOUBLE, "
    "spans ARRAY<STRUCT<start_time_ms: DOUBLE, span_id: STRING, parent_id: STRING, "
    "name: STRING, span_type: STRING, status_code: STRING, status_message: STRING, "
    "end_time_ms: DOUBLE, duration_ms: DOUBLE, inputs: STRING, outputs: STRING, "
    "attributes: STRING, events: STRING>>, "
    "assessments ARRAY<STRUCT<name: STRING, value: STRING, source_type: STRING, "
    "rationale: STRING>>")


def resolve_engine(engine: str | None) -> str:
    """``engine``, else $INSIGHTS_ENGINE, else duckdb; anything else is refused."""
    value = engine if engine is not None else os.environ.get(ENGINE_ENV) or "duckdb"
    name = str(value).strip().lower()
    if name not in ENGINES:
        raise InvalidInputError(f"unknown engine {value!r}; use one of: {', '.join(ENGINES)}")
    return name


def spark_session(remote: str | None = None, master: str | None = None) -> SparkSession:
    """This process's SparkSession, started on first use and then kept.

    ``remote`` (``sc://host:port``) connects to a Spark Connect server; otherwise a classic
    session on ``master`` (default ``local[2]``). One process keeps one session: asking for a
    different one later is refused rather than silently answered by the first.
    """
    if remote and master:
        raise InvalidInputError("pass either --spark-remote or --spark-master, not both")
    if remote and not str(remote).startswith("sc://"):
        raise InvalidInputError(f"--spark-remote must look like sc://HOST:PORT, got {remote!r}")
    key = f"remote={remote}" if remote else f"master={master or DEFAULT_MASTER}"
    with _lock:
        if _spark["session"] is not None:
            if _spark["key"] != key:
                raise InvalidInputError(f"this process already runs Spark with {_spark['key']}; "
                                        f"cannot switch to {key}")
            return _spark["session"]
        _spark["session"] = _start(remote, master or DEFAULT_MASTER)
        _spark["key"] = key
        return _spark["session"]


def _start(remote: str | None, master: str) -> SparkSession:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise InvalidInputError("the Spark engine needs pyspark: pip install "
                                "'insights-agent[spark]'") from None
    if remote:
        return _connect(SparkSession, remote)
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise InvalidInputError("the Spark engine needs Java 17+ (java not found on PATH and "
                                "JAVA_HOME unset)")
    builder = (SparkSession.builder.master(master).appName("insights-agent")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.sql.parquet.inferTimestampNTZ.enabled", "true")
               .config("spark.driver.memory", os.environ.get(DRIVER_MEMORY_ENV, "2g")))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    _quiet_error_logs()
    return spark


def _connect(session_class: Any, remote: str) -> SparkSession:
    """A Spark Connect session on ``remote``, checked with one quick call before it is kept.

    Why: building the session sends nothing, and pyspark retries an unreachable server for
    about ten minutes per call; the probe runs under a short retry policy instead, so a wrong
    or dead URL is one line in seconds. The probe also pins the session's time zone to UTC,
    as the local session is, so hour and day buckets match DuckDB whatever the server's zone.
    """
    try:
        with warnings.catch_warnings():  # pyspark's pandas-version notice, on every start
            warnings.filterwarnings("ignore", message="PySpark does not yet fully support",
                                    category=FutureWarning)
            spark = session_class.builder.remote(remote).getOrCreate()
    except ImportError as exc:  # Spark Connect's client needs grpcio, pandas, pyarrow
        raise InvalidInputError(f"--spark-remote needs pip install 'pyspark[connect]' "
                                f"({_one_line(str(exc))})") from None
    from pyspark.sql.connect.client.retries import DefaultPolicy

    client = spark.client
    patient = client.get_retry_policies()
    # four quick retries (~2 s in all): a server that is up answers the first
    client.set_retry_policies([DefaultPolicy(max_retries=4, max_backoff=1000)])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the retry-exhausted warning: the error says it
            spark.conf.set("spark.sql.session.timeZone", "UTC")
    except Exception as exc:  # noqa: BLE001 - gRPC failures arrive as several exception types
        with contextlib.suppress(Exception):
            spark.stop()
        os.environ.pop(_CONNECT_MODE_ENV, None)
        raise InvalidInputError(f"--spark-remote {remote}: cannot reach the Spark Connect "
                                f"server ({_one_line(str(exc))})") from None
    client.set_retry_policies(patient)  # later calls keep pyspark's resilience
    _quiet_error_logs()
    return spark


def _quiet_error_logs() -> None:
    """pyspark logs every failed query with its JVM stack trace to stderr; our callers get
    the error as one line instead."""
    try:
        from pyspark.logger import PySparkLogger
    except ImportError:
        return
    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).disabled = True


def lock() -> threading.RLock:
    """The lock a caller holds while it owns the `traces` temp view (and views built on it)."""
    return _lock


def stop_spark() -> None:
    """Stop this process's SparkSession (tests, or a long-lived process shutting down)."""
    with _lock:
        if _spark["session"] is not None:
            _spark["session"].stop()
        if str(_spark["key"]).startswith("remote="):  # pyspark leaves it set after stop(),
            os.environ.pop(_CONNECT_MODE_ENV, None)  # and a later local start then fails
        _spark["session"], _spark["key"] = None, None
        _export_frame.update(files=None, frame=None)
        _registered.update(spark=None, frame=None)


def export_dir(session: AnalyticsSession) -> Path:
    """Where an experiment's traces are exported for Spark: beside its DuckDB cache file."""
    return session.path.with_name(session.path.stem + "-parquet")


def traces_frame(spark: SparkSession, session: AnalyticsSession | None = None,
                 table: str | None = None) -> DataFrame:
    """The `traces` data: ``table`` as given, else the session's experiment exported to
    Parquet (only traces new since the last export are written)."""
    if table:
        return _table_frame(spark, table)
    if session is None:
        raise InvalidInputError("the Spark engine needs an experiment id or --table")
    from insights.analytics.export import export_traces

    out = export_dir(session)
    export_traces(session, out)
    files = sorted(out.glob("day=*/*.parquet"))
    if not files:
        return spark.createDataFrame([], SPARK_TRACES_SCHEMA)
    # the export only adds files: the same files with the same sizes and times, read by the
    # same session, are the same data
    seen = (id(spark), str(out), [(str(f), *_size_time(f)) for f in files])
    with _lock:
        if _export_frame["files"] != seen:
            _export_frame.update(files=seen, frame=spark.read.parquet(str(out)).drop("day"))
        return _export_frame["frame"]


def _size_time(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def register_traces(spark: SparkSession, session: AnalyticsSession | None = None,
                    table: str | None = None) -> None:
    """Make `traces` the temp view of the data; a Spark failure (a server gone since the
    session started, an unreadable table) is one line."""
    from pyspark.errors import PySparkException

    try:
        frame = traces_frame(spark, session, table)
        with _lock:
            if _registered["spark"] is spark and _registered["frame"] is frame:
                return  # the view already reads this frame (queries cannot drop or replace it)
            frame.createOrReplaceTempView("traces")
            _registered.update(spark=spark, frame=frame)
    except PySparkException as exc:
        raise InvalidInputError(f"Spark: {_one_line(str(exc))}") from None


def _table_frame(spark: SparkSession, table: str) -> DataFrame:
    """A Parquet/Delta path (local, or any URI Spark reads), else a catalog table name."""
    from pyspark.errors import PySparkException

    is_path = "/" in table or "\\" in table or "://" in table
    try:
        if not is_path:
            return spark.table(table)
        local = Path(table.removeprefix("file://")).expanduser()
        remote = str(_spark["key"]).startswith("remote=")  # the server's files, not ours
        if not remote and ("://" not in table or table.startswith("file://")):
            if not local.exists():
                raise InvalidInputError(f"--table {table}: no such file or directory")
            if (local / "_delta_log").is_dir():
                return spark.read.format("delta").load(str(local))
            df = spark.read.parquet(str(local))
        else:
            df = spark.read.parquet(table)
        # an export's partition column is not part of the `traces` schema
        return df.drop("day") if "day" in df.columns and "trace_id" in df.columns else df
    except PySparkException as exc:
        raise InvalidInputError(f"--table {table}: {_one_line(str(exc))}") from None


def execute_sql_spark(sql: str, *, session: AnalyticsSession | None = None,
                      table: str | None = None, remote: str | None = None,
                      master: str | None = None, max_rows: int | None = 10_000,
                      timeout: float | None = None) -> SqlResult:
    """Run one read-only Spark SQL query over `traces` on Spark, as written.

    Same guard and result shape as ``sql.execute_sql``; the DuckDB memory cap does not apply.
    """
    from insights.analytics.sql import SqlResult, parse_query, sql_limits

    seconds, _memory = sql_limits(timeout, None)
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int)
                                 or max_rows < 1):
        raise InvalidInputError(f"max_rows must be a positive integer, got {max_rows!r}")
    tree = parse_query(sql)
    _check_spark_functions(tree)
    sql = spark_json_paths(sql)
    spark = spark_session(remote, master)
    with _lock:
        register_traces(spark, session, table)
        rows, columns = _collect(spark, sql, max_rows, seconds)
    truncated = max_rows is not None and len(rows) > max_rows
    return SqlResult(columns, [[jsonable(v) for v in r] for r in rows[:max_rows]], truncated)


def _collect(spark: SparkSession, sql: str, max_rows: int | None,
             seconds: float) -> tuple[list, list[str]]:
    """Run ``sql`` under a time limit (``deadline.interrupt_after``: a job that starts after
    the time is up is interrupted too); at most ``max_rows + 1`` rows collected."""
    from insights.analytics.deadline import interrupt_after

    def interrupt() -> None:
        try:
            spark.interruptAll()
        except Exception:  # noqa: BLE001 - older classic sessions: cancel the jobs instead
            spark.sparkContext.cancelAllJobs()

    with interrupt_after(seconds, interrupt) as fired:
        try:
            df = spark.sql(sql)
            limited = df if max_rows is None else df.limit(max_rows + 1)
            return limited.collect(), list(df.columns)
        except Exception as exc:  # noqa: BLE001 - py4j errors are not PySparkExceptions
            if fired.is_set():
                raise InvalidInputError(f"query exceeded the {seconds:g} s time limit (raise "
                                        "with --timeout or $INSIGHTS_SQL_TIMEOUT)") from None
            if isinstance(exc, InvalidInputError):
                raise
            raise InvalidInputError(f"Spark SQL error: {_one_line(str(exc))}") from None


def spark_json_paths(sql: str) -> str:
    """The one change made to a query: in a '$...' literal, JSON path steps ``["key"]`` (the form the
    schema help and the agent use for keys with dots; DuckDB reads it) become ``['key']``,
    the form Spark's get_json_object reads. Spark would silently return NULL otherwise.
    The quotes are backslash-escaped, valid inside either kind of Spark string literal."""
    def path(m: re.Match) -> str:
        return _JSON_KEY_STEP.sub(lambda k: f"[\\'{k.group(1)}\\']", m.group(0))

    return _JSON_PATH_LITERAL.sub(path, sql)


def _check_spark_functions(tree: Any) -> None:
    from sqlglot import exp

    for func in tree.find_all(exp.Func):
        name = str(func.this).lower() if isinstance(func, exp.Anonymous) else func.sql_name().lower()
        if name in _DENIED_SPARK_FUNCTIONS:
            raise InvalidInputError(f"function {name}() is not allowed in trace SQL")


def jsonable(v: Any) -> Any:
    """A collected Spark value as the DuckDB path returns it: Rows become dicts, then the
    same conversion (``sql._jsonable``) applies."""
    from pyspark.sql import Row

    from insights.analytics.sql import _jsonable

    if isinstance(v, Row):
        return {k: jsonable(x) for k, x in v.asDict(recursive=False).items()}
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return _jsonable(v)


def _one_line(msg: str) -> str:
    from insights.analytics.sql import _one_line as one

    return one(msg.replace("\n", " "))
