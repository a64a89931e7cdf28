"""Incremental analysis: which traces an analysis reads, and what changed since the last one.

Why a window at all: an experiment keeps receiving traces, and re-analysing all of them to
learn what the last day added is slow and drowns the new in the old. A *window* is a span of
trace request times (``since_ms`` inclusive, ``until_ms`` the newest trace included). Every
analysis records the window it read in its metadata (``window``), so ``--since-last`` starts
exactly after the newest trace the previous analysis saw.

How it reaches every read: the nodes hand the analyst a ``WindowedToolkit`` whose client is a
``WindowedClient``: its Trace SQL and cohort statistics see only the window's traces (see
``insights.analytics.scope.window_sql``), so the census issues, the analyst's frames and
cohorts, an issue's trace list, the model's tools and the report all count the same traces.
A run without ``since_ms`` reads the whole experiment, exactly as before.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from agent.toolkit import TraceToolkit
from insights.analytics.scope import window_predicate, window_sql


@dataclass
class Window:
    """The traces one analysis reads, and the analysis it is compared with."""

    since_ms: int | None = None
    until_ms: int | None = None   # the newest trace's request time (inclusive)
    traces: int = 0
    previous_run_id: str | None = None
    note: str = ""

    @property
    def bounded(self) -> bool:
        return self.since_ms is not None

    def end_ms(self) -> int | None:
        """The exclusive end the SQL bounds take (None for an unbounded run)."""
        return None if not self.bounded or self.until_ms is None else self.until_ms + 1

    def as_state(self) -> dict[str, Any]:
        """The workflow state's ``window`` (and ``previous_run_id``) for this window."""
        window = {"since_ms": self.since_ms, "until_ms": self.until_ms, "traces": self.traces}
        return {"window": window, **({"previous_run_id": self.previous_run_id}
                                     if self.previous_run_id else {})}

    @classmethod
    def of(cls, state: dict[str, Any]) -> "Window":
        raw = state.get("window") or {}
        return cls(since_ms=_int(raw.get("since_ms")), until_ms=_int(raw.get("until_ms")),
                   traces=int(raw.get("traces") or 0), previous_run_id=state.get("previous_run_id"))


class WindowedClient:
    """An ``InsightsClient`` whose trace reads (Trace SQL, cohort statistics) see only the
    window's traces; everything else is the client's own."""

    def __init__(self, client: Any, since_ms: int | None, end_ms: int | None):
        self._client, self.since_ms, self.end_ms = client, since_ms, end_ms

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def execute_sql(self, experiment_id: str | None = None, sql: str = "", **kwargs: Any) -> Any:
        return self._client.execute_sql(experiment_id, window_sql(sql, self.since_ms, self.end_ms),
                                        **kwargs)

    def cohort_stats(self, experiment_id: str | None, cohort: str, control: str, outcome: str,
                     samples: int = 5) -> dict[str, Any]:
        lo, hi = self.since_ms, self.end_ms
        return self._client.cohort_stats(experiment_id, window_predicate(cohort, lo, hi),
                                         window_predicate(control, lo, hi), outcome, samples)


class WindowedToolkit(TraceToolkit):
    """The analyst's toolkit over the window: its bulk frame queries are windowed too (they
    go to the analytics session directly, not through the client)."""

    def __init__(self, client: Any, experiment_id: str, window: Window,
                 run_id: str | None = None, progress: Any = None):
        windowed = WindowedClient(client, window.since_ms, window.end_ms())
        super().__init__(windowed, experiment_id, run_id, progress=progress)
        self.window = window

    def frame_sql(self, query: str):
        return super().frame_sql(window_sql(query, self.window.since_ms, self.window.end_ms()))


def reader(client: Any, window: Window) -> Any:
    """The client the nodes read traces through: windowed when the run is."""
    return WindowedClient(client, window.since_ms, window.end_ms()) if window.bounded else client


def toolkit(client: Any, experiment_id: str, window: Window, run_id: str | None = None,
            progress: Any = None) -> TraceToolkit:
    if window.bounded:
        return WindowedToolkit(client, experiment_id, window, run_id, progress)
    return TraceToolkit(client, experiment_id, run_id, progress=progress)


# ---------------------------------------------------------------------- resolving a window


def measure(client: Any, experiment_id: str, since_ms: int | None) -> tuple[int, int | None]:
    """How many traces start at or after ``since_ms`` (all when None), and the newest's time."""
    where = "" if since_ms is None else f" WHERE request_time_ms >= {int(since_ms)}"
    count, newest = client.execute_sql(
        experiment_id, f"SELECT count(*) AS n, max(request_time_ms) AS newest FROM traces{where}"
    ).rows[0]
    return int(count or 0), _int(newest)


def previous_analysis(client: Any, experiment_id: str) -> Any | None:
    """The most recent COMPLETED analysis of the experiment (list_analyses is newest first)."""
    return next((a for a in client.list_analyses(experiment_id)
                 if a.status.value == "COMPLETED"), None)


def previous_end(client: Any, analysis: Any) -> int:
    """The newest trace time the analysis saw: its recorded window, else its census's time
    range (analyses from before windows were recorded), else when it was created."""
    recorded = _int(((analysis.metadata or {}).get("window") or {}).get("until_ms"))
    if recorded is not None:
        return recorded
    from insights.errors import NotFoundError

    try:
        end = _int(client.get_baseline_census(analysis.run_id).time_range.end_ms)
    except NotFoundError:
        end = None
    return end if end is not None else int(analysis.created_at)


def resolve(client: Any, experiment_id: str, since_last: bool = False,
            since_ms: int | None = None) -> Window:
    """The window of a new analysis: after the previous analysis (``since_last``), from
    ``since_ms``, or the whole experiment. Compared with the previous completed analysis
    whenever bounded. With no previous analysis, ``since_last`` reads every trace (``note``
    says so): a first incremental run is a full one."""
    previous = previous_analysis(client, experiment_id) if (since_last or since_ms is not None) \
        else None
    note = ""
    if since_last and previous is None:
        note = (f"no completed analysis of experiment {experiment_id} yet: "
                "analysing every trace")
    elif since_last:
        since_ms = previous_end(client, previous) + 1
    count, newest = measure(client, experiment_id, since_ms)
    return Window(since_ms=since_ms, until_ms=newest, traces=count,
                  previous_run_id=previous.run_id if previous is not None else None, note=note)


def describe(window: Window) -> str:
    """One line naming the window, for progress and the CLI."""
    if not window.bounded:
        return f"all {window.traces} traces"
    return f"{window.traces} traces since {iso(window.since_ms)}"


def iso(ms: int | None) -> str:
    if ms is None:
        return "n/a"
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------- what changed


def changes(before: Any, after: Any, previous_run_id: str) -> dict[str, Any]:
    """What changed between the previous analysis's census and this window's.

    Why these: they are what a person scanning a daily run asks first: are more traces
    failing, are they slower, is anything failing in a new way, is the agent calling a tool
    it never called, does it spend more tokens. Rates and times are before/after/change.
    """
    out: dict[str, Any] = {
        "previous_run_id": previous_run_id,
        "traces": {"before": before.total_traces, "after": after.total_traces},
        "error_rate": _delta(before.error_rate, after.error_rate),
        "latency_ms": {p: _delta(getattr(before.latency_ms.all, p),
                                 getattr(after.latency_ms.all, p)) for p in ("p50", "p95")},
        "new_error_types": sorted(error_types(after) - error_types(before)),
        "new_tools": sorted(tools(after) - tools(before)),
    }
    tokens = _delta(_tokens_per_trace(before), _tokens_per_trace(after))
    if tokens["before"] is not None or tokens["after"] is not None:
        out["tokens_per_trace"] = tokens
    return out


def error_types(census: Any) -> set[str]:
    """Error types seen in the census: the exception type where known, else the message."""
    names = {g.error_type or g.message for g in census.errors}
    names |= {t.type for s in census.spans for t in s.error_types}
    return {n for n in names if n}


def tools(census: Any) -> set[str]:
    """Names of the TOOL spans the census saw."""
    return {t.name for t in census.tools} | {s.name for s in census.spans if s.span_type == "TOOL"}


def _tokens_per_trace(census: Any) -> float | None:
    tokens = census.tokens
    return None if tokens is None or not tokens.traces_with_tokens else tokens.per_trace.mean


def _delta(before: float | None, after: float | None) -> dict[str, float | None]:
    change = None if before is None or after is None else after - before
    return {"before": before, "after": after, "change": change}


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def window_metadata(window: Window) -> dict[str, Any]:
    """What the analysis records about its window (read back by the next ``--since-last``)."""
    data = asdict(window)
    data.pop("note")
    data.pop("previous_run_id")
    return data
