"""Fixtures for the REST API and UI tests: a real SQLite store with real traces and a seeded
analysis, and a real uvicorn server on 127.0.0.1 serving ``insights.server.create_app``."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import mlflow
import pytest
import requests

from insights.client import InsightsClient
from helpers.fixtures import copy_template, rewrite_paths

API = "/api/3.0/mlflow/traces/insights/agentic/"


@dataclass
class Seeded:
    uri: str
    experiment_id: str
    run_id: str
    hypothesis_id: str
    issue_ids: list[str]
    trace_ids: list[str]
    client: InsightsClient = field(repr=False)


def make_span_traces(experiment_id: str, n: int) -> list[str]:
    """Real traces with a root span and a TOOL child (every third one fails)."""
    ids = []
    mlflow.set_experiment(experiment_id=experiment_id)
    for i in range(n):
        try:
            with mlflow.start_span("agent") as root:
                root.set_inputs({"question": f"q{i}"})
                with mlflow.start_span("lookup", span_type="TOOL") as tool:
                    tool.set_inputs({"key": i})
                    if i % 3 == 2:
                        raise TimeoutError(f"lookup {i} timed out")
                    tool.set_outputs({"value": "x" * 50})
                root.set_outputs({"answer": f"a{i}"})
        except TimeoutError:
            pass
        ids.append(root.trace_id)
    mlflow.flush_trace_async_logging()
    return ids


def seed(uri: str, experiment_id: str) -> Seeded:
    mlflow.set_tracking_uri(uri)
    traces = make_span_traces(experiment_id, 6)
    client = InsightsClient(uri)
    run_id = client.create_analysis(experiment_id, run_name="error-sweep",
                                    name="Production error analysis",
                                    description="Why do lookups time out?")
    hid = client.create_hypothesis(
        run_id, "Lookup timeouts cause failed answers", testing_plan="Compare failing traces",
        evidence=[{"trace_id": traces[2], "rationale": "lookup timed out", "supports": True},
                  {"trace_id": traces[0], "rationale": "fast and fine", "supports": False}])
    specs = [("Lookup timeouts", "HIGH", traces[2:6]), ("Empty answers", "LOW", traces[:1]),
             ("Slow first token", "CRITICAL", traces[:2])]
    issue_ids = [client.create_issue(run_id, title, severity=sev,
                                     evidence=[{"trace_id": t, "rationale": f"{title} in {t[:8]}"}
                                               for t in ts])
                 for title, sev, ts in specs]
    return Seeded(uri, experiment_id, run_id, hid, issue_ids, traces, client)


@pytest.fixture(scope="session")
def pristine_seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """The seeded store built once per session (database + artifacts under one folder).
    Never hand it to a test: ``seeded`` gives each test its own copy."""
    root = tmp_path_factory.mktemp("seeded")
    uri = copy_template(root / "mlflow.db")
    exp = mlflow.MlflowClient(uri).create_experiment(
        "insights-ui", artifact_location=(root / "artifacts").as_uri())
    previous = mlflow.get_tracking_uri()
    try:
        return seed(uri, exp)
    finally:
        mlflow.set_tracking_uri(previous)


def _forget_artifact_repos() -> bool:
    """MLflow caches each run's artifact repository by run id for the life of the process.
    Copies of one store share run ids, so a copy must not reuse the repository of another
    copy; forgetting the cache makes the process behave as a fresh one would. False when
    this MLflow has no such cache attribute (then each test seeds its own store instead)."""
    from mlflow.tracking._tracking_service import utils

    cache = getattr(utils, "_artifact_repos_cache", None)
    if not hasattr(cache, "clear"):
        return False
    cache.clear()
    return True


@pytest.fixture()
def seeded(tracking_uri, tmp_path, request: pytest.FixtureRequest) -> Seeded:
    """A fresh store per test: a private copy of the session's seeded store at
    ``tracking_uri`` (same ids, paths rewritten to ``tmp_path``), so the traces are not
    logged again for every test."""
    if not _forget_artifact_repos():
        exp = mlflow.MlflowClient(tracking_uri).create_experiment(
            "insights-ui", artifact_location=(tmp_path / "artifacts").as_uri())
        return seed(tracking_uri, exp)
    pristine_seeded: Seeded = request.getfixturevalue("pristine_seeded")
    _forget_artifact_repos()  # building the pristine store may have cached its runs' repos
    src = Path(pristine_seeded.uri.removeprefix("sqlite:///")).parent
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    shutil.copyfile(src / "mlflow.db", db)
    if (src / "artifacts").exists():
        shutil.copytree(src / "artifacts", tmp_path / "artifacts")
    rewrite_paths(db, str(src), str(tmp_path))
    mlflow.set_tracking_uri(tracking_uri)
    return replace(pristine_seeded, uri=tracking_uri, client=InsightsClient(tracking_uri))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UvicornThread:
    """``create_app`` under a real uvicorn server in a background thread on 127.0.0.1."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if requests.get(f"{self.url}/health", timeout=1).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for one test module (browser tests only: they import browser_kit)."""
    from tests.server.browser_kit import CHROMIUM, FLAGS, sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture()
def ui(seeded, browser):
    """A page of the UI on the issues list, served over the seeded store; no page errors."""
    from insights.server import create_app

    with UvicornThread(create_app(seeded.uri, mlflow_ui_url="http://127.0.0.1:5000")) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        base = f"{server.url}/insights/"
        page.goto(f"{base}#/issues?exp={seeded.experiment_id}")
        page.wait_for_selector("body[data-ready=true]")
        yield page, base, seeded
        page.close()
        assert errors == []
