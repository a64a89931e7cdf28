"""The playbook's report (step 2.7): markdown, every statistic computed by a query, with a
latency distribution and an errors-over-time chart as PNG. Saved where the person chose and
logged to the analysis run under ``report/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.plans import Plan

if TYPE_CHECKING:
    from insights.analytics.census_model import Census

TRACE_IDS_SHOWN = 20   # an issue may list 10,000 traces: the report names the first ones
LATENCY_SAMPLE = 10_000  # latencies drawn for the histogram (hashed ids: spread, repeatable)
_FAILURE_BUCKETS = [("fast fails (< 1 s)", 0, 1_000), ("1-10 s", 1_000, 10_000),
                    ("10-30 s", 10_000, 30_000), ("timeouts (>= 30 s)", 30_000, None)]


def write_report(client, experiment_id: str, run_id: str, path: str,
                 usage: dict[str, int] | None = None) -> str:
    """Build the report from what MLflow holds, write it and its charts, log them to the run."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    facts = _facts(client, experiment_id, run_id)
    charts = _charts(client, experiment_id, facts, out)
    out.write_text(render(facts, charts, usage or {}))
    client.mlflow_client.log_artifact(run_id, str(out), "report")
    for chart in charts.values():
        client.mlflow_client.log_artifact(run_id, chart, "report")
    return str(out)


def _facts(client, experiment_id: str, run_id: str) -> dict[str, Any]:
    sql = lambda q: client.execute_sql(experiment_id, q)  # noqa: E731
    analysis = client.get_analysis(run_id)
    hypotheses = client.list_hypotheses(run_id)
    issues = sorted((i for i in client.list_issues(experiment_id) if i.seen_by(run_id)),
                    key=lambda i: -i.trace_count)   # most affected traces first, true counts
    row = sql("SELECT count(*), sum(CASE WHEN state = 'OK' THEN 1 ELSE 0 END), "
              "avg(CASE WHEN state = 'OK' THEN execution_time_ms END), "
              "percentile_approx(CASE WHEN state = 'OK' THEN execution_time_ms END, 0.5), "
              "percentile_approx(CASE WHEN state = 'OK' THEN execution_time_ms END, 0.95) "
              "FROM traces").rows[0]
    buckets = []
    for label, lo, hi in _FAILURE_BUCKETS:
        cond = f"execution_time_ms >= {lo}" + (f" AND execution_time_ms < {hi}" if hi else "")
        buckets.append((label, sql(f"SELECT count(*) FROM traces WHERE state = 'ERROR' AND {cond}").rows[0][0]))
    linked = client.linked_trace_ids(run_id, max_results=10_000)
    examples = _examples(client, experiment_id, issues)
    census = _census(client, run_id)
    return {"analysis": analysis, "hypotheses": hypotheses, "issues": issues, "total": row[0] or 0,
            "ok": row[1] or 0, "ok_avg": row[2], "ok_p50": row[3], "ok_p95": row[4],
            "failure_buckets": buckets, "linked": len(linked), "examples": examples,
            "census": census, "tracking_uri": client.tracking_uri, "experiment_id": experiment_id}


def _census(client, run_id: str) -> Census | None:
    from insights.errors import NotFoundError

    try:
        return client.get_baseline_census(run_id)
    except NotFoundError:
        return None


def _examples(client, experiment_id: str, issues) -> dict[str, list[dict[str, Any]]]:
    """Input/output excerpts of the first two evidence traces of each issue (one query)."""
    wanted = {i.issue_id: i.trace_ids[:2] for i in issues}
    ids = sorted({t for ts in wanted.values() for t in ts})
    if not ids:
        return {}
    quoted = ", ".join("'" + t.replace("'", "''") + "'" for t in ids)
    rows = client.execute_sql(experiment_id, "SELECT trace_id, request, response FROM traces "
                              f"WHERE trace_id IN ({quoted})").rows
    by_id = {r[0]: {"trace_id": r[0], "request": _clip(r[1]), "response": _clip(r[2])} for r in rows}
    return {iid: [by_id[t] for t in ts if t in by_id] for iid, ts in wanted.items()}


def _charts(client, experiment_id: str, facts: dict[str, Any], out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = out.with_suffix("")
    charts = {}
    latencies = [ms / 1000 for ms in latency_sample(client, experiment_id)]
    if latencies:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        # one filled outline rather than 40 bar patches: the same picture at ~2/3 of the cost
        ax.hist(latencies, bins=40, color="#3b6ea8", histtype="stepfilled")
        ax.set_xlabel("latency (s)")
        ax.set_ylabel("traces")
        ax.set_title("Latency distribution")
        charts["latency"] = f"{stem}-latency.png"
        fig.tight_layout()
        fig.savefig(charts["latency"], dpi=110)
        plt.close(fig)
    timeline = facts["census"].time_buckets if facts.get("census") else None
    buckets = timeline.buckets if timeline else []
    if buckets:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        import datetime as dt

        # filled steps, one patch per series: a bar per bucket made the chart ~2x slower
        edges_ms, series = timeline_steps(buckets, timeline.granularity)
        edges = [dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc) for ms in edges_ms]
        for field, color in (("traces", "#c9d6e8"), ("errors", "#c0392b")):
            ax.stairs(series[field], edges, fill=True, color=color, label=field)
        ax.set_xlabel(f"time (UTC, per {timeline.granularity})")
        fig.autofmt_xdate()
        ax.set_title("Traces and errors over time")
        ax.legend(loc="upper left")  # "best" searches the plotted data for a free spot: slow
        charts["errors"] = f"{stem}-errors-over-time.png"
        fig.tight_layout()
        fig.savefig(charts["errors"], dpi=110)
        plt.close(fig)
    return charts


def timeline_steps(buckets: list, granularity: str) -> tuple[list[int], dict[str, list[int]]]:
    """The edges (epoch ms) of every bucket from the first to the last, and the trace and error
    counts in each: the census lists only the buckets that have traces, and a step chart drawn
    from those alone would stretch a count over the empty hours after it."""
    step = 86_400_000 if granularity == "day" else 3_600_000
    starts = range(buckets[0].start_ms, buckets[-1].start_ms + step, step)
    by_start = {b.start_ms: b for b in buckets}
    series = {field: [getattr(by_start[ms], field) if ms in by_start else 0 for ms in starts]
              for field in ("traces", "errors")}
    return [*starts, starts[-1] + step], series


def latency_sample(client, experiment_id: str, n: int = LATENCY_SAMPLE) -> list[int]:
    """Up to ``n`` trace latencies (ms) for the histogram, spread over the whole experiment
    and the same on every call: ordered by a hash of the trace id, since query results stop at
    a row limit and the first rows an engine returns are those it stored first."""
    return [r[0] for r in client.execute_sql(
        experiment_id, "SELECT execution_time_ms FROM traces WHERE execution_time_ms IS NOT NULL "
        f"ORDER BY hash(trace_id) LIMIT {int(n)}", max_rows=n).rows]


def render(f: dict[str, Any], charts: dict[str, str], usage: dict[str, int]) -> str:
    a, hyps, issues = f["analysis"], f["hypotheses"], f["issues"]
    tested = [h for h in hyps if h.status.value != "TESTING"]
    validated = [h for h in hyps if h.status.value == "VALIDATED"]
    rejected = [h for h in hyps if h.status.value == "REJECTED"]
    by_id = {h.hypothesis_id: h for h in hyps}
    total, ok = f["total"], f["ok"]
    ui = f"{f['tracking_uri']}#/experiments/{f['experiment_id']}/runs/{a.run_id}"
    lines = [
        f"# {a.name}", "",
        "## Analysis run", "",
        f"- Run: `{a.run_id}` ({a.run_name}); MLflow UI: {ui}",
        f"- Hypotheses: {len(hyps)} created, {len(tested)} tested "
        f"({len(validated)} validated, {len(rejected)} rejected)",
        f"- Issues: {len(issues)} identified "
        f"({sum(1 for i in issues if (i.metadata or {}).get('review') == 'accepted')} accepted, "
        f"{sum(1 for i in issues if i.status.value == 'REJECTED')} rejected)",
        f"- Description: {a.description}",
    ]
    if usage.get("model_calls"):
        lines.append(f"- Model usage: {usage['model_calls']} calls, {usage.get('tokens', 0)} tokens")
    lines += _since_section((a.metadata or {}).get("changes"))
    lines += ["", "## Summary statistics", "",
              f"- {_traces_label(a.metadata or {})}: {total}; traces examined and linked to the run: {f['linked']}",
              f"- Success rate: {ok / max(total, 1):.1%} OK, {(total - ok) / max(total, 1):.1%} ERROR",
              f"- Latency of successful traces: average {_s(f['ok_avg'])}, median {_s(f['ok_p50'])}, "
              f"p95 {_s(f['ok_p95'])}",
              "- Errors by duration: " + ", ".join(f"{label}: {n}" for label, n in f["failure_buckets"]),
              ""]
    for key, title in (("latency", "Latency distribution"), ("errors", "Errors over time")):
        if key in charts:
            lines += [f"![{title}]({os.path.basename(charts[key])})", ""]
    quality = [i for i in issues if _is_quality(i, by_id)]
    operational = [i for i in issues if i not in quality]
    lines += _issue_section("Operational issues", operational, by_id, f["examples"])
    lines += _issue_section("Quality issues", quality, by_id, f["examples"])
    lines += ["## Refuted hypotheses", ""]
    lines += [f"- {h.statement}: {(h.metadata or {}).get('verdict_reason') or (h.metadata or {}).get('abandoned_by', 'rejected')}"
              for h in rejected] or ["- none"]
    untested = [h for h in hyps if h.status.value == "TESTING"]
    if untested:
        lines += ["", "## Hypotheses not tested", ""]
        lines += [f"- {h.statement}: {_why_untested(h)}" for h in untested]
    lines += ["", "## Strengths", ""] + _strengths(f) + ["", "## Recommendations", ""]
    lines += [f"- {_recommendation(i)}" for i in issues if i.status.value != "REJECTED"] or ["- none"]
    lines += ["", "## Next steps", "", "```bash",
              f"mlflow-insights preview-issues --experiment-id {f['experiment_id']} --max-traces 1000",
              f"mlflow-insights list-hypotheses --run-id {a.run_id}", "```", ""]
    return "\n".join(lines)


def _traces_label(meta: dict[str, Any]) -> str:
    """An incremental analysis counts only its window's traces: say so."""
    since = (meta.get("window") or {}).get("since_ms")
    if since is None:
        return "Traces in the experiment"
    import datetime as dt

    when = dt.datetime.fromtimestamp(since / 1000, dt.timezone.utc).isoformat(timespec="seconds")
    return f"Traces analyzed (those since {when})"


def _since_section(changes: dict[str, Any] | None) -> list[str]:
    """"Since the last analysis": what changed against the previous analysis's census."""
    if not changes:
        return []
    lines = ["", "## Since the last analysis", "",
             f"Compared with analysis `{changes.get('previous_run_id')}`.", ""]
    for name, before, after, change in change_rows(changes):
        if not before:
            lines.append(f"- {name}: {after}")
        else:
            lines.append(f"- {name}: {before} -> {after}" + (f" ({change})" if change else ""))
    return lines


def change_rows(changes: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, before, now, change) rows, shared by the report and the CLI summary."""
    traces = changes.get("traces") or {}
    rows = [("traces", str(traces.get("before")), str(traces.get("after")), "")]
    rows.append(("error rate", *_triple(changes.get("error_rate"), _pct, _pp)))
    for p, delta in (changes.get("latency_ms") or {}).items():
        rows.append((f"latency {p}", *_triple(delta, _s, lambda d: _signed_s(d))))
    if changes.get("tokens_per_trace"):
        rows.append(("tokens per trace", *_triple(changes["tokens_per_trace"], _num,
                                                  lambda d: f"{d:+,.0f}")))
    rows.append(("new error types", "", ", ".join(changes.get("new_error_types") or []) or "none",
                 ""))
    rows.append(("new tools", "", ", ".join(changes.get("new_tools") or []) or "none", ""))
    return rows


def _triple(delta: dict[str, Any] | None, show, show_change) -> tuple[str, str, str]:
    delta = delta or {}
    change = delta.get("change")
    return (show(delta.get("before")), show(delta.get("after")),
            "n/a" if change is None else show_change(change))


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _pp(d: float) -> str:
    return f"{d * 100:+.1f} points"


def _signed_s(ms: float) -> str:
    return f"{ms / 1000:+.2f} s"


def _num(x) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def _issue_section(title: str, issues, by_id, examples) -> list[str]:
    lines = [f"## {title}", ""]
    if not issues:
        return lines + ["- none", ""]
    for i in issues:
        h = _hypothesis(i, by_id)
        merged = [m for m in (i.metadata or {}).get("merged_findings") or [] if isinstance(m, dict)]
        lines += [f"### [{i.severity.value}] {i.title}", "",
                  f"- Status: {i.status.value}; review: {(i.metadata or {}).get('review', 'pending')}",
                  f"- Validated hypothesis: {h.statement if h else 'n/a (census fact)'}",
                  f"- Affected traces: {i.trace_count}",
                  f"- Root cause and numbers: {_main_text(i.description)}"]
        lines += _lifecycle_lines(i.metadata or {})
        if merged:
            lines.append("- Also seen as: " + "; ".join(
                f"{m.get('title')} ({m.get('source', 'finding')})" for m in merged))
        if h and h.metrics.get("cohort"):
            c, k = h.metrics["cohort"], h.metrics["control"]
            lines.append(f"- Quantitative evidence: {c['events']}/{c['n']} vs {k['events']}/{k['n']}, "
                         f"p={h.metrics.get('p_value', 1):.2g}, 95% CI of the difference "
                         f"{_ci(h.metrics.get('ci95'))}")
        for ex in examples.get(i.issue_id, []):
            lines.append(f"- Example `{ex['trace_id']}`: input {ex['request']!r} -> output {ex['response']!r}")
        ids = i.trace_ids
        more = (f" ... and {i.trace_count - TRACE_IDS_SHOWN} more (listed on the issue)"
                if i.trace_count > TRACE_IDS_SHOWN else "")
        lines += [f"- Trace IDs: {', '.join(ids[:TRACE_IDS_SHOWN])}{more}", ""]
    return lines


def _lifecycle_lines(meta: dict[str, Any]) -> list[str]:
    """An issue's life across analyses: a regression or a reopened rejection says what
    changed; an issue seen before says by how many analyses."""
    lines = []
    events = [h for h in meta.get("history") or []
              if isinstance(h, dict) and h.get("event") in ("regressed", "reopened")]
    if events:
        last = events[-1]
        label = "Regression" if last["event"] == "regressed" else "Reopened"
        lines.append(f"- {label}: {last.get('change') or 'seen again'}")
    analyses = [a for a in meta.get("analyses") or [] if a]
    if len(analyses) > 1:
        lines.append(f"- Seen by {len(analyses)} analyses (this one included)")
    return lines


def _hypothesis(issue, by_id):
    """The validated hypothesis an issue stands for (kept in its metadata when it took over a
    census issue it was merged with)."""
    return by_id.get(issue.hypothesis_id or (issue.metadata or {}).get("hypothesis_id") or "")


def _main_text(description: str) -> str:
    """The description without its "Also seen as" paragraph (the report lists those apart)."""
    return " ".join(description.split("\n\nAlso seen as: ")[0].split())


def _why_untested(h) -> str:
    meta = h.metadata or {}
    return (meta.get("untestable") or meta.get("offline_untestable")
            or "added after testing; resume the analysis to plan and test it")


def _strengths(f) -> list[str]:
    spans = f["census"].spans if f.get("census") else []
    clean = [s.name for s in spans if s.span_type == "TOOL" and not s.error_count]
    out = []
    if clean:
        out.append(f"- Tools with no failures: {', '.join(clean)}")
    ok_rate = f["ok"] / max(f["total"], 1)
    if ok_rate >= 0.95:
        out.append(f"- {ok_rate:.1%} of traces succeed")
    return out or ["- none stood out"]


def _recommendation(issue) -> str:
    text = issue.title.lower()
    if "fail" in text or "error" in text:
        advice = "add retries with backoff and a fallback for the failing step, and alert on its error rate"
    elif "slow" in text or "latency" in text or "take" in text:
        advice = "set a timeout and trim or chunk long inputs before the slow step"
    elif "empty" in text:
        advice = "guard against empty answers and add a regression test for these requests"
    else:
        advice = "review the evidence traces and add an evaluation that tracks it"
    return f"{issue.title}: {advice}."


def _is_quality(issue, by_id) -> bool:
    h = _hypothesis(issue, by_id)
    if h is None:
        return False
    if (h.metadata or {}).get("kind") == "quality":
        return True
    raw = (h.metadata or {}).get("plan")
    return bool(raw) and ("assessments" in Plan.model_validate(raw).outcome or
                          "response" in Plan.model_validate(raw).outcome)


def _s(ms) -> str:
    return "n/a" if ms is None else f"{ms / 1000:.2f} s"


def _ci(ci) -> str:
    return f"[{ci[0]:+.1%}, {ci[1]:+.1%}]" if ci else "n/a"


def _clip(text, limit: int = 160) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[:limit] + "..."
