"""Restrict census aggregates to a subset of traces: a time window and/or an MLflow filter.

Why MLflow evaluates the filter: ``filter_string`` has MLflow's trace search grammar
(``trace.status = 'ERROR'``, ``tag.env = 'prod'``, ``span.name = 'x'``, ...), and MLflow is
the authority on it. We ask it for the matching trace ids only (``include_spans=False``,
large pages), then aggregate locally over those ids.
"""

from __future__ import annotations

import pyarrow as pa

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
