"""Time a recheck of 20 open issues over 10,000 new traces, offline (issue 12's target: <= 10 s).

Builds a store the way a team meets it the day after an analysis: an experiment with N older
traces, 20 OPEN issues written against them (each with a signature ``where`` and, like the
workflow writes them, every matching trace as evidence up to 10,000), then N new traces of the
following day. The recheck then runs in a fresh process, so its time includes bringing the
trace cache up to date with the new traces, one count per issue and the history writes.

    python bench/bench_recheck.py --traces 10000 --workdir /tmp/insights-bench-recheck

Run on demand, never in CI. Prints the setup time, the recheck time and its results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
DAY_MS = 24 * 3600 * 1000
TOOLS = ("search_web", "get_weather", "calculator", "sql_query")

# 20 issue definitions over the corpus's generic structure: span failures and slowness per
# tool, model failures, empty answers, slow traces, tags, sessions and assessments.
SIGNATURES = [
    *(f"exists(spans, s -> s.name = '{t}' AND s.status_code = 'ERROR')" for t in TOOLS),
    *(f"exists(spans, s -> s.name = '{t}' AND s.duration_ms > 2000)" for t in TOOLS),
    "state = 'ERROR'",
    "state = 'OK' AND response_empty",
    "execution_time_ms > 8000",
    "total_tokens > 2500",
    "tags['env'] = 'staging' AND state = 'ERROR'",
    "tags['env'] = 'prod' AND execution_time_ms > 6000",
    "exists(assessments, a -> a.name = 'correctness' AND a.value = 'false')",
    "exists(assessments, a -> a.name = 'helpful' AND a.value = '\"no\"')",
    "size(spans) > 4 AND state = 'ERROR'",
    "size(filter(spans, s -> s.span_type = 'TOOL' AND s.status_code = 'ERROR')) >= 2",
    "length(request) > 200 AND execution_time_ms > 5000",
    "exists(spans, s -> s.span_type = 'TOOL' AND s.duration_ms > 5000)",
]

CHILD = r"""
import json, sys, time
t0 = time.time()
from insights import InsightsClient
from insights.recheck import recheck
uri, exp = sys.argv[1:3]
client = InsightsClient(uri)
started = time.time()
results = recheck(client, exp)
print(json.dumps({"import_s": started - t0, "recheck_s": time.time() - started,
                  "results": results}))
"""


def build_store(workdir: Path, n: int) -> tuple[str, str]:
    """Older traces, 20 issues written against them, then ``n`` newer traces."""
    sys.path.insert(0, str(HERE))
    from build_corpus import build

    from insights import InsightsClient

    db = workdir / "recheck.db"
    db.unlink(missing_ok=True)
    uri = f"sqlite:///{db}"
    now = int(time.time() * 1000)
    exp = str(build(uri, n, "recheck", seed=1, start_ms=now - 4 * DAY_MS, span_ms=2 * DAY_MS))
    client = InsightsClient(uri)
    run_id = client.create_analysis(exp, run_name="bench recheck")
    seen = now - 2 * DAY_MS
    for i, where in enumerate(SIGNATURES):
        rows = client.execute_sql(exp, f"SELECT trace_id FROM traces WHERE {where}",
                                  max_rows=10_000).rows
        evidence = [{"trace_id": r[0], "rationale": "matches the signature", "supports": True}
                    for r in rows]
        client.create_issue(run_id, f"bench issue {i}: {where}"[:190], description=where,
                            evidence=evidence, metadata={
                                "signature": {"kind": "plan", "key": f"bench-{i}", "where": where},
                                "trace_count": len(rows), "last_seen": seen,
                                "latest": {"share": len(rows) / n}})
    build(uri, n, "recheck", seed=2, start_ms=now - DAY_MS, span_ms=DAY_MS - 60_000)
    client.close()
    return uri, exp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=10_000, help="older traces, and as many new")
    ap.add_argument("--workdir", default="/tmp/insights-bench-recheck")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    os.environ["INSIGHTS_CACHE_DIR"] = str(workdir / "cache")   # setup and recheck share it
    console = Console()
    started = time.time()
    uri, exp = build_store(workdir, args.traces)
    console.print(f"setup: {args.traces} older traces, {len(SIGNATURES)} issues, "
                  f"{args.traces} new traces in {time.time() - started:.1f} s")
    out = subprocess.run([sys.executable, "-c", CHILD, uri, exp], capture_output=True,
                         text=True, check=True, cwd=HERE.parent)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    table = Table(title=f"recheck of {len(figures['results'])} issues over {args.traces} new traces")
    for col in ("issue", "result", "since", "traces", "rate before"):
        table.add_column(col)
    for r in figures["results"]:
        table.add_row(r["title"][:60], r["result"], str(r.get("count", "")),
                      str(r.get("traces", "")), f"{r.get('rate_before') or 0:.3f}")
    console.print(table)
    verdict = "met" if figures["recheck_s"] <= 10 else "NOT met"
    console.print(f"import {figures['import_s']:.2f} s; recheck {figures['recheck_s']:.2f} s "
                  f"(target <= 10 s: {verdict})")


if __name__ == "__main__":
    main()
