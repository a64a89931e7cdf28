"""Recheck (issue 12, item 3): open issues' signatures counted on newer traces, no model.

The store: the demo corpus (800 traces over the last 48 h) plus 200 traces of the same app an
hour later, its flight provider failing all the time (about 1,000 traces)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.workflow.conftest import DEMO_TRACES, EXPERIMENT, cached_variant


def _flight_outage_an_hour_later(store) -> dict:
    """200 more traces of the demo app from an hour after now, its flight provider failing
    all the time; ``since``: when they start (epoch ms)."""
    from agent.demo import import_demo_app

    later = datetime.now(timezone.utc) + timedelta(hours=1)
    demo = import_demo_app()
    demo.build_demo_corpus(store.uri, n_traces=200, seed=12, experiment_name=EXPERIMENT,
                           start=later, plan=demo.FaultPlan(outage_start_s=0,
                                                            outage_end_s=48 * 3600))
    return {"since": int(later.timestamp() * 1000)}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """The store, built once (and kept in the fixture cache with its ``since``, for at most
    the hour its demo store is kept: every assertion is relative to ``since``)."""
    root = tmp_path_factory.mktemp("recheck")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSIGHTS_CACHE_DIR", str(root / "cache"))
        mp.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        store, extra = cached_variant(root / "store", DEMO_TRACES, _flight_outage_an_hour_later)
        yield store, extra["since"]


def _issues(client, exp: str, since: int) -> dict[str, str]:
    """Issues with signatures (and two without, or closed), as an analysis would leave them."""
    run_id = client.create_analysis(exp, run_name="r", name="r")
    old = client.execute_sql(exp, f"SELECT trace_id FROM traces WHERE request_time_ms < {since} "
                                  "ORDER BY trace_id LIMIT 1").rows[0][0]

    def issue(title: str, where: str | None, status: str = "OPEN", share: float = 0.1) -> str:
        meta = {"last_seen": since, "latest": {"share": share}}
        if where:
            meta["signature"] = {"kind": "census", "key": f"census:{title}", "where": where}
        return client.create_issue(run_id, title, status=status, metadata=meta)

    return {
        "errors": issue("errors", "state = 'ERROR'"),
        "long": issue("long", "length(request) > 400", share=0.9),
        "gone": issue("gone", f"trace_id = '{old}'"),
        "rejected": issue("rejected", "state = 'ERROR'", status="REJECTED"),
        "plain": issue("plain", None),
    }


def test_recheck_counts_signatures_on_newer_traces_and_records_them(world) -> None:
    from insights.recheck import NOT_SEEN, STILL_PRESENT, WORSE, recheck

    store, since = world
    client, exp = store.client(), store.experiment_id
    ids = _issues(client, exp, since)
    total = client.execute_sql(exp, "SELECT count(*) FROM traces").rows[0][0]
    assert 950 <= total <= 1050

    results = recheck(client, exp)                      # since: each issue's last_seen
    by_id = {r["issue_id"]: r for r in results}
    assert set(by_id) == {ids["errors"], ids["long"], ids["gone"]}   # open, with a signature
    errors, long, gone = by_id[ids["errors"]], by_id[ids["long"]], by_id[ids["gone"]]
    assert errors["traces"] == 200 and errors["since"] == since
    assert errors["result"] == WORSE, errors
    assert errors["rate"] >= 1.5 * errors["earlier_rate"] > 0
    assert errors["count_before"] > 0 and errors["traces_before"] > 0
    assert long["result"] == STILL_PRESENT and long["count"] > 0, long
    assert gone["result"] == NOT_SEEN and gone["count"] == 0

    issue = client.get_issue(ids["errors"])
    [entry] = [h for h in issue.metadata["history"] if h["event"] == "recheck"]
    assert entry["result"] == WORSE and entry["numbers"]["count"] == errors["count"]
    assert issue.metadata["last_check"]["result"] == WORSE
    assert issue.metadata["last_check"]["at"] >= since - 3 * 3600 * 1000
    assert "history" not in client.get_issue(ids["rejected"]).metadata

    # again with an explicit since before every trace: nothing "before", the issue's share
    again = {r["issue_id"]: r for r in recheck(client, exp, since_ms=0)}
    assert again[ids["gone"]]["result"] == STILL_PRESENT and again[ids["gone"]]["count"] == 1
    assert again[ids["errors"]]["traces"] == total
    history = client.get_issue(ids["errors"]).metadata["history"]
    assert [h["event"] for h in history] == ["recheck", "recheck"]


def test_a_broken_signature_reports_an_error_and_the_others_are_still_counted(world) -> None:
    from insights.recheck import recheck

    store, since = world
    client, exp = store.client(), store.experiment_id
    run_id = client.create_analysis(exp, run_name="broken", name="broken")
    meta = {"last_seen": since, "latest": {"share": 0.1}}
    good = client.create_issue(run_id, "good", metadata={
        **meta, "signature": {"kind": "census", "key": "census:good", "where": "state = 'ERROR'"}})
    bad = client.create_issue(run_id, "bad", metadata={
        **meta, "signature": {"kind": "census", "key": "census:bad", "where": "no_such_column > 1"}})
    by_id = {r["issue_id"]: r for r in recheck(client, exp, issue_ids=[good, bad])}
    assert by_id[bad]["result"] == "error" and "no_such_column" in by_id[bad]["error"]
    assert by_id[good]["result"] in ("still present", "worse") and by_id[good]["count"] > 0
    assert "last_check" not in (client.get_issue(bad, exp).metadata or {})   # nothing recorded
    assert client.get_issue(good, exp).metadata["last_check"]["count"] == by_id[good]["count"]
    [alone] = recheck(client, exp, issue_ids=[bad])          # one issue: an error, not a raise
    assert alone["result"] == "error" and "no_such_column" in alone["error"]
    shifty = client.create_issue(run_id, "shifty", metadata={**meta, "signature": {
        "kind": "census", "key": "census:shifty", "where": "1 = 1 THEN 1 END), sum(CASE WHEN 1 = 1"}})
    by_id = {r["issue_id"]: r for r in recheck(client, exp, issue_ids=[good, shifty])}
    assert by_id[good]["count"] > 0 and by_id[good]["result"] != "error"
    assert by_id[shifty]["result"] == "error"


def test_recheck_clis_json_table_and_bad_input(world) -> None:
    from agent.cli import app as agent_app
    from insights.cli import app

    store, since = world
    client, exp = store.client(), store.experiment_id
    ids = _issues(client, exp, since)
    runner = CliRunner()
    iso = datetime.fromtimestamp(since / 1000, timezone.utc).isoformat()
    result = runner.invoke(app, ["--tracking-uri", store.uri, "recheck", "--experiment-id", exp,
                                 "--since", iso, "--output", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["issue_id"]: r for r in json.loads(result.stdout)["results"]}
    assert rows[ids["errors"]]["result"] == "worse" and rows[ids["errors"]]["since"] == since

    result = runner.invoke(agent_app, ["recheck", "--experiment-id", exp, "--tracking-uri",
                                       store.uri, "--since", str(since)])
    assert result.exit_code == 0, result.output
    assert "worse" in result.output and "not seen" in result.output

    for args in (["--since", "yesterday-ish"], ["--since", "-5"]):
        bad = runner.invoke(app, ["--tracking-uri", store.uri, "recheck", "--experiment-id",
                                  exp, *args])
        assert bad.exit_code == 2 and bad.output.count("\n") == 1, bad.output
        assert bad.output.startswith("Error: ")
    missing = runner.invoke(agent_app, ["recheck", "--experiment-id", "424242",
                                        "--tracking-uri", store.uri])
    assert missing.exit_code != 0 and missing.output.startswith("Error: "), missing.output


def test_recheck_help_is_lazy() -> None:
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from insights.cli import app; "
            "from agent.cli import app as a; r = CliRunner().invoke(app, ['recheck', '--help']); "
            "s = CliRunner().invoke(a, ['recheck', '--help']); "
            "assert 'Example' in r.output and 'Example' in s.output, (r.output, s.output); "
            "print(sorted(m for m in ('mlflow', 'duckdb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_recheck_rest_route(world) -> None:
    from fastapi.testclient import TestClient

    from insights.server import create_app
    from insights.server.api import API_PREFIX

    store, since = world
    client, exp = store.client(), store.experiment_id
    ids = _issues(client, exp, since)
    http = TestClient(create_app(store.uri))
    url = API_PREFIX + "issues/recheck"
    got = http.post(url, json={"experiment_id": exp, "since": since, "issue_ids": [ids["errors"]]})
    assert got.status_code == 200, got.text
    [row] = got.json()["results"]
    assert row["issue_id"] == ids["errors"] and row["result"] == "worse"
    bad = http.post(url, json={"experiment_id": exp, "since": "soon"})
    assert bad.status_code == 400, bad.text
