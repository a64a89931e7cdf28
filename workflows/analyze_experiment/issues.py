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

Issues live across analyses (issue 12). Every issue keeps the executable definition it was
proven with, ``metadata["signature"]`` = {kind: "plan"|"census", key, where}: a plan's key is a
hash of its normalised ``cohort`` and ``outcome`` SQL (stable from run to run, unlike the
hypothesis id), a census draft's key is its draft key. A later run's finding whose signature key
is among an existing issue's ``signature_keys``, or whose traces are the same (``same_traces``)
as an existing issue's, of any run, updates that issue instead of copying it: new traces added,
``trace_count`` refreshed, the run appended to ``analyses``, ``last_seen`` set and a ``history``
entry ({at, run_id, key, event, numbers}) added. A RESOLVED issue seen again in traces newer
than its resolution is reopened as a regression; a REJECTED one only when its trace count
changed by at least ``REOPEN_CHANGE``. A history entry names the finding key and run, so the
keys a run has recorded are skipped when it is resumed.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from agent.frame import quote
from agent.plans import Plan
from insights import journal, runs
from insights.errors import InvalidInputError
from insights.models import Issue, IssueStatus, Severity, check_text, new_id, now_ms

MAX_ISSUE_TRACES = 10_000
# Two findings describe one set of traces when |A & B| / |A | B| >= MERGE_JACCARD, or when
# |A & B| >= MERGE_CONTAINMENT * |A| and >= MERGE_CONTAINMENT * |B| (each holds most of the
# other). A small finding lying inside a big one is not merged: it names a narrower problem.
MERGE_JACCARD = 0.7
MERGE_CONTAINMENT = 0.8
ALSO_SEEN = "Also seen as: "
# A REJECTED issue is proposed again only when its trace count changed by this share or more.
REOPEN_CHANGE = 0.5
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
    signature_key: str | None = None       # stable across runs: the plan's hash, the draft key

    @property
    def signature(self) -> dict[str, Any] | None:
        """The executable definition the finding was proven with, or None (no plan)."""
        if not self.signature_key:
            return None
        kind = "census" if self.source == "census" else "plan"
        return {"kind": kind, "key": self.signature_key, "where": self.where}

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
        where=draft.where, severity=draft.severity, metrics=dict(draft.metrics),
        signature_key=draft.key)
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
        hypothesis_id=h.hypothesis_id, metrics=dict(h.metrics or {}),
        signature_key=plan_key(plan) if plan else None)
    return with_traces(finding, toolkit)


def _normal_sql(sql: str) -> str:
    """Whitespace collapsed outside quoted literals, keywords and names lower-cased, the
    literals kept as written (their case matters)."""
    parts = re.split(r"('(?:[^']|'')*')", sql.strip())
    return "".join(p if i % 2 else re.sub(r"\s+", " ", p).lower() for i, p in enumerate(parts)).strip()


def plan_key(plan: Plan) -> str:
    """A plan's stable signature key: a hash of its normalised cohort and outcome SQL."""
    text = _normal_sql(plan.cohort) + "\n" + _normal_sql(plan.outcome)
    return "plan:" + hashlib.sha256(text.encode()).hexdigest()[:16]


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
    """What the writer knows of an issue of the experiment (kept up to date as it writes)."""

    issue_id: str
    title: str
    severity: str
    hypothesis_id: str | None
    metadata: dict[str, Any]
    trace_ids: list[str]
    description: str = ""
    source_run_id: str = ""
    status: str = "OPEN"
    created_at: int = 0
    updated_at: int = 0

    @classmethod
    def of(cls, issue: Issue) -> "_Known":
        return cls(issue.issue_id, issue.title, Severity(issue.severity).value,
                   issue.hypothesis_id, dict(issue.metadata or {}), list(issue.trace_ids),
                   issue.description, issue.source_run_id, IssueStatus(issue.status).value,
                   issue.created_at, issue.updated_at)

    def refresh(self, issue: Issue) -> None:
        fresh = _Known.of(issue)
        self.__dict__.update(fresh.__dict__)

    @property
    def base_description(self) -> str:
        return (self.metadata.get("base_description")
                or self.description.split("\n\n" + ALSO_SEEN)[0])

    @property
    def keys(self) -> set[str]:
        merged = self.metadata.get("merged_findings") or []
        return {self.metadata.get("key")} | {m.get("key") for m in merged if isinstance(m, dict)}

    def recorded(self, run_id: str) -> set[str]:
        """The finding keys ``run_id`` has written into this issue."""
        out = set(self.keys) if self.source_run_id == run_id else set()
        return out | {h.get("key") for h in self.history
                      if h.get("run_id") == run_id and h.get("key")}

    @property
    def history(self) -> list[dict[str, Any]]:
        return [h for h in self.metadata.get("history") or [] if isinstance(h, dict)]

    @property
    def signature_keys(self) -> set[str]:
        sig = self.metadata.get("signature") or {}
        keys = set(self.metadata.get("signature_keys") or [])
        return keys | ({sig["key"]} if isinstance(sig, dict) and sig.get("key") else set())

    @property
    def analyses(self) -> list[str]:
        return list(self.metadata.get("analyses") or [self.source_run_id])

    @property
    def trace_count(self) -> int:
        return int(self.metadata.get("trace_count") or len(self.trace_ids))


def issue_of_run(issue: Issue, run_id: str) -> bool:
    """The run created the issue or saw it again (``metadata["analyses"]``)."""
    return issue.seen_by(run_id)


def _or(a: str | None, b: str | None) -> str | None:
    """Either predicate; one already inside the other is not repeated."""
    if not a or not b:
        return None
    if a == b or f"({b})" in a:
        return a
    return f"({a}) OR ({b})"


class IssueWriter:
    """Writes findings as issues of one analysis run: all their traces, merged by trace set
    within the run, and into the experiment's issues of earlier runs by signature or traces."""

    def __init__(self, client, toolkit, run_id: str, experiment_id: str,
                 say: Callable[..., None] = lambda *_a, **_k: None):
        self.client, self.toolkit = client, toolkit
        self.run_id, self.experiment_id, self.say = run_id, experiment_id, say
        self.total = toolkit.count()
        self.issues = [_Known.of(i) for i in client.list_issues(experiment_id)]

    def known(self, key: str) -> bool:
        """This run has already written the finding (before an interrupt or a crash)."""
        return any(key in i.recorded(self.run_id) for i in self.issues)

    def has_hypothesis(self, hypothesis_id: str) -> bool:
        """Already an issue of this run (written by the workflow, or by a person in the UI)."""
        return self.known(f"hypothesis:{hypothesis_id}") or any(
            hypothesis_id in (i.hypothesis_id, i.metadata.get("hypothesis_id"))
            for i in self.issues if self.run_id in (i.source_run_id, *i.analyses))

    def match(self, finding: Finding) -> _Known | None:
        """The issue the finding describes: one with its signature key, else one over the same
        traces (the largest overlap), of this run or any earlier one."""
        ids = set(finding.trace_ids)
        if finding.signature_key:
            same_key = [i for i in self.issues if finding.signature_key in i.signature_keys]
            if same_key:
                return max(same_key, key=lambda i: (i.status != "REJECTED",
                                                    overlap(ids, set(i.trace_ids))[0]))
        matches = [(overlap(ids, set(i.trace_ids))[0], i) for i in self.issues
                   if same_traces(ids, set(i.trace_ids))]
        return max(matches, key=lambda m: m[0])[1] if matches else None

    def record(self, finding: Finding) -> str | None:
        """Create the finding's issue, or merge it into the issue describing it; return the
        issue id (None when this run already wrote the finding)."""
        if self.known(finding.key):
            return None
        into = self.match(finding)
        if into is None:
            return self._create(finding)
        return self._merge(into, finding)

    # ------------------------------------------------------------------ create

    def _numbers(self, count: int, finding: Finding) -> dict[str, Any]:
        numbers: dict[str, Any] = {"trace_count": count, "total_traces": self.total,
                                   "share": round(count / max(self.total, 1), 6)}
        for name in ("relative_risk", "p_value", "rate", "cohort_rate", "control_rate"):
            value = finding.metrics.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value):
                numbers[name] = value
        return numbers

    def _entry(self, event: str, finding: Finding, count: int, **extra: Any) -> dict[str, Any]:
        entry = {"at": now_ms(), "run_id": self.run_id, "key": finding.key, "event": event,
                 "numbers": self._numbers(count, finding), **extra}
        if finding.signature_key:
            entry["signature_key"] = finding.signature_key
        return entry

    def _create(self, finding: Finding) -> str:
        count = finding.trace_count
        severity = finding.severity or severity_for(count, self.total)
        at = now_ms()
        metadata = {"key": finding.key, "source": finding.source, "metrics": finding.metrics,
                    "trace_count": count, "affected_traces": count,
                    "base_description": finding.description,
                    "analyses": [self.run_id], "first_seen": at, "last_seen": at,
                    "history": [self._entry("seen", finding, count)]}
        if finding.signature:
            metadata["signature"] = finding.signature
            metadata["signature_keys"] = [finding.signature_key]
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
                                  metadata, [e["trace_id"] for e in evidence], description,
                                  self.run_id, "OPEN", at, at))
        self.say(f"issue from {finding.source}: [{severity}] {finding.title} "
                 f"({count} traces)", issue_id=issue_id)
        return issue_id

    # ------------------------------------------------------------------ merge

    def _merge(self, into: _Known, finding: Finding) -> str:
        meta = into.metadata
        earlier = self.run_id not in (into.source_run_id, *into.analyses)
        # The same definition an earlier run recorded, seen again (not a second finding of
        # this run that happens to share a plan: that one is merged as usual).
        same_key = (bool(finding.signature_key) and finding.signature_key in into.signature_keys
                    and finding.signature_key not in {
                        h.get("signature_key") for h in into.history
                        if h.get("run_id") == self.run_id})
        if into.status in ("REJECTED", "RESOLVED"):
            reopen = self._reopen(into, finding)
            if reopen is None:
                return self._seen_only(into, finding)
        else:
            reopen = None
        merged = list(meta.get("merged_findings") or [])
        mine = {"title": into.title, "key": meta.get("key"), "source": meta.get("source", "census")}
        takes_over = (not same_key and
                      finding.strength() > _strength(mine["source"], meta.get("metrics") or {}))
        count = self._union_count(into, finding)
        change: dict[str, Any] = {"trace_count": count, "affected_traces": count}
        if same_key:              # the same definition seen again: its latest numbers
            title, base, source = into.title, into.base_description, mine["source"]
            if finding.signature_key == (meta.get("signature") or {}).get("key"):
                change["metrics"] = finding.metrics
        elif takes_over:
            merged.append(mine)
            title, base, source = finding.title, finding.description, finding.source
            change.update(key=finding.key, source=finding.source, metrics=finding.metrics,
                          base_description=finding.description)
            if finding.hypothesis_id:
                change["hypothesis_id"] = finding.hypothesis_id
        else:
            merged.append(finding.ref())
            title, base, source = into.title, into.base_description, mine["source"]
        if merged:
            change["merged_findings"] = merged
        where = _or(meta.get("where"), finding.where)
        if where:
            change["where"] = where
        change.update(self._seen_fields(into, finding, count))
        signature = dict(finding.signature) if takes_over and finding.signature else \
            dict(meta.get("signature") or {}) or (finding.signature and dict(finding.signature))
        if signature:
            signature["where"] = where or signature.get("where")
            change["signature"] = signature
        event = ("regressed" if reopen and into.status == "RESOLVED" else
                 "reopened" if reopen else "seen" if same_key or earlier else "merged")
        entry = self._entry(event, finding, count, **({"change": reopen} if reopen else {}))
        change["history"] = into.history + [entry]
        if event == "regressed":
            change["regression"] = True
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
            status="OPEN" if reopen else None, metadata=change)
        into.refresh(updated)
        if event == "regressed":
            self.say(f"regression: [{severity}] {title} was resolved and is back ({reopen}; "
                     f"{count} traces)", issue_id=into.issue_id, event="regressed")
        elif event == "reopened":
            self.say(f"issue reopened: [{severity}] {title} was rejected; {reopen}",
                     issue_id=into.issue_id, event="reopened")
        elif same_key or earlier:
            self.say(f"issue seen again: [{severity}] {title} ({count} traces, "
                     f"{len(into.analyses)} analyses)", issue_id=into.issue_id, event="seen")
        else:
            other = mine["title"] if takes_over else finding.title
            self.say(f"issue merged: [{severity}] {title} (also seen as: {other}; "
                     f"{count} traces)", issue_id=into.issue_id)
        return into.issue_id

    def _seen_fields(self, into: _Known, finding: Finding, count: int) -> dict[str, Any]:
        keys = list(dict.fromkeys([*(into.metadata.get("signature_keys") or []),
                                   *into.signature_keys,
                                   *([finding.signature_key] if finding.signature_key else [])]))
        out: dict[str, Any] = {
            "analyses": list(dict.fromkeys([*into.analyses, self.run_id])),
            "first_seen": into.metadata.get("first_seen") or into.created_at,
            "last_seen": now_ms(),
            "latest": {"run_id": self.run_id, "key": finding.key, **self._numbers(count, finding)},
        }
        if keys:
            out["signature_keys"] = keys
        return out

    def _reopen(self, into: _Known, finding: Finding) -> str | None:
        """Why a RESOLVED or REJECTED issue is open again, or None when it stays closed.

        RESOLVED: the finding holds traces newer than the issue's last change (the
        resolution), counted by its predicate or, without one, traces the issue did not list.
        REJECTED: its trace count changed by ``REOPEN_CHANGE`` or more."""
        if into.status == "REJECTED":
            old, new = into.trace_count, finding.trace_count
            if old and abs(new - old) / old >= REOPEN_CHANGE or (not old and new):
                return f"trace count changed from {old} to {new} since it was rejected"
            return None
        since = into.updated_at
        if finding.where:
            fresh = self.toolkit.count(f"({finding.where}) AND request_time_ms > {int(since)}")
        else:
            fresh = len(set(finding.trace_ids) - set(into.trace_ids))
        return f"{fresh} new traces since it was resolved" if fresh else None

    def _seen_only(self, into: _Known, finding: Finding) -> str:
        """A closed issue seen again but staying closed: only the run and numbers noted."""
        count = finding.trace_count
        change = self._seen_fields(into, finding, count)
        change["history"] = into.history + [
            self._entry("seen", finding, count, status=into.status)]
        updated = self.client.update_issue(self.run_id, into.issue_id, metadata=change)
        into.refresh(updated)
        self.say(f"{into.status.lower()} issue seen again, left {into.status}: {into.title} "
                 f"({count} traces)", issue_id=into.issue_id, event="seen")
        return into.issue_id

    def _union_count(self, into: _Known, finding: Finding) -> int:
        """True size of the union: counted by SQL when a side is over the cap and both have
        predicates, else the union of the listed traces."""
        listed = len(set(into.trace_ids) | set(finding.trace_ids))
        capped = into.trace_count > len(into.trace_ids) or finding.trace_count > len(finding.trace_ids)
        where = into.metadata.get("where")
        if capped and where and finding.where:
            return self.toolkit.count(_or(where, finding.where))
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
