"""Restrict census aggregates to a subset of traces: a time window and/or an MLflow filter.

Why MLflow evaluates the filter: ``filter_string`` has MLflow's trace search grammar
(``trace.status = 'ERROR'``, ``tag.env = 'prod'``, ``span.name = 'x'``, ...), and MLflow is
the authority on it. We ask it for the matching trace ids only (``include_spans=False``,
large pages), then aggregate locally over those ids.
"""

from __future__ import annotations

import pyarrow as pa
import sqlglot
from sqlglot import exp

from insights.analytics.session import AnalyticsSession
from insights.errors import InvalidInputError, TrackingServerError

PAGE = 500  # the most a tracking server returns per page


def matching_trace_ids(tracking_uri: str, experiment_id: str, filter_string: str) -> list[str]:
    """Trace ids MLflow's own search returns for ``filter_string`` (all pages)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri)
    ids: list[str] = []
    token = None
    try:
        while True:
            page = client.search_traces(locations=[experiment_id], filter_string=filter_string,
                                        max_results=PAGE, page_token=token, include_spans=False)
            ids += [t.info.trace_id for t in page]
            token = page.token
            if not token:
                return ids
    except MlflowException as exc:
        if exc.error_code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
            raise InvalidInputError(f"bad filter_string {filter_string!r}: {exc.message}") from exc
        raise TrackingServerError(f"trace search failed: {exc.message}") from exc


def apply_scope(session: AnalyticsSession, filter_string: str | None,
                start_time_ms: int | None, end_time_ms: int | None) -> None:
    """Create temp views t / s / a (traces, spans, assessments) limited to the scope.

    The bounds and trace ids are bound values in temp tables, never SQL text.
    """
    con = session.con
    conds = []
    con.execute("CREATE OR REPLACE TEMP TABLE scope_bounds (lo BIGINT, hi BIGINT)")
    con.execute("INSERT INTO scope_bounds VALUES (?, ?)",
                [_ms(start_time_ms, "start_time_ms"), _ms(end_time_ms, "end_time_ms")])
    if start_time_ms is not None:
        conds.append("request_time_ms >= (SELECT lo FROM scope_bounds)")
    if end_time_ms is not None:
        conds.append("request_time_ms < (SELECT hi FROM scope_bounds)")
    if filter_string:
        ids = matching_trace_ids(session.tracking_uri, session.experiment_id, filter_string)
        con.register("_scope_arrow", pa.table({"trace_id": pa.array(ids, pa.string())}))
        con.execute("CREATE OR REPLACE TEMP TABLE scope_ids AS SELECT * FROM _scope_arrow")
        con.unregister("_scope_arrow")
        conds.append("trace_id IN (SELECT trace_id FROM scope_ids)")
    where = " AND ".join(conds) or "true"
    con.execute(f"CREATE OR REPLACE TEMP VIEW t AS SELECT * FROM trace_rows WHERE {where}")
    if conds:
        con.execute("CREATE OR REPLACE TEMP VIEW s AS SELECT * FROM span_rows "
                    "SEMI JOIN t USING (trace_id)")
    else:
        con.execute("CREATE OR REPLACE TEMP VIEW s AS SELECT * FROM span_rows")
    con.execute("CREATE OR REPLACE TEMP VIEW a AS SELECT * FROM assessment_rows "
                "SEMI JOIN t USING (trace_id)")


def _ms(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be epoch milliseconds, got {value!r}") from exc


def window_sql(sql: str, start_time_ms: int | None, end_time_ms: int | None) -> str:
    """The Trace SQL query with every read of ``traces`` limited to a time window.

    Why rewrite the query rather than the table: an incremental analysis asks the same
    questions of a slice of the experiment, through code (and model tools) that only know
    Trace SQL. Each ``traces`` a SELECT reads gets ``request_time_ms`` bounds (inclusive
    start, exclusive end) in its WHERE, or in its ON for an outer join, so the cheapest
    table shape still serves the query. Text sqlglot cannot parse is returned unchanged:
    the SQL engine then refuses it with its own message.
    """
    bounds = _bounds(_ms(start_time_ms, "start_time_ms"), _ms(end_time_ms, "end_time_ms"))
    if not bounds:
        return sql
    try:
        trees = [t for t in sqlglot.parse(sql, read="spark") if t is not None]
    except sqlglot.errors.SqlglotError:
        return sql
    if len(trees) != 1:
        return sql
    tree = trees[0]
    for table in list(tree.find_all(exp.Table)):
        if table.name.lower() == "traces" and not table.args.get("db"):
            _bound(table, bounds)
    return tree.sql(dialect="spark")


def window_predicate(predicate: str, start_time_ms: int | None, end_time_ms: int | None) -> str:
    """A boolean Trace SQL predicate over ``traces`` that also requires the time window
    (subqueries in it are windowed too): cohorts and controls of cohort statistics."""
    if start_time_ms is None and end_time_ms is None:
        return predicate
    windowed = window_sql(f"SELECT trace_id FROM traces WHERE ({predicate})",
                          start_time_ms, end_time_ms)
    try:
        where = sqlglot.parse_one(windowed, read="spark").args.get("where")
    except sqlglot.errors.SqlglotError:
        where = None
    if where is None or windowed == f"SELECT trace_id FROM traces WHERE ({predicate})":
        raise InvalidInputError(f"cannot limit the predicate to the time window: {predicate[:200]}")
    return where.this.sql(dialect="spark")


def _bounds(lo: int | None, hi: int | None) -> list[tuple[str, int]]:
    return [(op, v) for op, v in ((">=", lo), ("<", hi)) if v is not None]


def _bound(table: exp.Table, bounds: list[tuple[str, int]]) -> None:
    """Limit this ``traces`` reference to the window.

    Alone in its FROM, the bounds go in the SELECT's WHERE (the query keeps its cheapest table
    shape). In a join, the reference becomes a bounded subquery under the same alias: a WHERE
    would turn an outer join into an inner one, and an ON filters nothing on a preserved side.
    """
    select = table.find_ancestor(exp.Select)
    if select is None:
        return
    alias = table.args.get("alias")
    ident = alias.this if alias is not None and alias.this is not None else exp.to_identifier("traces")
    in_join = isinstance(table.parent, exp.Join) or bool(select.args.get("joins"))
    if not in_join:
        select.where(_condition(bounds, ident.copy()), copy=False)
        return
    inner = exp.select("*").from_(exp.Table(this=exp.to_identifier("traces"))).where(
        _condition(bounds, None))
    table.replace(exp.Subquery(this=inner, alias=exp.TableAlias(this=ident.copy())))


def _condition(bounds: list[tuple[str, int]], table: exp.Identifier | None) -> exp.Expression:
    ops = {">=": exp.GTE, "<": exp.LT}
    parts = [ops[op](this=exp.column("request_time_ms", table=table.copy() if table else None),
                     expression=exp.Literal.number(value)) for op, value in bounds]
    return exp.and_(*parts)
