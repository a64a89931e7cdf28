"""What an analyst hands to the workflow: drafts of descriptions, issues, hypotheses, verdicts.

Both analysts (offline and chat-model) speak this small vocabulary; the workflow writes the
drafts to MLflow through InsightsClient. Each draft has a ``key`` so a node re-run after an
interrupt or a crash recognises what it already wrote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field

from agent.plans import Plan

if TYPE_CHECKING:
    from insights.analytics.census_model import Census


class EvidenceDraft(BaseModel):
    trace_id: str
    rationale: str
    supports: bool = True


class IssueDraft(BaseModel):
    key: str
    title: str
    description: str
    severity: str = "MEDIUM"
    evidence: list[EvidenceDraft] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    # SQL predicate over `traces` selecting every trace the issue concerns (all of them are
    # listed on the issue, not only the cited examples); None when the analyst has none.
    where: str | None = None


class HypothesisDraft(BaseModel):
    key: str
    statement: str
    rationale: str = ""
    testing_plan: str = ""
    plan: Plan | None = None
    kind: str = "operational"   # operational | quality
    issue_title: str = ""


class Verdict(BaseModel):
    status: str                  # VALIDATED | REJECTED
    reason: str
    evidence: list[EvidenceDraft] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)


class Analyst(Protocol):
    """The interface both analysts implement; the workflow knows nothing else about them."""

    name: str

    def describe_agent(self, facts: dict[str, Any]) -> str: ...

    def census_issues(self, census: Census, toolkit: Any) -> list[IssueDraft]: ...

    def propose_hypotheses(self, census: Census, focus: str, toolkit: Any) -> list[HypothesisDraft]: ...

    def test_hypothesis(self, hypothesis: Any, toolkit: Any) -> Verdict: ...

    def usage(self) -> dict[str, int]: ...
