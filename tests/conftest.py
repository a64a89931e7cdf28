"""Shared fixtures: a real SQLite tracking store per test and a real `mlflow server` on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import requests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _no_leaked_active_experiment():
    """Tests that log traces through MLflow's fluent API set an active experiment; clear it so
    no later test sees one it did not set."""
    yield
    mlflow.tracking.fluent._active_experiment_id = None


@pytest.fixture()
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite tracking store; artifacts go to a folder beside it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture()
def experiment_id(tracking_uri: str, tmp_path: Path) -> str:
    return mlflow.MlflowClient(tracking_uri).create_experiment(
        "test-exp", artifact_location=(tmp_path / "artifacts").as_uri()
    )


class MlflowServer:
    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "2",
        ]
        log = open(self.root / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.root / "server.log").read_text()[-3000:])
            try:
                if requests.get(f"{self.uri}/health", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError("mlflow server did not start in 90 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> MlflowServer:
    """One real `mlflow server` on 127.0.0.1 for the whole session."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def server_uri(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_tracking_uri(mlflow_server.uri)
    yield mlflow_server.uri
    mlflow.set_tracking_uri(None)


@pytest.fixture()
def server_experiment_id(server_uri: str) -> str:
    import uuid

    return mlflow.MlflowClient(server_uri).create_experiment(f"exp-{uuid.uuid4().hex[:8]}")


@pytest.fixture(params=["sqlite", "server"])
def store(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(tracking_uri, experiment_id) on a local SQLite store and on a real loopback server."""
    if request.param == "sqlite":
        uri = request.getfixturevalue("tracking_uri")
        return uri, request.getfixturevalue("experiment_id")
    uri = request.getfixturevalue("server_uri")
    return uri, request.getfixturevalue("server_experiment_id")
