"""The baseline census as typed models: what every consumer (agent, report, CLI, UI) reads.

The JSON form (``model_dump(mode="json")``) is exactly the census dict stored in analysis runs
since the first version, so stored censuses load unchanged: unknown keys are kept, and keys
that only some censuses carry (``sample``, the server path's ``sample_count``, the run
context) are written back only when they were there.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_serializer

Num = int | float | None


class _Part(BaseModel):
    """Base: keeps unknown keys; leaves out the ``_if_set`` fields nobody set."""

    model_config = ConfigDict(extra="allow")
    _if_set: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler) -> dict[str, Any]:
        data = handler(self)
        for key in self._if_set:
            if key not in self.model_fields_set:
                data.pop(key, None)
        return data


class TimeRange(_Part):
    start_ms: int | None = None
    end_ms: int | None = None


class Percentiles(_Part):
    p50: Num = None
    p90: Num = None
    p95: Num = None
    p99: Num = None
    max: Num = None


class Latency(_Part):
    all: Percentiles = Field(default_factory=Percentiles)
    ok: Percentiles = Field(default_factory=Percentiles)


class SpanErrorType(_Part):
    """A span's failures of one error type (``insights.analytics.errors.error_type``)."""

    _if_set = ("sample_count",)
    type: str
    count: int
    traces: int
    failed_traces: int = 0  # of ``traces``, those that ended in ERROR (the rest recovered OK)
    message: str = ""  # the most frequent message, without its 'Type: ' prefix
    sample_trace_ids: list[str] = []
    sample_count: int | None = None


class SpanStats(_Part):
    _if_set = ("root_count", "failed_traces", "error_types")
    name: str
    span_type: str | None = None
    count: int
    error_count: int
    error_rate: float
    traces_with_error: int
    p50_ms: Num = None
    p95_ms: Num = None
    max_ms: Num = None
    sample_trace_ids: list[str] = []
    root_count: int = 0  # calls that were the trace's root span
    failed_traces: int = 0  # traces_with_error that ended in ERROR (the rest recovered OK)
    error_types: list[SpanErrorType] = []


class ErrorGroup(_Part):
    _if_set = ("sample_count", "error_type", "failed_traces")
    message: str
    count: int
    traces: int  # traces with such a span error, whatever the trace's outcome
    span_names: list[str] = []
    sample_trace_ids: list[str] = []
    sample_count: int | None = None  # server census: the sample's own count before scaling
    error_type: str | None = None
    failed_traces: int | None = None  # of ``traces``, those that ended in ERROR


class ToolStats(_Part):
    name: str
    calls: int
    failures: int
    failure_rate: float
    p50_ms: Num = None
    p95_ms: Num = None
    sample_trace_ids: list[str] = []


class Distribution(_Part):
    p25: Num = None
    p50: Num = None
    p90: Num = None
    p95: Num = None
    p99: Num = None
    max: Num = None
    mean: Num = None


class EmptyResponses(_Part):
    _if_set = ("sample_count",)
    count: int
    sample_trace_ids: list[str] = []
    definition: str = ""
    sample_count: int | None = None


class RepeatedAnswer(_Part):
    """One exact non-empty answer given by many OK traces (a canned fallback)."""

    _if_set = ("sample_count",)
    text: str
    count: int
    share: float = 0.0  # of OK traces
    sample_trace_ids: list[str] = []
    sample_count: int | None = None


class Responses(_Part):
    _if_set = ("repeated_answers",)
    request_length: Distribution = Field(default_factory=Distribution)
    response_length: Distribution = Field(default_factory=Distribution)
    empty_responses: EmptyResponses
    repeated_answers: list[RepeatedAnswer] = []


class TokenPerTrace(_Part):
    mean: Num = None
    p50: Num = None
    p95: Num = None
    max: Num = None


class Tokens(_Part):
    traces_with_tokens: int | None = None
    total_tokens: Num = None
    input_tokens: Num = None
    output_tokens: Num = None
    per_trace: TokenPerTrace = Field(default_factory=TokenPerTrace)
    sample_trace_ids: list[str] = []


class CostPerTrace(_Part):
    p50: Num = None
    p95: Num = None
    max: Num = None


class Cost(_Part):
    traces_with_cost: int | None = None
    total_cost: Num = None
    per_trace: CostPerTrace = Field(default_factory=CostPerTrace)
    sample_trace_ids: list[str] = []


class AssessmentScaleInfo(_Part):
    """How an assessment's values were judged (``insights.analytics.assessments``)."""

    kind: str = "categorical"  # bool | yes/no | pass/fail | verdict | numeric | categorical
    rule: str = ""
    threshold: Num = None  # numeric: a value fails below it
    low: Num = None
    high: Num = None
    failing_values: list[str] = []

    def scale(self, name: str):
        from insights.analytics.assessments import AssessmentScale

        return AssessmentScale.from_dict(name, self.model_dump())


class FailingRationale(_Part):
    _if_set = ("sample_count",)
    rationale: str
    count: int
    sample_trace_ids: list[str] = []
    sample_count: int | None = None


class AssessmentStats(_Part):
    _if_set = ("failing_traces", "scale", "failing_rationales")
    name: str
    count: int
    traces: int
    values: dict[str, int] = {}
    failing: int
    failing_rate: float
    sample_trace_ids: list[str] = []
    failing_traces: int | None = None  # distinct traces with a failing value
    scale: AssessmentScaleInfo | None = None  # None in censuses stored before scales
    failing_rationales: list[FailingRationale] = []  # the most frequent, of failing ones


class TimeBucket(_Part):
    start_ms: int
    traces: int
    errors: int
    error_rate: float
    sample_trace_ids: list[str] = []


class TimeBuckets(_Part):
    granularity: str = "hour"
    buckets: list[TimeBucket] = []


class SampleInfo(_Part):
    """Server census: how many traces were read with their spans, and what was scaled."""

    traces: int
    of: int
    scale: float
    sections: list[str] = []
    how: str = ""


class Census(_Part):
    """Baseline census of an experiment's traces (or of a filtered/time-bounded part)."""

    _if_set = ("sample", "experiment_id", "run_id", "computed_at", "filter_string",
               "start_time_ms", "end_time_ms")
    total_traces: int
    error_traces: int
    error_rate: float
    time_range: TimeRange = Field(default_factory=TimeRange)
    latency_ms: Latency = Field(default_factory=Latency)
    spans: list[SpanStats] = []
    errors: list[ErrorGroup] = []
    tools: list[ToolStats] = []
    responses: Responses
    tokens: Tokens | None = None
    cost: Cost | None = None
    assessments: list[AssessmentStats] = []
    time_buckets: TimeBuckets = Field(default_factory=TimeBuckets)
    method: str = "exact"
    sample: SampleInfo | None = None
    # where it was stored (set by InsightsClient.create_baseline_census)
    experiment_id: str | None = None
    run_id: str | None = None
    computed_at: int | None = None
    filter_string: str | None = None
    start_time_ms: int | None = None
    end_time_ms: int | None = None
