"""Read an MLflow SQLite tracking store's own tables, read-only, into the DuckDB cache.

Why: going through ``search_traces`` rebuilds a Python ``Trace`` per row and re-parses every
span; reading ``trace_info`` / ``spans`` / ``assessments`` with one scan each and parsing span
JSON inside DuckDB is two orders of magnitude faster. The connection is opened with
``mode=ro`` so the store can never be modified.

How rows travel: when DuckDB's own SQLite extension can be loaded (the ``duckdb-ext-sqlite``
wheel, or an extension the user installed), DuckDB runs each query on the SQLite file itself
and no row passes through Python (at 100k traces: light load 2.4 s instead of 3.3 s, span
payloads 15 s instead of 24 s, on two cores). Otherwise Python's ``sqlite3`` reads rows in
batches into Arrow, which is faster for loads under ``NATIVE_MIN_TRACES`` traces, since
the extension itself takes a while to load. Both paths run the same SQLite SQL and fill the
same stage tables (``INSIGHTS_SQLITE_READER=python`` or ``=duckdb`` forces one).

Two load levels keep the census cheap: the light load (census) reads span ``content`` only
for root spans (request/response) and ERROR spans (status message, exception event); the
full load (Trace SQL) reads every span payload plus trace tags and metadata.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import sqlite3
from collections.abc import Iterator
from urllib.parse import unquote

import duckdb
import pyarrow as pa

from insights import compat
from insights.analytics.staging import stage
from insights.errors import InvalidInputError, TrackingServerError

BATCH = 50_000
NATIVE_MIN_TRACES = 30_000  # below this, loading DuckDB's SQLite extension costs more than it saves
S, I, F, B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
DUCK_TYPES = {S: "VARCHAR", I: "BIGINT", F: "DOUBLE", B: "BOOLEAN"}
STORE_ALIAS = "insights_store"
_EXC = ("list_filter(from_json(json_extract(content, '$.events'), "
        "'[{\"name\":\"VARCHAR\",\"attributes\":\"MAP(VARCHAR,VARCHAR)\"}]'), "
        "lambda e: e.name = 'exception')[1].attributes")


def sqlite_path(uri: str) -> str:
    """Filesystem path of a ``sqlite:///`` URI (``sqlite:////abs`` or ``sqlite:///rel``)."""
    return unquote(uri.split("sqlite:///", 1)[1].split("?", 1)[0])


class SqliteSource:
    """One experiment of one SQLite store; every read is a read-only scan.

    The tables and columns read here are listed in ``insights.compat.SQLITE_TABLES``.
    """

    stages_full = False  # payloads are read only when a query needs them (load_full)

    def __init__(self, uri: str, experiment_id: str):
        self.path = sqlite_path(uri)
        try:
            self.experiment_id = int(experiment_id)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"experiment id must be numeric, got {experiment_id!r}") from exc
        try:
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                        check_same_thread=False)
            self.conn.execute("SELECT 1 FROM trace_info LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise TrackingServerError(f"cannot read SQLite store {self.path}: {exc}") from exc
        try:
            compat.check_sqlite_store(self.conn, self.path)
        except BaseException:
            self.conn.close()
            raise
        self.ti_cols = compat.trace_info_columns(self.conn)
        self.native = False  # set by prepare(): does DuckDB read the file itself?

    def close(self) -> None:
        self.conn.close()

    def prepare(self, con: duckdb.DuckDBPyConnection, traces: int) -> None:
        """Attach the store (of ``traces`` traces) to ``con`` for DuckDB to read, when that
        pays off and the SQLite extension loads.

        Loading the extension (a 50 MB library whose signature DuckDB checks) costs more than
        it saves for stores under ``NATIVE_MIN_TRACES`` traces, so those use Python's reader.
        Called once, before the session's sandbox forbids loading extensions, and outside any
        transaction: a failed LOAD or ATTACH inside one would abort it.
        """
        reader = os.environ.get("INSIGHTS_SQLITE_READER", "").lower()
        if reader == "python" or (reader != "duckdb" and traces < NATIVE_MIN_TRACES):
            return
        self.native = _attach(con, self.path)

    def _stage(self, con: duckdb.DuckDBPyConnection, name: str, sql: str, params: tuple,
               schema: pa.Schema, transform=None) -> None:
        """Run SQLite ``sql`` and put its rows, named and typed by ``schema``, in ``name``."""
        if not self.native:
            return stage(con, name, self._rows(sql, params, schema), schema, transform)
        pieces = sql.split("?")  # every parameter is an int: inline it
        if len(pieces) != len(params) + 1:
            raise ValueError("each '?' in the SQL must be a parameter")
        text = pieces[0] + "".join(str(int(v)) + p for v, p in zip(params, pieces[1:]))
        cols = ", ".join(f"CAST({f.name} AS {DUCK_TYPES[f.type]}) AS {f.name}" for f in schema)
        src = (f"(SELECT {cols} FROM sqlite_query('{STORE_ALIAS}', {_quote(text)}) "
               f"AS q({', '.join(f.name for f in schema)}))")
        con.execute(f"DROP TABLE IF EXISTS {name}")
        try:
            con.execute(f"CREATE TEMP TABLE {name} AS "
                        f"{transform(src) if transform else 'SELECT * FROM ' + src}")
        except duckdb.Error as exc:
            raise TrackingServerError(f"reading SQLite store failed: {_first_line(exc)}") from exc

    def _rows(self, sql: str, params: tuple, schema: pa.Schema) -> Iterator[pa.Table]:
        gc_was_on = gc.isenabled()
        gc.disable()  # millions of short-lived row tuples: the cyclic GC only slows this down
        try:
            cur = self.conn.execute(sql, params)
            while rows := cur.fetchmany(BATCH):
                cols = list(zip(*rows))
                del rows
                yield pa.table([pa.array(c, type=f.type) for c, f in zip(cols, schema)],
                               schema=schema)
        except sqlite3.Error as exc:
            raise TrackingServerError(f"reading SQLite store failed: {exc}") from exc
        finally:
            if gc_was_on:
                gc.enable()

    def fingerprint(self) -> dict:
        """Cheap signature of the experiment: changes whenever traces or assessments change."""
        try:
            n, max_ts = self.conn.execute(
                "SELECT count(*), coalesce(max(timestamp_ms), 0) FROM trace_info "
                "WHERE experiment_id = ?", (self.experiment_id,)).fetchone()
            # store-wide maximum: a covering-index lookup; a change elsewhere only costs
            # one cheap "assessments updated since" query for this experiment
            (max_a,) = self.conn.execute(
                "SELECT coalesce(max(last_updated_timestamp), 0) FROM assessments").fetchone()
        except sqlite3.Error as exc:
            raise TrackingServerError(f"reading SQLite store failed: {exc}") from exc
        return {"count": n, "max_ts": max_ts, "max_assessment_ts": max_a}

    def _col(self, name: str) -> str:
        return name if name in self.ti_cols else "NULL"

    def _ids(self, since_ms: int, column: str) -> tuple[str, tuple]:
        """WHERE clause restricting ``column`` to traces at/after since_ms (none for a full load)."""
        if since_ms <= 0:
            return "", ()
        return (f" AND {column} IN (SELECT request_id FROM trace_info WHERE experiment_id = ? "
                "AND timestamp_ms >= ?)", (self.experiment_id, since_ms))

    def load_light(self, con: duckdb.DuckDBPyConnection, since_ms: int) -> None:
        """Stage traces with timestamp >= since_ms and their light spans (stage_ti, stage_spans)."""
        p = (self.experiment_id, since_ms)
        ti = pa.schema([("trace_id", S), ("request_time_ms", I), ("execution_time_ms", I),
                        ("state", S), ("trace_name", S), ("session_id", S),
                        ("input_tokens", I), ("output_tokens", I), ("total_tokens", I),
                        ("total_cost", F)])
        sel = ", ".join(self._col(c) for c in ["trace_name", "session_id", "input_tokens",
                                                "output_tokens", "total_tokens", "total_cost"])
        self._stage(con, "stage_ti", (
            "SELECT request_id, timestamp_ms, execution_time_ms, status, " + sel +
            " FROM trace_info WHERE experiment_id = ? AND timestamp_ms >= ?"), p, ti)
        cond, cp = self._ids(since_ms, "trace_id")
        sp = pa.schema([("trace_id", S), ("span_id", S), ("parent_id", S), ("name", S),
                        ("span_type", S), ("status", S), ("start_ns", I), ("end_ns", I),
                        ("is_root", I), ("content", S)])
        self._stage(con, "stage_spans", (
            "SELECT trace_id, span_id, parent_span_id, name, type, status, start_time_unix_nano,"
            " end_time_unix_nano, parent_span_id IS NULL AND 1, CASE WHEN parent_span_id IS NULL"
            " OR status = 'ERROR' THEN content END FROM spans NOT INDEXED WHERE experiment_id = ?"
            + cond), (self.experiment_id, *cp), sp, _light_span_sql)

    def load_full(self, con: duckdb.DuckDBPyConnection, lo_ms: int, hi_ms: int) -> None:
        """Stage tags, metadata and full span payloads of traces in [lo_ms, hi_ms)."""
        kv = pa.schema([("trace_id", S), ("key", S), ("value", S)])
        exp = (f"SELECT request_id FROM trace_info WHERE experiment_id = {self.experiment_id} "
               f"AND timestamp_ms >= {int(lo_ms)} AND timestamp_ms < {int(hi_ms)}")
        for table, name in (("trace_tags", "stage_tags"), ("trace_request_metadata", "stage_meta")):
            self._stage(con, name, f"SELECT request_id, key, value FROM {table} "
                                   f"WHERE request_id IN ({exp})", (), kv)
        sp = pa.schema([("trace_id", S), ("span_id", S), ("parent_id", S), ("name", S),
                        ("span_type", S), ("status", S), ("start_ns", I), ("end_ns", I),
                        ("content", S)])
        self._stage(con, "stage_full", (
            "SELECT trace_id, span_id, parent_span_id, name, type, status, start_time_unix_nano,"
            f" end_time_unix_nano, content FROM spans WHERE trace_id IN ({exp})"), (), sp,
            _full_span_sql)

    def load_assessments(self, con: duckdb.DuckDBPyConnection, updated_after_ms: int) -> None:
        """Stage assessments updated after ``updated_after_ms`` into ``stage_assessments``."""
        sch = pa.schema([("trace_id", S), ("assessment_id", S), ("name", S), ("value", S),
                         ("source_type", S), ("rationale", S), ("last_updated_ms", I),
                         ("valid", I)])
        self._stage(con, "stage_assessments", (
            "SELECT a.trace_id, assessment_id, name, value, source_type, rationale, "
            "last_updated_timestamp, valid FROM assessments a JOIN trace_info t "
            "ON t.request_id = a.trace_id WHERE t.experiment_id = ? "
            "AND a.last_updated_timestamp > ?"), (self.experiment_id, updated_after_ms), sch,
            lambda src: (
                "SELECT trace_id, assessment_id, name, "
                "coalesce(json_extract_string(value, '$'), value) AS value, source_type, "
                f"rationale, last_updated_ms, valid::BOOLEAN AS valid FROM {src}"))


def _attach(con: duckdb.DuckDBPyConnection, path: str) -> bool:
    """Attach the store read-only through DuckDB's SQLite extension; False if unavailable."""
    attached = con.execute("SELECT count(*) FROM duckdb_databases() WHERE database_name = ?",
                           [STORE_ALIAS]).fetchone()[0]
    if attached:  # another session on the same cache file attached it already
        return True
    try:
        _load_sqlite_extension(con)
        con.execute(f"ATTACH IF NOT EXISTS {_quote(path)} AS {STORE_ALIAS} "
                    "(TYPE sqlite, READ_ONLY)")
        return True
    except duckdb.Error:
        return False


def _load_sqlite_extension(con: duckdb.DuckDBPyConnection) -> None:
    """Load the extension from the duckdb-ext-sqlite wheel if present, else an installed one.

    Never downloads: DuckDB only loads a signed binary from a path or its extension folder.
    """
    spec = importlib.util.find_spec("duckdb_ext")
    platform = con.execute("PRAGMA platform").fetchone()[0]
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(root, "extensions", f"v{duckdb.__version__}", platform,
                            "sqlite_scanner.duckdb_extension")
        if os.path.exists(path):
            con.execute(f"LOAD {_quote(path)}")
            return
    con.execute("LOAD sqlite")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


def _light_span_sql(src: str) -> str:
    # one JSON parse per span for the three paths (separate json_extract calls re-parse);
    # content is NULL except on root and ERROR spans
    paths = ("['$.status.message', '$.attributes.\"mlflow.spanInputs\"', "
             "'$.attributes.\"mlflow.spanOutputs\"']")
    return (
        "SELECT trace_id, span_id, parent_id, name, span_type, status AS status_code, "
        "nullif(j[1], '') AS status_message, start_ns / 1e6 AS start_time_ms, "
        "end_ns / 1e6 AS end_time_ms, (end_ns - start_ns) / 1e6 AS duration_ms, "
        "is_root::BOOLEAN AS is_root, exc['exception.type'] AS exception_type, "
        "exc['exception.message'] AS exception_message, "
        "CASE WHEN is_root = 1 THEN j[2] END AS root_inputs, "
        "CASE WHEN is_root = 1 THEN j[3] END AS root_outputs "
        f"FROM (SELECT *, json_extract_string(content, {paths}) AS j, "
        f"CASE WHEN status = 'ERROR' THEN {_EXC} END AS exc FROM {src})")


def _full_span_sql(src: str) -> str:
    # one JSON parse per span for all four paths (separate json_extract calls re-parse)
    paths = ("['$.status.message', '$.attributes.\"mlflow.spanInputs\"', "
             "'$.attributes.\"mlflow.spanOutputs\"', '$.attributes', '$.events']")
    return (
        "SELECT trace_id, span_id, parent_id, name, span_type, status AS status_code, "
        "nullif(j[1], '') AS status_message, start_ns / 1e6 AS start_time_ms, end_ns / 1e6 AS end_time_ms, "
        "(end_ns - start_ns) / 1e6 AS duration_ms, j[2] AS inputs, j[3] AS outputs, "
        f"j[4] AS attributes, j[5] AS events FROM (SELECT *, json_extract_string(content, {paths})"
        f" AS j FROM {src})")


