"""Recheck open issues against newer traces, without a model.

Every issue the workflow writes keeps the executable definition it was proven with,
``metadata["signature"] = {"kind", "key", "where"}`` (``where``: the SQL predicate of its
traces). ``recheck`` counts each OPEN issue's ``where`` over the traces since a time (default:
the issue's last check, else when an analysis last saw it, else its creation) and over a span
of the same length just before (the span since ends now, or at the newest trace if later),
and records one of:

- ``still present``: matching traces since then (with the count);
- ``worse``: the rate since then is at least ``WORSE_RATIO`` x the issue's earlier rate (the
  span before when it has matching traces, else the share the issue was last seen with);
- ``not seen``: traces since then, none matching;
- ``no new traces``: no traces at all since then (nothing to tell).

Each result goes in the issue's ``metadata["history"]`` (event ``recheck``) and
``metadata["last_check"]``. One Trace SQL query counts every issue.
"""

from __future__ import annotations

from typing import Any

from insights.errors import InsightsError, InvalidInputError
from insights.models import Issue, IssueStatus, now_ms, to_ms

WORSE_RATIO = 1.5
STILL_PRESENT, WORSE, NOT_SEEN, NO_TRACES = "still present", "worse", "not seen", "no new traces"


def parse_since(value: str | int | None) -> int | None:
    """Epoch milliseconds from ``--since``: digits (ms) or an ISO 8601 date or datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise InvalidInputError(f"--since must not be negative: {value}")
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    ms = to_ms(text)
    if not ms:
        raise InvalidInputError(
            f"--since must be epoch milliseconds or an ISO date/time, got {text!r}")
    return ms


def default_since(issue: Issue) -> int:
    meta = issue.metadata or {}
    check = meta.get("last_check") if isinstance(meta.get("last_check"), dict) else {}
    for value in (check.get("at"), meta.get("last_seen"), issue.created_at):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return int(value)
    return 0


def earlier_share(issue: Issue) -> float | None:
    """The share of traces the issue concerned when an analysis last saw it."""
    meta = issue.metadata or {}
    for numbers in (meta.get("latest"), *(h.get("numbers") for h in
                                          reversed(meta.get("history") or [])
                                          if isinstance(h, dict) and h.get("event") != "recheck")):
        if isinstance(numbers, dict) and isinstance(numbers.get("share"), (int, float)):
            return float(numbers["share"])
    return None


def recheck(client, experiment_id: str | None, since_ms: int | None = None,
            issue_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Recheck every OPEN issue with a signature; return one result per issue (and record it).

    ``experiment_id`` None: ``MLFLOW_EXPERIMENT_ID``. Every issue is counted in one query (one
    pass over the traces); if that query fails, each issue is counted alone, so one broken
    signature reports an error without hiding the others."""
    experiment_id = client._experiment(experiment_id)
    if since_ms is not None and (not isinstance(since_ms, int) or isinstance(since_ms, bool)
                                 or since_ms < 0):
        raise InvalidInputError(f"since_ms must be epoch milliseconds, got {since_ms!r}")
    todo = [(issue, sig) for issue in client.list_issues(experiment_id)
            if (issue_ids is None or issue.issue_id in issue_ids)
            and IssueStatus(issue.status) == IssueStatus.OPEN
            and isinstance(sig := (issue.metadata or {}).get("signature"), dict)
            and sig.get("where")]
    if not todo:
        return []
    # the span "since" covers: up to now, or the newest trace if later
    newest = client.execute_sql(experiment_id, "SELECT max(request_time_ms) FROM traces",
                                max_rows=1).rows[0][0]
    end = max(now_ms(), int(newest or 0) + 1)
    windows = [_window(issue, since_ms, end) for issue, _ in todo]
    counts = _count_all(client, experiment_id, [sig["where"] for _, sig in todo], windows)
    return [_record(client, experiment_id, issue, sig, window, row)
            for (issue, sig), window, row in zip(todo, windows, counts)]


def _window(issue: Issue, since_ms: int | None, end: int) -> tuple[int, int]:
    """(since, start): the span rechecked, and the start of a span as long just before it."""
    since = default_since(issue) if since_ms is None else since_ms
    return since, since - max(end - since, 1)


def _sums(where: str, since: int, start: int) -> list[str]:
    return [f"sum(CASE WHEN request_time_ms >= {since} THEN 1 ELSE 0 END)",
            f"sum(CASE WHEN request_time_ms >= {since} AND ({where}) THEN 1 ELSE 0 END)",
            f"sum(CASE WHEN request_time_ms >= {start} AND request_time_ms < {since} "
            "THEN 1 ELSE 0 END)",
            f"sum(CASE WHEN request_time_ms >= {start} AND request_time_ms < {since} "
            f"AND ({where}) THEN 1 ELSE 0 END)"]


def _count_all(client, experiment_id: str, wheres: list[str],
               windows: list[tuple[int, int]]) -> list[tuple[int, ...] | str]:
    """Per issue (traces, count, traces_before, count_before), or the error met counting it.

    All in one query; when it fails (or a signature's text broke the column layout), each
    issue is counted alone so one broken signature does not hide the others."""
    error = "the signature does not count as one predicate"
    try:
        rows = _count(client, experiment_id, wheres, windows)
    except InsightsError as exc:
        rows, error = [], str(exc).splitlines()[0] if str(exc) else "query failed"
    if len(rows) == len(wheres):
        return rows
    if len(wheres) == 1:
        return [error]
    return [_count_all(client, experiment_id, [w], [window])[0]
            for w, window in zip(wheres, windows)]


def _count(client, experiment_id: str, wheres: list[str],
           windows: list[tuple[int, int]]) -> list[tuple[int, ...]]:
    columns = [c for w, (since, start) in zip(wheres, windows) for c in _sums(w, since, start)]
    row = client.execute_sql(experiment_id, f"SELECT {', '.join(columns)} FROM traces",
                             max_rows=1).rows[0]
    if len(row) != len(columns):
        return []
    return [tuple(int(v or 0) for v in row[i:i + 4]) for i in range(0, len(row), 4)]


def _record(client, experiment_id: str, issue: Issue, sig: dict[str, Any],
            window: tuple[int, int], row: tuple[int, ...] | str) -> dict[str, Any]:
    """The result for one issue, written into its history and last check."""
    now = now_ms()
    since, _ = window
    out: dict[str, Any] = {"issue_id": issue.issue_id, "title": issue.title,
                           "signature_key": sig.get("key"), "since": since}
    if isinstance(row, str):
        return {**out, "result": "error", "error": row}
    traces, count, traces_before, count_before = row
    rate = count / traces if traces else None
    before_rate = count_before / traces_before if traces_before else None
    earlier = before_rate if count_before else earlier_share(issue)
    if not traces:
        result = NO_TRACES
    elif not count:
        result = NOT_SEEN
    elif earlier and rate is not None and rate >= WORSE_RATIO * earlier:
        result = WORSE
    else:
        result = STILL_PRESENT
    numbers = {"since": since, "count": count, "traces": traces, "rate": rate,
               "count_before": count_before, "traces_before": traces_before,
               "rate_before": before_rate, "earlier_rate": earlier}
    out.update(result=result, **numbers)
    meta = issue.metadata or {}
    history = [h for h in meta.get("history") or [] if isinstance(h, dict)]
    entry = {"at": now, "run_id": None, "event": "recheck", "result": result, "numbers": numbers}
    client.update_issue(issue_id=issue.issue_id, experiment_id=experiment_id, metadata={
        "history": history + [entry],
        "last_check": {"at": now, "result": result, **numbers}})
    return out
