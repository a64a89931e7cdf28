"""The ``mlflow-insights`` CLI end to end: every command, JSON shapes, human output, --help.

Commands run through ``typer.testing.CliRunner`` on ``insights.cli.app`` against a real tracking
store (SQLite, and a real ``mlflow server`` where the ``store`` fixture is used), plus a few runs
of the real console script in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from rich.console import Console

from helpers.insights_helpers import make_traces as shared_make_traces
from insights import render
from insights.cli import app

COMMANDS = [
    "create-analysis", "create-hypothesis", "create-issue",
    "update-analysis", "update-hypothesis", "update-issue",
    "list-analyses", "list-hypotheses", "list-issues",
    "get-analysis", "get-hypothesis", "get-issue",
    "preview-hypotheses", "preview-issues", "link-traces",
]

runner = CliRunner()


# ---------------------------------------------------------------------- helpers


def cli(uri: str, *args: str, env: dict | None = None):
    """Run one CLI command against ``uri``; never let an unexpected exception pass silently."""
    result = runner.invoke(app, ["--tracking-uri", uri, *args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args[0]} raised {result.exception!r}\nstderr: {result.stderr}")
    return result


def ok_json(uri: str, *args: str, env: dict | None = None):
    """Run with ``--output json``; exit 0, empty stderr, and stdout is exactly one JSON document."""
    result = cli(uri, *args, "--output", "json", env=env)
    assert result.exit_code == 0, f"{args[0]} exited {result.exit_code}: {result.stderr}"
    assert result.stderr == "", result.stderr
    return json.loads(result.stdout)  # raises if there is anything besides one document


def ok_human(uri: str, *args: str) -> str:
    result = cli(uri, *args)
    assert result.exit_code == 0, f"{args[0]} exited {result.exit_code}: {result.stderr}"
    assert result.stderr == ""
    return result.stdout


def make_traces(experiment_id: str, n: int, prefix: str = "step") -> list[str]:
    """Log ``n`` real traces into the experiment of the current tracking URI; return their ids."""
    return shared_make_traces(mlflow.get_tracking_uri(), experiment_id, n, prefix=f"{prefix}-",
                              inputs=lambda i: {"question": f"{prefix} question {i}"})


def linked(experiment_id: str, run_id: str) -> set[str]:
    traces = MlflowClient().search_traces(
        locations=[experiment_id], run_id=run_id, max_results=500, include_spans=False
    )
    return {t.info.trace_id for t in traces}


def ev(trace_id: str, rationale: str, supports: bool | None = None) -> str:
    data = {"trace_id": trace_id, "rationale": rationale}
    if supports is not None:
        data["supports"] = supports
    return json.dumps(data)


# ---------------------------------------------------------------------- main flows, JSON


def test_full_flow_json(store):
    uri, exp = store
    t = make_traces(exp, 6)

    # create-analysis / get-analysis / list-analyses / update-analysis
    created = ok_json(uri, "create-analysis", "--experiment-id", exp, "--run-name", "Latency Check",
                      "--name", "Production Latency", "--description", "p99 is high")
    assert set(created) == {"run_id"}
    run = created["run_id"]
    assert MlflowClient().get_run(run).info.experiment_id == exp

    a = ok_json(uri, "get-analysis", "--run-id", run)
    assert a["run_id"] == run and a["name"] == "Production Latency"
    assert a["run_name"] == "Latency Check" and a["description"] == "p99 is high"
    assert a["status"] == "ACTIVE" and a["experiment_id"] == exp

    second = ok_json(uri, "create-analysis", "--experiment-id", exp, "--run-name", "Errors")["run_id"]
    listed = ok_json(uri, "list-analyses", "--experiment-id", exp)
    assert set(listed) == {"analyses"}
    assert {x["run_id"] for x in listed["analyses"]} == {run, second}
    assert {x["name"] for x in listed["analyses"]} == {"Production Latency", "Errors"}

    upd = ok_json(uri, "update-analysis", "--run-id", run, "--name", "Renamed Latency",
                  "--description", "done")
    assert upd["name"] == "Renamed Latency" and upd["status"] == "ACTIVE"
    assert upd["description"] == "done" and upd["run_id"] == run
    again = ok_json(uri, "get-analysis", "--run-id", run)
    assert again["name"] == "Renamed Latency" and again["description"] == "done"
    listed = {x["run_id"]: x for x in ok_json(uri, "list-analyses", "--experiment-id", exp)["analyses"]}
    assert listed[run]["name"] == "Renamed Latency"

    # create-hypothesis with repeated --evidence
    h = ok_json(uri, "create-hypothesis", "--run-id", run, "--statement", "Lock waits cause timeouts",
                "--testing-plan", "Look for lock waits in slow traces", "--rationale", "seen before",
                "--evidence", ev(t[0], "32s lock wait", True),
                "--evidence", ev(t[1], "deadlock", True),
                "--evidence", ev(t[2], "fast despite locks", False))
    assert set(h) == {"hypothesis_id", "run_id"} and h["run_id"] == run
    hid = h["hypothesis_id"]
    assert {t[0], t[1], t[2]} <= linked(exp, run)

    h2 = ok_json(uri, "create-hypothesis", "--run-id", run, "--statement", "Cold cache")["hypothesis_id"]

    got = ok_json(uri, "get-hypothesis", "--run-id", run, "--hypothesis-id", hid)
    assert got["hypothesis_id"] == hid and got["statement"] == "Lock waits cause timeouts"
    assert got["testing_plan"] == "Look for lock waits in slow traces"
    assert got["status"] == "TESTING"
    assert [(e["trace_id"], e["rationale"], e["supports"]) for e in got["evidence"]] == [
        (t[0], "32s lock wait", True), (t[1], "deadlock", True), (t[2], "fast despite locks", False)]
    assert (got["trace_count"], got["evidence_count"], got["supports_count"],
            got["refutes_count"]) == (3, 3, 2, 1)

    hyps = ok_json(uri, "list-hypotheses", "--run-id", run)
    assert set(hyps) == {"hypotheses"}
    by_id = {x["hypothesis_id"]: x for x in hyps["hypotheses"]}
    assert set(by_id) == {hid, h2}
    assert by_id[hid]["trace_count"] == 3 and by_id[hid]["supports_count"] == 2
    assert by_id[h2]["trace_count"] == 0

    # a trace that is not in the store is refused (exit 2) and nothing is written
    bad = cli(uri, "update-hypothesis", "--run-id", run, "--hypothesis-id", hid,
              "--status", "VALIDATED", "-t", t[3], "-t", "tr-extra-1")
    assert bad.exit_code == 2 and "tr-extra-1" in bad.stderr
    assert ok_json(uri, "get-hypothesis", "--run-id", run, "--hypothesis-id", hid)["status"] == \
        "TESTING"
    # update-hypothesis: --status, --evidence (repeated), --add-evidence, -t
    u = ok_json(uri, "update-hypothesis", "--run-id", run, "--hypothesis-id", hid,
                "--status", "VALIDATED",
                "--evidence", ev(t[3], "pool empty for 50s", True),
                "--evidence", ev(t[4], "no contention, fast", False),
                "--add-evidence", f"{t[5]}: why it matters",
                "-t", t[0])
    assert u["status"] == "VALIDATED" and u["hypothesis_id"] == hid
    entries = {(e["trace_id"], e["rationale"], e["supports"]) for e in u["evidence"]}
    assert {(t[3], "pool empty for 50s", True), (t[4], "no contention, fast", False),
            (t[5], "why it matters", True)} <= entries
    # -t on an already-cited trace adds nothing new
    assert [e["trace_id"] for e in u["evidence"]].count(t[0]) == 1
    assert len(u["evidence"]) == 6
    got = ok_json(uri, "get-hypothesis", "--run-id", run, "--hypothesis-id", hid)
    assert got["status"] == "VALIDATED" and got["trace_count"] == 6
    assert got["refutes_count"] == 2
    assert set(t) <= linked(exp, run)

    # create-issue (several, different trace counts) / list-issues sorted by trace_count desc
    small = ok_json(uri, "create-issue", "--run-id", run, "--title", "Small issue",
                    "--severity", "LOW", "--evidence", ev(t[5], "one trace"))
    assert set(small) == {"issue_id", "run_id"} and small["run_id"] == run
    big = ok_json(uri, "create-issue", "--run-id", run, "--title", "Lock contention on users",
                  "--description", "User table locks", "--severity", "HIGH",
                  "--hypothesis-id", hid,
                  "--evidence", ev(t[0], "blocked 32s"), "--evidence", ev(t[1], "deadlock"),
                  "--evidence", ev(t[2], "45s hold"))["issue_id"]
    mid = ok_json(uri, "create-issue", "--run-id", second, "--title", "Middle issue",
                  "--severity", "medium", "--evidence", ev(t[3], "a"),
                  "--add-evidence", f"{t[4]}: b")["issue_id"]
    issues = ok_json(uri, "list-issues", "--experiment-id", exp)
    assert set(issues) == {"issues"}
    assert [i["issue_id"] for i in issues["issues"]] == [big, mid, small["issue_id"]]
    assert [i["trace_count"] for i in issues["issues"]] == [3, 2, 1]
    assert issues["issues"][0]["severity"] == "HIGH" and issues["issues"][1]["severity"] == "MEDIUM"
    assert issues["issues"][0]["source_run_id"] == run and issues["issues"][1]["source_run_id"] == second
    assert {t[3], t[4]} <= linked(exp, second)

    gi = ok_json(uri, "get-issue", "--issue-id", big, "--experiment-id", exp)
    assert gi["issue_id"] == big and gi["title"] == "Lock contention on users"
    assert gi["hypothesis_id"] == hid and gi["severity"] == "HIGH" and gi["status"] == "OPEN"
    assert gi["trace_count"] == 3
    assert [e["trace_id"] for e in gi["evidence"]] == [t[0], t[1], t[2]]
    # issues are experiment-level: found without a run or experiment id too
    assert ok_json(uri, "get-issue", "--issue-id", big)["issue_id"] == big

    # update-issue: --severity, --status, --resolution, evidence
    ui = ok_json(uri, "update-issue", "--issue-id", small["issue_id"], "--run-id", run,
                 "--severity", "CRITICAL", "--status", "RESOLVED",
                 "--resolution", "Raised the pool size to 50",
                 "--evidence", ev(t[2], "also here"), "--evidence", ev(t[1], "and here"))
    assert ui["severity"] == "CRITICAL" and ui["status"] == "RESOLVED"
    assert ui["resolution"] == "Raised the pool size to 50"
    assert {e["trace_id"] for e in ui["evidence"]} == {t[5], t[2], t[1]}
    gi = ok_json(uri, "get-issue", "--issue-id", small["issue_id"], "--experiment-id", exp)
    assert (gi["severity"], gi["status"], gi["trace_count"]) == ("CRITICAL", "RESOLVED", 3)
    # update by experiment (no run id) also works
    ui = ok_json(uri, "update-issue", "--issue-id", mid, "--experiment-id", exp,
                 "--status", "IN_PROGRESS")
    assert ui["status"] == "IN_PROGRESS" and ui["severity"] == "MEDIUM"

    # preview-hypotheses: real trace ids, counts, --max-traces
    p = ok_json(uri, "preview-hypotheses", "--run-id", run)
    assert set(p) == {"traces", "total_count", "returned_count"}
    cited = [t[0], t[1], t[2], t[3], t[4], t[5]]
    assert p["total_count"] == len(cited)
    assert [r["trace_id"] for r in p["traces"]] == t[:6]
    assert p["returned_count"] == 6
    row = p["traces"][0]
    assert row["evidence_rationale"] == "32s lock wait"
    assert row["state"] == "OK" and isinstance(row["timestamp"], int)
    assert "question 0" in row["request_preview"]
    p = ok_json(uri, "preview-hypotheses", "--run-id", run, "--max-traces", "2")
    assert [r["trace_id"] for r in p["traces"]] == t[:2]
    assert (p["returned_count"], p["total_count"]) == (2, 6)

    # preview-issues: most-cited issues first, --max-traces
    p = ok_json(uri, "preview-issues", "--experiment-id", exp)
    assert p["total_count"] == 6 and p["returned_count"] == 6
    assert {r["trace_id"] for r in p["traces"]} == set(t)
    p = ok_json(uri, "preview-issues", "--experiment-id", exp, "--max-traces", "3")
    assert p["returned_count"] == 3 and len(p["traces"]) == 3 and p["total_count"] == 6
    # most-cited issues first: the 3 rows come from a 3-trace issue, never the 2-trace one
    assert {r["trace_id"] for r in p["traces"]} <= {t[0], t[1], t[2], t[5]}

    # link-traces
    lk = ok_json(uri, "link-traces", "--run-id", second, "-t", t[0], "--trace-id", t[5])
    assert lk == {"run_id": second, "linked": 2}
    assert {t[0], t[5]} <= linked(exp, second)


def test_update_analysis_status_json(store):
    """--status ends (or reopens) the run; stdout must still be exactly one JSON document.

    Against a tracking server MLflow's set_terminated() writes "View run ... at: ..." lines to
    stdout, which corrupts --output json unless the CLI suppresses them.
    """
    uri, exp = store
    run = ok_json(uri, "create-analysis", "--experiment-id", exp, "--run-name", "Status Run")["run_id"]
    for status in ("COMPLETED", "ARCHIVED", "ACTIVE"):
        upd = ok_json(uri, "update-analysis", "--run-id", run, "--status", status.lower())
        assert upd["status"] == status and upd["run_id"] == run
        assert ok_json(uri, "get-analysis", "--run-id", run)["status"] == status
        listed = ok_json(uri, "list-analyses", "--experiment-id", exp)["analyses"]
        assert [(a["run_id"], a["status"]) for a in listed] == [(run, status)]
        expected = "RUNNING" if status == "ACTIVE" else "FINISHED"
        assert MlflowClient().get_run(run).info.status == expected


def test_experiment_id_from_env_and_empty_listings(store):
    uri, exp = store
    env = {"MLFLOW_EXPERIMENT_ID": exp}
    assert ok_json(uri, "list-analyses", env=env) == {"analyses": []}
    assert ok_json(uri, "list-issues", env=env) == {"issues": []}
    run = ok_json(uri, "create-analysis", "--run-name", "From Env", env=env)["run_id"]
    assert MlflowClient().get_run(run).info.experiment_id == exp
    assert [a["run_id"] for a in ok_json(uri, "list-analyses", env=env)["analyses"]] == [run]
    iid = ok_json(uri, "create-issue", "--run-id", run, "--title", "An issue")["issue_id"]
    assert [i["issue_id"] for i in ok_json(uri, "list-issues", env=env)["issues"]] == [iid]
    assert ok_json(uri, "preview-issues", env=env) == {"traces": [], "total_count": 0,
                                                       "returned_count": 0}
    assert ok_json(uri, "list-hypotheses", "--run-id", run) == {"hypotheses": []}
    assert ok_json(uri, "preview-hypotheses", "--run-id", run) == {
        "traces": [], "total_count": 0, "returned_count": 0}


def test_link_traces_more_than_one_batch(tracking_uri, experiment_id):
    """MLflow refuses >100 links per call; the CLI must batch and link every one."""
    ids = make_traces(experiment_id, 105)
    run = ok_json(tracking_uri, "create-analysis", "--experiment-id", experiment_id,
                  "--run-name", "Many Traces")["run_id"]
    args = ["link-traces", "--run-id", run]
    for trace_id in ids:
        args += ["-t", trace_id]
    out = ok_json(tracking_uri, *args)
    assert out == {"run_id": run, "linked": 105}
    assert linked(experiment_id, run) == set(ids)

    # evidence naming >100 traces goes through the same batching, on another run
    run2 = ok_json(tracking_uri, "create-analysis", "--experiment-id", experiment_id,
                   "--run-name", "Many Evidence")["run_id"]
    args = ["create-hypothesis", "--run-id", run2, "--statement", "Lots"]
    for trace_id in ids:
        args += ["--evidence", ev(trace_id, "r")]
    hid = ok_json(tracking_uri, *args)["hypothesis_id"]
    got = ok_json(tracking_uri, "get-hypothesis", "--run-id", run2, "--hypothesis-id", hid)
    assert got["trace_count"] == 105 and [e["trace_id"] for e in got["evidence"]] == ids
    assert linked(experiment_id, run2) == set(ids)




# ---------------------------------------------------------------------- human output


def test_human_output(tracking_uri, experiment_id, monkeypatch):
    """Rich tables and panels show the key values (on a wide console, so nothing wraps).

    Rendering does not depend on the store, so this runs on SQLite only.
    """
    monkeypatch.setattr(render, "console", Console(width=220, color_system=None))
    uri, exp = tracking_uri, experiment_id
    t = make_traces(exp, 2, prefix="human")
    out = ok_human(uri, "create-analysis", "--experiment-id", exp, "--run-name", "Human Run",
                   "--name", "Human Analysis", "--description", "Readable output")
    runs = MlflowClient().search_runs([exp], filter_string="tags.`mlflow.insights.type` = 'analysis'")
    assert len(runs) == 1
    run = runs[0].info.run_id
    assert run in out and "Created analysis" in out

    out = ok_human(uri, "list-analyses", "--experiment-id", exp)
    assert "Analyses (1)" in out and "Human Analysis" in out and "ACTIVE" in out and run in out

    out = ok_human(uri, "get-analysis", "--run-id", run)
    assert "Human Analysis" in out and run in out and "Readable output" in out and "ACTIVE" in out

    out = ok_human(uri, "update-analysis", "--run-id", run, "--status", "ARCHIVED")
    assert "ARCHIVED" in out and "Human Analysis" in out

    out = ok_human(uri, "create-hypothesis", "--run-id", run, "--statement", "Slow tool calls",
                   "--evidence", ev(t[0], "tool took 30s", True))
    hid = ok_json(uri, "list-hypotheses", "--run-id", run)["hypotheses"][0]["hypothesis_id"]
    assert hid in out and "Created hypothesis" in out

    out = ok_human(uri, "list-hypotheses", "--run-id", run)
    assert "Hypotheses (1)" in out and "Slow tool calls" in out and "TESTING" in out
    assert hid in out

    out = ok_human(uri, "update-hypothesis", "--run-id", run, "--hypothesis-id", hid,
                   "--status", "REJECTED", "--add-evidence", f"{t[1]}: fast tool call")
    assert "REJECTED" in out and "Slow tool calls" in out and "fast tool call" in out

    out = ok_human(uri, "get-hypothesis", "--run-id", run, "--hypothesis-id", hid)
    assert "Slow tool calls" in out and hid in out and "tool took 30s" in out
    assert t[0] in out and "Evidence (2)" in out

    out = ok_human(uri, "create-issue", "--run-id", run, "--title", "Tool timeout",
                   "--severity", "CRITICAL", "--evidence", ev(t[0], "timed out"))
    iid = ok_json(uri, "list-issues", "--experiment-id", exp)["issues"][0]["issue_id"]
    assert iid in out and "Created issue" in out

    out = ok_human(uri, "list-issues", "--experiment-id", exp)
    assert "Issues (1)" in out and "Tool timeout" in out and "CRITICAL" in out and iid in out

    out = ok_human(uri, "get-issue", "--issue-id", iid)
    assert "Tool timeout" in out and "CRITICAL" in out and "OPEN" in out and t[0] in out

    out = ok_human(uri, "update-issue", "--issue-id", iid, "--status", "RESOLVED",
                   "--resolution", "Added a timeout")
    assert "RESOLVED" in out and "Added a timeout" in out

    out = ok_human(uri, "preview-hypotheses", "--run-id", run)
    assert "Traces (2 of 2)" in out and t[0] in out and t[1] in out

    out = ok_human(uri, "preview-issues", "--experiment-id", exp, "--max-traces", "1")
    assert "Traces (1 of 1)" in out and t[0] in out and "timed out" in out

    out = ok_human(uri, "link-traces", "--run-id", run, "-t", t[1])
    assert "Linked 1 traces" in out and run in out


def test_human_tables_keep_ids_whole_at_80_columns(tracking_uri, experiment_id, monkeypatch):
    """In an 80-column terminal the ids a user must copy into the next command are not cut off."""
    monkeypatch.setattr(render, "console", Console(width=80, color_system=None))
    uri, exp = tracking_uri, experiment_id
    run = ok_json(uri, "create-analysis", "--experiment-id", exp, "--run-name", "Narrow Terminal",
                  "--name", "An analysis with a fairly long descriptive name")["run_id"]
    ok_json(uri, "create-hypothesis", "--run-id", run, "--statement", "A long statement " * 4)
    ok_json(uri, "create-issue", "--run-id", run, "--title", "A long issue title " * 3)
    for args in (["list-analyses", "--experiment-id", exp], ["list-hypotheses", "--run-id", run],
                 ["list-issues", "--experiment-id", exp]):
        out = ok_human(uri, *args)
        assert "\u2026" not in out, f"{args[0]} truncates a column with an ellipsis:\n{out}"
    out = ok_human(uri, "list-analyses", "--experiment-id", exp)
    assert run in out, f"list-analyses does not show the run id whole:\n{out}"


# ---------------------------------------------------------------------- --help


ALL_COMMANDS = sorted({c.name for c in app.registered_commands} | set(COMMANDS))


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_help_has_example(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"mlflow-insights {command}" in result.output
    assert "Usage" in result.output


def test_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for command in ALL_COMMANDS:
        assert command in result.output


# ---------------------------------------------------------------------- real console script


def _script() -> list[str]:
    exe = Path(sys.executable).with_name("mlflow-insights")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "insights.cli"]


def _run(args: list[str], uri: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = uri
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def test_console_script_round_trip(tracking_uri, experiment_id):
    """The installed entry point writes exactly one JSON document and a real run."""
    p = _run([*_script(), "create-analysis", "--experiment-id", experiment_id, "--run-name",
              "Subprocess Run", "--output", "json"], tracking_uri)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    run = json.loads(p.stdout)["run_id"]
    listed = ok_json(tracking_uri, "list-analyses", "--experiment-id", experiment_id)
    assert [a["run_id"] for a in listed["analyses"]] == [run]
