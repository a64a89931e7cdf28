"""Pydantic models for the three Insights entities and their enums (see the PRD's data model)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from insights.errors import InvalidInputError

# Size limits on free text, defined once: the SDK checks them before writing (check_text),
# so the CLI and the REST API, which call the SDK, give the same error for the same text.
# Stored files are read whatever their size: the limits guard writes, not reads.
TITLE_MAX_CHARS = 500
STATEMENT_MAX_CHARS = 10_000
NOTE_MAX_CHARS = 100_000
TEXT_LIMITS: dict[str, int] = {
    "run_name": TITLE_MAX_CHARS, "name": TITLE_MAX_CHARS, "title": TITLE_MAX_CHARS,
    "statement": STATEMENT_MAX_CHARS,
    "description": NOTE_MAX_CHARS, "testing_plan": NOTE_MAX_CHARS,
    "rationale": NOTE_MAX_CHARS, "resolution": NOTE_MAX_CHARS,
}


def check_text(**fields: Any) -> None:
    """Raise InvalidInputError naming the first text field over its limit in TEXT_LIMITS."""
    for name, value in fields.items():
        limit = TEXT_LIMITS[name]
        if isinstance(value, str) and len(value) > limit:
            raise InvalidInputError(
                f"{name} is too long: {len(value):,} characters (limit {limit:,})")


def now_ms() -> int:
    """Timestamps are epoch milliseconds, like MLflow's own."""
    return int(time.time() * 1000)


def to_ms(value: Any) -> int:
    """Epoch milliseconds from what a timestamp field may hold in a hand-written file:
    an int, a float, a YAML date or datetime, or an ISO 8601 string. 0 when unknown."""
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return 0
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return int(value.timestamp() * 1000)
    return 0


def new_id() -> str:
    return uuid.uuid4().hex


class AnalysisStatus(str, Enum):
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    ARCHIVED = "ARCHIVED"


class HypothesisStatus(str, Enum):
    TESTING = "TESTING"
    VALIDATED = "VALIDATED"
    REJECTED = "REJECTED"


class IssueStatus(str, Enum):
    OPEN = "OPEN"
    IN_PROGRESS = "IN_PROGRESS"
    RESOLVED = "RESOLVED"
    REJECTED = "REJECTED"


class Severity(str, Enum):
    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


SEVERITY_RANK = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}


class _Model(BaseModel):
    # Unknown fields (another tool's, a person's) are kept and written back, never dropped.
    model_config = ConfigDict(use_enum_values=False, extra="allow")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (enums as their string values)."""
        return self.model_dump(mode="json")


class EvidenceEntry(_Model):
    """One trace cited as evidence. ``supports`` is False for refuting evidence."""

    trace_id: str = Field(min_length=1)
    rationale: str = ""
    supports: bool = True
    added_at: int = Field(default_factory=now_ms)

    @field_validator("trace_id")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("trace_id must not be empty")
        return v

    def key(self) -> tuple[str, str, bool]:
        """Two writers adding the same finding must not duplicate it."""
        return (self.trace_id, self.rationale, self.supports)


class _Entity(_Model):
    """Fields every entity file has; lenient where a hand-written file may differ."""

    @field_validator("created_at", "updated_at", mode="before", check_fields=False)
    @classmethod
    def _timestamp(cls, v: Any) -> Any:
        """An ISO date or datetime in a hand-written file reads as epoch milliseconds."""
        return v if isinstance(v, int) and not isinstance(v, bool) else (to_ms(v) or v)

    @field_validator("evidence", "metrics", "metadata", "assessments", mode="before",
                     check_fields=False)
    @classmethod
    def _empty(cls, v: Any, info) -> Any:
        """``evidence:`` left empty in YAML is null: read it as no evidence."""
        if v is None:
            return [] if info.field_name in ("evidence", "assessments") else {}
        return v


class Analysis(_Entity):
    run_id: str
    experiment_id: str
    run_name: str = ""
    name: str
    description: str = ""
    status: AnalysisStatus = AnalysisStatus.ACTIVE
    created_at: int = Field(default_factory=now_ms)
    updated_at: int = Field(default_factory=now_ms)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Hypothesis(_Entity):
    hypothesis_id: str
    run_id: str = ""
    statement: str
    testing_plan: str = ""
    rationale: str | None = None
    status: HypothesisStatus = HypothesisStatus.TESTING
    evidence: list[EvidenceEntry] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    created_at: int = Field(default_factory=now_ms)
    updated_at: int = Field(default_factory=now_ms)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def trace_ids(self) -> list[str]:
        return _unique_trace_ids(self.evidence)

    @property
    def supports_count(self) -> int:
        return sum(1 for e in self.evidence if e.supports)

    @property
    def refutes_count(self) -> int:
        return sum(1 for e in self.evidence if not e.supports)


class Issue(_Entity):
    issue_id: str
    source_run_id: str
    hypothesis_id: str | None = None
    title: str
    description: str = ""
    severity: Severity = Severity.MEDIUM
    status: IssueStatus = IssueStatus.OPEN
    evidence: list[EvidenceEntry] = Field(default_factory=list)
    assessments: list[str] = Field(default_factory=list)
    resolution: str | None = None
    created_at: int = Field(default_factory=now_ms)
    updated_at: int = Field(default_factory=now_ms)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def trace_ids(self) -> list[str]:
        return _unique_trace_ids(self.evidence)

    @property
    def trace_count(self) -> int:
        """How many traces the issue concerns: ``metadata["trace_count"]`` when its writer
        counted them (the evidence lists at most 10,000), else its evidence traces."""
        count = (self.metadata or {}).get("trace_count")
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            return count
        return len(self.trace_ids)

    def seen_by(self, run_id: str | None) -> bool:
        """The analysis run created this issue or found it again (``metadata["analyses"]``)."""
        return bool(run_id) and (self.source_run_id == run_id
                                 or run_id in ((self.metadata or {}).get("analyses") or []))


def _unique_trace_ids(evidence: list[EvidenceEntry]) -> list[str]:
    return list(dict.fromkeys(e.trace_id for e in evidence))
