"""``InsightsClient``: the PRD's Python SDK over an MLflow tracking store.

Analyses are nested runs under one ``Insights`` parent run per experiment; hypotheses live in
the analysis run and issues in the parent, each as YAML under ``insights/``. Every trace named
as evidence is linked to the analysis run with MLflow's trace-to-run links.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from pydantic import ValidationError

from insights import artifacts, compat, journal, runs
from insights.artifacts import store_errors
from insights.errors import (
    InsightsError,
    InsightsStorageWarning,
    InvalidInputError,
    NotAnInsightsRunError,
    NotFoundError,
    StorageError,
)
from insights.ids import check_experiment_id, check_id, check_trace_id
from insights.models import (
    Analysis,
    AnalysisStatus,
    EvidenceEntry,
    Hypothesis,
    HypothesisStatus,
    Issue,
    IssueStatus,
    Severity,
    check_text,
    new_id,
    now_ms,
)

TRACE_LINK_BATCH = 100  # MLflow refuses more trace links than this in one call
_EXIST_BATCH = 100  # trace ids per existence check (one search each)
_TRACE_FETCH_BATCH = 100
CENSUS_PATH = "insights/baseline_census.json"
_SEARCH_PAGE = 500  # the most traces an MLflow server returns per search call

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Trace

    from insights.analytics.census_model import Census

EvidenceInput = dict[str, Any] | EvidenceEntry | str
_log = logging.getLogger(__name__)


class Listing(list):
    """A list of entities, plus ``warnings``: one line per entity file that could not be read.

    Those files are left out of the list (and also reported with ``warnings.warn`` as an
    ``InsightsStorageWarning``), so one broken file never hides the others.
    """

    def __init__(self, items: Iterable[Any] = (), warnings: Sequence[str] = ()):
        super().__init__(items)
        self.warnings: list[str] = list(warnings)


class InsightsClient:
    """Create, update, list and preview analyses, hypotheses and issues.

    The tracking URI comes from the argument or MLflow's usual settings
    (``MLFLOW_TRACKING_URI``); experiment ids, where the PRD allows leaving them out, come from
    ``MLFLOW_EXPERIMENT_ID``.
    """

    def __init__(self, tracking_uri: str | None = None):
        self.tracking_uri = tracking_uri or _default_tracking_uri()
        self._mlflow: MlflowClient | None = None   # opened on first use (see _client)
        self._reader = _LazyMlflowClient(self)
        self._sessions: dict[str, Any] = {}  # experiment id -> AnalyticsSession
        self._sessions_lock = threading.Lock()

    @property
    def _client(self) -> MlflowClient:
        """MLflow's client, created on first use: creating it imports the store (for SQLite,
        MLflow's SQLAlchemy store, ~2.5 s), which reading issues from a local store skips."""
        if self._mlflow is None:
            from mlflow import MlflowClient

            self._mlflow = MlflowClient(self.tracking_uri)
        return self._mlflow

    def _local_db_path(self) -> str | None:
        """The file of a ``sqlite:///`` store that exists, else None (use MLflow)."""
        if not self.tracking_uri.startswith("sqlite:///"):
            return None
        path = compat.sqlite_store_path(self.tracking_uri)
        return path if os.path.isfile(path) else None

    @contextlib.contextmanager
    def _local_store(self) -> Iterator[Any]:
        """A read-only connection to a ``sqlite:///`` store's file, closed on leaving; None
        when the store is not one (use MLflow)."""
        path = self._local_db_path()
        conn = compat.sqlite_read_only(path) if path is not None else None
        try:
            yield conn
        finally:
            if conn is not None:
                conn.close()

    def _analysis_artifact_uri(self, run_id: str) -> str:
        """The analysis run's artifact URI, checked (as runs.get_analysis_run checks it) to be
        a live Insights analysis run; read from the tables of a local SQLite store."""
        stored = self._stored_analysis_run(run_id)
        if stored is None:
            return runs.get_analysis_run(self._client, run_id).info.artifact_uri
        return stored[0]

    def _stored_analysis_run(self, run_id: str) -> tuple[str, str] | None:
        """(artifact URI, experiment id) of the analysis run, from the tables of a local SQLite
        store with ``_analysis_artifact_uri``'s checks and errors; None when the store is not
        one."""
        with self._local_store() as conn:
            if conn is None:
                return None
            found = compat.sqlite_run(conn, run_id, runs.TAG_TYPE)
        if found is None:
            raise NotFoundError(f"Analysis run '{run_id}' not found")
        stage, artifact_uri, kind, experiment_id = found
        if stage == "deleted":
            raise NotFoundError(f"Analysis run '{run_id}' not found (it is deleted)")
        if kind != "analysis":
            raise NotAnInsightsRunError(f"Run '{run_id}' is not an Insights analysis run")
        artifacts.remember_artifact_uri(self.tracking_uri, run_id, artifact_uri)
        return artifact_uri, experiment_id

    def _parent(self, experiment_id: str) -> tuple[str, str] | None:
        """(run id, artifact URI) of the experiment's canonical parent run, or None."""
        with self._local_store() as conn:
            if conn is None:
                parent = runs.find_parent(self._client, experiment_id)
                return (parent.info.run_id, parent.info.artifact_uri) if parent else None
            found = compat.sqlite_parent_runs(conn, experiment_id, runs.TAG_TYPE, "parent")
        if not found:
            return None
        artifacts.remember_artifact_uri(self.tracking_uri, *found[0])
        return found[0]

    def __enter__(self) -> "InsightsClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the analytics sessions this client opened (the client stays usable)."""
        with self._sessions_lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()

    @property
    def mlflow_client(self) -> MlflowClient:
        return self._client

    # ------------------------------------------------------------------ create

    def create_analysis(
        self,
        experiment_id: str | None = None,
        run_name: str = "",
        name: str = "",
        description: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Create a nested analysis run under the experiment's Insights parent; return its id."""
        experiment_id = self._experiment(experiment_id)
        run_name = _required_text(run_name, "run_name")
        name = (name or run_name).strip()
        check_text(run_name=run_name, name=name, description=description)
        _mapping(metadata, "metadata")
        self._check_experiment(experiment_id)
        created = now_ms()
        run_id = runs.create_analysis_run(
            self._client, experiment_id, run_name, name, description, created, metadata
        )
        analysis = Analysis(
            run_id=run_id, experiment_id=experiment_id, run_name=run_name, name=name,
            description=description, created_at=created, updated_at=created,
            metadata=metadata or {},
        )
        journal.create(self._client, run_id, "analysis", None, analysis.to_dict())
        return run_id

    def create_hypothesis(
        self,
        insights_run_id: str,
        statement: str,
        testing_plan: str = "",
        evidence: Sequence[EvidenceInput] | None = None,
        rationale: str | None = None,
        metrics: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Add a hypothesis (status TESTING) to an analysis run; return its id."""
        run_id = check_id(insights_run_id, "run id")
        statement = _required_text(statement, "statement")
        check_text(statement=statement, testing_plan=testing_plan, rationale=rationale)
        entries = parse_evidence(evidence or [])
        _mapping(metrics, "metrics")
        _mapping(metadata, "metadata")
        writer = self._hypothesis_writer(run_id, [e.trace_id for e in entries])
        hypothesis = Hypothesis(
            hypothesis_id=new_id(), run_id=run_id, statement=statement,
            testing_plan=testing_plan or "", rationale=rationale, evidence=entries,
            metrics=metrics or {}, metadata=metadata or {},
        )
        self._link(run_id, [e.trace_id for e in entries])
        journal.create(writer, run_id, "hypothesis", hypothesis.hypothesis_id,
                       hypothesis.to_dict())
        return hypothesis.hypothesis_id

    def _hypothesis_writer(self, run_id: str, trace_ids: list[str]) -> Any:
        """Check the analysis run (and that the cited traces are in its experiment); return
        the client that writes the hypothesis's files.

        On a local SQLite store with local artifacts nothing needs MLflow's store: the run and
        the cited traces are checked from the store's tables, the links written there as
        MLflow writes them, and the files in place as ``MlflowClient.log_text`` would write
        them, without importing MLflow (seconds of a CLI call)."""
        stored = self._stored_analysis_run(run_id)
        writer = artifacts.local_writer(self._reader, run_id, stored[0]) if stored else None
        if writer is not None:
            if trace_ids:
                self.check_traces_exist(stored[1], trace_ids)
            return writer
        run = runs.get_analysis_run(self._client, run_id)
        self.check_traces_exist(run.info.experiment_id, trace_ids)
        return self._client

    def create_issue(
        self,
        insights_run_id: str,
        title: str,
        description: str = "",
        severity: str | Severity = Severity.MEDIUM,
        hypothesis_id: str | None = None,
        evidence: Sequence[EvidenceInput] | None = None,
        status: str | IssueStatus = IssueStatus.OPEN,
        assessments: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        """Record an issue in the experiment's parent run (source: this analysis); return its id."""
        run_id = check_id(insights_run_id, "run id")
        title = _required_text(title, "title")
        check_text(title=title, description=description)
        severity = _enum(Severity, severity, "severity")
        status = _enum(IssueStatus, status, "status")
        if hypothesis_id is not None:
            hypothesis_id = check_id(hypothesis_id, "hypothesis id")
        entries = parse_evidence(evidence or [])
        _mapping(metadata, "metadata")
        if assessments is not None and (isinstance(assessments, str) or not all(isinstance(a, str) for a in assessments)):
            raise InvalidInputError("assessments must be a list of names")
        run = runs.get_analysis_run(self._client, run_id)
        if hypothesis_id is not None:
            self.get_hypothesis(run_id, hypothesis_id)
        experiment_id = run.info.experiment_id
        self.check_traces_exist(experiment_id, [e.trace_id for e in entries])
        issue = Issue(
            issue_id=new_id(), source_run_id=run_id, hypothesis_id=hypothesis_id, title=title,
            description=description or "", severity=severity, status=status, evidence=entries,
            assessments=list(assessments or []), metadata=metadata or {},
        )
        self._link(run_id, [e.trace_id for e in entries])
        parent_id = runs.get_or_create_parent(self._client, experiment_id)
        journal.create(self._client, parent_id, "issue", issue.issue_id, issue.to_dict())
        canonical = runs.get_or_create_parent(self._client, experiment_id)
        if canonical != parent_id:  # the parent was merged away while we wrote: move the issue
            journal.copy_entity(self._client, parent_id, canonical, "issue", issue.issue_id)
        return issue.issue_id

    # ------------------------------------------------------------------ update

    def update_analysis(
        self,
        run_id: str,
        name: str | None = None,
        description: str | None = None,
        status: str | AnalysisStatus | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Analysis:
        """Change an analysis's name, description, status or metadata; return the result."""
        run_id = check_id(run_id, "run id")
        changes = _present(name=name, description=description)
        if status is not None:
            changes["status"] = _enum(AnalysisStatus, status, "status").value
        if "name" in changes:
            changes["name"] = _required_text(changes["name"], "name")
        check_text(name=name, description=description)
        run = runs.get_analysis_run(self._client, run_id)
        change = _change(changes, metadata=metadata)
        current = self._analysis_doc(run)
        if current is None:  # no analysis.yaml (a run made by another tool): start from the tags
            current = _analysis_from_run(run).to_dict()
        _analysis_model(run, current)  # an unreadable file fails here, before anything is written
        state = journal.update(
            self._client, run_id, "analysis", None, change,
            after_fold=lambda s: runs.mirror_analysis_tags(self._client, run_id, s),
            current=current,
        )
        if status is not None:
            try:
                self._sync_run_status(run_id, state.get("status"))
            except InsightsError as exc:  # the change is stored; the run status is a mirror
                _log.warning("Analysis %s updated, but its MLflow run status was not: %s",
                             run_id, exc)
        return _analysis_model(run, state)

    def update_hypothesis(
        self,
        insights_run_id: str,
        hypothesis_id: str,
        status: str | HypothesisStatus | None = None,
        add_evidence: Sequence[EvidenceInput] | None = None,
        add_traces: Sequence[str] | None = None,
        testing_plan: str | None = None,
        statement: str | None = None,
        rationale: str | None = None,
        metrics: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Hypothesis:
        """Change a hypothesis; evidence and traces are added, never replaced."""
        run_id = check_id(insights_run_id, "run id")
        hypothesis_id = check_id(hypothesis_id, "hypothesis id")
        changes = _present(testing_plan=testing_plan, statement=statement, rationale=rationale)
        check_text(**changes)
        if status is not None:
            changes["status"] = _enum(HypothesisStatus, status, "status").value
        items = [add_evidence] if isinstance(add_evidence, (str, dict)) else list(add_evidence or [])
        notes = [i for i in items if _is_note(i)]
        entries = parse_evidence([i for i in items if not _is_note(i)])
        traces = [check_trace_id(t) for t in add_traces or []]
        run = runs.get_analysis_run(self._client, run_id)
        doc, current = self._hypothesis_doc(run_id, hypothesis_id)
        entries += _note_entries(notes, traces or [e.trace_id for e in entries] or current.trace_ids)
        entries += _trace_only_entries(traces, current.trace_ids + [e.trace_id for e in entries])
        change = _change(changes, entries, metadata=metadata, metrics=metrics)
        if entries:
            self.check_traces_exist(run.info.experiment_id, [e.trace_id for e in entries])
        self._link(run_id, [e.trace_id for e in entries])
        state = journal.update(self._client, run_id, "hypothesis", hypothesis_id, change,
                               current=doc)
        return _hypothesis_model(state, run_id, hypothesis_id,
                                 _where("hypothesis", hypothesis_id, run_id))

    def update_issue(
        self,
        insights_run_id: str | None = None,
        issue_id: str = "",
        severity: str | Severity | None = None,
        status: str | IssueStatus | None = None,
        add_evidence: Sequence[EvidenceInput] | None = None,
        add_traces: Sequence[str] | None = None,
        resolution: str | None = None,
        title: str | None = None,
        description: str | None = None,
        add_assessments: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        experiment_id: str | None = None,
        changed_by: str | None = None,
    ) -> Issue:
        """Change an issue in the parent run. ``insights_run_id`` (or the experiment) locates it.

        A status or severity that changes is noted in ``metadata["history"]`` ({at, run_id,
        event: "status"/"severity", from, to, by?}), unless the caller writes the history itself
        (``metadata`` holds "history": the workflow's own event, e.g. "reopened", says it)."""
        issue_id = check_id(issue_id, "issue id")
        changes = _present(resolution=resolution, title=title, description=description)
        check_text(**changes)
        if severity is not None:
            changes["severity"] = _enum(Severity, severity, "severity").value
        if status is not None:
            changes["status"] = _enum(IssueStatus, status, "status").value
        entries = parse_evidence(add_evidence or [])
        traces = [check_trace_id(t) for t in add_traces or []]
        link_run = None
        if insights_run_id is not None:
            link_run = check_id(insights_run_id, "run id")
            experiment_id = runs.get_analysis_run(self._client, link_run).info.experiment_id
        parent_id, current, doc = self._locate_issue(issue_id, experiment_id)
        entries += _trace_only_entries(traces, current.trace_ids + [e.trace_id for e in entries])
        if metadata is None or isinstance(metadata, dict) and "history" not in metadata:
            noted = [{"at": now_ms(), "run_id": link_run, "event": field, "from": old, "to": new,
                      **({"by": str(changed_by)} if changed_by else {})}
                     for field, old, new in (
                         ("status", getattr(current.status, "value", current.status),
                          changes.get("status")),
                         ("severity", getattr(current.severity, "value", current.severity),
                          changes.get("severity")))
                     if new is not None and new != old]
            if noted:
                history = [h for h in (current.metadata or {}).get("history") or []
                           if isinstance(h, dict)]
                metadata = {**(metadata or {}), "history": history + noted}
        change = _change(changes, entries, metadata=metadata)
        if entries:
            self.check_traces_exist(experiment_id or self._run_experiment(parent_id),
                                    [e.trace_id for e in entries])
        self._link(link_run or current.source_run_id, [e.trace_id for e in entries])
        if add_assessments:
            change["add_assessments"] = [str(a) for a in add_assessments]
        state = journal.update(self._client, parent_id, "issue", issue_id, change, current=doc)
        return _issue_model(state, issue_id, _where("issue", issue_id, parent_id))

    # ------------------------------------------------------------------ read

    def list_analyses(self, experiment_id: str | None = None) -> Listing:
        """Every analysis of the experiment, newest first, from one run search.

        Metadata comes from a run tag; only metadata too long for a tag (or a run with no tags
        of ours) is read from the analysis's file. A file that cannot be read is named in
        ``warnings`` and the analysis is listed from its run tags.
        """
        experiment_id = self._experiment(experiment_id)
        self._check_experiment(experiment_id)
        out, problems = [], []
        for run in self._analysis_runs(experiment_id):
            analysis = _analysis_from_run(run)
            # too long for a tag, or a run from before the tag existed: read the snapshot
            if run.data.tags.get(runs.TAG_METADATA, runs.METADATA_IN_SNAPSHOT) == \
                    runs.METADATA_IN_SNAPSHOT:
                try:
                    doc = self._analysis_doc(run)
                    analysis = analysis if doc is None else _analysis_model(run, doc)
                except StorageError as exc:
                    problems.append(str(exc))
            out.append(analysis)
        return _listing(out, problems)

    def list_hypotheses(self, insights_run_id: str) -> Listing:
        """Every hypothesis of an analysis run, oldest first, from one folder download.

        A file that cannot be read is left out and named in ``warnings``.
        """
        run_id = check_id(insights_run_id, "run id")
        artifact_uri = self._analysis_artifact_uri(run_id)
        files = artifacts.read_yaml_dir(self._reader, run_id, journal.SNAPSHOT_DIR, "hypothesis_",
                                        artifact_uri)
        items, problems = _read_entities(
            files, lambda path, doc: _hypothesis_model(doc, run_id, _file_id(path, "hypothesis_"),
                                                       f"{path} (run {run_id})"))
        return _listing(sorted(items, key=lambda h: (h.created_at, h.hypothesis_id)), problems)

    def list_issues(self, experiment_id: str | None = None) -> Listing:
        """Every issue of the experiment, most traces first. Never creates the parent run.

        A file that cannot be read is left out and named in ``warnings``.
        """
        experiment_id = self._experiment(experiment_id)
        self._check_experiment(experiment_id)
        parent = self._parent(experiment_id)
        if parent is None:
            return Listing()
        parent_id, artifact_uri = parent
        files = artifacts.read_yaml_dir(self._reader, parent_id, journal.SNAPSHOT_DIR, "issue_",
                                        artifact_uri)
        issues, problems = _read_entities(
            files, lambda path, doc: _issue_model(doc, _file_id(path, "issue_"),
                                                  f"{path} (run {parent_id})"))
        issues.sort(key=lambda i: (-len(i.trace_ids), -i.created_at, i.issue_id))
        return _listing(issues, problems)

    def get_analysis(self, insights_run_id: str) -> Analysis:
        """One analysis; ``StorageError`` if its file is unreadable."""
        run_id = check_id(insights_run_id, "run id")
        run = runs.get_analysis_run(self._client, run_id)
        doc = self._analysis_doc(run)
        if doc is None:
            return _analysis_from_run(run)
        return _analysis_model(run, doc)

    def get_hypothesis(self, insights_run_id: str, hypothesis_id: str) -> Hypothesis:
        """One hypothesis; ``StorageError`` if its file is unreadable."""
        run_id = check_id(insights_run_id, "run id")
        hypothesis_id = check_id(hypothesis_id, "hypothesis id")
        self._analysis_artifact_uri(run_id)
        return self._hypothesis_doc(run_id, hypothesis_id)[1]

    def get_issue(self, issue_id: str, experiment_id: str | None = None) -> Issue:
        """An issue by id alone: issues are experiment-level, no run id needed."""
        issue_id = check_id(issue_id, "issue id")
        return self._locate_issue(issue_id, experiment_id)[1]

    def _analysis_runs(self, experiment_id: str) -> list[Any]:
        """The experiment's analysis runs as ``runs.search_analysis_runs`` finds them; read
        from the tables of a local SQLite store (their artifact URIs remembered, so their
        files are read in place)."""
        with self._local_store() as conn:
            if conn is None:
                return runs.search_analysis_runs(self._client, experiment_id)
            found = compat.sqlite_tagged_runs(conn, experiment_id, runs.TAG_TYPE, "analysis")
        for info, _ in found:
            artifacts.remember_artifact_uri(self.tracking_uri, info["run_id"],
                                            info["artifact_uri"])
        return [runs.stored_run(info, tags) for info, tags in found]

    def _analysis_doc(self, run) -> dict[str, Any] | None:
        return journal.read_snapshot(self._reader, run.info.run_id,
                                     journal.snapshot_path("analysis", None))

    def _hypothesis_doc(self, run_id: str, hypothesis_id: str) -> tuple[dict[str, Any], Hypothesis]:
        """The stored file and the hypothesis it holds (the run is already checked)."""
        doc = journal.read_snapshot(self._reader, run_id,
                                    journal.snapshot_path("hypothesis", hypothesis_id))
        if doc is None:
            raise NotFoundError(f"Hypothesis '{hypothesis_id}' not found in run '{run_id}'")
        return doc, _hypothesis_model(doc, run_id, hypothesis_id,
                                      _where("hypothesis", hypothesis_id, run_id))

    # ------------------------------------------------------------------ preview

    def preview_hypotheses(self, insights_run_id: str, max_traces: int = 100) -> list[Trace]:
        """The MLflow traces cited by the run's hypotheses, at most ``max_traces``."""
        ids = [t for h in self.list_hypotheses(insights_run_id) for t in h.trace_ids]
        return self.get_traces(ids, max_traces)

    def preview_issues(self, experiment_id: str | None = None, max_traces: int = 100) -> list[Trace]:
        """The MLflow traces cited by the experiment's issues, most-cited issues first."""
        ids = [t for i in self.list_issues(experiment_id) for t in i.trace_ids]
        return self.get_traces(ids, max_traces)

    def get_traces(self, trace_ids: Iterable[str], max_traces: int = 100) -> list[Trace]:
        """Fetch traces in batches, keeping order; traces the store no longer has are skipped."""
        if isinstance(max_traces, bool) or not isinstance(max_traces, int) or max_traces < 1:
            raise InvalidInputError("max_traces must be a positive integer")
        wanted = list(dict.fromkeys(trace_ids))[:max_traces]
        from mlflow.tracing.client import TracingClient

        tracing = TracingClient(self.tracking_uri)
        found: dict[str, Trace] = {}
        for start in range(0, len(wanted), _TRACE_FETCH_BATCH):
            with store_errors("fetching traces"):
                batch = tracing.batch_get_traces(wanted[start:start + _TRACE_FETCH_BATCH])
            found.update({t.info.trace_id: t for t in batch})
        return [found[t] for t in wanted if t in found]

    # ------------------------------------------------------------------ links

    def link_traces(self, run_id: str, trace_ids: Sequence[str]) -> int:
        """Link traces to a run with MLflow's trace-to-run links, in batches MLflow accepts.

        Every trace must exist in the run's experiment (NotFoundError otherwise, nothing linked).
        """
        run_id = check_id(run_id, "run id")
        ids = list(dict.fromkeys(check_trace_id(t) for t in trace_ids))
        if ids:
            self.check_traces_exist(self._run_experiment(run_id), ids)
        return self._link(run_id, ids)

    def check_traces_exist(self, experiment_id: str, trace_ids: Sequence[str]) -> None:
        """Raise NotFoundError naming the cited traces that are not in the experiment.

        Evidence must point at real traces of the analysis's experiment; this runs before
        anything is written. Read from a local store's tables; elsewhere one trace search (no
        spans) per batch of ids.
        """
        wanted = list(dict.fromkeys(trace_ids))
        found = self._stored_traces(experiment_id, wanted)
        missing = (self._searched_missing(experiment_id, wanted) if found is None
                   else [t for t in wanted if t not in found])
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise NotFoundError(f"Trace(s) not found in experiment '{experiment_id}': "
                                f"{', '.join(missing[:3])}{more}")

    def _stored_traces(self, experiment_id: str, trace_ids: list[str]) -> set[str] | None:
        """Which traces are in the experiment, from a local store's tables; None elsewhere."""
        with self._local_store() as conn:
            if conn is None:
                return None
            return compat.sqlite_traces_in_experiment(conn, str(experiment_id), trace_ids)

    def _searched_missing(self, experiment_id: str, wanted: list[str]) -> list[str]:
        """The traces a search of the experiment does not find."""
        found: set[str] = set()
        for start in range(0, len(wanted), _EXIST_BATCH):
            batch = wanted[start:start + _EXIST_BATCH]
            quoted = ", ".join(f"'{t}'" for t in batch)  # ids passed check_trace_id: no quotes
            with store_errors("checking evidence traces"):
                page = self._client.search_traces(
                    locations=[experiment_id], include_spans=False, max_results=len(batch),
                    filter_string=f"trace.request_id IN ({quoted})")
            found.update(t.info.trace_id for t in page)
        return [t for t in wanted if t not in found]

    def _run_experiment(self, run_id: str) -> str:
        try:
            with store_errors("reading the run"):
                return self._client.get_run(run_id).info.experiment_id
        except NotFoundError:
            raise NotFoundError(f"Run '{run_id}' not found") from None

    def _link(self, run_id: str, ids: list[str]) -> int:
        """Link already checked traces to a run (each once: MLflow refuses a duplicate link)."""
        ids = list(dict.fromkeys(ids))
        local = self._local_db_path() if ids else None
        if local is not None:
            compat.sqlite_link_traces(local, run_id, ids)
            return len(ids)
        for start in range(0, len(ids), TRACE_LINK_BATCH):
            with store_errors("linking traces"):
                self._client.link_traces_to_run(ids[start:start + TRACE_LINK_BATCH], run_id)
        return len(ids)

    def linked_trace_ids(self, run_id: str, max_results: int = 1000) -> list[str]:
        """Ids of the traces linked to a run (what the analysis has examined)."""
        run = runs.get_analysis_run(self._client, check_id(run_id, "run id"))
        ids: list[str] = []
        token = None
        while len(ids) < max_results:
            with store_errors("searching traces"):
                page = self._client.search_traces(
                    locations=[run.info.experiment_id], run_id=run_id, include_spans=False,
                    max_results=min(_SEARCH_PAGE, max_results - len(ids)), page_token=token,
                )
            ids += [t.info.trace_id for t in page]
            token = page.token
            if not token:
                break
        return ids

    # ------------------------------------------------------------------ analytics

    def analytics_session(self, experiment_id: str | None = None) -> Any:
        """This client's ``AnalyticsSession`` for the experiment, opened on first use.

        One DuckDB connection per experiment, kept until ``close()``; each call through it
        checks the store's fingerprint and loads only what changed.
        """
        from insights.analytics import AnalyticsSession

        experiment_id = self._experiment(experiment_id)
        with self._sessions_lock:
            session = self._sessions.get(experiment_id)
            if session is None or session.closed:
                session = AnalyticsSession(self.tracking_uri, experiment_id)
                self._sessions[experiment_id] = session
            return session

    def refresh(self, experiment_id: str | None = None) -> None:
        """Bring the experiment's analytics cache up to date with the store now."""
        self.analytics_session(experiment_id).refresh()

    def create_baseline_census(
        self,
        insights_run_id: str,
        filter_string: str | None = None,
        start_time_ms: int | None = None,
        end_time_ms: int | None = None,
        progress: Any = None,
        exact: bool = False,
        *,
        engine: str | None = None,
        table: str | None = None,
        spark_remote: str | None = None,
        spark_master: str | None = None,
    ) -> Census:
        """Compute the census over the analysis's experiment and store it in the run.

        On a tracking server a whole-experiment census is aggregated by the server, with some
        sections estimated from a sample (listed under ``sample``); ``exact=True`` loads every
        trace instead. ``engine="spark"`` (or $INSIGHTS_ENGINE) computes the same sections on
        Spark, over the experiment exported to Parquet or over ``table``; the other engine
        options are those of ``execute_sql``.
        """
        from insights.analytics.spark_engine import resolve_engine

        run_id = check_id(insights_run_id, "run id")
        spark = resolve_engine(engine) == "spark"
        if not spark and (table or spark_remote or spark_master):
            raise InvalidInputError("--table, --spark-remote and --spark-master need --engine spark")
        run = runs.get_analysis_run(self._client, run_id)
        session = self.analytics_session(run.info.experiment_id)
        if spark:
            from insights.analytics.spark_census import spark_census

            census = spark_census(session, table=table, remote=spark_remote, master=spark_master,
                                  filter_string=filter_string, start_time_ms=start_time_ms,
                                  end_time_ms=end_time_ms, progress=progress)
        else:
            from insights.analytics import compute_census

            census = compute_census(session, filter_string=filter_string,
                                    start_time_ms=start_time_ms, end_time_ms=end_time_ms,
                                    progress=progress, exact=exact)
        census = census.model_copy(update={
            "experiment_id": run.info.experiment_id, "run_id": run_id, "computed_at": now_ms(),
            "filter_string": filter_string, "start_time_ms": start_time_ms,
            "end_time_ms": end_time_ms})
        text = json.dumps(census.model_dump(mode="json"), indent=1)
        with store_errors("writing the census"):
            self._client.log_text(run_id, text, CENSUS_PATH)
        return census

    def get_baseline_census(self, insights_run_id: str) -> Census:
        """The census stored in the analysis run (NotFoundError if none was computed)."""
        from insights.analytics.census_model import Census

        run_id = check_id(insights_run_id, "run id")
        self._analysis_artifact_uri(run_id)   # checks the run; on SQLite without MLflow's store
        text = artifacts.read_text(self._reader, run_id, CENSUS_PATH)
        if text is None:
            raise NotFoundError(f"No baseline census in run '{run_id}': run create-baseline-census")
        try:
            return Census.model_validate_json(text)
        except ValidationError as exc:
            raise StorageError(
                f"The census stored in run '{run_id}' is unreadable ({exc.error_count()} "
                "problem(s)): run create-baseline-census again") from exc

    def execute_sql(self, experiment_id: str | None = None, sql: str = "", *,
                    max_rows: int | None = 10_000, timeout: float | None = None,
                    max_memory: str | None = None, engine: str | None = None,
                    table: str | None = None, spark_remote: str | None = None,
                    spark_master: str | None = None) -> Any:
        """Run a read-only Spark SQL query over the experiment's ``traces`` table, within a
        time limit (seconds) and memory cap (e.g. "2GB"); see insights.analytics.sql.

        ``engine`` "duckdb" (default, or $INSIGHTS_ENGINE) or "spark": on Spark the query runs
        as written over the experiment exported to Parquet, or over ``table`` (a Parquet or
        Delta path or catalog table in the `traces` schema; then no experiment is needed),
        on ``spark_remote`` (sc://HOST:PORT), ``spark_master`` or a local Spark.
        """
        from insights.analytics.spark_engine import resolve_engine

        if resolve_engine(engine) == "spark":
            from insights.analytics.spark_engine import execute_sql_spark

            session = None
            if not table:
                experiment_id = self._experiment(experiment_id)
                self._check_experiment(experiment_id)
                session = self.analytics_session(experiment_id)
            return execute_sql_spark(sql, session=session, table=table, remote=spark_remote,
                                     master=spark_master, max_rows=max_rows, timeout=timeout)
        if table or spark_remote or spark_master:
            raise InvalidInputError("--table, --spark-remote and --spark-master need --engine spark")
        from insights.analytics import execute_sql

        experiment_id = self._experiment(experiment_id)
        self._check_experiment(experiment_id)
        return execute_sql(self.analytics_session(experiment_id), sql, max_rows,
                           timeout=timeout, max_memory=max_memory)

    def cohort_stats(self, experiment_id: str | None, cohort: str, control: str, outcome: str,
                     samples: int = 5, *, engine: str | None = None, table: str | None = None,
                     spark_remote: str | None = None,
                     spark_master: str | None = None) -> dict[str, Any]:
        """Compare an outcome's rate in a cohort and a control (each a SQL predicate); the
        engine options are those of ``execute_sql``."""
        from insights.analytics import cohort_stats
        from insights.analytics.spark_engine import resolve_engine

        spark = resolve_engine(engine) == "spark"
        if not (spark and table):  # an unknown or deleted experiment is refused, not counted
            experiment_id = self._experiment(experiment_id)
            self._check_experiment(experiment_id)
        if spark:
            session = None if table else self.analytics_session(experiment_id)
            return cohort_stats(session, cohort, control, outcome, samples, engine="spark",
                                spark={"table": table, "remote": spark_remote,
                                       "master": spark_master})
        if table or spark_remote or spark_master:
            raise InvalidInputError("--table, --spark-remote and --spark-master need --engine spark")
        session = self.analytics_session(experiment_id)
        return cohort_stats(session, cohort, control, outcome, samples, engine="duckdb")

    # ------------------------------------------------------------------ helpers

    def _experiment(self, experiment_id: str | None) -> str:
        experiment_id = experiment_id or os.environ.get("MLFLOW_EXPERIMENT_ID")
        if not experiment_id:
            raise InvalidInputError("No experiment id: pass experiment_id or set MLFLOW_EXPERIMENT_ID")
        return check_experiment_id(str(experiment_id))

    def _check_experiment(self, experiment_id: str) -> None:
        with self._local_store() as conn:
            local = conn is not None
            stage = compat.sqlite_experiment_stage(conn, experiment_id) if local else None
        if local:
            if stage is None:
                raise NotFoundError(f"Experiment '{experiment_id}' not found")
            if stage == "deleted":
                raise NotFoundError(f"Experiment '{experiment_id}' is deleted")
            return
        try:
            with store_errors("reading the experiment"):
                experiment = self._client.get_experiment(experiment_id)
        except NotFoundError:
            raise NotFoundError(f"Experiment '{experiment_id}' not found") from None
        if experiment.lifecycle_stage == "deleted":
            raise NotFoundError(f"Experiment '{experiment_id}' is deleted")

    def _locate_issue(self, issue_id: str, experiment_id: str | None
                      ) -> tuple[str, Issue, dict[str, Any]]:
        """(parent run id, issue, its stored file)."""
        experiment_id = experiment_id or os.environ.get("MLFLOW_EXPERIMENT_ID")
        path = journal.snapshot_path("issue", issue_id)
        for attempt in range(2):  # a parent merge in flight can hide an issue for a moment
            found = self._first_snapshot(self._candidate_parents(experiment_id), path)
            if found is not None:
                parent_id, doc = found
                return parent_id, _issue_model(doc, issue_id, f"{path} (run {parent_id})"), doc
            if attempt == 0:
                time.sleep(0.2)
        raise NotFoundError(f"Issue '{issue_id}' not found")

    def _first_snapshot(self, parents: list[str], path: str) -> tuple[str, dict] | None:
        """(parent id, file) of the first parent holding ``path``, in the given order.

        Why threads: an issue id alone may mean looking in every experiment's parent; on a
        tracking server each look is a round trip, so they are made side by side."""
        if len(parents) <= 2:
            for parent_id in parents:
                doc = journal.read_snapshot(self._reader, parent_id, path)
                if doc is not None:
                    return parent_id, doc
            return None
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(artifacts.REMOTE_READ_THREADS, len(parents))) as pool:
            futures = [pool.submit(journal.read_snapshot, self._reader, p, path) for p in parents]
            for parent_id, future in zip(parents, futures):   # in order, as one by one would
                doc = future.result()
                if doc is not None:
                    return parent_id, doc
        return None

    def _candidate_parents(self, experiment_id: str | None) -> list[str]:
        if experiment_id:
            experiment_id = check_experiment_id(str(experiment_id))
            self._check_experiment(experiment_id)
            parent = self._parent(experiment_id)
            return [parent[0]] if parent else []
        with self._local_store() as conn:  # every experiment's parents, from its tables
            found = (compat.sqlite_tagged_runs_everywhere(conn, runs.TAG_TYPE, "parent")
                     if conn is not None else None)
        if found is not None:
            for run_id, artifact_uri in found:
                artifacts.remember_artifact_uri(self.tracking_uri, run_id, artifact_uri)
            return [run_id for run_id, _ in found]
        from mlflow.entities import ViewType

        with store_errors("searching experiments"):
            experiments = self._client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
        ids = [e.experiment_id for e in experiments]
        if not ids:
            return []
        with store_errors("searching runs"):
            parents = self._client.search_runs(
                ids, filter_string=f"tags.`{runs.TAG_TYPE}` = 'parent'", max_results=1000
            )
        return [p.info.run_id for p in parents]

    def _sync_run_status(self, run_id: str, status: str | None) -> None:
        """Show the analysis state in MLflow's own run status too."""
        with store_errors("updating the run status"), contextlib.redirect_stdout(io.StringIO()):
            if status == AnalysisStatus.ACTIVE.value:
                self._client.update_run(run_id, status="RUNNING")
            else:
                self._client.set_terminated(run_id, status="FINISHED")

    def publish_issues(self, experiment_id: str | None = None,
                       issue_ids: Sequence[str] | None = None,
                       link_traces: int = 50) -> list[dict[str, Any]]:
        """Write the experiment's issues into MLflow's own Issues (``insights.publish``), so
        MLflow's UI shows them; publishing again updates instead of duplicating."""
        from insights.publish import publish_issues

        return publish_issues(self, experiment_id,
                              None if issue_ids is None else list(issue_ids), link_traces)

    def export_traces(self, experiment_id: str | None, out: str, progress: Any = None) -> Any:
        """Write the experiment's finished traces as Parquet under ``out`` in the `traces`
        table's schema, partitioned by day (``out/day=YYYY-MM-DD/``); a later call adds only
        traces not yet there. Returns an ``ExportResult`` (see insights.analytics.export)."""
        from insights.analytics.export import check_out_dir, export_traces

        check_out_dir(out)
        experiment_id = self._experiment(experiment_id)
        self._check_experiment(experiment_id)
        return export_traces(self.analytics_session(experiment_id), out, progress)


# ---------------------------------------------------------------------- module helpers


def _default_tracking_uri() -> str:
    """MLflow's tracking URI setting (``MLFLOW_TRACKING_URI`` or its default). MLflow is
    imported here, not at module level: a command on a local SQLite store whose URI is given
    may not need MLflow at all (its import alone takes seconds)."""
    import mlflow

    return mlflow.get_tracking_uri()


class _LazyMlflowClient:
    """Stands in for MLflow's client where reads of a local store may not need it: any use
    beyond ``tracking_uri`` creates it (``InsightsClient._client``)."""

    def __init__(self, owner: InsightsClient):
        self._owner = owner
        self.tracking_uri = owner.tracking_uri

    def __getattr__(self, name: str) -> Any:
        return getattr(self._owner._client, name)


def _where(kind: str, entity_id: str | None, run_id: str) -> str:
    return f"{journal.snapshot_path(kind, entity_id)} (run {run_id})"


def _file_id(path: str, prefix: str) -> str:
    """The id in ``insights/{prefix}{id}.yaml``: used when a hand-written file omits it."""
    return os.path.basename(path)[len(prefix):-len(".yaml")]


def _entity(model, doc: dict[str, Any], where: str, **defaults: Any):
    """Validate a stored file as ``model``; fields it leaves out come from ``defaults``.

    A file that does not hold a valid entity raises ``StorageError`` naming it: the file is
    at fault, not the caller.
    """
    data = journal.strip_marker(doc)
    for key, value in defaults.items():
        if data.get(key) in (None, ""):
            data[key] = value
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err.get("loc", ())) or "file"
        raise StorageError(f"{where} is not a valid {model.__name__.lower()}: "
                           f"{field}: {err.get('msg', 'invalid')}") from None


def _hypothesis_model(doc: dict[str, Any], run_id: str, hypothesis_id: str,
                      where: str) -> Hypothesis:
    return _entity(Hypothesis, doc, where, run_id=run_id, hypothesis_id=hypothesis_id)


def _issue_model(doc: dict[str, Any], issue_id: str, where: str) -> Issue:
    return _entity(Issue, doc, where, issue_id=issue_id)


def _analysis_model(run, doc: dict[str, Any]) -> Analysis:
    """An analysis from its file; what a spec-format file leaves out comes from the run."""
    tags = run.data.tags
    return _entity(
        Analysis, doc, _where("analysis", None, run.info.run_id),
        run_id=run.info.run_id, experiment_id=run.info.experiment_id,
        run_name=run.info.run_name or "",
        name=tags.get(runs.TAG_NAME) or run.info.run_name or run.info.run_id,
    )


def _read_entities(files: list, build) -> tuple[list, list[str]]:
    """Models from (path, mapping or StorageError) pairs; the unreadable ones as messages."""
    items, problems = [], []
    for path, doc in files:
        try:
            if isinstance(doc, StorageError):
                raise doc
            items.append(build(path, doc))
        except StorageError as exc:
            problems.append(str(exc))
    return items, problems


def _listing(items: list, problems: list[str]) -> Listing:
    for message in problems:
        warnings.warn(message, InsightsStorageWarning, stacklevel=3)
    return Listing(items, problems)


def parse_evidence(items: Sequence[EvidenceInput], supports: bool = True) -> list[EvidenceEntry]:
    """Validate evidence before anything is written.

    Accepts dicts (``trace_id``, ``rationale``, ``supports``), ``EvidenceEntry`` objects, or a
    ``"trace-id: rationale"`` string as the playbook's ``--add-evidence`` writes it.
    """
    if isinstance(items, (str, dict)):
        items = [items]
    entries = []
    for index, item in enumerate(items, 1):
        entries.append(_one_evidence(item, index, supports))
    return entries


def _one_evidence(item: EvidenceInput, index: int, supports: bool) -> EvidenceEntry:
    if isinstance(item, EvidenceEntry):
        data = item.to_dict()
    elif isinstance(item, str):
        trace_id, sep, rationale = item.partition(":")
        if not sep:
            raise InvalidInputError(
                f"Evidence #{index} must name a trace: use 'TRACE_ID: rationale' or a dict"
            )
        data = {"trace_id": trace_id.strip(), "rationale": rationale.strip(), "supports": supports}
    elif isinstance(item, dict):
        data = dict(item)
    else:
        raise InvalidInputError(f"Evidence #{index} must be an object, got {type(item).__name__}")
    if "trace_id" not in data:
        raise InvalidInputError(f"Evidence #{index} is missing 'trace_id'")
    if "supports" in data and not isinstance(data["supports"], bool):
        raise InvalidInputError(f"Evidence #{index}: 'supports' must be true or false")
    if "rationale" in data and not isinstance(data["rationale"], str):
        raise InvalidInputError(f"Evidence #{index}: 'rationale' must be a string")
    data["trace_id"] = check_trace_id(data["trace_id"])
    try:
        check_text(rationale=data.get("rationale"))
    except InvalidInputError as exc:
        raise InvalidInputError(f"Evidence #{index}: {exc}") from None
    try:
        return EvidenceEntry.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(f"Evidence #{index} is invalid: {exc.errors()[0]['msg']}") from None


def _is_note(item: Any) -> bool:
    """A plain sentence (the PRD's ``add_evidence=["Found 50ms delay..."]``), not
    ``"TRACE_ID: rationale"``: no colon, or words (not one token) before it. One token before
    a colon is meant as a trace id and is checked as one, so ``"../x: r"`` or ``": r"`` are
    refused instead of being kept as a sentence."""
    if not isinstance(item, str):
        return False
    head, sep, _ = item.partition(":")
    return not sep or len(head.split()) > 1


def _note_entries(notes: list[str], trace_ids: list[str]) -> list[EvidenceEntry]:
    """Each plain sentence becomes evidence on the traces this update adds (``add_traces``,
    else the other evidence given with it), or else on the hypothesis's traces. With no trace
    to attach it to, the error names the form that works."""
    if any(not note.strip() for note in notes):
        raise InvalidInputError("Evidence must not be empty: give 'TRACE_ID: rationale' or a dict")
    if notes and not trace_ids:
        raise InvalidInputError(
            f"Evidence {notes[0][:60]!r} names no trace and the hypothesis has none yet: pass "
            "add_traces too, or give {'trace_id': ..., 'rationale': ...} (CLI: --evidence JSON "
            "or --add-evidence 'TRACE_ID: rationale')")
    unique = list(dict.fromkeys(trace_ids))
    return [EvidenceEntry(trace_id=t, rationale=note.strip()) for note in notes for t in unique]


def _trace_only_entries(trace_ids: list[str], known: list[str]) -> list[EvidenceEntry]:
    """``add_traces`` cites traces without a rationale; skip ones already cited."""
    seen = set(known)
    out = []
    for trace_id in trace_ids:
        if trace_id not in seen:
            seen.add(trace_id)
            out.append(EvidenceEntry(trace_id=trace_id))
    return out


def _change(sets: dict[str, Any], evidence: list[EvidenceEntry] | None = None,
            **merges: dict[str, Any] | None) -> dict[str, Any]:
    change: dict[str, Any] = {}
    if sets:
        change["set"] = sets
    if evidence:
        change["add_evidence"] = [e.to_dict() for e in evidence]
    merge = {k: v for k, v in merges.items() if v}
    for key, value in merge.items():
        if not isinstance(value, dict):
            raise InvalidInputError(f"{key} must be a mapping")
    if merge:
        change["merge"] = merge
    return change


def _mapping(value: Any, what: str) -> None:
    if value is not None and not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a mapping, got {type(value).__name__}")


def _present(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _required_text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{what} must be a non-empty string")
    return value.strip()


def _enum(enum_cls, value: Any, what: str):
    if isinstance(value, enum_cls):
        return value
    text = str(value).strip().upper() if value is not None else ""
    try:
        return enum_cls(text)
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise InvalidInputError(f"Invalid {what} {value!r}: expected one of {allowed}") from None


def _analysis_from_run(run) -> Analysis:
    """Build an analysis from the tags mirrored on its run (no artifact read needed)."""
    tags = run.data.tags
    created = int(tags.get(runs.TAG_CREATED) or run.info.start_time or 0)
    return Analysis(
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        run_name=run.info.run_name or "",
        name=tags.get(runs.TAG_NAME, run.info.run_name or ""),
        description=tags.get("mlflow.note.content", ""),
        status=tags.get(runs.TAG_STATUS, "ACTIVE"),
        created_at=created,
        updated_at=int(tags.get(runs.TAG_UPDATED) or created),
        metadata=_json_object(tags.get(runs.TAG_METADATA)),
    )


def _json_object(text: str | None) -> dict[str, Any]:
    """A JSON object from a tag; {} when absent or not an object."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
