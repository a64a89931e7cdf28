"""Baseline census: the counts and distributions an investigation starts from.

Every figure is one DuckDB aggregate over the cached flat tables (``trace_rows``,
``span_rows``, ``assessment_rows``), so the census costs a handful of vectorised scans
instead of a pass over Python ``Trace`` objects. Every bucket carries up to 5
``sample_trace_ids`` (failing/erroring traces first) so findings can cite evidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import duckdb

from insights.analytics.cache import TraceTable, resolve_uri
from insights.analytics.scope import apply_scope

SAMPLES = 5
FAILING_VALUES = ("false", "no", "fail", "failed", "failure", "0", "0.0", "n", "bad", "incorrect")


def compute_census(tracking_uri: str | None, experiment_id: str, filter_string: str | None = None,
                   start_time_ms: int | None = None, end_time_ms: int | None = None,
                   progress: Callable[[str], None] | None = None, exact: bool = False,
                   sample_traces: int | None = None) -> dict:
    """Compute the baseline census of an experiment's traces (a JSON-able dict).

    ``filter_string`` is an MLflow trace search filter (as for ``mlflow.search_traces``),
    evaluated by MLflow itself to select trace ids; ``start_time_ms``/``end_time_ms`` bound
    the trace start time (inclusive/exclusive).

    On a tracking server, a census of the whole experiment is aggregated by the server, with
    a few sections from a sample of ``sample_traces`` traces (see ``server_census``); pass
    ``exact=True`` to load every trace instead (minutes at 100k traces, then cached).
    """
    say = progress or (lambda _m: None)
    uri = resolve_uri(tracking_uri)
    whole = filter_string is None and start_time_ms is None and end_time_ms is None
    if not exact and whole and uri.startswith(("http://", "https://")):
        from insights.analytics import server_census

        try:
            return server_census.compute_server_census(
                uri, experiment_id, sample_traces or server_census.SAMPLE_TRACES, say)
        except server_census.UnsupportedByServer:
            say("the server has no trace metrics API: loading every trace")
    with TraceTable(uri, experiment_id, progress=say) as table:
        table.refresh()
        apply_scope(table, filter_string, start_time_ms, end_time_ms)
        say("aggregating census")
        return {**_Census(table.con).build(), "method": "exact"}


def _num(v):
    if v is None:
        return None
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 3)
    return v


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def tools_from_spans(spans: list[dict]) -> list[dict]:
    """The TOOL spans' entries, renamed as tool calls (same counts, timings and samples)."""
    tools = [{"name": s["name"], "calls": s["count"], "failures": s["error_count"],
              "failure_rate": s["error_rate"], "p50_ms": s["p50_ms"], "p95_ms": s["p95_ms"],
              "sample_trace_ids": s["sample_trace_ids"]}
             for s in spans if s["span_type"] == "TOOL"]
    return sorted(tools, key=lambda t: (-t["failures"], -t["calls"], t["name"]))


class _Census:
    def __init__(self, con: duckdb.DuckDBPyConnection, granularity: str | None = None):
        self.con = con
        self.granularity = granularity  # "hour" / "day"; None: chosen from the time range

    def rows(self, sql: str, params=None) -> list[tuple]:
        return self.con.execute(sql, params or []).fetchall()

    def samples(self, pairs_sql: str) -> dict:
        """Map key -> up to 5 trace ids from rows (k, trace_id, priority); high priority first."""
        sql = f"""
            SELECT k, list(trace_id ORDER BY pri DESC, trace_id) FROM (
                SELECT k, trace_id, max(pri) AS pri,
                       row_number() OVER (PARTITION BY k ORDER BY max(pri) DESC, trace_id) AS rn
                FROM ({pairs_sql}) GROUP BY k, trace_id)
            WHERE rn <= {SAMPLES} GROUP BY k"""
        return {k: v for k, v in self.rows(sql)}

    def build(self) -> dict:
        total, errors, lo, hi = self.rows(
            "SELECT count(*), count(*) FILTER (WHERE state = 'ERROR'), min(request_time_ms), "
            "max(request_time_ms) FROM t")[0]
        spans = self.spans()
        return {
            "total_traces": total,
            "error_traces": errors,
            "error_rate": _rate(errors, total),
            "time_range": {"start_ms": lo, "end_ms": hi},
            "latency_ms": self.latency(),
            "spans": spans,
            "errors": self.errors(),
            "tools": tools_from_spans(spans),
            "responses": self.responses(),
            "tokens": self.tokens(),
            "cost": self.cost(),
            "assessments": self.assessments(),
            "time_buckets": self.time_buckets(lo, hi),
        }

    def latency(self) -> dict:
        out = {}
        for key, cond in (("all", "true"), ("ok", "state = 'OK'")):
            q, mx = self.rows(
                "SELECT quantile_cont(execution_time_ms, [0.5, 0.9, 0.95, 0.99]), "
                f"max(execution_time_ms) FROM t WHERE {cond}")[0]
            q = q or [None] * 4
            out[key] = {"p50": _num(q[0]), "p90": _num(q[1]), "p95": _num(q[2]),
                        "p99": _num(q[3]), "max": _num(mx)}
        return out

    def spans(self) -> list[dict]:
        key = "name || chr(31) || coalesce(span_type, '')"
        samples = self.samples(
            f"SELECT {key} AS k, trace_id, (status_code = 'ERROR')::INT AS pri FROM s")
        out = []
        for k, name, typ, n, err, terr, q, mx in self.rows(f"""
                SELECT {key}, name, span_type, count(*), count(*) FILTER (WHERE status_code = 'ERROR'),
                       count(DISTINCT trace_id) FILTER (WHERE status_code = 'ERROR'),
                       quantile_cont(duration_ms, [0.5, 0.95]), max(duration_ms)
                FROM s GROUP BY ALL ORDER BY 5 DESC, 4 DESC, 2"""):
            out.append({"name": name, "span_type": typ, "count": n, "error_count": err,
                        "error_rate": _rate(err, n), "traces_with_error": terr,
                        "p50_ms": _num(q[0]), "p95_ms": _num(q[1]), "max_ms": _num(mx),
                        "sample_trace_ids": samples.get(k, [])})
        return out

    def errors(self) -> list[dict]:
        msg = ("coalesce(CASE WHEN exception_type IS NOT NULL THEN exception_type || ': ' || "
               "coalesce(exception_message, '') END, nullif(status_message, ''), '(no message)')")
        err = f"SELECT {msg} AS k, trace_id, name FROM s WHERE status_code = 'ERROR'"
        samples = self.samples(f"SELECT k, trace_id, 0 AS pri FROM ({err})")
        return [{"message": k, "count": n, "traces": nt, "span_names": sorted(names),
                 "sample_trace_ids": samples.get(k, [])}
                for k, n, nt, names in self.rows(
                    f"SELECT k, count(*), count(DISTINCT trace_id), list(DISTINCT name) "
                    f"FROM ({err}) GROUP BY k ORDER BY 2 DESC, 1 LIMIT 100")]

    def responses(self) -> dict:
        def dist(expr: str) -> dict:
            q, mx, mean = self.rows(f"SELECT quantile_cont({expr}, [0.25, 0.5, 0.9, 0.95, 0.99]),"
                                    f" max({expr}), avg({expr}) FROM t")[0]
            q = q or [None] * 5
            return {"p25": _num(q[0]), "p50": _num(q[1]), "p90": _num(q[2]), "p95": _num(q[3]),
                    "p99": _num(q[4]), "max": _num(mx), "mean": _num(mean)}

        empty = "state = 'OK' AND response_empty"
        n_empty = self.rows(f"SELECT count(*) FROM t WHERE {empty}")[0][0]
        ids = [r[0] for r in self.rows(
            f"SELECT trace_id FROM t WHERE {empty} ORDER BY trace_id LIMIT {SAMPLES}")]
        return {"request_length": dist("request_length"),
                "response_length": dist("response_length"),
                "empty_responses": {"count": n_empty, "sample_trace_ids": ids,
                                    "definition": "OK traces whose root span output is "
                                                  "missing or empty ('', \"\", null, {}, [])"}}

    def tokens(self) -> dict | None:
        n, tot, inp, outp, q, mx, mean = self.rows(
            "SELECT count(total_tokens), sum(total_tokens), sum(input_tokens), sum(output_tokens),"
            " quantile_cont(total_tokens, [0.5, 0.95]), max(total_tokens), avg(total_tokens) "
            "FROM t")[0]
        if not n:
            return None
        return {"traces_with_tokens": n, "total_tokens": _num(tot), "input_tokens": _num(inp),
                "output_tokens": _num(outp),
                "per_trace": {"mean": _num(mean), "p50": _num(q[0]), "p95": _num(q[1]),
                              "max": _num(mx)},
                "sample_trace_ids": [r[0] for r in self.rows(
                    f"SELECT trace_id FROM t WHERE total_tokens IS NOT NULL "
                    f"ORDER BY total_tokens DESC, trace_id LIMIT {SAMPLES}")]}

    def cost(self) -> dict | None:
        n, tot, q, mx = self.rows(
            "SELECT count(total_cost), sum(total_cost), quantile_cont(total_cost, [0.5, 0.95]), "
            "max(total_cost) FROM t")[0]
        if not n:
            return None
        return {"traces_with_cost": n, "total_cost": round(tot, 6),
                "per_trace": {"p50": q[0], "p95": q[1], "max": mx},
                "sample_trace_ids": [r[0] for r in self.rows(
                    f"SELECT trace_id FROM t WHERE total_cost IS NOT NULL "
                    f"ORDER BY total_cost DESC, trace_id LIMIT {SAMPLES}")]}

    def assessments(self) -> list[dict]:
        fail = f"lower(trim(value)) IN {FAILING_VALUES}"
        samples = self.samples(f"SELECT name AS k, trace_id, ({fail})::INT AS pri FROM a")
        out = []
        for name, n, nt, failing, vals in self.rows(f"""
                SELECT name, count(*), count(DISTINCT trace_id), count(*) FILTER (WHERE {fail}),
                       list(value) FROM a GROUP BY name ORDER BY name"""):
            counts: dict[str, int] = {}
            for v in vals:
                counts[str(v)] = counts.get(str(v), 0) + 1
            out.append({"name": name, "count": n, "traces": nt,
                        "values": dict(sorted(counts.items(), key=lambda kv: -kv[1])[:50]),
                        "failing": failing, "failing_rate": _rate(failing, n),
                        "sample_trace_ids": samples.get(name, [])})
        return out

    def time_buckets(self, lo: int | None, hi: int | None) -> dict:
        if lo is None:
            return {"granularity": "hour", "buckets": []}
        unit = self.granularity or ("day" if (hi - lo) > 7 * 86_400_000 else "hour")
        b = f"epoch_ms(date_trunc('{unit}', make_timestamp(request_time_ms * 1000)))"
        samples = self.samples(f"SELECT {b} AS k, trace_id, (state = 'ERROR')::INT AS pri FROM t")
        return {"granularity": unit, "buckets": [
            {"start_ms": k, "traces": n, "errors": e, "error_rate": _rate(e, n),
             "sample_trace_ids": samples.get(k, [])}
            for k, n, e in self.rows(f"SELECT {b} AS k, count(*), count(*) FILTER "
                                     f"(WHERE state = 'ERROR') FROM t GROUP BY k ORDER BY k")]}
