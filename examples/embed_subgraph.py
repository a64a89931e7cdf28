"""Embed the analyze-experiment workflow as a subgraph of your own LangGraph agent.

Your graph shares the keys the workflow uses (``experiment_id``, ``run_id``) and passes the
same runtime context; the workflow's progress events arrive on your ``custom`` stream.

Run:  python examples/embed_subgraph.py --tracking-uri sqlite:///insights-demo/mlflow.db --experiment-id 1
"""

from __future__ import annotations

import argparse
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agent.offline import OfflineAnalyst
from insights import InsightsClient
from workflows.analyze_experiment import WorkflowContext, build_graph


class OnCallState(TypedDict, total=False):
    experiment_id: str
    run_id: str
    page: str


def page_the_owner(state: OnCallState, runtime: Runtime[WorkflowContext]) -> dict[str, Any]:
    """Your own step after the analysis: read the findings back from MLflow and act on them."""
    issues = runtime.context.client.list_issues(state["experiment_id"])
    serious = [i for i in issues if i.source_run_id == state["run_id"]
               and i.severity.value in ("CRITICAL", "HIGH") and i.status.value != "REJECTED"]
    lines = [f"[{i.severity.value}] {i.title} ({len(i.trace_ids)} traces)" for i in serious]
    return {"page": "\n".join(lines) or "nothing serious"}


def build_on_call_graph():
    graph = StateGraph(OnCallState, context_schema=WorkflowContext)
    graph.add_node("analyze", build_graph())      # the compiled workflow, used as a node
    graph.add_node("page_the_owner", page_the_owner)
    graph.add_edge(START, "analyze")
    graph.add_edge("analyze", "page_the_owner")
    graph.add_edge("page_the_owner", END)
    return graph.compile()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment-id", required=True)
    args = parser.parse_args()
    context = WorkflowContext(client=InsightsClient(args.tracking_uri), analyst=OfflineAnalyst(),
                              auto_answer=True, report_dir=".")
    graph = build_on_call_graph()
    final: dict[str, Any] = {}
    for namespace, mode, chunk in graph.stream({"experiment_id": args.experiment_id},
                                               context=context, stream_mode=["custom", "values"],
                                               subgraphs=True):
        if mode == "custom":
            print("  ..", chunk.get("message", "")[:100])
        elif not namespace:          # the outer graph's own state
            final = chunk
    print("page:\n" + final.get("page", ""))


if __name__ == "__main__":
    main()
