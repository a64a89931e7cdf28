"""A scripted LangChain chat model for the chat-model analyst tests.

langchain-core's fake chat models have no ``bind_tools``; this one does (returning itself, so
``with_structured_output`` works through the default tool-calling path) and answers with
whatever ``script(phase, messages, call_number)`` returns. Every message list it receives is
kept in ``received``, so tests can count calls and inspect what the model was shown.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any, Callable

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field

_ids = itertools.count(1)
BLOCK = re.compile(r"<trace_data>.*?</trace_data>", re.DOTALL)


class ScriptedChatModel(BaseChatModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    script: Callable[[str, list[BaseMessage], int], AIMessage]
    received: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedChatModel":
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        self.received.append(list(messages))
        reply = self.script(phase_of(messages), list(messages), len(self.received))
        return ChatResult(generations=[ChatGeneration(message=reply)])


def phase_of(messages: list[BaseMessage]) -> str:
    """Which analyst step is calling, from its system prompt."""
    system = next((m.content for m in messages if isinstance(m, SystemMessage)), "")
    if "Write one paragraph" in system:
        return "describe"
    if "Propose at most" in system:
        return "propose"
    if "You are testing one hypothesis" in system:
        return "test"
    return "other"


def tool_call(name: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "id": f"call-{next(_ids)}", "type": "tool_call"}


def calls(*items: dict[str, Any]) -> AIMessage:
    return AIMessage(content="", tool_calls=list(items))


def structured(**payload: Any) -> AIMessage:
    """The reply ``with_structured_output(QualityHypotheses)`` parses."""
    return calls(tool_call("QualityHypotheses", **payload))


def tool_outputs(messages: list[BaseMessage]) -> list[str]:
    return [str(m.content) for m in messages if isinstance(m, ToolMessage)]


def unquote(block_text: str) -> Any:
    """The JSON inside a tool's ``<trace_data>`` answer."""
    inner = block_text.split("<trace_data>", 1)[1].rsplit("</trace_data>", 1)[0]
    return json.loads(inner)


def text_of(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, list):
        return " ".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def outside_trace_data(message: BaseMessage) -> str:
    return BLOCK.sub("", text_of(message))
