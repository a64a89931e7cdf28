"""Bad input to the SDK: the right typed error from insights.errors, and nothing written.

Each case runs against one populated experiment (an analysis with a hypothesis, an issue in the
parent, a plain non-Insights run, real traces) on SQLite and on a real server; the runs, their
tags, statuses, artifacts and trace links must be identical before and after the failed call.
"""

from __future__ import annotations

import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mlflow
import pytest
from mlflow import MlflowClient

from helpers.fixtures import sqlite_template  # noqa: F401
from helpers.insights_helpers import local_store_state, make_traces, parent_runs
from insights import InsightsClient
from insights.errors import (
    InsightsError,
    InvalidInputError,
    NotAnInsightsRunError,
    NotFoundError,
    TrackingServerError,
)

UNKNOWN_RUN = "0123456789abcdef0123456789abcdef"
UNKNOWN_ID = "fedcba9876543210fedcba9876543210"
UNKNOWN_EXPERIMENT = "987654321"


@dataclass
class World:
    uri: str
    exp: str
    client: InsightsClient
    mc: MlflowClient
    run_id: str
    hypothesis_id: str
    issue_id: str
    plain_run: str
    parent_run: str
    traces: list[str]
    db_path: Path
    artifact_root: Path


@pytest.fixture(scope="module", params=["sqlite", "server"])
def world(request, tmp_path_factory, sqlite_template):  # noqa: F811
    if request.param == "sqlite":
        root = tmp_path_factory.mktemp("bad-input")
        shutil.copyfile(sqlite_template, root / "mlflow.db")
        uri = f"sqlite:///{root / 'mlflow.db'}"
        exp = MlflowClient(uri).create_experiment("bad", artifact_location=(root / "art").as_uri())
        db_path, artifact_root = root / "mlflow.db", root / "art"
    else:
        server = request.getfixturevalue("mlflow_server")
        uri = server.uri
        exp = MlflowClient(uri).create_experiment(f"bad-{uuid.uuid4().hex[:8]}")
        db_path, artifact_root = server.root / "server.db", server.root / "artifacts"
    mc = MlflowClient(uri)
    client = InsightsClient(uri)
    traces = make_traces(uri, exp, 6)
    run_id = client.create_analysis(exp, run_name="R", name="Analysis")
    hid = client.create_hypothesis(run_id, "H", evidence=[f"{traces[0]}: r"])
    iid = client.create_issue(run_id, "I", evidence=[f"{traces[0]}: r"])
    plain = mc.create_run(exp, run_name="plain training run").info.run_id
    [parent] = parent_runs(mc, exp)
    yield World(uri, exp, client, mc, run_id, hid, iid, plain, parent.info.run_id, traces,
                db_path, artifact_root)
    mlflow.set_tracking_uri(None)


@pytest.fixture(autouse=True)
def _no_experiment_env(monkeypatch):
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)


def _state(w: World):
    return local_store_state(w.db_path, w.artifact_root)


def _fails_and_writes_nothing(w: World, call: Callable[[World], object], error: type) -> None:
    before = _state(w)
    with pytest.raises(error) as info:
        call(w)
    assert isinstance(info.value, InsightsError)
    assert str(info.value)
    assert _state(w) == before


Case = tuple[Callable[[World], object], type]


def _cases(table: dict[str, Case]):
    return pytest.mark.parametrize("call,error", list(table.values()), ids=list(table))


# ---------------------------------------------------------------- enums

ENUMS: dict[str, Case] = {
    "update_analysis-status": (lambda w: w.client.update_analysis(w.run_id, status="DONE"),
                               InvalidInputError),
    "update_hypothesis-status": (
        lambda w: w.client.update_hypothesis(w.run_id, w.hypothesis_id, status="MAYBE",
                                             add_evidence=[f"{w.traces[1]}: r"]),
        InvalidInputError),
    "create_issue-severity": (lambda w: w.client.create_issue(w.run_id, "T", severity="SEVERE"),
                              InvalidInputError),
    "create_issue-severity-none": (lambda w: w.client.create_issue(w.run_id, "T", severity=None),
                                   InvalidInputError),
    "create_issue-status": (lambda w: w.client.create_issue(w.run_id, "T", status="NEW"),
                            InvalidInputError),
    "update_issue-severity": (
        lambda w: w.client.update_issue(w.run_id, w.issue_id, severity="URGENT",
                                        add_traces=[w.traces[1]]),
        InvalidInputError),
    "update_issue-status": (lambda w: w.client.update_issue(w.run_id, w.issue_id, status="CLOSED"),
                            InvalidInputError),
}


@_cases(ENUMS)
def test_invalid_enum_value_raises_invalid_input_and_writes_nothing(world, call, error):
    _fails_and_writes_nothing(world, call, error)


# ---------------------------------------------------------------- evidence

BAD_EVIDENCE = {
    "missing-trace_id": {"rationale": "no trace"},
    "supports-not-bool": {"trace_id": "tr-aaa", "rationale": "r", "supports": "yes"},
    "supports-int": {"trace_id": "tr-aaa", "supports": 1},
    "not-a-dict": 42,
    "nested-list": ["tr-aaa"],
    "string-without-colon": "tr-aaa because it is slow",
    "string-empty-trace": ": rationale only",
    "path-trace-id": {"trace_id": "../x", "rationale": "r"},
    "slash-trace-id": "a/b: r",
    "rationale-not-string": {"trace_id": "tr-aaa", "rationale": 5},
    "empty-trace-id": {"trace_id": "  ", "rationale": "r"},
}

EVIDENCE_CALLS = {
    "create_hypothesis": lambda w, ev: w.client.create_hypothesis(w.run_id, "S", evidence=ev),
    "update_hypothesis": lambda w, ev: w.client.update_hypothesis(
        w.run_id, w.hypothesis_id, status="VALIDATED", add_evidence=ev),
    "create_issue": lambda w, ev: w.client.create_issue(w.run_id, "T", evidence=ev),
    "update_issue": lambda w, ev: w.client.update_issue(
        w.run_id, w.issue_id, status="RESOLVED", add_evidence=ev),
}


# update_hypothesis takes a plain sentence as the PRD shows (add_evidence=["Found 50ms
# delay..."]): it is attached to the call's traces (tests/workflow/test_person_word.py).
_EVIDENCE_PARAMS = [pytest.param(m, v, id=f"{k}-{m}") for k, v in BAD_EVIDENCE.items()
                    for m in EVIDENCE_CALLS
                    if not (k == "string-without-colon" and m == "update_hypothesis")]


@pytest.mark.parametrize("method,bad", _EVIDENCE_PARAMS)
def test_malformed_evidence_raises_invalid_input_and_writes_nothing(world, method, bad):
    # A valid entry before the bad one must not be linked or written either.
    evidence = [{"trace_id": world.traces[2], "rationale": "valid"}, bad]
    _fails_and_writes_nothing(world, lambda w: EVIDENCE_CALLS[method](w, evidence),
                              InvalidInputError)


@pytest.mark.parametrize("method", ["update_hypothesis", "update_issue"])
def test_bad_add_traces_id_raises_invalid_input_and_writes_nothing(world, method):
    traces = [world.traces[2], "../etc/passwd"]
    if method == "update_hypothesis":
        def call(w): return w.client.update_hypothesis(w.run_id, w.hypothesis_id, add_traces=traces)
    else:
        def call(w): return w.client.update_issue(w.run_id, w.issue_id, add_traces=traces)
    _fails_and_writes_nothing(world, call, InvalidInputError)


# ---------------------------------------------------------------- ids that are not ids

NOT_IDS = {"dotdot": "../x", "empty": "", "slash": "a/b", "space": "a b", "none": None, "int": 7}

RUN_ID_CALLS = {
    "get_analysis": lambda w, rid: w.client.get_analysis(rid),
    "update_analysis": lambda w, rid: w.client.update_analysis(rid, status="COMPLETED"),
    "create_hypothesis": lambda w, rid: w.client.create_hypothesis(rid, "S"),
    "update_hypothesis": lambda w, rid: w.client.update_hypothesis(rid, w.hypothesis_id,
                                                                   status="VALIDATED"),
    "list_hypotheses": lambda w, rid: w.client.list_hypotheses(rid),
    "get_hypothesis": lambda w, rid: w.client.get_hypothesis(rid, w.hypothesis_id),
    "preview_hypotheses": lambda w, rid: w.client.preview_hypotheses(rid),
    "create_issue": lambda w, rid: w.client.create_issue(rid, "T"),
    "update_issue": lambda w, rid: w.client.update_issue(rid, w.issue_id, status="RESOLVED"),
}


# update_issue(insights_run_id=None) is legitimate: the issue is then located by experiment.
_RUN_ID_PARAMS = [pytest.param(m, v, id=f"{k}-{m}") for k, v in NOT_IDS.items()
                  for m in RUN_ID_CALLS if not (v is None and m == "update_issue")]


@pytest.mark.parametrize("method,bad", _RUN_ID_PARAMS)
def test_run_id_that_is_not_an_id_raises_invalid_input(world, method, bad):
    _fails_and_writes_nothing(world, lambda w: RUN_ID_CALLS[method](w, bad), InvalidInputError)


ENTITY_ID_CALLS = {
    "get_hypothesis": lambda w, i: w.client.get_hypothesis(w.run_id, i),
    "update_hypothesis": lambda w, i: w.client.update_hypothesis(w.run_id, i, status="VALIDATED"),
    "create_issue-hypothesis_id": lambda w, i: w.client.create_issue(w.run_id, "T", hypothesis_id=i),
    "get_issue": lambda w, i: w.client.get_issue(i, experiment_id=w.exp),
    "update_issue": lambda w, i: w.client.update_issue(w.run_id, i, status="RESOLVED"),
}


@pytest.mark.parametrize("method", list(ENTITY_ID_CALLS))
@pytest.mark.parametrize("bad", ["../x", "", "a/b", "x" * 65], ids=["dotdot", "empty", "slash", "long"])
def test_entity_id_that_is_not_an_id_raises_invalid_input(world, method, bad):
    _fails_and_writes_nothing(world, lambda w: ENTITY_ID_CALLS[method](w, bad), InvalidInputError)


EXPERIMENT_CALLS = {
    "create_analysis": lambda w, e: w.client.create_analysis(e, run_name="R"),
    "list_analyses": lambda w, e: w.client.list_analyses(e),
    "list_issues": lambda w, e: w.client.list_issues(e),
    "preview_issues": lambda w, e: w.client.preview_issues(e),
    "get_issue": lambda w, e: w.client.get_issue(w.issue_id, experiment_id=e),
}


@pytest.mark.parametrize("method", list(EXPERIMENT_CALLS))
@pytest.mark.parametrize("bad", ["../x", "a/b", "1 OR 1=1"], ids=["dotdot", "slash", "sql"])
def test_experiment_id_that_is_not_an_id_raises_invalid_input(world, method, bad):
    _fails_and_writes_nothing(world, lambda w: EXPERIMENT_CALLS[method](w, bad), InvalidInputError)


# ---------------------------------------------------------------- unknown things


@pytest.mark.parametrize("method", list(RUN_ID_CALLS))
def test_unknown_run_id_raises_not_found(world, method):
    _fails_and_writes_nothing(world, lambda w: RUN_ID_CALLS[method](w, UNKNOWN_RUN), NotFoundError)


UNKNOWN_HYPOTHESIS = {
    "get_hypothesis": lambda w: w.client.get_hypothesis(w.run_id, UNKNOWN_ID),
    "update_hypothesis": lambda w: w.client.update_hypothesis(
        w.run_id, UNKNOWN_ID, status="VALIDATED", add_evidence=[f"{w.traces[1]}: r"]),
    "create_issue-hypothesis_id": lambda w: w.client.create_issue(
        w.run_id, "T", hypothesis_id=UNKNOWN_ID, evidence=[f"{w.traces[1]}: r"]),
}


@pytest.mark.parametrize("call", list(UNKNOWN_HYPOTHESIS.values()), ids=list(UNKNOWN_HYPOTHESIS))
def test_unknown_hypothesis_raises_not_found_and_writes_nothing(world, call):
    _fails_and_writes_nothing(world, call, NotFoundError)


UNKNOWN_ISSUE = {
    "get_issue-experiment": lambda w: w.client.get_issue(UNKNOWN_ID, experiment_id=w.exp),
    "get_issue-anywhere": lambda w: w.client.get_issue(UNKNOWN_ID),
    "update_issue": lambda w: w.client.update_issue(
        w.run_id, UNKNOWN_ID, status="RESOLVED", add_evidence=[f"{w.traces[1]}: r"]),
    "update_issue-experiment": lambda w: w.client.update_issue(
        issue_id=UNKNOWN_ID, experiment_id=w.exp, severity="LOW"),
}


@pytest.mark.parametrize("call", list(UNKNOWN_ISSUE.values()), ids=list(UNKNOWN_ISSUE))
def test_unknown_issue_raises_not_found_and_writes_nothing(world, call):
    _fails_and_writes_nothing(world, call, NotFoundError)


@pytest.mark.parametrize("method", list(RUN_ID_CALLS))
def test_plain_run_is_not_an_insights_run(world, method):
    _fails_and_writes_nothing(world, lambda w: RUN_ID_CALLS[method](w, w.plain_run),
                              NotAnInsightsRunError)


@pytest.mark.parametrize("method", ["create_hypothesis", "update_analysis", "get_analysis"])
def test_parent_run_is_not_an_analysis_run(world, method):
    _fails_and_writes_nothing(world, lambda w: RUN_ID_CALLS[method](w, w.parent_run),
                              NotAnInsightsRunError)


@pytest.mark.parametrize("method", list(EXPERIMENT_CALLS))
def test_unknown_experiment_raises_not_found(world, method):
    _fails_and_writes_nothing(world, lambda w: EXPERIMENT_CALLS[method](w, UNKNOWN_EXPERIMENT),
                              NotFoundError)


@pytest.mark.parametrize("method", ["list_analyses", "list_issues", "preview_issues"])
def test_no_experiment_id_and_no_env_raises_invalid_input(world, method):
    calls = {"list_analyses": lambda w: w.client.list_analyses(),
             "list_issues": lambda w: w.client.list_issues(),
             "preview_issues": lambda w: w.client.preview_issues()}
    _fails_and_writes_nothing(world, calls[method], InvalidInputError)


def test_create_analysis_without_experiment_raises_invalid_input(world):
    _fails_and_writes_nothing(world, lambda w: w.client.create_analysis(run_name="R"),
                              InvalidInputError)


# ---------------------------------------------------------------- other malformed values

OTHER = {
    "create_analysis-empty-run_name": (lambda w: w.client.create_analysis(w.exp, run_name="  "),
                                       InvalidInputError),
    "create_hypothesis-empty-statement": (lambda w: w.client.create_hypothesis(w.run_id, ""),
                                          InvalidInputError),
    "create_issue-empty-title": (lambda w: w.client.create_issue(w.run_id, " "),
                                 InvalidInputError),
    "update_analysis-empty-name": (lambda w: w.client.update_analysis(w.run_id, name=""),
                                   InvalidInputError),
    "preview_hypotheses-max_traces-0": (lambda w: w.client.preview_hypotheses(w.run_id, 0),
                                        InvalidInputError),
    "preview_issues-max_traces-negative": (lambda w: w.client.preview_issues(w.exp, -5),
                                           InvalidInputError),
    "preview_issues-max_traces-str": (lambda w: w.client.preview_issues(w.exp, "5"),
                                      InvalidInputError),
    "preview_issues-max_traces-bool": (lambda w: w.client.preview_issues(w.exp, True),
                                       InvalidInputError),
    "update_hypothesis-metadata-not-mapping": (
        lambda w: w.client.update_hypothesis(w.run_id, w.hypothesis_id, metadata="x",
                                             add_evidence=[f"{w.traces[3]}: r"]),
        InvalidInputError),
    "update_issue-metadata-not-mapping": (
        lambda w: w.client.update_issue(w.run_id, w.issue_id, metadata=["x"],
                                        add_traces=[w.traces[4]]),
        InvalidInputError),
    "create_analysis-metadata-not-mapping": (
        lambda w: w.client.create_analysis(w.exp, run_name="R", metadata="not a mapping"),
        InvalidInputError),
    "create_hypothesis-metrics-not-mapping": (
        lambda w: w.client.create_hypothesis(w.run_id, "S", metrics=[1, 2],
                                             evidence=[f"{w.traces[5]}: r"]),
        InvalidInputError),
}


@_cases(OTHER)
def test_other_malformed_values_raise_invalid_input_and_write_nothing(world, call, error):
    _fails_and_writes_nothing(world, call, error)


def test_deleted_analysis_run_raises_not_found(world):
    run_id = world.client.create_analysis(world.exp, run_name="to delete")
    world.mc.delete_run(run_id)
    for call in (lambda w: w.client.get_analysis(run_id),
                 lambda w: w.client.create_hypothesis(run_id, "S"),
                 lambda w: w.client.update_analysis(run_id, status="COMPLETED")):
        _fails_and_writes_nothing(world, call, NotFoundError)


# ---------------------------------------------------------------- unreachable server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


UNREACHABLE_CALLS = {
    "create_analysis": lambda c: c.create_analysis("1", run_name="R"),
    "list_analyses": lambda c: c.list_analyses("1"),
    "list_issues": lambda c: c.list_issues("1"),
    "get_analysis": lambda c: c.get_analysis(UNKNOWN_RUN),
    "create_hypothesis": lambda c: c.create_hypothesis(UNKNOWN_RUN, "S"),
    "update_issue": lambda c: c.update_issue(UNKNOWN_RUN, UNKNOWN_ID, status="RESOLVED"),
    "get_issue": lambda c: c.get_issue(UNKNOWN_ID),
    "preview_issues": lambda c: c.preview_issues("1"),
}


@pytest.mark.parametrize("call", list(UNREACHABLE_CALLS.values()), ids=list(UNREACHABLE_CALLS))
def test_unreachable_tracking_server_raises_tracking_server_error_quickly(monkeypatch, call):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    client = InsightsClient(f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    with pytest.raises(TrackingServerError) as info:
        call(client)
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert "127.0.0.1" in message or "unreachable" in message.lower()
