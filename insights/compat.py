"""Every use of a private MLflow attribute or table, in one place.

Why: MLflow may change anything not in its public API in a minor release. Each dependency
below is named once, used through one function, and checked against the installed MLflow
by tests/test_compat_contract.py, so such a release fails one test that says what changed
instead of breaking a command somewhere far away.

The private dependencies:

- ``MlflowClient()._tracing_client.store``: the tracing store, for ``query_trace_metrics``
  (server-side trace/span/assessment aggregates; no public client method exposes it).
- ``ArtifactRepository._download_file``: downloads one known file without the folder check
  the public ``download_artifacts`` makes (one request per file instead of two).
- MLflow's SQLite tables and columns (``SQLITE_TABLES``), read directly by
  ``insights.analytics.sqlite_source`` because ``search_traces`` is two orders of magnitude
  slower for a whole experiment, and by ``InsightsClient``'s reads of an experiment's issues
  (``sqlite_experiment_stage``, ``sqlite_parent_runs``, ``sqlite_run``,
  ``sqlite_tagged_runs_everywhere``) because importing MLflow's SQLAlchemy
  store alone costs ~2.5 s, most of a CLI call.
- The tracking store's native issue methods ``create_issue``, ``get_issue``, ``update_issue``
  and ``search_issues`` (parameters in ``NATIVE_ISSUE_METHODS``), reached through the same
  ``_tracing_client.store``: MLflow 3.17 has no public client method for its Issues, which
  ``insights.publish`` writes ours into.
- ``MlflowClient()._tracing_client.log_assessment``: links a trace to a native issue with an
  ``IssueReference`` on a given tracking URI (``mlflow.log_issue`` only uses the global one).
- How ``SqlAlchemyStore.link_traces_to_run`` records a trace-to-run link (one
  ``entity_associations`` row per new link: ``sqlite_link_traces``), repeated with
  ``sqlite_traces_in_experiment`` by the evidence of ``create-hypothesis``/``create-issue`` on
  a local store, for the same reason.
- How ``LocalArtifactRepository`` writes a file (``write_local_artifact``: staged under
  ``LOCAL_ARTIFACT_TEMP_PREFIX`` beside the target, then renamed over it), repeated by
  ``create-hypothesis`` on a local store so that it need not import MLflow (seconds) to write
  two small files into a folder.
- MLflow's span exporter, ``mlflow.tracing.export.mlflow_v3.MlflowV3SpanExporter`` (where the
  tracer provider looks it up when it is built) and its private parts (``_log_trace``,
  ``_async_queue`` and its tasks' ``handler``, ``_client``, ``_is_async_enabled``), subclassed
  and swapped in by ``trace_info_written_first`` while a simulated corpus is written to a SQL
  store: MLflow queues a batch's spans before its traces, so each trace's info lands on a row
  its spans already created and takes SQLAlchemy's merge-per-tag path, most of the cost of
  writing a corpus.
- The tracking store instance MLflow caches per URI (``MlflowClient()._tracing_client.store``
  is the one its exporter writes through), whose ``get_experiment`` ``experiments_read_once``
  memoizes while a simulated corpus is written: ``start_trace`` reads the experiment of every
  trace it stores.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import sqlite3
import uuid
from pathlib import Path
from typing import Any, Iterator

from insights.errors import InsightsError, TrackingServerError

# table -> columns insights.analytics.sqlite_source reads
SQLITE_TABLES: dict[str, tuple[str, ...]] = {
    "trace_info": ("request_id", "experiment_id", "timestamp_ms", "execution_time_ms", "status"),
    "spans": ("trace_id", "experiment_id", "span_id", "parent_span_id", "name", "type", "status",
              "start_time_unix_nano", "end_time_unix_nano", "content"),
    "trace_tags": ("request_id", "key", "value"),
    "trace_request_metadata": ("request_id", "key", "value"),
    "assessments": ("trace_id", "assessment_id", "name", "value", "source_type", "rationale",
                    "last_updated_timestamp", "valid"),
    # read by sqlite_experiment_stage, sqlite_parent_runs, sqlite_tagged_runs (the CLI's fast
    # reads)
    "experiments": ("experiment_id", "lifecycle_stage"),
    "runs": ("run_uuid", "experiment_id", "lifecycle_stage", "artifact_uri", "start_time",
             "name", "user_id", "status", "end_time"),
    "tags": ("run_uuid", "key", "value"),
    # written by sqlite_link_traces (trace-to-run links, as link_traces_to_run writes them)
    "entity_associations": ("association_id", "source_type", "source_id", "destination_type",
                            "destination_id", "created_time"),
}
# native issue store method -> the parameters insights.publish passes to it
NATIVE_ISSUE_METHODS: dict[str, tuple[str, ...]] = {
    "create_issue": ("experiment_id", "name", "description", "status", "severity",
                     "root_causes", "source_run_id", "categories", "created_by"),
    "get_issue": ("issue_id",),
    "update_issue": ("issue_id", "status", "name", "description", "severity"),
    "search_issues": ("experiment_id", "max_results", "page_token", "include_trace_count"),
}
# MLflow error codes meaning "this backend does not serve issues" (a store without them, or a
# server too old to have the REST endpoints)
_NO_ISSUES_ERROR_CODES = frozenset({"NOT_IMPLEMENTED", "ENDPOINT_NOT_FOUND"})
# trace_info columns of newer MLflow versions: read when present, NULL otherwise
SQLITE_OPTIONAL_TRACE_INFO_COLUMNS: tuple[str, ...] = (
    "trace_name", "session_id", "input_tokens", "output_tokens", "total_tokens", "total_cost")


# mlflow.store.artifact.local_artifact_repo._TEMP_ARTIFACT_PREFIX: a file being written
LOCAL_ARTIFACT_TEMP_PREFIX = ".artifact.uploading."


class MlflowCompatError(TrackingServerError):
    """The installed MLflow (or the store's schema) lacks a private part insights relies on."""


def tracing_store(client: Any) -> Any:
    """The tracing store behind an ``MlflowClient`` (has ``query_trace_metrics``)."""
    try:
        return client._tracing_client.store
    except AttributeError as exc:
        raise MlflowCompatError(
            "MlflowClient()._tracing_client.store no longer exists in this MLflow version: "
            "update insights/compat.py tracing_store()") from exc


def tracking_uri_set() -> str | None:
    """The URI given to ``mlflow.set_tracking_uri`` (``None`` when none is, and MLflow falls
    back on ``$MLFLOW_TRACKING_URI`` or its default). Why: code that points MLflow at a store
    for a while must restore this, not ``mlflow.get_tracking_uri()``; setting the resolved value
    back would pin it, and a later change of ``$MLFLOW_TRACKING_URI`` would be ignored."""
    from mlflow.tracking._tracking_service import utils

    if not hasattr(utils, "_tracking_uri"):
        raise MlflowCompatError(
            "mlflow.tracking._tracking_service.utils._tracking_uri no longer exists in this "
            "MLflow version: update insights/compat.py tracking_uri_set()")
    return utils._tracking_uri


@contextlib.contextmanager
def trace_info_written_first() -> Iterator[None]:
    """While inside, traces exported by MLflow's async exporter to a SQL store (``sqlite:``,
    ``postgresql:``, ``mysql:``, ``mssql:``) have their trace info stored before their spans.

    Why: MLflow queues each export batch's spans first; ``log_spans`` then creates every trace
    row, and ``start_trace`` finds it taken and merges the trace's tags and metadata one row at
    a time. Stored the other way round, the rows are the same (checked by
    tests/test_compat_contract.py) and a corpus is written ~1.5x faster. The tracer provider
    must be built inside (``mlflow.set_tracking_uri`` makes the next span build it). Other
    stores, synchronous export, and an MLflow whose exporter lacks a part used here (the
    contract test says which) keep MLflow's own order.
    """
    from mlflow.tracing.export import mlflow_v3

    original = getattr(mlflow_v3, "MlflowV3SpanExporter", None)
    missing = [name for name in _EXPORTER_PARTS if not hasattr(original, name)]
    if original is None or missing:  # only a speed-up: MLflow's own order still works
        yield
        return
    mlflow_v3.MlflowV3SpanExporter = _info_first_exporter(original)
    try:
        yield
    finally:
        mlflow_v3.MlflowV3SpanExporter = original


@contextlib.contextmanager
def experiments_read_once(tracking_uri: str) -> Iterator[None]:
    """While inside, the SQL store behind ``tracking_uri`` reads each experiment from the
    database once and then answers ``get_experiment`` from memory.

    Why: MLflow's ``start_trace`` reads the trace's experiment (two queries) for every trace it
    stores, about a quarter of the time to write a simulated corpus, whose experiments do not
    change meanwhile. Only for code that writes traces and changes no experiment inside.
    """
    from mlflow import MlflowClient

    if not sql_store(tracking_uri):
        yield
        return
    store = tracing_store(MlflowClient(tracking_uri))
    read = getattr(type(store), "get_experiment", None)
    if read is None:  # only a speed-up
        yield
        return
    seen: dict[str, Any] = {}

    def get_experiment(experiment_id: Any) -> Any:
        key = str(experiment_id)
        if key not in seen:
            seen[key] = read(store, experiment_id)
        return seen[key]

    store.get_experiment = get_experiment
    try:
        yield
    finally:
        del store.get_experiment


# what _info_first_exporter uses of MLflow's exporter class (and, per instance, _async_queue
# with put(task=...) and tasks' handler, _client, _is_async_enabled)
_EXPORTER_PARTS = ("export", "_log_trace", "_should_log_async", "_should_log_spans_to_artifacts")
_SQL_SCHEMES = frozenset({"sqlite", "postgresql", "mysql", "mssql"})


def sql_store(tracking_uri: str | None) -> bool:
    """Whether ``tracking_uri`` names a SQL tracking store (``sqlite:``,
    ``postgresql+psycopg2:``...), which keeps spans in its own spans table."""
    return (tracking_uri or "").split(":", 1)[0].split("+", 1)[0] in _SQL_SCHEMES


def _info_first_exporter(base: type) -> type:
    """A subclass of MLflow's exporter that lets MLflow queue a batch's work as it does, then
    puts the trace-info tasks in the queue before the span tasks."""

    class InfoFirstExporter(base):  # type: ignore[misc, valid-type]
        def __init__(self, tracking_uri: str | None = None) -> None:
            super().__init__(tracking_uri=tracking_uri)
            self._info_first = (sql_store(self._client.tracking_uri) and self._is_async_enabled
                                and hasattr(getattr(self, "_async_queue", None), "put"))

        def export(self, spans: Any) -> None:
            if not (self._info_first and self._should_log_async()):
                return super().export(spans)
            queue, held = self._async_queue, []
            queue.put = lambda task: held.append(task)  # hold MLflow's tasks for this batch
            try:
                super().export(spans)
            finally:
                del queue.put
            # stable: each kind keeps MLflow's order
            for task in sorted(held, key=lambda t: getattr(t, "handler", None) != self._log_trace):
                queue.put(task=task)

        def _should_log_spans_to_artifacts(self, trace_info: Any) -> bool:
            # A SQL store keeps spans in its spans table. The tag that says so is written by
            # log_spans, which now comes after start_trace.
            if self._info_first:
                return False
            return super()._should_log_spans_to_artifacts(trace_info)

    return InfoFirstExporter


def download_artifact_file(repo: Any, remote_path: str, local_path: str) -> None:
    """Download one artifact file known to be a file (no extra 'is it a folder?' request)."""
    download = getattr(repo, "_download_file", None)
    if download is None:
        raise MlflowCompatError(
            f"{type(repo).__name__}._download_file no longer exists in this MLflow version: "
            "update insights/compat.py download_artifact_file()")
    download(remote_file_path=remote_path, local_path=local_path)


def write_local_artifact(root: str | Path, artifact_file: str, text: str) -> None:
    """Write ``text`` to ``artifact_file`` under a run's local artifact folder ``root`` as
    ``MlflowClient.log_text`` does through ``LocalArtifactRepository``: the folder made if
    missing, the text (UTF-8, text mode) staged in a hidden file beside the target with the
    mode a new file gets, then renamed over it, so a reader never sees half a file."""
    parts = posixpath.normpath(artifact_file).split("/")
    if posixpath.isabs(artifact_file) or ".." in parts:
        raise ValueError(f"artifact path {artifact_file!r} leaves the run's artifact folder")
    target = Path(root).joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:     # a fresh name (as mkstemp), but created with a new file's usual mode
        staged = target.parent / f"{LOCAL_ARTIFACT_TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(staged, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(staged)
        raise


def sqlite_schema_problems(conn: sqlite3.Connection) -> list[str]:
    """What ``SQLITE_TABLES`` expects that the store at ``conn`` lacks (empty when all there)."""
    problems = []
    for table, columns in SQLITE_TABLES.items():
        have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if not have:
            problems.append(f"table {table} is missing")
            continue
        missing = [c for c in columns if c not in have]
        if missing:
            problems.append(f"table {table} lacks column(s) {', '.join(missing)}")
    return problems


def sqlite_store_path(uri: str) -> str:
    """Filesystem path of a ``sqlite:///`` tracking URI (as ``sqlite_source.sqlite_path``, here
    so the CLI's fast reads need not import DuckDB and PyArrow with that module)."""
    from urllib.parse import unquote

    return unquote(uri.split("sqlite:///", 1)[1].split("?", 1)[0])


def sqlite_read_only(path: str) -> sqlite3.Connection | None:
    """A read-only connection to an MLflow SQLite store file, None when it cannot be opened."""
    from urllib.parse import quote

    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=10)
        conn.execute("PRAGMA query_only = 1")
        return conn
    except sqlite3.Error:
        return None


def sqlite_experiment_stage(conn: sqlite3.Connection, experiment_id: str) -> str | None:
    """The experiment's lifecycle stage ('active' / 'deleted'), None when there is none."""
    if not experiment_id.isdigit():
        return None
    row = conn.execute("SELECT lifecycle_stage FROM experiments WHERE experiment_id = ?",
                       (int(experiment_id),)).fetchone()
    return row[0] if row else None


def sqlite_parent_runs(conn: sqlite3.Connection, experiment_id: str, tag_key: str,
                       tag_value: str) -> list[tuple[str, str]]:
    """(run id, artifact URI) of the experiment's active runs tagged ``tag_key = tag_value``,
    oldest first, as ``MlflowClient.search_runs`` with that tag filter would find them."""
    if not experiment_id.isdigit():
        return []
    rows = conn.execute(
        "SELECT r.run_uuid, r.artifact_uri FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
        "WHERE r.experiment_id = ? AND r.lifecycle_stage = 'active' AND t.key = ? "
        "AND t.value = ? ORDER BY coalesce(r.start_time, 0), r.run_uuid",
        (int(experiment_id), tag_key, tag_value)).fetchall()
    return [(r[0], r[1] or "") for r in rows]


def sqlite_tagged_runs_everywhere(conn: sqlite3.Connection, tag_key: str, tag_value: str,
                                  limit: int = 1000) -> list[tuple[str, str]]:
    """(run id, artifact URI) of active runs tagged ``tag_key = tag_value`` in every active
    experiment, newest first (``search_runs``' default order)."""
    rows = conn.execute(
        "SELECT r.run_uuid, r.artifact_uri FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
        "JOIN experiments e ON e.experiment_id = r.experiment_id "
        "WHERE e.lifecycle_stage = 'active' AND r.lifecycle_stage = 'active' AND t.key = ? "
        "AND t.value = ? ORDER BY coalesce(r.start_time, 0) DESC, r.run_uuid LIMIT ?",
        (tag_key, tag_value, limit)).fetchall()
    return [(r[0], r[1] or "") for r in rows]


# the runs columns sqlite_tagged_runs returns, named as RunInfo's arguments
_RUN_INFO_COLUMNS = (("run_uuid", "run_id"), ("name", "run_name"),
                     ("experiment_id", "experiment_id"), ("user_id", "user_id"),
                     ("status", "status"), ("start_time", "start_time"),
                     ("end_time", "end_time"), ("lifecycle_stage", "lifecycle_stage"),
                     ("artifact_uri", "artifact_uri"))


def sqlite_tagged_runs(conn: sqlite3.Connection, experiment_id: str, tag_key: str,
                       tag_value: str) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """(RunInfo fields, every tag) of the experiment's active runs tagged ``tag_key =
    tag_value``, in ``search_runs``' order for ``order_by=["attributes.start_time DESC"]``:
    newest first, runs without a start time last, then by run id. One statement, so runs and
    tags come from one snapshot of the store."""
    if not experiment_id.isdigit():
        return []
    columns = ", ".join(f"r.{column}" for column, _ in _RUN_INFO_COLUMNS)
    rows = conn.execute(
        f"SELECT {columns}, t.key, t.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
        "WHERE r.run_uuid IN (SELECT c.run_uuid FROM runs c JOIN tags ct "
        "ON ct.run_uuid = c.run_uuid WHERE c.experiment_id = ? AND c.lifecycle_stage = 'active' "
        "AND ct.key = ? AND ct.value = ?) "
        "ORDER BY r.start_time IS NULL, r.start_time DESC, r.run_uuid",
        (int(experiment_id), tag_key, tag_value)).fetchall()
    found: dict[str, tuple[dict[str, Any], dict[str, str]]] = {}
    width = len(_RUN_INFO_COLUMNS)
    for row in rows:
        if row[0] not in found:
            info = {name: value for (_, name), value in zip(_RUN_INFO_COLUMNS, row)}
            info["experiment_id"] = str(info["experiment_id"])
            found[row[0]] = (info, {})
        found[row[0]][1][row[width]] = row[width + 1]
    return list(found.values())


def sqlite_run(conn: sqlite3.Connection, run_id: str, tag_key: str
               ) -> tuple[str, str, str | None, str] | None:
    """(lifecycle stage, artifact URI, value of tag ``tag_key``, experiment id) of a run, None
    if unknown."""
    row = conn.execute(
        "SELECT r.lifecycle_stage, r.artifact_uri, t.value, r.experiment_id FROM runs r "
        "LEFT JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = ? WHERE r.run_uuid = ?",
        (tag_key, run_id)).fetchone()
    return (row[0], row[1] or "", row[2], str(row[3])) if row else None


def sqlite_traces_in_experiment(conn: sqlite3.Connection, experiment_id: str,
                                trace_ids: list[str]) -> set[str]:
    """Which of ``trace_ids`` are traces of the experiment (what ``search_traces`` with a
    ``trace.request_id IN (...)`` filter finds)."""
    if not experiment_id.isdigit():
        return set()
    found: set[str] = set()
    for start in range(0, len(trace_ids), 500):
        batch = trace_ids[start:start + 500]
        marks = ", ".join("?" * len(batch))
        found.update(r[0] for r in conn.execute(
            f"SELECT request_id FROM trace_info WHERE experiment_id = ? AND request_id IN ({marks})",
            (int(experiment_id), *batch)))
    return found


# mlflow.entities.entity_type.EntityAssociationType values of a trace-to-run link
_LINK_SOURCE, _LINK_DESTINATION = "trace", "run"


def sqlite_link_traces(path: str, run_id: str, trace_ids: list[str]) -> int:
    """Link traces to a run in a local SQLite store as ``SqlAlchemyStore.link_traces_to_run``
    does: one ``entity_associations`` row per link not already there (uuid4 hex id, creation
    time in ms), in one transaction. Returns how many links were added."""
    import time

    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        existing = {r[0] for r in conn.execute(
            "SELECT source_id FROM entity_associations WHERE source_type = ? "
            "AND destination_type = ? AND destination_id = ?",
            (_LINK_SOURCE, _LINK_DESTINATION, run_id))}
        new = [t for t in dict.fromkeys(trace_ids) if t not in existing]
        now = int(time.time() * 1000)
        conn.executemany(
            "INSERT INTO entity_associations (association_id, source_type, source_id, "
            "destination_type, destination_id, created_time) VALUES (?, ?, ?, ?, ?, ?)",
            [(uuid.uuid4().hex, _LINK_SOURCE, t, _LINK_DESTINATION, run_id, now) for t in new])
        conn.execute("COMMIT")
        return len(new)
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise TrackingServerError(f"linking traces in {path} failed: {exc}") from None
        raise
    finally:
        conn.close()


def check_sqlite_store(conn: sqlite3.Connection, path: str) -> None:
    """Raise ``MlflowCompatError`` naming every table/column the SQLite reader needs but lacks."""
    problems = sqlite_schema_problems(conn)
    if problems:
        raise MlflowCompatError(
            f"SQLite store {path} does not have MLflow's expected trace tables ("
            + "; ".join(problems) + "): update insights/compat.py SQLITE_TABLES")


def trace_info_columns(conn: sqlite3.Connection) -> set[str]:
    """The trace_info columns present in this store (optional ones vary by MLflow version)."""
    return {r[1] for r in conn.execute("PRAGMA table_info(trace_info)")}


# ---------------------------------------------------------------------- native issues


class NoNativeIssuesError(InsightsError):
    """The tracking backend cannot store MLflow's native issues (a file store, an old server).

    Exit code 2: the caller pointed at a backend that cannot do what was asked; retrying the
    same backend never helps, unlike a ``TrackingServerError``.
    """

    error_code = "NOT_IMPLEMENTED"


def _no_issues(detail: str) -> NoNativeIssuesError:
    return NoNativeIssuesError(f"this tracking backend has no native issue support ({detail})")


@contextlib.contextmanager
def _issue_support(store: Any, method: str) -> Iterator[None]:
    """Turn every way a backend says "no issues here" into one ``NoNativeIssuesError``."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except NotImplementedError:
        raise _no_issues(f"{type(store).__name__}.{method} is not implemented") from None
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in _NO_ISSUES_ERROR_CODES:
            raise _no_issues(f"{type(store).__name__}.{method}: {exc.error_code}") from None
        raise


def native_issue_store(client: Any) -> Any:
    """The store behind an ``MlflowClient`` that holds native issues; ``NoNativeIssuesError``
    when it has none of the methods ``NATIVE_ISSUE_METHODS`` names."""
    store = tracing_store(client)
    missing = [m for m in NATIVE_ISSUE_METHODS if not callable(getattr(store, m, None))]
    if missing:
        raise _no_issues(f"{type(store).__name__} lacks {', '.join(missing)}")
    return store


def create_native_issue(store: Any, **fields: Any) -> Any:
    """``store.create_issue(**fields)`` (fields: ``NATIVE_ISSUE_METHODS["create_issue"]``)."""
    with _issue_support(store, "create_issue"):
        return store.create_issue(**fields)


def get_native_issue(store: Any, issue_id: str) -> Any:
    with _issue_support(store, "get_issue"):
        return store.get_issue(issue_id=issue_id)


def update_native_issue(store: Any, issue_id: str, **changes: Any) -> Any:
    """``store.update_issue``: only status, name, description and severity can change."""
    with _issue_support(store, "update_issue"):
        return store.update_issue(issue_id=issue_id, **changes)


def search_native_issues(store: Any, experiment_id: str, include_trace_count: bool = False,
                         page_size: int = 1000) -> list[Any]:
    """Every native issue of the experiment, all pages."""
    issues: list[Any] = []
    token = None
    while True:
        with _issue_support(store, "search_issues"):
            page = store.search_issues(experiment_id=experiment_id, max_results=page_size,
                                       page_token=token, include_trace_count=include_trace_count)
        issues.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return issues


def log_trace_assessment(client: Any, trace_id: str, assessment: Any) -> Any:
    """Log an assessment (e.g. an ``IssueReference``) on a trace of this client's store."""
    try:
        tracing_client = client._tracing_client
    except AttributeError as exc:
        raise MlflowCompatError(
            "MlflowClient()._tracing_client no longer exists in this MLflow version: "
            "update insights/compat.py log_trace_assessment()") from exc
    return tracing_client.log_assessment(trace_id, assessment)
