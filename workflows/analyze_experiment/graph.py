"""The analyze-experiment state machine (see ../shared/spec/analyze-experiment-workflow.md).

setup -> understand agent -> [confirm description] -> [choose focus] -> create analysis ->
census -> census issues -> propose hypotheses -> [review hypotheses] -> [edit hypotheses, only
after a declined review] -> [confirm plans of the person's hypotheses, looping while the person
adds more there] -> test hypotheses ->
issues from hypotheses -> [review issues] -> [log assessments?] -> [report path] -> report ->
log assessments -> complete.   Brackets are interrupts.

The graph is a straight line but for that loop: a resumed analysis rehydrates its phase from MLflow in ``setup``
and each node skips work the analysis already holds.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from workflows.analyze_experiment import nodes
from workflows.analyze_experiment.state import AnalysisState, WorkflowContext


def build_graph(checkpointer=None):
    """Compile the workflow. Pass a checkpointer to pause at interrupts between calls."""
    graph = StateGraph(AnalysisState, context_schema=WorkflowContext)
    previous = START
    for name in nodes.ORDER:
        graph.add_node(name, getattr(nodes, name))
        if previous == "confirm_plans":
            graph.add_conditional_edges(previous, nodes.plans_route, ["confirm_plans", name])
        else:
            graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    return graph.compile(checkpointer=checkpointer, name="analyze_experiment")
