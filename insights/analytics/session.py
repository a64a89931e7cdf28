"""``AnalyticsSession``: one experiment's traces as DuckDB tables in a local cache, kept fresh.

Why a session: an investigation runs the census and then dozens of SQL queries over the same
experiment. Connecting DuckDB, creating the tables and loading the SQLite extension costs
most of a second, so a session does it once and every later call only checks a cheap
fingerprint of the store (trace count, newest trace timestamp, newest assessment update);
when it moved on, ``refresh()`` loads only traces newer than the recorded timestamp, plus
assessments updated since. If the count still disagrees afterwards (deleted or back-dated
traces) the cache is rebuilt.

Safety: the connection is sandboxed once, when it opens (no file access beyond the cache
folder, and DuckDB refuses to turn external access back on), so Trace SQL can neither read
files nor write; Trace SQL itself is one parsed SELECT with no SET, PRAGMA or table function
(see ``sql``), and each query may only change the memory cap it runs under. Every use of
the connection holds ``lock``, so one session may serve several threads. When another
process holds the cache file, the session works in memory instead.

Location: ``$INSIGHTS_CACHE_DIR`` or the user cache dir (``platformdirs``) /
``trace-cache/<sha256(tracking_uri|experiment_id)[:20]>.duckdb``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator

import duckdb

from insights.analytics import staging
from insights.analytics.cache import cache_path, resolve_uri
from insights.analytics.schema import DDL, SCHEMA_VERSION
from insights.analytics.source import TraceSource, open_source
from insights.errors import InvalidInputError

Progress = Callable[[str], None] | None
_TABLES = ["trace_rows", "span_rows", "assessment_rows", "span_lists", "traces"]
SMALL_TRACES = 30_000
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$", re.I)


def memory_setting(value: str, error: str) -> str:
    """A DuckDB memory size ("2GB", "512 MiB") in canonical spelling; ``error`` otherwise.

    Checked here because the value is spliced into a SET statement, which takes no parameters.
    """
    m = _MEMORY.match(str(value))
    if not m or float(m.group(1)) <= 0:
        raise InvalidInputError(error)
    return f"{m.group(1)}{m.group(2).upper()}"


class AnalyticsSession:
    """Cached, self-refreshing DuckDB copy of one experiment's traces, on one connection.

    ``refresh()`` keeps the light tables (trace_rows, span_rows, assessment_rows) current;
    ``ensure_span_lists()`` also nests each trace's spans without payloads (``span_lists``);
    ``ensure_full()`` additionally loads span payloads/tags/metadata and builds ``traces``.
    Use it as a context manager, or call ``close()``.
    """

    def __init__(self, tracking_uri: str | None, experiment_id: str, progress: Progress = None,
                 source: TraceSource | None = None):
        self.tracking_uri = resolve_uri(tracking_uri)
        self.experiment_id = str(experiment_id)
        self.progress: Callable[[str], None] = progress or (lambda _msg: None)
        self.lock = threading.RLock()
        self.path = cache_path(self.tracking_uri, self.experiment_id)
        self.closed = False
        self.memory = "2GB"  # the memory limit set when the connection opens
        self._source = source
        self._con: duckdb.DuckDBPyConnection | None = None

    @property
    def source(self) -> TraceSource:
        """The store reader, opened on first use."""
        with self.lock:
            if self._source is None:
                self._check_open()
                self._source = open_source(self.tracking_uri, self.experiment_id)
            return self._source

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, opened (tables created, store attached) on first use."""
        with self.lock:
            self._check_open()
            if self._con is None:
                source = self.source
                con = self._connect()
                try:
                    traces = source.fingerprint()["count"]
                    self._size_threads(con, traces)
                    source.prepare(con, traces)
                    self._sandbox(con)
                except BaseException:
                    con.close()
                    raise
                self._con = con
            return self._con

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("analytics session is closed")

    def _connect(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(self.path))
        except duckdb.IOException:  # another process holds the file: work in memory
            con = duckdb.connect()
        memory = os.environ.get("INSIGHTS_DUCKDB_MEMORY", "2GB")
        self.memory = memory_setting(
            memory, f"INSIGHTS_DUCKDB_MEMORY must look like 2GB, got {memory!r}")
        if not _locked(con):  # a second session on the same file shares the first's settings
            con.execute(f"SET memory_limit = '{self.memory}'")
            con.execute("SET enable_progress_bar = false")
            con.execute("SET preserve_insertion_order = false")
        con.execute(DDL)
        if _meta(con).get("schema") != SCHEMA_VERSION:  # older layout: start over
            for t in [*_TABLES, "cache_meta"]:
                con.execute(f"DROP TABLE IF EXISTS {t}")
            con.execute(DDL)
            _reset(con)
        return con

    @staticmethod
    def _size_threads(con: duckdb.DuckDBPyConnection, traces: int) -> None:
        """One DuckDB thread for experiments under ``SMALL_TRACES`` traces.

        Their statements take milliseconds; handing each to worker threads costs more than
        it gains (a cold census of 3,000 traces: about a third less time and CPU), the more so
        on a busy machine. Larger experiments keep DuckDB's default (one thread per core).
        """
        if not _locked(con) and traces < SMALL_TRACES:
            con.execute("SET threads = 1")

    def _sandbox(self, con: duckdb.DuckDBPyConnection) -> None:
        """No file access beyond the cache folder (spills); DuckDB refuses to undo this."""
        if _locked(con):
            return
        con.execute("SET allowed_directories = ?", [[str(self.path.parent)]])
        con.execute("SET enable_external_access = false")

    def close(self) -> None:
        """Close the DuckDB connection and the source's; safe to call twice."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            try:
                if self._con is not None:
                    self._con.close()
            finally:
                if self._source is not None:
                    self._source.close()

    def __enter__(self) -> "AnalyticsSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def using(self, progress: Progress = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """Hold the session for one call, reporting progress to ``progress`` meanwhile."""
        with self.lock:
            con = self.con
            before = self.progress
            if progress is not None:
                self.progress = progress
            try:
                yield con
            finally:
                self.progress = before

    # ------------------------------------------------------------------ freshness

    def refresh(self) -> None:
        """Bring the light tables up to date with the store, loading only what changed.

        Costs one fingerprint query when nothing changed.
        """
        with self.lock:
            fp = self.source.fingerprint()
            old = json.loads(_meta(self.con).get("fingerprint", "null") or "null")
            if fp == old:
                return
            try:
                self.con.execute("BEGIN")
                self._load_delta(fp, old)
                self._set_meta(fingerprint=json.dumps(fp))
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise

    def _set_meta(self, **values: str) -> None:
        for k, v in values.items():
            self.con.execute("INSERT OR REPLACE INTO cache_meta VALUES (?, ?)", [k, str(v)])

    def _load_delta(self, fp: dict, old: dict | None) -> None:
        since = old["max_ts"] if old else 0
        pending = self.con.execute("SELECT min(request_time_ms) FROM trace_rows "
                                   "WHERE state = 'IN_PROGRESS'").fetchone()[0]
        if pending is not None:  # unfinished traces may have changed: reload them
            since = min(since, pending)
            self._drop_in_progress()
        self.progress(f"loading traces newer than {since} ms" if old else "loading traces")
        self.source.load_light(self.con, since)
        added = staging.merge_light(self.con)
        if self.source.stages_full:  # payloads came along: nest them now
            staging.build_traces(self.con, since, 2**62)
        have = self.con.execute("SELECT count(*) FROM trace_rows").fetchone()[0]
        if have != fp["count"] and since > 0:
            self.progress("trace set changed beyond new arrivals: rebuilding cache")
            _reset(self.con)
            return self._load_delta(fp, None)
        self.progress(f"{added} new traces cached ({have} total)")
        if not old or fp["max_assessment_ts"] != old.get("max_assessment_ts"):
            self.source.load_assessments(self.con, old["max_assessment_ts"] if old else -1)
            staging.merge_assessments(self.con)

    def _drop_in_progress(self) -> None:
        self.con.execute("CREATE OR REPLACE TEMP TABLE drop_ids AS "
                         "SELECT trace_id FROM trace_rows WHERE state = 'IN_PROGRESS'")
        for t in _TABLES:
            self.con.execute(f"DELETE FROM {t} WHERE trace_id IN (SELECT trace_id FROM drop_ids)")

    def ensure_span_lists(self) -> None:
        """Refresh, then nest the spans (no payloads) of traces that lack a span list."""
        with self.lock:
            self.refresh()
            added = staging.build_span_lists(self.con)
            if added:
                self.progress(f"nested the spans of {added} traces")

    def ensure_full(self) -> None:
        """Refresh, then build nested `traces` rows for every cached trace that lacks one.

        Works in time slices of ~20k traces: each slice's span payloads are staged, nested
        and dropped, so memory stays bounded whatever the experiment size.
        """
        with self.lock:
            self.refresh()
            todo = "FROM trace_rows WHERE trace_id NOT IN (SELECT trace_id FROM traces)"
            n = self.con.execute(f"SELECT count(*) {todo}").fetchone()[0]
            if not n:
                return
            self.progress(f"loading span payloads of {n} traces for SQL")
            k = max(1, -(-n // 20_000))
            cuts = self.con.execute(f"SELECT quantile_disc(request_time_ms, ?) {todo}",
                                    [[i / k for i in range(1, k)]]).fetchone()[0] if k > 1 else []
            bounds = [0, *sorted(set(cuts)), 2**62]
            for lo, hi in zip(bounds, bounds[1:]):
                self.con.execute("BEGIN")
                self.source.load_full(self.con, lo, hi)
                staging.build_traces(self.con, lo, hi)
                self.con.execute("COMMIT")
            for t in ("stage_full", "stage_tags", "stage_meta"):
                self.con.execute(f"DROP TABLE IF EXISTS {t}")


def _locked(con: duckdb.DuckDBPyConnection) -> bool:
    """Already sandboxed: another session in this process opened the same database file."""
    return not con.execute("SELECT current_setting('enable_external_access')").fetchone()[0]


def _meta(con: duckdb.DuckDBPyConnection) -> dict:
    return dict(con.execute("SELECT key, value FROM cache_meta").fetchall())


def _reset(con: duckdb.DuckDBPyConnection) -> None:
    for t in _TABLES:
        con.execute(f"DELETE FROM {t}")
    con.execute("DELETE FROM cache_meta")
    con.execute("INSERT INTO cache_meta VALUES ('schema', ?)", [SCHEMA_VERSION])
