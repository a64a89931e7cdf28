"""MLflow Insights: analyses, hypotheses and issues about traces, stored in MLflow.

``from insights import InsightsClient`` works as usual, but the client and the models are
imported on first use (PEP 562 ``__getattr__``): the client pulls in MLflow, which takes
seconds, and ``mlflow-insights --help`` or ``from insights.errors import ...`` must not pay
for it. The errors are plain Python and are imported at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from insights.errors import (
    InsightsError,
    InvalidInputError,
    NotAnInsightsRunError,
    NotFoundError,
    TrackingServerError,
)

if TYPE_CHECKING:
    from insights.client import InsightsClient
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

# Public name -> the module that defines it, imported when the name is first read.
_LAZY = {
    "InsightsClient": "insights.client",
    **{name: "insights.models" for name in (
        "Analysis", "AnalysisStatus", "EvidenceEntry", "Hypothesis", "HypothesisStatus",
        "Issue", "IssueStatus", "Severity",
    )},
}

__all__ = [
    "Analysis", "AnalysisStatus", "EvidenceEntry", "Hypothesis", "HypothesisStatus",
    "InsightsClient", "InsightsError", "InvalidInputError", "Issue", "IssueStatus",
    "NotAnInsightsRunError", "NotFoundError", "Severity", "TrackingServerError",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'insights' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later reads skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
