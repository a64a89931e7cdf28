"""Publish Insights issues into MLflow's own Issues, so MLflow's UI lists what the agent found.

MLflow 3.17's tracking store has a native issue entity (name, description, status, severity,
root causes, categories) and counts the traces linked to one by ``IssueReference`` assessments.
Our issues carry more (evidence, history, signatures), so publishing is one-way: each of ours
becomes, or updates, one native issue.

Publishing again never makes a twin. The native id is kept in our issue's
``metadata["mlflow_issue"]``, and every native description ends with a marker line
(``insights-issue-id: <id>``) that is searched for first, so a publish that crashed between
creating the native issue and recording its id, or a second publish started from another
checkout, finds the issue it made. (Two publishes of the same issue running at the very same
moment can still both create; MLflow has no way to delete the spare, so the oldest one wins from
then on.) MLflow can only change a native issue's name, description, status and severity
afterwards; root causes and categories are written once, at creation.

Traces are linked up to ``link_traces`` per issue: MLflow's count of an issue's traces is the
linked ones, so the description states our true count and each result says both.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from insights import compat
from insights.artifacts import store_errors
from insights.errors import InvalidInputError, NotFoundError
from insights.ids import check_id
from insights.models import Issue, IssueStatus, Severity, now_ms

MARKER = "insights-issue-id"
NAME_MAX = 250  # MLflow's issues.name column is VARCHAR(250)
SOURCE_ID = "insights-agent"
DEFAULT_LINK_TRACES = 50

# our status / severity -> MLflow's IssueStatus / IssueSeverity values
STATUS_MAP: dict[IssueStatus, str] = {
    IssueStatus.OPEN: "pending",
    IssueStatus.IN_PROGRESS: "pending",
    IssueStatus.RESOLVED: "resolved",
    IssueStatus.REJECTED: "rejected",
}
SEVERITY_MAP: dict[Severity, str] = {
    Severity.CRITICAL: "high",
    Severity.HIGH: "high",
    Severity.MEDIUM: "medium",
    Severity.LOW: "low",
}

_MARKER_LINE = re.compile(rf"{MARKER}: (\S+)\s*")


def publish_issues(client: Any, experiment_id: str | None = None,
                   issue_ids: list[str] | None = None,
                   link_traces: int = DEFAULT_LINK_TRACES) -> list[dict[str, Any]]:
    """Create or update one native MLflow issue per Insights issue of the experiment.

    ``issue_ids`` limits it to those issues (an unknown one fails before anything is written);
    without it every issue is published except REJECTED ones never published before (a
    rejection of something MLflow already shows is still published). Returns one dict per
    issue: issue_id, mlflow_issue_id, action (created/updated/unchanged), status,
    linked_traces (linked in MLflow now), new_links, trace_count (our true count), title.
    """
    experiment_id = client._experiment(experiment_id)   # MLFLOW_EXPERIMENT_ID when None
    wanted = _check_issue_ids(issue_ids)
    link_traces = _check_link_traces(link_traces)
    ours = client.list_issues(experiment_id)
    store = compat.native_issue_store(client.mlflow_client)
    with store_errors("searching MLflow's issues"):
        natives = compat.search_native_issues(store, experiment_id)
    index = NativeIndex(natives)
    issues = select_issues(list(ours), wanted, index, experiment_id)
    ui_url = _insights_ui_url(client.tracking_uri)
    return [_publish_one(client, store, issue, index, experiment_id, ui_url, link_traces)
            for issue in issues]


# ---------------------------------------------------------------------- input


def _check_issue_ids(issue_ids: Iterable[str] | None) -> list[str] | None:
    if issue_ids is None:
        return None
    if isinstance(issue_ids, str):
        raise InvalidInputError("issue_ids must be a list of issue ids, not one string")
    return list(dict.fromkeys(check_id(i, "issue id") for i in issue_ids))


def _check_link_traces(link_traces: Any) -> int:
    if isinstance(link_traces, bool) or not isinstance(link_traces, int) or link_traces < 0:
        raise InvalidInputError(f"link_traces must be a whole number >= 0, got {link_traces!r}")
    return link_traces


# ---------------------------------------------------------------------- which issues


class NativeIndex:
    """The experiment's native issues by id and by the Insights issue id their marker names."""

    def __init__(self, natives: Iterable[Any]):
        self.by_id: dict[str, Any] = {}
        self.by_marker: dict[str, Any] = {}
        # oldest first, so when a race did make twins the first one made is the one kept
        for native in sorted(natives, key=lambda n: (n.created_timestamp, n.issue_id)):
            self.by_id[native.issue_id] = native
            # only one we made: a hand-written description quoting a marker claims nothing
            ours = marker_of(native.description) if native.created_by == SOURCE_ID else None
            if ours:
                self.by_marker.setdefault(ours, native)

    def find(self, issue: Issue) -> Any | None:
        """The native issue published from ``issue``: the recorded id, else the marker."""
        recorded = _recorded(issue).get("id")
        return self.by_id.get(recorded) or self.by_marker.get(issue.issue_id)

    def remember(self, issue: Issue, native: Any) -> None:
        self.by_id[native.issue_id] = native
        self.by_marker[issue.issue_id] = native


def marker_of(description: str | None) -> str | None:
    """The Insights issue id named by the marker line that ends a native description, if any
    (``native_description`` always writes it last)."""
    lines = (description or "").rstrip().splitlines()
    found = _MARKER_LINE.fullmatch(lines[-1]) if lines else None
    return found.group(1) if found else None


def select_issues(ours: list[Issue], wanted: list[str] | None, index: NativeIndex,
                  experiment_id: str) -> list[Issue]:
    """The named issues (all must exist), else all but the never-published REJECTED ones:
    publishing a rejection is news only to a MLflow UI that already shows the issue."""
    if wanted is not None:
        by_id = {i.issue_id: i for i in ours}
        unknown = [i for i in wanted if i not in by_id]
        if unknown:
            raise NotFoundError(f"Issue(s) not found in experiment '{experiment_id}': "
                                + ", ".join(unknown))
        return [by_id[i] for i in wanted]
    return [i for i in ours
            if i.status != IssueStatus.REJECTED or index.find(i) is not None]


def _recorded(issue: Issue) -> dict[str, Any]:
    value = (issue.metadata or {}).get("mlflow_issue")
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------------- native fields


def native_name(title: str) -> str:
    """Our title, cut at a word to fit MLflow's 250 characters."""
    title = " ".join(title.split())
    if len(title) <= NAME_MAX:
        return title
    cut = title[:NAME_MAX - 1]
    if " " in cut[NAME_MAX // 2:]:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip() + "…"


def native_description(issue: Issue, experiment_id: str, ui_url: str | None) -> str:
    """Our description, the true trace count, and the way back to our issue.

    The last line is the marker publishing searches for; nothing here depends on how many
    traces a publish linked, so an unchanged issue leaves the native one unchanged.
    """
    parts = [issue.description.strip()] if issue.description.strip() else []
    facts = [f"Affected traces (MLflow Insights' count): {issue.trace_count}"]
    if issue.resolution:
        facts.append(f"Resolution: {' '.join(issue.resolution.split())}")
    if ui_url:
        facts.append(f"Insights issue: {ui_url}/#/issues/{issue.issue_id}?exp={experiment_id}")
    facts.append(f"{MARKER}: {issue.issue_id}")
    return "\n\n".join(parts + ["\n".join(facts)])


def root_causes(issue: Issue) -> list[str]:
    """What the finding said and the condition it was proven with, when the issue has them."""
    meta = issue.metadata or {}
    causes = []
    base = meta.get("base_description")
    statement = base if isinstance(base, str) and base.strip() else _first_paragraph(
        issue.description)
    if statement:
        causes.append(statement)
    signature = meta.get("signature") if isinstance(meta.get("signature"), dict) else {}
    where = signature.get("where") or meta.get("where")
    if isinstance(where, str) and where.strip():
        causes.append(f"Traces matching: {where.strip()}")
    return causes


def categories(issue: Issue) -> list[str]:
    signature = (issue.metadata or {}).get("signature")
    kind = signature.get("kind") if isinstance(signature, dict) else None
    return [SOURCE_ID] + ([str(kind)] if kind else [])


def _first_paragraph(text: str) -> str:
    return (text or "").strip().split("\n\n", 1)[0].strip()


def _desired(issue: Issue, experiment_id: str, ui_url: str | None) -> dict[str, Any]:
    from mlflow.entities import IssueSeverity as NativeSeverity
    from mlflow.entities import IssueStatus as NativeStatus

    return {"name": native_name(issue.title),
            "description": native_description(issue, experiment_id, ui_url),
            "status": NativeStatus(STATUS_MAP[IssueStatus(issue.status)]),
            "severity": NativeSeverity(SEVERITY_MAP[Severity(issue.severity)])}


def _changes(native: Any, desired: dict[str, Any]) -> dict[str, Any]:
    """The fields MLflow lets us update whose native value differs from ours."""
    return {k: v for k, v in desired.items() if getattr(native, k) != v}


def _insights_ui_url(tracking_uri: str | None) -> str | None:
    """The Insights UI beside the MLflow UI, when its address is known (as the server links)."""
    from insights.server.api import UI_PREFIX, default_ui_url

    base = default_ui_url(tracking_uri)
    return f"{base}{UI_PREFIX}" if base else None


# ---------------------------------------------------------------------- one issue


def _publish_one(client: Any, store: Any, issue: Issue, index: NativeIndex, experiment_id: str,
                 ui_url: str | None, link_traces: int) -> dict[str, Any]:
    desired = _desired(issue, experiment_id, ui_url)
    recorded = _recorded(issue)
    native = index.find(issue)
    if native is None:
        with store_errors("creating an MLflow issue"):
            native = compat.create_native_issue(
                store, experiment_id=experiment_id, root_causes=root_causes(issue) or None,
                source_run_id=issue.source_run_id or None, categories=categories(issue),
                created_by=SOURCE_ID, **desired)
        action, linked = "created", []
    else:
        changes = _changes(native, desired)
        if changes:
            with store_errors("updating an MLflow issue"):
                native = compat.update_native_issue(store, native.issue_id, **changes)
        action = "updated" if changes else "unchanged"
        linked = _already_linked(client, issue, native, recorded, link_traces)
    index.remember(issue, native)
    new_links = _link(client, issue, native, linked, link_traces)
    linked = linked + new_links
    if action == "unchanged" and new_links:
        action = "updated"
    if action != "unchanged" or recorded.get("id") != native.issue_id \
            or recorded.get("linked_traces") != linked:
        _record(client, issue, experiment_id, native, linked)
    return {"issue_id": issue.issue_id, "mlflow_issue_id": native.issue_id, "action": action,
            "status": str(native.status), "severity": str(native.severity or ""),
            "title": native.name, "linked_traces": len(linked), "new_links": len(new_links),
            "trace_count": issue.trace_count}


def _candidates(issue: Issue, link_traces: int) -> list[str]:
    """The traces to link: the issue's first supporting evidence traces, at most
    ``link_traces`` (MLflow reads each link as one assessment row)."""
    ids = dict.fromkeys(e.trace_id for e in issue.evidence if e.supports)
    return list(ids)[:link_traces]


def _already_linked(client: Any, issue: Issue, native: Any, recorded: dict[str, Any],
                    link_traces: int) -> list[str]:
    """Traces already linked to ``native``: our record when it is about this native issue,
    else (the record was lost) each candidate trace's own assessments."""
    if recorded.get("id") == native.issue_id and isinstance(recorded.get("linked_traces"), list):
        return [str(t) for t in recorded["linked_traces"]]
    linked = []
    for trace_id in _candidates(issue, link_traces):
        try:
            with store_errors("reading a trace"):
                trace = client.mlflow_client.get_trace(trace_id)
        except NotFoundError:
            continue
        if any(a.name == native.issue_id for a in trace.info.assessments or []):
            linked.append(trace_id)
    return linked


def _link(client: Any, issue: Issue, native: Any, linked: list[str],
          link_traces: int) -> list[str]:
    """Link the candidate traces not yet linked; a trace that no longer exists is skipped."""
    from mlflow.entities import AssessmentSource, IssueReference

    rationale: dict[str, str] = {}
    for e in issue.evidence:
        rationale.setdefault(e.trace_id, e.rationale)
    done = set(linked)
    new = []
    for trace_id in _candidates(issue, link_traces):
        if trace_id in done:
            continue
        reference = IssueReference(
            issue_id=native.issue_id, issue_name=native.name, trace_id=trace_id,
            source=AssessmentSource(source_type="CODE", source_id=SOURCE_ID),
            rationale=rationale.get(trace_id) or None,
            metadata={"insights.issue_id": issue.issue_id})
        try:
            with store_errors("linking a trace to an MLflow issue"):
                compat.log_trace_assessment(client.mlflow_client, trace_id, reference)
        except NotFoundError:
            continue
        new.append(trace_id)
    return new


def _record(client: Any, issue: Issue, experiment_id: str, native: Any,
            linked: list[str]) -> None:
    """Keep the native id and linked traces on our issue, for the next publish."""
    client.update_issue(issue_id=issue.issue_id, experiment_id=experiment_id, metadata={
        "mlflow_issue": {"id": native.issue_id, "experiment_id": experiment_id,
                         "published_at": now_ms(), "linked_traces": linked}})
