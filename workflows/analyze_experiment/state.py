"""Workflow state: pointers and the phase only. The facts live in MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict


class AnalysisState(TypedDict, total=False):
    experiment_id: str
    run_id: str
    phase: str
    # What the person last said, until the analysis run exists to hold it.
    draft_description: str
    description: str
    focus: str
    pending_hypotheses: list[dict[str, Any]]
    report_path: str
    log_assessments: bool
    # A declined hypotheses review waits for the person's edited list.
    hypotheses_declined: bool
    # Model calls and tokens spent so far (also in the analysis metadata): one budget per analysis.
    model_usage: dict[str, int]
    # The traces this analysis reads: {"since_ms", "until_ms", "traces"}; since_ms None reads
    # the whole experiment (see window.py). Also in the analysis metadata, for --since-last.
    window: dict[str, Any]
    # The analysis this one is compared with ("what changed"), when it reads a window.
    previous_run_id: str


@dataclass
class WorkflowContext:
    """Reaches every node through LangGraph's runtime context, never the state.

    ``client`` is an ``insights.InsightsClient``; ``analyst`` an ``agent.drafts.Analyst``.
    With ``auto_answer`` the nodes take each interrupt's default instead of pausing
    (unattended runs and benchmarks need no checkpointer).
    """

    client: Any
    analyst: Any
    auto_answer: bool = False
    report_dir: str = "."
    answers: dict[str, Any] = field(default_factory=dict)
