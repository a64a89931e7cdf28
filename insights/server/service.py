"""What the endpoints do, over ``InsightsClient`` only: shaping entities for JSON, paging trace
previews, the span tree of one trace, logging an issue's assessments.

Everything read or written goes through the SDK (``InsightsClient`` and the ``MlflowClient`` it
exposes); nothing here touches artifact files directly.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

from insights.artifacts import store_errors
from insights.client import InsightsClient, Listing
from insights.errors import InsightsError, InvalidInputError, NotFoundError
from insights.models import (
    SEVERITY_RANK,
    Analysis,
    EvidenceEntry,
    Hypothesis,
    HypothesisStatus,
    Issue,
    IssueStatus,
    Severity,
)

_STATUS_RANK = {IssueStatus.OPEN: 0, IssueStatus.IN_PROGRESS: 1, IssueStatus.RESOLVED: 2,
                IssueStatus.REJECTED: 3}
_COUNT_WORKERS = 8


# ---------------------------------------------------------------------- shaping


def hypothesis_json(h: Hypothesis) -> dict[str, Any]:
    return {
        **h.to_dict(),
        "trace_count": len(h.trace_ids),
        "evidence_count": len(h.evidence),
        "supports_count": h.supports_count,
        "refutes_count": h.refutes_count,
    }


def issue_json(i: Issue, run_names: dict[str, str] | None = None) -> dict[str, Any]:
    out = {**i.to_dict(), "trace_count": i.trace_count, "evidence_count": len(i.evidence)}
    if run_names is not None:
        out["source_run_name"] = run_names.get(i.source_run_id)
    return out


def analysis_json(a: Analysis, hypotheses: list[Hypothesis] | None) -> dict[str, Any]:
    out = a.to_dict()
    if hypotheses is not None:
        statuses = [h.status for h in hypotheses]
        out.update(
            hypothesis_count=len(hypotheses),
            validated_count=statuses.count(HypothesisStatus.VALIDATED),
            rejected_count=statuses.count(HypothesisStatus.REJECTED),
            testing_count=statuses.count(HypothesisStatus.TESTING),
            evidence_count=sum(len(h.evidence) for h in hypotheses),
            last_activity_at=max([a.updated_at] + [h.updated_at for h in hypotheses]),
        )
    return out


# ---------------------------------------------------------------------- analyses


def list_analyses(client: InsightsClient, experiment_id: str, page_token: str | None = None,
                  max_results: int | None = None) -> Listing:
    """Every analysis (or one page of them) with its hypothesis counts (one folder read per
    analysis, in parallel). The Listing also carries ``total_count`` and ``next_page_token``.

    ``warnings`` names every entity file read along the way that could not be read.
    """
    everything = client.list_analyses(experiment_id)
    chunk, next_token, _ = page(list(everything), page_token, None, max_results)
    analyses = Listing(chunk, everything.warnings)
    analyses.total_count, analyses.next_page_token = len(everything), next_token
    if not analyses:
        out = Listing([], analyses.warnings)
        out.total_count, out.next_page_token = len(everything), next_token
        return out
    with ThreadPoolExecutor(min(_COUNT_WORKERS, len(analyses))) as pool:
        hyps = list(pool.map(lambda a: _hypotheses_or_none(client, a.run_id), analyses))
    problems = analyses.warnings + [w for h in hyps for w in getattr(h, "warnings", [])]
    out = Listing([analysis_json(a, h) for a, h in zip(analyses, hyps)], problems)
    out.total_count, out.next_page_token = len(everything), next_token
    return out


def _hypotheses_or_none(client: InsightsClient, run_id: str) -> list[Hypothesis] | None:
    try:
        return client.list_hypotheses(run_id)
    except NotFoundError:  # deleted between the search and the read
        return None


def get_analysis(client: InsightsClient, run_id: str) -> dict[str, Any]:
    analysis = client.get_analysis(run_id)
    out = analysis_json(analysis, client.list_hypotheses(run_id))
    out["traces_examined"] = traces_examined(client, analysis)
    return out


_EXAMINED: dict[tuple[str, str], int] = {}  # (store, run id) -> the census's total, once found


def traces_examined(client: InsightsClient, analysis: Analysis) -> int | None:
    """How many traces the analysis examined: ``metadata["traces_examined"]`` if it says, else
    the total of its baseline census (read once per run and remembered); None before either."""
    meta = analysis.metadata or {}
    for key in ("traces_examined", "total_traces"):
        value = meta.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    key = (str(client.tracking_uri), analysis.run_id)
    if key not in _EXAMINED:
        if len(_EXAMINED) > 10_000:
            _EXAMINED.clear()
        try:
            _EXAMINED[key] = int(client.get_baseline_census(analysis.run_id).total_traces)
        except InsightsError:   # no census yet (or unreadable): nothing to say
            return None
    return _EXAMINED[key]


def run_names(client: InsightsClient, experiment_id: str | None) -> dict[str, str]:
    if not experiment_id:
        return {}
    return {a.run_id: a.run_name or a.name for a in client.list_analyses(experiment_id)}


# ---------------------------------------------------------------------- issues


def sort_and_filter_issues(issues: list[Issue], body) -> list[Issue]:
    if body.severity:
        keep = set(body.severity)
        issues = [i for i in issues if i.severity in keep]
    if body.status:
        keep_status = set(body.status)
        issues = [i for i in issues if i.status in keep_status]
    if body.created_after is not None:
        issues = [i for i in issues if i.created_at >= body.created_after]
    if body.created_before is not None:
        issues = [i for i in issues if i.created_at < body.created_before]
    keys = {
        "trace_count": (lambda i: i.trace_count, "desc"),
        "created_at": (lambda i: i.created_at, "desc"),
        "updated_at": (lambda i: i.updated_at, "desc"),
        "severity": (lambda i: SEVERITY_RANK[Severity(i.severity)], "asc"),
        "status": (lambda i: _STATUS_RANK[IssueStatus(i.status)], "asc"),
        "title": (lambda i: i.title.lower(), "asc"),
    }
    key, default_order = keys[body.sort_by]
    order = body.order or default_order
    # Ties keep the SDK's order (most traces, newest first), whatever the direction.
    indexed = list(enumerate(issues))
    indexed.sort(key=lambda p: p[0])
    indexed.sort(key=lambda p: key(p[1]), reverse=(order == "desc"))
    return [i for _, i in indexed]


def bulk_update_issues(client: InsightsClient, experiment_id: str, issue_ids: list[str],
                       status: IssueStatus | None, severity: Severity | None,
                       by: str | None = None) -> list[dict[str, Any]]:
    """Set status and/or severity on several issues. Every id is checked before anything is
    written (an unknown one: NotFoundError, nothing changed); an issue already so is left alone.
    One result per distinct id, in the order given."""
    if status is None and severity is None:
        raise InvalidInputError("Nothing to change: pass status and/or severity")
    ids = list(dict.fromkeys(issue_ids))
    known = {i.issue_id: i for i in client.list_issues(experiment_id)}
    missing = [i for i in ids if i not in known]
    if missing:
        shown = ", ".join(repr(m[:40]) for m in missing[:5]) + (" …" if len(missing) > 5 else "")
        raise NotFoundError(f"{len(missing)} issue id(s) not found in experiment "
                            f"'{experiment_id}': {shown}; nothing was changed")
    results = []
    for iid in ids:
        cur = known[iid]
        new_status = status if status is not None and status != cur.status else None
        new_severity = severity if severity is not None and severity != cur.severity else None
        row: dict[str, Any] = {"issue_id": iid, "ok": True,
                               "changed": bool(new_status or new_severity)}
        if row["changed"]:
            try:
                cur = client.update_issue(issue_id=iid, experiment_id=experiment_id,
                                          status=new_status, severity=new_severity, changed_by=by)
            except InsightsError as exc:  # a store failure midway: say which ones landed
                row.update(ok=False, changed=False, error_code=exc.error_code, message=str(exc))
        row.update(status=_value(cur.status), severity=_value(cur.severity))
        results.append(row)
    return results


def review_issue(client: InsightsClient, issue_id: str, experiment_id: str | None, decision: str,
                 reason: str | None, by: str | None = None) -> Issue:
    """Accept or reject an issue in one step.

    The PRD's statuses are OPEN / IN_PROGRESS / RESOLVED / REJECTED, with no "accepted": accept
    keeps the issue's status (a REJECTED issue is OPEN again) and marks it reviewed,
    ``metadata.review = "accepted"``, as the analysis workflow's review step does (so rechecks
    of OPEN issues go on); reject sets REJECTED and ``metadata.review = "rejected"``. Either is
    one ``accepted`` / ``rejected`` entry in the issue's history (with the status change)."""
    from insights.models import now_ms

    issue = client.get_issue(issue_id, experiment_id)
    before = _value(issue.status)
    if decision == "reject":
        after = IssueStatus.REJECTED.value
    else:
        after = IssueStatus.OPEN.value if before == IssueStatus.REJECTED.value else before
    entry: dict[str, Any] = {"at": now_ms(), "run_id": None, "event": f"{decision}ed",
                             "from": before, "to": after}
    if by:
        entry["by"] = by
    if reason:
        entry["reason"] = reason
    history = [h for h in (issue.metadata or {}).get("history") or [] if isinstance(h, dict)]
    return client.update_issue(
        issue_id=issue.issue_id, experiment_id=experiment_id,
        status=after if after != before else None,
        metadata={"review": f"{decision}ed", "reviewed_at": entry["at"],
                  **({"reviewed_by": by} if by else {}), "history": history + [entry]})


def _value(x: Any) -> Any:
    return getattr(x, "value", x)


def page(items: list[Any], page_token: str | None, offset: int | None, size: int | None
         ) -> tuple[list[Any], str | None, int]:
    start = _offset(page_token, offset)
    if size is None:
        return items[start:], None, start
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None), start


def _offset(page_token: str | None, offset: int | None) -> int:
    if page_token in (None, ""):
        return offset or 0
    if not (page_token.isascii() and page_token.isdigit()) or len(page_token) > 18:  # an offset, never a huge number
        raise InvalidInputError(f"Invalid page_token {page_token[:40]!r}: use next_page_token "
                                "from a previous response")
    return int(page_token)


# ---------------------------------------------------------------------- previews


def cited_traces(sources: Iterable[tuple[str, list[EvidenceEntry]]]) -> dict[str, list[dict]]:
    """trace id -> the evidence entries citing it, in citation order."""
    cited: dict[str, list[dict]] = {}
    for source_id, entries in sources:
        for e in entries:
            cited.setdefault(e.trace_id, []).append(
                {"source_id": source_id, "rationale": e.rationale, "supports": e.supports})
    return cited


def preview(client: InsightsClient, cited: dict[str, list[dict]], body) -> dict[str, Any]:
    ids = list(cited)
    chunk, next_token, _ = page(ids, body.page_token, body.offset, body.max_traces)
    found = {t.info.trace_id: t for t in client.get_traces(chunk, max_traces=max(len(chunk), 1))} \
        if chunk else {}
    traces = [trace_row(found.get(tid), tid, cited[tid]) for tid in chunk]
    return {"traces": traces, "total_count": len(ids), "returned_count": len(traces),
            "next_page_token": next_token}


def trace_row(trace, trace_id: str, evidence: list[dict]) -> dict[str, Any]:
    rationale = next((e["rationale"] for e in evidence if e["rationale"]), "")
    row: dict[str, Any] = {"trace_id": trace_id, "evidence_rationale": rationale,
                           "evidence": evidence, "found": trace is not None}
    if trace is None:
        row.update(request_id=None, status=None, execution_time_ms=None, timestamp=None)
        return row
    info = trace.info
    row.update(
        request_id=getattr(info, "client_request_id", None) or info.trace_id,
        status=_state(info),
        execution_time_ms=info.execution_duration,
        timestamp=info.request_time,
        request_preview=_clip(getattr(info, "request_preview", None), 300),
        response_preview=_clip(getattr(info, "response_preview", None), 300),
    )
    return row


def _state(info) -> str | None:
    state = getattr(info, "state", None) or getattr(info, "status", None)
    return getattr(state, "value", None) or (str(state) if state is not None else None)


def _clip(value: Any, limit: int) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        try:
            value = json.dumps(value, default=str)
        except (TypeError, ValueError):
            value = str(value)
    return value if len(value) <= limit else value[:limit] + f"… ({len(value) - limit} more chars)"


# ---------------------------------------------------------------------- one trace


def span_tree(client: InsightsClient, trace_id: str, max_chars: int) -> dict[str, Any]:
    """The spans of one trace, depth-first in start order, each with its depth."""
    traces = client.get_traces([trace_id], max_traces=1)
    if not traces:
        raise NotFoundError(f"Trace '{trace_id}' not found")
    trace = traces[0]
    spans = list(trace.data.spans)
    t0 = min((s.start_time_ns for s in spans if s.start_time_ns), default=0)
    ids = {s.span_id for s in spans}
    children: dict[str | None, list] = {}
    for s in spans:
        parent = s.parent_id if s.parent_id in ids else None
        children.setdefault(parent, []).append(s)
    out: list[dict[str, Any]] = []

    def walk(parent: str | None, depth: int) -> None:
        for s in sorted(children.get(parent, []), key=lambda x: (x.start_time_ns or 0, x.span_id)):
            out.append(_span_json(s, depth, t0, max_chars))
            walk(s.span_id, depth + 1)

    walk(None, 0)
    row = trace_row(trace, trace.info.trace_id, [])
    row.pop("evidence"), row.pop("evidence_rationale")
    return {"trace": row, "experiment_id": _trace_experiment(trace.info), "spans": out,
            "span_count": len(out)}


def _trace_experiment(info) -> str | None:
    location = getattr(info, "trace_location", None)
    exp = getattr(getattr(location, "mlflow_experiment", None), "experiment_id", None)
    return exp or getattr(info, "experiment_id", None)


def _span_json(s, depth: int, t0: int, max_chars: int) -> dict[str, Any]:
    status = getattr(s, "status", None)
    code = getattr(getattr(status, "status_code", None), "value", None) or (
        str(status.status_code) if status is not None else None)
    start, end = s.start_time_ns or 0, s.end_time_ns
    errors = [ev.attributes.get("exception.message") for ev in (s.events or [])
              if ev.name == "exception"]
    return {
        "span_id": s.span_id,
        "parent_id": s.parent_id,
        "depth": depth,
        "name": s.name,
        "span_type": s.span_type,
        "status": code,
        "status_message": getattr(status, "description", "") or "",
        "start_offset_ms": round((start - t0) / 1e6, 3) if start else None,
        "duration_ms": round((end - start) / 1e6, 3) if end and start else None,
        "inputs": _clip(s.inputs, max_chars),
        "outputs": _clip(s.outputs, max_chars),
        "exceptions": [_clip(e, max_chars) for e in errors if e],
    }


# ---------------------------------------------------------------------- assessments


def log_issue_assessments(client: InsightsClient, issue: Issue, experiment_id: str | None,
                          name: str | None, source_id: str, force: bool) -> dict[str, Any]:
    """Log one feedback assessment per traced cited by the issue, then record it on the issue."""
    from mlflow.entities import AssessmentSource, Feedback
    from mlflow.tracing.client import TracingClient

    name = name or default_assessment_name(issue)
    if issue.metadata.get("assessments_logged") and not force:
        return {"issue": issue_json(issue), "assessment_name": name, "logged_count": 0,
                "already_logged": True, "failed": [], "assessment_ids": []}
    tracing = TracingClient(client.tracking_uri)
    rationale = {}
    for e in issue.evidence:
        rationale.setdefault(e.trace_id, e.rationale)
    logged, failed = [], []
    for trace_id in issue.trace_ids:
        feedback = Feedback(
            name=name, value=True,
            rationale=rationale.get(trace_id) or issue.title,
            source=AssessmentSource(source_type="HUMAN", source_id=source_id),
            metadata={"insights.issue_id": issue.issue_id, "insights.severity": str(
                issue.severity.value if hasattr(issue.severity, "value") else issue.severity)},
        )
        try:
            with store_errors("logging an assessment"):
                result = tracing.log_assessment(trace_id, feedback)
            logged.append({"trace_id": trace_id, "assessment_id": result.assessment_id})
        except NotFoundError as exc:
            failed.append({"trace_id": trace_id, "message": str(exc)})
    if not logged:  # nothing logged (no traces, or all failed): the issue is not marked
        return {"issue": issue_json(issue), "assessment_name": name, "logged_count": 0,
                "already_logged": False, "failed": failed, "assessment_ids": []}
    updated = client.update_issue(
        issue_id=issue.issue_id, experiment_id=experiment_id, add_assessments=[name],
        metadata={"assessments_logged": True, "assessment_name": name,
                  "assessment_count": len(logged)},
    )
    return {"issue": issue_json(updated), "assessment_name": name, "logged_count": len(logged),
            "already_logged": False, "failed": failed,
            "assessment_ids": [x["assessment_id"] for x in logged]}


def default_assessment_name(issue: Issue) -> str:
    slug = "".join(c if c.isalnum() else "_" for c in issue.title.lower()).strip("_")
    while "__" in slug:
        slug = slug.replace("__", "_")
    return f"insights_issue_{slug[:60] or issue.issue_id[:8]}"


# ---------------------------------------------------------------------- experiments


def list_experiments(client: InsightsClient, max_results: int) -> list[dict[str, Any]]:
    with store_errors("searching experiments"):
        experiments = client.mlflow_client.search_experiments(max_results=max_results)
    return [{"experiment_id": e.experiment_id, "name": e.name,
             "last_update_time": e.last_update_time} for e in experiments]
