"""Census of a whole experiment on a tracking server: exact aggregates where MLflow computes them.

Why: through a tracking server every span has to be serialised, sent and parsed, about 3 ms
a trace on two cores, so pulling 100k traces costs minutes. MLflow's ``query_trace_metrics``
aggregates traces, spans and assessments inside the server's database in about a second
each. It gives, exactly: trace counts by status, trace latency percentiles, token sums and
percentiles, span counts by name/type/status, span latency percentiles by name, assessment
counts by name and value, and trace counts per time bucket.

What it cannot give (error messages from span events, request/response lengths, traces with
an erroring span, per-trace cost, sample trace ids) comes from a sample of traces read with
their spans. The sample is stratified over the census's time buckets: each bucket gives its
share of the sample (largest remainders, so every sampled trace stands for the same number
of traces), newest traces first within a bucket. Counts read from the sample are scaled to
the whole experiment and the census says so under ``sample``. When the sample covers every
trace, the result equals the exact census but for span durations.

Where MLflow's aggregates differ from the exact census: span durations are whole
milliseconds; span latency is grouped by name only (MLflow has no span-type dimension for
it), so a name used by two span types shares its percentiles; spans without a type and
assessments without a value are left out by the server. Any answer that reaches the server's
row limit, and any metric or dimension an older server lacks, sends the caller back to the
exact path (``UnsupportedByServer``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import duckdb

from insights.analytics import staging
from insights.analytics.census import FAILING_VALUES, _Census, _num, _rate, tools_from_spans
from insights.analytics.mlflow_source import (ASSESS, SPANS, TI, MlflowApiSource, _store_error,
                                              _TraceRows, light_spans_sql)
from insights.analytics.schema import DDL

SAMPLE_TRACES = 1000
MAX_WINDOWS = 100
METRIC_ROWS = 50_000  # asked of the server per aggregate; an answer this long may be cut
WORKERS = 4
PAGE = 500
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
SAMPLED_SECTIONS = ["errors", "responses", "cost", "spans.traces_with_error",
                    "assessments.traces", "sample_trace_ids"]


class UnsupportedByServer(Exception):
    """The server cannot answer in full (older MLflow, a missing metric, an answer at its row
    limit): the caller loads every trace instead."""


def compute_server_census(tracking_uri: str, experiment_id: str,
                          sample_traces: int = SAMPLE_TRACES,
                          progress: Callable[[str], None] | None = None) -> dict:
    """Census of every trace in the experiment, aggregated by the server plus a scaled sample."""
    say = progress or (lambda _m: None)
    source = MlflowApiSource(tracking_uri, experiment_id)
    try:
        source.client.get_experiment(source.experiment_id)
    except Exception as exc:
        raise _store_error(exc) from exc
    span = _time_range(source)
    if span is None:
        return {**_sample_census(_TraceRows()), "method": "server aggregates + sample",
                "sample": {"traces": 0, "of": 0, "scale": 1.0, "sections": [], "how": ""}}
    lo, hi = span
    unit_ms = DAY_MS if hi - lo > 7 * DAY_MS else HOUR_MS
    metrics = _Metrics(source)
    say("asking the server for trace, span and assessment aggregates")
    with ThreadPoolExecutor(WORKERS) as pool:
        jobs = {name: pool.submit(fn) for name, fn in metrics.queries().items()}
        buckets = metrics.buckets(lo, hi, unit_ms)
        exact = {name: job.result() for name, job in jobs.items()}
    exact["status"] = status = {}  # the buckets cover [oldest, newest]: their sum is the total
    for counts in buckets.values():
        for state, n in counts.items():
            status[state] = status.get(state, 0) + n
    total = int(sum(status.values()))
    say(f"reading a sample of {min(sample_traces, total)} of {total} traces with their spans")
    rows = _read_sample(source, _windows(buckets, unit_ms, hi, sample_traces, total))
    sampled = _sample_census(rows, "day" if unit_ms == DAY_MS else "hour")
    n_sampled = sampled["total_traces"]
    scale = total / max(n_sampled, 1)
    say("combining server aggregates with the sample")
    census = _overlay(sampled, exact, buckets, unit_ms, scale, lo, hi)
    census["sample"] = {
        "traces": n_sampled, "of": total, "scale": round(scale, 4),
        "sections": SAMPLED_SECTIONS if scale > 1 else [],
        "how": "each time bucket gives its share of the sample, newest traces first; counts "
               "in the listed sections are sample counts times scale",
    }
    census["method"] = "server aggregates + sample"
    return census


class _Metrics:
    """``query_trace_metrics`` calls for one experiment, each returning plain dicts."""

    def __init__(self, source: MlflowApiSource):
        self.store = source.client._tracing_client.store
        self.experiment_id = source.experiment_id

    def points(self, view: str, metric: str, aggs: list, dims: list[str] | None = None,
               filters: list[str] | None = None, **window) -> list:
        from mlflow.entities.trace_metrics import MetricViewType
        from mlflow.exceptions import MlflowException

        try:
            page = self.store.query_trace_metrics(
                experiment_ids=[self.experiment_id], view_type=MetricViewType(view),
                metric_name=metric, aggregations=aggs, dimensions=dims, filters=filters,
                max_results=METRIC_ROWS, **window)
        except (AttributeError, NotImplementedError) as exc:
            raise UnsupportedByServer(f"no query_trace_metrics: {exc}") from exc
        except MlflowException as exc:
            if exc.error_code in ("ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED",
                                  "INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
                raise UnsupportedByServer(f"{view}/{metric}: {exc.message}") from exc
            raise _store_error(exc) from exc
        if len(page) >= METRIC_ROWS or page.token:  # MLflow does not page these answers
            raise UnsupportedByServer(f"{view}/{metric}: {len(page)} rows, answer may be cut")
        return list(page)

    def queries(self) -> dict[str, Callable[[], dict]]:
        from mlflow.entities.trace_metrics import AggregationType as A
        from mlflow.entities.trace_metrics import MetricAggregation as M

        count, mx = [M(A.COUNT)], M(A.MAX)
        pct = [M(A.PERCENTILE, p) for p in (50, 90, 95, 99)]

        def keyed(view, metric, aggs, dims, filters=None):
            return lambda: {tuple(p.dimensions.get(d) for d in dims): p.values
                            for p in self.points(view, metric, aggs, dims, filters)}

        def single(view, metric, aggs, filters=None):
            return lambda: next((p.values for p in self.points(view, metric, aggs, None, filters)),
                                {})

        return {
            "latency_all": single("TRACES", "latency", [*pct, mx]),
            "latency_ok": single("TRACES", "latency", [*pct, mx], ["trace.status = 'OK'"]),
            "tokens": single("TRACES", "total_tokens",
                             [M(A.SUM), M(A.AVG), M(A.PERCENTILE, 50), M(A.PERCENTILE, 95), mx]),
            "input_tokens": single("TRACES", "input_tokens", [M(A.SUM)]),
            "output_tokens": single("TRACES", "output_tokens", [M(A.SUM)]),
            "span_counts": keyed("SPANS", "span_count", count,
                                 ["span_name", "span_type", "span_status"]),
            "span_latency": keyed("SPANS", "latency", [M(A.PERCENTILE, 50),
                                                      M(A.PERCENTILE, 95), mx], ["span_name"]),
            "assessments": keyed("ASSESSMENTS", "assessment_count", count,
                                 ["assessment_name", "assessment_value"]),
        }

    def buckets(self, lo: int, hi: int, unit_ms: int) -> dict[int, dict[str, float]]:
        """Trace counts per time bucket (epoch ms) and status, bucketed by the server."""
        from mlflow.entities.trace_metrics import AggregationType, MetricAggregation

        out: dict[int, dict[str, float]] = {}
        for p in self.points("TRACES", "trace_count", [MetricAggregation(AggregationType.COUNT)],
                             ["trace_status"], time_interval_seconds=unit_ms // 1000,
                             start_time_ms=lo, end_time_ms=hi):
            start = int(datetime.fromisoformat(p.dimensions["time_bucket"]).timestamp() * 1000)
            out.setdefault(start, {})[p.dimensions.get("trace_status")] = p.values["COUNT"]
        return dict(sorted(out.items()))


def _time_range(source: MlflowApiSource) -> tuple[int, int] | None:
    """Oldest and newest trace start (ms), or None for an experiment without traces."""
    oldest = source._search(None, False, ["timestamp_ms ASC"], 1)
    newest = source._search(None, False, ["timestamp_ms DESC"], 1)
    if not oldest or not newest:
        return None
    return oldest[0].info.request_time, newest[0].info.request_time


def _windows(buckets: dict[int, dict], unit_ms: int, hi: int, sample: int,
             total: int) -> list[tuple[int, int, int]]:
    """(start, end, how many traces to read) per window; windows are merged time buckets.

    Quotas are proportional to each window's traces and sum to ``sample`` (largest
    remainders), so one scale factor fits every sampled trace.
    """
    starts = list(buckets)
    per = max(1, math.ceil(len(starts) / MAX_WINDOWS))
    spans, sizes = [], []
    for i in range(0, len(starts), per):
        group = starts[i:i + per]
        end = max(group[-1] + unit_ms, hi + 1) if i + per >= len(starts) else starts[i + per]
        spans.append((group[0], end))
        sizes.append(int(sum(sum(buckets[b].values()) for b in group)))
    return [(lo, end, q) for (lo, end), q in zip(spans, _quotas(sizes, min(sample, total)))]


def _quotas(sizes: list[int], sample: int) -> list[int]:
    """Split ``sample`` over windows in proportion to ``sizes`` (largest remainder method)."""
    whole = sum(sizes) or 1
    exact = [sample * n / whole for n in sizes]
    quotas = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(sizes)), key=lambda i: quotas[i] - exact[i])
    for i in by_remainder[:sample - sum(quotas)]:
        quotas[i] += 1
    return quotas


def _read_sample(source: MlflowApiSource, windows: list[tuple[int, int, int]]) -> _TraceRows:
    def read(window: tuple[int, int, int]) -> list:
        lo, hi, quota = window
        got, token = [], None
        while len(got) < quota:
            page = source._search(f"timestamp_ms >= {lo} AND timestamp_ms < {hi}", True,
                                  max_results=min(PAGE, quota - len(got)), page_token=token)
            got += list(page)
            token = page.token
            if not token:
                break
        return got

    rows = _TraceRows()
    with ThreadPoolExecutor(WORKERS) as pool:
        for traces in pool.map(read, windows):
            for trace in traces:
                rows.add(trace)
    return rows


def _sample_census(rows: _TraceRows, granularity: str | None = None) -> dict:
    """The exact census of the sampled traces, computed by the same code as a full census.

    ``granularity`` makes its time buckets match the server's, whatever the sample's range.
    """
    con = duckdb.connect()
    try:
        con.execute(DDL)
        staging.stage(con, "stage_ti", [rows.table("ti", TI)], TI)
        staging.stage(con, "stage_spans", [rows.table("spans", SPANS)], SPANS, light_spans_sql)
        staging.stage(con, "stage_assessments", [rows.table("assessments", ASSESS)], ASSESS)
        staging.merge_light(con)
        staging.merge_assessments(con)
        for view, table in (("t", "trace_rows"), ("s", "span_rows"), ("a", "assessment_rows")):
            con.execute(f"CREATE TEMP VIEW {view} AS SELECT * FROM {table}")
        return _Census(con, granularity).build()
    finally:
        con.close()


def _overlay(c: dict, exact: dict, buckets: dict, unit_ms: int, scale: float, lo: int,
             hi: int) -> dict:
    """Replace the sample's figures by the server's exact ones wherever the server has them."""
    def scaled(n):
        return None if n is None else round(n * scale)

    status = exact["status"]
    total, errors = int(sum(status.values())), int(status.get("ERROR", 0))
    c.update(total_traces=total, error_traces=errors, error_rate=_rate(errors, total),
             time_range={"start_ms": lo, "end_ms": hi})
    c["latency_ms"] = {k: _percentiles(exact[f"latency_{k}"]) for k in ("all", "ok")}
    sampled_token_ids = (c.get("tokens") or {}).get("sample_trace_ids", [])
    c["spans"] = _spans(c["spans"], exact, scale)
    c["tools"] = tools_from_spans(c["spans"])
    if scale > 1:  # keep the sample's own count beside each estimate
        for e in c["errors"]:
            e["sample_count"], e["count"] = e["count"], scaled(e["count"])
            e["traces"] = scaled(e["traces"])
        empty = c["responses"]["empty_responses"]
        empty["sample_count"], empty["count"] = empty["count"], scaled(empty["count"])
    tok = exact["tokens"]
    c["tokens"] = None  # the server's figures or none: never the sample's, unscaled
    if tok.get("SUM"):
        c["tokens"] = {
            "traces_with_tokens": round(tok["SUM"] / tok["AVG"]) if tok.get("AVG") else None,
            "total_tokens": _whole(tok["SUM"]),
            "input_tokens": _whole(exact["input_tokens"].get("SUM")),
            "output_tokens": _whole(exact["output_tokens"].get("SUM")),
            "per_trace": {"mean": _num(tok.get("AVG")), "p50": _num(tok.get("P50.0")),
                          "p95": _num(tok.get("P95.0")), "max": _whole(tok.get("MAX"))},
            "sample_trace_ids": sampled_token_ids}
    if c.get("cost"):
        c["cost"]["traces_with_cost"] = scaled(c["cost"]["traces_with_cost"])
        c["cost"]["total_cost"] = round(c["cost"]["total_cost"] * scale, 6)
    by_name: dict[str, dict[str, int]] = {}
    for (name, value), v in exact["assessments"].items():
        by_name.setdefault(name, {})[_text(value)] = int(v["COUNT"])
    sampled = {a["name"]: a for a in c["assessments"]}
    c["assessments"] = []
    for name, values in sorted(by_name.items()):
        n = sum(values.values())
        failing = sum(k for v, k in values.items() if v.strip().lower() in FAILING_VALUES)
        s = sampled.get(name, {})
        c["assessments"].append({
            "name": name, "count": n, "traces": min(n, scaled(s.get("traces", 0))),
            "values": dict(sorted(values.items(), key=lambda kv: -kv[1])[:50]),
            "failing": failing, "failing_rate": _rate(failing, n),
            "sample_trace_ids": s.get("sample_trace_ids", [])})
    samples = {b["start_ms"]: b["sample_trace_ids"] for b in c["time_buckets"]["buckets"]}
    c["time_buckets"] = {"granularity": "day" if unit_ms == DAY_MS else "hour", "buckets": [
        {"start_ms": k, "traces": int(sum(v.values())), "errors": int(v.get("ERROR", 0)),
         "error_rate": _rate(v.get("ERROR", 0), sum(v.values())),
         "sample_trace_ids": samples.get(k, [])} for k, v in buckets.items()]}
    return c


def _percentiles(v: dict) -> dict:
    return {"p50": _num(v.get("P50.0")), "p90": _num(v.get("P90.0")), "p95": _num(v.get("P95.0")),
            "p99": _num(v.get("P99.0")), "max": _whole(v.get("MAX"))}


def _whole(v):
    """Counts, sums and maxima of integer columns come back as floats: give them back as ints."""
    return int(v) if isinstance(v, float) and v.is_integer() else _num(v)


def _text(value: str | None) -> str:
    """An assessment value as the exact census shows it: JSON strings unquoted ('"yes"' -> yes)."""
    try:
        decoded = json.loads(value) if value is not None else None
    except ValueError:
        return str(value)
    return decoded if isinstance(decoded, str) else str(value)


def _spans(sampled: list[dict], exact: dict, scale: float) -> list[dict]:
    counts: dict[tuple, dict[str, int]] = {}
    for (name, typ, status), v in exact["span_counts"].items():
        counts.setdefault((name, typ), {})[status] = int(v["COUNT"])
    seen = {(s["name"], s["span_type"]): s for s in sampled}
    out = []
    for (name, typ), by_status in counts.items():
        n, err = sum(by_status.values()), by_status.get("ERROR", 0)
        lat = exact["span_latency"].get((name,), {})
        s = seen.get((name, typ), {})
        out.append({"name": name, "span_type": typ, "count": n, "error_count": err,
                    "error_rate": _rate(err, n),
                    "traces_with_error": min(err, round(s.get("traces_with_error", 0) * scale)),
                    "p50_ms": _num(lat.get("P50.0")), "p95_ms": _num(lat.get("P95.0")),
                    "max_ms": _num(lat.get("MAX")),
                    "sample_trace_ids": s.get("sample_trace_ids", [])})
    out.sort(key=lambda s: (-s["error_count"], -s["count"], s["name"]))
    return out
