"""Census of a whole experiment on a tracking server: exact aggregates where MLflow computes them.

Why: through a tracking server every span has to be serialised, sent and parsed, about 3 ms
a trace on two cores, so pulling 100k traces costs minutes. MLflow's ``query_trace_metrics``
aggregates traces, spans and assessments inside the server's database in about a second
each. It gives, exactly: trace counts by status, trace latency percentiles, token sums and
percentiles, span counts by name/type/status, span latency percentiles by name, assessment
counts by name and value, and trace counts per time bucket.

What it cannot give (error messages and error types from span events, request/response
lengths, empty and repeated answers, traces with an erroring span and their outcomes, root
spans, failing assessment rationales, per-trace cost, sample trace ids) comes from a sample
of traces read with their spans. Assessment scales and failing counts are read from the
server's exact value counts. The sample is stratified over the census's time buckets: each bucket gives its
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

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import duckdb

from insights import compat
from insights.analytics import staging
from insights.analytics.sections import (DAY_MS, HOUR_MS, SECTIONS, ServerFacts, exact_census,
                                         server_overlay)
from insights.analytics.mlflow_source import (ASSESS, SPANS, TI, MlflowApiSource, _store_error,
                                              _TraceRows, light_spans_sql)
from insights.analytics.schema import DDL

SAMPLE_TRACES = 1000
MAX_WINDOWS = 100
METRIC_ROWS = 50_000  # asked of the server per aggregate; an answer this long may be cut
WORKERS = 4
PAGE = 500
SAMPLED_SECTIONS = ["errors", "responses", "cost", "spans.traces_with_error",
                    "spans.failed_traces", "spans.root_count", "spans.error_types",
                    "assessments.traces", "assessments.failing_traces",
                    "assessments.failing_rationales", "sample_trace_ids"]


class UnsupportedByServer(Exception):
    """The server cannot answer in full (older MLflow, a missing metric, an answer at its row
    limit): the caller loads every trace instead."""


def compute_server_census(source: MlflowApiSource, sample_traces: int = SAMPLE_TRACES,
                          progress: Callable[[str], None] | None = None) -> dict:
    """Census of every trace in the experiment, aggregated by the server plus a scaled sample."""
    say = progress or (lambda _m: None)
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
    metrics = Metrics(source)
    say("asking the server for trace, span and assessment aggregates")
    queries = {name: fn for section in SECTIONS for name, fn in section.server_queries(metrics).items()}
    with ThreadPoolExecutor(WORKERS) as pool:
        jobs = {name: pool.submit(fn) for name, fn in queries.items()}
        buckets = metrics.buckets(lo, hi, unit_ms)
        results = {name: job.result() for name, job in jobs.items()}
    facts = ServerFacts(results, buckets, unit_ms, 1.0, lo, hi)
    total = int(sum(facts.status.values()))
    say(f"reading a sample of {min(sample_traces, total)} of {total} traces with their spans")
    rows = _read_sample(source, _windows(buckets, unit_ms, hi, sample_traces, total))
    sampled = _sample_census(rows, "day" if unit_ms == DAY_MS else "hour")
    n_sampled = sampled["total_traces"]
    facts.scale = scale = total / max(n_sampled, 1)
    say("combining server aggregates with the sample")
    census = server_overlay(sampled, facts)
    census["sample"] = {
        "traces": n_sampled, "of": total, "scale": round(scale, 4),
        "sections": SAMPLED_SECTIONS if scale > 1 else [],
        "how": "each time bucket gives its share of the sample, newest traces first; counts "
               "in the listed sections are sample counts times scale",
    }
    census["method"] = "server aggregates + sample"
    return census


class Metrics:
    """``query_trace_metrics`` calls for one experiment, each returning plain dicts.

    The sections (``sections.py``) say which aggregates they need through ``single`` and
    ``keyed``; ``buckets`` gives the per-time-bucket status counts the sample is spread over.
    """

    def __init__(self, source: MlflowApiSource):
        self.store = compat.tracing_store(source.client)
        self.experiment_id = source.experiment_id

    @staticmethod
    def agg(kind: str):
        from mlflow.entities.trace_metrics import AggregationType, MetricAggregation

        return MetricAggregation(AggregationType[kind])

    @staticmethod
    def percentiles(*ps: float) -> list:
        from mlflow.entities.trace_metrics import AggregationType, MetricAggregation

        return [MetricAggregation(AggregationType.PERCENTILE, p) for p in ps]

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

    def keyed(self, view: str, metric: str, aggs: list, dims: list[str],
              filters: list[str] | None = None) -> Callable[[], dict]:
        """A call giving {(dimension values...): {aggregation: value}}."""
        return lambda: {tuple(p.dimensions.get(d) for d in dims): p.values
                        for p in self.points(view, metric, aggs, dims, filters)}

    def single(self, view: str, metric: str, aggs: list,
               filters: list[str] | None = None) -> Callable[[], dict]:
        """A call giving {aggregation: value} over the whole experiment (or the filter)."""
        return lambda: next((p.values for p in self.points(view, metric, aggs, None, filters)),
                            {})

    def buckets(self, lo: int, hi: int, unit_ms: int) -> dict[int, dict[str, float]]:
        """Trace counts per time bucket (epoch ms) and status, bucketed by the server."""
        out: dict[int, dict[str, float]] = {}
        for p in self.points("TRACES", "trace_count", [self.agg("COUNT")],
                             ["trace_status"], time_interval_seconds=unit_ms // 1000,
                             start_time_ms=lo, end_time_ms=hi):
            start = int(datetime.fromisoformat(p.dimensions["time_bucket"]).timestamp() * 1000)
            out.setdefault(start, {})[p.dimensions.get("trace_status")] = p.values["COUNT"]
        return dict(sorted(out.items()))


def _time_range(source: MlflowApiSource) -> tuple[int, int] | None:
    """Oldest and newest trace start (ms), or None for an experiment without traces."""
    oldest = source.search(None, False, ["timestamp_ms ASC"], 1)
    newest = source.search(None, False, ["timestamp_ms DESC"], 1)
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
            page = source.search(f"timestamp_ms >= {lo} AND timestamp_ms < {hi}", True,
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
        return exact_census(con, granularity)
    finally:
        con.close()
