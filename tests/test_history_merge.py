"""An issue's history is append-only: writers who each append to the list they read (a recheck,
a review, a bulk status change at once) keep both entries instead of the last one winning."""

from __future__ import annotations

from helpers.fixtures import sqlite_template, tracking_uri  # noqa: F401  (faster fresh stores)
from insights import InsightsClient


def test_stale_history_appends_from_two_writers_are_both_kept(tracking_uri,  # noqa: F811
                                                               experiment_id):
    client = InsightsClient(tracking_uri)
    run_id = client.create_analysis(experiment_id, run_name="history")
    issue_id = client.create_issue(run_id, "Tool fails", metadata={
        "history": [{"at": 1, "event": "created"}], "owner": "ana"})
    seen = client.get_issue(issue_id, experiment_id).metadata["history"]   # both read this
    client.update_issue(issue_id=issue_id, experiment_id=experiment_id,
                        metadata={"history": seen + [{"at": 2, "event": "recheck"}]})
    client.update_issue(issue_id=issue_id, experiment_id=experiment_id,
                        metadata={"history": seen + [{"at": 3, "event": "accepted"}]})
    meta = client.get_issue(issue_id, experiment_id).metadata
    assert [h["event"] for h in meta["history"]] == ["created", "recheck", "accepted"]
    assert meta["owner"] == "ana"


def test_status_changes_from_stale_copies_each_leave_their_entry(tracking_uri,  # noqa: F811
                                                                  experiment_id):
    a, b = InsightsClient(tracking_uri), InsightsClient(tracking_uri)
    run_id = a.create_analysis(experiment_id, run_name="history")
    issue_id = a.create_issue(run_id, "Slow answers")
    a.update_issue(issue_id=issue_id, experiment_id=experiment_id, status="IN_PROGRESS")
    b.update_issue(issue_id=issue_id, experiment_id=experiment_id, severity="HIGH")
    events = [(h["event"], h["to"]) for h in
              a.get_issue(issue_id, experiment_id).metadata["history"]]
    assert events == [("status", "IN_PROGRESS"), ("severity", "HIGH")]
