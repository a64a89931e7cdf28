"""Warm tool-call latency of ``insights-agent mcp``, measured from the MCP SDK's own client.

    python bench/bench_mcp.py [--traces 1000] [--issues 10] [--repeat 30]

A coding agent calls the server's tools many times in one session, so what counts is the
cost of a call once the server is up: the server keeps one InsightsClient (MLflow client and
trace cache) for its life. The script builds a SQLite store in a temp folder
(``build_corpus.py``: ``--traces`` traces), starts ``insights-agent mcp`` over stdio, creates an
analysis and ``--issues`` issues through the server (each citing a trace), makes one call of
each timed tool to warm it, then times ``--repeat`` calls of each, round robin, wall clock
around ``ClientSession.call_tool`` (JSON-RPC over the pipe included).

Target (issue 14): the median warm ``list_issues`` call under 200 ms on a local store.
Prints a table of median / p95 / min per tool and the pass or fail line; exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 200.0


async def measure(uri: str, exp: str, work: Path, issues: int, repeat: int) -> dict[str, list[float]]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = dict(os.environ, MLFLOW_EXPERIMENT_ID=exp, INSIGHTS_CACHE_DIR=str(work / "cache"),
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "agent.cli", "mcp", "--tracking-uri", uri],
                                   env=env, cwd=str(ROOT))

    def result(res) -> dict:
        text = res.content[0].text
        if res.isError:
            raise SystemExit(f"tool call failed: {text}")
        return json.loads(text)

    with open(work / "server.log", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as s:
                began = time.perf_counter()
                await s.initialize()
                print(f"server start and initialize: {time.perf_counter() - began:.2f} s")
                run_id = result(await s.call_tool("create_analysis", {"run_name": "bench mcp"}))["run_id"]
                rows = result(await s.call_tool("execute_sql", {
                    "sql": f"SELECT trace_id FROM traces ORDER BY trace_id LIMIT {issues}"}))["rows"]
                issue_ids = []
                for n, (trace_id,) in enumerate(rows):
                    issue_ids.append(result(await s.call_tool("create_issue", {
                        "run_id": run_id, "title": f"Bench issue number {n}",
                        "evidence": [{"trace_id": trace_id, "rationale": "bench"}]}))["issue_id"])
                calls = {
                    "list_issues": {},
                    "get_issue": {"issue_id": issue_ids[0]},
                    "list_analyses": {},
                    "execute_sql": {"sql": "SELECT state, count(*) FROM traces GROUP BY state"},
                }
                first = {}
                for name, args in calls.items():  # the first call of each warms it
                    began = time.perf_counter()
                    result(await s.call_tool(name, args))
                    first[name] = (time.perf_counter() - began) * 1000
                print("first calls (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in first.items()))
                timings: dict[str, list[float]] = {name: [] for name in calls}
                for _ in range(repeat):
                    for name, args in calls.items():
                        began = time.perf_counter()
                        result(await s.call_tool(name, args))
                        timings[name].append((time.perf_counter() - began) * 1000)
                count = len(result(await s.call_tool("list_issues", {}))["issues"])
                assert count == issues, f"list_issues returned {count} issues, expected {issues}"
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--issues", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "bench"))
    from build_corpus import build

    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        work = Path(tmp)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        began = time.perf_counter()
        exp = str(build(uri, args.traces, experiment="bench-mcp"))
        print(f"store: {args.traces} traces in {time.perf_counter() - began:.1f} s; "
              f"{args.issues} issues; {args.repeat} timed calls per tool")
        timings = asyncio.run(measure(uri, exp, work, args.issues, args.repeat))

    print(f"\n{'tool (warm)':<16}{'median ms':>11}{'p95 ms':>9}{'min ms':>9}")
    for name, values in timings.items():
        values = sorted(values)
        p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
        print(f"{name:<16}{statistics.median(values):>11.1f}{p95:>9.1f}{values[0]:>9.1f}")
    median = statistics.median(timings["list_issues"])
    ok = median < TARGET_MS
    print(f"\nwarm list_issues median {median:.1f} ms: target < {TARGET_MS:.0f} ms "
          f"{'met' if ok else 'MISSED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
