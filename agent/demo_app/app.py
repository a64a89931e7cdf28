"""The travel assistant: one traced agent turn per user request.

Trace shape (what a real tool-calling agent produces):
    travel_assistant (AGENT)            inputs {"request": ...}, outputs: the reply text
      ChatModel (CHAT_MODEL)            plans tool calls
      retrieve_travel_guides (RETRIEVER) trip requests only
      <tool> (TOOL)                     one span per tool call
      ChatModel (CHAT_MODEL)            writes the answer
Tool exceptions are not caught by the agent: they mark the tool span, the root span and
so the trace as ERROR, as an unguarded agent loop would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mlflow.entities import LiveSpan, SpanType

from .model import SYSTEM_PROMPT, ScriptedChatModel
from .spans import sim_span
from .tools import TOOLS, retrieve_travel_guides
from .turn import Turn

APP_NAME = "travel_assistant"
APP_VERSION = "2.3.1"


@dataclass(frozen=True)
class Outcome:
    """What the caller (a web handler, here the corpus builder) sees of one request."""

    trace_id: str
    response: str | None
    error: Exception | None = None


class TravelAssistant:
    """Answers travel questions with a chat model and four tools."""

    def __init__(self, experiment_id: str, model: ScriptedChatModel | None = None):
        self.experiment_id = experiment_id
        self.model = model or ScriptedChatModel()

    def handle(self, turn: Turn) -> Outcome:
        """Serve one request; an unhandled error becomes an error outcome, like an HTTP 500."""
        request = turn.request
        trace_id = ""
        try:
            with sim_span(
                APP_NAME, SpanType.AGENT, turn.clock,
                inputs={"request": request.text},
                experiment_id=self.experiment_id,
                tags={"app.version": APP_VERSION, "locale": request.language},
                metadata={"mlflow.trace.user": request.user_id,
                          "mlflow.trace.session": _session_id(turn)},
            ) as root:
                trace_id = root.trace_id
                response = self._respond(turn, root)
                root.set_outputs(response)
        except Exception as exc:  # noqa: BLE001 - the web layer turns this into a 500
            return Outcome(trace_id, None, exc)
        return Outcome(trace_id, response)

    def _respond(self, turn: Turn, root: LiveSpan) -> str:
        turn.wait(0.005, 0.03)
        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": turn.request.text}]
        plan = self.model.invoke(turn, messages, parent=root)
        messages.append(plan.as_dict())
        if turn.request.kind == "trip":
            self._retrieve_guides(turn, root)
        for call in plan.tool_calls:
            with sim_span(call.name, SpanType.TOOL, turn.clock, parent=root,
                          inputs=call.arguments) as span:
                result = TOOLS[call.name](turn, **call.arguments)
                span.set_outputs(result)
            messages.append({"role": "tool", "tool_call_id": call.id,
                             "content": json.dumps(result)})
            turn.wait(0.002, 0.01)
        return self.model.invoke(turn, messages, parent=root).content

    def _retrieve_guides(self, turn: Turn, root: LiveSpan) -> None:
        query = f"travel guide {turn.request.destinations[0].name}"
        with sim_span("retrieve_travel_guides", SpanType.RETRIEVER, turn.clock, parent=root,
                      inputs={"query": query}) as span:
            span.set_outputs(retrieve_travel_guides(turn, query))


def _session_id(turn: Turn) -> str:
    """One chat session per user per simulated day."""
    day = turn.clock.now_ns // (86_400 * 1_000_000_000)
    return f"{turn.request.user_id}-d{day}"
