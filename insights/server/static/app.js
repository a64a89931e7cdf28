// MLflow Insights UI: plain ES module, no build step. Talks only to the Agentic REST API.
// Routes (hash): #/issues, #/issues/{issue_id}, #/runs, #/runs/{run_id}; ?exp=ID selects the experiment.
// All untrusted text (titles, rationales, span inputs) is set with textContent, never innerHTML.

const API = new URL("../api/3.0/mlflow/traces/insights/agentic/", document.baseURI).pathname;
const SEVERITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW"];
const ISSUE_STATUSES = ["OPEN", "IN_PROGRESS", "RESOLVED", "REJECTED"];
const RUN_ICONS = { ACTIVE: "●", COMPLETED: "✓", ARCHIVED: "▣" };
const PAGE_SIZE = 25;
const HYP_PAGE = 20;
const LIVE_WINDOW_MS = 10000;

const state = { config: { refresh_ms: 1500, mlflow_ui_url: null }, exp: null, experiments: [], timer: null, view: 0 };

// ------------------------------------------------------------------ helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k === "style") el.style.cssText = String(v); // CSSOM: allowed by the CSP, unlike a style attribute
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, body = {}) {
  const res = await fetch(API + path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  let data = null;
  try { data = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) {
    const msg = (data && (data.message || (data.error && data.error.message))) || `HTTP ${res.status}`;
    const err = new Error(msg); err.status = res.status; err.code = data && data.error_code; throw err;
  }
  return data;
}

function fmtTime(ms) {
  if (!ms) return "—";
  return new Date(ms).toLocaleString(undefined, { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s ago`; if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`; return `${Math.round(s / 86400)}d ago`;
}
const badge = (kind, value) => h("span", { class: `badge ${kind}-${value}`, "data-testid": `${kind}-badge` }, value.replace("_", " "));
const short = (id) => (id || "").slice(0, 10);

function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const t = h("div", { class: `toast ${kind}` }, message);
  box.append(t);
  setTimeout(() => t.remove(), 5000);
}

function traceUrl(traceId, exp) {
  const base = state.config.mlflow_ui_url;
  if (base === null || base === undefined) return null;
  return `${base}/#/experiments/${encodeURIComponent(exp || state.exp)}/traces?selectedEvaluationId=${encodeURIComponent(traceId)}`;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/issues";
  const [path, query] = raw.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  return { parts, params };
}
function link(path, params = {}) {
  const p = new URLSearchParams({ exp: state.exp || "", ...params });
  return `#${path}?${p.toString()}`;
}
function setHashParams(params) {
  const { parts, params: cur } = parseHash();
  for (const [k, v] of Object.entries(params)) { if (v === "" || v === null || v === undefined) cur.delete(k); else cur.set(k, v); }
  location.hash = `#/${parts.join("/")}?${cur.toString()}`;
}

function stopPolling() { if (state.timer) { clearTimeout(state.timer); state.timer = null; } }

function showError(container, err) {
  container.replaceChildren(h("div", { class: "error-box", role: "alert" }, `Error: ${err.message}`));
}

async function withBusy(button, fn) {
  button.disabled = true;
  try { return await fn(); } catch (e) { toast(e.message, "error"); return null; } finally { button.disabled = false; }
}

// ------------------------------------------------------------------ span viewer (lazy)

function evidenceItem(e, exp, opts = {}) {
  const spansBox = h("div", { class: "spans", hidden: true });
  const btn = h("button", { class: "secondary", type: "button", "aria-expanded": "false", "data-testid": "show-spans" }, "Show spans");
  let loaded = false;
  btn.addEventListener("click", async () => {
    const open = btn.getAttribute("aria-expanded") === "true";
    btn.setAttribute("aria-expanded", String(!open));
    btn.textContent = open ? "Show spans" : "Hide spans";
    spansBox.hidden = open;
    if (!open && !loaded) {
      spansBox.replaceChildren(h("span", { class: "muted" }, "Loading spans…"));
      try { renderSpans(spansBox, await api("traces/get", { trace_id: e.trace_id })); loaded = true; }
      catch (err) { showError(spansBox, err); }
    }
  });
  const url = traceUrl(e.trace_id, exp);
  const supports = opts.showSupport ? (e.supports ? h("span", { class: "sup" }, "▲ supports") : h("span", { class: "ref" }, "▼ refutes")) : null;
  return h("li", { "data-trace-id": e.trace_id, "data-supports": String(e.supports !== false) },
    h("div", { class: "meta" },
      opts.pick ? opts.pick(e.trace_id) : null,
      supports,
      url ? h("a", { class: "mono", href: url, target: "_blank", rel: "noopener" }, e.trace_id, h("span", { class: "sr-only" }, " (opens the MLflow UI)"))
        : h("span", { class: "mono" }, e.trace_id),
      e.added_at ? h("span", { class: "muted" }, fmtTime(e.added_at)) : null,
      btn),
    h("div", {}, e.rationale || h("span", { class: "muted" }, "(no rationale)")),
    spansBox);
}

function renderSpans(box, data) {
  const t = data.trace || {};
  const head = h("div", { class: "muted" }, `${data.span_count} spans · status ${t.status || "?"} · ${t.execution_time_ms ?? "?"} ms`);
  const list = data.spans.map((s) => {
    const io = [];
    if (s.inputs) io.push(h("div", {}, h("span", { class: "muted" }, "inputs"), h("pre", {}, s.inputs)));
    if (s.outputs) io.push(h("div", {}, h("span", { class: "muted" }, "outputs"), h("pre", {}, s.outputs)));
    for (const x of s.exceptions || []) io.push(h("div", { class: "ref" }, `exception: ${x}`));
    const body = io.length ? h("details", {}, h("summary", {}, "inputs / outputs"), io) : null;
    return h("div", { class: `span span-${s.status}`, style: `margin-left:${Math.min(s.depth, 12) * 1.1}rem` },
      h("span", { class: "name" }, s.name), " ",
      h("span", { class: "muted" }, `${s.span_type || ""} · ${s.status || ""} · +${s.start_offset_ms ?? 0} ms · ${s.duration_ms ?? "?"} ms`),
      body);
  });
  box.replaceChildren(head, ...list);
}

function exportPanel(container, result) {
  const area = h("textarea", { "aria-label": "Exported text", readonly: true }); area.value = result.markdown;
  const blob = new Blob([result.markdown], { type: "text/markdown" });
  const dl = h("a", { class: "button secondary", href: URL.createObjectURL(blob), download: result.filename }, "Download");
  const copy = h("button", { type: "button", class: "secondary", onclick: async () => {
    try { await navigator.clipboard.writeText(result.markdown); toast("Copied to the clipboard"); }
    catch (e) { area.select(); toast("Select-all done: press Ctrl+C to copy"); }
  } }, "Copy");
  container.replaceChildren(h("div", { class: "panel export" }, h("h2", {}, `Export: ${result.filename}`), area, h("div", { class: "actions" }, copy, dl)));
}

// ------------------------------------------------------------------ triage helpers

const day = (ms) => new Date(ms).toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short" });
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

// The badge of an issue's last recheck (metadata.last_check, written by `recheck`).
function checkText(c) {
  const since = c.since ? day(c.since) : "?";
  if (c.result === "still present") return `still present, ${plural(c.count ?? 0, "trace")} since ${since}`;
  if (c.result === "worse") {
    const x = c.rate && c.earlier_rate ? ` (${(c.rate / c.earlier_rate).toFixed(1)}× the earlier rate)` : "";
    return `worse: ${plural(c.count ?? 0, "trace")} since ${since}${x}`;
  }
  if (c.result === "not seen") return `not seen since ${since}`;
  if (c.result === "no new traces") return `no new traces since ${since}`;
  return `recheck ${c.result}${c.error ? `: ${c.error}` : ""}`;
}
function checkBadge(issue) {
  const c = issue.metadata && issue.metadata.last_check;
  if (!c || typeof c !== "object" || !c.result) return null;
  return h("span", { class: `check check-${String(c.result).replace(/\W+/g, "-")}`, "data-testid": "check-badge", title: `Rechecked ${fmtTime(c.at)}` }, checkText(c));
}

async function runRecheck(button, issueIds, after) {
  return withBusy(button, async () => {
    const body = { experiment_id: state.exp };
    if (issueIds && issueIds.length) body.issue_ids = issueIds;
    const res = await api("issues/recheck", body);
    if (!res.results.length) toast("Nothing to recheck: only OPEN issues with a signature (found by an analysis) are rechecked");
    else {
      const by = {};
      for (const r of res.results) by[r.result] = (by[r.result] || 0) + 1;
      toast(`Rechecked ${plural(res.results.length, "issue")}: ` + Object.entries(by).map(([k, n]) => `${n} ${k}`).join(", "));
    }
    await after(res);
  });
}

async function reviewIssue(button, issue, decision, after) {
  return withBusy(button, async () => {
    const res = await api("issues/review", { issue_id: issue.issue_id, experiment_id: state.exp, decision });
    toast(decision === "accept" ? `Accepted: ${issue.title}` : `Rejected: ${issue.title}`);
    await after(res.issue);
  });
}

function reviewButtons(issue, after) {
  const acc = h("button", { type: "button", class: "secondary small", "data-action": "accept", "aria-label": `Accept issue: ${issue.title}` }, "✓ Accept");
  const rej = h("button", { type: "button", class: "danger small", "data-action": "reject", "aria-label": `Reject issue: ${issue.title}` }, "✗ Reject");
  acc.addEventListener("click", () => reviewIssue(acc, issue, "accept", after));
  rej.addEventListener("click", () => reviewIssue(rej, issue, "reject", after));
  if (issue.status === "REJECTED") rej.disabled = true;
  if (issue.metadata && issue.metadata.review === "accepted" && issue.status !== "REJECTED") acc.disabled = true;
  return [acc, rej];
}

// An issue's history: creation, then metadata.history (analyses, merges, rechecks, regressions,
// status/severity changes, reviews), oldest first.
function timelineEntry(x, issue) {
  const n = x.numbers || {};
  const runLink = (id) => id ? h("a", { href: link(`/runs/${id}`) }, id === issue.source_run_id && issue.source_run_name ? issue.source_run_name : short(id)) : null;
  const share = typeof n.share === "number" ? ` (${(n.share * 100).toFixed(1)}% of ${n.total_traces ?? "?"})` : "";
  const traces = n.trace_count !== undefined ? `${plural(n.trace_count, "trace")}${share}` : "";
  const by = x.by ? ` by ${x.by}` : "";
  switch (x.event) {
    case "created": return ["Created", " from analysis ", runLink(x.run_id)];
    case "seen": return ["Seen by analysis ", runLink(x.run_id), traces ? `: ${traces}` : "", x.status ? ` (left ${x.status})` : ""];
    case "merged": return ["Merged a finding", x.key ? ` (${x.key})` : "", " from analysis ", runLink(x.run_id), traces ? `: ${traces}` : ""];
    case "regressed": return [h("strong", { class: "ref" }, "Regression"), ": was resolved, back in analysis ", runLink(x.run_id), x.change ? ` (${x.change})` : ""];
    case "reopened": return [h("strong", {}, "Reopened"), " by analysis ", runLink(x.run_id), x.change ? ` (${x.change})` : ""];
    case "recheck": return ["Recheck: ", h("strong", {}, checkText({ result: x.result, ...(x.numbers || {}) }))];
    case "status": case "severity": return [`${x.event === "status" ? "Status" : "Severity"} `, h("strong", {}, String(x.from ?? "?").replace("_", " ")), " → ", h("strong", {}, String(x.to ?? "?").replace("_", " ")), by, x.run_id ? [" (analysis ", runLink(x.run_id), ")"] : ""];
    case "accepted": case "rejected": return [h("strong", { class: x.event === "rejected" ? "ref" : "sup" }, x.event === "accepted" ? "Accepted" : "Rejected"), by, x.from !== x.to ? ` (${x.from} → ${x.to})` : "", x.reason ? `: ${x.reason}` : ""];
    default: return [String(x.event || "event"), x.run_id ? [" · analysis ", runLink(x.run_id)] : "", traces ? `: ${traces}` : ""];
  }
}
function timeline(issue) {
  const hist = ((issue.metadata && issue.metadata.history) || []).filter((x) => x && typeof x === "object");
  const items = [{ at: issue.created_at, event: "created", run_id: issue.source_run_id }, ...hist]
    .map((x, i) => [x, i]).sort((a, b) => ((a[0].at || 0) - (b[0].at || 0)) || (a[1] - b[1])).map(([x]) => x);
  return h("ol", { class: "timeline", "data-testid": "timeline" }, items.map((x) =>
    h("li", { "data-testid": "timeline-item", "data-event": x.event || "" },
      h("time", { class: "muted", datetime: x.at ? new Date(x.at).toISOString() : "" }, fmtTime(x.at)), " ",
      h("span", {}, timelineEntry(x, issue)))));
}

// Supporting / refuting filter over evidence lists (li[data-supports]) below `scope`.
function evidenceFilter(id, scope, evidence) {
  const sup = evidence.filter((e) => e.supports !== false).length; const ref = evidence.length - sup;
  return h("label", { class: "ev-filter" }, "Show ",
    h("select", { id, onchange: (ev) => { scope.dataset.filter = ev.target.value; } },
      h("option", { value: "all" }, `All evidence (${evidence.length})`),
      h("option", { value: "supports" }, `Supporting (${sup})`),
      h("option", { value: "refutes" }, `Refuting (${ref})`)));
}

// Two evidence traces side by side: spans aligned by their name path.
function comparePicker() {
  const picked = [];
  const panel = h("div", { class: "compare-box", "data-testid": "compare" });
  const button = h("button", { type: "button", class: "secondary", id: "compare-btn", disabled: true }, "Compare 2 selected traces");
  const note = h("span", { class: "muted", "data-testid": "compare-note" }, "Tick two traces below to compare them");
  const sync = () => {
    button.disabled = picked.length !== 2;
    note.textContent = picked.length === 2 ? "Ready to compare" : `Tick ${2 - picked.length} more trace${picked.length === 1 ? "" : "s"} below to compare`;
  };
  const box = (traceId) => {
    const cb = h("input", { type: "checkbox", class: "compare-pick", value: traceId, "aria-label": `Compare trace ${traceId}` });
    cb.addEventListener("change", () => {
      const i = picked.indexOf(cb);
      if (cb.checked && i < 0) { picked.push(cb); if (picked.length > 2) { const old = picked.shift(); old.checked = false; } }
      if (!cb.checked && i >= 0) picked.splice(i, 1);
      sync();
    });
    return h("label", { class: "pick" }, cb, " compare");
  };
  button.addEventListener("click", () => withBusy(button, async () => {
    panel.replaceChildren(h("p", { class: "muted" }, "Loading both traces…"));
    const [a, b] = await Promise.all(picked.map((cb) => api("traces/get", { trace_id: cb.value })));
    renderCompare(panel, a, b);
    panel.scrollIntoView({ block: "start" });
  }));
  return { box, button, note, panel };
}

function keyedSpans(spans) {
  const path = {}; const seen = {}; const out = new Map(); const childSum = {};
  for (const s of spans) if (s.parent_id && s.duration_ms != null) childSum[s.parent_id] = (childSum[s.parent_id] || 0) + s.duration_ms;
  for (const s of spans) { // depth-first, parents first
    let p = s.parent_id && path[s.parent_id] ? `${path[s.parent_id]} / ${s.name}` : s.name;
    seen[p] = (seen[p] || 0) + 1; if (seen[p] > 1) p = `${p} #${seen[p]}`;
    path[s.span_id] = p;
    out.set(p, { ...s, self_ms: s.duration_ms == null ? null : Math.max(0, s.duration_ms - (childSum[s.span_id] || 0)) });
  }
  return out;
}

function renderCompare(panel, ta, tb) {
  const A = keyedSpans(ta.spans); const B = keyedSpans(tb.spans);
  const order = [...A.keys()];
  let prev = null;
  for (const k of B.keys()) { if (!A.has(k)) order.splice(prev === null ? 0 : order.indexOf(prev) + 1, 0, k); prev = k; }
  let worst = null; let worstDelta = 0;
  const rows = order.map((k) => {
    const a = A.get(k); const b = B.get(k);
    const why = [];
    if (!a || !b) why.push(a ? "only in A" : "only in B");
    else {
      if (a.status !== b.status) why.push(`status ${a.status} vs ${b.status}`);
      if ((a.exceptions || []).length !== (b.exceptions || []).length) why.push("exceptions differ");
      const d = Math.abs((a.self_ms ?? 0) - (b.self_ms ?? 0));
      if (d > worstDelta) { worstDelta = d; worst = k; }
    }
    return { k, a, b, why };
  });
  for (const r of rows) if (r.k === worst && worstDelta > 0) r.why.push(`largest time difference (${worstDelta.toFixed(1)} ms own time)`);
  const side = (s) => {
    if (!s) return h("div", { class: "cmp-cell missing" }, "—");
    const io = [];
    if (s.inputs) io.push(h("div", {}, h("span", { class: "muted" }, "inputs"), h("pre", {}, s.inputs)));
    if (s.outputs) io.push(h("div", {}, h("span", { class: "muted" }, "outputs"), h("pre", {}, s.outputs)));
    for (const x of s.exceptions || []) io.push(h("div", { class: "ref" }, `exception: ${x}`));
    return h("div", { class: `cmp-cell span-${s.status}` },
      h("span", { class: `badge st-${s.status === "ERROR" ? "REJECTED" : "RESOLVED"}` }, s.status || "?"), " ",
      h("span", { class: "count" }, `${s.duration_ms ?? "?"} ms`), h("span", { class: "muted" }, ` (own ${s.self_ms == null ? "?" : s.self_ms.toFixed(1)} ms)`),
      io.length ? h("details", {}, h("summary", {}, "inputs / outputs"), io) : null);
  };
  const head = (label, t) => h("div", { class: "cmp-cell cmp-head" }, h("strong", {}, label), " ", h("span", { class: "mono" }, t.trace.trace_id),
    h("div", { class: "muted" }, `${t.trace.status || "?"} · ${t.trace.execution_time_ms ?? "?"} ms · ${t.span_count} spans`));
  const diffs = rows.filter((r) => r.why.length).length;
  panel.replaceChildren(h("div", { class: "panel" },
    h("h2", {}, "Compare traces"),
    h("p", { class: "muted", "data-testid": "compare-summary" }, `${order.length} aligned spans, ${plural(diffs, "difference")} highlighted`),
    h("div", { class: "cmp", role: "table", "aria-label": "Spans of the two traces" },
      h("div", { class: "cmp-row", role: "row" }, h("div", { class: "cmp-cell cmp-head", role: "columnheader" }, "Span"), head("A", ta), head("B", tb)),
      rows.map((r) => h("div", { class: `cmp-row${r.why.length ? " diff" : ""}`, role: "row", "data-testid": "compare-row", "data-path": r.k, "data-diff": r.why.join("; ") },
        h("div", { class: "cmp-cell", role: "cell", style: `padding-left:${Math.min((r.a || r.b).depth, 10) * 0.9 + 0.7}rem` },
          h("span", { class: "name" }, (r.a || r.b).name), r.why.length ? h("div", { class: "why" }, "⚑ ", r.why.join("; ")) : null),
        side(r.a), side(r.b))))));
}

function pagerNav(pageNo, size, shown, total, hasNext, go, testid) {
  const first = total ? (pageNo - 1) * size + 1 : 0; const last = first + shown - (shown ? 1 : 0);
  return h("nav", { class: "pager", "aria-label": "Pages" },
    h("button", { type: "button", class: "secondary", disabled: pageNo <= 1, onclick: () => go(pageNo - 1) }, "← Previous"),
    h("span", { "data-testid": testid }, `${first}–${last} of ${total}`),
    h("button", { type: "button", class: "secondary", disabled: !hasNext, onclick: () => go(pageNo + 1) }, "Next →"));
}

// ------------------------------------------------------------------ issues list

async function issuesPage(main, params) {
  const sort = params.get("sort") || "trace_count";
  const sev = params.get("severity") || ""; const st = params.get("status") || "";
  const from = params.get("from") || ""; const to = params.get("to") || "";
  const pageNo = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);

  const sel = (id, label, value, options, key) => h("label", {}, label,
    h("select", { id, onchange: (ev) => setHashParams({ [key]: ev.target.value, page: "" }) },
      options.map(([v, t]) => h("option", { value: v, selected: v === value }, t))));
  const dateIn = (id, label, value, key) => h("label", {}, label,
    h("input", { id, type: "date", value, onchange: (ev) => setHashParams({ [key]: ev.target.value, page: "" }) }));
  const controls = h("form", { class: "controls", "aria-label": "Sort and filter issues", onsubmit: (e) => e.preventDefault() },
    sel("sort", "Sort by", sort, [["trace_count", "Trace count"], ["severity", "Severity"], ["created_at", "Created (newest)"], ["status", "Status"]], "sort"),
    sel("filter-severity", "Severity", sev, [["", "All"], ...SEVERITIES.map((s) => [s, s])], "severity"),
    sel("filter-status", "Status", st, [["", "All"], ...ISSUE_STATUSES.map((s) => [s, s.replace("_", " ")])], "status"),
    dateIn("from", "Created from", from, "from"), dateIn("to", "Created to", to, "to"),
    h("button", { type: "button", class: "secondary", onclick: () => { location.hash = link("/issues"); } }, "Clear"));
  const results = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading issues…"));
  main.replaceChildren(h("h1", {}, "Issues"), controls, results);

  const body = { experiment_id: state.exp, sort_by: sort, max_results: PAGE_SIZE, page_token: String((pageNo - 1) * PAGE_SIZE) };
  if (sev) body.severity = [sev]; if (st) body.status = [st];
  if (from) body.created_after = new Date(`${from}T00:00:00`).getTime();
  if (to) body.created_before = new Date(`${to}T00:00:00`).getTime() + 86400000;
  let data;
  try { data = await api("issues/list", body); } catch (e) { showError(results, e); return; }

  if (!data.issues.length) {
    results.replaceChildren(h("p", { class: "muted", "data-testid": "empty" }, data.total_count ? "No issues match these filters." : "No issues in this experiment yet."));
    return;
  }
  // selection and bulk actions
  const selected = new Set();
  const boxes = [];
  const countLbl = h("span", { "data-testid": "selected-count", "aria-live": "polite" }, "0 selected");
  const bulkStatus = h("select", { id: "bulk-status", "aria-label": "Set status of the selected issues" }, h("option", { value: "" }, "Status: keep"), ISSUE_STATUSES.map((x) => h("option", { value: x }, x.replace("_", " "))));
  const bulkSev = h("select", { id: "bulk-severity", "aria-label": "Set severity of the selected issues" }, h("option", { value: "" }, "Severity: keep"), SEVERITIES.map((x) => h("option", { value: x }, x)));
  const apply = h("button", { type: "button", id: "bulk-apply", disabled: true }, "Apply to selected");
  const recheckBtn = h("button", { type: "button", class: "secondary", id: "recheck" }, "Recheck open issues");
  const all = h("input", { type: "checkbox", id: "select-all", "aria-label": "Select all issues on this page" });
  const sync = () => {
    countLbl.textContent = `${selected.size} selected`;
    apply.disabled = !selected.size || (!bulkStatus.value && !bulkSev.value);
    recheckBtn.textContent = selected.size ? `Recheck ${selected.size} selected` : "Recheck open issues";
    all.checked = selected.size > 0 && selected.size === boxes.length;
    all.indeterminate = selected.size > 0 && selected.size < boxes.length;
  };
  bulkStatus.addEventListener("change", sync); bulkSev.addEventListener("change", sync);
  all.addEventListener("change", () => { for (const b of boxes) { b.checked = all.checked; if (all.checked) selected.add(b.value); else selected.delete(b.value); } sync(); });
  apply.addEventListener("click", () => withBusy(apply, async () => {
    const body = { experiment_id: state.exp, issue_ids: [...selected] };
    if (bulkStatus.value) body.status = bulkStatus.value; if (bulkSev.value) body.severity = bulkSev.value;
    const res = await api("issues/bulk-update", body);
    toast(`Updated ${plural(res.updated_count, "issue")}` + (res.failed_count ? ` (${res.failed_count} failed)` : ""), res.failed_count ? "error" : "info");
    await route();
  }));
  recheckBtn.addEventListener("click", () => runRecheck(recheckBtn, [...selected], () => route()));
  const bulkBar = h("div", { class: "bulk", role: "group", "aria-label": "Bulk actions" },
    h("label", { class: "pick" }, all, " All"), countLbl, bulkStatus, bulkSev, apply, recheckBtn);

  const head = h("li", { class: "row issues head", "aria-hidden": "true" }, h("span", {}), h("span", {}, "Issue"), h("span", {}, "Severity"), h("span", {}, "Status"), h("span", {}, "Traces"), h("span", {}, "Created"), h("span", {}, "Source analysis"), h("span", {}, "Review"));
  const rows = data.issues.map((i) => {
    const cb = h("input", { type: "checkbox", class: "select-issue", value: i.issue_id, "aria-label": `Select issue: ${i.title}` });
    cb.addEventListener("change", () => { if (cb.checked) selected.add(i.issue_id); else selected.delete(i.issue_id); sync(); });
    boxes.push(cb);
    return h("li", { class: "row issues", "data-testid": "issue-row", "data-issue-id": i.issue_id },
      h("span", { class: "pickcell" }, cb),
      h("span", { class: "title cell-wide" }, h("a", { href: link(`/issues/${i.issue_id}`) }, i.title),
        i.metadata && i.metadata.review === "accepted" && i.status !== "REJECTED" ? h("span", { class: "reviewed", "data-testid": "accepted" }, " ✓ accepted") : null,
        checkBadge(i) ? h("span", { class: "subline" }, checkBadge(i)) : null),
      badge("sev", i.severity), badge("st", i.status),
      h("span", { class: "cell-label", "data-label": "Traces" }, h("span", { class: "count", "data-testid": "trace-count" }, i.trace_count), h("span", { class: "sr-only" }, " traces")),
      h("span", { class: "cell-label", "data-label": "Created" }, fmtTime(i.created_at)),
      h("span", { class: "cell-label cell-wide", "data-label": "Source" }, h("a", { href: link(`/runs/${i.source_run_id}`) }, i.source_run_name || short(i.source_run_id))),
      h("span", { class: "review-btns cell-wide" }, reviewButtons(i, () => route())));
  });
  const pager = pagerNav(pageNo, PAGE_SIZE, data.issues.length, data.matching_count, !!data.next_page_token, (n) => setHashParams({ page: n }), "page-info");
  if (data.matching_count !== data.total_count) pager.querySelector("[data-testid=page-info]").append(` (filtered from ${data.total_count})`);
  results.replaceChildren(bulkBar, h("ul", { class: "list", "aria-label": "Issues" }, head, rows), pager);
}

// ------------------------------------------------------------------ issue detail

async function issueDetail(main, issueId) {
  main.replaceChildren(h("p", { class: "muted" }, "Loading issue…"));
  let issue;
  try { issue = (await api("issues/get", { issue_id: issueId, experiment_id: state.exp })).issue; }
  catch (e) { showError(main, e); return; }
  renderIssue(main, issue);
}

function renderIssue(main, issue) {
  const statusSel = h("select", { id: "issue-status" }, ISSUE_STATUSES.map((s) => h("option", { value: s, selected: s === issue.status }, s.replace("_", " "))));
  const sevSel = h("select", { id: "issue-severity" }, SEVERITIES.map((s) => h("option", { value: s, selected: s === issue.severity }, s)));
  const resolution = h("textarea", { id: "issue-resolution" }); resolution.value = issue.resolution || "";
  const exportBox = h("div");
  const save = h("button", { type: "button", id: "update-status" }, "Update status");
  save.addEventListener("click", () => withBusy(save, async () => {
    const body = { issue_id: issue.issue_id, experiment_id: state.exp, status: statusSel.value, severity: sevSel.value };
    if (resolution.value.trim() !== (issue.resolution || "")) body.resolution = resolution.value.trim();
    const res = await api("issues/update", body);
    toast(`Issue updated: ${res.issue.status.replace("_", " ")}, ${res.issue.severity}`);
    renderIssue(main, res.issue);
  }));
  const assess = h("button", { type: "button", class: "secondary", id: "log-assessments" }, issue.metadata && issue.metadata.assessments_logged ? "Log assessments again" : "Log assessments");
  assess.addEventListener("click", () => withBusy(assess, async () => {
    const res = await api("issues/log-assessments", { issue_id: issue.issue_id, experiment_id: state.exp, force: !!(issue.metadata && issue.metadata.assessments_logged) });
    toast(`Logged '${res.assessment_name}' on ${res.logged_count} traces` + (res.failed.length ? ` (${res.failed.length} failed)` : ""));
    renderIssue(main, res.issue);
  }));
  const exp = (fmt, label) => { const b = h("button", { type: "button", class: "secondary" }, label);
    b.addEventListener("click", () => withBusy(b, async () => exportPanel(exportBox, await api("issues/export", { issue_id: issue.issue_id, experiment_id: state.exp, format: fmt })))); return b; };

  // add evidence
  const traceIn = h("input", { id: "ev-trace", placeholder: "tr-…", class: "mono" });
  const ratIn = h("input", { id: "ev-rationale", placeholder: "Why this trace shows the issue" });
  const addEv = h("button", { type: "submit", class: "secondary" }, "Add evidence");
  const evForm = h("form", { class: "inline-form", "aria-label": "Add evidence", onsubmit: (ev) => { ev.preventDefault(); withBusy(addEv, async () => {
    if (!traceIn.value.trim()) throw new Error("Enter a trace id");
    const res = await api("issues/add-evidence", { issue_id: issue.issue_id, experiment_id: state.exp, evidence: [{ trace_id: traceIn.value.trim(), rationale: ratIn.value.trim() }] });
    toast("Evidence added"); renderIssue(main, res.issue);
  }); } },
    h("label", { class: "field" }, "Trace id", traceIn), h("label", { class: "field grow" }, "Rationale", ratIn), addEv);

  const rerender = async (updated) => renderIssue(main, updated || (await api("issues/get", { issue_id: issue.issue_id, experiment_id: state.exp })).issue);
  const recheckOne = h("button", { type: "button", class: "secondary small", id: "recheck-issue" }, "Recheck");
  recheckOne.addEventListener("click", () => runRecheck(recheckOne, [issue.issue_id], () => rerender()));
  const cmp = comparePicker();
  const evList = issue.evidence.length ? h("ul", { class: "evidence", "data-testid": "evidence-list", "data-filter": "all" }, issue.evidence.map((e) => evidenceItem(e, state.exp, { showSupport: true, pick: cmp.box }))) : null;
  const distinct = new Set(issue.evidence.map((e) => e.trace_id)).size;

  main.replaceChildren(
    h("p", {}, h("a", { href: link("/issues") }, "← All issues")),
    h("h1", { "data-testid": "issue-title" }, issue.title),
    h("div", { class: "actions" }, badge("sev", issue.severity), badge("st", issue.status), h("span", {}, h("span", { class: "count" }, issue.trace_count), " traces"),
      issue.metadata && issue.metadata.review ? h("span", { class: "reviewed", "data-testid": "review-state" }, issue.metadata.review) : null,
      checkBadge(issue), ...reviewButtons(issue, rerender), recheckOne),
    h("div", { class: "panel" },
      h("h2", {}, "Description"), h("p", { style: "white-space:pre-wrap" }, issue.description || h("span", { class: "muted" }, "No description.")),
      h("dl", { class: "kv" },
        h("dt", {}, "Source analysis"), h("dd", {}, h("a", { href: link(`/runs/${issue.source_run_id}`) }, issue.source_run_name || issue.source_run_id)),
        issue.hypothesis_id ? [h("dt", {}, "Source hypothesis"), h("dd", {}, h("a", { href: link(`/runs/${issue.source_run_id}`, { h: issue.hypothesis_id }) , class: "mono" }, issue.hypothesis_id))] : null,
        h("dt", {}, "Created"), h("dd", {}, fmtTime(issue.created_at)),
        h("dt", {}, "Updated"), h("dd", {}, fmtTime(issue.updated_at)),
        h("dt", {}, "Assessments"), h("dd", {}, issue.assessments.length ? issue.assessments.join(", ") : "none"),
        h("dt", {}, "Issue id"), h("dd", { class: "mono" }, issue.issue_id))),
    h("div", { class: "panel" },
      h("h2", {}, "Triage"),
      h("div", { class: "grid2" }, h("label", { class: "field" }, "Status", statusSel), h("label", { class: "field" }, "Severity", sevSel)),
      h("label", { class: "field", style: "margin-top:.6rem" }, "Resolution notes", resolution),
      h("div", { class: "actions" }, save, assess, exp("github", "Export Markdown (GitHub)"), exp("jira", "Export for Jira"))),
    exportBox,
    h("div", { class: "panel" },
      h("h2", {}, `History (${1 + ((issue.metadata && issue.metadata.history) || []).length})`),
      timeline(issue)),
    cmp.panel,
    h("div", { class: "panel" },
      h("h2", {}, `Evidence (${issue.evidence.length})`),
      evList ? h("div", { class: "inline-form" }, evidenceFilter("evidence-filter", evList, issue.evidence), distinct > 1 ? [cmp.button, cmp.note] : null) : null,
      evList || h("p", { class: "muted" }, "No evidence yet."),
      h("h3", { style: "margin-top:1rem" }, "Add evidence"), evForm));
}

// ------------------------------------------------------------------ runs list

async function runsPage(main, params) {
  const results = h("div", {}, h("p", { class: "muted" }, "Loading analyses…"));
  main.replaceChildren(h("h1", {}, "Runs"), results);
  const view = state.view;
  const pageNo = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
  const load = async () => {
    let data;
    try { data = await api("analyses/list", { experiment_id: state.exp, max_results: PAGE_SIZE, page_token: String((pageNo - 1) * PAGE_SIZE) }); } catch (e) { showError(results, e); return; }
    if (view !== state.view) return;
    if (!data.analyses.length) { results.replaceChildren(h("p", { class: "muted" }, "No analyses in this experiment yet.")); return; }
    const head = h("li", { class: "row runs head", "aria-hidden": "true" }, h("span", {}, "Analysis"), h("span", {}, "Status"), h("span", {}, "Hypotheses"), h("span", {}, "Validated"), h("span", {}, "Created"), h("span", {}, "Updated"));
    const rows = data.analyses.map((a) => h("li", { class: "row runs", "data-testid": "run-row" },
      h("span", { class: "cell-wide" }, h("a", { class: "title", href: link(`/runs/${a.run_id}`) }, a.name), a.run_name && a.run_name !== a.name ? h("span", { class: "muted" }, ` · ${a.run_name}`) : null),
      h("span", {}, h("span", { "aria-hidden": "true" }, RUN_ICONS[a.status] || ""), " ", badge("st", a.status)),
      h("span", { class: "cell-label", "data-label": "Hypotheses" }, h("span", { class: "count" }, a.hypothesis_count ?? "?")),
      h("span", { class: "cell-label", "data-label": "Validated" }, h("span", { class: "count" }, a.validated_count ?? "?")),
      h("span", { class: "cell-label", "data-label": "Created" }, fmtTime(a.created_at)),
      h("span", { class: "cell-label", "data-label": "Updated" }, fmtTime(a.last_activity_at || a.updated_at))));
    results.replaceChildren(h("ul", { class: "list", "aria-label": "Analyses" }, head, rows),
      pagerNav(pageNo, PAGE_SIZE, data.analyses.length, data.total_count ?? data.analyses.length, !!data.next_page_token, (n) => setHashParams({ page: n }), "runs-page-info"));
    if (data.analyses.some((a) => a.status === "ACTIVE")) state.timer = setTimeout(load, 3000);
  };
  await load();
}

// ------------------------------------------------------------------ run detail + live dashboard

async function runDetail(main, runId, params) {
  main.replaceChildren(h("p", { class: "muted" }, "Loading analysis…"));
  const view = state.view;
  const open = new Set(params.get("h") ? [params.get("h")] : []);
  const cards = new Map(); // hypothesis_id -> {json, el}
  let known = null; // hypothesis_id -> evidence_count from the last poll
  let knownTotal = null; // hypotheses in the run (all pages) at the last poll
  const header = h("div"); const exportBox = h("div");
  const liveTag = h("span", { class: "live", hidden: true, "data-testid": "live-indicator" }, "Live");
  const list = h("div", { "data-testid": "hypotheses", "aria-label": "Hypotheses", "data-filter": "all" });
  const progress = h("p", { class: "muted", "data-testid": "progress" });
  const hypPage = Math.max(1, parseInt(params.get("hp") || "1", 10) || 1);
  const pagerBox = h("div");
  const evFilter = h("label", { class: "ev-filter" }, "Show ",
    h("select", { id: "hyp-evidence-filter", onchange: (ev) => { list.dataset.filter = ev.target.value; } },
      h("option", { value: "all" }, "All evidence"), h("option", { value: "supports" }, "Supporting only"), h("option", { value: "refutes" }, "Refuting only")));

  const statement = h("input", { id: "new-statement", class: "grow", placeholder: "A testable statement" });
  const plan = h("textarea", { id: "new-plan", placeholder: "How to find supporting and refuting traces; what validates it" });
  const addBtn = h("button", { type: "submit", class: "secondary" }, "Create hypothesis");
  const newForm = h("details", { class: "panel" }, h("summary", {}, "Create new hypothesis"),
    h("form", { onsubmit: (ev) => { ev.preventDefault(); withBusy(addBtn, async () => {
      await api("hypotheses/create", { insights_run_id: runId, statement: statement.value, testing_plan: plan.value });
      statement.value = ""; plan.value = ""; toast("Hypothesis created"); await poll(true);
    }); } }, h("label", { class: "field" }, "Statement", statement), h("label", { class: "field" }, "Testing plan", plan), h("div", { class: "actions" }, addBtn)));

  main.replaceChildren(h("p", {}, h("a", { href: link("/runs") }, "← All runs")), header, exportBox,
    h("h2", {}, "Hypotheses ", liveTag), progress, h("div", { class: "inline-form" }, evFilter), list, pagerBox, newForm);

  let analysis = null;
  const renderHeader = (a) => {
    const exportBtn = h("button", { type: "button", class: "secondary" }, "Export report");
    exportBtn.addEventListener("click", () => withBusy(exportBtn, async () => exportPanel(exportBox, await api("analyses/export", { insights_run_id: runId }))));
    const setStatus = (status, label, cls = "secondary") => { const b = h("button", { type: "button", class: cls, "data-action": status }, label);
      b.addEventListener("click", () => withBusy(b, async () => { const res = await api("analyses/update", { insights_run_id: runId, status }); toast(`Analysis ${res.analysis.status.toLowerCase()}`); analysis = res.analysis; renderHeader(analysis); schedule(); })); return b; };
    const buttons = [exportBtn];
    if (a.status !== "ARCHIVED") buttons.push(setStatus("ARCHIVED", "Archive run"));
    if (a.status !== "ACTIVE") buttons.push(setStatus("ACTIVE", "Reopen"));
    if (a.status === "ACTIVE") buttons.push(setStatus("COMPLETED", "Mark completed"));
    const meta = Object.entries(a.metadata || {});
    header.replaceChildren(
      h("h1", {}, a.name),
      h("div", { class: "actions" }, h("span", { "aria-hidden": "true" }, RUN_ICONS[a.status] || ""), badge("st", a.status)),
      h("div", { class: "panel" },
        h("p", { style: "white-space:pre-wrap" }, a.description || h("span", { class: "muted" }, "No description.")),
        h("dl", { class: "kv" },
          h("dt", {}, "Run"), h("dd", {}, `${a.run_name} `, h("span", { class: "mono muted" }, a.run_id)),
          h("dt", {}, "Traces examined"), h("dd", { "data-testid": "traces-examined" }, a.traces_examined == null ? h("span", { class: "muted" }, "not counted yet (no census)") : `${a.traces_examined.toLocaleString()} traces examined`),
          h("dt", {}, "Created"), h("dd", {}, fmtTime(a.created_at)),
          h("dt", {}, "Updated"), h("dd", {}, fmtTime(a.last_activity_at || a.updated_at)),
          meta.length ? [h("dt", {}, "Metadata"), h("dd", {}, h("details", {}, h("summary", {}, `${meta.length} fields`), h("pre", { class: "mono" }, JSON.stringify(a.metadata, null, 2))))] : null),
        h("div", { class: "actions" }, buttons)));
  };

  const hypCard = (hy) => {
    const recent = Date.now() - hy.updated_at < LIVE_WINDOW_MS && analysis && analysis.status === "ACTIVE";
    const act = (status, label, cls) => { const b = h("button", { type: "button", class: cls, "data-action": status }, label);
      b.addEventListener("click", () => withBusy(b, async () => {
        const reason = card.querySelector(".reason").value.trim();
        await api("hypotheses/update", { insights_run_id: runId, hypothesis_id: hy.hypothesis_id, status, ...(reason ? { rationale: reason } : {}) });
        toast(`Hypothesis ${status.toLowerCase()}`); await poll(true);
      })); return b; };
    const sevSel = h("select", { "aria-label": "Severity of the new issue" }, SEVERITIES.map((s) => h("option", { value: s, selected: s === "MEDIUM" }, s)));
    const mkIssue = h("button", { type: "button", class: "secondary", "data-action": "create-issue" }, "Create issue");
    mkIssue.addEventListener("click", () => withBusy(mkIssue, async () => {
      const res = await api("hypotheses/create-issue", { insights_run_id: runId, hypothesis_id: hy.hypothesis_id, severity: sevSel.value });
      toast(`Issue created: ${res.issue.title}`);
      location.hash = link(`/issues/${res.issue.issue_id}`);
    }));
    const details = h("details", { open: open.has(hy.hypothesis_id) },
      h("summary", {}, "Testing plan, evidence and metrics"),
      h("h3", {}, "Testing plan"), h("pre", { class: "plan" }, hy.testing_plan || "(none)"),
      hy.rationale ? [h("h3", {}, "Rationale"), h("p", {}, hy.rationale)] : null,
      h("h3", {}, `Evidence (${hy.evidence_count})`),
      hy.evidence.length ? h("ul", { class: "evidence" }, hy.evidence.map((e) => evidenceItem(e, analysis && analysis.experiment_id, { showSupport: true }))) : h("p", { class: "muted" }, "No evidence yet."),
      Object.keys(hy.metrics || {}).length ? [h("h3", {}, "Metrics"), h("pre", { class: "mono" }, JSON.stringify(hy.metrics, null, 2))] : null,
      Object.keys(hy.metadata || {}).length ? [h("h3", {}, "Metadata"), h("pre", { class: "mono" }, JSON.stringify(hy.metadata, null, 2))] : null);
    details.addEventListener("toggle", () => { if (details.open) open.add(hy.hypothesis_id); else open.delete(hy.hypothesis_id); });
    const card = h("article", { class: `hyp ${hy.status}`, "data-testid": "hypothesis", "data-hypothesis-id": hy.hypothesis_id },
      h("p", { class: "statement" }, hy.statement),
      h("div", { class: "actions" }, badge("st", hy.status),
        h("span", {}, h("span", { class: "count", "data-testid": "evidence-count" }, hy.evidence_count), " evidence (",
          h("span", { class: "sup" }, `${hy.supports_count} support`), " / ", h("span", { class: "ref" }, `${hy.refutes_count} refute`), `) · ${hy.trace_count} traces`),
        h("span", { class: "muted" }, `updated ${fmtTime(hy.updated_at)}`),
        recent ? h("span", { class: "live" }, "live") : null),
      h("div", { class: "inline-form" },
        h("label", { class: "field grow" }, "Reason (optional)", h("input", { class: "reason", placeholder: "Why validate or reject" })),
        act("VALIDATED", "Validate", ""), act("REJECTED", "Reject", "danger"),
        h("span", { class: "field" }, h("span", { class: "sr-only" }, "Severity"), sevSel), mkIssue),
      details);
    return card;
  };

  const poll = async (force = false) => {
    if (view !== state.view) return;
    let a, hs;
    try {
      [a, hs] = await Promise.all([api("analyses/get", { insights_run_id: runId }), api("hypotheses/list", { insights_run_id: runId, max_results: HYP_PAGE, page_token: String((hypPage - 1) * HYP_PAGE) })]);
    } catch (e) { if (!analysis) { showError(main, e); return; } toast(e.message, "error"); schedule(); return; }
    if (view !== state.view) return;
    const aj = JSON.stringify(a.analysis);
    if (!analysis || force || JSON.stringify(analysis) !== aj) { analysis = a.analysis; renderHeader(analysis); }
    const hyps = hs.hypotheses;
    // toasts for what arrived since the last poll
    if (known) {
      for (const hy of hyps) {
        if (!known.has(hy.hypothesis_id)) toast(`New hypothesis: ${hy.statement.slice(0, 80)}`);
        else if (hy.evidence_count > known.get(hy.hypothesis_id)) toast(`New evidence (${hy.evidence_count - known.get(hy.hypothesis_id)}) on: ${hy.statement.slice(0, 60)}`);
      }
    }
    const totalNow = hs.total_count ?? hyps.length;
    if (known && knownTotal !== null && totalNow > knownTotal) {
      const here = hyps.filter((hy) => !known.has(hy.hypothesis_id)).length;
      if (totalNow - knownTotal > here) toast(`${plural(totalNow - knownTotal - here, "new hypothesis", "new hypotheses")} on another page`);
    }
    knownTotal = totalNow;
    known = new Map(hyps.map((hy) => [hy.hypothesis_id, hy.evidence_count]));
    // keyed update: only cards whose data changed are rebuilt
    const seen = new Set();
    let prev = null;
    for (const hy of hyps) {
      seen.add(hy.hypothesis_id);
      const j = JSON.stringify(hy) + analysis.status + (Date.now() - hy.updated_at < LIVE_WINDOW_MS);
      let entry = cards.get(hy.hypothesis_id);
      if (!entry || entry.json !== j || force) {
        const el = hypCard(hy);
        if (entry) { if (entry.el.contains(document.activeElement)) { entry.json = null; prev = entry.el; continue; } entry.el.replaceWith(el); }
        entry = { json: j, el }; cards.set(hy.hypothesis_id, entry);
      }
      if (!entry.el.isConnected) { if (prev) prev.after(entry.el); else list.prepend(entry.el); }
      prev = entry.el;
    }
    for (const [id, entry] of cards) if (!seen.has(id)) { entry.el.remove(); cards.delete(id); }
    if (!hyps.length && !list.querySelector(".muted")) list.replaceChildren(h("p", { class: "muted" }, "No hypotheses yet."));
    else if (hyps.length) list.querySelectorAll(":scope > p.muted").forEach((p) => p.remove());
    const an = analysis;
    const examined = an.traces_examined == null ? "" : ` · ${an.traces_examined.toLocaleString()} traces examined`;
    progress.textContent = `${an.hypothesis_count} hypotheses: ${an.validated_count} validated, ${an.rejected_count} rejected, ${an.testing_count} testing · ${an.evidence_count} evidence entries${examined}`;
    const total = hs.total_count ?? hyps.length;
    pagerBox.replaceChildren(total > HYP_PAGE || hypPage > 1 ? pagerNav(hypPage, HYP_PAGE, hyps.length, total, !!hs.next_page_token, (n) => setHashParams({ hp: n }), "hyp-page-info") : "");
    liveTag.hidden = analysis.status !== "ACTIVE";
    schedule();
  };
  const schedule = () => {
    if (state.timer) clearTimeout(state.timer);
    if (view === state.view && analysis && analysis.status === "ACTIVE") state.timer = setTimeout(() => poll(), state.config.refresh_ms || 1500);
  };
  await poll();
  if (params.get("h")) { const el = list.querySelector(`[data-hypothesis-id="${CSS.escape(params.get("h"))}"]`); if (el) el.scrollIntoView(); }
}

// ------------------------------------------------------------------ shell

async function loadExperiments() {
  const select = document.getElementById("experiment");
  try { state.experiments = (await api("experiments/list", {})).experiments; }
  catch (e) { toast(`Could not list experiments: ${e.message}`, "error"); state.experiments = []; }
  select.replaceChildren(...state.experiments.map((x) => h("option", { value: x.experiment_id }, `${x.name} (${x.experiment_id})`)));
  select.addEventListener("change", () => { state.exp = select.value; localStorage.setItem("insights.exp", state.exp); const { parts } = parseHash(); location.hash = link(`/${parts[0] || "issues"}`); });
}

function pickExperiment(params) {
  const ids = state.experiments.map((x) => x.experiment_id);
  let exp = params.get("exp") || state.exp || localStorage.getItem("insights.exp");
  if (!exp || (ids.length && !ids.includes(exp))) {
    const nonDefault = state.experiments.find((x) => x.experiment_id !== "0");
    exp = (nonDefault || state.experiments[0] || { experiment_id: "0" }).experiment_id;
  }
  state.exp = exp; localStorage.setItem("insights.exp", exp);
  const select = document.getElementById("experiment");
  if (![...select.options].some((o) => o.value === exp)) select.append(h("option", { value: exp }, `Experiment ${exp}`));
  select.value = exp;
}

async function route() {
  stopPolling();
  state.view += 1;
  const { parts, params } = parseHash();
  pickExperiment(params);
  const section = parts[0] === "runs" ? "runs" : "issues";
  for (const s of ["issues", "runs"]) {
    const a = document.getElementById(`nav-${s}`);
    a.href = link(`/${s}`);
    if (s === section) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  document.title = `${section === "runs" ? "Runs" : "Issues"} · MLflow Insights`;
  const main = document.getElementById("main");
  if (section === "issues" && parts[1]) await issueDetail(main, parts[1]);
  else if (section === "issues") await issuesPage(main, params);
  else if (parts[1]) await runDetail(main, parts[1], params);
  else await runsPage(main, params);
}

async function start() {
  try { state.config = await (await fetch(API + "config")).json(); } catch (e) { /* defaults */ }
  await loadExperiments();
  window.addEventListener("hashchange", () => { route(); document.getElementById("main").focus({ preventScroll: true }); });
  await route();
  document.body.dataset.ready = "true";
}

start();
