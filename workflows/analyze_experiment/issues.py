"""Issues from findings: every affected trace listed, and one issue per set of traces.

A *finding* is what the workflow turns into an issue: a census draft (``IssueDraft``, whose
``where`` selects every trace it concerns) or a validated hypothesis (its plan's ``cohort AND
outcome``, over ALL traces, not only the held-out half it was tested on). An issue lists every
trace of the experiment matching its finding, up to ``MAX_ISSUE_TRACES``, in one Trace SQL
query: the cited examples first with their rationale, the rest with a short generic one. The
true count, even above the cap, is kept in ``metadata["trace_count"]`` (``Issue.trace_count``).

Before an issue is created, its trace set is compared with the issues already created in the
same analysis run, census and hypothesis issues alike. Two findings describing one set of traces
(``same_traces``: Jaccard >= ``MERGE_JACCARD``, or each set holding >= ``MERGE_CONTAINMENT`` of
the other) become one issue: the better-described finding gives the title and description (a
validated hypothesis names a condition, so it beats a census fact; among hypotheses the larger
rate ratio, then the smaller p-value), the evidence is the union of both trace sets, and the
other finding is kept in ``metadata["merged_findings"]`` and named in the description
("Also seen as: ..."). Every finding's ``key`` stays on the issue (``metadata.key`` or a merged
finding's key), so a node re-run after an interrupt or a crash writes nothing twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from agent.frame import quote
from agent.plans import Plan
from insights import journal, runs
from insights.errors import InvalidInputError
from insights.models import Issue, Severity, check_text, new_id

MAX_ISSUE_TRACES = 10_000
# Two findings describe one set of traces when |A & B| / |A | B| >= MERGE_JACCARD, or when
# |A & B| >= MERGE_CONTAINMENT * |A| and >= MERGE_CONTAINMENT * |B| (each holds most of the
# other). A small finding lying inside a big one is not merged: it names a narrower problem.
MERGE_JACCARD = 0.7
MERGE_CONTAINMENT = 0.8
ALSO_SEEN = "Also seen as: "
_RANK = {"CRITICAL": 0, "HIGH": 1, "MEDIUM": 2, "LOW": 3}


def severity_for(affected: int, total: int) -> str:
    """Severity by the share of the experiment's traces affected (the true count)."""
    share = affected / max(total, 1)
    return "CRITICAL" if share >= 0.25 else "HIGH" if share >= 0.05 else "MEDIUM" if share >= 0.01 else "LOW"


@dataclass
class Finding:
    """One census fact or validated hypothesis, with every trace it concerns."""

    key: str
    title: str
    description: str                       # without the impact line and "Also seen as"
    source: str                            # "census" or "hypothesis"
    cited: list[dict[str, Any]]            # evidence entries keeping their own rationale
    rationale: str = ""                    # for the listed traces that are not cited
    where: str | None = None               # SQL predicate of every trace, when known
    severity: str | None = None            # a census rule's own; None: by affected share
    hypothesis_id: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    trace_ids: list[str] = field(default_factory=list)   # listed: cited first, <= the cap
    trace_count: int = 0                   # true count, even above the cap

    def ref(self) -> dict[str, Any]:
        """How the issue remembers this finding once another one gives its title."""
        return {"title": self.title, "key": self.key, "source": self.source}

    def strength(self) -> tuple[int, float, float]:
        return _strength(self.source, self.metrics)


def _strength(source: str, metrics: dict[str, Any]) -> tuple[int, float, float]:
    """Higher is the better description: a hypothesis over a census fact, then the larger
    rate ratio, then the smaller p-value."""
    if source != "hypothesis":
        return (0, 0.0, 0.0)
    ratio = _number(metrics.get("relative_risk"), 0.0)
    p_value = _number(metrics.get("p_value"), 1.0)
    return (1, ratio, -p_value)


def _number(value: Any, default: float) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(out) else out


# ---------------------------------------------------------------------- findings


def census_finding(draft, toolkit) -> Finding:
    """A census draft with all its traces (only the cited ones when it has no ``where``)."""
    finding = Finding(
        key=draft.key, title=draft.title, description=draft.description, source="census",
        cited=[e.model_dump() for e in draft.evidence], rationale="matches the census finding",
        where=draft.where, severity=draft.severity, metrics=dict(draft.metrics))
    return with_traces(finding, toolkit)


def hypothesis_finding(h, toolkit) -> Finding:
    """A validated hypothesis with every trace of its cohort showing its outcome (all data).

    Its supporting evidence is cited first; refuting evidence stays out of the issue. Without a
    plan, the supporting evidence is all there is."""
    meta = h.metadata or {}
    raw = meta.get("plan")
    plan = Plan.model_validate(raw) if raw else None
    reason = meta.get("verdict_reason", "")
    finding = Finding(
        key=f"hypothesis:{h.hypothesis_id}",
        title=meta.get("issue_title") or h.statement[:80],
        description=f"{h.statement}. {reason}.", source="hypothesis",
        cited=[e.model_dump(include={"trace_id", "rationale", "supports"})
               for e in h.evidence if e.supports],
        rationale=f"in {plan.cohort_label} with {plan.outcome_label}" if plan else "",
        where=f"({plan.cohort}) AND ({plan.outcome})" if plan else None,
        hypothesis_id=h.hypothesis_id, metrics=dict(h.metrics or {}))
    return with_traces(finding, toolkit)


def with_traces(finding: Finding, toolkit) -> Finding:
    """Fill ``trace_ids`` and ``trace_count`` with one query: every trace matching ``where``,
    the cited ones first, at most MAX_ISSUE_TRACES listed, the true count beside them."""
    cited = list(dict.fromkeys(e["trace_id"] for e in finding.cited))
    if not finding.where:
        finding.trace_ids, finding.trace_count = cited, len(cited)
        return finding
    first = (f"CASE WHEN trace_id IN ({', '.join(quote(t) for t in cited)}) THEN 0 ELSE 1 END, "
             if cited else "")
    try:
        rows = toolkit.client.execute_sql(
            toolkit.experiment_id,
            f"SELECT trace_id, count(*) OVER () AS n FROM traces WHERE {finding.where} "
            f"ORDER BY {first}request_time_ms, trace_id LIMIT {MAX_ISSUE_TRACES}",
            max_rows=MAX_ISSUE_TRACES).rows
    except InvalidInputError as exc:   # a predicate Trace SQL refuses: keep the cited traces
        toolkit.progress(f"could not list every trace of '{finding.title}' ({exc}); "
                         "listing the cited ones")
        finding.where = None
        finding.trace_ids, finding.trace_count = cited, len(cited)
        return finding
    matched = [r[0] for r in rows]
    outside = [t for t in cited if t not in set(matched)]   # cited, yet not matching `where`
    finding.trace_ids = (outside + matched)[:MAX_ISSUE_TRACES]
    finding.trace_count = (int(rows[0][1]) if rows else 0) + len(outside)
    return finding


def evidence_entries(finding: Finding, skip: set[str] | None = None,
                     room: int = MAX_ISSUE_TRACES) -> list[dict[str, Any]]:
    """Evidence for the finding's listed traces not in ``skip``: the cited with their
    rationale, the rest with the generic one; at most ``room`` traces."""
    skip = set(skip or ())
    by_trace: dict[str, dict[str, Any]] = {}
    for e in finding.cited:
        by_trace.setdefault(e["trace_id"], e)
    out = []
    for trace_id in finding.trace_ids:
        if trace_id in skip:
            continue
        if len(out) >= room:
            break
        skip.add(trace_id)
        cited = by_trace.get(trace_id)
        out.append({"trace_id": trace_id, "supports": True,
                    "rationale": cited.get("rationale", "") if cited else finding.rationale})
    return out


# ---------------------------------------------------------------------- overlap


def overlap(a: set[str], b: set[str]) -> tuple[float, float, float]:
    """(Jaccard, share of ``a`` in ``b``, share of ``b`` in ``a``)."""
    if not a or not b:
        return 0.0, 0.0, 0.0
    both = len(a & b)
    return both / len(a | b), both / len(a), both / len(b)


def same_traces(a: set[str], b: set[str]) -> bool:
    """The merge rule: the two sets describe one set of traces."""
    jaccard, a_in_b, b_in_a = overlap(a, b)
    return jaccard >= MERGE_JACCARD or min(a_in_b, b_in_a) >= MERGE_CONTAINMENT


# ---------------------------------------------------------------------- writing


@dataclass
class _Known:
    """What the writer knows of an issue of this run (kept up to date as it writes)."""

    issue_id: str
    title: str
    severity: str
    hypothesis_id: str | None
    metadata: dict[str, Any]
    trace_ids: list[str]
    description: str = ""

    @classmethod
    def of(cls, issue: Issue) -> "_Known":
        return cls(issue.issue_id, issue.title, Severity(issue.severity).value,
                   issue.hypothesis_id, dict(issue.metadata or {}), list(issue.trace_ids),
                   issue.description)

    @property
    def base_description(self) -> str:
        return (self.metadata.get("base_description")
                or self.description.split("\n\n" + ALSO_SEEN)[0])

    @property
    def keys(self) -> set[str]:
        merged = self.metadata.get("merged_findings") or []
        return {self.metadata.get("key")} | {m.get("key") for m in merged if isinstance(m, dict)}

    @property
    def trace_count(self) -> int:
        return int(self.metadata.get("trace_count") or len(self.trace_ids))


class IssueWriter:
    """Writes findings as issues of one analysis run: all their traces, merged by trace set."""

    def __init__(self, client, toolkit, run_id: str, experiment_id: str,
                 say: Callable[..., None] = lambda *_a, **_k: None):
        self.client, self.toolkit = client, toolkit
        self.run_id, self.experiment_id, self.say = run_id, experiment_id, say
        self.total = toolkit.count()
        self.issues = [_Known.of(i) for i in client.list_issues(experiment_id)
                       if i.source_run_id == run_id]

    def known(self, key: str) -> bool:
        return any(key in i.keys for i in self.issues)

    def has_hypothesis(self, hypothesis_id: str) -> bool:
        """Already an issue of this run (written by the workflow, or by a person in the UI)."""
        return self.known(f"hypothesis:{hypothesis_id}") or any(
            hypothesis_id in (i.hypothesis_id, i.metadata.get("hypothesis_id")) for i in self.issues)

    def record(self, finding: Finding) -> str | None:
        """Create the finding's issue, or merge it into the run's issue over the same traces;
        return the issue id (None when the finding was already written)."""
        if self.known(finding.key):
            return None
        ids = set(finding.trace_ids)
        matches = [(overlap(ids, set(i.trace_ids))[0], i) for i in self.issues
                   if same_traces(ids, set(i.trace_ids))]
        if matches:
            return self._merge(max(matches, key=lambda m: m[0])[1], finding)
        return self._create(finding)

    def _create(self, finding: Finding) -> str:
        count = finding.trace_count
        severity = finding.severity or severity_for(count, self.total)
        metadata = {"key": finding.key, "source": finding.source, "metrics": finding.metrics,
                    "trace_count": count, "affected_traces": count,
                    "base_description": finding.description}
        if finding.where:
            metadata["where"] = finding.where
        if finding.hypothesis_id:
            metadata["hypothesis_id"] = finding.hypothesis_id
        description = compose(finding.description, finding.source, count, self.total, [])
        evidence = evidence_entries(finding)
        issue_id = create_listed_issue(
            self.client, self.run_id, self.experiment_id, finding.title, description, severity,
            finding.hypothesis_id, evidence, {e["trace_id"] for e in finding.cited}, metadata)
        self.issues.append(_Known(issue_id, finding.title, severity, finding.hypothesis_id,
                                  metadata, [e["trace_id"] for e in evidence], description))
        self.say(f"issue from {finding.source}: [{severity}] {finding.title} "
                 f"({count} traces)", issue_id=issue_id)
        return issue_id

    def _merge(self, into: _Known, finding: Finding) -> str:
        meta = into.metadata
        merged = list(meta.get("merged_findings") or [])
        mine = {"title": into.title, "key": meta.get("key"), "source": meta.get("source", "census")}
        takes_over = finding.strength() > _strength(mine["source"], meta.get("metrics") or {})
        count = self._union_count(into, finding)
        change: dict[str, Any] = {"trace_count": count, "affected_traces": count}
        if takes_over:
            merged.append(mine)
            title, base, source = finding.title, finding.description, finding.source
            change.update(key=finding.key, source=finding.source, metrics=finding.metrics,
                          base_description=finding.description)
            if finding.hypothesis_id:
                change["hypothesis_id"] = finding.hypothesis_id
        else:
            merged.append(finding.ref())
            title, base, source = into.title, into.base_description, mine["source"]
        change["merged_findings"] = merged
        if meta.get("where") and finding.where:
            change["where"] = f"({meta['where']}) OR ({finding.where})"
        severity = min(
            [into.severity, finding.severity or severity_for(count, self.total)]
            + ([severity_for(count, self.total)] if source == "hypothesis" else []),
            key=lambda s: _RANK[s])
        description = compose(base, source, count, self.total, [m["title"] for m in merged])
        room = max(MAX_ISSUE_TRACES - len(into.trace_ids), 0)
        added = evidence_entries(finding, skip=set(into.trace_ids), room=room)
        updated = self.client.update_issue(
            self.run_id, into.issue_id, title=title if title != into.title else None,
            description=description, severity=severity, add_evidence=added or None,
            metadata=change)
        into.title, into.severity = updated.title, Severity(updated.severity).value
        into.metadata, into.trace_ids = dict(updated.metadata or {}), list(updated.trace_ids)
        into.description = updated.description
        other = mine["title"] if takes_over else finding.title
        self.say(f"issue merged: [{severity}] {title} (also seen as: {other}; {count} traces)",
                 issue_id=into.issue_id)
        return into.issue_id

    def _union_count(self, into: _Known, finding: Finding) -> int:
        """True size of the union: counted by SQL when a side is over the cap and both have
        predicates, else the union of the listed traces."""
        listed = len(set(into.trace_ids) | set(finding.trace_ids))
        capped = into.trace_count > len(into.trace_ids) or finding.trace_count > len(finding.trace_ids)
        where = into.metadata.get("where")
        if capped and where and finding.where:
            return self.toolkit.count(f"({where}) OR ({finding.where})")
        return max(listed, into.trace_count, finding.trace_count)


def compose(base: str, source: str, count: int, total: int, also: list[str]) -> str:
    """An issue's description: the finding's text, its impact (hypotheses, and any merged
    issue, whose count is the union's), and the findings merged into it."""
    text = base.strip()
    if source == "hypothesis" or also:
        text += f" Impact: {count} of {total} traces ({count / max(total, 1):.1%})."
    if also:
        text += "\n\n" + ALSO_SEEN + "; ".join(also) + "."
    return text


def create_listed_issue(client, run_id: str, experiment_id: str, title: str, description: str,
                        severity: str, hypothesis_id: str | None, evidence: list[dict[str, Any]],
                        cited: set[str], metadata: dict[str, Any]) -> str:
    """``client.create_issue`` for an issue listing up to 10,000 traces, in one write.

    The cited traces are checked and linked to the run as ``create_issue`` does; the others
    come from a Trace SQL query over this experiment's traces, so they exist, and they are not
    linked. Through ``create_issue`` (one trace search per 100 ids to check, one link call per
    100 to link) a 10,000-trace issue took ~15 s to write; this way ~2 s.
    """
    check_text(title=title, description=description)
    if hypothesis_id is not None:
        client.get_hypothesis(run_id, hypothesis_id)
    issue = Issue(issue_id=new_id(), source_run_id=run_id, hypothesis_id=hypothesis_id,
                  title=title, description=description, severity=severity, evidence=evidence,
                  metadata=metadata)
    linked = [e.trace_id for e in issue.evidence if e.trace_id in cited]
    if linked:
        client.link_traces(run_id, linked)
    mlflow = client.mlflow_client
    parent_id = runs.get_or_create_parent(mlflow, experiment_id)
    journal.create(mlflow, parent_id, "issue", issue.issue_id, issue.to_dict())
    canonical = runs.get_or_create_parent(mlflow, experiment_id)
    if canonical != parent_id:   # the parent was merged away while we wrote: move the issue
        journal.copy_entity(mlflow, parent_id, canonical, "issue", issue.issue_id)
    return issue.issue_id
