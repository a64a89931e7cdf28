"""Trace SQL: Spark SQL over the `traces` table, transpiled by sqlglot and run on DuckDB.

Why Spark SQL: the investigation playbook writes queries like
``size(filter(spans, s -> s.status_code = 'ERROR'))``; sqlglot turns them into DuckDB SQL.
Safety: a query must be one SELECT/WITH statement that reads only ``traces`` (or CTEs visible
in the scope that names them), calls no table function and none of DuckDB's functions that
reveal or touch the system; anything else is refused before it runs. It then runs on the
session's connection, whose external access is disabled (see ``session``), under a time limit
(``con.interrupt()`` from a timer) and a memory cap, and only a bounded result is fetched.
Functions whose output size is set by an argument (repeat, lpad, sequence...) are guarded so
one call cannot build a huge value.
Speed: a query that touches only scalar columns runs on the light per-trace table and never
loads span payloads; others use the nested table built (once, then incrementally) in the cache.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import duckdb
import sqlglot
from sqlglot import exp

from insights.analytics.deadline import interrupt_after
from insights.analytics.session import AnalyticsSession, memory_setting
from insights.analytics.schema import SPAN_PAYLOAD_FIELDS
from insights.errors import InvalidInputError

NESTED_COLUMNS = {"spans", "tags", "metadata", "assessments"}
# Three shapes of `traces`, cheapest first; the query is pointed at the cheapest that has
# every column it names. Views are inlined by DuckDB, so projection pushdown still applies.
VIEWS = {
    "light": ("traces_light", """
        CREATE OR REPLACE TEMP VIEW traces_light AS
        SELECT trace_id, make_timestamp(request_time_ms * 1000) AS request_time,
               request_time_ms, execution_time_ms, state, request, response, response_empty, trace_name,
               session_id, input_tokens, output_tokens, total_tokens, total_cost
        FROM trace_rows"""),
    "spans_lite": ("traces_spans_lite", """
        CREATE OR REPLACE TEMP VIEW traces_spans_lite AS
        SELECT t.*, coalesce(l.spans, []) AS spans
        FROM traces_light t LEFT JOIN span_lists l USING (trace_id)"""),
    "full": ("traces_full", """
        CREATE OR REPLACE TEMP VIEW traces_full AS SELECT * FROM traces"""),
}
# Limits a user can raise: SDK keyword arguments, CLI options, or these environment variables.
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MEMORY = "1GB"
TIMEOUT_ENV = "INSIGHTS_SQL_TIMEOUT"
MEMORY_ENV = "INSIGHTS_SQL_MEMORY"
RESULT_BYTES_ENV = "INSIGHTS_SQL_MAX_RESULT_MB"
DEFAULT_RESULT_MB = 100
MAX_VALUE_SIZE = 1_000_000  # characters or list elements one sized call may build
_FETCH_BATCH = 1_000

# Tables and CTE names a query may never shadow or read: the cache's own tables and views
# and DuckDB's catalog functions/views (matched as prefixes where they end with "_").
_RESERVED_NAMES = ("trace_rows", "span_rows", "assessment_rows", "span_lists", "cache_meta",
                   "traces_light", "traces_spans_lite", "traces_full", "information_schema",
                   "pg_catalog", "duckdb_", "pragma_", "sqlite_", "temp", "main", "system")
# Functions refused anywhere in a query: they read files, run SQL text, reveal the
# environment or settings, or change state. Names ending with "_" are prefixes.
_DENIED_FUNCTIONS = (
    "read_", "sniff_", "parquet_", "glob", "sqlite_", "duckdb_", "pragma_", "iceberg_",
    "delta_", "postgres_", "mysql_", "http", "query", "query_table", "getenv",
    "current_setting", "current_query", "json_execute_serialized_sql", "json_serialize_sql",
    "json_deserialize_sql", "nextval", "currval", "setseed", "getvariable", "which_secret",
    "load_", "install_", "checkpoint", "force_checkpoint", "enable_", "disable_",
    "set_config", "txid_", "pg_", "has_", "current_database", "current_schema",
    "current_schemas", "current_user", "session_user", "user", "version", "platform",
    "sql_auto_complete", "arrow_scan", "python_", "test_", "export_", "import_",
)
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
                progress=None, *, timeout: float | None = None,
                max_memory: str | None = None, raw: bool = False) -> SqlResult:
    """Run one read-only Spark SQL query over the session's `traces` table.

    ``timeout`` (seconds) and ``max_memory`` (e.g. "2GB") default to $INSIGHTS_SQL_TIMEOUT /
    $INSIGHTS_SQL_MEMORY, else 30 s and 1GB. Raises InvalidInputError for anything but a
    single SELECT/WITH over `traces`, for parse errors, unknown columns or functions and a
    query that exceeds a limit; TrackingServerError if the store is down.

    ``raw`` (with ``max_rows=None``, for the analyst's own bulk queries): every row as DuckDB
    returns it, without the JSON conversion and byte budget that guard results shown to
    people and models.
    """
    timeout, max_memory = sql_limits(timeout, max_memory)
    level, duck_sql = translate(sql)
    ddl = VIEWS[level][1]
    with session.using(progress) as con:
        prepare(session, level)
        con.execute(ddl)
        return run(con, duck_sql, max_rows, timeout=timeout, max_memory=max_memory,
                   session_memory=session.memory, raw=raw and max_rows is None)


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> tuple[str, str]:
    """The checked query's data level and its DuckDB text over that level's view.

    Cached by query text (a refused query raises and is not cached): the translation is a
    pure function of the text and costs ~5-10 ms of sqlglot work, and a process that runs
    analyses, an MCP server or the UI asks the same queries again and again."""
    tree = parse_query(sql)
    level = data_level(tree)
    return level, to_duckdb(tree, VIEWS[level][0])


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
    _check_functions(tree)
    return _guard_sizes(_spark_lambdas(tree))


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
    """Every table must be `traces` or a CTE visible where it is named, never a function.

    Scopes matter: a CTE defined inside a subquery is invisible to the outer query, and a
    CTE is visible only to the CTEs after it (itself too in WITH RECURSIVE), exactly as
    DuckDB binds them. Otherwise ``WITH trace_rows AS (...)`` in a subquery would let the
    outer query read the cache's real ``trace_rows``. CTE names that shadow internal tables
    or DuckDB's catalog are refused outright.
    """
    for cte in tree.find_all(exp.CTE):
        if _reserved(cte.alias_or_name):
            raise InvalidInputError(f"CTE name {cte.alias_or_name!r} is reserved; pick another")
    for table in tree.find_all(exp.Table):
        name = table.name.lower()
        if not isinstance(table.this, exp.Identifier) or table.args.get("db"):
            raise InvalidInputError("only the `traces` table can be queried "
                                    "(table functions and other tables are refused)")
        if name != "traces" and name not in _visible_ctes(table):
            raise InvalidInputError(f"unknown table {table.name!r}; query the `traces` table")


def _visible_ctes(node: exp.Expression) -> set[str]:
    """CTE names in scope at ``node``, bound as DuckDB binds them: walking up, each enclosing
    query's WITH adds all its CTEs when ``node`` is in the query's body, only the earlier
    ones when ``node`` is inside a CTE definition. A CTE sees itself only in the recursive
    (right-hand) side of a WITH RECURSIVE union; anywhere else DuckDB reads the real table.
    """
    names: set[str] = set()
    child, parent = node, node.parent
    while parent is not None:
        if isinstance(parent, exp.With):
            ctes = list(parent.expressions)
            at = next((i for i, c in enumerate(ctes) if c is child), len(ctes))
            names |= {c.alias_or_name.lower() for c in ctes[:at]}
            body = child.this if isinstance(child, exp.CTE) else None
            if (parent.args.get("recursive") and isinstance(body, exp.Union)
                    and _inside(node, body.expression)):
                names.add(child.alias_or_name.lower())
        elif isinstance(parent, exp.Query):
            with_ = parent.args.get("with_")
            if with_ is not None and child is not with_:
                names |= {c.alias_or_name.lower() for c in with_.expressions}
        child, parent = parent, parent.parent
    return names


def _inside(node: exp.Expression, ancestor: exp.Expression) -> bool:
    while node is not None:
        if node is ancestor:
            return True
        node = node.parent
    return False


def _reserved(name: str) -> bool:
    name = name.lower()
    return any(name.startswith(r) if r.endswith("_") else name == r for r in _RESERVED_NAMES)


def _check_functions(tree: exp.Expression) -> None:
    """Refuse functions that read files, run SQL text or reveal/touch the system."""
    for func in tree.find_all(exp.Func):
        names = {func.key.lower()}
        if isinstance(func, exp.Anonymous):
            names.add(str(func.this).lower())
        else:
            names.add(func.sql_name().lower())
        for name in names:
            if any(name.startswith(d) if d.endswith("_") else name == d
                   for d in _DENIED_FUNCTIONS):
                raise InvalidInputError(f"function {name}() is not allowed in trace SQL")


def _guard_sizes(tree: exp.Expression) -> exp.Expression:
    """Make calls whose output size is an argument fail fast instead of building a huge value.

    DuckDB neither checks interrupts inside one function call nor counts such strings
    against its memory limit, so ``repeat('x', 1000000000)`` would run for many seconds
    whatever the time limit. Each size argument becomes ``CASE WHEN size > cap THEN
    error(...) ELSE size END``.
    """
    def guarded(size: exp.Expression, value: exp.Expression, what: str) -> exp.Expression:
        msg = f"{what} would build a value over {MAX_VALUE_SIZE:,} characters or elements"
        return exp.Case(ifs=[exp.If(this=exp.GT(this=exp.paren(size, copy=False),
                                                 expression=exp.Literal.number(MAX_VALUE_SIZE)),
                                    true=exp.Anonymous(this="error",
                                                       expressions=[exp.Literal.string(msg)]))],
                        default=value)

    def length_of(arg: exp.Expression) -> exp.Expression:
        return exp.Coalesce(this=exp.Length(this=arg.copy()), expressions=[exp.Literal.number(0)])

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Repeat):  # repeat(s, n): n * length(s) characters
            n = node.args["times"]
            size = exp.Mul(this=exp.paren(n.copy(), copy=False),
                           expression=length_of(node.this))
            node.set("times", guarded(size, n.copy(), "repeat()"))
        elif isinstance(node, exp.Pad):  # lpad/rpad(s, n, fill): n characters
            n = node.expression
            node.set("expression", guarded(n.copy(), n.copy(), "lpad()/rpad()"))
        elif isinstance(node, exp.Space):
            node.set("this", guarded(node.this.copy(), node.this.copy(), "space()"))
        elif isinstance(node, exp.GenerateSeries):  # sequence(a, b[, step])
            start, end = node.args["start"], node.args["end"]
            step = node.args.get("step")
            span = exp.Abs(this=exp.Sub(this=exp.paren(end.copy(), copy=False),
                                        expression=exp.paren(start.copy(), copy=False)))
            size = span if step is None else exp.Div(
                this=span, expression=exp.Greatest(this=exp.Abs(this=step.copy()),
                                                   expressions=[exp.Literal.number(1)]))
            node.set("end", guarded(size, end.copy(), "sequence()"))
        elif isinstance(node, exp.Anonymous) and str(node.this).lower() in (
                "array_repeat", "range", "list_resize", "array_resize") \
                and len(node.expressions) >= 2 - (str(node.this).lower() == "range"):
            args = list(node.expressions)
            i = 0 if len(args) == 1 else 1  # range(n) / range(a, b) / array_repeat(x, n)
            size = args[i]
            if str(node.this).lower() == "range" and len(args) >= 2:
                size = exp.Abs(this=exp.Sub(this=exp.paren(args[1].copy(), copy=False),
                                            expression=exp.paren(args[0].copy(), copy=False)))
            args[i] = guarded(size.copy(), args[i].copy(), f"{str(node.this).lower()}()")
            node.set("expressions", args)
        return node

    return tree.transform(rewrite)


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
    for q in list(tree.find_all(exp.Quantile)):  # Spark's percentile() interpolates
        q.replace(exp.Anonymous(this="quantile_cont", expressions=[q.this, q.args["quantile"]]))
    try:
        duck = sqlglot.parse_one(tree.sql(dialect="duckdb"), read="duckdb")
        return _gated_filters(_fast_unnest(duck)).sql(dialect="duckdb")
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


def _gated_filters(tree: exp.Expression) -> exp.Expression:
    """Evaluate a list filter's conditions left to right, each only where the ones before held:
    ``filter(spans, s -> a AND b AND c)`` becomes ``CASE WHEN a THEN CASE WHEN b THEN c ELSE
    false END ELSE false END``.

    Why: inside a lambda DuckDB computes every side of AND for every element, so a cheap
    test written first (``s.name = 'x'``) does not spare the costly one after it (trimming
    or matching every span's output); CASE evaluates a branch only on the elements that
    reach it (~9x faster on span outputs of a few KB). A filter keeps an element only where
    its condition is true, and false and NULL both drop it, so the kept elements are the
    same. Lambdas that return values (transform) are left alone: there NULL and false differ.
    """
    for node in list(tree.find_all(exp.ArrayFilter)):
        fn = node.expression
        if not isinstance(fn, exp.Lambda):
            continue
        conjuncts = list(_conjuncts(fn.this))
        if len(conjuncts) < 2:
            continue
        gated = conjuncts[-1]
        for cond in reversed(conjuncts[:-1]):
            gated = exp.Case(ifs=[exp.If(this=cond, true=gated)], default=exp.false())
        fn.set("this", gated)
    return tree


def _conjuncts(node: exp.Expression) -> Iterator[exp.Expression]:
    """The operands of a chain of ANDs (through parentheses), in written order."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        yield from _conjuncts(node.this)
        yield from _conjuncts(node.expression)
    else:
        yield node


def sql_limits(timeout: float | None = None, max_memory: str | None = None) -> tuple[float, str]:
    """Resolve the time limit (seconds) and memory cap: argument, else env var, else default."""
    raw_t = timeout if timeout is not None else os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S
    try:
        seconds = float(raw_t)
    except (TypeError, ValueError):
        raise InvalidInputError(f"time limit must be a number of seconds, got {raw_t!r}") from None
    if isinstance(raw_t, bool) or not seconds > 0 or seconds != seconds:
        raise InvalidInputError(f"time limit must be a positive number of seconds, got {raw_t!r}")
    memory = max_memory if max_memory is not None else os.environ.get(MEMORY_ENV) or DEFAULT_MEMORY
    return seconds, memory_setting(
        memory, f"memory limit must look like '512MB' or '2GB', got {memory!r}")


def run(con: duckdb.DuckDBPyConnection, duck_sql: str, max_rows: int | None,
        params: dict | None = None, *, timeout: float | None = None, max_memory: str | None = None,
        session_memory: str | None = None, raw: bool = False) -> SqlResult:
    """Execute (binding ``params``) under a time limit and a memory cap on a sandboxed
    connection; fetch a bounded result (at most ``max_rows`` rows and
    $INSIGHTS_SQL_MAX_RESULT_MB of values).

    Afterwards the connection's memory limit goes back to ``session_memory`` (default: what
    the session configures, $INSIGHTS_DUCKDB_MEMORY or 2GB), so a shared session keeps its
    normal budget for loading the cache. It is passed in rather than read back because
    DuckDB reports the setting rounded down, and restoring that would shrink it every call.
    """
    timeout, max_memory = sql_limits(timeout, max_memory)
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int)
                                 or max_rows < 1):
        raise InvalidInputError(f"max_rows must be a positive integer, got {max_rows!r}")
    normal_memory = session_memory or os.environ.get("INSIGHTS_DUCKDB_MEMORY", "2GB")
    con.execute(f"SET memory_limit = '{max_memory}'")
    try:
        with interrupt_after(timeout, con.interrupt):
            cur = con.execute(duck_sql, params) if params else con.execute(duck_sql)
            columns = [d[0] for d in cur.description]
            rows, truncated = (cur.fetchall(), False) if raw else _fetch_bounded(cur, max_rows)
    except duckdb.InterruptException as exc:
        raise InvalidInputError(
            f"query exceeded the {timeout:g} s time limit (raise with --timeout or "
            f"${TIMEOUT_ENV})") from exc
    except duckdb.OutOfMemoryException as exc:
        raise InvalidInputError(
            f"query exceeded the {max_memory} memory limit (raise with --max-memory or "
            f"${MEMORY_ENV})") from exc
    except duckdb.Error as exc:
        raise InvalidInputError(f"SQL error: {_one_line(str(exc))}") from exc
    finally:
        con.execute(f"SET memory_limit = '{normal_memory}'")
    return SqlResult(columns, rows, truncated, duck_sql)


def _fetch_bounded(cur: duckdb.DuckDBPyConnection, max_rows: int | None) -> tuple[list, bool]:
    """Fetch in batches, never the whole result: stop past ``max_rows`` rows or the byte
    budget. Returns JSON-able rows and whether anything was left unfetched."""
    budget = _result_budget()
    rows: list[list] = []
    size = 0
    while True:
        want = _FETCH_BATCH if max_rows is None else min(_FETCH_BATCH, max_rows + 1 - len(rows))
        batch = cur.fetchmany(want)
        if not batch:
            return rows, False
        for raw in batch:
            row = [_jsonable(v) for v in raw]
            size += _approx_bytes(row)
            if (max_rows is not None and len(rows) >= max_rows) or size > budget:
                return rows, True
            rows.append(row)


def _result_budget() -> int:
    raw = os.environ.get(RESULT_BYTES_ENV) or DEFAULT_RESULT_MB
    try:
        return max(1, int(float(raw) * 1_000_000))
    except ValueError:
        raise InvalidInputError(f"${RESULT_BYTES_ENV} must be a number of MB, got {raw!r}") from None


def _approx_bytes(v) -> int:
    """Rough size of a JSON-able value: string lengths plus 8 per scalar."""
    if isinstance(v, str):
        return len(v) + 8
    if isinstance(v, dict):
        return sum(_approx_bytes(k) + _approx_bytes(x) for k, x in v.items()) + 8
    if isinstance(v, list):
        return sum(_approx_bytes(x) for x in v) + 8
    return 8


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
