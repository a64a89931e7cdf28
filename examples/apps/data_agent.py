"""A plain multi-step tool-calling data assistant (Anthropic Messages API shapes) with seeded
planted faults.

Trace shape (what MLflow's Anthropic autologger writes inside an agent span):
    <root> (AGENT)                        inputs {"messages": [{"role": "user", ...}]}
      Messages.create (CHAT_MODEL)        content blocks, stop_reason tool_use / end_turn /
                                          max_tokens, usage; mlflow.chat.tokenUsage
      <tool> (TOOL)                       one span per tool_use block; 5 tools from a pool
      Messages.create (CHAT_MODEL)        ... repeated per step, the last one answers
    root outputs: the answer text
Tags: workspace plan, warehouse engine, region, client version; users and short sessions.

Faults: outage, tool_loop, truncation, tag_error and failing_assessment always, plus one of
conditional_slow / session_degrade; names, values, window and thresholds come from the seed.
A confounded region/client segment piles its traffic into the outage window.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

from mlflow.entities import LiveSpan, SpanType
from mlflow.tracing.constant import SpanAttributeKey

from . import sim
from .sim import (
    AuthenticationError, BadRequestError, PermissionDeniedError, RateLimitError, Run,
    ServiceUnavailableError, ToolTimeoutError, one_of, sim_span, tokens,
)
from .truth import Fault, GroundTruth

APP = "data_agent"
ALWAYS = ["outage", "tool_loop", "truncation", "tag_error", "failing_assessment"]
OPTIONAL = ["conditional_slow", "session_degrade"]

ROOT_POOL = ["data_agent", "analytics_copilot", "sql_assistant", "insight_bot"]
TOOL_POOLS = {
    "schema": ["list_tables", "describe_schema", "get_table_schema", "inspect_catalog"],
    "query": ["run_sql", "execute_query", "query_warehouse", "sql_runner"],
    "compute": ["python_exec", "run_pandas", "compute_stats", "eval_expression"],
    "chart": ["make_chart", "plot_series", "render_chart", "draw_plot"],
    "docs": ["search_docs", "lookup_metric", "glossary_search", "find_definition"],
}
MODELS = ["claude-3-5-haiku-20241022", "claude-sonnet-4-20250514", "claude-3-7-sonnet-20250219",
          "claude-opus-4-20250514", "claude-3-haiku-20240307"]
JUDGE_POOL = ["sql_correctness", "answer_accuracy", "chart_appropriateness", "data_faithfulness"]
QUESTIONS = ["What was revenue by region last quarter?", "Plot weekly active users for 2024.",
             "Which products had the highest churn in March?",
             "Compare conversion rates between web and mobile.",
             "How many orders were refunded last month, by reason?",
             "Show the top 10 customers by lifetime value.",
             "What is the average delivery time per warehouse?"]
SYSTEM = "You are a data analyst. Use the tools to inspect the schema, query, compute and plot."


@dataclass
class Design:
    seed: int

    def __post_init__(self):
        rng = random.Random(f"{APP}:{self.seed}")
        self.root_name = one_of(rng, ROOT_POOL)
        self.tools = {role: one_of(rng, pool) for role, pool in TOOL_POOLS.items()}
        self.models = rng.sample(MODELS, 3)
        self.max_tokens = {m: one_of(rng, [512, 1024, 2048]) for m in self.models}
        used: set[str] = set()
        self.plan_key = one_of(rng, ["plan", "workspace_tier", "edition"])
        self.engine_key = one_of(rng, ["engine", "warehouse", "backend"])
        self.region_key = one_of(rng, ["region", "geo", "cloud_region"])
        self.client_key = one_of(rng, ["client", "client_version", "ui_version"])
        self.tag_values = {self.plan_key: tokens(rng, 3, used),
                           self.engine_key: tokens(rng, 4, used),
                           self.region_key: tokens(rng, 4, used),
                           self.client_key: tokens(rng, 3, used)}
        self.window = sim.window(rng)
        ckey = one_of(rng, [self.region_key, self.client_key])
        self.confounder = (ckey, one_of(rng, self.tag_values[ckey]))
        self.families = ALWAYS + [one_of(rng, OPTIONAL)]
        self.outage_target = one_of(rng, ["query", "model"])
        self.outage_rate = rng.uniform(0.6, 0.9)
        self.loop_engine = one_of(rng, self.tag_values[self.engine_key])
        self.loop_tool = one_of(rng, ["query", "compute", "docs"])
        self.loop_rate = rng.uniform(0.4, 0.7)
        self.trunc_model = one_of(rng, self.models)
        self.trunc_rate = rng.uniform(0.4, 0.7)
        self.auth_plan = one_of(rng, self.tag_values[self.plan_key])
        self.auth_target = one_of(rng, ["schema", "chart", "model"])
        self.auth_rate = rng.uniform(0.35, 0.6)
        self.auth_caught = rng.uniform(0.3, 0.6)
        self.judge = one_of(rng, JUDGE_POOL)
        self.judge_fail = rng.uniform(0.4, 0.6)
        self.slow_rows = one_of(rng, [2000, 5000, 10000])
        self.slow_s = (rng.uniform(7.0, 9.0), rng.uniform(14.0, 20.0))
        self.degrade_turn = rng.randint(4, 5)
        self.degrade_rate = rng.uniform(0.5, 0.8)


class DataAgent:
    def __init__(self, design: Design, experiment_id: str):
        self.d = design
        self.experiment_id = experiment_id
        self.model_of_user: dict[str, str] = {}

    def handle(self, run: Run) -> None:
        d, req = self.d, run.request
        model = self.model_of_user.setdefault(
            req.user_id, run.rng.choices(d.models, weights=[0.45, 0.35, 0.2])[0])
        question = one_of(run.rng, QUESTIONS)
        in_window = d.window[0] <= req.offset_s <= d.window[1]
        # an outage hits a share of the requests in its window (wherever its span is reached)
        run.facts.update(model=model, outage=(
            "outage" in d.families and in_window and run.rng.random() < d.outage_rate))
        try:
            with sim_span(d.root_name, SpanType.AGENT, run.clock,
                          inputs={"messages": [{"role": "user", "content": question}]},
                          experiment_id=self.experiment_id, tags=dict(req.tags),
                          metadata={"mlflow.trace.user": req.user_id,
                                    "mlflow.trace.session": req.session_id}) as root:
                run.trace_id = root.trace_id
                try:
                    answer = self._loop(run, root, question, model)
                except AuthenticationError:
                    if not run.facts.get("auth_caught"):
                        raise
                    answer = "I can't reach the model with your workspace's key right now."
                root.set_outputs(answer)
                run.answer = answer
        except Exception as exc:  # noqa: BLE001
            run.error = exc

    # --- the agent loop ----------------------------------------------------------------------
    def _loop(self, run: Run, root: LiveSpan, question: str, model: str) -> str:
        d, rng = self.d, run.rng
        messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
        if run.request.turn > 1:  # earlier turns of the session ride along as context
            messages = [{"role": "user", "content": "(earlier question)"},
                        {"role": "assistant", "content": sim.words(rng, 150)}] \
                * (run.request.turn - 1) + messages
        plan = ["schema", "query"] + (["compute"] if rng.random() < 0.5 else []) \
            + (["chart"] if rng.random() < 0.4 else []) + (["docs"] if rng.random() < 0.2 else [])
        looping = (d.engine_key and run.request.tags[d.engine_key] == d.loop_engine
                   and d.loop_tool in plan + ["docs"] and rng.random() < d.loop_rate)
        if looping:
            if d.loop_tool not in plan:
                plan.append(d.loop_tool)
            run.facts["loop_n"] = rng.randint(6, 10)
        step = 0
        last_rows = 0
        for role in plan:
            calls = run.facts["loop_n"] if looping and role == d.loop_tool else 1
            for i in range(calls):
                step += 1
                call = {"type": "tool_use", "id": f"toolu_{rng.getrandbits(48):012x}",
                        "name": d.tools[role], "input": self._tool_input(role, rng, i)}
                self._model(run, root, messages, model, [call], "tool_use", last_rows)
                last_rows = 0
                messages.append({"role": "assistant", "content": [call]})
                try:
                    result = self._tool(run, root, role, call, last=(
                        looping and role == d.loop_tool and i == calls - 1))
                except (AuthenticationError, PermissionDeniedError) as exc:
                    if not run.facts.get("auth_caught"):
                        raise
                    result = {"error": str(exc)}
                if role == "query" and "row_count" in result:
                    last_rows = result["row_count"]
                messages.append({"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": call["id"],
                     "content": json.dumps(result)[:400]}]})
                run.wait(0.005, 0.03)
        return self._model(run, root, messages, model, [], "end_turn", last_rows)

    def _tool_input(self, role: str, rng: random.Random, i: int) -> dict[str, Any]:
        if role == "schema":
            return {"database": "analytics"}
        if role == "query":
            return {"sql": f"SELECT region, sum(amount) FROM orders_{i} GROUP BY 1"}
        if role == "compute":
            return {"code": f"df.groupby('region').amount.sum().pct_change()  # try {i}"}
        if role == "chart":
            return {"kind": rng.choice(["bar", "line"]), "x": "region", "y": "amount"}
        return {"query": rng.choice(["churn definition", "active user", "refund policy"])}

    def _tool(self, run: Run, root: LiveSpan, role: str, call: dict, last: bool
              ) -> dict[str, Any]:
        d, rng = self.d, run.rng
        with sim_span(call["name"], SpanType.TOOL, run.clock, parent=root,
                      inputs=call["input"]) as span:
            if role == d.outage_target and run.facts["outage"]:
                run.fired.add("outage")
                run.wait(0.5, 3.0)
                raise ServiceUnavailableError(
                    "503 Service Unavailable: warehouse endpoint is not accepting connections")
            if role == d.auth_target and self._auth(run):
                raise PermissionDeniedError(
                    f"403 Forbidden: workspace token lacks permission to call {call['name']}")
            if last:
                run.fired.add("tool_loop")
                run.wait(25.0, 30.0)
                raise ToolTimeoutError(f"{call['name']} timed out after 30 s "
                                       f"(call {run.facts['loop_n']} in this request)")
            if role == "query":
                if rng.random() < 0.004:
                    run.wait(0.2, 0.5)
                    raise RuntimeError("SQL compilation error: column 'amount' is ambiguous")
                n = int(10 ** rng.uniform(0, 4.6))
                run.wait(0.2, 2.5)
                result = {"columns": ["region", "amount"], "row_count": n,
                          "rows": [[f"r{k}", round(rng.uniform(10, 1e4), 2)]
                                   for k in range(min(n, 3))]}
            elif role == "schema":
                run.wait(0.05, 0.3)
                result = {"tables": ["orders", "customers", "products", "events"]}
            elif role == "chart":
                run.wait(0.3, 1.2)
                result = {"image_url": f"https://charts.local/{rng.getrandbits(32):08x}.png"}
            else:
                run.wait(0.1, 0.9)
                result = {"result": sim.words(rng, 12)}
            span.set_outputs(result)
        return result

    def _auth(self, run: Run) -> bool:
        d = self.d
        if "tag_error" in d.families and run.request.tags[d.plan_key] == d.auth_plan \
                and "tag_error" not in run.fired and run.rng.random() < d.auth_rate:
            run.fired.add("tag_error")
            run.facts["auth_caught"] = run.rng.random() < d.auth_caught
            run.wait(0.05, 0.2)
            return True
        return False

    def _model(self, run: Run, root: LiveSpan, messages: list, model: str, calls: list,
               stop: str, last_rows: int) -> str:
        d, rng = self.d, run.rng
        max_tokens = d.max_tokens[model]
        inputs = {"model": model, "max_tokens": max_tokens, "system": SYSTEM,
                  "messages": messages, "tools": [{"name": n, "description": f"{r} tool",
                                                   "input_schema": {"type": "object"}}
                                                  for r, n in d.tools.items()]}
        with sim_span("Messages.create", SpanType.CHAT_MODEL, run.clock, parent=root,
                      inputs=inputs,
                      attributes={SpanAttributeKey.MESSAGE_FORMAT: "anthropic"}) as span:
            span.set_attribute(SpanAttributeKey.MODEL, model)
            span.set_attribute(SpanAttributeKey.MODEL_PROVIDER, "anthropic")
            in_tokens = _count(messages) + 350
            if d.outage_target == "model" and run.facts["outage"]:
                run.fired.add("outage")
                run.wait(0.5, 3.0)
                raise ServiceUnavailableError(
                    "Error code: 503 - {'type': 'error', 'error': {'type': 'api_error', "
                    "'message': 'Service Unavailable'}}")
            if d.auth_target == "model" and self._auth(run):
                raise AuthenticationError(
                    "Error code: 401 - {'type': 'error', 'error': {'type': "
                    "'authentication_error', 'message': 'invalid x-api-key'}}")
            if ("session_degrade" in d.families and run.request.turn >= d.degrade_turn
                    and not calls and rng.random() < d.degrade_rate):
                run.fired.add("session_degrade")
                run.wait(0.2, 0.5)
                raise BadRequestError(
                    "Error code: 400 - {'type': 'error', 'error': {'type': "
                    f"'invalid_request_error', 'message': 'prompt is too long: {in_tokens + 200000}"
                    " tokens > 200000 maximum'}}")
            if rng.random() < 0.002:
                raise RateLimitError("Error code: 429 - rate_limit_error: Number of request "
                                     "tokens has exceeded your per-minute rate limit")
            if "conditional_slow" in d.families and last_rows > d.slow_rows:
                run.fired.add("conditional_slow")
                run.wait(*d.slow_s)
            else:
                run.wait(*((0.6, 2.2) if rng.random() > 0.02 else (3.0, 6.0)))
            text = ""
            stop_reason = stop
            if not calls:
                if run.facts.get("auth_caught"):
                    text = "I don't have access to that for your workspace."
                else:
                    text = sim.words(rng, rng.randint(40, 110)) + "."
                if "truncation" in d.families and model == d.trunc_model \
                        and rng.random() < d.trunc_rate:
                    run.fired.add("truncation")
                    stop_reason = "max_tokens"
                    text = text[: int(len(text) * 0.6)].rstrip()
            out_tokens = max_tokens if stop_reason == "max_tokens" else \
                int(len(text.split()) * 1.3) + 20 * len(calls) + 1
            content = ([{"type": "text", "text": text}] if text else []) + calls
            usage = {"input_tokens": in_tokens, "output_tokens": out_tokens,
                     "total_tokens": in_tokens + out_tokens}
            span.set_attribute(SpanAttributeKey.CHAT_USAGE, usage)
            span.set_outputs({
                "id": f"msg_{rng.getrandbits(64):016x}", "type": "message", "role": "assistant",
                "model": model, "content": content, "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {"input_tokens": in_tokens, "output_tokens": out_tokens,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}})
        return text


def _count(messages: list) -> int:
    return sum(len(json.dumps(m["content"])) // 4 + 4 for m in messages)


# --- assessments --------------------------------------------------------------------------

RATIONALES = ["The query double-counts refunded orders.", "The filter uses the wrong date column.",
              "Totals disagree with the warehouse's own report.",
              "The join drops customers without orders."]


def _assess(d: Design, runs: list[Run], rng: random.Random) -> None:
    for run in runs:
        if run.error is not None:
            continue
        if rng.random() < 0.45:
            fail = rng.random() < d.judge_fail
            if fail:
                run.fired.add("failing_assessment")
            sim.feedback(run, d.judge, not fail, "LLM_JUDGE", "judge:claude-sonnet",
                         one_of(rng, RATIONALES) if fail else "Looks right.")
        if rng.random() < 0.2:
            up = rng.random() >= 0.06
            sim.feedback(run, "thumbs_up", up, "HUMAN", run.request.user_id)


# --- the corpus ---------------------------------------------------------------------------

def generate(tracking_uri: str, n_traces: int, seed: int,
             experiment_name: str = "data-agent") -> GroundTruth:
    """Trace `n_traces` requests into `tracking_uri`; return what was planted and where."""
    started = time.monotonic()
    d = Design(seed)
    runs, exp_id, t0 = sim.write_corpus(APP, d, DataAgent, _assess, tracking_uri, n_traces, seed,
                                        experiment_name)
    return _truth(d, runs, exp_id, t0, n_traces, time.monotonic() - started)


def _truth(d: Design, runs: list[Run], exp_id: str, t0_ns: int, n: int, seconds: float
           ) -> GroundTruth:
    def ids(family: str) -> set[str]:
        return {r.trace_id for r in runs if family in r.fired}

    def names(role: str) -> list[str]:
        return ["Messages.create"] if role == "model" else [d.tools[role]]

    hours = (d.window[1] - d.window[0]) / 3600
    auth_type = "AuthenticationError" if d.auth_target == "model" else "PermissionDeniedError"
    specs = {
        "outage": (f"{names(d.outage_target)[0]} raises 503 ServiceUnavailableError inside a "
                   f"{hours:.1f} h window (trace ERROR)",
                   {"span_names": names(d.outage_target), "error_type": "ServiceUnavailableError",
                    "error_match": "503"}),
        "tool_loop": (f"{d.engine_key}={d.loop_engine}: {d.tools[d.loop_tool]} is called 6-10 "
                      "times in a row, the last call times out (trace ERROR)",
                      {"span_names": [d.tools[d.loop_tool]], "min_calls": 6,
                       "error_type": "ToolTimeoutError", "error_match": "timed out"}),
        "truncation": (f"model {d.trunc_model} stops with stop_reason=max_tokens at "
                       f"max_tokens={d.max_tokens[d.trunc_model]} on the final answer, "
                       "which is cut off",
                       {"model": d.trunc_model, "reason": "max_tokens",
                        "max_tokens": d.max_tokens[d.trunc_model]}),
        "tag_error": (f"{d.plan_key}={d.auth_plan}: {names(d.auth_target)[0]} fails with "
                      f"{auth_type} (caught by the agent for some traces)",
                      {"span_names": names(d.auth_target), "error_type": auth_type,
                       "error_match": "40"}),
        "failing_assessment": (f"LLM judge '{d.judge}' fails {d.judge_fail:.0%} of the traces it "
                               "rated, unrelated to any feature",
                               {"assessment": d.judge, "failing_values": [False]}),
        "conditional_slow": (f"the model step after {d.tools['query']} takes "
                             f"{d.slow_s[0]:.0f}-{d.slow_s[1]:.0f} s when the query returned "
                             f"more than {d.slow_rows} rows",
                             {"span_names": ["Messages.create"], "min_ms": d.slow_s[0] * 1000}),
        "session_degrade": (f"turn >= {d.degrade_turn} of a session: the final model call fails "
                            "with 400 prompt is too long (trace ERROR)",
                            {"span_names": ["Messages.create"], "error_type": "BadRequestError",
                             "error_match": "prompt is too long"}),
    }
    faults = {}
    for family in d.families:
        desc, params = specs[family]
        faults[family] = Fault(family, family, desc, ids(family), dict(params))
    t0_ms = t0_ns // 1_000_000
    return GroundTruth(APP, d.seed, exp_id, faults, d.confounder,
                       (t0_ms + int(d.window[0] * 1000), t0_ms + int(d.window[1] * 1000)),
                       t0_ms, t0_ms + sim.HOURS * 3_600_000, n, seconds)
