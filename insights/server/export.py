"""Issues as GitHub-ready Markdown or Jira wiki markup, analyses as a Markdown report."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from insights.models import Analysis, Hypothesis, Issue


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _val(x: Any) -> str:
    return str(getattr(x, "value", x))


def trace_link(ui_url: str | None, experiment_id: str | None, trace_id: str) -> str | None:
    if ui_url is None or not experiment_id:
        return None
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/traces?selectedEvaluationId={trace_id}"


def _one_line(text: str) -> str:
    return " ".join((text or "").split())


def issue_markdown(issue: Issue, experiment_id: str | None, ui_url: str | None,
                   source_run_name: str | None = None) -> str:
    lines = [
        f"# {issue.title}",
        "",
        f"**Severity:** {_val(issue.severity)} · **Status:** {_val(issue.status)} · "
        f"**Traces:** {len(issue.trace_ids)}",
        "",
        "## Description",
        "",
        issue.description or "_No description._",
        "",
        "## Evidence",
        "",
    ]
    if not issue.evidence:
        lines.append("_No evidence recorded._")
    for e in issue.evidence:
        link = trace_link(ui_url, experiment_id, e.trace_id)
        tid = f"[`{e.trace_id}`]({link})" if link else f"`{e.trace_id}`"
        lines.append(f"- {tid}: {_one_line(e.rationale) or '(no rationale)'}")
    if issue.resolution:
        lines += ["", "## Resolution", "", issue.resolution]
    lines += [
        "", "## Details", "",
        f"- Issue id: `{issue.issue_id}`",
        f"- Source analysis: {source_run_name or ''} (`{issue.source_run_id}`)".replace(":  (", ": ("),
    ]
    if issue.hypothesis_id:
        lines.append(f"- Source hypothesis: `{issue.hypothesis_id}`")
    if issue.assessments:
        lines.append(f"- Assessments: {', '.join(issue.assessments)}")
    lines += [f"- Created: {_when(issue.created_at)} · Updated: {_when(issue.updated_at)}", "",
              "_Exported from MLflow Insights._", ""]
    return "\n".join(lines)


def issue_jira(issue: Issue, experiment_id: str | None, ui_url: str | None,
               source_run_name: str | None = None) -> str:
    lines = [
        f"h1. {issue.title}",
        "",
        f"*Severity:* {_val(issue.severity)} | *Status:* {_val(issue.status)} | "
        f"*Traces:* {len(issue.trace_ids)}",
        "",
        "h2. Description",
        "",
        issue.description or "_No description._",
        "",
        "h2. Evidence",
        "",
    ]
    if not issue.evidence:
        lines.append("_No evidence recorded._")
    for e in issue.evidence:
        link = trace_link(ui_url, experiment_id, e.trace_id)
        tid = f"[{e.trace_id}|{link}]" if link else f"{{{{{e.trace_id}}}}}"
        lines.append(f"* {tid}: {_one_line(e.rationale) or '(no rationale)'}")
    if issue.resolution:
        lines += ["", "h2. Resolution", "", issue.resolution]
    lines += ["", "h2. Details", "", f"* Issue id: {{{{{issue.issue_id}}}}}",
              f"* Source analysis: {source_run_name or ''} ({{{{{issue.source_run_id}}}}})"]
    if issue.hypothesis_id:
        lines.append(f"* Source hypothesis: {{{{{issue.hypothesis_id}}}}}")
    lines += [f"* Created: {_when(issue.created_at)}", "", "_Exported from MLflow Insights._", ""]
    return "\n".join(lines)


def analysis_report(analysis: Analysis, hypotheses: list[Hypothesis], issues: list[Issue],
                    ui_url: str | None) -> str:
    exp = analysis.experiment_id
    validated = [h for h in hypotheses if _val(h.status) == "VALIDATED"]
    rejected = [h for h in hypotheses if _val(h.status) == "REJECTED"]
    lines = [
        f"# {analysis.name}",
        "",
        f"**Status:** {_val(analysis.status)} · **Run:** {analysis.run_name} (`{analysis.run_id}`) · "
        f"**Experiment:** `{exp}`",
        "",
        f"Created {_when(analysis.created_at)} · updated {_when(analysis.updated_at)}",
        "",
        "## Goal",
        "",
        analysis.description or "_No description._",
        "",
        "## Summary",
        "",
        f"- Hypotheses: {len(hypotheses)} ({len(validated)} validated, {len(rejected)} rejected, "
        f"{len(hypotheses) - len(validated) - len(rejected)} testing)",
        f"- Issues raised: {len(issues)}",
        "",
    ]
    if issues:
        lines += ["## Issues", "", "| Severity | Status | Traces | Title |", "|---|---|---|---|"]
        for i in issues:
            lines.append(f"| {_val(i.severity)} | {_val(i.status)} | {len(i.trace_ids)} | "
                         f"{i.title.replace('|', '/')} |")
        lines.append("")
    lines += ["## Hypotheses", ""]
    if not hypotheses:
        lines.append("_No hypotheses._")
    for n, h in enumerate(hypotheses, 1):
        lines += [
            f"### H{n}. {h.statement}",
            "",
            f"**Status:** {_val(h.status)} · **Evidence:** {len(h.evidence)} "
            f"({h.supports_count} supporting, {h.refutes_count} refuting) · "
            f"**Traces:** {len(h.trace_ids)}",
            "",
        ]
        if h.rationale:
            lines += [f"**Rationale:** {h.rationale}", ""]
        if h.testing_plan:
            lines += ["**Testing plan:**", "", h.testing_plan, ""]
        if h.metrics:
            lines += ["**Metrics:** " + ", ".join(f"{k}={v}" for k, v in h.metrics.items()), ""]
        for e in h.evidence:
            link = trace_link(ui_url, exp, e.trace_id)
            tid = f"[`{e.trace_id}`]({link})" if link else f"`{e.trace_id}`"
            mark = "supports" if e.supports else "refutes"
            lines.append(f"- {mark} {tid}: {_one_line(e.rationale) or '(no rationale)'}")
        lines.append("")
    lines += ["_Exported from MLflow Insights._", ""]
    return "\n".join(lines)
