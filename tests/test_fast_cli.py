"""The CLI's fast paths on a local SQLite store print exactly what the MLflow path prints.

Each command runs twice through ``mlflow-insights`` (typer's runner, in process) on one real
SQLite store: as it runs for a user (reads straight from the store's tables and artifact
folder, issue 10 item 6), and with the fast path switched off (``InsightsClient._local_db_path``
returning None, as on any non-SQLite store). Output, stderr and exit code must be equal, for
good input and for bad: unknown, path-like, deleted and non-Insights ids, a deleted experiment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from helpers.fixtures import copy_template
from helpers.insights_helpers import make_traces, tracking_to
from insights import InsightsClient
from insights.cli import app

runner = CliRunner()
UNKNOWN = "0123456789abcdef0123456789abcdef"


@dataclass
class World:
    uri: str
    exp: str
    run: str            # an analysis run with a census and a hypothesis
    bare: str           # an analysis run without a census
    plain: str          # an ordinary MLflow run
    deleted_run: str    # a deleted analysis run
    deleted_exp: str    # a deleted experiment
    traces: list[str]   # the experiment's traces
    other_trace: str    # a trace of another experiment

    def fill(self, args: list[str]) -> list[str]:
        tokens = {"@RUN@": self.run, "@BARE@": self.bare, "@PLAIN@": self.plain,
                  "@DELETED_RUN@": self.deleted_run, "@EXP@": self.exp,
                  "@DELETED_EXP@": self.deleted_exp, "@T0@": self.traces[0],
                  "@T1@": self.traces[1], "@OTHER_TRACE@": self.other_trace}
        out = []
        for arg in args:
            for key, value in tokens.items():
                arg = arg.replace(key, value)
            out.append(arg)
        return out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("fast-cli")
    patch = pytest.MonkeyPatch()
    patch.setenv("INSIGHTS_CACHE_DIR", str(root / "cache"))   # the trace cache, this store's
    uri = copy_template(root / "mlflow.db")
    mlflow_client = MlflowClient(uri)
    exp = mlflow_client.create_experiment(f"fast-cli-{time.time_ns()}",
                                          artifact_location=(root / "artifacts").as_uri())
    with tracking_to(uri):
        traces = make_traces(uri, exp, 4)
        other_exp = mlflow_client.create_experiment(f"other-{time.time_ns()}")
        [other_trace] = make_traces(uri, other_exp, 1)
        client = InsightsClient(uri)
        run = client.create_analysis(exp, run_name="fast cli", description="d",
                                     metadata={"k": "v"})
        client.create_baseline_census(run)
        client.create_hypothesis(run, "Slow tools cause timeouts", testing_plan="p")
        bare = client.create_analysis(exp, run_name="bare")
        deleted_run = client.create_analysis(exp, run_name="to delete")
        client.close()
    mlflow_client.delete_run(deleted_run)
    plain = mlflow_client.create_run(exp).info.run_id
    deleted_exp = mlflow_client.create_experiment(f"gone-{time.time_ns()}")
    mlflow_client.delete_experiment(deleted_exp)
    yield World(uri, exp, run, bare, plain, deleted_run, deleted_exp, traces, other_trace)
    patch.undo()


def store_state(world: World) -> dict[str, bytes]:
    """The store's bytes: the database file and every file of its artifact folder."""
    db = Path(world.uri.split("sqlite:///", 1)[1])
    files = [db, *sorted(p for p in (db.parent / "artifacts").rglob("*") if p.is_file())]
    return {str(p): p.read_bytes() for p in files}


def invoke(world: World, args: list[str], monkeypatch, fast: bool):
    """One CLI call; ``fast=False`` takes the path every non-SQLite store takes."""
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(InsightsClient, "_local_db_path", lambda self: None)
        return runner.invoke(app, ["--tracking-uri", world.uri, *world.fill(args)],
                             env={"MLFLOW_EXPERIMENT_ID": None})


def both(world: World, args: list[str], monkeypatch):
    """(fast result, MLflow-path result) of the same call."""
    return invoke(world, args, monkeypatch, True), invoke(world, args, monkeypatch, False)


GOOD = [
    ["list-analyses", "--experiment-id", "@EXP@", "-o", "json"],
    ["list-analyses", "--experiment-id", "@EXP@"],
    ["get-baseline-census", "--run-id", "@RUN@", "-o", "json"],
    ["get-baseline-census", "--run-id", "@RUN@"],
    ["execute-sql", "--experiment-id", "@EXP@", "SELECT state, count(*) AS n FROM traces "
     "GROUP BY state"],
    ["execute-sql", "--experiment-id", "@EXP@", "-o", "json", "SELECT trace_id, request "
     "FROM traces ORDER BY trace_id"],
    ["cohort-stats", "--experiment-id", "@EXP@", "--cohort", "length(request) > 5",
     "--outcome", "state = 'OK'", "-o", "json"],
    ["cohort-stats", "--experiment-id", "@EXP@", "--cohort", "length(request) > 5",
     "--outcome", "state = 'OK'"],
]

BAD = [  # (args, what stderr says)
    (["get-baseline-census", "--run-id", UNKNOWN], "not found"),
    (["get-baseline-census", "--run-id", "../etc"], "run id"),
    (["get-baseline-census", "--run-id", "@DELETED_RUN@"], "deleted"),
    (["get-baseline-census", "--run-id", "@PLAIN@"], "not an Insights analysis run"),
    (["get-baseline-census", "--run-id", "@BARE@"], "No baseline census"),
    (["list-analyses", "--experiment-id", "987654"], "not found"),
    (["list-analyses", "--experiment-id", "../1"], "experiment id"),
    (["list-analyses", "--experiment-id", "@DELETED_EXP@"], "is deleted"),
    (["execute-sql", "--experiment-id", "987654", "SELECT 1"], "not found"),
    (["execute-sql", "--experiment-id", "@DELETED_EXP@", "SELECT 1"], "is deleted"),
    (["execute-sql", "--experiment-id", "../1", "SELECT 1"], "experiment id"),
    (["execute-sql", "--experiment-id", "@EXP@", "DELETE FROM traces"], "Error"),
    (["execute-sql", "--experiment-id", "@EXP@", "SELECT nope FROM traces"], "nope"),
    (["cohort-stats", "--experiment-id", "../1", "--cohort", "true", "--outcome", "true"],
     "experiment id"),
    (["cohort-stats", "--experiment-id", "987654", "--cohort", "true", "--outcome", "true"],
     "not found"),
    (["cohort-stats", "--experiment-id", "@DELETED_EXP@", "--cohort", "true", "--outcome",
      "true"], "is deleted"),
    (["cohort-stats", "--experiment-id", "@EXP@", "--cohort", "nope > 1", "--outcome", "true"],
     "nope"),
    (["create-hypothesis", "--run-id", UNKNOWN, "--statement", "s"], "not found"),
    (["create-hypothesis", "--run-id", "../etc", "--statement", "s"], "run id"),
    (["create-hypothesis", "--run-id", "@DELETED_RUN@", "--statement", "s"], "deleted"),
    (["create-hypothesis", "--run-id", "@PLAIN@", "--statement", "s"],
     "not an Insights analysis run"),
    (["create-hypothesis", "--run-id", "@RUN@", "--statement", " "], "statement"),
    (["create-hypothesis", "--run-id", "@RUN@", "--statement", "s", "--evidence",
      '{"trace_id": "@OTHER_TRACE@", "rationale": "r"}'], "not found in experiment"),
    (["create-hypothesis", "--run-id", "@RUN@", "--statement", "s", "--evidence",
      '{"trace_id": "@T0@", "rationale": "r"}', "--evidence",
      '{"trace_id": "tr-0123456789abcdef0123456789abcdef", "rationale": "r"}'],
     "tr-0123456789abcdef0123456789abcdef"),
]
# a hypothesis citing traces: checked, linked and written without MLflow on a local store
WITH_EVIDENCE = ["create-hypothesis", "--run-id", "@BARE@", "--statement", "s", "--evidence",
                 '{"trace_id": "@T0@", "rationale": "r"}', "--evidence",
                 '{"trace_id": "@T1@", "rationale": "slow", "supports": false}']


@pytest.mark.parametrize("args", GOOD, ids=lambda a: " ".join(a))
def test_fast_output_equals_the_mlflow_path(world, monkeypatch, args):
    fast, slow = both(world, args, monkeypatch)
    assert fast.exit_code == 0, fast.stderr
    assert (fast.stdout, fast.stderr) == (slow.stdout, slow.stderr)
    assert slow.exit_code == 0


@pytest.mark.parametrize(("args", "says"), BAD, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_bad_input_fails_alike_in_one_line_with_exit_2(world, monkeypatch, args, says):
    before = store_state(world)
    fast, slow = both(world, args, monkeypatch)
    assert store_state(world) == before          # nothing written, by either path
    assert fast.exit_code == slow.exit_code == 2, (fast.stderr, slow.stderr)
    assert fast.stderr == slow.stderr
    assert len(fast.stderr.strip().splitlines()) == 1 and says in fast.stderr
    assert fast.stdout == slow.stdout == ""


def test_list_analyses_json_has_every_analysis_newest_first(world, monkeypatch):
    fast = invoke(world, ["list-analyses", "--experiment-id", "@EXP@", "-o", "json"],
                  monkeypatch, True)
    listed = json.loads(fast.stdout)["analyses"]
    assert [a["run_id"] for a in listed] == [world.bare, world.run]
    assert listed[1]["metadata"] == {"k": "v"} and listed[1]["description"] == "d"


def test_create_hypothesis_prints_alike_and_both_are_read_back(world, monkeypatch):
    args = ["create-hypothesis", "--run-id", "@RUN@", "--statement", "Cited nothing yet",
            "--testing-plan", "look", "-o", "json"]
    fast, slow = both(world, args, monkeypatch)
    assert fast.exit_code == slow.exit_code == 0, (fast.stderr, slow.stderr)
    made = [json.loads(r.stdout) for r in (fast, slow)]
    assert [sorted(m) for m in made] == [["hypothesis_id", "run_id"]] * 2
    assert made[0]["run_id"] == made[1]["run_id"] == world.run
    for hid in (m["hypothesis_id"] for m in made):
        shown = [invoke(world, ["get-hypothesis", "--run-id", "@RUN@", "--hypothesis-id", hid,
                                "-o", "json"], monkeypatch, on) for on in (True, False)]
        assert shown[0].stdout == shown[1].stdout and shown[0].exit_code == 0
        assert json.loads(shown[0].stdout)["status"] == "TESTING"


def test_hypothesis_with_evidence_is_linked_and_stored_alike_on_both_paths(world, monkeypatch):
    """The fast path checks the cited traces and links them to the run in the store's tables as
    MLflow does: MLflow's own search of the run's traces finds them, and the hypothesis reads
    back the same through either path."""
    made = []
    for fast in (True, False):
        result = invoke(world, [*WITH_EVIDENCE, "-o", "json"], monkeypatch, fast)
        assert result.exit_code == 0, result.stderr
        made.append(json.loads(result.stdout)["hypothesis_id"])
    linked = MlflowClient(world.uri).search_traces(locations=[world.exp], run_id=world.bare,
                                                   include_spans=False)
    assert sorted(t.info.trace_id for t in linked) == sorted(world.traces[:2])
    shown = [json.loads(invoke(world, ["get-hypothesis", "--run-id", "@BARE@", "--hypothesis-id",
                                       hid, "-o", "json"], monkeypatch, True).stdout)
             for hid in made]
    for h in shown:   # what differs between two hypotheses made a moment apart
        h.pop("hypothesis_id"), h.pop("created_at", None), h.pop("updated_at", None)
        for e in h["evidence"]:
            e.pop("added_at")
    assert shown[0] == shown[1]
    assert sorted(e["trace_id"] for e in shown[0]["evidence"]) == sorted(world.traces[:2])


def test_fast_commands_never_open_mlflows_store(world, monkeypatch):
    """The point of the fast paths: MLflow's client (and its SQL store) is never created."""
    def refuse(self):
        raise AssertionError("MLflow's client was created")

    monkeypatch.setattr(InsightsClient, "_client", property(refuse))
    for args in [*GOOD, ["create-hypothesis", "--run-id", "@BARE@", "--statement", "s"],
                 WITH_EVIDENCE]:
        result = invoke(world, args, monkeypatch, True)
        assert result.exit_code == 0, (args, result.stderr, result.exception)


def test_fast_reads_leave_the_store_unchanged(world, monkeypatch):
    db = Path(world.uri.split("sqlite:///", 1)[1])
    before = db.read_bytes()
    for args in GOOD:
        invoke(world, args, monkeypatch, True)
    assert db.read_bytes() == before


# Runs each command as its console script does, in a fresh interpreter: exit code, whether
# MLflow was imported.
PROBE = """
import sys
from insights.cli import main
sys.argv = ["mlflow-insights", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
print("MLFLOW-IMPORTED" if "mlflow" in sys.modules else "NO-MLFLOW", code, file=sys.stderr)
"""


def test_fast_commands_do_not_import_mlflow(world):
    """Reads and a new hypothesis (with evidence or without) on a local SQLite store whose URI
    is given never import MLflow (seconds)."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, MLFLOW_TRACKING_URI=world.uri,
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    for args in [*GOOD, ["create-hypothesis", "--run-id", "@BARE@", "--statement", "s"],
                 WITH_EVIDENCE]:
        done = subprocess.run([sys.executable, "-c", PROBE, *world.fill(args)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.stderr.strip().splitlines()[-1] == "NO-MLFLOW 0", (args, done.stderr)


def test_agent_subcommand_help_does_not_import_pydantic():
    """``insights-agent run --help``: the group's unset --help flag is a bool, so typer does
    not build a pydantic adapter for it (importing pydantic is a quarter of the help's time)."""
    root = Path(__file__).resolve().parent.parent
    probe = ("import sys\nfrom agent.cli import main\nsys.argv = ['insights-agent', 'run', "
             "'--help']\ntry:\n    main()\nexcept SystemExit as exc:\n    code = exc.code or 0\n"
             "print('PYDANTIC' if 'pydantic' in sys.modules else 'NO-PYDANTIC', code, "
             "file=sys.stderr)\n")
    env = dict(os.environ, COLUMNS="200",
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.stderr.strip().splitlines()[-1] == "NO-PYDANTIC 0", done.stderr
    assert "--experiment-id" in done.stdout and "Examples" in done.stdout
