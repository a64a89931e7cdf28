"""`TraceTable`: one experiment's traces as DuckDB tables in a local cache file, kept fresh.

Why a cache: an investigation runs the census and then dozens of SQL queries over the same
experiment; loading 100k traces once and then only the delta keeps every later call well
under a second. Freshness: each call compares a cheap fingerprint of the store (trace count,
newest trace timestamp, newest assessment update) with the one recorded in the cache and
loads only traces newer than the recorded timestamp, plus re-reads assessments updated since.
If the count still disagrees afterwards (deleted or back-dated traces) the cache is rebuilt.

Location: ``$INSIGHTS_CACHE_DIR`` or the user cache dir (``platformdirs``) /
``trace-cache/<sha256(tracking_uri|experiment_id)[:20]>.duckdb``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import duckdb

from insights.analytics import staging
from insights.analytics.schema import DDL, SCHEMA_VERSION

Progress = Callable[[str], None] | None
_TABLES = ["trace_rows", "span_rows", "assessment_rows", "span_lists", "traces"]


def cache_dir() -> Path:
    """Directory holding the DuckDB cache files."""
    env = os.environ.get("INSIGHTS_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("insights-agent")) / "trace-cache"


def resolve_uri(tracking_uri: str | None) -> str:
    if tracking_uri:
        return tracking_uri
    import mlflow

    return mlflow.get_tracking_uri()


def open_source(tracking_uri: str, experiment_id: str):
    """SQLite stores are read directly; everything else goes through MLflow's client API."""
    if tracking_uri.startswith("sqlite:///"):
        from insights.analytics.sqlite_source import SqliteSource

        return SqliteSource(tracking_uri, experiment_id)
    from insights.analytics.mlflow_source import MlflowApiSource

    return MlflowApiSource(tracking_uri, experiment_id)


class TraceTable:
    """Cached, self-refreshing DuckDB copy of one experiment's traces.

    ``refresh()`` keeps the light tables (trace_rows, span_rows, assessment_rows) current;
    ``ensure_span_lists()`` also nests each trace's spans without payloads (``span_lists``);
    ``ensure_full()`` additionally loads span payloads/tags/metadata and builds ``traces``.
    """

    def __init__(self, tracking_uri: str | None, experiment_id: str, progress: Progress = None):
        self.tracking_uri = resolve_uri(tracking_uri)
        self.experiment_id = str(experiment_id)
        self.progress = progress or (lambda _msg: None)
        self.source = open_source(self.tracking_uri, self.experiment_id)
        key = hashlib.sha256(f"{self.tracking_uri}|{self.experiment_id}".encode()).hexdigest()
        self.path = cache_dir() / f"{key[:20]}.duckdb"
        self.con = self._connect()
        prepare = getattr(self.source, "prepare", None)
        if prepare:
            prepare(self.con)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(str(self.path))
        except duckdb.IOException:  # another process holds the file: work in memory
            con = duckdb.connect()
        con.execute(f"SET memory_limit = '{os.environ.get('INSIGHTS_DUCKDB_MEMORY', '2GB')}'")
        con.execute("SET enable_progress_bar = false")
        con.execute("SET preserve_insertion_order = false")
        con.execute(DDL)
        if self._meta(con).get("schema") != SCHEMA_VERSION:  # older layout: start over
            for t in [*_TABLES, "cache_meta"]:
                con.execute(f"DROP TABLE IF EXISTS {t}")
            con.execute(DDL)
            self._reset(con)
        return con

    def close(self) -> None:
        self.con.close()
        close = getattr(self.source, "close", None)
        if close:
            close()

    def __enter__(self) -> "TraceTable":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _meta(con: duckdb.DuckDBPyConnection) -> dict:
        return dict(con.execute("SELECT key, value FROM cache_meta").fetchall())

    def _set_meta(self, **values: str) -> None:
        for k, v in values.items():
            self.con.execute("INSERT OR REPLACE INTO cache_meta VALUES (?, ?)", [k, str(v)])

    @staticmethod
    def _reset(con: duckdb.DuckDBPyConnection) -> None:
        for t in _TABLES:
            con.execute(f"DELETE FROM {t}")
        con.execute("DELETE FROM cache_meta")
        con.execute("INSERT INTO cache_meta VALUES ('schema', ?)", [SCHEMA_VERSION])

    def refresh(self) -> None:
        """Bring the light tables up to date with the store, loading only what changed."""
        fp = self.source.fingerprint()
        old = json.loads(self._meta(self.con).get("fingerprint", "null") or "null")
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

    def _load_delta(self, fp: dict, old: dict | None) -> None:
        since = old["max_ts"] if old else 0
        pending = self.con.execute("SELECT min(request_time_ms) FROM trace_rows "
                                   "WHERE state = 'IN_PROGRESS'").fetchone()[0]
        if pending is not None:  # unfinished traces may have changed: reload them
            since = min(since, pending)
            self._drop_where("trace_id IN (SELECT trace_id FROM trace_rows "
                             "WHERE state = 'IN_PROGRESS')")
        self.progress(f"loading traces newer than {since} ms" if old else "loading traces")
        self.source.load_light(self.con, since)
        added = staging.merge_light(self.con)
        if getattr(self.source, "stages_full", False):  # payloads came along: nest them now
            staging.build_traces(self.con, since, 2**62)
        have = self.con.execute("SELECT count(*) FROM trace_rows").fetchone()[0]
        if have != fp["count"] and since > 0:
            self.progress("trace set changed beyond new arrivals: rebuilding cache")
            self._reset(self.con)
            return self._load_delta(fp, None)
        self.progress(f"{added} new traces cached ({have} total)")
        if not old or fp["max_assessment_ts"] != old.get("max_assessment_ts"):
            self.source.load_assessments(self.con, old["max_assessment_ts"] if old else -1)
            staging.merge_assessments(self.con)

    def _drop_where(self, cond: str) -> None:
        self.con.execute("CREATE OR REPLACE TEMP TABLE drop_ids AS "
                         f"SELECT trace_id FROM trace_rows WHERE {cond}")
        for t in _TABLES:
            self.con.execute(f"DELETE FROM {t} WHERE trace_id IN (SELECT trace_id FROM drop_ids)")

    def ensure_span_lists(self) -> None:
        """Refresh, then nest the spans (no payloads) of traces that lack a span list."""
        self.refresh()
        added = staging.build_span_lists(self.con)
        if added:
            self.progress(f"nested the spans of {added} traces")

    def ensure_full(self) -> None:
        """Refresh, then build nested `traces` rows for every cached trace that lacks one.

        Works in time slices of ~20k traces: each slice's span payloads are staged, nested
        and dropped, so memory stays bounded whatever the experiment size.
        """
        self.refresh()
        n = self.con.execute("SELECT count(*) FROM trace_rows WHERE trace_id NOT IN "
                             "(SELECT trace_id FROM traces)").fetchone()[0]
        if not n:
            return
        self.progress(f"loading span payloads of {n} traces for SQL")
        k = max(1, -(-n // 20_000))
        cuts = self.con.execute(
            "SELECT quantile_disc(request_time_ms, ?) FROM trace_rows WHERE trace_id NOT IN "
            "(SELECT trace_id FROM traces)", [[i / k for i in range(1, k)]]
        ).fetchone()[0] if k > 1 else []
        bounds = [0, *sorted(set(cuts)), 2**62]
        for lo, hi in zip(bounds, bounds[1:]):
            self.con.execute("BEGIN")
            self.source.load_full(self.con, lo, hi)
            staging.build_traces(self.con, lo, hi)
            self.con.execute("COMMIT")
        for t in ("stage_full", "stage_tags", "stage_meta"):
            self.con.execute(f"DROP TABLE IF EXISTS {t}")
