"""``insights-agent mcp`` over stdio, driven by the MCP SDK's own client.

Each test spawns the real server on a private copy of the small demo store (a SQLite
tracking store under tmp_path) and checks what a coding agent sees: the tool list, a full
round trip whose writes are read back from MLflow with the SDK, tool errors for bad input
with the store left byte-for-byte as it was, and progress notifications from the census.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from insights_mcp_helpers import stdio_session

pytestmark = pytest.mark.timeout(300)

EXPECTED_TOOLS = {
    "create_analysis", "update_analysis", "list_analyses", "get_analysis",
    "create_hypothesis", "update_hypothesis", "list_hypotheses", "get_hypothesis",
    "create_issue", "update_issue", "list_issues", "get_issue",
    "create_baseline_census", "get_baseline_census", "execute_sql", "cohort_stats",
    "preview_hypotheses", "preview_issues", "link_traces", "recheck",
}
UNKNOWN_RUN = "0123456789abcdef0123456789abcdef"


def data(result: Any) -> dict[str, Any]:
    """The JSON a successful tool call returned."""
    assert not result.isError, text(result)
    return json.loads(text(result))


def text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "text", None))


def store_snapshot(root: Path) -> dict[str, Any]:
    """Everything the store holds: every row of every table, and every artifact file's bytes."""
    con = sqlite3.connect(root / "mlflow.db")
    try:
        tables = sorted(r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"))
        rows = {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"'))) for t in tables}
    finally:
        con.close()
    files = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted((root / "artifacts").rglob("*")) if p.is_file()}
    return {"rows": rows, "files": files}


def test_tools_listed_with_schemas_and_sql_help(small_store):
    async def go():
        async with stdio_session(small_store) as s:
            return (await s.list_tools()).tools

    tools = {t.name: t for t in asyncio.run(go())}
    assert set(tools) == EXPECTED_TOOLS
    sql = tools["execute_sql"].description
    for needle in ("trace_id", "execution_time_ms", "spans", "LATERAL VIEW explode", "SELECT"):
        assert needle in sql
    # The SDK's enums and evidence model are the argument schemas.
    schema = json.dumps(tools["create_issue"].inputSchema)
    assert '"CRITICAL", "HIGH", "MEDIUM", "LOW"' in schema and "trace_id" in schema
    assert tools["list_issues"].annotations.readOnlyHint is True


def test_round_trip_is_stored_in_mlflow_with_census_progress(small_store):
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with stdio_session(small_store) as s:
            run_id = data(await s.call_tool("create_analysis", {
                "run_name": "MCP Round Trip", "description": "driven over MCP"}))["run_id"]
            census = data(await s.call_tool("create_baseline_census", {"run_id": run_id},
                                            progress_callback=on_progress))
            rows = data(await s.call_tool("execute_sql", {
                "sql": "SELECT trace_id FROM traces WHERE state = 'ERROR' ORDER BY trace_id "
                       "LIMIT 2"}))
            errors = [r[0] for r in rows["rows"]]
            hid = data(await s.call_tool("create_hypothesis", {
                "run_id": run_id, "statement": "Failed traces share one failing tool",
                "testing_plan": "1. list ERROR traces 2. group by failing span",
                "evidence": [{"trace_id": errors[0], "rationale": "tool span failed",
                              "supports": True}]}))["hypothesis_id"]
            verdict = data(await s.call_tool("update_hypothesis", {
                "run_id": run_id, "hypothesis_id": hid, "status": "validated",
                "add_evidence": [{"trace_id": errors[1], "rationale": "same tool",
                                  "supports": True}]}))
            iid = data(await s.call_tool("create_issue", {
                "run_id": run_id, "title": "Tool failures end traces in ERROR",
                "severity": "HIGH", "hypothesis_id": hid,
                "evidence": [{"trace_id": errors[0], "rationale": "tool span failed"}]}))["issue_id"]
            out.update(
                run_id=run_id, census=census, errors=errors, hid=hid, iid=iid, verdict=verdict,
                issues=data(await s.call_tool("list_issues", {})),
                hypotheses=data(await s.call_tool("list_hypotheses", {"run_id": run_id})),
                analyses=data(await s.call_tool("list_analyses", {})),
                stored_census=data(await s.call_tool("get_baseline_census", {"run_id": run_id})),
                preview=data(await s.call_tool("preview_issues", {"max_traces": 5})),
                linked=data(await s.call_tool("link_traces", {"run_id": run_id,
                                                              "trace_ids": errors})),
                done=data(await s.call_tool("update_analysis", {"run_id": run_id,
                                                                "status": "COMPLETED"})),
            )
        return out

    out = asyncio.run(go())
    run_id, hid, iid = out["run_id"], out["hid"], out["iid"]
    # The census over MCP is the stored one, and it counted the demo corpus.
    assert out["census"]["total_traces"] == out["stored_census"]["total_traces"] > 0
    assert out["census"]["run_id"] == run_id and out["census"]["error_traces"] > 0
    # Progress notifications arrived while the census ran, counting up, with messages.
    assert len(progress) >= 2
    assert [v for v, _ in progress] == sorted(v for v, _ in progress)
    assert progress[0][1] == "computing the census" and all(m for _, m in progress)
    assert out["verdict"]["status"] == "VALIDATED" and out["verdict"]["supports_count"] == 2
    assert [i["issue_id"] for i in out["issues"]["issues"]] == [iid]
    assert [h["hypothesis_id"] for h in out["hypotheses"]["hypotheses"]] == [hid]
    assert [a["run_id"] for a in out["analyses"]["analyses"]] == [run_id]
    assert out["preview"]["traces"][0]["trace_id"] == out["errors"][0]
    assert out["linked"] == {"run_id": run_id, "linked": 2}
    assert out["done"]["status"] == "COMPLETED"

    # Read back from MLflow with the SDK itself: the server wrote through it.
    with small_store.client() as client:
        issue = client.get_issue(iid, small_store.experiment_id)
        assert issue.hypothesis_id == hid and issue.severity.value == "HIGH"
        assert issue.trace_ids == [out["errors"][0]]
        h = client.get_hypothesis(run_id, hid)
        assert h.status.value == "VALIDATED" and h.trace_ids == out["errors"]
        assert set(out["errors"]) <= set(client.linked_trace_ids(run_id))


def test_bad_input_is_a_tool_error_naming_the_fix_and_writes_nothing(small_store):
    with small_store.client() as client:
        run_id = client.create_analysis(small_store.experiment_id, "Bad Input Check")
        trace_id = client.execute_sql(small_store.experiment_id,
                                      "SELECT trace_id FROM traces LIMIT 1").rows[0][0]
        hid = client.create_hypothesis(run_id, "A hypothesis to leave alone")
    before = store_snapshot(small_store.root)
    good = {"trace_id": trace_id, "rationale": "fine"}
    calls = [
        # unknown analysis run
        ("create_hypothesis", {"run_id": UNKNOWN_RUN, "statement": "x", "evidence": [good]},
         [UNKNOWN_RUN, "not found", "list_analyses"]),
        ("create_issue", {"run_id": UNKNOWN_RUN, "title": "Nothing here"}, [UNKNOWN_RUN]),
        # status / severity outside the enums: the error lists the allowed values
        ("update_hypothesis", {"run_id": run_id, "hypothesis_id": hid, "status": "DONE"},
         ["status", "'TESTING', 'VALIDATED' or 'REJECTED'", "'DONE'"]),
        ("create_issue", {"run_id": run_id, "title": "Bad status", "status": "CLOSED",
                          "evidence": [good]},
         ["status", "'OPEN', 'IN_PROGRESS', 'RESOLVED' or 'REJECTED'"]),
        ("create_issue", {"run_id": run_id, "title": "Bad severity", "severity": "SEVERE"},
         ["severity", "'CRITICAL'"]),
        # malformed evidence: no trace id, a non-boolean supports, a trace not in the store
        ("create_hypothesis", {"run_id": run_id, "statement": "x",
                               "evidence": [good, {"rationale": "which trace?"}]},
         ["evidence.1.trace_id", "Field required"]),
        ("update_hypothesis", {"run_id": run_id, "hypothesis_id": hid,
                               "add_evidence": [{"trace_id": trace_id, "supports": "maybe"}]},
         ["add_evidence.0.supports", "boolean"]),
        ("create_issue", {"run_id": run_id, "title": "Ghost trace",
                          "evidence": [{"trace_id": "tr-0000000000000000000000000000dead"}]},
         ["tr-0000000000000000000000000000dead", "not found"]),
        ("execute_sql", {"sql": "DELETE FROM traces"}, ["SELECT"]),
    ]

    async def go() -> list[tuple[str, Any]]:
        async with stdio_session(small_store) as s:
            return [(name, await s.call_tool(name, args)) for name, args, _ in calls]

    results = asyncio.run(go())
    for (name, args, needles), (_, result) in zip(calls, results):
        assert result.isError, (name, args, text(result))
        message = text(result)
        for needle in needles:
            assert needle in message, (name, needle, message)
        assert "errors.pydantic.dev" not in message  # short, not pydantic's full report
    assert "nothing was written" in text(results[2][1])
    assert store_snapshot(small_store.root) == before


def test_recheck_and_sql_send_progress_and_record_the_result(small_store):
    with small_store.client() as client:
        run_id = client.create_analysis(small_store.experiment_id, "Recheck Check")
        trace_id = client.execute_sql(small_store.experiment_id,
                                      "SELECT trace_id FROM traces WHERE state = 'ERROR' "
                                      "LIMIT 1").rows[0][0]
        iid = client.create_issue(
            run_id, "Traces end in ERROR", severity="HIGH",
            evidence=[{"trace_id": trace_id, "rationale": "ERROR"}],
            metadata={"signature": {"kind": "state", "key": "error", "where": "state = 'ERROR'"}})
    seen: dict[str, list[str | None]] = {"sql": [], "recheck": []}

    def collect(kind: str):
        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            seen[kind].append(message)
        return on_progress

    async def go():
        async with stdio_session(small_store) as s:
            sql = data(await s.call_tool("execute_sql", {
                "sql": "SELECT count(*) AS n FROM traces WHERE state = 'ERROR'"},
                progress_callback=collect("sql")))
            rechecked = data(await s.call_tool("recheck", {"since": "2000-01-01"},
                                               progress_callback=collect("recheck")))
            bad_since = await s.call_tool("recheck", {"since": "last tuesday"})
            return sql, rechecked, bad_since

    sql, rechecked, bad_since = asyncio.run(go())
    errors = sql["rows"][0][0]
    assert errors > 0 and sql["columns"] == ["n"]
    assert seen["sql"][0] == "running the query"
    assert seen["recheck"][0] == "rechecking the open issues"
    assert seen["recheck"][-1] == "1 issues rechecked"
    [result] = rechecked["results"]
    assert result["issue_id"] == iid and result["count"] == errors
    assert result["result"] in ("still present", "worse")
    assert bad_since.isError and "ISO date" in text(bad_since)
    with small_store.client() as client:
        assert client.get_issue(iid).metadata["last_check"]["result"] == result["result"]
