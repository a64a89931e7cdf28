"""``insights-agent demo``: build a local store from the traced demo app and analyze it.

The demo application lives in ``agent/demo_app`` (a travel assistant with tools, scripted
model responses and planted faults), inside the distribution so an installed wheel can run it.
Nothing else in ``agent/`` or ``workflows/`` depends on what it does; this module only builds
the store and starts an unattended analysis over it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

MARKER = ".insights-demo"


def import_demo_app():
    """The demo app, imported on call: it pulls in MLflow, which a CLI start must not pay for."""
    from agent import demo_app

    return demo_app


def prepare_dir(directory: Path) -> Path:
    """A fresh demo folder; only a folder the demo made itself is ever emptied."""
    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise SystemExit(f"Error: {directory} exists and was not made by the demo; pick another --dir")
        import shutil

        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text("made by insights-agent demo\n")
    return directory


def run_demo(directory: Path, n_traces: int, seed: int, console: Console) -> dict[str, Any]:
    from agent.cli import _summary
    from agent.offline import OfflineAnalyst
    from agent.terminal import show_progress
    from insights import InsightsClient
    from workflows.analyze_experiment import WorkflowContext, build_graph

    directory = prepare_dir(directory)
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    demo_app = import_demo_app()
    from mlflow import MlflowClient

    # Artifacts beside the database, not in whatever folder the command was started from.
    MlflowClient(uri).create_experiment("insights-demo",
                                        artifact_location=(directory / "artifacts").as_uri())
    with console.status(f"tracing {n_traces} requests through the demo travel assistant"):
        corpus = demo_app.build_demo_corpus(uri, n_traces=n_traces, seed=seed,
                                            experiment_name="insights-demo")
    console.print(f"demo store: {uri} (experiment {corpus.experiment_id}, {len(corpus.trace_ids)} traces)",
                  markup=False)
    client = InsightsClient(uri)
    analyst = OfflineAnalyst()
    ctx = WorkflowContext(client=client, analyst=analyst, auto_answer=True,
                          report_dir=str(directory),
                          answers={"log_assessments": {"log": True}})
    graph = build_graph()
    state: dict[str, Any] = {}
    for mode, chunk in graph.stream({"experiment_id": corpus.experiment_id}, context=ctx,
                                    stream_mode=["custom", "values"]):
        if mode == "custom":
            show_progress(console, chunk)
        else:
            state = chunk
    summary = _summary(client, state, analyst)
    client.close()  # the analytics sessions write their caches
    summary["tracking_uri"] = uri
    summary["planted_faults"] = {name: len(ids) for name, ids in corpus.faults.items()}
    return summary
