"""`insights-agent run --report`: an unwritable path fails before any analysis exists, and on
--resume a new --report replaces the stored one, so an analysis whose report could not be
written is completed instead of staying ACTIVE. Real SQLite store, the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.workflow.conftest import Store, offline_context
from workflows.analyze_experiment import build_graph


def _cli(*args: str):
    from agent.cli import app

    return CliRunner().invoke(app, ["run", *args])


@pytest.mark.parametrize("where", ["under-a-file", "a-directory"])
def test_unwritable_report_fails_before_the_analysis(small_store: Store, tmp_path: Path,
                                                     where: str) -> None:
    blocker = tmp_path / "blocker"
    if where == "under-a-file":
        blocker.write_text("a file, not a folder")
        report = blocker / "sub" / "report.md"
    else:
        blocker.mkdir()
        report = blocker
    result = _cli("--experiment-id", small_store.experiment_id, "--tracking-uri", small_store.uri,
                  "--yes", "--report", str(report))
    assert result.exit_code == 2, result.output
    assert "--report" in result.output and len(result.output.strip().splitlines()) == 1
    assert small_store.client().list_analyses(small_store.experiment_id) == []


def test_resume_with_new_report_completes_a_stuck_analysis(small_store: Store,
                                                           tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the report folder should be")
    bad = blocker / "report.md"
    ctx = offline_context(small_store, auto_answer=True, report_dir=str(tmp_path),
                          answers={"report_path": {"path": str(bad)}})
    with pytest.raises(OSError):
        build_graph().invoke({"experiment_id": small_store.experiment_id}, context=ctx)
    client = small_store.client()
    [stuck] = client.list_analyses(small_store.experiment_id)
    assert stuck.status.value == "ACTIVE"
    assert stuck.metadata["report_path"] == str(bad)

    good = tmp_path / "good" / "report.md"
    result = _cli("--resume", stuck.run_id, "--tracking-uri", small_store.uri, "--yes",
                  "--report", str(good), "--output", "json")
    assert result.exit_code == 0, (result.output, "".join(__import__("traceback").format_exception(*result.exc_info)))
    summary = json.loads(result.stdout)
    assert Path(summary["report_path"]) == good.resolve()
    assert good.is_file() and good.read_text().strip()
    after = client.get_analysis(stuck.run_id)
    assert after.status.value == "COMPLETED"
    assert after.metadata["report_path"] == str(good.resolve())
