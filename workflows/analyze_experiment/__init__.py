"""The analyze-experiment workflow as a LangGraph state machine."""

from workflows.analyze_experiment.graph import build_graph
from workflows.analyze_experiment.state import AnalysisState, WorkflowContext

__all__ = ["AnalysisState", "WorkflowContext", "build_graph"]
