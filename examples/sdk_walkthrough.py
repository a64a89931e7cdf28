"""A walk through the Insights SDK against a local SQLite store (no server needed).

Run:  python examples/sdk_walkthrough.py [--tracking-uri sqlite:///walkthrough.db]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import mlflow

from insights import InsightsClient


def make_traces(experiment_id: str, tracking_uri: str) -> list[str]:
    """Log three small traces so the walkthrough has real evidence to cite."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment_id=experiment_id)
    ids = []
    for question, fail in [("db lookup", True), ("db lookup", True), ("small talk", False)]:
        try:
            with mlflow.start_span("answer", span_type="AGENT") as root:
                root.set_inputs({"question": question})
                with mlflow.start_span("query_db", span_type="TOOL"):
                    if fail:
                        raise TimeoutError("lock wait timeout after 30s")
                root.set_outputs("ok")
        except TimeoutError:
            pass
        ids.append(mlflow.get_last_active_trace_id())
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="insights-walkthrough-"))
    uri = args.tracking_uri or f"sqlite:///{folder / 'mlflow.db'}"
    experiment_id = mlflow.MlflowClient(uri).create_experiment(
        "walkthrough", artifact_location=(folder / "artifacts").as_uri()
    )
    slow, slow2, fast = make_traces(experiment_id, uri)

    client = InsightsClient(uri)
    run_id = client.create_analysis(experiment_id, run_name="Latency Analysis",
                                    name="DB lock walkthrough", description="SDK tour")
    hypothesis_id = client.create_hypothesis(
        run_id, "Database lock waits cause query timeouts",
        testing_plan="Step 1: find traces whose query_db span failed. Step 2: compare with "
                     "successful traces. VALIDATE if failures carry lock-wait errors.",
        evidence=[{"trace_id": slow, "rationale": "query_db: lock wait timeout", "supports": True}],
    )
    client.update_hypothesis(run_id, hypothesis_id, status="VALIDATED", add_evidence=[
        {"trace_id": slow2, "rationale": "same lock wait timeout", "supports": True},
        {"trace_id": fast, "rationale": "no db call, fast", "supports": False},
    ])
    issue_id = client.create_issue(run_id, "Database lock waits time out queries",
                                   severity="HIGH", hypothesis_id=hypothesis_id,
                                   evidence=[{"trace_id": slow, "rationale": "lock wait"},
                                             {"trace_id": slow2, "rationale": "lock wait"}])
    client.update_analysis(run_id, status="COMPLETED")

    for issue in client.list_issues(experiment_id):
        print(f"[{issue.severity.value}] {issue.title}: {len(issue.trace_ids)} traces")
    for trace in client.preview_issues(experiment_id, max_traces=5):
        print(f"  {trace.info.trace_id} {trace.info.state}")
    print(f"issue {issue_id} is in the Insights parent run; analysis {run_id} is COMPLETED")
    print(f"store: {uri}")


if __name__ == "__main__":
    main()
