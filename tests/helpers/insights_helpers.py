"""Shared helpers for the SDK tests: real traces, artifact listings, store snapshots.

Nothing here replaces MLflow behaviour; it only creates real data and reads real state.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.entities import Trace, ViewType

from insights import compat
from insights import runs as insights_runs


@contextlib.contextmanager
def tracking_to(uri: str) -> Iterator[None]:
    """MLflow's fluent API points at ``uri`` inside the block; the setting before it comes
    back after: none, when there was none, and ``$MLFLOW_TRACKING_URI`` as it was (MLflow's
    ``set_tracking_uri`` writes that variable too). Restoring ``mlflow.get_tracking_uri()``
    instead pinned a URI that later tests' environment could no longer change."""
    previous, env = compat.tracking_uri_set(), os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


def make_traces(tracking_uri: str, experiment_id: str, n: int, prefix: str = "t",
                inputs: Callable[[int], dict[str, Any]] | None = None) -> list[str]:
    """Create ``n`` real traces in the experiment and wait until the store has them; trace
    ``i`` has the request ``inputs(i)`` (default ``{"i": i}``).

    Written with the demo corpus's export settings (``tracing_to``: one writer, trace info
    before spans): under a quarter of the CPU of the synchronous export the suite otherwise
    uses (tests/conftest.py), same rows. The last flush stops the export threads, so the
    flush on leaving ``tracing_to`` does not wait out their poll."""
    from agent.demo_app.corpus import tracing_to

    client = MlflowClient(tracking_uri)
    ids = []
    with tracing_to(tracking_uri):
        for i in range(n):
            span = client.start_trace(f"{prefix}{i}", inputs=inputs(i) if inputs else {"i": i},
                                      experiment_id=experiment_id)
            client.end_trace(span.trace_id, outputs={"o": i})
            ids.append(span.trace_id)
        mlflow.flush_trace_async_logging(terminate=True)
    return ids


def trace_calls(tracking_uri: str, experiment_id: str, app: Callable[[int], Any], n: int,
                ending_in_error: type[BaseException] | tuple = ()) -> list[str]:
    """Call the traced function ``app(i)`` for ``i < n`` and return the traces' ids, written
    with the demo corpus's export (as ``make_traces``). A call raising ``ending_in_error``
    leaves its trace in ERROR and the loop goes on."""
    from agent.demo_app.corpus import tracing_to

    ids = []
    with tracing_to(tracking_uri):
        mlflow.set_experiment(experiment_id=experiment_id)
        for i in range(n):
            try:
                app(i)
            except ending_in_error:
                pass
            ids.append(mlflow.get_last_active_trace_id())
        mlflow.flush_trace_async_logging(terminate=True)
    return ids


def all_runs(client: MlflowClient, experiment_id: str):
    return client.search_runs([experiment_id], run_view_type=ViewType.ALL, max_results=1000)


def artifact_tree(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    """Every artifact file of a run, recursively, sorted."""
    out = []
    for info in client.list_artifacts(run_id, path):
        if info.is_dir:
            out.extend(artifact_tree(client, run_id, info.path))
        else:
            out.append(info.path)
    return sorted(out)


def store_state(client: MlflowClient, experiment_ids: list[str]) -> dict[str, Any]:
    """Everything a write could change: runs (status, stage, tags), their artifacts, trace links."""
    state: dict[str, Any] = {}
    for exp in experiment_ids:
        for run in all_runs(client, exp):
            rid = run.info.run_id
            linked = _all_linked(client, exp, rid)
            state[rid] = {
                "status": run.info.status,
                "stage": run.info.lifecycle_stage,
                "tags": dict(run.data.tags),
                "artifacts": artifact_tree(client, rid),
                "links": sorted(linked),
            }
    return state


def read_artifact_yaml(client: MlflowClient, run_id: str, path: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, path, tmp)
        return yaml.safe_load(Path(local).read_text())


def parent_runs(client: MlflowClient, experiment_id: str):
    """Active Insights parent runs of the experiment."""
    return insights_runs.find_parents(client, experiment_id)


def all_traces(client: MlflowClient, experiment_id: str, *, run_id: str | None = None,
               include_spans: bool = False) -> list[Trace]:
    """Every trace of the experiment (or linked to ``run_id``), all pages (a server caps
    search_traces pages at 500)."""
    traces: list[Trace] = []
    token = None
    while True:
        page = client.search_traces(locations=[experiment_id], run_id=run_id, max_results=500,
                                    include_spans=include_spans, page_token=token)
        traces.extend(page)
        token = page.token
        if not token:
            return traces


def _all_linked(client: MlflowClient, experiment_id: str, run_id: str) -> list[str]:
    """Trace ids linked to a run."""
    return [t.info.trace_id for t in all_traces(client, experiment_id, run_id=run_id)]


def linked_trace_ids(client: MlflowClient, experiment_id: str, run_id: str) -> set[str]:
    return set(_all_linked(client, experiment_id, run_id))


class CallCounter:
    """Wrap a bound method so calls are counted; the real method still does the work."""

    def __init__(self, obj: Any, name: str):
        self.calls: list[tuple] = []
        self._real: Callable = getattr(obj, name)

        def spy(*args, **kwargs):
            self.calls.append((args, kwargs))
            return self._real(*args, **kwargs)

        setattr(obj, name, spy)

    @property
    def count(self) -> int:
        return len(self.calls)


_STATE_TABLES = (
    "experiments", "experiment_tags", "runs", "tags", "params", "metrics", "latest_metrics",
    "entity_associations", "trace_info", "trace_tags", "trace_request_metadata", "inputs",
    "issues",
)


def local_store_state(db_path: Path, artifact_root: Path) -> dict[str, Any]:
    """Every row a write could touch plus every artifact file (size, mtime), read directly.

    Both test stores keep their database in a local SQLite file and their artifacts in a local
    folder (the server's ``--artifacts-destination``), so "nothing was written" can be checked
    exhaustively and fast, without going through the SDK under test.
    """
    import sqlite3

    state: dict[str, Any] = {}
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        for table in _STATE_TABLES:
            try:
                rows = con.execute(f"SELECT * FROM {table}").fetchall()
            except sqlite3.OperationalError:
                continue
            state[table] = sorted(map(repr, rows))
    finally:
        con.close()
    files = {}
    if artifact_root.exists():
        for path in artifact_root.rglob("*"):
            if path.is_file():
                st = path.stat()
                files[str(path.relative_to(artifact_root))] = (st.st_size, st.st_mtime_ns)
    state["artifacts"] = files
    return state
