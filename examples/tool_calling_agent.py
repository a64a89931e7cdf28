"""Hand the Insights tools to a tool-calling agent (LangChain's ``create_agent``).

With ``--model provider:name`` a real chat model drives the tools; without it a scripted model
shows the mechanics offline: it runs Trace SQL, reads the issues, and records a hypothesis.

Run:  python examples/tool_calling_agent.py --tracking-uri sqlite:///insights-demo/mlflow.db \
        --experiment-id 1 --run-id RUN_ID [--model openai:gpt-4.1-mini]
"""

from __future__ import annotations

import argparse

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from agent.tools import insights_tools
from insights import InsightsClient


class ScriptedModel(GenericFakeChatModel):
    """A stand-in chat model that replays tool calls; real models decide these themselves."""

    def bind_tools(self, tools, **kwargs):
        return self


def scripted(run_id: str) -> ScriptedModel:
    steps = [
        AIMessage("", tool_calls=[{"name": "execute_sql", "id": "1", "args": {
            "sql": "SELECT state, count(*) AS n FROM traces GROUP BY state"}}]),
        AIMessage("", tool_calls=[{"name": "list_issues", "id": "2", "args": {}}]),
        AIMessage("", tool_calls=[{"name": "create_hypothesis", "id": "3", "args": {
            "run_id": run_id, "statement": "Errors cluster in one time window",
            "testing_plan": "Step 1: count errors per hour. Step 2: VALIDATE if one window "
                            "holds most of them.", "rationale": "seen in the issue list"}}]),
        AIMessage("I checked the error counts, read the issues and recorded a hypothesis."),
    ]
    return ScriptedModel(messages=iter(steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment-id", required=True)
    parser.add_argument("--run-id", required=True, help="an analysis run to write into")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    client = InsightsClient(args.tracking_uri)
    model = args.model or scripted(args.run_id)
    agent = create_agent(model, tools=insights_tools(client, args.experiment_id),
                         system_prompt="You investigate MLflow traces with the Insights tools.")
    result = agent.invoke({"messages": [("user", "What is going wrong? Record one hypothesis.")]})
    for message in result["messages"]:
        print(f"{message.type:>6}: {str(message.content)[:160]}")
    print(f"hypotheses now: {[h.statement for h in client.list_hypotheses(args.run_id)]}")


if __name__ == "__main__":
    main()
