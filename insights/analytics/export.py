"""Export an experiment's traces as Parquet in the `traces` table's schema, partitioned by day.

Why: Spark (a cluster, Databricks, or a local Spark on a big experiment) reads Parquet, and
the nested `traces` table the DuckDB cache already builds is exactly the shape Trace SQL
expects. So the export is that table, written as ``DIR/day=YYYY-MM-DD/*.parquet``.

Incremental: before writing, the trace ids already in ``DIR`` are read back from the Parquet
files themselves (one column, cheap), and only traces not among them are written, as new
files beside the old ones. There is no separate manifest that could drift from the data.
Traces still ``IN_PROGRESS`` are left out until they finish: a written file is never
rewritten, so exporting one early would freeze its unfinished state. Likewise assessments
logged after a trace was exported are not added to it.

The session's connection is sandboxed (no file access), so the rows are streamed as Arrow
batches to a separate, private DuckDB connection that writes the files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from insights.analytics.schema import TRACES_COLUMNS
from insights.analytics.session import AnalyticsSession
from insights.errors import InvalidInputError

PARTITION = "day"
_BATCH_ROWS = 20_000


@dataclass
class ExportResult:
    """What one export call did."""

    out: str
    written: int  # traces added by this call
    total: int  # traces in ``out`` afterwards
    skipped_in_progress: int
    days: list[str]  # partitions that received new files

    def to_dict(self) -> dict:
        return {"out": self.out, "written": self.written, "total": self.total,
                "skipped_in_progress": self.skipped_in_progress, "days": self.days}


def check_out_dir(out: str | Path) -> Path:
    """``out`` must be a directory (created if missing), not a file: checked before any work."""
    if not str(out).strip():
        raise InvalidInputError("--out must name a directory")
    path = Path(out).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"--out {out} exists and is not a directory")
    return path


def exported_ids(out: Path) -> set[str]:
    """Trace ids already written under ``out`` (read from the Parquet files)."""
    files = list(out.glob(f"{PARTITION}=*/*.parquet"))
    if not files:
        return set()
    con = duckdb.connect()
    try:
        rows = con.execute("SELECT trace_id FROM read_parquet(?, hive_partitioning = false)",
                           [[str(f) for f in files]]).fetchall()
    except duckdb.Error as exc:
        raise InvalidInputError(f"{out} holds Parquet files that are not a trace export: "
                                f"{str(exc).splitlines()[0]}") from exc
    finally:
        con.close()
    return {r[0] for r in rows}


def export_traces(session: AnalyticsSession, out: str | Path,
                  progress: Callable[[str], None] | None = None) -> ExportResult:
    """Write the session's finished traces not yet in ``out`` as day-partitioned Parquet."""
    path = check_out_dir(out)
    done = exported_ids(path) if path.exists() else set()
    with session.using(progress) as con:
        session.ensure_full()
        ids = con.execute("SELECT trace_id, state = 'IN_PROGRESS' FROM traces").fetchall()
        new = [t for t, pending in ids if not pending and t not in done]
        pending = sum(1 for _t, p in ids if p and _t not in done)
        days: list[str] = []
        if new:
            session.progress(f"writing {len(new)} traces to {path}")
            cols = ", ".join(TRACES_COLUMNS)
            picked = "FROM traces WHERE trace_id IN (SELECT unnest(?))"
            day = "strftime(request_time, '%Y-%m-%d')"
            days = [r[0] for r in con.execute(
                f"SELECT DISTINCT {day} {picked} ORDER BY 1", [new]).fetchall()]
            cur = con.execute(f"SELECT {cols}, {day} AS {PARTITION} {picked} "
                              "ORDER BY request_time_ms, trace_id", [new])
            _write(cur.fetch_record_batch(_BATCH_ROWS), path)
    return ExportResult(str(path), len(new), len(done) + len(new), pending, days)


def _write(reader, path: Path) -> None:
    """Stream the batches under ``path`` as new files with names unique to this call."""
    path.mkdir(parents=True, exist_ok=True)
    writer = duckdb.connect()
    try:
        writer.register("new_traces", reader)
        writer.execute(
            f"COPY (SELECT * FROM new_traces) TO '{_quote(path)}' (FORMAT PARQUET, "
            f"PARTITION_BY ({PARTITION}), APPEND, FILENAME_PATTERN 'traces-{{uuid}}')")
    finally:
        writer.close()


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")
