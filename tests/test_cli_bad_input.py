"""Bad input to the ``mlflow-insights`` CLI: each path exits 2 (1 for an unreachable server) with
one line on stderr naming the problem, no traceback, nothing on stdout, and nothing written.

"Nothing written" is checked by a snapshot of the store taken before and after each command: on
SQLite the database bytes (runs, tags, trace links) plus every file of the artifact store; on the
server every run of the experiment (status, lifecycle, tags), its artifact listing and the traces
linked to it. Valid evidence naming a real, never-linked trace rides along with most bad
commands, so a half-applied command (a link made before the refusal) is caught too. The last
test checks that the snapshot does see an accepted write.

One store per backend is built once per module (a fresh store per case would cost seconds each);
every case runs on SQLite, one case per category also on a real ``mlflow server``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import MlflowExperimentLocation, ViewType
from typer.testing import CliRunner

from insights.cli import app
from helpers.fixtures import copy_template

runner = CliRunner()
UNKNOWN = "0123456789abcdef0123456789abcdef"  # well-formed, exists nowhere


@dataclass
class World:
    uri: str
    exp: str
    run: str  # an analysis run
    parent: str  # the experiment's Insights parent run
    plain: str  # an ordinary MLflow run in the same experiment
    hyp: str
    issue: str
    fresh: str  # a real trace that nothing links yet
    db: Path | None = None  # SQLite file and artifact folder: snapshot the bytes (fast, exact)
    artifact_dir: Path | None = None

    def fill(self, args: list[str]) -> list[str]:
        tokens = {"@RUN@": self.run, "@PARENT@": self.parent, "@PLAIN@": self.plain,
                  "@HYP@": self.hyp, "@ISSUE@": self.issue, "@EXP@": self.exp,
                  "@FRESH@": self.fresh}
        out = []
        for a in args:
            for k, v in tokens.items():
                a = a.replace(k, v)
            out.append(a)
        return out


def _invoke(uri: str, args: list[str]):
    return runner.invoke(app, ["--tracking-uri", uri, *args], env={"MLFLOW_EXPERIMENT_ID": None})


def _ok(uri: str, *args: str) -> dict:
    res = _invoke(uri, [*args, "--output", "json"])
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def _build(uri: str, artifact_location: str | None) -> World:
    client = MlflowClient(uri)
    exp = client.create_experiment(f"bad-input-{time.time_ns()}", artifact_location=artifact_location)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        ids = []
        for name in ("linked", "fresh"):
            with mlflow.start_span(name=name,
                                   trace_destination=MlflowExperimentLocation(experiment_id=exp)) as s:
                s.set_inputs({"q": name})
            ids.append(s.trace_id)
        mlflow.flush_trace_async_logging()
    finally:
        mlflow.set_tracking_uri(previous)
    linked_trace, fresh = ids
    run = _ok(uri, "create-analysis", "--experiment-id", exp, "--run-name", "Bad Input")["run_id"]
    hyp = _ok(uri, "create-hypothesis", "--run-id", run, "--statement", "S",
              "--evidence", json.dumps({"trace_id": linked_trace, "rationale": "r"}))["hypothesis_id"]
    issue = _ok(uri, "create-issue", "--run-id", run, "--title", "T",
                "--evidence", json.dumps({"trace_id": linked_trace, "rationale": "r"}))["issue_id"]
    parent = client.get_run(run).data.tags["mlflow.parentRunId"]
    plain = client.create_run(exp, run_name="ordinary training run").info.run_id
    return World(uri, exp, run, parent, plain, hyp, issue, fresh)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("bad-input")
    w = _build(copy_template(root / "mlflow.db"), (root / "artifacts").as_uri())
    w.db, w.artifact_dir = root / "mlflow.db", root / "artifacts"
    return w


@pytest.fixture(scope="module")
def server_world(mlflow_server) -> World:
    return _build(mlflow_server.uri, None)


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for info in client.list_artifacts(run_id, path):
        out.append(info.path + ("/" if info.is_dir else f" {info.file_size}"))
        if info.is_dir:
            out.extend(_artifacts(client, run_id, info.path))
    return out


def snapshot(w: World):
    """Everything a command could write. On SQLite: the database bytes (runs, tags, trace links)
    and every file of the artifact store. On the server: our experiment through the API."""
    if w.db is not None:
        files = sorted(
            (str(p.relative_to(w.artifact_dir)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in w.artifact_dir.rglob("*")
        )
        return hashlib.sha256(w.db.read_bytes()).hexdigest(), files
    client = MlflowClient(w.uri)
    state: dict = {"experiments": len(client.search_experiments(view_type=ViewType.ALL))}
    for r in client.search_runs([w.exp], run_view_type=ViewType.ALL, max_results=1000):
        rid = r.info.run_id
        traces = client.search_traces(locations=[w.exp], run_id=rid, max_results=500,
                                      include_spans=False)
        state[rid] = (
            r.info.status, r.info.lifecycle_stage, sorted(r.data.tags.items()),
            _artifacts(client, rid), sorted(t.info.trace_id for t in traces),
        )
    return state


def refused(w: World, args: list[str], code: int, *needles: str) -> str:
    """Run ``args``; check the refusal contract and that the store did not change."""
    args = w.fill(args)
    before = snapshot(w)
    res = _invoke(w.uri, args)
    after = snapshot(w)
    assert isinstance(res.exception, SystemExit), f"unexpected exception {res.exception!r}"
    assert res.exit_code == code, f"exit {res.exit_code}, stderr: {res.stderr!r}"
    assert res.stdout == "", f"stdout should be empty on error: {res.stdout!r}"
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {res.stderr!r}"
    line = lines[0]
    assert line.startswith("Error: "), line
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    assert after == before, "the refused command changed the store"
    return line


GOOD_EV = json.dumps({"trace_id": "@FRESH@", "rationale": "valid evidence", "supports": True})


# ---------------------------------------------------------------------- enum values

BAD_ENUMS = [
    (["create-issue", "--run-id", "@RUN@", "--title", "t", "--severity", "URGENT",
      "--evidence", GOOD_EV], "severity", "URGENT"),
    (["create-issue", "--run-id", "@RUN@", "--title", "t", "--status", "DONE",
      "--evidence", GOOD_EV], "status", "DONE"),
    (["update-issue", "--issue-id", "@ISSUE@", "--severity", "URGENT", "--evidence", GOOD_EV],
     "severity", "URGENT"),
    (["update-issue", "--issue-id", "@ISSUE@", "--run-id", "@RUN@", "--status", "CLOSED",
      "--resolution", "fixed", "--evidence", GOOD_EV], "status", "CLOSED"),
    (["update-hypothesis", "--run-id", "@RUN@", "--hypothesis-id", "@HYP@", "--status", "MAYBE",
      "--evidence", GOOD_EV], "status", "MAYBE"),
    (["update-analysis", "--run-id", "@RUN@", "--status", "PAUSED", "--name", "new name"],
     "status", "PAUSED"),
    # a status value valid for another entity is still refused
    (["update-hypothesis", "--run-id", "@RUN@", "--hypothesis-id", "@HYP@", "--status", "OPEN"],
     "status", "OPEN"),
]


@pytest.mark.parametrize("args,what,value", BAD_ENUMS, ids=lambda x: x if isinstance(x, str) else None)
def test_invalid_status_or_severity(world, args, what, value):
    refused(world, args, 2, what, value)


# ---------------------------------------------------------------------- evidence

EVIDENCE_COMMANDS = {
    "create-hypothesis": ["create-hypothesis", "--run-id", "@RUN@", "--statement", "s"],
    "create-issue": ["create-issue", "--run-id", "@RUN@", "--title", "t"],
    "update-hypothesis": ["update-hypothesis", "--run-id", "@RUN@", "--hypothesis-id", "@HYP@",
                          "--status", "VALIDATED"],
    "update-issue": ["update-issue", "--issue-id", "@ISSUE@", "--severity", "HIGH"],
}

# name: (raw --evidence value, words the one-line error must contain)
BAD_EVIDENCE = {
    "malformed-json": ('{"trace_id": "tr-1", "rationale": ', ["evidence", "#2", "not valid JSON"]),
    "single-quotes": ("{'trace_id': 'tr-1'}", ["evidence", "#2", "not valid JSON"]),
    "array": ('["tr-1", "why"]', ["evidence", "#2", "JSON object"]),
    "string": ('"tr-1"', ["evidence", "#2", "JSON object"]),
    "null": ("null", ["evidence", "#2", "JSON object"]),
    "number": ("42", ["evidence", "#2", "JSON object"]),
    "missing-trace-id": ('{"rationale": "no trace named", "supports": true}',
                         ["evidence", "#2", "trace_id"]),
    "supports-string": ('{"trace_id": "tr-1", "rationale": "r", "supports": "yes"}',
                        ["evidence", "#2", "supports"]),
    "supports-int": ('{"trace_id": "tr-1", "rationale": "r", "supports": 1}',
                     ["evidence", "#2", "supports"]),
    "path-trace-id": ('{"trace_id": "../../etc/passwd", "rationale": "r"}',
                      ["trace id", "../../etc/passwd"]),
}
# every kind of bad evidence on create-hypothesis; one of each kind on the other commands
EVIDENCE_CASES = [("create-hypothesis", bad) for bad in BAD_EVIDENCE] + [
    (command, bad)
    for command in ("create-issue", "update-hypothesis", "update-issue")
    for bad in ("malformed-json", "array", "missing-trace-id", "supports-string")
]


@pytest.mark.parametrize("command,bad", EVIDENCE_CASES)
def test_bad_evidence_refused(world, command, bad):
    """A bad second --evidence refuses the whole command: the valid first one is not applied."""
    raw, needles = BAD_EVIDENCE[bad]
    args = [*EVIDENCE_COMMANDS[command], "--evidence", GOOD_EV, "--evidence", raw]
    refused(world, args, 2, *needles)


@pytest.mark.parametrize("command", ["create-hypothesis", "update-issue"])
def test_add_evidence_without_trace_refused(world, command):
    args = [*EVIDENCE_COMMANDS[command], "--evidence", GOOD_EV, "--add-evidence", "no colon here"]
    refused(world, args, 2, "evidence", "trace")


def test_bad_trace_id_flag_refused(world):
    refused(world, ["update-hypothesis", "--run-id", "@RUN@", "--hypothesis-id", "@HYP@",
                    "--evidence", GOOD_EV, "-t", "../x"], 2, "trace id", "../x")
    refused(world, ["update-issue", "--issue-id", "@ISSUE@", "--evidence", GOOD_EV,
                    "-t", "a/b"], 2, "trace id", "a/b")


# ---------------------------------------------------------------------- ids that are not ids

BAD_IDS = ["../x", "", "a/b"]

RUN_ID_COMMANDS = {
    "get-analysis": ["get-analysis", "--run-id", "@ID@"],
    "update-analysis": ["update-analysis", "--run-id", "@ID@", "--status", "COMPLETED"],
    "create-hypothesis": ["create-hypothesis", "--run-id", "@ID@", "--statement", "s",
                          "--evidence", GOOD_EV],
    "list-hypotheses": ["list-hypotheses", "--run-id", "@ID@"],
    "get-hypothesis": ["get-hypothesis", "--run-id", "@ID@", "--hypothesis-id", "@HYP@"],
    "update-hypothesis": ["update-hypothesis", "--run-id", "@ID@", "--hypothesis-id", "@HYP@",
                          "--evidence", GOOD_EV],
    "create-issue": ["create-issue", "--run-id", "@ID@", "--title", "t", "--evidence", GOOD_EV],
    "update-issue": ["update-issue", "--issue-id", "@ISSUE@", "--run-id", "@ID@",
                     "--evidence", GOOD_EV],
    "preview-hypotheses": ["preview-hypotheses", "--run-id", "@ID@"],
    "link-traces": ["link-traces", "--run-id", "@ID@", "-t", "@FRESH@"],
}
HYP_ID_COMMANDS = {
    "get-hypothesis": ["get-hypothesis", "--run-id", "@RUN@", "--hypothesis-id", "@ID@"],
    "update-hypothesis": ["update-hypothesis", "--run-id", "@RUN@", "--hypothesis-id", "@ID@",
                          "--status", "VALIDATED", "--evidence", GOOD_EV],
    "create-issue": ["create-issue", "--run-id", "@RUN@", "--title", "t", "--hypothesis-id", "@ID@",
                     "--evidence", GOOD_EV],
}
ISSUE_ID_COMMANDS = {
    "get-issue": ["get-issue", "--issue-id", "@ID@"],
    "update-issue": ["update-issue", "--issue-id", "@ID@", "--run-id", "@RUN@",
                     "--status", "RESOLVED", "--evidence", GOOD_EV],
}


def _with_id(args: list[str], value: str) -> list[str]:
    return [value if a == "@ID@" else a for a in args]


RUN_ID_CASES = [(c, v) for c in ("get-analysis", "create-hypothesis", "link-traces")
                for v in BAD_IDS] + [(c, BAD_IDS[i % 3]) for i, c in enumerate(RUN_ID_COMMANDS)
                                     if c not in ("get-analysis", "create-hypothesis", "link-traces")]


@pytest.mark.parametrize("command,value", RUN_ID_CASES)
def test_run_id_not_an_id(world, command, value):
    refused(world, _with_id(RUN_ID_COMMANDS[command], value), 2, "invalid run id")


@pytest.mark.parametrize("value", BAD_IDS, ids=["dotdot", "empty", "slash"])
@pytest.mark.parametrize("command", list(HYP_ID_COMMANDS))
def test_hypothesis_id_not_an_id(world, command, value):
    refused(world, _with_id(HYP_ID_COMMANDS[command], value), 2, "invalid hypothesis id")


@pytest.mark.parametrize("value", BAD_IDS, ids=["dotdot", "empty", "slash"])
@pytest.mark.parametrize("command", list(ISSUE_ID_COMMANDS))
def test_issue_id_not_an_id(world, command, value):
    refused(world, _with_id(ISSUE_ID_COMMANDS[command], value), 2, "invalid issue id")


@pytest.mark.parametrize("value", ["../x", "a/b", "1 OR 1=1"])
def test_experiment_id_not_an_id(world, value):
    refused(world, ["list-analyses", "--experiment-id", value], 2, "invalid experiment id")
    refused(world, ["create-analysis", "--experiment-id", value, "--run-name", "r"], 2,
            "invalid experiment id")


# ---------------------------------------------------------------------- unknown entities


@pytest.mark.parametrize("command", list(RUN_ID_COMMANDS))
def test_unknown_run(world, command):
    refused(world, _with_id(RUN_ID_COMMANDS[command], UNKNOWN), 2, UNKNOWN, "not found")


@pytest.mark.parametrize("command", list(HYP_ID_COMMANDS))
def test_unknown_hypothesis(world, command):
    refused(world, _with_id(HYP_ID_COMMANDS[command], UNKNOWN), 2, "hypothesis", UNKNOWN,
            "not found")


@pytest.mark.parametrize("args", [
    ["get-issue", "--issue-id", UNKNOWN],
    ["get-issue", "--issue-id", UNKNOWN, "--experiment-id", "@EXP@"],
    ["update-issue", "--issue-id", UNKNOWN, "--status", "RESOLVED"],
    ["update-issue", "--issue-id", UNKNOWN, "--run-id", "@RUN@", "--evidence", GOOD_EV],
    ["update-issue", "--issue-id", UNKNOWN, "--experiment-id", "@EXP@", "--severity", "LOW"],
], ids=["get", "get-in-exp", "update", "update-with-run", "update-in-exp"])
def test_unknown_issue(world, args):
    refused(world, args, 2, "issue", UNKNOWN, "not found")


@pytest.mark.parametrize("which", ["@PLAIN@", "@PARENT@"], ids=["plain-run", "parent-run"])
@pytest.mark.parametrize("command", [c for c in RUN_ID_COMMANDS if c != "update-issue"])
def test_run_that_is_not_an_analysis(world, command, which):
    refused(world, _with_id(RUN_ID_COMMANDS[command], which), 2, "not an insights analysis run")


@pytest.mark.parametrize("args", [
    ["create-analysis", "--experiment-id", "999999", "--run-name", "r"],
    ["list-analyses", "--experiment-id", "999999"],
    ["list-issues", "--experiment-id", "999999"],
    ["preview-issues", "--experiment-id", "999999"],
    ["get-issue", "--issue-id", "@ISSUE@", "--experiment-id", "999999"],
    ["update-issue", "--issue-id", "@ISSUE@", "--experiment-id", "999999", "--status", "RESOLVED"],
], ids=lambda a: a[0])
def test_unknown_experiment(world, args):
    refused(world, args, 2, "experiment", "999999")


def test_missing_experiment_id(world):
    refused(world, ["list-analyses"], 2, "experiment id")
    refused(world, ["create-analysis", "--run-name", "r"], 2, "experiment id")


def test_blank_required_text(world):
    refused(world, ["create-analysis", "--experiment-id", "@EXP@", "--run-name", "  "], 2, "run_name")
    refused(world, ["create-hypothesis", "--run-id", "@RUN@", "--statement", " ",
                    "--evidence", GOOD_EV], 2, "statement")
    refused(world, ["create-issue", "--run-id", "@RUN@", "--title", "", "--evidence", GOOD_EV],
            2, "title")


def test_usage_errors_exit_2_without_traceback(world):
    """Click-level errors (bad --max-traces, missing required option) are usage errors: exit 2."""
    for args in (["preview-issues", "--experiment-id", "@EXP@", "--max-traces", "0"],
                 ["preview-hypotheses", "--run-id", "@RUN@", "--max-traces", "many"],
                 ["create-hypothesis", "--run-id", "@RUN@"],
                 ["get-analysis", "--run-id", "@RUN@", "--output", "yaml"]):
        args = world.fill(args)
        before = snapshot(world)
        res = _invoke(world.uri, args)
        assert res.exit_code == 2, (args, res.stderr)
        assert res.stdout == "" and "Traceback" not in res.stderr
        assert snapshot(world) == before


# ---------------------------------------------------------------------- real tracking server

SERVER_CASES = {
    "bad-status": (["update-hypothesis", "--run-id", "@RUN@", "--hypothesis-id", "@HYP@",
                    "--status", "MAYBE", "--evidence", GOOD_EV], ["status", "MAYBE"]),
    "malformed-evidence": (["create-hypothesis", "--run-id", "@RUN@", "--statement", "s",
                            "--evidence", GOOD_EV, "--evidence", "{not json"], ["not valid JSON"]),
    "supports-not-bool": (["update-issue", "--issue-id", "@ISSUE@", "--evidence", GOOD_EV,
                           "--evidence", '{"trace_id": "tr-1", "supports": "no"}'], ["supports"]),
    "run-id-not-an-id": (["get-analysis", "--run-id", "../x"], ["invalid run id"]),
    "unknown-run": (["create-issue", "--run-id", UNKNOWN, "--title", "t", "--evidence", GOOD_EV],
                    [UNKNOWN, "not found"]),
    "unknown-hypothesis": (["update-hypothesis", "--run-id", "@RUN@", "--hypothesis-id", UNKNOWN,
                            "--evidence", GOOD_EV], ["hypothesis", "not found"]),
    "unknown-issue": (["update-issue", "--issue-id", UNKNOWN, "--status", "RESOLVED"],
                      ["issue", "not found"]),
    "not-an-analysis": (["create-hypothesis", "--run-id", "@PLAIN@", "--statement", "s",
                         "--evidence", GOOD_EV], ["not an insights analysis run"]),
    "unknown-experiment": (["create-analysis", "--experiment-id", "999999", "--run-name", "r"],
                           ["experiment", "999999"]),
}


@pytest.mark.server
@pytest.mark.parametrize("case", list(SERVER_CASES))
def test_refused_on_tracking_server(server_world, case):
    args, needles = SERVER_CASES[case]
    refused(server_world, args, 2, *needles)


# ---------------------------------------------------------------------- real subprocesses


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


def _script() -> list[str]:
    exe = Path(sys.executable).with_name("mlflow-insights")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "insights.cli"]


def _subprocess(args: list[str], timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    start = time.monotonic()
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - start


def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.stdout == "", proc.stdout
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {proc.stderr!r}"
    assert lines[0].startswith("Error: ")
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]


def test_unreachable_tracking_server_exits_1_quickly():
    """The installed console script against a closed port: exit 1, one line, in seconds."""
    port = _closed_port()
    proc, elapsed = _subprocess([*_script(), "--tracking-uri", f"http://127.0.0.1:{port}",
                                 "create-analysis", "--experiment-id", "1", "--run-name", "r",
                                 "--output", "json"])
    assert proc.returncode == 1, proc.stderr
    _one_line_error(proc, "unreachable", f"127.0.0.1:{port}")
    assert elapsed < 30, f"took {elapsed:.1f}s to give up on a closed port"


def test_subprocess_bad_input_one_line(world):
    """``python -m insights.cli`` with a bad --status: exit 2, one line, nothing written."""
    before = snapshot(world)
    proc, _ = _subprocess([sys.executable, "-m", "insights.cli", "--tracking-uri", world.uri,
                           "update-hypothesis", "--run-id", world.run, "--hypothesis-id", world.hyp,
                           "--status", "MAYBE", "--evidence", GOOD_EV.replace("@FRESH@", world.fresh)])
    assert proc.returncode == 2
    _one_line_error(proc, "status", "MAYBE")
    assert snapshot(world) == before


# ---------------------------------------------------------------------- the detector itself


@pytest.mark.parametrize("which", ["world", "server_world"])
def test_snapshot_sees_a_real_write(request, which):
    """Guard for every test above: an accepted command does change the snapshot (runs last)."""
    w = request.getfixturevalue(which)
    before = snapshot(w)
    res = _invoke(w.uri, ["update-analysis", "--run-id", w.run, "--description", "changed"])
    assert res.exit_code == 0, res.stderr
    assert snapshot(w) != before
