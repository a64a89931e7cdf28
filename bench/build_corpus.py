"""Write N realistic agent traces straight into an MLflow SQLite store.

Why direct SQL: logging 100k traces through the tracing SDK takes hours; inserting rows
shaped exactly like the ones MLflow's SQLAlchemy store writes (trace_info + tags + metadata +
spans with JSON ``content`` + assessments) takes a minute, and MLflow reads them back with
``search_traces`` / ``get_trace`` unchanged (checked by ``--verify``).

Usage: python bench/build_corpus.py 100000 --uri sqlite:////tmp/corpus.db [--experiment NAME]
The database is created (and migrated) by MLflow itself first, so the schema always matches
the installed MLflow version. Deterministic for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sqlite3
import time
import uuid

TOOLS = {
    # name: (failure probability, typical ms, error type, error message)
    "search_web": (0.06, 400, "TimeoutError", "search backend timed out after 30s"),
    "get_weather": (0.02, 120, "ConnectionError", "weather API unreachable"),
    "calculator": (0.01, 5, "ZeroDivisionError", "division by zero"),
    "sql_query": (0.10, 250, "OperationalError", "no such table: orders_v2"),
}
QUESTIONS = [
    "What is the weather in {c} tomorrow?",
    "Summarise the latest news about {c} and list the three most important points with sources.",
    "How many orders did we ship to {c} last month?",
    "Compute 17% of the revenue from {c}.",
    "Plan a three day trip to {c} including restaurants, museums and a budget breakdown "
    "for two people travelling by train, with alternatives if it rains.",
]
CITIES = ["Paris", "Berlin", "Tokyo", "Lima", "Oslo", "Cairo", "Austin", "Seoul"]


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _span_row(trace_id, exp_id, span_id, parent, name, span_type, start_ns, end_ns,
              inputs, outputs, error=None, extra_attrs=None):
    """One `spans` row with the JSON content MLflow's exporter writes."""
    attrs = {
        "mlflow.traceRequestId": json.dumps(trace_id),
        "mlflow.spanType": json.dumps(span_type),
        "mlflow.spanFunctionName": json.dumps(name),
        "mlflow.spanInputs": json.dumps(inputs),
    }
    if outputs is not None:
        attrs["mlflow.spanOutputs"] = json.dumps(outputs)
    attrs.update(extra_attrs or {})
    events, status = [], {"code": "STATUS_CODE_OK", "message": ""}
    if error:
        etype, emsg = error
        events = [{"name": "exception", "time_unix_nano": end_ns - 1000, "attributes": {
            "exception.message": emsg, "exception.type": etype,
            "exception.stacktrace": f"Traceback (most recent call last):\n  File \"agent.py\", "
                                    f"line 42, in {name}\n{etype}: {emsg}"}}]
        status = {"code": "STATUS_CODE_ERROR", "message": f"{etype}: {emsg}"}
    content = {
        "trace_id": _b64(trace_id[3:]), "span_id": _b64(span_id),
        "parent_span_id": _b64(parent) if parent else None, "name": name,
        "start_time_unix_nano": start_ns, "end_time_unix_nano": end_ns, "events": events,
        "status": status, "attributes": attrs, "links": [],
    }
    return (trace_id, exp_id, span_id, parent, name, span_type,
            "ERROR" if error else "OK", start_ns, end_ns, json.dumps(content))


def make_trace(rng: random.Random, exp_id: int, t0_ms: int):
    """Return (trace_info row, tags, metadata, spans, assessments) for one synthetic trace."""
    trace_hex = uuid.UUID(int=rng.getrandbits(128)).hex
    trace_id = f"tr-{trace_hex}"
    q = rng.choice(QUESTIONS).format(c=rng.choice(CITIES))
    request = {"messages": [{"role": "user", "content": q}]}
    start_ns = t0_ms * 1_000_000
    cursor = start_ns + 2_000_000
    root_id = f"{rng.getrandbits(64):016x}"
    spans, tool_failed = [], False
    # retriever
    sid = f"{rng.getrandbits(64):016x}"
    dur = int(rng.lognormvariate(4, 0.4) * 1e6)
    spans.append(_span_row(trace_id, exp_id, sid, root_id, "retrieve_docs", "RETRIEVER", cursor,
                           cursor + dur, {"query": q}, [{"doc": "d1"}, {"doc": "d2"}]))
    cursor += dur
    for tool in rng.sample(list(TOOLS), rng.randint(1, 3)):
        p_fail, typ_ms, etype, emsg = TOOLS[tool]
        fail = rng.random() < p_fail
        slow = rng.random() < 0.03
        dur = int(typ_ms * rng.lognormvariate(0, 0.5) * (20 if slow else 1) * 1e6)
        sid = f"{rng.getrandbits(64):016x}"
        spans.append(_span_row(trace_id, exp_id, sid, root_id, tool, "TOOL", cursor, cursor + dur,
                               {"q": q[:40]}, None if fail else {"result": f"{tool} ok"},
                               (etype, emsg) if fail else None))
        tool_failed |= fail
        cursor += dur
    # llm
    in_tok, out_tok = rng.randint(200, 2000), rng.randint(10, 800)
    usage = {"input_tokens": in_tok, "output_tokens": out_tok, "total_tokens": in_tok + out_tok}
    llm_err = rng.random() < 0.03
    empty = rng.random() < 0.04
    answer = "" if empty else ("Answer: " + "lorem ipsum " * (out_tok // 8))
    dur = int((300 + out_tok * 8) * rng.lognormvariate(0, 0.3) * 1e6)
    sid = f"{rng.getrandbits(64):016x}"
    spans.append(_span_row(trace_id, exp_id, sid, root_id, "chat_model", "CHAT_MODEL", cursor,
                           cursor + dur, request, None if llm_err else answer,
                           ("RateLimitError", "429 Too Many Requests") if llm_err else None,
                           {"mlflow.chat.tokenUsage": json.dumps(usage)}))
    cursor += dur
    end_ns = cursor + 1_000_000
    response = None if llm_err else answer
    root_err = ("RateLimitError", "429 Too Many Requests") if llm_err else None
    spans.insert(0, _span_row(trace_id, exp_id, root_id, None, "agent", "AGENT", start_ns, end_ns,
                              request, response, root_err))
    exec_ms = (end_ns - start_ns) // 1_000_000
    state = "ERROR" if llm_err else "OK"
    req_s, resp_s = json.dumps(request), json.dumps(response) if response is not None else None
    info = (trace_id, exp_id, t0_ms, exec_ms, state, None, req_s[:1000],
            resp_s[:1000] if resp_s else None, 1, "agent", f"s-{rng.randint(0, 5000)}",
            in_tok, out_tok, in_tok + out_tok, None, None, None,
            in_tok * 1e-6, out_tok * 3e-6, in_tok * 1e-6 + out_tok * 3e-6)
    tags = [("mlflow.artifactLocation", f"mlflow-artifacts:/traces/{trace_id}/artifacts", trace_id),
            ("mlflow.trace.spansLocation", "TRACKING_STORE", trace_id),
            ("env", rng.choice(["prod", "staging"]), trace_id)]
    meta = [("mlflow.trace_schema.version", "3", trace_id),
            ("mlflow.traceInputs", req_s[:250], trace_id),
            ("mlflow.traceOutputs", (resp_s or "")[:250], trace_id),
            ("mlflow.user", "bench", trace_id), ("mlflow.source.type", "LOCAL", trace_id),
            ("mlflow.source.name", "agent.py", trace_id),
            ("mlflow.trace.infoFinalized", "true", trace_id)]
    assessments = []
    if rng.random() < 0.3:
        good = not (tool_failed or empty or llm_err) and rng.random() > 0.1
        assessments.append(_assessment(rng, trace_id, exp_id, t0_ms, "correctness", good,
                                       "LLM_JUDGE", "looks right" if good else "wrong answer"))
    if rng.random() < 0.1:
        verdict = rng.choice(["yes", "yes", "no"])
        assessments.append(_assessment(rng, trace_id, exp_id, t0_ms, "helpful", verdict,
                                       "HUMAN", None))
    return info, tags, meta, spans, assessments


def _assessment(rng, trace_id, exp_id, ts, name, value, source, rationale):
    agg = (1.0 if value in (True, "yes") else 0.0)
    return (f"a-{uuid.UUID(int=rng.getrandbits(128)).hex}", trace_id, name, "feedback",
            json.dumps(value), None, ts + 5000, ts + 5000, source, "bench", None, None, rationale,
            None, 1, None, exp_id, ts, agg, 0)


INSERTS = {
    "trace_info": "INSERT INTO trace_info (request_id, experiment_id, timestamp_ms, "
                  "execution_time_ms, status, client_request_id, request_preview, "
                  "response_preview, db_payload_generation, trace_name, session_id, input_tokens,"
                  " output_tokens, total_tokens, cache_read_input_tokens, "
                  "cache_creation_input_tokens, cache_creation_input_tokens_above_1hr, "
                  "input_cost, output_cost, total_cost) VALUES (" + ",".join("?" * 20) + ")",
    "trace_tags": "INSERT INTO trace_tags (key, value, request_id) VALUES (?,?,?)",
    "trace_request_metadata": "INSERT INTO trace_request_metadata (key, value, request_id) "
                              "VALUES (?,?,?)",
    "spans": "INSERT INTO spans (trace_id, experiment_id, span_id, parent_span_id, name, type, "
             "status, start_time_unix_nano, end_time_unix_nano, content) "
             "VALUES (?,?,?,?,?,?,?,?,?,?)",
    "assessments": "INSERT INTO assessments (assessment_id, trace_id, name, assessment_type, "
                   "value, error, created_timestamp, last_updated_timestamp, source_type, "
                   "source_id, run_id, span_id, rationale, overrides, valid, "
                   "assessment_metadata, experiment_id, trace_timestamp_ms, aggregate_value, "
                   "is_numeric_value) VALUES (" + ",".join("?" * 20) + ")",
}


def ensure_experiment(uri: str, name: str) -> int:
    """Create (or reuse) the experiment through MLflow so the DB is migrated by MLflow itself."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    return int(exp.experiment_id if exp else client.create_experiment(name))


def build(uri: str, n: int, experiment: str = "bench", seed: int = 0,
          start_ms: int | None = None, span_ms: int = 3 * 24 * 3600 * 1000) -> int:
    """Append ``n`` traces spread over ``span_ms`` to ``experiment``; return its id."""
    exp_id = ensure_experiment(uri, experiment)
    rng = random.Random(seed)
    start_ms = start_ms or int(time.time() * 1000) - span_ms
    conn = sqlite3.connect(uri.removeprefix("sqlite:///"))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    batch: dict[str, list] = {k: [] for k in INSERTS}
    for i in range(n):
        info, tags, meta, spans, ass = make_trace(rng, exp_id, start_ms + (i * span_ms) // n)
        batch["trace_info"].append(info)
        batch["trace_tags"] += tags
        batch["trace_request_metadata"] += meta
        batch["spans"] += spans
        batch["assessments"] += ass
        if len(batch["trace_info"]) >= 5000 or i == n - 1:
            for table, sql in INSERTS.items():
                conn.executemany(sql, batch[table])
                batch[table] = []
            conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    return exp_id


def verify(uri: str, exp_id: int) -> None:
    """Read a few traces back through MLflow's own API to prove the rows are well formed."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    traces = client.search_traces(locations=[str(exp_id)], max_results=5)
    for t in traces:
        full = client.get_trace(t.info.trace_id)
        assert full.data.spans, "no spans read back"
        assert full.info.token_usage, "no token usage read back"
    print(f"verified {len(traces)} traces via MlflowClient.search_traces/get_trace")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int)
    ap.add_argument("--uri", required=True, help="sqlite:///path/to/mlflow.db")
    ap.add_argument("--experiment", default="bench")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verify", action="store_true")
    args = ap.parse_args()
    t = time.perf_counter()
    exp_id = build(args.uri, args.n, args.experiment, args.seed)
    print(f"wrote {args.n} traces to experiment {exp_id} in {time.perf_counter() - t:.1f}s")
    if args.verify:
        verify(args.uri, exp_id)


if __name__ == "__main__":
    main()
