"""A scripted chat model: deterministic, seeded answers with realistic spans and token usage.

It stands in for a hosted LLM. The script for each request comes from the request itself
(`UserRequest` knows what was asked), so no network and no real model are needed, yet each
call is traced as a CHAT_MODEL span with messages in, a chat completion out, and token usage
in `mlflow.chat.tokenUsage`, from which MLflow derives the trace-level token usage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import LiveSpan, SpanType
from mlflow.tracing.constant import SpanAttributeKey

from .faults import DROPPED_LEGS, EMPTY_RESPONSES, SLOW_LONG_INPUTS
from .spans import sim_span
from .tools import TOOL_SCHEMAS
from .turn import Turn

MODEL_NAME = "travel-gpt-mini"
PROVIDER = "scripted"
# USD per million tokens. The app reports its own cost (as some integrations do), which also
# keeps MLflow from looking the made-up model up in a remote price catalog.
PRICE_PER_M_TOKENS = {"input": 0.15, "output": 0.60}
SYSTEM_PROMPT = (
    "You are a travel assistant. Use the tools to look up weather, flights, hotels and "
    "exchange rates, then answer the user concisely in their language."
)


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class AssistantMessage:
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c in self.tool_calls
            ]
        return message


class ScriptedChatModel:
    """Plans tool calls for a request, then writes the answer from the tool results."""

    def invoke(self, turn: Turn, messages: list[dict[str, Any]], parent: LiveSpan
               ) -> AssistantMessage:
        """One chat completion, traced as a CHAT_MODEL span under `parent`."""
        inputs = {"model": MODEL_NAME, "messages": messages, "tools": TOOL_SCHEMAS}
        with sim_span("ChatModel", SpanType.CHAT_MODEL, turn.clock, parent=parent,
                      inputs=inputs) as span:
            planning = not any(m["role"] == "tool" for m in messages)
            reply = self._plan(turn) if planning else self._answer(turn, messages)
            self._spend_latency(turn, planning)
            usage = _usage(messages, reply)
            span.set_attributes({
                SpanAttributeKey.CHAT_USAGE: usage,
                SpanAttributeKey.LLM_COST: _cost(usage),
                SpanAttributeKey.MODEL: MODEL_NAME,
                SpanAttributeKey.MODEL_PROVIDER: PROVIDER,
            })
            span.set_outputs({
                "model": MODEL_NAME,
                "choices": [{"index": 0, "message": reply.as_dict(),
                             "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
                "usage": {"prompt_tokens": usage["input_tokens"],
                          "completion_tokens": usage["output_tokens"],
                          "total_tokens": usage["total_tokens"]},
            })
        return reply

    def _spend_latency(self, turn: Turn, planning: bool) -> None:
        if planning and turn.plan.model_is_slow(len(turn.request.text), turn.rng):
            turn.fired.add(SLOW_LONG_INPUTS)
            turn.wait(*turn.plan.slow_seconds)
        elif turn.rng.random() < 0.02:
            turn.wait(2.0, 3.5)  # ordinary tail latency, unrelated to any fault
        else:
            turn.wait(0.5, 1.4)

    def _plan(self, turn: Turn) -> AssistantMessage:
        calls = [ToolCall(f"call_{i}", name, args)
                 for i, (name, args) in enumerate(_planned_calls(turn))]
        return AssistantMessage(content="", tool_calls=calls)

    def _answer(self, turn: Turn, messages: list[dict[str, Any]]) -> AssistantMessage:
        if turn.request.kind == "currency" and turn.rng.random() < turn.plan.empty_currency_rate:
            turn.fired.add(EMPTY_RESPONSES)
            return AssistantMessage(content="")
        results = [json.loads(m["content"]) for m in messages if m["role"] == "tool"]
        return AssistantMessage(content=_compose(turn.request.language, results))


def _planned_calls(turn: Turn) -> list[tuple[str, dict[str, Any]]]:
    """The tool calls the model makes for this request."""
    r = turn.request
    first = r.destinations[0].name
    if r.kind == "weather":
        return [("get_weather", {"city": first, "date": r.date})]
    if r.kind == "flights":
        return [("search_flights", {"origin": r.origin.name, "destination": first, "date": r.date})]
    if r.kind == "hotels":
        return [("search_hotels", {"city": first, "check_in": r.date, "nights": r.nights,
                                   "max_price_usd": r.budget})]
    if r.kind == "currency":
        src, dst = r.currency_pair
        return [("convert_currency", {"amount": r.amount, "source": src, "target": dst})]
    stops = list(r.destinations)
    if r.is_multi_city and turn.rng.random() < turn.plan.dropped_legs_rate:
        stops = stops[:1]  # the planner bug: only the first stop of a multi-city trip
        turn.fired.add(DROPPED_LEGS)
    calls: list[tuple[str, dict[str, Any]]] = []
    previous = r.origin
    for stop in stops:
        calls.append(("search_flights", {"origin": previous.name, "destination": stop.name,
                                         "date": r.date}))
        calls.append(("search_hotels", {"city": stop.name, "check_in": r.date,
                                        "nights": r.nights, "max_price_usd": 250}))
        previous = stop
    calls.append(("get_weather", {"city": first, "date": r.date}))
    return calls


LINES: dict[str, dict[str, str]] = {
    "en": {
        "lead": "Here's what I found:",
        "weather": "{city} on {date}: {condition}, {low_c}-{high_c} °C.",
        "flight": "Cheapest flight {from}→{to} on {date}: {airline}, ${price_usd}.",
        "hotel": "In {city}: {name} at ${nightly_usd}/night (rated {rating}).",
        "currency": "{amount:g} {from} is about {converted:,.2f} {to} (rate {rate}).",
    },
    "es": {
        "lead": "Esto es lo que encontré:",
        "weather": "{city} el {date}: {condition}, {low_c}-{high_c} °C.",
        "flight": "Vuelo más barato {from}→{to} el {date}: {airline}, {price_usd} USD.",
        "hotel": "En {city}: {name} a {nightly_usd} USD/noche (nota {rating}).",
        "currency": "{amount:g} {from} son unos {converted:,.2f} {to} (tasa {rate}).",
    },
}


def _compose(language: str, results: list[Any]) -> str:
    """Turn tool results into a short answer in the user's language."""
    lines = LINES[language]
    parts = [lines["lead"]]
    for result in results:
        if "condition" in result:
            parts.append(lines["weather"].format(**result))
        elif "options" in result:
            parts.append(lines["flight"].format(**result["options"][0]))
        elif "hotels" in result:
            best = min(result["hotels"], key=lambda h: h["nightly_usd"])
            parts.append(lines["hotel"].format(city=result["city"], **best))
        elif "converted" in result:
            parts.append(lines["currency"].format(**result))
    return " ".join(parts)


def _usage(messages: list[dict[str, Any]], reply: AssistantMessage) -> dict[str, int]:
    """Approximate token counts (4 characters a token) the way a provider would report them."""
    prompt_chars = sum(len(json.dumps(m)) for m in messages) + len(json.dumps(TOOL_SCHEMAS))
    input_tokens = prompt_chars // 4
    output_tokens = max(1, len(json.dumps(reply.as_dict())) // 4)
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens}


def _cost(usage: dict[str, int]) -> dict[str, float]:
    """Cost of one call at the demo model's list price."""
    input_cost = usage["input_tokens"] * PRICE_PER_M_TOKENS["input"] / 1e6
    output_cost = usage["output_tokens"] * PRICE_PER_M_TOKENS["output"] / 1e6
    return {"input_cost": input_cost, "output_cost": output_cost,
            "total_cost": input_cost + output_cost}
