"""The census, section by section: each section's exact SQL and, where MLflow aggregates it,
its server form, side by side so the two paths cannot drift apart.

A section fills one or more census keys. ``exact(q, c)`` computes them with DuckDB SQL over the
temp views ``t`` / ``s`` / ``a`` (traces, spans, assessments in scope); ``c`` holds the keys
of earlier sections. The same SQL runs on Spark, transpiled (``spark_census``), so a section
uses only forms both engines compute alike, and a test compares the two censuses. On a tracking server the census is first computed exactly over a sample
of traces, then each section's ``server(c, facts)`` replaces what the server aggregates
exactly (``facts.results`` holds the answers to the ``server_queries`` it asked) and scales
sample counts where the server has none. A section without a server form keeps the sample's
figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb

from insights.analytics.assessments import AssessmentScale, infer_scale, read_scales
from insights.analytics.errors import MESSAGE_CHARS

SAMPLES = 5
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
RATIONALE_CHARS = 200
TOP_RATIONALES = 3
REPEATED_MIN_SHARE, REPEATED_MIN_TRACES, REPEATED_MAX = 0.03, 10, 10
# The error type of a failed span row of ``s`` (flat span_rows): the same as
# ``errors.error_type_sql`` over a span struct; span_rows.exception_type is the exception
# event's ``exception.type`` (parsed by the sources), the rest reads the status message.
ERROR_TYPE_ROW = (
    "coalesce(nullif(exception_type, ''), "
    "nullif(regexp_extract(status_message, '^([A-Za-z_][A-Za-z0-9_.]*): ', 1), ''), "
    f"substring(coalesce(status_message, 'ERROR'), 1, {MESSAGE_CHARS}))")


class Query:
    """The exact census's access to DuckDB: rows, and up to 5 sample trace ids per key."""

    def __init__(self, con: duckdb.DuckDBPyConnection | None, granularity: str | None = None):
        self.con = con
        self.granularity = granularity  # "hour" / "day"; None: chosen from the time range
        self._scalars: dict[str, Any] | None = None
        self._memo: dict[str, Any] = {}

    def prefetch_samples(self, requests: list[tuple[str, dict | None]]) -> None:
        """Compute the ``samples`` of several (pairs_sql, params) at once, for the later
        ``samples`` calls with the same arguments. Nothing here: on DuckDB each query is cheap;
        engines whose queries cost the most (Spark) override it."""

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, once per census (a figure two steps of a section need)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def scalar(self, name: str) -> Any:
        """One of the sections' named aggregates over ``t`` (``Section.scalars``). All of them
        are computed by one query, on first use: one scan of ``t`` instead of one per figure
        (on Spark each query has a fixed cost of its own)."""
        if self._scalars is None:
            exprs = {k: v for section in SECTIONS for k, v in section.scalars.items()}
            row = self.rows(f"SELECT {', '.join(exprs.values())} FROM t")[0]
            self._scalars = dict(zip(exprs, row))
        return self._scalars[name]

    def rows(self, sql: str, params: list | dict | None = None) -> list[tuple]:
        return self.con.execute(sql, params or []).fetchall()

    def samples(self, pairs_sql: str, params: dict | None = None) -> dict:
        """Map key -> up to 5 trace ids from rows (k, trace_id, priority); high priority first.

        ``pairs_sql`` may use named parameters ($name) given in ``params``.
        """
        sql = f"""
            SELECT k, list(trace_id ORDER BY pri DESC, trace_id) FROM (
                SELECT k, trace_id, max(pri) AS pri,
                       row_number() OVER (PARTITION BY k ORDER BY max(pri) DESC, trace_id) AS rn
                FROM ({pairs_sql}) GROUP BY k, trace_id)
            WHERE rn <= $samples GROUP BY k"""
        return {k: v for k, v in self.rows(sql, {"samples": SAMPLES, **(params or {})})}


@dataclass
class ServerFacts:
    """What the server told us, for the sections' server forms."""

    results: dict[str, Any]  # answers to the sections' server_queries, by query name
    buckets: dict[int, dict[str, float]]  # bucket start (ms) -> trace status -> count
    unit_ms: int
    scale: float  # experiment traces per sampled trace
    lo: int
    hi: int
    status: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for counts in self.buckets.values():  # the buckets cover [lo, hi]: they sum to the total
            for state, n in counts.items():
                self.status[state] = self.status.get(state, 0) + n

    def scaled(self, n: int | None) -> int | None:
        return None if n is None else round(n * self.scale)


class Section:
    """One part of the census. Subclasses set ``keys`` and implement ``exact``."""

    keys: tuple[str, ...] = ()
    # Named aggregates over the whole of ``t`` (no GROUP BY) that ``exact`` reads with
    # ``q.scalar(name)``; names are unique across sections.
    scalars: dict[str, str] = {}

    def exact(self, q: Query, c: dict) -> dict:
        raise NotImplementedError

    def sample_queries(self, q: Query) -> list[tuple[str, dict | None]]:
        """The (pairs_sql, params) ``exact`` passes to ``q.samples``, known before it runs,
        so that an engine can compute all sections' samples in one query."""
        return []

    def server_queries(self, m: Any) -> dict[str, Callable[[], Any]]:
        """Server aggregate calls this section needs (``m``: server_census.Metrics)."""
        return {}

    def server(self, c: dict, facts: ServerFacts) -> dict:
        """This section's keys from server aggregates (default: the sample's figures)."""
        return {}


def num(v):
    if v is None:
        return None
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 3)
    return v


def whole(v):
    """Counts, sums and maxima of integer columns come back from MLflow as floats."""
    return int(v) if isinstance(v, float) and v.is_integer() else num(v)


def rate(part: int, total: int) -> float:
    return round(part / total, 4) if total else 0.0


def server_percentiles(v: dict) -> dict:
    return {"p50": num(v.get("P50.0")), "p90": num(v.get("P90.0")), "p95": num(v.get("P95.0")),
            "p99": num(v.get("P99.0")), "max": whole(v.get("MAX"))}


class Totals(Section):
    keys = ("total_traces", "error_traces", "error_rate", "time_range")
    scalars = {"total": "count(*)", "errors": "count(*) FILTER (WHERE state = 'ERROR')",
               "start_ms": "min(request_time_ms)", "end_ms": "max(request_time_ms)"}

    def exact(self, q, c):
        total, errors, lo, hi = (q.scalar(k) for k in ("total", "errors", "start_ms", "end_ms"))
        return {"total_traces": total, "error_traces": errors, "error_rate": rate(errors, total),
                "time_range": {"start_ms": lo, "end_ms": hi}}

    def server(self, c, facts):
        total, errors = int(sum(facts.status.values())), int(facts.status.get("ERROR", 0))
        return {"total_traces": total, "error_traces": errors, "error_rate": rate(errors, total),
                "time_range": {"start_ms": facts.lo, "end_ms": facts.hi}}


class LatencySection(Section):
    keys = ("latency_ms",)
    _STATES = (("all", "true", None), ("ok", "state = 'OK'", "trace.status = 'OK'"))
    scalars = {f"latency_{key}_{fig}": f"{agg} FILTER (WHERE {cond})"
               for key, cond, _ in _STATES
               for fig, agg in (("p", "quantile_cont(execution_time_ms, [0.5, 0.9, 0.95, 0.99])"),
                                ("max", "max(execution_time_ms)"))}

    def exact(self, q, c):
        out = {}
        for key, _, _ in self._STATES:
            p, mx = q.scalar(f"latency_{key}_p"), q.scalar(f"latency_{key}_max")
            p = p or [None] * 4
            out[key] = {"p50": num(p[0]), "p90": num(p[1]), "p95": num(p[2]), "p99": num(p[3]),
                        "max": num(mx)}
        return {"latency_ms": out}

    def server_queries(self, m):
        aggs = [*m.percentiles(50, 90, 95, 99), m.agg("MAX")]
        return {f"latency_{key}": m.single("TRACES", "latency", aggs, [flt] if flt else None)
                for key, _, flt in self._STATES}

    def server(self, c, facts):
        return {"latency_ms": {key: server_percentiles(facts.results[f"latency_{key}"])
                               for key, _, _ in self._STATES}}


class SpansSection(Section):
    keys = ("spans",)
    _KEY = "name || chr(31) || coalesce(span_type, '')"
    _PAIRS = f"SELECT {_KEY} AS k, trace_id, (status_code = 'ERROR')::INT AS pri FROM s"

    def sample_queries(self, q):
        return [(self._PAIRS, None), (self._error_type_pairs(self._KEY), None)]

    def exact(self, q, c):
        key = self._KEY
        samples = q.samples(self._PAIRS)
        types = self.error_types(q, key)
        out = []
        for k, name, typ, n, err, terr, roots, failed, p, mx in q.rows(f"""
                SELECT {key}, name, span_type, count(*),
                       count(*) FILTER (WHERE status_code = 'ERROR'),
                       count(DISTINCT trace_id) FILTER (WHERE status_code = 'ERROR'),
                       count(*) FILTER (WHERE is_root),
                       count(DISTINCT trace_id) FILTER (WHERE status_code = 'ERROR'
                                                        AND trace_state = 'ERROR'),
                       quantile_cont(duration_ms, [0.5, 0.95]), max(duration_ms)
                FROM (SELECT s.*, t.state AS trace_state FROM s LEFT JOIN t USING (trace_id))
                GROUP BY ALL ORDER BY 5 DESC, 4 DESC, 2"""):
            out.append({"name": name, "span_type": typ, "count": n, "error_count": err,
                        "error_rate": rate(err, n), "traces_with_error": terr,
                        "p50_ms": num(p[0]), "p95_ms": num(p[1]), "max_ms": num(mx),
                        "sample_trace_ids": samples.get(k, []), "root_count": roots,
                        "failed_traces": failed, "error_types": types.get(k, [])})
        return {"spans": out}

    @staticmethod
    def _errors_of(key: str) -> str:
        return (f"SELECT {key} AS sk, {ERROR_TYPE_ROW} AS etype, s.trace_id, "
                "coalesce(nullif(exception_message, ''), status_message) AS msg, "
                "t.state AS trace_state FROM s LEFT JOIN t USING (trace_id) "
                "WHERE status_code = 'ERROR'")

    @classmethod
    def _error_type_pairs(cls, key: str) -> str:
        return (f"SELECT sk || chr(30) || etype AS k, trace_id, "
                f"(trace_state = 'ERROR')::INT AS pri FROM ({cls._errors_of(key)})")

    @classmethod
    def error_types(cls, q, key: str) -> dict[str, list[dict]]:
        """Per span key: its failures by error type (``errors.error_type``), most first."""
        err = cls._errors_of(key)
        samples = q.samples(cls._error_type_pairs(key))
        out: dict[str, list[dict]] = {}
        for sk, etype, n, nt, failed, msg in q.rows(f"""
                SELECT sk, etype, count(*), count(DISTINCT trace_id),
                       count(DISTINCT trace_id) FILTER (WHERE trace_state = 'ERROR'),
                       mode(msg ORDER BY msg) FROM ({err}) GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2"""):
            out.setdefault(sk, []).append({
                "type": etype, "count": n, "traces": nt, "failed_traces": failed,
                "message": _short_message(msg, etype),
                "sample_trace_ids": samples.get(f"{sk}\x1e{etype}", [])})
        return out

    def server_queries(self, m):
        return {"span_counts": m.keyed("SPANS", "span_count", [m.agg("COUNT")],
                                       ["span_name", "span_type", "span_status"]),
                "span_latency": m.keyed("SPANS", "latency", [*m.percentiles(50, 95),
                                                             m.agg("MAX")], ["span_name"])}

    def server(self, c, facts):
        counts: dict[tuple, dict[str, int]] = {}
        for (name, typ, status), v in facts.results["span_counts"].items():
            counts.setdefault((name, typ), {})[status] = int(v["COUNT"])
        seen = {(s["name"], s["span_type"]): s for s in c["spans"]}
        out = []
        for (name, typ), by_status in counts.items():
            n, err = sum(by_status.values()), by_status.get("ERROR", 0)
            lat = facts.results["span_latency"].get((name,), {})
            s = seen.get((name, typ), {})
            roots = s.get("root_count", 0)
            out.append({"name": name, "span_type": typ, "count": n, "error_count": err,
                        "error_rate": rate(err, n),
                        "traces_with_error": min(err, facts.scaled(s.get("traces_with_error", 0))),
                        "p50_ms": num(lat.get("P50.0")), "p95_ms": num(lat.get("P95.0")),
                        "max_ms": num(lat.get("MAX")),
                        "sample_trace_ids": s.get("sample_trace_ids", []),
                        # the server has no root or trace-outcome dimension: from the sample
                        "root_count": n if roots and roots == s.get("count") else
                        min(n, facts.scaled(roots)),
                        "failed_traces": min(err, facts.scaled(s.get("failed_traces", 0))),
                        "error_types": _scaled_types(s.get("error_types", []), err, facts)})
        out.sort(key=lambda s: (-s["error_count"], -s["count"], s["name"]))
        return {"spans": out}


def _short_message(msg: str | None, etype: str) -> str:
    """A failure's message without its ``Type: `` prefix, cut short."""
    text = (msg or "").strip()
    if text.startswith(f"{etype}: "):
        text = text[len(etype) + 2:]
    return text[:RATIONALE_CHARS]


def _scaled_types(types: list[dict], err: int, facts: ServerFacts) -> list[dict]:
    if facts.scale <= 1:
        return types
    return [{**e, "sample_count": e["count"], "count": min(err, facts.scaled(e["count"])),
             "traces": min(err, facts.scaled(e["traces"])),
             "failed_traces": min(err, facts.scaled(e["failed_traces"]))} for e in types]


class ErrorsSection(Section):
    """Span errors by message. ``traces`` counts traces with such a span error, whatever
    their outcome; ``failed_traces`` only those that ended in ERROR (a span error in a trace
    that ended OK was recovered from)."""

    keys = ("errors",)
    _MSG = ("coalesce(CASE WHEN exception_type IS NOT NULL THEN exception_type || ': ' || "
            "coalesce(exception_message, '') END, nullif(status_message, ''), '(no message)')")
    _ERR = (f"SELECT {_MSG} AS k, {ERROR_TYPE_ROW} AS etype, s.trace_id, name, "
            "t.state AS trace_state FROM s LEFT JOIN t USING (trace_id) "
            "WHERE status_code = 'ERROR'")
    _PAIRS = f"SELECT k, trace_id, (trace_state = 'ERROR')::INT AS pri FROM ({_ERR})"

    def sample_queries(self, q):
        return [(self._PAIRS, None)]

    def exact(self, q, c):
        err = self._ERR
        samples = q.samples(self._PAIRS)
        return {"errors": [
            {"message": k, "count": n, "traces": nt, "span_names": sorted(names),
             "sample_trace_ids": samples.get(k, []), "error_type": etype,
             "failed_traces": failed}
            for k, n, nt, names, etype, failed in q.rows(
                f"SELECT k, count(*), count(DISTINCT trace_id), list(DISTINCT name), "
                f"mode(etype ORDER BY etype), "
                f"count(DISTINCT trace_id) FILTER (WHERE trace_state = 'ERROR') "
                f"FROM ({err}) GROUP BY k ORDER BY 2 DESC, 1 LIMIT 100")]}

    def server(self, c, facts):
        if facts.scale <= 1:
            return {}
        return {"errors": [{**e, "sample_count": e["count"], "count": facts.scaled(e["count"]),
                            "traces": facts.scaled(e["traces"]),
                            "failed_traces": facts.scaled(e.get("failed_traces", 0))}
                           for e in c["errors"]]}


def tools_from_spans(spans: list[dict]) -> list[dict]:
    """The TOOL spans' entries, renamed as tool calls (same counts, timings and samples)."""
    tools = [{"name": s["name"], "calls": s["count"], "failures": s["error_count"],
              "failure_rate": s["error_rate"], "p50_ms": s["p50_ms"], "p95_ms": s["p95_ms"],
              "sample_trace_ids": s["sample_trace_ids"]}
             for s in spans if s["span_type"] == "TOOL"]
    return sorted(tools, key=lambda t: (-t["failures"], -t["calls"], t["name"]))


class ToolsSection(Section):
    """Tool calls are the TOOL spans: derived from the spans section on both paths."""

    keys = ("tools",)

    def exact(self, q, c):
        return {"tools": tools_from_spans(c["spans"])}

    def server(self, c, facts):
        return {"tools": tools_from_spans(c["spans"])}


EMPTY_DEFINITION = ("OK traces whose root span output holds no answer text: missing, or every "
                    "text leaf empty ('', null, {}, [], {\"answer\": \"\"}, chat completions "
                    "and messages with empty content); see insights.analytics.answers")


_EMPTY = "state = 'OK' AND response_empty"


class ResponsesSection(Section):
    keys = ("responses",)
    scalars = {
        **{f"{col}_{fig}": agg.format(col)
           for col in ("request_length", "response_length")
           for fig, agg in (("p", "quantile_cont({}, [0.25, 0.5, 0.9, 0.95, 0.99])"),
                            ("max", "max({})"), ("mean", "avg({})"))},
        "empty_responses": f"count(*) FILTER (WHERE {_EMPTY})",
        "ok_traces": "count(*) FILTER (WHERE state = 'OK')"}

    def exact(self, q, c):
        def dist(col: str) -> dict:
            p, mx, mean = (q.scalar(f"{col}_{fig}") for fig in ("p", "max", "mean"))
            p = p or [None] * 5
            return {"p25": num(p[0]), "p50": num(p[1]), "p90": num(p[2]), "p95": num(p[3]),
                    "p99": num(p[4]), "max": num(mx), "mean": num(mean)}

        n_empty = q.scalar("empty_responses")
        ids = [r[0] for r in q.rows(
            f"SELECT trace_id FROM t WHERE {_EMPTY} ORDER BY trace_id LIMIT ?", [SAMPLES])]
        return {"responses": {
            "request_length": dist("request_length"), "response_length": dist("response_length"),
            "empty_responses": {"count": n_empty, "sample_trace_ids": ids,
                                "definition": EMPTY_DEFINITION},
            "repeated_answers": self.repeated(q)}}

    @staticmethod
    def repeated(q) -> list[dict]:
        """The same non-empty answer given to many requests (a canned fallback): exact
        responses of at least 3% of OK traces and at least 10 traces, most frequent first."""
        n_ok = q.scalar("ok_traces")
        out = []
        for resp, n, ids in q.rows(
                "SELECT response, count(*), list_sort(list(trace_id))[1:$samples] FROM t "
                "WHERE state = 'OK' AND NOT coalesce(response_empty, true) GROUP BY response "
                "HAVING count(*) >= $least AND count(*) >= $share ORDER BY 2 DESC, 1 LIMIT $top",
                {"samples": SAMPLES, "least": REPEATED_MIN_TRACES,
                 "share": REPEATED_MIN_SHARE * n_ok, "top": REPEATED_MAX}):
            out.append({"text": _answer_text(resp), "count": n, "share": rate(n, n_ok),
                        "sample_trace_ids": ids})
        return out

    def server(self, c, facts):
        if facts.scale <= 1:
            return {}
        empty = c["responses"]["empty_responses"]
        return {"responses": {
            **c["responses"],
            "empty_responses": {**empty, "sample_count": empty["count"],
                                "count": facts.scaled(empty["count"])},
            "repeated_answers": [{**r, "sample_count": r["count"],
                                  "count": facts.scaled(r["count"])}
                                 for r in c["responses"].get("repeated_answers", [])]}}


def _answer_text(response: str | None) -> str:
    """A response as shown: a JSON string unquoted, cut to 200 characters."""
    try:
        value = json.loads(response) if response is not None else ""
    except ValueError:
        value = response
    text = value if isinstance(value, str) else response
    return text[:RATIONALE_CHARS]


class TokensSection(Section):
    keys = ("tokens",)
    scalars = {"tokens_n": "count(total_tokens)", "tokens_sum": "sum(total_tokens)",
               "tokens_in": "sum(input_tokens)", "tokens_out": "sum(output_tokens)",
               "tokens_p": "quantile_cont(total_tokens, [0.5, 0.95])",
               "tokens_max": "max(total_tokens)", "tokens_mean": "avg(total_tokens)"}

    def exact(self, q, c):
        n, tot, inp, outp, p, mx, mean = (q.scalar(k) for k in self.scalars)
        if not n:
            return {"tokens": None}
        return {"tokens": {
            "traces_with_tokens": n, "total_tokens": num(tot), "input_tokens": num(inp),
            "output_tokens": num(outp),
            "per_trace": {"mean": num(mean), "p50": num(p[0]), "p95": num(p[1]), "max": num(mx)},
            "sample_trace_ids": [r[0] for r in q.rows(
                "SELECT trace_id FROM t WHERE total_tokens IS NOT NULL "
                "ORDER BY total_tokens DESC, trace_id LIMIT ?", [SAMPLES])]}}

    def server_queries(self, m):
        return {"tokens": m.single("TRACES", "total_tokens", [
                    m.agg("SUM"), m.agg("AVG"), *m.percentiles(50, 95), m.agg("MAX")]),
                "input_tokens": m.single("TRACES", "input_tokens", [m.agg("SUM")]),
                "output_tokens": m.single("TRACES", "output_tokens", [m.agg("SUM")])}

    def server(self, c, facts):
        tok, res = facts.results["tokens"], facts.results
        if not tok.get("SUM"):  # the server's figures or none: never the sample's, unscaled
            return {"tokens": None}
        return {"tokens": {
            "traces_with_tokens": round(tok["SUM"] / tok["AVG"]) if tok.get("AVG") else None,
            "total_tokens": whole(tok["SUM"]),
            "input_tokens": whole(res["input_tokens"].get("SUM")),
            "output_tokens": whole(res["output_tokens"].get("SUM")),
            "per_trace": {"mean": num(tok.get("AVG")), "p50": num(tok.get("P50.0")),
                          "p95": num(tok.get("P95.0")), "max": whole(tok.get("MAX"))},
            "sample_trace_ids": (c.get("tokens") or {}).get("sample_trace_ids", [])}}


class CostSection(Section):
    keys = ("cost",)
    scalars = {"cost_n": "count(total_cost)", "cost_sum": "sum(total_cost)",
               "cost_p": "quantile_cont(total_cost, [0.5, 0.95])", "cost_max": "max(total_cost)"}

    def exact(self, q, c):
        n, tot, p, mx = (q.scalar(k) for k in self.scalars)
        if not n:
            return {"cost": None}
        return {"cost": {
            "traces_with_cost": n, "total_cost": round(tot, 6),
            "per_trace": {"p50": p[0], "p95": p[1], "max": mx},
            "sample_trace_ids": [r[0] for r in q.rows(
                "SELECT trace_id FROM t WHERE total_cost IS NOT NULL "
                "ORDER BY total_cost DESC, trace_id LIMIT ?", [SAMPLES])]}}

    def server(self, c, facts):  # MLflow has no cost aggregate: scale the sample's
        cost = c.get("cost")
        if not cost:
            return {}
        return {"cost": {**cost, "traces_with_cost": facts.scaled(cost["traces_with_cost"]),
                         "total_cost": round(cost["total_cost"] * facts.scale, 6)}}


def _value_text(value: str | None) -> str:
    """An assessment value as the exact census shows it: JSON strings unquoted ('"yes"' -> yes)."""
    try:
        decoded = json.loads(value) if value is not None else None
    except ValueError:
        return str(value)
    return decoded if isinstance(decoded, str) else str(value)


class AssessmentsSection(Section):
    """Per assessment name: how many, how many fail on the name's own scale (``assessments``
    module), the values, and the most frequent rationales of the failing ones."""

    keys = ("assessments",)

    @staticmethod
    def scales(q) -> dict[str, AssessmentScale]:
        return q.memo("assessment_scales", lambda: read_scales(
            q.rows("SELECT name, value, count(*) FROM a GROUP BY 1, 2")))

    @staticmethod
    def _pairs(fail: str) -> str:
        return f"SELECT name AS k, trace_id, ({fail})::INT AS pri FROM a"

    def sample_queries(self, q):
        return [(self._pairs(failing_case(self.scales(q), "name", "value")), None)]

    def exact(self, q, c):
        scales = self.scales(q)
        fail = failing_case(scales, "name", "value")
        samples = q.samples(self._pairs(fail))
        rationales = self.rationales(q, fail)
        out = []
        for name, n, nt, failing, failing_traces, vals in q.rows(f"""
                SELECT name, count(*), count(DISTINCT trace_id), count(*) FILTER (WHERE {fail}),
                       count(DISTINCT trace_id) FILTER (WHERE {fail}), list(value)
                FROM a GROUP BY name ORDER BY name"""):
            counts: dict[str, int] = {}
            for v in vals:
                counts[str(v)] = counts.get(str(v), 0) + 1
            out.append(self._entry(name, n, nt, counts, failing, samples.get(name, []),
                                   failing_traces, scales[name], rationales.get(name, [])))
        return {"assessments": out}

    @staticmethod
    def rationales(q, fail: str) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for name, text, n, ids in q.rows(f"""
                SELECT name, rationale, count(*), list_sort(list(DISTINCT trace_id))[1:$k]
                FROM a WHERE ({fail}) AND nullif(trim(rationale), '') IS NOT NULL
                GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2""", {"k": SAMPLES}):
            if len(out.setdefault(name, [])) < TOP_RATIONALES:
                out[name].append({"rationale": text.strip()[:RATIONALE_CHARS], "count": n,
                                  "sample_trace_ids": ids})
        return out

    @staticmethod
    def _entry(name, n, traces, counts, failing, samples, failing_traces,
               scale: AssessmentScale, rationales) -> dict:
        return {"name": name, "count": n, "traces": traces,
                "values": dict(sorted(counts.items(), key=lambda kv: -kv[1])[:50]),
                "failing": failing, "failing_rate": rate(failing, n),
                "sample_trace_ids": samples, "failing_traces": failing_traces,
                "scale": scale.to_dict(), "failing_rationales": rationales}

    def server_queries(self, m):
        return {"assessments": m.keyed("ASSESSMENTS", "assessment_count", [m.agg("COUNT")],
                                       ["assessment_name", "assessment_value"])}

    def server(self, c, facts):
        by_name: dict[str, dict[str, int]] = {}
        for (name, value), v in facts.results["assessments"].items():
            by_name.setdefault(name, {})[_value_text(value)] = int(v["COUNT"])
        sampled = {a["name"]: a for a in c["assessments"]}
        out = []
        for name, values in sorted(by_name.items()):
            n = sum(values.values())
            scale = infer_scale(name, values)
            failing = sum(k for v, k in values.items() if scale.is_failing(v))
            s = sampled.get(name, {})
            rationales = s.get("failing_rationales", [])
            if facts.scale > 1:
                rationales = [{**r, "sample_count": r["count"], "count": facts.scaled(r["count"])}
                              for r in rationales]
            out.append(self._entry(
                name, n, min(n, facts.scaled(s.get("traces", 0))), values, failing,
                s.get("sample_trace_ids", []),
                min(failing, facts.scaled(s.get("failing_traces", 0))), scale, rationales))
        return {"assessments": out}


def failing_case(scales: dict[str, AssessmentScale], name_sql: str, value_sql: str) -> str:
    """DuckDB: true when the assessment (``name_sql``, ``value_sql``) fails on its scale."""
    whens = " ".join(f"WHEN {name_sql} = '{n.replace(chr(39), chr(39) * 2)}' "
                     f"THEN {sc.failing_sql(value_sql)}" for n, sc in scales.items())
    return f"CASE {whens} ELSE FALSE END" if whens else "FALSE"


class TimeBucketsSection(Section):
    """Trace and error counts per hour (per day beyond a week of traces)."""

    keys = ("time_buckets",)
    _BUCKET = "epoch_ms(date_trunc($unit, make_timestamp(request_time_ms * 1000)))"
    _PAIRS = f"SELECT {_BUCKET} AS k, trace_id, (state = 'ERROR')::INT AS pri FROM t"

    @staticmethod
    def unit(q, lo: int, hi: int) -> str:
        return q.granularity or ("day" if (hi - lo) > 7 * DAY_MS else "hour")

    def sample_queries(self, q):
        lo, hi = q.scalar("start_ms"), q.scalar("end_ms")
        return [] if lo is None else [(self._PAIRS, {"unit": self.unit(q, lo, hi)})]

    def exact(self, q, c):
        lo, hi = c["time_range"]["start_ms"], c["time_range"]["end_ms"]
        if lo is None:
            return {"time_buckets": {"granularity": "hour", "buckets": []}}
        unit = self.unit(q, lo, hi)
        b = self._BUCKET
        samples = q.samples(self._PAIRS, {"unit": unit})
        return {"time_buckets": {"granularity": unit, "buckets": [
            {"start_ms": k, "traces": n, "errors": e, "error_rate": rate(e, n),
             "sample_trace_ids": samples.get(k, [])}
            for k, n, e in q.rows(f"SELECT {b} AS k, count(*), count(*) FILTER "
                                  f"(WHERE state = 'ERROR') FROM t GROUP BY k ORDER BY k",
                                  {"unit": unit})]}}

    def server(self, c, facts):
        samples = {b["start_ms"]: b["sample_trace_ids"] for b in c["time_buckets"]["buckets"]}
        return {"time_buckets": {
            "granularity": "day" if facts.unit_ms == DAY_MS else "hour", "buckets": [
                {"start_ms": k, "traces": int(sum(v.values())), "errors": int(v.get("ERROR", 0)),
                 "error_rate": rate(v.get("ERROR", 0), sum(v.values())),
                 "sample_trace_ids": samples.get(k, [])} for k, v in facts.buckets.items()]}}


# In census order; a section may read the keys of those before it.
SECTIONS: list[Section] = [Totals(), LatencySection(), SpansSection(), ErrorsSection(),
                           ToolsSection(), ResponsesSection(), TokensSection(), CostSection(),
                           AssessmentsSection(), TimeBucketsSection()]


def exact_census(con: duckdb.DuckDBPyConnection, granularity: str | None = None) -> dict:
    """Every section's exact figures over the temp views t / s / a, as one dict."""
    return exact_census_with(Query(con, granularity))


def exact_census_with(q: Query) -> dict:
    """Every section's exact figures through ``q`` (DuckDB here, Spark in ``spark_census``)."""
    q.prefetch_samples([r for section in SECTIONS for r in section.sample_queries(q)])
    c: dict = {}
    for section in SECTIONS:
        c.update(section.exact(q, c))
    return c


def server_overlay(sampled: dict, facts: ServerFacts) -> dict:
    """The sample's census with each server-aggregated section replaced by the server's form."""
    c = dict(sampled)
    for section in SECTIONS:
        c.update(section.server(c, facts))
    return c
