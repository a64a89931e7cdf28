"""Move arrow batches from a source into DuckDB temp tables, then merge them into the cache.

Sources (SQLite reader, tracking-server reader) only fill ``stage_*`` temp tables with a
fixed shape; the merge statements here are the single place that decides what enters the
cache, so both sources produce identical cache contents.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

import duckdb
import pyarrow as pa

from insights.analytics import answers


def stage(con: duckdb.DuckDBPyConnection, name: str, batches: Iterable[pa.Table],
          schema: pa.Schema, transform: Callable[[str], str] | None = None) -> None:
    """(Re)create temp table ``name`` from arrow batches, optionally reshaped by SQL."""
    con.execute(f"DROP TABLE IF EXISTS {name}")
    created = False
    for batch in prefetch(batches):
        _append(con, name, batch, transform, created)
        created = True
    if not created:
        _append(con, name, schema.empty_table(), transform, False)


def prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """Produce ``items`` on a background thread so reading the source overlaps DuckDB work.

    SQLite and DuckDB both release the GIL while they work, so this uses the second core.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def run() -> None:
        try:
            for item in items:
                q.put(item)
            q.put(done)
        except BaseException as exc:  # re-raised in the consumer
            q.put(exc)

    threading.Thread(target=run, daemon=True).start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def _append(con, name, batch, transform, exists: bool) -> None:
    con.register("_batch", batch)
    body = transform("_batch") if transform else "SELECT * FROM _batch"
    if exists:
        con.execute(f"INSERT INTO {name} {body}")
    else:
        con.execute(f"CREATE TEMP TABLE {name} AS {body}")
    con.unregister("_batch")


def merge_light(con: duckdb.DuckDBPyConnection) -> int:
    """Insert staged traces and light spans the cache does not hold yet; return how many.

    Request/response lengths and emptiness are computed here, once per trace, because the
    census would otherwise re-read every request and response text on each call. Emptiness
    is ``answers.is_empty_answer`` (a Python function registered on the connection), so
    every trace source and every reader of ``response_empty`` share one definition.
    """
    empty = answers.register(con)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE stage_new AS
        SELECT DISTINCT trace_id FROM stage_ti
        WHERE trace_id NOT IN (SELECT trace_id FROM trace_rows)""")
    con.execute(f"""
        INSERT INTO trace_rows
        WITH rt AS (SELECT trace_id, any_value(root_inputs) AS req,
                           any_value(root_outputs) AS resp
                    FROM stage_spans WHERE is_root GROUP BY 1)
        SELECT t.trace_id, t.request_time_ms, t.execution_time_ms, t.state, rt.req, rt.resp,
               t.trace_name, t.session_id, t.input_tokens, t.output_tokens, t.total_tokens,
               t.total_cost, length(rt.req), length(rt.resp),
               rt.resp IS NULL OR {empty}(rt.resp)
        FROM stage_ti t SEMI JOIN stage_new n ON n.trace_id = t.trace_id
        LEFT JOIN rt ON rt.trace_id = t.trace_id""")
    con.execute("""
        INSERT INTO span_rows
        SELECT trace_id, name, span_type, status_code, status_message, start_time_ms,
               duration_ms, is_root, exception_type, exception_message, span_id, parent_id,
               end_time_ms
        FROM stage_spans SEMI JOIN stage_new USING (trace_id)""")
    return con.execute("SELECT count(*) FROM stage_new").fetchone()[0]


def build_traces(con: duckdb.DuckDBPyConnection, lo_ms: int, hi_ms: int) -> None:
    """Add nested `traces` rows for cached traces in [lo_ms, hi_ms) from the staged payloads.

    Expects stage_full / stage_tags / stage_meta to hold (at least) those traces' data.
    """
    con.execute(_BUILD_TRACES, [lo_ms, hi_ms])


def build_span_lists(con: duckdb.DuckDBPyConnection) -> int:
    """Give each cached trace without one its list of spans minus payloads; return how many.

    Built from the light span rows, so queries over span names, types, statuses and timings
    never wait for the span payloads (most of a store's bytes) to load.
    """
    return con.execute("""
        INSERT INTO span_lists
        SELECT trace_id, list_sort(list(struct_pack(start_time_ms, span_id, parent_id, name,
               span_type, status_code, status_message, end_time_ms, duration_ms)))
        FROM span_rows WHERE trace_id NOT IN (SELECT trace_id FROM span_lists)
        GROUP BY 1""").fetchone()[0]


def merge_assessments(con: duckdb.DuckDBPyConnection) -> None:
    """Apply staged (new or updated) assessments to the flat and the nested tables."""
    con.execute("DELETE FROM assessment_rows WHERE assessment_id IN "
                "(SELECT assessment_id FROM stage_assessments)")
    con.execute("""
        INSERT INTO assessment_rows
        SELECT trace_id, assessment_id, name, value, source_type, rationale, last_updated_ms
        FROM stage_assessments WHERE coalesce(valid, true)""")
    if not con.execute("SELECT count(*) FROM (SELECT 1 FROM traces LIMIT 1)").fetchone()[0]:
        return  # no nested rows yet (a census-only cache): nothing to update
    con.execute(f"""
        UPDATE traces SET assessments = a.assessments
        FROM ({_ASSESSMENT_LISTS} WHERE trace_id IN (SELECT trace_id FROM stage_assessments)
              GROUP BY 1) a
        WHERE traces.trace_id = a.trace_id""")


_ASSESSMENT_LISTS = """
    SELECT trace_id, list(struct_pack(name, value, source_type, rationale)
                          ORDER BY last_updated_ms) AS assessments
    FROM assessment_rows"""

_BUILD_TRACES = f"""
INSERT INTO traces
WITH todo AS (SELECT trace_id FROM trace_rows
              WHERE request_time_ms >= $1 AND request_time_ms < $2
              AND trace_id NOT IN (SELECT trace_id FROM traces)),
sp AS (
    SELECT trace_id, list_sort(list(struct_pack(start_time_ms, span_id, parent_id, name,
           span_type, status_code, status_message, end_time_ms, duration_ms, inputs, outputs,
           attributes, events))) AS spans
    FROM stage_full SEMI JOIN todo USING (trace_id) GROUP BY 1),
tg AS (SELECT trace_id, map(list(key), list(value)) AS m FROM stage_tags
       SEMI JOIN todo USING (trace_id) WHERE key IS NOT NULL GROUP BY 1),
md AS (SELECT trace_id, map(list(key), list(value)) AS m FROM stage_meta
       SEMI JOIN todo USING (trace_id) WHERE key IS NOT NULL GROUP BY 1),
asm AS ({_ASSESSMENT_LISTS} SEMI JOIN todo USING (trace_id) GROUP BY 1)
SELECT t.trace_id, make_timestamp(t.request_time_ms * 1000), t.request_time_ms,
       t.execution_time_ms, t.state, t.request, t.response, t.response_empty, t.trace_name, t.session_id,
       coalesce(tg.m, MAP {{}}), coalesce(md.m, MAP {{}}), t.input_tokens,
       t.output_tokens, t.total_tokens, t.total_cost,
       coalesce(sp.spans, []), coalesce(asm.assessments, [])
FROM trace_rows t SEMI JOIN todo USING (trace_id)
LEFT JOIN tg USING (trace_id) LEFT JOIN md USING (trace_id) LEFT JOIN sp USING (trace_id)
LEFT JOIN asm USING (trace_id)
"""
