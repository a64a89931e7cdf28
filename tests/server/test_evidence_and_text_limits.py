"""Evidence must cite traces of the analysis's experiment, and free text has one set of size
limits, in the SDK, the CLI and the REST API alike. Unknown traces: NotFoundError / exit 2 /
404; text over a limit: InvalidInputError / exit 2 / 400; in every case nothing is written.
Real SQLite store with real traces (tests/server/conftest.py's ``seeded``)."""

from __future__ import annotations

import mlflow
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from insights.cli import app as cli_app
from insights.errors import InvalidInputError, NotFoundError
from insights.models import NOTE_MAX_CHARS, STATEMENT_MAX_CHARS, TITLE_MAX_CHARS
from insights.server import create_app
from insights.server.api import API_PREFIX
from tests.helpers.insights_helpers import store_state
from tests.server.conftest import make_span_traces

runner = CliRunner()


@pytest.fixture()
def other_trace(seeded) -> str:
    """A real trace, but in another experiment of the same store."""
    exp = mlflow.MlflowClient(seeded.uri).create_experiment("elsewhere")
    [tid] = make_span_traces(exp, 1)
    return tid


def _state(seeded):
    return store_state(mlflow.MlflowClient(seeded.uri), [seeded.experiment_id])


@pytest.mark.parametrize("bad", ["tr-0000000000000000000000000000dead", "other"])
def test_sdk_refuses_unknown_or_foreign_evidence_and_writes_nothing(seeded, other_trace, bad):
    bad = other_trace if bad == "other" else bad
    c, run, hid, iid = seeded.client, seeded.run_id, seeded.hypothesis_id, seeded.issue_ids[0]
    good = seeded.trace_ids[1]
    before = _state(seeded)
    calls = [
        lambda: c.create_hypothesis(run, "H", evidence=[f"{good}: ok", f"{bad}: missing"]),
        lambda: c.update_hypothesis(run, hid, status="VALIDATED", add_traces=[good, bad]),
        lambda: c.update_hypothesis(run, hid, add_evidence=[{"trace_id": bad}]),
        lambda: c.create_issue(run, "I", evidence=[{"trace_id": bad, "rationale": "r"}]),
        lambda: c.update_issue(run, iid, status="RESOLVED", add_evidence=[f"{bad}: r"]),
        lambda: c.update_issue(issue_id=iid, experiment_id=seeded.experiment_id,
                               add_traces=[bad]),
        lambda: c.link_traces(run, [good, bad]),
    ]
    for call in calls:
        with pytest.raises(NotFoundError, match=bad):
            call()
    assert _state(seeded) == before


def test_existing_evidence_still_accepted(seeded):
    """Real traces of the experiment pass the check in one lookup and are linked."""
    many = make_span_traces(seeded.experiment_id, 3) + seeded.trace_ids  # 9 distinct traces
    c = seeded.client
    h = c.update_hypothesis(seeded.run_id, seeded.hypothesis_id, add_traces=many)
    assert set(many) <= set(h.trace_ids)
    assert set(many) <= set(c.linked_trace_ids(seeded.run_id))


def test_cli_unknown_trace_exit_2_and_nothing_written(seeded):
    before = _state(seeded)
    for args in (
        ["create-hypothesis", "--run-id", seeded.run_id, "--statement", "S",
         "--add-evidence", "tr-feed: missing"],
        ["update-issue", "--issue-id", seeded.issue_ids[0], "--run-id", seeded.run_id,
         "-t", "tr-feed", "--status", "RESOLVED"],
        ["link-traces", "--run-id", seeded.run_id, "-t", seeded.trace_ids[0], "-t", "tr-feed"],
    ):
        res = runner.invoke(cli_app, ["--tracking-uri", seeded.uri, *args])
        assert res.exit_code == 2, res.output
        assert "tr-feed" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert _state(seeded) == before


@pytest.fixture()
def api(seeded):
    client = TestClient(create_app(seeded.uri))

    def post(path: str, body: dict, status: int) -> dict:
        res = client.post(API_PREFIX + path, json=body)
        assert res.status_code == status, res.text
        return res.json()

    return post


def test_rest_unknown_trace_is_404_and_nothing_written(seeded, api, other_trace):
    before = _state(seeded)
    for tid in ("tr-feed", other_trace):
        body = api("hypotheses/add-evidence", {
            "insights_run_id": seeded.run_id, "hypothesis_id": seeded.hypothesis_id,
            "evidence": [{"trace_id": seeded.trace_ids[0]}, {"trace_id": tid}]}, 404)
        assert tid in body["message"]
        body = api("issues/add-evidence", {
            "issue_id": seeded.issue_ids[1], "experiment_id": seeded.experiment_id,
            "evidence": [{"trace_id": tid, "rationale": "r"}]}, 404)
        assert tid in body["message"]
    assert _state(seeded) == before


# ---------------------------------------------------------------------- text size limits

OVER = {"title": TITLE_MAX_CHARS + 1, "statement": STATEMENT_MAX_CHARS + 1,
        "note": NOTE_MAX_CHARS + 1}


def test_sdk_text_limits_name_field_and_limit(seeded):
    c, run, hid, iid = seeded.client, seeded.run_id, seeded.hypothesis_id, seeded.issue_ids[0]
    exp = seeded.experiment_id
    before = _state(seeded)
    cases = [
        ("title", lambda: c.create_issue(run, "t" * OVER["title"])),
        ("title", lambda: c.update_issue(run, iid, title="t" * OVER["title"])),
        ("statement", lambda: c.create_hypothesis(run, "s" * OVER["statement"])),
        ("statement", lambda: c.update_hypothesis(run, hid, statement="s" * OVER["statement"])),
        ("testing_plan", lambda: c.create_hypothesis(run, "s", testing_plan="p" * OVER["note"])),
        ("rationale", lambda: c.update_hypothesis(run, hid, rationale="r" * OVER["note"])),
        ("resolution", lambda: c.update_issue(run, iid, resolution="r" * OVER["note"])),
        ("description", lambda: c.create_issue(run, "t", description="d" * OVER["note"])),
        ("description", lambda: c.update_analysis(run, description="d" * OVER["note"])),
        ("name", lambda: c.update_analysis(run, name="n" * OVER["title"])),
        ("name", lambda: c.create_analysis(exp, run_name="r", name="n" * OVER["title"])),
        ("rationale", lambda: c.update_issue(
            run, iid, add_evidence=[{"trace_id": seeded.trace_ids[0],
                                     "rationale": "r" * OVER["note"]}])),
    ]
    for field, call in cases:
        with pytest.raises(InvalidInputError) as err:
            call()
        msg = str(err.value)
        assert field in msg and "limit" in msg and "\n" not in msg, msg
    assert _state(seeded) == before
    # exactly at the limit is fine
    c.update_issue(run, iid, title="t" * TITLE_MAX_CHARS)


def test_cli_text_over_limit_exit_2(seeded):
    before = _state(seeded)
    res = runner.invoke(cli_app, ["--tracking-uri", seeded.uri, "create-issue", "--run-id",
                                  seeded.run_id, "--title", "t" * OVER["title"]])
    assert res.exit_code == 2 and "title is too long" in res.stderr
    res = runner.invoke(cli_app, ["--tracking-uri", seeded.uri, "update-hypothesis", "--run-id",
                                  seeded.run_id, "--hypothesis-id", seeded.hypothesis_id,
                                  "--testing-plan", "p" * OVER["note"]])
    assert res.exit_code == 2 and "testing_plan is too long" in res.stderr
    assert _state(seeded) == before


def test_rest_text_over_limit_400(seeded, api):
    before = _state(seeded)
    api("issues/update", {"issue_id": seeded.issue_ids[0], "experiment_id": seeded.experiment_id,
                          "resolution": "r" * OVER["note"]}, 400)
    api("hypotheses/update", {"insights_run_id": seeded.run_id,
                              "hypothesis_id": seeded.hypothesis_id,
                              "testing_plan": "p" * OVER["note"]}, 400)
    api("issues/update", {"issue_id": seeded.issue_ids[0], "experiment_id": seeded.experiment_id,
                          "title": "t" * OVER["title"]}, 400)
    assert _state(seeded) == before


# ---------------------------------------------------------------------- log-assessments


def test_log_assessments_that_logged_nothing_do_not_mark_the_issue(seeded, api):
    """REST: an issue without traces, and one whose only trace was deleted, stay unmarked."""
    c = seeded.client
    empty = c.create_issue(seeded.run_id, "No traces yet")
    out = api("issues/log-assessments", {"issue_id": empty}, 200)
    assert out["logged_count"] == 0
    assert not c.get_issue(empty).metadata.get("assessments_logged")

    [gone] = make_span_traces(seeded.experiment_id, 1)
    lost = c.create_issue(seeded.run_id, "Trace deleted later", evidence=[f"{gone}: r"])
    mlflow.MlflowClient(seeded.uri).delete_traces(seeded.experiment_id, trace_ids=[gone])
    out = api("issues/log-assessments", {"issue_id": lost}, 200)
    assert out["logged_count"] == 0 and [f["trace_id"] for f in out["failed"]] == [gone]
    assert not c.get_issue(lost).metadata.get("assessments_logged")


def test_agent_log_assessments_marks_only_when_something_was_logged(seeded):
    from agent.assessments import log_issue_assessments

    c = seeded.client
    empty = c.create_issue(seeded.run_id, "Nothing cited")
    assert log_issue_assessments(c, seeded.run_id, c.get_issue(empty)) == 0
    assert not c.get_issue(empty).metadata.get("assessments_logged")
    iid = seeded.issue_ids[1]  # one real trace
    assert log_issue_assessments(c, seeded.run_id, c.get_issue(iid)) == 1
    assert c.get_issue(iid).metadata.get("assessments_logged") is True
