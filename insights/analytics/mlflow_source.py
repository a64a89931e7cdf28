"""Load traces through MLflow's client API (tracking servers and non-SQLite stores).

Why this shape: a remote server is only reachable through its REST API. The trace count
comes from the server-side aggregate ``query_trace_metrics`` (TRACES view, COUNT), the newest
timestamp from a one-row search, so an unchanged experiment costs two tiny requests. New
traces are fetched with ``search_traces`` split into time windows fetched in parallel
threads (page tokens are sequential, windows are not). Each span is staged as the same JSON
``content`` MLflow stores in its database, so the SQLite reader's parsing SQL is reused and
both paths fill the cache identically.

Limits: changes to assessments of already cached traces are noticed through the
server-side assessment count (new assessments), not through edits of existing ones.
"""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pyarrow as pa
from urllib.parse import urlparse

from insights import compat
from insights.analytics.sqlite_source import _full_span_sql, _light_span_sql
from insights.analytics.staging import stage
from insights.errors import InvalidInputError, TrackingServerError

PAGE = 500
WORKERS = 4
S, I, F = pa.string(), pa.int64(), pa.float64()
TI = pa.schema([("trace_id", S), ("request_time_ms", I), ("execution_time_ms", I),
                ("state", S), ("trace_name", S), ("session_id", S), ("input_tokens", I),
                ("output_tokens", I), ("total_tokens", I), ("total_cost", F)])
SPANS = pa.schema([("trace_id", S), ("span_id", S), ("parent_id", S), ("name", S),
                   ("span_type", S), ("status", S), ("start_ns", I), ("end_ns", I),
                   ("content", S)])
KV = pa.schema([("trace_id", S), ("key", S), ("value", S)])
ASSESS = pa.schema([("trace_id", S), ("assessment_id", S), ("name", S), ("value", S),
                    ("source_type", S), ("rationale", S), ("last_updated_ms", I),
                    ("valid", pa.bool_())])


def _store_error(exc: Exception) -> Exception:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException) and exc.error_code in (
            "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
        return InvalidInputError(f"tracking store refused the request: {exc.message}")
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return TrackingServerError(f"tracking store unavailable: {msg[:300]}")


def _check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after the client's minutes of retries, when nothing listens."""
    parts = urlparse(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise TrackingServerError(f"tracking server {uri} unreachable: {exc}") from exc


class MlflowApiSource:
    """One experiment behind MLflow's client API; fills the same stage tables as SQLite."""

    stages_full = True  # span payloads arrive with every trace: nest them right away

    def __init__(self, uri: str, experiment_id: str):
        import mlflow

        self.uri, self.experiment_id = uri, str(experiment_id)
        _check_reachable(uri)
        self.client = mlflow.MlflowClient(uri)
        self._staged_assessments = False
        self._newest: int | None = None  # newest trace timestamp seen by fingerprint()

    def prepare(self, con: duckdb.DuckDBPyConnection, traces: int) -> None:
        """Nothing to set up: rows arrive through the client API."""

    def close(self) -> None:
        """Nothing held open: the client's HTTP sessions are MLflow's to manage."""

    def search(self, filter_string: str | None, include_spans: bool, order_by=None,
                max_results: int = PAGE, page_token: str | None = None):
        try:
            return self.client.search_traces(
                locations=[self.experiment_id], filter_string=filter_string,
                max_results=max_results, order_by=order_by, page_token=page_token,
                include_spans=include_spans)
        except Exception as exc:
            raise _store_error(exc) from exc

    def _server_count(self, view: str, metric: str) -> int | None:
        """Server-side COUNT over the TRACES / ASSESSMENTS view, None if unsupported."""
        from mlflow.entities.trace_metrics import (AggregationType, MetricAggregation,
                                                   MetricViewType)

        try:
            store = compat.tracing_store(self.client)
            res = store.query_trace_metrics(
                experiment_ids=[self.experiment_id], view_type=MetricViewType(view),
                metric_name=metric, aggregations=[MetricAggregation(AggregationType.COUNT)])
            return int(sum(next(iter(p.values.values()), 0) for p in res))
        except Exception:
            return None

    def fingerprint(self) -> dict:
        newest = self.search(None, False, ["timestamp_ms DESC"], 1)
        max_ts = self._newest = newest[0].info.request_time if newest else 0
        count = self._server_count("TRACES", "trace_count")
        if count is None:
            count = len(self._trace_infos(0))
        return {"count": count, "max_ts": max_ts,
                "max_assessment_ts": self._server_count("ASSESSMENTS", "assessment_count")}

    def _windows(self, since_ms: int) -> list[tuple[int, int]]:
        oldest = self.search(f"timestamp_ms >= {int(since_ms)}", False, ["timestamp_ms ASC"], 1)
        if not oldest:
            return []
        if self._newest is None:
            self.fingerprint()
        lo, hi = oldest[0].info.request_time, max(self._newest, oldest[0].info.request_time) + 1
        step = max(1, -(-(hi - lo) // (WORKERS * 2)))
        return [(a, min(a + step, hi)) for a in range(lo, hi, step)]

    def _fetch_window(self, window: tuple[int, int], include_spans: bool) -> list:
        lo, hi = window
        out, token = [], None
        while True:
            page = self.search(f"timestamp_ms >= {lo} AND timestamp_ms < {hi}", include_spans,
                                page_token=token)
            out += list(page)
            token = page.token
            if not token:
                return out

    def _fetch(self, since_ms: int, include_spans: bool) -> list:
        windows = self._windows(since_ms)
        with ThreadPoolExecutor(WORKERS) as pool:
            parts = pool.map(lambda w: self._fetch_window(w, include_spans), windows)
            return [t for part in parts for t in part]

    def _trace_infos(self, since_ms: int) -> list:
        return [t.info for t in self._fetch(since_ms, include_spans=False)]

    def load_light(self, con: duckdb.DuckDBPyConnection, since_ms: int) -> None:
        """Fetch every trace at/after since_ms (with spans) and stage all its parts.

        Each window is turned into column buffers as soon as it arrives, so ``Trace``
        objects of only a few windows are alive at once.
        """
        def window_rows(w: tuple[int, int]) -> _TraceRows:
            rows = _TraceRows()
            for t in self._fetch_window(w, include_spans=True):
                rows.add(t)
            return rows

        with ThreadPoolExecutor(WORKERS) as pool:
            parts = list(pool.map(window_rows, self._windows(since_ms)))
        for name, table, schema, sql in (
                ("stage_ti", "ti", TI, None),
                ("stage_spans", "spans", SPANS, light_spans_sql),
                ("stage_full", "spans", SPANS, _full_span_sql),
                ("stage_tags", "tags", KV, None), ("stage_meta", "meta", KV, None),
                ("stage_assessments", "assessments", ASSESS, None)):
            stage(con, name, [p.table(table, schema) for p in parts], schema, sql)
        self._staged_assessments = True

    def load_full(self, con: duckdb.DuckDBPyConnection, lo_ms: int, hi_ms: int) -> None:
        """Re-stage payloads of traces in [lo_ms, hi_ms) (normally already nested on load)."""
        rows = _TraceRows()
        for t in self._fetch_window((lo_ms, min(hi_ms, 2**62)), include_spans=True):
            rows.add(t)
        stage(con, "stage_full", [rows.table("spans", SPANS)], SPANS, _full_span_sql)
        stage(con, "stage_tags", [rows.table("tags", KV)], KV)
        stage(con, "stage_meta", [rows.table("meta", KV)], KV)

    def load_assessments(self, con: duckdb.DuckDBPyConnection, updated_after_ms: int) -> None:
        """Stage assessments: those fetched with new traces, or re-read all (info only)."""
        if updated_after_ms < 0 and self._staged_assessments:
            return
        rows = _TraceRows()
        for info in self._trace_infos(0):
            rows.add_assessments(info)
        stage(con, "stage_assessments", [rows.table("assessments", ASSESS)], ASSESS)


class _TraceRows:
    """Column buffers for the stage tables, filled from MLflow ``Trace`` objects."""

    def __init__(self):
        self.cols: dict[str, dict[str, list]] = {}

    def _put(self, table: str, schema: pa.Schema, values: tuple) -> None:
        cols = self.cols.setdefault(table, {f.name: [] for f in schema})
        for name, v in zip(cols, values):
            cols[name].append(v)

    def table(self, name: str, schema: pa.Schema) -> pa.Table:
        cols = self.cols.get(name) or {f.name: [] for f in schema}
        return pa.table([pa.array(cols[f.name], f.type) for f in schema], schema=schema)

    def add(self, trace) -> None:
        info = trace.info
        usage = info.token_usage or {}
        cost = _json(info.trace_metadata.get("mlflow.trace.cost")) or {}
        self._put("ti", TI, (
            info.trace_id, info.request_time, info.execution_duration, str(info.state.value
                                                                            if hasattr(info.state, "value") else info.state),
            info.tags.get("mlflow.traceName"), info.trace_metadata.get("mlflow.trace.session"),
            usage.get("input_tokens"), usage.get("output_tokens"), usage.get("total_tokens"),
            cost.get("total_cost")))
        for k, v in info.tags.items():
            self._put("tags", KV, (info.trace_id, k, v))
        for k, v in info.trace_metadata.items():
            self._put("meta", KV, (info.trace_id, k, v))
        for span in trace.data.spans if trace.data else []:
            export = getattr(span, "json_for_export", None)
            content = export() if export else json.dumps(span.to_dict())
            self._put("spans", SPANS, (
                info.trace_id, span.span_id, span.parent_id, span.name, span.span_type,
                span.status.status_code.value, span.start_time_ns, span.end_time_ns, content))
        self.add_assessments(info)

    def add_assessments(self, info) -> None:
        for a in info.assessments or []:
            value = getattr(a, "value", None)
            if value is None and getattr(a, "feedback", None) is not None:
                value = a.feedback.value
            self._put("assessments", ASSESS, (
                info.trace_id, a.assessment_id, a.name,
                value if isinstance(value, str) else json.dumps(value),
                a.source.source_type if a.source else None, a.rationale,
                a.last_update_time_ms, a.valid if a.valid is not None else True))


def light_spans_sql(src: str) -> str:
    """Light span rows from staged ``SPANS`` rows (a span is a root when it has no parent)."""
    return _light_span_sql(f"(SELECT *, (parent_id IS NULL)::INT AS is_root FROM {src})")


def _json(text: str | None) -> dict | None:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
