"""Rich tables and panels for the CLI's human output (``--output json`` bypasses all of this).

Everything that comes from data (trace text, titles, statements, SQL results, ids) goes into
rich as ``Text`` built by ``plain()``, never as a markup string: a ``[/x]`` in an error message
would otherwise crash the command, and ``[link=...]`` would print a hidden hyperlink.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # annotations only: pydantic models are not needed to print --help
    from insights.models import Analysis, Hypothesis, Issue

console = Console()

_STATUS_STYLE = {
    "ACTIVE": "green", "COMPLETED": "cyan", "ARCHIVED": "dim",
    "TESTING": "yellow", "VALIDATED": "green", "REJECTED": "red",
    "OPEN": "yellow", "IN_PROGRESS": "blue", "RESOLVED": "green",
}
_SEVERITY_STYLE = {"CRITICAL": "bold white on red", "HIGH": "red", "MEDIUM": "yellow", "LOW": "dim"}


def plain(value: Any, style: str = "") -> Text:
    """Data as literal text: rich never parses it as markup."""
    return Text("" if value is None else str(value), style=style)


def when(ms: int | None) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M")


def badge(value: Any, styles: dict[str, str] = _STATUS_STYLE) -> Text:
    text = getattr(value, "value", str(value))
    return Text(text, style=styles.get(text, ""))


def _id_column(table: Table, name: str, ids: list[str]) -> None:
    """Ids are copied into the next command, so they are never wrapped or cut, even at 80 columns."""
    table.add_column(name, no_wrap=True, min_width=max((len(i) for i in ids), default=len(name)))


def analyses_table(items: list[Analysis]) -> Table:
    table = Table(title=f"Analyses ({len(items)})")
    _id_column(table, "run_id", [x.run_id for x in items])
    for col in ("run name", "name", "status", "created", "updated"):
        table.add_column(col, overflow="fold")
    for a in items:
        table.add_row(plain(a.run_id), plain(a.run_name), plain(a.name), badge(a.status),
                      when(a.created_at),
                      when(a.updated_at))
    return table


def hypotheses_table(items: list[Hypothesis]) -> Table:
    table = Table(title=f"Hypotheses ({len(items)})")
    _id_column(table, "hypothesis_id", [x.hypothesis_id for x in items])
    for col in ("statement", "status", "traces", "supports", "refutes"):
        table.add_column(col, overflow="fold")
    for h in items:
        table.add_row(plain(h.hypothesis_id), plain(h.statement), badge(h.status),
                      str(len(h.trace_ids)),
                      str(h.supports_count), str(h.refutes_count))
    return table


def issues_table(items: list[Issue]) -> Table:
    table = Table(title=f"Issues ({len(items)}), most traces first")
    _id_column(table, "issue_id", [x.issue_id for x in items])
    for col in ("title", "severity", "status", "traces", "created"):
        table.add_column(col, overflow="fold")
    for i in items:
        table.add_row(plain(i.issue_id), plain(i.title), badge(i.severity, _SEVERITY_STYLE),
                      badge(i.status),
                      str(len(i.trace_ids)), when(i.created_at))
    return table


def evidence_table(entity: Hypothesis | Issue, with_supports: bool) -> Table:
    table = Table(title=f"Evidence ({len(entity.evidence)})", show_edge=False)
    table.add_column("trace_id")
    if with_supports:
        table.add_column("supports")
    table.add_column("rationale", overflow="fold")
    for e in entity.evidence:
        row = [plain(e.trace_id)] + (["yes" if e.supports else "refutes"] if with_supports else [])
        table.add_row(*row, plain(e.rationale))
    return table


def analysis_panel(a: Analysis) -> Panel:
    body = Text.assemble(
        ("Run: ", "bold"), a.run_id, "  ", ("Status: ", "bold"), badge(a.status), "\n",
        ("Created: ", "bold"), when(a.created_at), "  ", ("Updated: ", "bold"), when(a.updated_at),
        "\n\n", a.description or "(no description)",
    )
    return Panel(body, title=plain(f"{a.name} [{a.run_name}]"))


def hypothesis_panel(h: Hypothesis) -> Panel:
    head = Text.assemble(
        ("Status: ", "bold"), badge(h.status), "  ", ("Traces: ", "bold"), str(len(h.trace_ids)),
        "  ", ("Updated: ", "bold"), when(h.updated_at), "\n",
        ("Rationale: ", "bold"), h.rationale or "-", "\n", ("Testing plan: ", "bold"),
        h.testing_plan or "-",
    )
    return Panel(Group(head, evidence_table(h, True)), title=plain(h.statement),
                 subtitle=plain(h.hypothesis_id))


def issue_panel(i: Issue) -> Panel:
    head = Text.assemble(
        ("Severity: ", "bold"), badge(i.severity, _SEVERITY_STYLE), "  ", ("Status: ", "bold"),
        badge(i.status), "  ", ("Traces: ", "bold"), str(len(i.trace_ids)), "\n",
        ("Source run: ", "bold"), i.source_run_id, "  ", ("Hypothesis: ", "bold"),
        i.hypothesis_id or "-", "\n", i.description or "", "\n",
        ("Resolution: ", "bold"), i.resolution or "-",
    )
    return Panel(Group(head, evidence_table(i, False)), title=plain(i.title),
                 subtitle=plain(i.issue_id))


def traces_table(rows: list[dict[str, Any]], total: int) -> Table:
    table = Table(title=f"Traces ({len(rows)} of {total})")
    for col in ("trace_id", "state", "ms", "time", "request", "evidence"):
        table.add_column(col, overflow="fold", max_width=48 if col in ("request", "evidence") else None)
    for r in rows:
        table.add_row(plain(r["trace_id"]), plain(r["state"]), str(r["execution_time_ms"]),
                      when(r["timestamp"]), plain(r["request_preview"]),
                      plain(r["evidence_rationale"]))
    return table


err_console = Console(stderr=True)


def sql_table(columns: list[str], rows: list[list[Any]], limit: int = 200) -> Table:
    table = Table(title=f"{len(rows)} rows" + (f" (first {limit} shown)" if len(rows) > limit else ""))
    for col in columns:
        table.add_column(plain(col), overflow="fold", max_width=60)
    for row in rows[:limit]:
        table.add_row(*[_cell(v) for v in row])
    return table


def _cell(value: Any) -> Text:
    text = "" if value is None else str(value)
    return plain(text if len(text) <= 200 else text[:200] + "...")


def census_view(c: dict[str, Any]) -> Group:
    """A readable summary of the census; --output json has everything."""
    lat = (c.get("latency_ms") or {}).get("all") or {}
    head = Text.assemble(
        ("Traces: ", "bold"), str(c.get("total_traces", 0)), "  ", ("Errors: ", "bold"),
        f"{c.get('error_traces', 0)} ({(c.get('error_rate') or 0):.1%})", "  ",
        ("Latency ms: ", "bold"),
        " ".join(f"{k}={lat.get(k, 0):.0f}" for k in ("p50", "p90", "p95", "p99", "max") if lat.get(k) is not None),
    )
    spans = Table(title="Spans (by error count)")
    for col in ("name", "type", "count", "errors", "error rate", "p50 ms", "p95 ms", "max ms"):
        spans.add_column(col)
    for s in sorted(c.get("spans", []), key=lambda s: -s.get("error_count", 0))[:15]:
        spans.add_row(plain(s["name"]), plain(s.get("span_type")), str(s.get("count")), str(s.get("error_count")),
                      f"{(s.get('error_rate') or 0):.1%}", f"{s.get('p50_ms') or 0:.0f}",
                      f"{s.get('p95_ms') or 0:.0f}", f"{s.get('max_ms') or 0:.0f}")
    errors = Table(title="Top errors")
    for col in ("count", "message", "spans"):
        errors.add_column(col, overflow="fold")
    for e in c.get("errors", [])[:10]:
        errors.add_row(str(e.get("count")), plain(str(e.get("message"))[:160]),
                       plain(", ".join(e.get("span_names", []))))
    parts: list[Any] = [Panel(head, title="Baseline census"), spans, errors]
    sample = c.get("sample") or {}
    if sample.get("sections"):
        parts.insert(1, Text(f"Server aggregates; {', '.join(sample['sections'])} estimated from "
                             f"{sample['traces']} of {sample['of']} traces (x{sample['scale']:g}).",
                             style="yellow"))
    assessments = c.get("assessments") or []
    if assessments:
        table = Table(title="Assessments")
        for col in ("name", "count", "failing", "rule", "values"):
            table.add_column(col)
        for a in assessments:
            table.add_row(plain(a["name"]), str(a.get("count")), str(a.get("failing")),
                          plain((a.get("scale") or {}).get("rule", "")), plain(a.get("values")))
        parts.append(table)
    return Group(*parts)


def cohort_view(stats: dict[str, Any]) -> Table:
    p_value = stats.get("p_value")  # None when the cohort or the control is empty
    p_text = "n/a" if p_value is None else f"{p_value:.3g}"
    table = Table(title=f"Cohort vs control (p={p_text}, "
                        f"difference {stats.get('difference') or 0:+.1%}, 95% CI {stats.get('ci95')})")
    for col in ("group", "traces", "events", "rate", "sample events"):
        table.add_column(col, overflow="fold")
    for side in ("cohort", "control"):
        g = stats[side]
        table.add_row(side, str(g["n"]), str(g["events"]), f"{(g.get('rate') or 0):.1%}",
                      plain(", ".join(g.get("sample_event_trace_ids", [])[:3])))
    return table
