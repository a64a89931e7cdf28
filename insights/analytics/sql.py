"""Trace SQL: Spark SQL over the `traces` table, transpiled by sqlglot and run on DuckDB.

Why Spark SQL: the investigation playbook writes queries like
``size(filter(spans, s -> s.status_code = 'ERROR'))``; sqlglot turns them into DuckDB SQL.
Safety: a query must be one SELECT/WITH statement that reads only ``traces`` (or its own
CTEs); anything else is refused before it runs, and it then runs on the session's connection,
whose external access is disabled and configuration locked, so it can neither read files
nor write.
Speed: a query that touches only scalar columns runs on the light per-trace table and never
loads span payloads; others use the nested table built (once, then incrementally) in the cache.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
import uuid
from dataclasses import dataclass, field

import duckdb
import sqlglot
from sqlglot import exp

from insights.analytics.session import AnalyticsSession
from insights.analytics.schema import SPAN_PAYLOAD_FIELDS
from insights.errors import InvalidInputError

NESTED_COLUMNS = {"spans", "tags", "metadata", "assessments"}
# Three shapes of `traces`, cheapest first; the query is pointed at the cheapest that has
# every column it names. Views are inlined by DuckDB, so projection pushdown still applies.
VIEWS = {
    "light": ("traces_light", """
        CREATE OR REPLACE TEMP VIEW traces_light AS
        SELECT trace_id, make_timestamp(request_time_ms * 1000) AS request_time,
               request_time_ms, execution_time_ms, state, request, response, trace_name,
               session_id, input_tokens, output_tokens, total_tokens, total_cost
        FROM trace_rows"""),
    "spans_lite": ("traces_spans_lite", """
        CREATE OR REPLACE TEMP VIEW traces_spans_lite AS
        SELECT t.*, coalesce(l.spans, []) AS spans
        FROM traces_light t LEFT JOIN span_lists l USING (trace_id)"""),
    "full": ("traces_full", """
        CREATE OR REPLACE TEMP VIEW traces_full AS SELECT * FROM traces"""),
}
_FIRST_WORD = re.compile(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*([A-Za-z(]+)", re.S)


@dataclass
class SqlResult:
    """Columns and rows of a query; values are JSON-able (timestamps as ISO strings)."""

    columns: list[str]
    rows: list[list]
    truncated: bool = False
    sql_duckdb: str = field(default="", repr=False)

    def to_dict(self) -> dict:
        return {"columns": self.columns, "rows": self.rows, "row_count": len(self.rows),
                "truncated": self.truncated}


def execute_sql(session: AnalyticsSession, sql: str, max_rows: int | None = 10_000,
                progress=None) -> SqlResult:
    """Run one read-only Spark SQL query over the session's `traces` table.

    Raises InvalidInputError for anything but a single SELECT/WITH over `traces`, for parse
    errors and for unknown columns or functions; TrackingServerError if the store is down.
    """
    tree = parse_query(sql)
    level = data_level(tree)
    view, ddl = VIEWS[level]
    duck_sql = to_duckdb(tree, view)
    with session.using(progress) as con:
        prepare(session, level)
        con.execute(ddl)
        return run(con, duck_sql, max_rows)


def prepare(session: AnalyticsSession, level: str) -> None:
    """Load what a query at ``level`` reads, and create the views it is run against."""
    {"light": session.refresh, "spans_lite": session.ensure_span_lists,
     "full": session.ensure_full}[level]()
    session.con.execute(VIEWS["light"][1])


def parse_query(sql: str) -> exp.Expression:
    """Parse Spark SQL and refuse anything that is not a single read-only query."""
    if not sql or not sql.strip():
        raise InvalidInputError("empty SQL query")
    m = _FIRST_WORD.match(sql)
    word = (m.group(1) if m else sql.split()[0]).upper()
    if word not in ("SELECT", "WITH", "(") and not word.startswith("("):
        raise InvalidInputError(f"only SELECT/WITH queries are allowed; refused {word} statement")
    try:
        trees = [t for t in sqlglot.parse(sql, read="spark") if t is not None]
    except sqlglot.errors.ParseError as exc:
        raise InvalidInputError(f"SQL parse error: {_one_line(str(exc))}") from exc
    if len(trees) != 1:
        raise InvalidInputError("only one SQL statement is allowed per call")
    tree = trees[0]
    if not isinstance(tree, exp.Query):
        raise InvalidInputError(
            f"only SELECT/WITH queries are allowed; refused {tree.key.upper()} statement")
    forbidden = (exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Command,
                 exp.Set, exp.Pragma, exp.Copy, exp.Alter, exp.Merge)
    for node in tree.walk():
        if isinstance(node, forbidden):
            raise InvalidInputError(f"refused {node.key.upper()} inside a query; read-only SQL only")
    _check_tables(tree)
    return _spark_lambdas(tree)


def _spark_lambdas(tree: exp.Expression) -> exp.Expression:
    """Spell Spark's exists(arr, x -> p) / forall(arr, x -> p) with filter(), which sqlglot
    carries to DuckDB faithfully (its own exists() translation drops the lambda)."""
    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Exists) and isinstance(node.args.get("expression"), exp.Lambda):
            kept = exp.ArrayFilter(this=node.this, expression=node.args["expression"])
            return exp.GT(this=exp.ArraySize(this=kept), expression=exp.Literal.number(0))
        if (isinstance(node, exp.Anonymous) and node.name.lower() == "forall"
                and len(node.expressions) == 2 and isinstance(node.expressions[1], exp.Lambda)):
            arr, fn = node.expressions
            kept = exp.ArrayFilter(this=arr.copy(), expression=fn)
            return exp.EQ(this=exp.ArraySize(this=kept), expression=exp.ArraySize(this=arr))
        return node

    return tree.transform(rewrite)


def _check_tables(tree: exp.Expression) -> None:
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        name = table.name.lower()
        if not isinstance(table.this, exp.Identifier) or table.args.get("db"):
            raise InvalidInputError("only the `traces` table can be queried "
                                    "(table functions and other tables are refused)")
        if name != "traces" and name not in ctes:
            raise InvalidInputError(f"unknown table {table.name!r}; query the `traces` table")


def data_level(tree: exp.Expression) -> str:
    """Cheapest `traces` shape serving the query: light, spans_lite or full.

    light: no nested column named; spans_lite: spans used, but none of the span payload
    fields (inputs/outputs/attributes/events) and `spans` is never returned as is; full:
    anything else, including SELECT *.
    """
    if any(not isinstance(s.parent, exp.Count) for s in tree.find_all(exp.Star)):
        return "full"
    names = {c.name.lower() for c in tree.find_all(exp.Column)}
    names |= {i.name.lower() for i in tree.find_all(exp.Identifier)}
    if not names & NESTED_COLUMNS:
        return "light"
    if names & (SPAN_PAYLOAD_FIELDS | {"tags", "metadata", "assessments"}):
        return "full"
    for select in tree.find_all(exp.Select):
        for e in select.expressions:
            inner = e.this if isinstance(e, exp.Alias) else e
            if _returns_spans(inner):
                return "full"
    return "spans_lite"


def _returns_spans(e: exp.Expression) -> bool:
    """True when a projection hands back span structs (spans itself, filter(spans...), ...)."""
    if isinstance(e, exp.Column):
        return e.name.lower() == "spans"
    if isinstance(e, (exp.Dot,)):
        return False
    if isinstance(e, exp.Func) and e.key in ("arrayfilter", "filter", "arraysort", "sortarray",
                                             "explode", "posexplode", "slice", "element_at",
                                             "arrayslice", "reverse", "arraydistinct"):
        return any(_returns_spans(a) for a in e.args.values() if isinstance(a, exp.Expression))
    if isinstance(e, exp.Bracket):
        return _returns_spans(e.this)
    return False


def to_duckdb(tree: exp.Expression, view: str) -> str:
    """Transpile to DuckDB, point `traces` at ``view`` and make LATERAL VIEW explode fast."""
    tree = tree.copy()
    for table in tree.find_all(exp.Table):
        if table.name.lower() == "traces":
            alias = table.alias or "traces"
            table.set("this", exp.to_identifier(view))
            table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    try:
        duck = sqlglot.parse_one(tree.sql(dialect="duckdb"), read="duckdb")
        return _fast_unnest(duck).sql(dialect="duckdb")
    except sqlglot.errors.SqlglotError as exc:
        raise InvalidInputError(f"cannot translate query to DuckDB: {_one_line(str(exc))}") from exc


def _fast_unnest(tree: exp.Expression) -> exp.Expression:
    """Rewrite ``FROM t CROSS JOIN UNNEST(list) AS x(s)`` as ``FROM (SELECT t.*, UNNEST(list)
    AS s FROM t) AS t``: same rows, but DuckDB runs it ~20x faster than a lateral join."""
    for select in list(tree.find_all(exp.Select)):
        joins = select.args.get("joins") or []
        src = select.args.get("from_") or select.args.get("from")
        if len(joins) != 1 or src is None or not isinstance(src.this, exp.Table):
            continue
        join, table = joins[0], src.this
        unnest = join.this
        if (not isinstance(unnest, exp.Unnest) or join.args.get("on") or join.side
                or len(unnest.expressions) != 1):
            continue
        cols = unnest.args.get("alias") and unnest.args["alias"].columns
        if not cols or len(cols) != 1:
            continue
        alias = table.alias_or_name
        inner = exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier(alias)),
                           exp.alias_(exp.Unnest(expressions=[unnest.expressions[0].copy()]),
                                      cols[0].name)).from_(table.copy())
        select.set("joins", None)
        src.set("this", exp.Subquery(this=inner, alias=exp.TableAlias(
            this=exp.to_identifier(alias))))
    return tree


def run(con: duckdb.DuckDBPyConnection, duck_sql: str, max_rows: int | None,
        params: dict | None = None) -> SqlResult:
    """Execute on a sandboxed session connection (see ``session``), then fetch rows."""
    try:
        cur = con.execute(duck_sql, params) if params else con.execute(duck_sql)
        columns = [d[0] for d in cur.description]
        rows = cur.fetchmany(max_rows + 1) if max_rows else cur.fetchall()
    except duckdb.Error as exc:
        raise InvalidInputError(f"SQL error: {_one_line(str(exc))}") from exc
    truncated = bool(max_rows) and len(rows) > max_rows
    rows = rows[:max_rows] if truncated else rows
    return SqlResult(columns, [[_jsonable(v) for v in r] for r in rows], truncated, duck_sql)


def _one_line(msg: str) -> str:
    lines = [ln.strip() for ln in msg.strip().splitlines() if ln.strip()]
    text = " ".join(lines[:2]) if lines else msg
    return re.sub(r"\x1b\[[0-9;]*m", "", text)[:400]


def _jsonable(v):
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    return v
