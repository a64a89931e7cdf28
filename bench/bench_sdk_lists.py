"""How long ``list_issues`` and ``list_hypotheses`` take with N entities, local and loopback.

    python bench/bench_sdk_lists.py [--entities 200] [--repeat 5]

For each store (a local SQLite file, and a real ``mlflow server`` on 127.0.0.1 over another
SQLite file, artifacts proxied by the server) it creates one analysis holding N hypotheses and
N issues through ``InsightsClient`` (each with a few evidence entries), then times both list
calls from a new client (first call) and again (median of ``--repeat``). Prints a rich table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mlflow
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analytics import start_server  # noqa: E402

from insights import InsightsClient  # noqa: E402


def seed(client: InsightsClient, exp: str, n: int) -> tuple[str, float]:
    """One analysis with ``n`` hypotheses and ``n`` issues; returns its run id and seconds."""
    t0 = time.perf_counter()
    run_id = client.create_analysis(exp, run_name="bench lists")
    severities = ["CRITICAL", "HIGH", "MEDIUM", "LOW"]
    for i in range(n):
        evidence = [{"trace_id": f"tr-{i:04d}{j:02d}", "rationale": "bench", "supports": j != 2}
                    for j in range(i % 4 + 1)]
        client.create_hypothesis(run_id, f"Hypothesis {i}", "Step 1: count", evidence=evidence)
        client.create_issue(run_id, f"Issue {i}", severity=severities[i % 4], evidence=evidence)
    return run_id, time.perf_counter() - t0


def timings(uri: str, exp: str, run_id: str, n: int, repeat: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, call in (("list_issues", lambda c: c.list_issues(exp)),
                       ("list_hypotheses", lambda c: c.list_hypotheses(run_id))):
        fresh = InsightsClient(uri)
        t0 = time.perf_counter()
        items = call(fresh)
        out[f"{name} first"] = (time.perf_counter() - t0) * 1000
        assert len(items) == n, (name, len(items))
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            call(fresh)
            times.append((time.perf_counter() - t0) * 1000)
        out[f"{name} median"] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    console = Console(width=120)
    root = Path(tempfile.mkdtemp(prefix="bench-lists-"))

    stores: list[tuple[str, str, str]] = []
    local = f"sqlite:///{root / 'local.db'}"
    exp = mlflow.MlflowClient(local).create_experiment("bench", artifact_location=(root / "a").as_uri())
    stores.append(("local SQLite", local, exp))
    proc, server = start_server(root / "server.db")
    try:
        stores.append(("loopback mlflow server", server,
                       mlflow.MlflowClient(server).create_experiment("bench")))
        table = Table(title=f"InsightsClient lists with {args.entities} hypotheses and issues (ms)")
        for col in ("store", "seed (s)", "list_issues first", "list_issues median",
                    "list_hypotheses first", "list_hypotheses median"):
            table.add_column(col, justify="right")
        for label, uri, exp_id in stores:
            with console.status(f"{label}: creating {args.entities} hypotheses and issues"):
                run_id, seeded = seed(InsightsClient(uri), exp_id, args.entities)
            t = timings(uri, exp_id, run_id, args.entities, args.repeat)
            table.add_row(label, f"{seeded:.1f}", *(f"{t[k]:.0f}" for k in (
                "list_issues first", "list_issues median", "list_hypotheses first",
                "list_hypotheses median")))
        console.print(table)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
