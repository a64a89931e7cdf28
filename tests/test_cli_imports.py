"""Starting either CLI and printing any ``--help`` loads none of the heavy libraries.

An agent that keeps its memory through ``mlflow-insights`` calls it dozens of times, and
MLflow, DuckDB, SciPy, matplotlib and LangGraph take seconds to import. This checks the
behaviour behind the speed (what ends up in ``sys.modules`` of a fresh interpreter), not a
timing: the timings are printed by ``bench/bench_cli.py``. It also checks that the lazy
imports cost no help text: every subcommand still ends with its example and ``execute-sql``
still documents the ``traces`` table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("mlflow", "duckdb", "scipy", "matplotlib", "langgraph", "langchain_core", "sqlglot",
         "pyarrow", "pandas", "numpy")

# Runs in a fresh interpreter: import both CLIs, print every --help, report what was loaded.
PROBE = r"""
import contextlib, io, json, sys
import typer.main
import insights.cli, agent.cli

helps = {}
for prog, app in (("mlflow-insights", insights.cli.app), ("insights-agent", agent.cli.app)):
    for sub in [None, *typer.main.get_command(app).commands]:
        args = [sub, "--help"] if sub else ["--help"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                app(args, prog_name=prog)
                code = 0
            except SystemExit as exc:
                code = exc.code
        helps[" ".join([prog, *args])] = {"code": code, "text": out.getvalue()}
print(json.dumps({"modules": sorted(sys.modules), "helps": helps}))
"""


@pytest.fixture(scope="module")
def probe() -> dict:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_help_of_both_clis_loads_no_heavy_library(probe):
    loaded = {name.split(".")[0] for name in probe["modules"]}
    assert "insights.cli" in probe["modules"] and "agent.cli" in probe["modules"]
    assert sorted(loaded & set(HEAVY)) == []


def test_every_help_still_prints_with_its_example(probe):
    helps = probe["helps"]
    subcommands = [key for key in helps if key.split()[1] != "--help"]
    assert len(subcommands) >= 20  # every mlflow-insights command and run/demo/serve
    for key, result in helps.items():
        assert result["code"] == 0, key
        assert "Usage:" in result["text"], key
    for key in subcommands:
        assert "Example" in helps[key]["text"], key


def test_execute_sql_help_documents_the_traces_table(probe):
    text = probe["helps"]["mlflow-insights execute-sql --help"]["text"]
    for column in ("trace_id", "execution_time_ms", "assessments", "LATERAL VIEW explode"):
        assert column in text


def test_sdk_names_still_import_from_the_package():
    """``from insights import InsightsClient`` still works, loading the client on first use."""
    code = ("import sys, insights; assert 'insights.client' not in sys.modules; "
            "from insights import InsightsClient, Issue, NotFoundError; "
            "print(InsightsClient.__module__, Issue.__module__, NotFoundError.__module__)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["insights.client", "insights.models", "insights.errors"]
