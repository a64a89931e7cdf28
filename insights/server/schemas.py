"""Request bodies of the Insights Agentic API (POST, JSON), validated before anything is read.

Unknown fields are ignored (the PRD's "common request format" sends one shape to every
endpoint); missing or malformed fields are a 400 with the field named. Enum values are
case-insensitive, like the SDK's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from insights.models import (NOTE_MAX_CHARS, STATEMENT_MAX_CHARS, TITLE_MAX_CHARS, AnalysisStatus,
                             HypothesisStatus, IssueStatus, Severity)


def _to_str(value: Any) -> Any:
    # Experiment ids are numeric strings in MLflow; accept a JSON number too.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


Id = Annotated[str, BeforeValidator(_to_str), StringConstraints(strip_whitespace=True, min_length=1,
                                                                 max_length=256)]
Text = Annotated[str, StringConstraints(max_length=NOTE_MAX_CHARS)]
SeverityIn = Annotated[Severity, BeforeValidator(_upper)]
IssueStatusIn = Annotated[IssueStatus, BeforeValidator(_upper)]
HypothesisStatusIn = Annotated[HypothesisStatus, BeforeValidator(_upper)]
AnalysisStatusIn = Annotated[AnalysisStatus, BeforeValidator(_upper)]
MaxTraces = Annotated[int, Field(ge=1, le=1000)]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ExperimentBody(Body):
    experiment_id: Id


class RunBody(Body):
    insights_run_id: Id


class HypothesisBody(RunBody):
    hypothesis_id: Id


class IssueBody(Body):
    issue_id: Id
    experiment_id: Id | None = None


class EvidenceIn(Body):
    trace_id: Id
    rationale: Text = ""
    supports: bool = True


class PageFields(Body):
    max_traces: MaxTraces = 100
    page_token: str | None = Field(None, description="next_page_token from the previous page")
    offset: Annotated[int, Field(ge=0)] | None = Field(None, description="alternative to page_token")


class ListPage(Body):
    max_results: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        None, description="page size (default: everything, in one answer)")
    page_token: str | None = Field(None, description="next_page_token from the previous page")


class ListAnalysesBody(ExperimentBody, ListPage):
    pass


class ListHypothesesBody(RunBody, ListPage):
    pass


class BulkUpdateIssuesBody(ExperimentBody):
    issue_ids: Annotated[list[Id], Field(min_length=1, max_length=1000)]
    status: IssueStatusIn | None = None
    severity: SeverityIn | None = None


class ReviewIssueBody(IssueBody):
    decision: Annotated[Literal["accept", "reject"], BeforeValidator(
        lambda v: v.strip().lower() if isinstance(v, str) else v)] = Field(
        description="accept: the issue stays (a REJECTED one is OPEN again) and is marked "
        "reviewed; reject: status REJECTED")
    reason: Text | None = None


class ListIssuesBody(ExperimentBody):
    sort_by: Literal["trace_count", "severity", "created_at", "updated_at", "status", "title"] = \
        "trace_count"
    order: Literal["asc", "desc"] | None = Field(
        None, description="default: desc for counts and dates, asc (most severe first) otherwise")
    severity: list[SeverityIn] | None = Field(None, description="keep only these severities")
    status: list[IssueStatusIn] | None = Field(None, description="keep only these statuses")
    created_after: int | None = Field(None, description="epoch ms, inclusive")
    created_before: int | None = Field(None, description="epoch ms, exclusive")
    max_results: Annotated[int, Field(ge=1, le=10_000)] | None = None
    page_token: str | None = None


class RecheckIssuesBody(ExperimentBody):
    since: int | str | None = Field(
        None, description="epoch ms or an ISO date/time (default: each issue's last check, "
        "else when an analysis last saw it)")
    issue_ids: list[Id] | None = Field(None, description="recheck only these issues")


class PreviewHypothesesBody(RunBody, PageFields):
    hypothesis_id: Id | None = Field(None, description="only this hypothesis's traces")


class PreviewIssuesBody(PageFields):
    experiment_id: Id | None = None
    issue_id: Id | None = Field(None, description="only this issue's traces")


class UpdateAnalysisBody(RunBody):
    status: AnalysisStatusIn | None = None
    name: Text | None = None
    description: Text | None = None


class CreateHypothesisBody(RunBody):
    statement: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=STATEMENT_MAX_CHARS)]
    testing_plan: Text = ""
    rationale: Text | None = None


class UpdateHypothesisBody(HypothesisBody):
    status: HypothesisStatusIn | None = None
    rationale: Text | None = Field(None, description="why the status changed")
    testing_plan: Text | None = None


class AddEvidenceToHypothesisBody(HypothesisBody):
    evidence: Annotated[list[EvidenceIn], Field(min_length=1, max_length=1000)]


class CreateIssueFromHypothesisBody(HypothesisBody):
    title: Annotated[str, StringConstraints(strip_whitespace=True, max_length=TITLE_MAX_CHARS)] | None = None
    description: Text | None = None
    severity: SeverityIn = Severity.MEDIUM
    include_refuting: bool = False


class UpdateIssueBody(IssueBody):
    status: IssueStatusIn | None = None
    severity: SeverityIn | None = None
    resolution: Text | None = None
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX_CHARS)] | None = None
    description: Text | None = None


class AddEvidenceToIssueBody(IssueBody):
    evidence: Annotated[list[EvidenceIn], Field(min_length=1, max_length=1000)]


class LogAssessmentsBody(IssueBody):
    assessment_name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                      max_length=200)] | None = None
    source_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                max_length=200)] = "insights-ui"
    force: bool = Field(False, description="log again even if the issue's assessments were logged")


class ExportIssueBody(IssueBody):
    format: Literal["github", "jira"] = "github"


class TraceBody(Body):
    trace_id: Id
    max_value_chars: Annotated[int, Field(ge=16, le=100_000)] = 2000


class ListExperimentsBody(Body):
    max_results: Annotated[int, Field(ge=1, le=5000)] = 500
