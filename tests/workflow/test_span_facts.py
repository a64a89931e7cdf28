"""agent.span_facts on a real MLflow store whose traces (written by the tracing SDK) have
known counts: span stats, loops, truncated LLM calls and token usage, sessions."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import SpanStatus, SpanStatusCode, SpanType
from mlflow.tracing.constant import SpanAttributeKey

from agent import span_facts
from agent.toolkit import TraceToolkit
from helpers.fixtures import copy_template
from helpers.insights_helpers import tracking_to
from insights import InsightsClient

N = 20
MS = 1_000_000
T0 = 1_750_000_000_000 * MS
SESSIONS = {**{i: "s-a" for i in range(5)}, **{i: "s-b" for i in range(5, 8)}, 8: "s-c",
            9: "s-d", 10: "s-d"}                      # 11..19: no session
ERRORS = {4, 7, 12}                                  # traces that end in ERROR
EMPTY_ANSWERS = {1, 3, 8}                            # traces that end OK with answer ""
LATENCY = {3: 9000, 9: 8000, 15: 7000}               # the rest: 1000 + i ms
LOOPING = {12, 13, 14}                               # lookup called 8 times (else once)
LOOKUP_FAILS = {4: ValueError("bad key"), 7: ValueError("bad key"), 12: TimeoutError("slow")}
TRUNCATED_CHAT = {2, 5, 11}                          # finish_reason "length"
CLAUDE = range(4)                                    # an Anthropic-shaped LLM span
TRUNCATED_CLAUDE = {0}                               # stop_reason "max_tokens"
EMPTY_RETRIEVALS = set(range(6))                     # the retriever returns []
CUSTOM = range(10)                                   # a span of a custom type


@dataclass
class Facts:
    uri: str
    experiment_id: str
    ids: dict[int, str] = field(default_factory=dict)

    def toolkit(self, run_id: str | None = None) -> TraceToolkit:
        return TraceToolkit(InsightsClient(self.uri), self.experiment_id, run_id)

    def tids(self, idx) -> list[str]:
        return sorted(self.ids[i] for i in idx)


def _span(name, span_type, parent, start_ms, dur_ms, inputs=None, outputs=None, attributes=None,
          error: Exception | None = None):
    span = mlflow.start_span_no_context(name, span_type=span_type, parent_span=parent,
                                        inputs=inputs, attributes=attributes,
                                        start_time_ns=start_ms * MS)
    if outputs is not None:
        span.set_outputs(outputs)
    if error is not None:
        span.record_exception(error)
    span.end(end_time_ns=(start_ms + dur_ms) * MS)


def _trace(i: int, experiment_id: str) -> str:
    start = T0 // MS + i * 60_000
    metadata = {"mlflow.trace.session": SESSIONS[i]} if i in SESSIONS else None
    root = mlflow.start_span_no_context("agent", span_type=SpanType.AGENT,
                                        inputs={"question": f"q{i}"}, experiment_id=experiment_id,
                                        metadata=metadata, start_time_ns=start * MS)
    t = start + 1
    reason = "length" if i in TRUNCATED_CHAT else "stop"
    _span("chat", SpanType.CHAT_MODEL, root, t, 100 + 10 * i,
          inputs={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]},
          outputs={"id": f"chatcmpl-{i}", "object": "chat.completion", "model": "gpt-4o-mini",
                   "choices": [{"index": 0, "finish_reason": reason,
                                "message": {"role": "assistant", "content": f"plan {i}"}}],
                   "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}},
          attributes={SpanAttributeKey.CHAT_USAGE: {"input_tokens": 100, "output_tokens": 20,
                                                    "total_tokens": 120},
                      SpanAttributeKey.MODEL: "gpt-4o-mini"})
    t += 300
    if i in CLAUDE:
        stop = "max_tokens" if i in TRUNCATED_CLAUDE else "end_turn"
        _span("claude", SpanType.LLM, root, t, 50,
              inputs={"model": "claude-3-5-haiku-latest", "max_tokens": 50,
                      "messages": [{"role": "user", "content": f"q{i}"}]},
              outputs={"id": f"msg_{i}", "type": "message", "role": "assistant",
                       "model": "claude-3-5-haiku-latest", "stop_reason": stop,
                       "stop_sequence": None, "content": [{"type": "text", "text": "..."}],
                       "usage": {"input_tokens": 30, "output_tokens": 50}})
        t += 60
    docs = [] if i in EMPTY_RETRIEVALS else [{"page_content": "doc", "metadata": {"id": 1}}]
    _span("search_docs", SpanType.RETRIEVER, root, t, 20, inputs={"query": f"q{i}"}, outputs=docs)
    t += 30
    for k in range(8 if i in LOOPING else 1):
        error = LOOKUP_FAILS.get(i) if k == 0 else None
        _span("lookup", SpanType.TOOL, root, t, 5, inputs={"key": k},
              outputs=None if error else {"ok": True}, error=error)
        t += 6
    if i in CUSTOM:
        _span("postprocess", "MY_STEP", root, t, 3, inputs={"x": 1}, outputs={"y": 2})
    if i in ERRORS:
        root.set_status(SpanStatus(SpanStatusCode.ERROR, "RuntimeError: the request failed"))
    else:
        root.set_outputs("" if i in EMPTY_ANSWERS else f"answer {i}")
    root.end(end_time_ns=(start + LATENCY.get(i, 1000 + i)) * MS)
    return root.trace_id


def build_facts_store(root: Path) -> Facts:
    root.mkdir(parents=True, exist_ok=True)
    uri = copy_template(root / "mlflow.db")
    with tracking_to(uri):
        eid = mlflow.MlflowClient(uri).create_experiment(
            "span-facts", artifact_location=(root / "artifacts").as_uri())
        facts = Facts(uri, eid)
        order = list(range(N))
        random.Random(3).shuffle(order)  # written out of order: turns follow request_time
        for i in order:
            facts.ids[i] = _trace(i, eid)
        mlflow.flush_trace_async_logging(terminate=False)
    return facts


@pytest.fixture(scope="module")
def facts_store(tmp_path_factory: pytest.TempPathFactory) -> Facts:
    return build_facts_store(tmp_path_factory.mktemp("span-facts") / "store")


def _by_name(rows: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in rows}


def test_span_stats_per_name(facts_store: Facts) -> None:
    stats = span_facts.span_stats(facts_store.toolkit())
    assert stats["total_traces"] == N and stats["span_names"] == 6 and stats["omitted"] == 0
    spans = _by_name(stats["spans"])
    assert stats["spans"][0]["name"] == "lookup"  # most-called first
    lookup = spans["lookup"]
    assert (lookup["span_type"], lookup["calls"], lookup["traces"]) == ("TOOL", 17 + 3 * 8, N)
    assert lookup["errors"] == 3 and lookup["error_rate"] == round(3 / 41, 3)
    assert lookup["error_types"] == {"ValueError": 2, "TimeoutError": 1}
    assert lookup["mean_per_trace"] == round(41 / N, 2) and lookup["max_per_trace"] == 8
    assert lookup["empty_outputs"] == 0 and lookup["empty_output_rate"] == 0.0
    assert lookup["max_ms"] == 5.0

    search = spans["search_docs"]
    assert (search["span_type"], search["calls"], search["errors"]) == ("RETRIEVER", N, 0)
    assert search["empty_outputs"] == len(EMPTY_RETRIEVALS)
    assert search["empty_output_rate"] == len(EMPTY_RETRIEVALS) / N

    chat = spans["chat"]
    assert (chat["span_type"], chat["calls"], chat["max_per_trace"]) == ("CHAT_MODEL", N, 1)
    assert chat["max_ms"] == 100 + 10 * (N - 1)
    assert 180 <= chat["p50_ms"] <= 210 and 260 <= chat["p95_ms"] <= 290

    agent = spans["agent"]
    assert agent["errors"] == len(ERRORS) and agent["error_types"] == {"RuntimeError": 3}
    assert agent["max_ms"] == 9000.0
    assert spans["claude"]["calls"] == len(CLAUDE) and spans["claude"]["trace_share"] == 0.2
    assert spans["postprocess"]["span_type"] == "MY_STEP"


def test_span_stats_keeps_one_type_and_refuses_a_bad_one(facts_store: Facts) -> None:
    toolkit = facts_store.toolkit()
    retrievers = span_facts.span_stats(toolkit, "RETRIEVER")
    assert [s["name"] for s in retrievers["spans"]] == ["search_docs"]
    assert retrievers["total_traces"] == N
    custom = span_facts.span_stats(toolkit, "my_step")["spans"]
    assert [(s["name"], s["calls"], s["trace_share"]) for s in custom] == [("postprocess", 10, 0.5)]
    assert span_facts.span_stats(toolkit, "TOOL", limit=1)["spans"][0]["name"] == "lookup"
    assert span_facts.span_stats(toolkit, limit=2)["omitted"] == 4
    with pytest.raises(ValueError):
        span_facts.span_stats(toolkit, "TOOL' OR '1'='1")


def test_loops(facts_store: Facts) -> None:
    found = span_facts.loops(facts_store.toolkit())
    assert len(found["loops"]) == 1, found
    (loop,) = found["loops"]
    assert (loop["name"], loop["span_type"]) == ("lookup", "TOOL")
    assert loop["usual_calls_per_trace"] == 1.0 and loop["threshold"] == 3
    assert loop["loop_traces"] == len(LOOPING) and loop["traces_calling"] == N
    assert loop["max_calls"] == 8 and loop["mean_calls_in_loop"] == 8.0
    assert loop["loop_error_rate"] == round(1 / 3, 3)            # trace 12
    assert loop["other_error_rate"] == round(2 / 17, 3)          # traces 4 and 7
    assert loop["sample_trace_ids"] == facts_store.tids(LOOPING)


def test_truncation_and_token_usage(facts_store: Facts) -> None:
    cut = span_facts.truncation(facts_store.toolkit())
    assert cut["llm_calls"] == N + len(CLAUDE)
    assert cut["truncated"] == len(TRUNCATED_CHAT) + len(TRUNCATED_CLAUDE)
    rows = {(r["name"], r["model"]): r for r in cut["by_span"]}
    assert set(rows) == {("chat", "gpt-4o-mini"), ("claude", "claude-3-5-haiku-latest")}
    chat = rows["chat", "gpt-4o-mini"]
    assert (chat["span_type"], chat["calls"], chat["truncated"]) == ("CHAT_MODEL", N, 3)
    assert chat["truncated_rate"] == 0.15
    assert chat["sample_trace_ids"] == facts_store.tids(TRUNCATED_CHAT)
    claude = rows["claude", "claude-3-5-haiku-latest"]
    assert (claude["span_type"], claude["calls"], claude["truncated"]) == ("LLM", 4, 1)
    assert claude["sample_trace_ids"] == facts_store.tids(TRUNCATED_CLAUDE)

    usage = {u["model"]: u for u in cut["token_usage_by_model"]}
    gpt = usage["gpt-4o-mini"]
    assert (gpt["calls"], gpt["calls_with_usage"]) == (N, N)
    assert (gpt["input_tokens"], gpt["output_tokens"], gpt["total_tokens"]) == (2000, 400, 2400)
    assert gpt["mean_output_tokens"] == 20.0 and gpt["max_output_tokens"] == 20
    # no mlflow.chat.tokenUsage attribute on the Anthropic-shaped span: not guessed
    assert usage["claude-3-5-haiku-latest"]["calls_with_usage"] == 0
    assert usage["claude-3-5-haiku-latest"]["input_tokens"] is None


def test_session_facts(facts_store: Facts) -> None:
    facts = span_facts.session_facts(facts_store.toolkit())
    assert facts["total_traces"] == N
    assert facts["sessions"] == 4 and facts["traces_in_sessions"] == len(SESSIONS)
    assert facts["length"] == {"mean": 2.75, "median": 2.5, "max": 5,
                               "sessions_by_length": {"1": 1, "2-3": 2, "4-9": 1, "10+": 0}}
    # turn index by request_time within the session (the traces were written shuffled)
    turns = {"1": {0, 5, 8, 9}, "2-3": {1, 2, 6, 7, 10}, "4+": {3, 4}}
    slow_ms = facts["slow_over_ms"]
    latency = {i: LATENCY.get(i, 1000 + i) for i in range(N)}
    assert 1000 <= slow_ms < 9000
    by_turn = {t["turn"]: t for t in facts["by_turn"]}
    for bucket, idx in turns.items():
        row = by_turn[bucket]
        n = len(idx)
        assert row["traces"] == n, (bucket, row)
        assert row["error_rate"] == round(len(idx & ERRORS) / n, 3), (bucket, row)
        assert row["empty_answer_rate"] == round(len(idx & EMPTY_ANSWERS) / n, 3), (bucket, row)
        slow = {i for i in idx if latency[i] > slow_ms}
        assert row["slow_rate"] == round(len(slow) / n, 3), (bucket, row)
    assert by_turn["4+"]["slow_rate"] == 0.5  # trace 3, the slowest of all


def test_digest_is_compact_and_names_what_was_found(facts_store: Facts) -> None:
    import json

    digest = span_facts.digest(facts_store.toolkit())
    assert len(json.dumps(digest)) < 6000
    assert [s["name"] for s in digest["span_stats"]["spans"]][0] == "lookup"
    assert digest["loops"][0]["name"] == "lookup"
    assert digest["truncation"]["truncated"] == 4
    assert digest["sessions"]["sessions"] == 4
