"""The CLI's fast paths on a local SQLite store print exactly what the MLflow path prints.

Each command runs twice through ``mlflow-insights`` (typer's runner, in process) on one real
SQLite store: as it runs for a user (reads straight from the store's tables and artifact
folder, issue 10 item 6), and with the fast path switched off (``InsightsClient._local_db``
returning None, as on any non-SQLite store). Output, stderr and exit code must be equal, for
good input and for bad: unknown, path-like, deleted and non-Insights ids, a deleted experiment.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from helpers.fixtures import copy_template
from helpers.insights_helpers import make_traces
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

    def fill(self, args: list[str]) -> list[str]:
        tokens = {"@RUN@": self.run, "@BARE@": self.bare, "@PLAIN@": self.plain,
                  "@DELETED_RUN@": self.deleted_run, "@EXP@": self.exp,
                  "@DELETED_EXP@": self.deleted_exp}
        out = []
        for arg in args:
            for key, value in tokens.items():
                arg = arg.replace(key, value)
            out.append(arg)
        return out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("fast-cli")
    uri = copy_template(root / "mlflow.db")
    mlflow_client = MlflowClient(uri)
    exp = mlflow_client.create_experiment(f"fast-cli-{time.time_ns()}",
                                          artifact_location=(root / "artifacts").as_uri())
    previous = mlflow.get_tracking_uri()
    try:
        make_traces(uri, exp, 4)
        client = InsightsClient(uri)
        run = client.create_analysis(exp, run_name="fast cli", description="d",
                                     metadata={"k": "v"})
        client.create_baseline_census(run)
        client.create_hypothesis(run, "Slow tools cause timeouts", testing_plan="p")
        bare = client.create_analysis(exp, run_name="bare")
        deleted_run = client.create_analysis(exp, run_name="to delete")
        client.close()
    finally:
        mlflow.set_tracking_uri(previous)
    mlflow_client.delete_run(deleted_run)
    plain = mlflow_client.create_run(exp).info.run_id
    deleted_exp = mlflow_client.create_experiment(f"gone-{time.time_ns()}")
    mlflow_client.delete_experiment(deleted_exp)
    return World(uri, exp, run, bare, plain, deleted_run, deleted_exp)


def invoke(world: World, args: list[str], monkeypatch, fast: bool):
    """One CLI call; ``fast=False`` takes the path every non-SQLite store takes."""
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(InsightsClient, "_local_db", lambda self: None)
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
]


@pytest.mark.parametrize("args", GOOD, ids=lambda a: " ".join(a))
def test_fast_output_equals_the_mlflow_path(world, monkeypatch, args):
    fast, slow = both(world, args, monkeypatch)
    assert fast.exit_code == 0, fast.stderr
    assert (fast.stdout, fast.stderr) == (slow.stdout, slow.stderr)
    assert slow.exit_code == 0


@pytest.mark.parametrize(("args", "says"), BAD, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_bad_input_fails_alike_in_one_line_with_exit_2(world, monkeypatch, args, says):
    fast, slow = both(world, args, monkeypatch)
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


def test_fast_reads_leave_the_store_unchanged(world, monkeypatch):
    db = Path(world.uri.split("sqlite:///", 1)[1])
    before = db.read_bytes()
    for args in GOOD:
        invoke(world, args, monkeypatch, True)
    assert db.read_bytes() == before
