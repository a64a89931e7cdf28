"""examples/mcp_langgraph_agent.py: a LangGraph agent whose tools come from
``insights-agent mcp`` through langchain-mcp-adapters, driven by the example's fake chat model
(which calls list_issues and reports what came back)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from insights_mcp_helpers import ROOT, server_env

pytestmark = pytest.mark.timeout(300)


def test_example_agent_lists_the_issues_over_mcp(small_store):
    with small_store.client() as client:
        run_id = client.create_analysis(small_store.experiment_id, "Example Check")
        trace_id = client.execute_sql(small_store.experiment_id,
                                      "SELECT trace_id FROM traces LIMIT 1").rows[0][0]
        client.create_issue(run_id, "Weather tool returns stale forecasts", severity="HIGH",
                            evidence=[{"trace_id": trace_id, "rationale": "forecast from 2019"}])
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mcp_langgraph_agent.py"),
         "--tracking-uri", small_store.uri, "--experiment-id", small_store.experiment_id],
        cwd=ROOT, env=server_env(small_store), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "ai: calls list_issues" in [line.strip() for line in lines]
    tool_line = next(line for line in lines if line.strip().startswith("tool:"))
    assert "Weather tool returns stale forecasts" in tool_line  # the MCP tool's real answer
    assert done.stdout.rstrip().endswith(
        "- [HIGH] Weather tool returns stale forecasts (OPEN, 1 traces)")
