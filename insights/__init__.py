"""MLflow Insights: analyses, hypotheses and issues about traces, stored in MLflow."""

from insights.client import InsightsClient
from insights.errors import (
    InsightsError,
    InvalidInputError,
    NotAnInsightsRunError,
    NotFoundError,
    TrackingServerError,
)
from insights.models import (
    Analysis,
    AnalysisStatus,
    EvidenceEntry,
    Hypothesis,
    HypothesisStatus,
    Issue,
    IssueStatus,
    Severity,
)

__all__ = [
    "Analysis", "AnalysisStatus", "EvidenceEntry", "Hypothesis", "HypothesisStatus",
    "InsightsClient", "InsightsError", "InvalidInputError", "Issue", "IssueStatus",
    "NotAnInsightsRunError", "NotFoundError", "Severity", "TrackingServerError",
]
