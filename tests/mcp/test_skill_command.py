"""``insights-agent skill``: writes the packaged SKILL.md (Claude Code front matter, the
playbook's stops) and never replaces a different file without --force."""

from __future__ import annotations

import json
import re

import yaml
from typer.testing import CliRunner

from agent.cli import app
from agent.skill import skill_text

runner = CliRunner()


def test_skill_text_has_front_matter_tools_and_stops():
    text = skill_text()
    front = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    assert front, "SKILL.md must open with YAML front matter"
    meta = yaml.safe_load(front.group(1))
    assert meta["name"] == "insights-investigation"
    assert "MLflow" in meta["description"] and len(meta["description"]) < 1024
    for tool in ("create_analysis", "create_baseline_census", "execute_sql", "create_hypothesis",
                 "update_hypothesis", "create_issue", "list_issues", "link_traces", "recheck",
                 "mlflow-insights"):
        assert tool in text, tool
    # The human-in-the-loop stops of the playbook.
    assert text.count("stop and ask") >= 3 and "wait" in text.lower()


def test_skill_writes_default_dir_and_refuses_to_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = runner.invoke(app, ["skill", "--output", "json"])
    assert first.exit_code == 0, first.output
    path = tmp_path / ".claude" / "skills" / "insights-investigation" / "SKILL.md"
    assert json.loads(first.stdout) == {"path": str(path), "written": True}
    assert path.read_text() == skill_text()

    again = runner.invoke(app, ["skill", "--output", "json"])  # same text: nothing to do
    assert again.exit_code == 0 and json.loads(again.stdout)["written"] is False

    path.write_text("my own notes\n")
    refused = runner.invoke(app, ["skill"])
    assert refused.exit_code == 2 and "--force" in refused.output
    assert path.read_text() == "my own notes\n"

    forced = runner.invoke(app, ["skill", "--force"])
    assert forced.exit_code == 0 and path.read_text() == skill_text()


def test_skill_install_dir(tmp_path):
    target = tmp_path / "elsewhere" / "skills" / "insights"
    done = runner.invoke(app, ["skill", "--install-dir", str(target)])
    assert done.exit_code == 0, done.output
    assert (target / "SKILL.md").read_text() == skill_text()
    assert str(target / "SKILL.md") in done.output
