"""The census on Spark: the same sections, the same SQL, read from the `traces` table.

Why: an experiment that has outgrown one machine lives as a `traces` table (Parquet, Delta, a
catalog table) that Spark reads. The census's sections (``sections``) are written once, in
DuckDB SQL over three flat views: ``t`` (a row per trace), ``s`` (a row per span), ``a`` (a
row per assessment). Here those views are derived on Spark from the nested `traces` table,
each section's SQL is transpiled to Spark SQL by sqlglot, and the rows come back as DuckDB
would return them, so one definition yields the same census on both engines (tests compare
them section by section).

The flat views are cached by Spark for the census's duration: a dozen aggregates then scan
the flat rows instead of re-exploding the nested spans each time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

from insights.analytics.census_model import Census
from insights.analytics.sections import SAMPLES, Query, exact_census_with
from insights.errors import InvalidInputError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from insights.analytics.session import AnalyticsSession

# The flat views the sections read, from the nested `traces` view; columns as the cache's
# trace_rows / span_rows / assessment_rows (``schema.DDL``) and with the same derivations:
# a root span has no parent; a failed span's exception type and message come from its first
# `exception` event (as the trace sources parse them).
_EVENTS = "array<struct<name: string, attributes: map<string, string>>>"
FLAT_VIEWS = {
    "t": """
        SELECT trace_id, request_time_ms, execution_time_ms, state, request, response,
               trace_name, session_id, input_tokens, output_tokens, total_tokens, total_cost,
               CAST(length(request) AS BIGINT) AS request_length,
               CAST(length(response) AS BIGINT) AS response_length, response_empty
        FROM traces {where}""",
    "s": f"""
        SELECT trace_id, sp.name, sp.span_type, sp.status_code, sp.status_message,
               sp.start_time_ms, sp.duration_ms, sp.parent_id IS NULL AS is_root,
               exc['exception.type'] AS exception_type,
               exc['exception.message'] AS exception_message, sp.span_id, sp.parent_id,
               sp.end_time_ms
        FROM (SELECT trace_id, sp, CASE WHEN sp.status_code = 'ERROR' THEN
                     get(filter(from_json(sp.events, '{_EVENTS}'),
                                e -> e.name = 'exception'), 0).attributes END AS exc
              FROM (SELECT trace_id, explode(spans) AS sp FROM traces {{where}}))""",
    "a": """
        SELECT trace_id, CAST(NULL AS STRING) AS assessment_id, ass.name, ass.value,
               ass.source_type, ass.rationale, CAST(NULL AS BIGINT) AS last_updated_ms
        FROM (SELECT trace_id, explode(assessments) AS ass FROM traces {where})""",
}


class SparkQuery(Query):
    """``Query`` over Spark: DuckDB SQL transpiled to Spark SQL, rows shaped as DuckDB's."""

    def __init__(self, spark: SparkSession, granularity: str | None = None):
        super().__init__(None, granularity)
        self.spark = spark
        self._prefetched: dict[tuple, dict] = {}

    def rows(self, sql: str, params: list | dict | None = None) -> list[tuple]:
        text = spark_sql(_inline(sql, params))
        return [tuple(_plain(v) for v in row) for row in self.spark.sql(text).collect()]

    def samples(self, pairs_sql: str, params: dict | None = None) -> dict:
        """As ``Query.samples``; the per-key lists are ordered here (Spark's collect_list
        keeps no order). Answered from ``prefetch_samples`` when it computed them."""
        done = self._prefetched.get(_request_key(pairs_sql, params))
        if done is not None:
            return done
        ranked = self.rows(f"""
            SELECT k, trace_id FROM (
                SELECT k, trace_id, row_number() OVER (PARTITION BY k
                                                       ORDER BY max(pri) DESC, trace_id) AS rn
                FROM ({pairs_sql}) GROUP BY k, trace_id)
            WHERE rn <= $samples ORDER BY k, rn""", {"samples": SAMPLES, **(params or {})})
        out: dict = {}
        for k, trace_id in ranked:
            out.setdefault(k, []).append(trace_id)
        return out

    def prefetch_samples(self, requests: list[tuple[str, dict | None]]) -> None:
        """Every section's samples in one Spark query (one job instead of one per section):
        the requests' (k, trace_id, pri) rows tagged with the request's number, ranked per
        (request, k). Keys travel as strings, with their type to restore integers."""
        if not requests:
            return
        union = " UNION ALL ".join(
            f"SELECT {g} AS g, CAST(k AS VARCHAR) AS k, typeof(k) AS kt, trace_id, pri "
            f"FROM ({_inline(sql, params)})" for g, (sql, params) in enumerate(requests))
        ranked = self.rows(f"""
            SELECT g, k, kt, trace_id FROM (
                SELECT g, k, kt, trace_id,
                       row_number() OVER (PARTITION BY g, k ORDER BY max(pri) DESC, trace_id)
                       AS rn
                FROM ({union}) GROUP BY g, k, kt, trace_id)
            WHERE rn <= $samples ORDER BY g, k, rn""", {"samples": SAMPLES})
        found: list[dict] = [{} for _ in requests]
        for g, k, kt, trace_id in ranked:
            key = int(k) if k is not None and kt in _INTEGER_TYPES else k
            found[g].setdefault(key, []).append(trace_id)
        for (sql, params), out in zip(requests, found):
            self._prefetched[_request_key(sql, params)] = out


_INTEGER_TYPES = ("tinyint", "smallint", "int", "bigint")


def _request_key(pairs_sql: str, params: dict | None) -> tuple:
    return pairs_sql, tuple(sorted((params or {}).items()))


def spark_sql(duckdb_sql: str) -> str:
    """A section's DuckDB SQL as Spark SQL: sqlglot's transpilation, plus the four DuckDB
    forms the sections use that it renders wrongly for Spark (see ``_spark_form``)."""
    tree = sqlglot.parse_one(duckdb_sql, read="duckdb")
    return tree.transform(_spark_form).sql(dialect="spark")


def _call(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _spark_form(node: exp.Expression) -> exp.Expression:
    """One node of a DuckDB tree in the form Spark computes alike."""
    # quantile_cont(x, [q...]) -> percentile(x, array(q...)): both interpolate linearly
    if isinstance(node, exp.PercentileCont) and node.expression is not None:
        return _call("PERCENTILE", node.this, node.expression)
    # mode(x ORDER BY x) -> mode(x, true): the smallest of equally frequent values
    if isinstance(node, exp.Mode) and isinstance(node.this, exp.Order):
        return _call("MODE", node.this.this, exp.true())
    # list[a:b] (1-based, inclusive) -> slice(list, a, b - a + 1)
    if (isinstance(node, exp.Bracket) and len(node.expressions) == 1
            and isinstance(node.expressions[0], exp.Slice)):
        lo, hi = (int(e.name) for e in (node.expressions[0].this, node.expressions[0].expression))
        return _call("SLICE", node.this, exp.Literal.number(lo), exp.Literal.number(hi - lo + 1))
    # epoch_ms(<timestamp>) -> unix_millis(<timestamp>) (sqlglot reads it as ms -> timestamp)
    if isinstance(node, exp.UnixToTime) and isinstance(node.this, exp.TimestampTrunc):
        return _call("UNIX_MILLIS", node.this)
    return node


def _inline(sql: str, params: list | dict | None) -> str:
    """Bind the sections' own parameters (numbers and short keywords, never user text) as
    literals: Spark's named parameters do not reach every place DuckDB's do (LIMIT, slices)."""
    if not params:
        return sql
    if isinstance(params, dict):
        for name in sorted(params, key=len, reverse=True):
            sql = sql.replace(f"${name}", _literal(params[name]))
        return sql
    parts = sql.split("?")
    if len(parts) != len(params) + 1:
        raise ValueError(f"{len(params)} parameters for {len(parts) - 1} placeholders")
    return "".join(p + (_literal(v) if i < len(params) else "")
                   for i, (p, v) in enumerate(zip(parts, [*params, None])))


def _literal(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"cannot inline {value!r}")
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def _plain(v: Any) -> Any:
    """A collected value as DuckDB returns it: arrays as lists, Decimal sums as numbers."""
    from decimal import Decimal

    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    return v


def spark_census(session: AnalyticsSession | None = None, *, table: str | None = None,
                 remote: str | None = None, master: str | None = None,
                 filter_string: str | None = None, start_time_ms: int | None = None,
                 end_time_ms: int | None = None,
                 progress: Callable[[str], None] | None = None) -> Census:
    """The census on Spark of the session's experiment (exported to Parquet first, only new
    traces), or of ``table``; scoped as ``census.compute_census`` scopes it: the filter is
    evaluated by MLflow (it needs the session's experiment), the bounds on trace start time."""
    from insights.analytics import spark_engine

    say = progress or (lambda _m: None)
    ids = None
    if filter_string:
        if session is None:
            raise InvalidInputError("--filter-string needs the experiment's MLflow store; "
                                    "with --table, bound the census by time instead")
        from insights.analytics.scope import matching_trace_ids

        ids = matching_trace_ids(session.tracking_uri, session.experiment_id, filter_string)
    where = _window(start_time_ms, end_time_ms, ids is not None)
    spark = spark_engine.spark_session(remote, master)
    with spark_engine.lock():
        say("reading traces on Spark" if table else "exporting new traces for Spark")
        spark_engine.register_traces(spark, session, table)
        if ids is not None:
            spark.createDataFrame([(i,) for i in ids], "trace_id STRING") \
                .createOrReplaceTempView("scope_ids")
        return compute_spark_census(spark, where, say)


def compute_spark_census(spark: SparkSession, where: str = "",
                         progress: Callable[[str], None] | None = None) -> Census:
    """The census of the temp view ``traces`` (registered by the caller), rows limited by
    ``where`` (a WHERE clause over `traces`, built by ``_window``)."""
    from pyspark.errors import PySparkException

    say = progress or (lambda _m: None)
    try:
        for name, body in FLAT_VIEWS.items():
            spark.sql(body.format(where=where)).createOrReplaceTempView(name)
            spark.catalog.cacheTable(name)
        say("aggregating census on Spark")
        return Census.model_validate({**exact_census_with(SparkQuery(spark)), "method": "exact"})
    except PySparkException as exc:
        raise InvalidInputError(f"Spark census failed: {_one_line(str(exc))}") from None
    finally:
        for name in FLAT_VIEWS:
            if spark.catalog.tableExists(name):
                spark.catalog.uncacheTable(name)
                spark.catalog.dropTempView(name)


def _window(start_time_ms: int | None, end_time_ms: int | None, by_ids: bool = False) -> str:
    """The WHERE clause of the scope: integer bounds checked here, ids in view scope_ids."""
    conds = ["trace_id IN (SELECT trace_id FROM scope_ids)"] if by_ids else []
    for value, op, label in ((start_time_ms, ">=", "start_time_ms"),
                             (end_time_ms, "<", "end_time_ms")):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputError(f"{label} must be an integer (epoch ms), got {value!r}")
        conds.append(f"request_time_ms {op} {value}")
    return ("WHERE " + " AND ".join(conds)) if conds else ""


def _one_line(msg: str) -> str:
    from insights.analytics.spark_engine import _one_line as one

    return one(msg)
