"""One worker process of the concurrency tests: wait at a file barrier, then write.

The tests run ``race`` in processes forked from a preloaded forkserver (tests/helpers/forked.py).
By hand: python concurrency_worker.py MODE BARRIER_DIR INDEX JSON_ARGS (prints one JSON line).
Each worker builds its own InsightsClient from the tracking URI, after it started.
Evidence cites real traces: JSON_ARGS["traces"] maps names like "tr-w0-u1" to trace ids.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HYPOTHESIS_STATUSES = ["TESTING", "VALIDATED", "REJECTED"]
ISSUE_STATUSES = ["OPEN", "IN_PROGRESS", "RESOLVED", "REJECTED"]
SEVERITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW"]


def wait_at_barrier(barrier: Path, index: int, timeout: float = 180.0) -> None:
    (barrier / f"ready-{index}").touch()
    go = barrier / "go"
    deadline = time.monotonic() + timeout
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("barrier timeout")
        time.sleep(0.001)


def race(index: int, mode: str, barrier: str | Path, args: dict) -> dict:
    """Warm up, wait at the barrier, write; returns what this worker wrote."""
    barrier = Path(barrier)
    from insights import InsightsClient

    client = InsightsClient(args["uri"])
    if "experiment_id" in args:  # warm up (imports, connections) before the race
        client.mlflow_client.get_experiment(args["experiment_id"])
    else:
        client.mlflow_client.get_run(args["run_id"])
    wait_at_barrier(barrier, index)
    out: dict = {"index": index}
    if mode in ("analysis", "analysis_issue"):
        run_id = client.create_analysis(args["experiment_id"], run_name=f"worker-{index}",
                                        name=f"Analysis of worker {index}")
        out["run_id"] = run_id
        if mode == "analysis_issue":
            out["issue_id"] = client.create_issue(
                run_id, f"issue of worker {index}",
                evidence=[{"trace_id": args["traces"][f"tr-w{index}"],
                           "rationale": f"worker {index}"}])
    elif mode == "hypothesis":
        written = []
        for k in range(args["updates"]):
            status = HYPOTHESIS_STATUSES[(index + k) % len(HYPOTHESIS_STATUSES)]
            client.update_hypothesis(
                args["run_id"], args["hypothesis_id"], status=status,
                add_evidence=[{"trace_id": args["traces"][f"tr-w{index}-u{k}"],
                               "rationale": f"worker {index} update {k}",
                               "supports": k % 2 == 0}])
            written.append(status)
        out["statuses"] = written
    elif mode == "issue":
        written = []
        for k in range(args["updates"]):
            status = ISSUE_STATUSES[(index + k) % len(ISSUE_STATUSES)]
            severity = SEVERITIES[(index + k) % len(SEVERITIES)]
            client.update_issue(
                args["run_id"], args["issue_id"], status=status, severity=severity,
                add_evidence=[f"{args['traces'][f'tr-w{index}-u{k}']}: worker {index} update {k}"])
            written.append([status, severity])
        out["written"] = written
    else:
        raise SystemExit(f"unknown mode {mode}")
    return out


def main() -> None:
    mode, barrier, index, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    print(json.dumps(race(index, mode, barrier, args)), flush=True)


if __name__ == "__main__":
    main()
