"""`insights-agent run --engine spark` completes the demo analysis on a real local Spark: the
census is computed on Spark and equals DuckDB's, and the issues found are the same as with the
default engine. Real SQLite store (the small demo), the real CLI, the offline analyst."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from insights import InsightsClient
from tests.workflow.conftest import Store

pytest.importorskip("pyspark", reason="pyspark is not installed (pip install '.[spark]')")
if not shutil.which("java"):
    pytest.skip("Java is not installed (the Spark engine needs Java 17+)", allow_module_level=True)

pytestmark = pytest.mark.spark


def _run(store: Store, tmp: Path, *engine: str) -> dict:
    from agent.cli import app

    result = CliRunner().invoke(app, [
        "run", "--experiment-id", store.experiment_id, "--tracking-uri", store.uri, "--yes",
        "--report", str(tmp / "report.md"), "--output", "json", *engine])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _census(store: Store, run_id: str) -> dict:
    census = InsightsClient(store.uri).get_baseline_census(run_id).model_dump(mode="json")
    return {k: v for k, v in census.items() if k not in ("run_id", "computed_at")}


def test_run_on_spark_completes_with_the_census_and_issues_of_duckdb(
        small_demo_store: Store, tmp_path: Path, monkeypatch):
    from insights.analytics import spark_engine

    monkeypatch.delenv("INSIGHTS_ENGINE", raising=False)
    duck_store = small_demo_store.copy_to(tmp_path / "duck")
    spark_store = small_demo_store.copy_to(tmp_path / "spark")
    try:
        on_spark = _run(spark_store, tmp_path / "s", "--engine", "spark")
    finally:
        spark_engine.stop_spark()
    # the engine chosen for one in-process run is not left behind for the next one
    assert "INSIGHTS_ENGINE" not in os.environ
    duck = _run(duck_store, tmp_path / "d")
    assert on_spark["phase"] == duck["phase"] == "complete"
    assert on_spark["issues"], "the demo's planted faults should be found"
    # Spark read the experiment from its Parquet export, written beside the DuckDB cache
    session = InsightsClient(spark_store.uri).analytics_session(spark_store.experiment_id)
    assert list(spark_engine.export_dir(session).glob("day=*/*.parquet"))
    assert _census(spark_store, on_spark["run_id"]) == _census(duck_store, duck["run_id"])
    titles = lambda s: sorted(i["title"] for i in s["issues"])  # noqa: E731
    assert titles(on_spark) == titles(duck)
