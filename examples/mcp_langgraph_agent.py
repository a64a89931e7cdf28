"""Load the Insights MCP tools into a LangGraph agent through ``langchain-mcp-adapters``.

The agent talks to ``insights-agent mcp`` over stdio (one server process for the whole run)
exactly as a coding agent would, so nothing here imports the Insights SDK. Without
``--model`` a fake chat model stands in: it calls ``list_issues`` and then summarizes what the
tool returned. With ``--model provider:name`` a real chat model chooses the tools itself.

Run:  python examples/mcp_langgraph_agent.py --tracking-uri sqlite:///insights-demo/mlflow.db \
        --experiment-id 1 [--model openai:gpt-4.1-mini] [--question "..."]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools

SYSTEM = ("You investigate an LLM application's MLflow traces with the Insights tools. Read "
          "the recorded state with the tools; do not guess.")


class IssueListingModel(BaseChatModel):
    """A fake chat model for running the example offline: its first turn calls
    ``list_issues``; its next turn reads that tool's answer and reports the issues."""

    @property
    def _llm_type(self) -> str:
        return "issue-listing-fake"

    def bind_tools(self, tools: Any, **kwargs: Any) -> "IssueListingModel":
        names = {getattr(t, "name", None) for t in tools}
        if "list_issues" not in names:
            raise ValueError("the MCP server offers no list_issues tool")
        return self

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None,
                  **kwargs: Any) -> ChatResult:
        answers = [m for m in messages if isinstance(m, ToolMessage)]
        if not answers:
            reply = AIMessage("", tool_calls=[{"name": "list_issues", "args": {},
                                               "id": "call-list-issues", "type": "tool_call"}])
        else:
            reply = AIMessage(summarize(answers[-1]))
        return ChatResult(generations=[ChatGeneration(message=reply)])


def summarize(answer: ToolMessage) -> str:
    """The issues a ``list_issues`` answer holds, one line each, most traces first."""
    if answer.status == "error":
        return f"list_issues failed: {tool_text(answer)}"
    issues = json.loads(tool_text(answer)).get("issues", [])
    if not issues:
        return "No issues are recorded for this experiment yet."
    lines = [f"{len(issues)} issue(s) recorded:"]
    lines += [f"- [{i['severity']}] {i['title']} ({i['status']}, {i['trace_count']} traces)"
              for i in issues]
    return "\n".join(lines)


def tool_text(message: ToolMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") if isinstance(block, dict) else str(block)
                   for block in content)


def server_connection(tracking_uri: str, experiment_id: str | None) -> dict[str, Any]:
    """How to start ``insights-agent mcp`` (this interpreter, so the example runs from a
    checkout as well as from an install)."""
    env = dict(os.environ)
    if experiment_id:
        env["MLFLOW_EXPERIMENT_ID"] = experiment_id
    return {"transport": "stdio", "command": sys.executable,
            "args": ["-m", "agent.cli", "mcp", "--tracking-uri", tracking_uri], "env": env}


async def ask(tracking_uri: str, experiment_id: str | None, question: str,
              model: Any = None) -> list[BaseMessage]:
    """Run the agent once over the MCP tools; return its messages."""
    client = MultiServerMCPClient({"insights": server_connection(tracking_uri, experiment_id)})
    async with client.session("insights") as session:  # one server for every tool call
        tools = await load_mcp_tools(session)
        agent = create_agent(model or IssueListingModel(), tools=tools, system_prompt=SYSTEM)
        result = await agent.ainvoke({"messages": [("user", question)]})
    return result["messages"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--experiment-id", default=os.environ.get("MLFLOW_EXPERIMENT_ID"))
    parser.add_argument("--model", default=None, help="provider:name; a fake model if omitted")
    parser.add_argument("--question", default="Which issues are open in this experiment?")
    args = parser.parse_args()
    if not args.tracking_uri:
        parser.error("--tracking-uri (or MLFLOW_TRACKING_URI) is required")
    model = None
    if args.model:
        from langchain.chat_models import init_chat_model

        model = init_chat_model(args.model)
    messages = asyncio.run(ask(args.tracking_uri, args.experiment_id, args.question, model))
    for message in messages:
        calls = [c["name"] for c in getattr(message, "tool_calls", None) or []]
        shown = f"calls {', '.join(calls)}" if calls else str(message.content)[:300]
        print(f"{message.type:>6}: {shown}")
    print(f"\n{messages[-1].content}")


if __name__ == "__main__":
    main()
