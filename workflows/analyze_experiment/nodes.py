"""The analyze-experiment nodes. Each reads what it needs from MLflow through InsightsClient and
writes what it learned before returning, so a node re-run after an interrupt or a crash does
no double work: drafts carry keys, and existing keys are skipped.

Interrupts (via ``people.ask``) come first in a node, before it writes anything, and there is at
most one per node.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from agent.plans import EXPLORE_SQL
from agent.toolkit import TraceToolkit
from workflows.analyze_experiment import window as windows
from workflows.analyze_experiment.issues import (
    IssueWriter, census_finding, hypothesis_finding, issue_of_run,
)
from workflows.analyze_experiment.people import (
    apply_edits, ask, create_person_hypothesis, needs_plan,
)
from workflows.analyze_experiment.state import AnalysisState, WorkflowContext
from workflows.analyze_experiment.window import Window

ORDER = [
    "setup", "understand_agent", "confirm_description", "choose_focus", "create_analysis",
    "census", "census_issues", "propose_hypotheses", "review_hypotheses", "edit_hypotheses",
    "confirm_plans", "test_hypotheses",
    "issues_from_hypotheses", "review_issues", "choose_assessments", "choose_report_path",
    "report", "log_assessments", "complete",
]
FOCUS_OPTIONS = ["general analysis", "errors", "latency", "empty or poor responses",
                 "failing assessments"]


def say(message: str, **extra: Any) -> None:
    """Progress on LangGraph's custom stream, for the terminal and any embedding app."""
    try:
        writer = get_stream_writer()
    except RuntimeError:
        return
    writer({"kind": "progress", "message": message, **extra})


def _toolkit(ctx: WorkflowContext, state: AnalysisState) -> TraceToolkit:
    """The analyst's toolkit: over the analysis's window of traces when it has one."""
    return windows.toolkit(ctx.client, state["experiment_id"], Window.of(state),
                           state.get("run_id"), progress=say)


def _mark(ctx: WorkflowContext, state: AnalysisState, phase: str, **meta: Any) -> dict[str, Any]:
    usage = _usage(ctx, state)
    if state.get("run_id"):
        ctx.client.update_analysis(state["run_id"],
                                   metadata={"phase": phase, "model_usage": usage, **meta})
    return {"phase": phase, "model_usage": usage}


def _analyst(ctx: WorkflowContext, state: AnalysisState):
    """The analyst, with the model calls and tokens earlier processes already spent carried
    over, so ``--max-model-calls`` is one budget for the whole analysis, resumes included."""
    restore = getattr(ctx.analyst, "restore_usage", None)
    if restore is not None and state.get("model_usage"):
        restore(state["model_usage"])
    return ctx.analyst


def _usage(ctx: WorkflowContext, state: AnalysisState) -> dict[str, int]:
    usage = _analyst(ctx, state).usage()
    return {"model_calls": int(usage.get("model_calls", 0)), "tokens": int(usage.get("tokens", 0))}


def _save_usage(ctx: WorkflowContext, state: AnalysisState,
                saved: dict[str, int] | None = None) -> dict[str, int]:
    """Write the usage so far to the analysis now (a crash loses no spent calls), unless it
    equals ``saved``, the usage this node already wrote: an analysis update costs a journal
    write and a fold, and the offline analyst's usage never changes."""
    usage = _usage(ctx, state)
    if state.get("run_id") and usage != saved:
        ctx.client.update_analysis(state["run_id"], metadata={"model_usage": usage})
    return usage


def _done(state: AnalysisState, node: str) -> bool:
    """True when a resumed analysis has already passed ``node``."""
    phase = state.get("phase")
    return phase in ORDER and ORDER.index(phase) >= ORDER.index(node)


# ---------------------------------------------------------------------- before the analysis


def setup(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    """Check the experiment and its traces; on --resume, rehydrate the pointers from MLflow."""
    ctx = runtime.context
    if state.get("run_id"):
        analysis = ctx.client.get_analysis(state["run_id"])
        meta = analysis.metadata or {}
        say(f"resuming analysis {analysis.run_id} ({analysis.name}) at phase {meta.get('phase')}")
        usage = meta.get("model_usage") or {}
        _analyst(ctx, {"model_usage": usage})
        resumed = Window.of({"window": meta.get("window"),
                             "previous_run_id": meta.get("previous_run_id")})
        return {"experiment_id": analysis.experiment_id, "phase": meta.get("phase", "create_analysis"),
                **resumed.as_state(),
                "description": meta.get("agent_description", analysis.description),
                "focus": meta.get("focus", "general analysis"),
                "log_assessments": bool(meta.get("log_assessments", False)),
                "report_path": meta.get("report_path", ""),
                "hypotheses_declined": meta.get("hypotheses_review") == "declined",
                "model_usage": _usage(ctx, {})}
    experiment_id = state["experiment_id"]
    window = _measured(ctx, state)
    if window.traces == 0:
        if window.bounded:
            raise ValueError(f"Experiment {experiment_id} has no traces since "
                             f"{windows.iso(window.since_ms)} to analyze")
        raise ValueError(f"Experiment {experiment_id} has no traces to analyze")
    say(f"experiment {experiment_id}: {windows.describe(window)}")
    return {"phase": "setup", **window.as_state()}


def _measured(ctx: WorkflowContext, state: AnalysisState) -> Window:
    """The run's window with its trace count and newest trace: as the caller resolved it
    (the CLI, before deciding there is anything to analyse), else measured now."""
    window = Window.of(state)
    if window.until_ms is None:
        window.traces, window.until_ms = windows.measure(ctx.client, state["experiment_id"],
                                                         window.since_ms)
    return window


def understand_agent(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    if _done(state, "understand_agent") or state.get("draft_description"):
        return {}
    ctx = runtime.context
    say("reading sample traces, trace names and TOOL spans to understand the agent")
    facts = _toolkit(ctx, state).agent_facts()
    description = _analyst(ctx, state).describe_agent(facts)
    say(f"agent description: {description}")
    return {"draft_description": description, "phase": "understand_agent",
            "model_usage": _usage(ctx, state)}


def confirm_description(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    if _done(state, "confirm_description"):
        return {}
    draft = state.get("draft_description", "")
    answer = ask(runtime.context, "confirm_description", {"description": draft},
                 {"description": draft})
    updates = apply_edits(runtime.context, state, answer)
    return {**updates, "description": (answer.get("description") or draft).strip(),
            "phase": "confirm_description"}


def choose_focus(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    if _done(state, "choose_focus"):
        return {}
    answer = ask(runtime.context, "choose_focus", {"options": FOCUS_OPTIONS},
                 {"focus": state.get("focus") or "general analysis"})
    updates = apply_edits(runtime.context, state, answer)
    return {**updates, "focus": (answer.get("focus") or "general analysis").strip(),
            "phase": "choose_focus"}


def create_analysis(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    ctx = runtime.context
    if state.get("run_id"):
        return {}
    focus = state.get("focus") or "general analysis"
    run_name = _run_name(focus)
    today = dt.date.today().isoformat()
    name = (f"Experiment {state['experiment_id']} Comprehensive Analysis - {today}"
            if focus == "general analysis" else f"{focus.title()} Analysis - {today}")
    description = f"Agent: {state.get('description', '')}. Focus: {focus}."
    run_id = ctx.client.create_analysis(
        state["experiment_id"], run_name=run_name, name=name, description=description,
        metadata={"phase": "create_analysis", "focus": focus, "analyst": ctx.analyst.name,
                  "agent_description": state.get("description", ""), "thread_id": _thread_id(),
                  "model_usage": _usage(ctx, state),
                  "window": windows.window_metadata(Window.of(state)),
                  **({"previous_run_id": state["previous_run_id"]}
                     if state.get("previous_run_id") else {})},
    )
    say(f"created analysis run {run_id} ({run_name})", run_id=run_id)
    for item in state.get("pending_hypotheses") or []:
        create_person_hypothesis(ctx, run_id, item)
    return {"run_id": run_id, "phase": "create_analysis", "pending_hypotheses": []}


def _thread_id() -> str | None:
    """The checkpointer thread, so --resume on this machine can answer a pending question."""
    from langgraph.config import get_config

    try:
        return get_config().get("configurable", {}).get("thread_id")
    except RuntimeError:
        return None


def _run_name(focus: str) -> str:
    names = {"general analysis": "Full Analysis", "errors": "Error Investigation",
             "latency": "Latency Analysis", "empty or poor responses": "Quality Review",
             "failing assessments": "Quality Review"}
    return names.get(focus, f"{' '.join(focus.split()[:3]).title()} Investigation")


# ---------------------------------------------------------------------- census


def census(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    ctx = runtime.context
    if _done(state, "census"):
        return {}
    from insights.errors import NotFoundError

    window = Window.of(state)
    try:
        result = ctx.client.get_baseline_census(state["run_id"])
        say("baseline census already stored")
    except NotFoundError:
        say(f"computing the baseline census over {windows.describe(window)}")
        result = ctx.client.create_baseline_census(
            state["run_id"], start_time_ms=window.since_ms, end_time_ms=window.end_ms(),
            progress=say)
        say(f"census: {result.total_traces} traces, error rate {result.error_rate:.1%}")
    # the live dashboard's "N traces examined"
    return _mark(ctx, state, "census", traces_examined=int(result.total_traces),
                 **_changes(ctx, state, result))


def _changes(ctx: WorkflowContext, state: AnalysisState, current) -> dict[str, Any]:
    """``changes`` against the previous analysis's census, when this run has one to compare."""
    from insights.errors import NotFoundError

    previous = state.get("previous_run_id")
    if not previous:
        return {}
    try:
        before = ctx.client.get_baseline_census(previous)
    except NotFoundError:
        say(f"the previous analysis {previous} has no census: nothing to compare with")
        return {}
    found = windows.changes(before, current, previous)
    say(f"since analysis {previous}: error rate {found['error_rate']['before']:.1%} -> "
        f"{found['error_rate']['after']:.1%}; new error types: "
        f"{', '.join(found['new_error_types']) or 'none'}; new tools: "
        f"{', '.join(found['new_tools']) or 'none'}")
    return {"changes": found}


def census_issues(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    ctx = runtime.context
    if _done(state, "census_issues"):
        return {}
    data = ctx.client.get_baseline_census(state["run_id"])
    toolkit = _toolkit(ctx, state)
    drafts = _analyst(ctx, state).census_issues(data, toolkit)
    writer = _writer(ctx, state, toolkit)
    for draft in drafts:
        if not writer.known(draft.key):   # written before an interrupt or a crash
            writer.record(census_finding(draft, toolkit))
    return _mark(ctx, state, "census_issues")


def _writer(ctx: WorkflowContext, state: AnalysisState, toolkit: TraceToolkit) -> IssueWriter:
    """Writes this run's issues: every affected trace, findings over one trace set merged."""
    return IssueWriter(ctx.client, toolkit, state["run_id"], state["experiment_id"], say=say)


# ---------------------------------------------------------------------- hypotheses


def propose_hypotheses(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    ctx = runtime.context
    if _done(state, "propose_hypotheses"):
        return {}
    data = ctx.client.get_baseline_census(state["run_id"])
    drafts = _analyst(ctx, state).propose_hypotheses(data, state.get("focus", ""), _toolkit(ctx, state))
    known = {(h.metadata or {}).get("key") for h in ctx.client.list_hypotheses(state["run_id"])}
    for draft in drafts:
        if draft.key in known:
            continue
        metadata = {"key": draft.key, "source": ctx.analyst.name, "kind": draft.kind,
                    "issue_title": draft.issue_title}
        if draft.plan is not None:
            metadata["plan"] = draft.plan.model_dump()
        hid = ctx.client.create_hypothesis(state["run_id"], draft.statement, draft.testing_plan,
                                           rationale=draft.rationale, metadata=metadata)
        say(f"hypothesis: {draft.statement}", hypothesis_id=hid)
    return _mark(ctx, state, "propose_hypotheses")


def review_hypotheses(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    ctx = runtime.context
    if _done(state, "review_hypotheses"):
        return {}
    items = [{"hypothesis_id": h.hypothesis_id, "statement": h.statement, "rationale": h.rationale,
              "testing_plan": h.testing_plan}
             for h in ctx.client.list_hypotheses(state["run_id"]) if h.status.value == "TESTING"]
    answer = ask(ctx, "review_hypotheses", {"hypotheses": items}, {"approve": True})
    apply_edits(ctx, state, answer)
    if answer.get("approve") is False:
        say("the proposed hypotheses were declined: nothing is tested until the list is approved")
        return {**_mark(ctx, state, "review_hypotheses", hypotheses_review="declined"),
                "hypotheses_declined": True}
    return {**_mark(ctx, state, "review_hypotheses", hypotheses_review="approved"),
            "hypotheses_declined": False}


def edit_hypotheses(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    """After a declined review: the person edits the list, then approves it or drops it.

    Dropping it sets every listed hypothesis REJECTED (declined by the person); hypotheses
    added in the same answer are kept.
    """
    ctx = runtime.context
    if _done(state, "edit_hypotheses"):
        return {}
    if not state.get("hypotheses_declined"):
        return {}   # nothing to edit: the phase stays where the review left it
    listed = [h for h in ctx.client.list_hypotheses(state["run_id"]) if h.status.value == "TESTING"]
    items = [{"hypothesis_id": h.hypothesis_id, "statement": h.statement, "rationale": h.rationale,
              "testing_plan": h.testing_plan} for h in listed]
    answer = ask(ctx, "edit_hypotheses",
                 {"hypotheses": items, "question": "Edit the list (add or abandon hypotheses), "
                  "then approve it to test it, or not to test any of it"}, {"approve": False})
    apply_edits(ctx, state, answer)
    if answer.get("approve") is True:
        say("the edited list of hypotheses was approved")
        return {**_mark(ctx, state, "edit_hypotheses", hypotheses_review="approved after edits"),
                "hypotheses_declined": False}
    for h in listed:
        if ctx.client.get_hypothesis(state["run_id"], h.hypothesis_id).status.value == "TESTING":
            ctx.client.update_hypothesis(state["run_id"], h.hypothesis_id, status="REJECTED",
                                         metadata={"abandoned_by": "person",
                                                   "declined": "declined at the hypotheses review"})
    say(f"{len(listed)} declined hypotheses set aside untested")
    return {**_mark(ctx, state, "edit_hypotheses", hypotheses_review="declined, list set aside"),
            "hypotheses_declined": False}


def confirm_plans(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    """Map each hypothesis a person typed onto a testing plan and ask before using it.

    A statement that names no measurable outcome or no selectable traces is marked untestable
    offline, with the reason (a chat-model analyst may still test it). Runs whenever such
    hypotheses wait, so ones added at a later question are planned when the analysis resumes.
    """
    ctx = runtime.context
    waiting = [h for h in ctx.client.list_hypotheses(state["run_id"]) if needs_plan(h)]
    if not waiting:
        return {}
    from agent.statements import map_statement, tag_values

    toolkit = _toolkit(ctx, state)
    census_data = ctx.client.get_baseline_census(state["run_id"])
    tags = tag_values(toolkit.frame(EXPLORE_SQL))
    mapped = {h.hypothesis_id: map_statement(h.statement, census_data, tags) for h in waiting}
    plans = [{"hypothesis_id": h.hypothesis_id, "statement": h.statement,
              "matched": mapped[h.hypothesis_id].matched,
              "testing_plan": mapped[h.hypothesis_id].plan.prose()}
             for h in waiting if mapped[h.hypothesis_id].plan is not None]
    untestable = [{"hypothesis_id": h.hypothesis_id, "statement": h.statement,
                   "reason": mapped[h.hypothesis_id].reason}
                  for h in waiting if mapped[h.hypothesis_id].plan is None]
    answer: dict[str, Any] = {}
    if plans:
        default = {"decisions": {p["hypothesis_id"]: "accept" for p in plans}}
        answer = ask(ctx, "confirm_plan", {"plans": plans, "untestable": untestable}, default)
        decisions = {**default["decisions"], **(answer.get("decisions") or {})}
    apply_edits(ctx, state, answer)   # hypotheses added here wait for the next pass (plans_route)
    for p in plans:
        hid, plan = p["hypothesis_id"], mapped[p["hypothesis_id"]].plan
        if str(decisions.get(hid, "accept")).lower() == "reject":
            ctx.client.update_hypothesis(state["run_id"], hid, metadata={
                "plan_review": "declined", "offline_untestable": "the person declined the "
                "testing plan mapped from the statement", "proposed_plan": plan.model_dump()})
            say(f"plan declined: {p['statement']}", hypothesis_id=hid)
            continue
        ctx.client.update_hypothesis(state["run_id"], hid, testing_plan=plan.prose(), metadata={
            "plan": plan.model_dump(), "plan_review": "accepted", "mapped_from": p["matched"]})
        say(f"plan accepted: {p['statement']}", hypothesis_id=hid)
    for u in untestable:
        ctx.client.update_hypothesis(state["run_id"], u["hypothesis_id"], metadata={
            "plan_review": "untestable offline", "offline_untestable": u["reason"]})
        say(f"not testable offline: {u['statement']}: {u['reason']}", hypothesis_id=u["hypothesis_id"])
    return {} if _done(state, "confirm_plans") else _mark(ctx, state, "confirm_plans")


def plans_route(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> str:
    """Back to ``confirm_plans`` while hypotheses typed at its own question wait for a plan."""
    waiting = [h for h in runtime.context.client.list_hypotheses(state["run_id"]) if needs_plan(h)]
    return "confirm_plans" if waiting else "test_hypotheses"


def test_hypotheses(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    """Test every hypothesis still TESTING, one at a time, re-reading MLflow between them so a
    hypothesis the person abandons meanwhile gets no more work."""
    ctx = runtime.context
    toolkit = _toolkit(ctx, state)
    saved: dict[str, int] | None = None
    while True:
        pending = [h for h in ctx.client.list_hypotheses(state["run_id"])
                   if h.status.value == "TESTING" and not (h.metadata or {}).get("untestable")
                   and not needs_plan(h)]
        if not pending:
            break
        # Findings that others are tested against (their exclusions) go first.
        pending.sort(key=_dependencies)
        h = pending[0]
        say(f"testing hypothesis: {h.statement}", hypothesis_id=h.hypothesis_id)
        say(f"testing plan:\n{h.testing_plan}", hypothesis_id=h.hypothesis_id)
        verdict = _analyst(ctx, state).test_hypothesis(h, toolkit)
        saved = _save_usage(ctx, state, saved)
        current = ctx.client.get_hypothesis(state["run_id"], h.hypothesis_id)
        if current.status.value != "TESTING":
            say(f"hypothesis changed to {current.status.value} meanwhile; dropping the result")
            continue
        if verdict.status not in ("VALIDATED", "REJECTED"):
            ctx.client.update_hypothesis(state["run_id"], h.hypothesis_id,
                                         metadata={"untestable": verdict.reason})
            say(f"left untested: {verdict.reason}")
            continue
        ctx.client.update_hypothesis(
            state["run_id"], h.hypothesis_id, status=verdict.status,
            add_evidence=[e.model_dump() for e in verdict.evidence], metrics=verdict.metrics,
            metadata={"verdict_reason": verdict.reason},
        )
        supports = sum(e.supports for e in verdict.evidence)
        say(f"{verdict.status}: {verdict.reason} (evidence: {supports} supporting, "
            f"{len(verdict.evidence) - supports} refuting)", hypothesis_id=h.hypothesis_id,
            verdict=verdict.status)
    # A resumed analysis past this phase keeps its later answers: don't rewind the phase.
    return {} if _done(state, "test_hypotheses") else _mark(ctx, state, "test_hypotheses")


def _dependencies(h) -> int:
    """How many other findings a hypothesis's plan is tested against (set aside or within):
    those are tested first, so their verdicts are known when it is tested."""
    plan = (h.metadata or {}).get("plan") or {}
    return len(plan.get("exclude") or []) + len(plan.get("within") or [])


def issues_from_hypotheses(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    ctx = runtime.context
    if _done(state, "issues_from_hypotheses"):
        return {}
    toolkit = _toolkit(ctx, state)
    writer = _writer(ctx, state, toolkit)
    for h in ctx.client.list_hypotheses(state["run_id"]):
        if h.status.value == "VALIDATED" and not writer.has_hypothesis(h.hypothesis_id):
            writer.record(hypothesis_finding(h, toolkit))
    return _mark(ctx, state, "issues_from_hypotheses")


# ---------------------------------------------------------------------- review and wrap-up


def review_issues(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    ctx = runtime.context
    if _done(state, "review_issues"):
        return {}
    issues = [i for i in ctx.client.list_issues(state["experiment_id"])
              if issue_of_run(i, state["run_id"]) and not (i.metadata or {}).get("review")]
    items = [{"issue_id": i.issue_id, "title": i.title, "severity": i.severity.value,
              "description": i.description, "trace_count": i.trace_count,
              "examples": [e.model_dump(include={"trace_id", "rationale"}) for e in i.evidence[:2]]}
             for i in issues]
    default = {"decisions": {i.issue_id: "accept" for i in issues}}
    answer = ask(ctx, "review_issues", {"issues": items}, default)
    apply_edits(ctx, state, answer)
    decisions = {**default["decisions"], **(answer.get("decisions") or {})}
    for issue in issues:
        decision = str(decisions.get(issue.issue_id, "accept")).lower()
        if decision == "reject":
            ctx.client.update_issue(state["run_id"], issue.issue_id, status="REJECTED",
                                    metadata={"review": "rejected"})
        else:
            ctx.client.update_issue(state["run_id"], issue.issue_id, metadata={"review": "accepted"})
        say(f"issue {decision}ed: {issue.title}", issue_id=issue.issue_id)
    return _mark(ctx, state, "review_issues")


def choose_assessments(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    ctx = runtime.context
    if _done(state, "choose_assessments"):
        return {}
    answer = ask(ctx, "log_assessments", {"question": "Log an assessment on every trace of each "
                                          "accepted issue?"}, {"log": False})
    apply_edits(ctx, state, answer)
    log = bool(answer.get("log"))
    return {**_mark(ctx, state, "choose_assessments", log_assessments=log), "log_assessments": log}


def choose_report_path(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    ctx = runtime.context
    if _done(state, "choose_report_path"):
        return {}
    default_path = os.path.join(ctx.report_dir, f"insights-report-{state['run_id'][:8]}.md")
    answer = ask(ctx, "report_path", {"question": "Where should the report be saved?"},
                 {"path": default_path})
    apply_edits(ctx, state, answer)
    path = os.path.abspath(os.path.expanduser(answer.get("path") or default_path))
    return {**_mark(ctx, state, "choose_report_path", report_path=path), "report_path": path}


def report(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    ctx = runtime.context
    from agent.report import write_report

    path = state.get("report_path") or os.path.join(ctx.report_dir, "insights-report.md")
    say(f"writing the report to {path}")
    write_report(windows.reader(ctx.client, Window.of(state)), state["experiment_id"],
                 state["run_id"], path,
                 usage=_analyst(ctx, state).usage())
    return _mark(ctx, state, "report")


def log_assessments(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    ctx = runtime.context
    if not state.get("log_assessments"):
        return _mark(ctx, state, "log_assessments")
    from agent.assessments import log_issue_assessments

    for issue in ctx.client.list_issues(state["experiment_id"]):
        meta = issue.metadata or {}
        if not issue_of_run(issue, state["run_id"]) or meta.get("review") != "accepted":
            continue
        if meta.get("assessments_logged"):
            continue
        count = log_issue_assessments(ctx.client, state["run_id"], issue)
        say(f"logged {count} assessments for: {issue.title}", issue_id=issue.issue_id)
    return _mark(ctx, state, "log_assessments")


def complete(state: AnalysisState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    ctx = runtime.context
    ctx.client.update_analysis(state["run_id"], status="COMPLETED", metadata={"phase": "complete"})
    say(f"analysis {state['run_id']} COMPLETED", run_id=state["run_id"])
    return {"phase": "complete"}
