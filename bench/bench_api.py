"""Issues list latency with many issues on a local SQLite store.

    python bench/bench_api.py [--issues 1000] [--repeat 5]

Creates the issues through ``InsightsClient.create_issue`` (timed), then times
``POST .../issues/list`` through the FastAPI app (in-process, no network) and the SDK pieces
behind it: ``list_issues`` (one folder download + YAML parsing) and ``list_analyses``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import mlflow
from fastapi.testclient import TestClient

from insights import artifacts, journal, runs
from insights.client import InsightsClient
from insights.server import create_app
from insights.server.api import API_PREFIX


def timed(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--issues", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-api-"))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    exp = mlflow.MlflowClient(uri).create_experiment("bench", artifact_location=(root / "a").as_uri())
    sdk = InsightsClient(uri)
    run_id = sdk.create_analysis(exp, run_name="bench")
    sev = ["CRITICAL", "HIGH", "MEDIUM", "LOW"]
    t0 = time.perf_counter()
    for i in range(args.issues):
        sdk.create_issue(run_id, f"Issue {i}", severity=sev[i % 4],
                         evidence=[{"trace_id": f"tr-{i:04d}{j:02d}", "rationale": "bench"}
                                   for j in range(i % 5 + 1)])
    create_s = time.perf_counter() - t0
    print(f"created {args.issues} issues via InsightsClient.create_issue: {create_s:.1f} s "
          f"({create_s / args.issues * 1000:.1f} ms each)")

    api = TestClient(create_app(uri))

    def list_all():
        r = api.post(API_PREFIX + "issues/list", json={"experiment_id": exp})
        assert r.status_code == 200 and len(r.json()["issues"]) == args.issues

    def list_page():
        r = api.post(API_PREFIX + "issues/list", json={"experiment_id": exp, "max_results": 25,
                                                       "sort_by": "severity"})
        assert r.status_code == 200

    parent = runs.find_parent(sdk.mlflow_client, exp).info.run_id

    def download_only():
        with tempfile.TemporaryDirectory() as tmp:
            artifacts.download_dir(sdk.mlflow_client, parent, journal.SNAPSHOT_DIR, tmp)

    rows = [
        ("API issues/list (all, JSON)", list_all),
        ("API issues/list (page of 25)", list_page),
        ("SDK list_issues", lambda: sdk.list_issues(exp)),
        ("(compare) download the folder instead", download_only),
        ("SDK list_analyses", lambda: sdk.list_analyses(exp)),
    ]
    list_all()  # warm up
    print(f"{'operation':34} {'median ms':>10} {'min ms':>8}   (repeat={args.repeat})")
    for name, fn in rows:
        med, best = timed(fn, args.repeat)
        print(f"{name:34} {med:10.1f} {best:8.1f}")
    print("target: issues/list < 300 ms")


if __name__ == "__main__":
    main()
