"""Cohort statistics: does an outcome happen more often in one set of traces than another?

Cohort, control and outcome are Spark SQL boolean predicates over `traces` (the same
language as Trace SQL), e.g. cohort ``length(request) > 500``, control
``length(request) <= 500``, outcome ``state = 'ERROR'``. A NULL outcome counts as no event.

Statistics (two-by-two table of cohort/control x event/no event):
- ``difference`` = rate(cohort) - rate(control);
- ``ci95``: Newcombe's hybrid score interval (method 10, Newcombe 1998) built from the two
  Wilson score intervals; it stays inside [-1, 1] and behaves at rates near 0 or 1,
  where the Wald interval does not;
- ``p_value``: two-sided Fisher exact test (``scipy.stats.fisher_exact``), exact at any size;
- ``relative_risk`` = rate(cohort) / rate(control) (None when the control rate is 0).
"""

from __future__ import annotations

import math

import sqlglot
from scipy.stats import fisher_exact
from sqlglot import exp

from insights.analytics.session import AnalyticsSession
from insights.analytics.spark_engine import resolve_engine
from insights.analytics.sql import VIEWS, prepare, run, translate
from insights.errors import InvalidInputError

Z95 = 1.959963984540054
_LEVELS = ["light", "spans_lite", "full"]


def cohort_stats(session: AnalyticsSession | None, cohort: str, control: str, outcome: str,
                 samples: int = 5, progress=None, *, engine: str | None = None,
                 spark: dict | None = None) -> dict:
    """Compare the outcome rate of the cohort with the control (see module doc for stats).

    ``engine`` "spark" counts on Spark instead of DuckDB; ``spark`` holds the keyword
    arguments of ``spark_engine.execute_sql_spark`` (table, remote, master). The statistics
    are computed here from the same counts either way.
    """
    for label, pred in (("cohort", cohort), ("control", control), ("outcome", outcome)):
        if not pred or not pred.strip() or ";" in pred:
            raise InvalidInputError(f"{label} must be one SQL boolean predicate")
    try:
        samples = max(0, min(int(samples), 100))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"samples must be a whole number, got {samples!r}") from exc
    if resolve_engine(engine) == "spark":
        row = _spark_counts(session, cohort, control, outcome, samples, spark or {})
        return _result(cohort, control, outcome, row)
    atoms, in_cohort, in_control = shared_conjuncts(cohort, control)
    columns = ", ".join(f"CAST(({atom}) AS BOOLEAN) AS {_ATOM}{i}" for i, atom in enumerate(atoms))
    level, flagged = translate(f"SELECT trace_id, {columns}, "
                               f"COALESCE(CAST(({outcome}) AS BOOLEAN), FALSE) AS event FROM traces")
    ddl = VIEWS[level][1]
    inner = (f"SELECT trace_id, ({in_cohort}) AS in_cohort, ({in_control}) AS in_control, "
             f"event FROM ({flagged})")
    agg = ", ".join(
        f"count(*) FILTER (WHERE {g}), count(*) FILTER (WHERE {g} AND event), "
        f"coalesce(list(trace_id ORDER BY trace_id) FILTER (WHERE {g} AND event), [])"
        f"[1:$samples], "
        f"coalesce(list(trace_id ORDER BY trace_id) FILTER (WHERE {g} AND NOT event), [])"
        f"[1:$samples]"
        for g in ("in_cohort", "in_control"))
    sql = (f"SELECT {agg}, count(*) FILTER (WHERE in_cohort AND in_control) "
           f"FROM ({inner}) WHERE in_cohort OR in_control")
    with session.using(progress) as con:
        prepare(session, level)
        con.execute(ddl)
        row = run(con, sql, None, {"samples": samples}, session_memory=session.memory).rows[0]
    return _result(cohort, control, outcome, row)


_ATOM = "insights_conjunct_"


def shared_conjuncts(cohort: str, control: str) -> tuple[list[str], str, str]:
    """The distinct top-level conjuncts of cohort and control (one and its NOT counted once),
    and each side rewritten over them as ``insights_conjunct_<i>`` columns.

    Why: the analyst compares ``(F) AND (S)`` with ``NOT (F) AND (S)``; evaluated as written,
    a costly finding F (a lambda over every span, say) runs twice per trace. As columns, each
    conjunct runs once; ``NOT`` and ``AND`` of the column give the same three-valued result
    as of the expression. A side that does not parse is kept whole (its error comes later)."""
    atoms: dict[str, int] = {}

    def side(text: str) -> str:
        try:
            tree = sqlglot.parse_one(text, read="spark")
        except sqlglot.errors.SqlglotError:
            tree = None
        parts = []
        for conjunct in (tree.flatten() if isinstance(tree, exp.And) else [tree]):
            node, negated = (conjunct.unnest() if conjunct is not None else None), False
            if isinstance(node, exp.Not):
                node, negated = node.this.unnest(), True
            key = node.sql(dialect="spark") if node is not None else text
            index = atoms.setdefault(key, len(atoms))
            parts.append(f"{'NOT ' if negated else ''}{_ATOM}{index}")
        return " AND ".join(parts)

    in_cohort, in_control = side(cohort), side(control)
    return list(atoms), in_cohort, in_control


def _spark_counts(session: AnalyticsSession | None, cohort: str, control: str, outcome: str,
                  samples: int, spark: dict) -> list:
    """The same nine figures as the DuckDB query, counted by Spark SQL (run as written)."""
    from insights.analytics.spark_engine import execute_sql_spark

    sql = spark_counts_sql(cohort, control, outcome, samples)
    row = execute_sql_spark(sql, session=session, max_rows=1, **spark).rows[0]
    return [v[:samples] if isinstance(v, list) else v for v in row]


def spark_counts_sql(cohort: str, control: str, outcome: str, samples: int) -> str:
    """Spark SQL for the two-by-two table and up to ``samples`` sorted ids per cell."""
    def ids(cond: str) -> str:  # collect_list drops the NULLs
        return (f"slice(array_sort(collect_list(CASE WHEN {cond} THEN trace_id END)), 1, "
                f"{max(samples, 1)})")

    agg = ", ".join(
        f"count_if({g}), count_if({g} AND event), {ids(f'{g} AND event')}, "
        f"{ids(f'{g} AND NOT event')}" for g in ("in_cohort", "in_control"))
    return (f"SELECT {agg}, count_if(in_cohort AND in_control) FROM ("
            f"SELECT trace_id, CAST(({cohort}) AS BOOLEAN) AS in_cohort, "
            f"CAST(({control}) AS BOOLEAN) AS in_control, "
            f"COALESCE(CAST(({outcome}) AS BOOLEAN), FALSE) AS event FROM traces) AS flagged "
            "WHERE in_cohort OR in_control")


def _result(cohort: str, control: str, outcome: str, row: list) -> dict:
    n1, e1, s1e, s1n, n2, e2, s2e, s2n, overlap = row
    return {
        "cohort": _group(cohort, n1, e1, s1e, s1n),
        "control": _group(control, n2, e2, s2e, s2n),
        "outcome": outcome,
        "overlap": overlap,
        **compare(n1, e1, n2, e2),
    }


def _group(predicate: str, n: int, events: int, ev_ids: list, non_ids: list) -> dict:
    return {"predicate": predicate, "n": n, "events": events,
            "rate": events / n if n else None,
            "sample_event_trace_ids": ev_ids, "sample_nonevent_trace_ids": non_ids}


def wilson(events: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    p = events / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def compare(n1: int, e1: int, n2: int, e2: int) -> dict:
    """Difference, Newcombe 95% CI, Fisher exact p-value and relative risk of two groups."""
    if not n1 or not n2:
        return {"difference": None, "ci95": None, "p_value": None, "test": "fisher_exact",
                "ci_method": "newcombe_wilson", "relative_risk": None, "odds_ratio": None,
                "note": "cohort or control is empty"}
    p1, p2 = e1 / n1, e2 / n2
    (l1, u1), (l2, u2) = wilson(e1, n1), wilson(e2, n2)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    odds, p = fisher_exact([[e1, n1 - e1], [e2, n2 - e2]], alternative="two-sided")
    return {"difference": d, "ci95": [lo, hi], "p_value": float(p), "test": "fisher_exact",
            "ci_method": "newcombe_wilson", "relative_risk": p1 / p2 if p2 else None,
            "odds_ratio": None if math.isinf(odds) or math.isnan(odds) else float(odds)}
