"""Faster fresh SQLite stores: migrate one template database per session, copy it per test.

Creating and migrating an MLflow SQLite database takes seconds; copying a migrated one takes
milliseconds. Import ``tracking_uri`` and ``sqlite_template`` into a test module to override
conftest's ``tracking_uri`` with the same contract (fresh store under tmp_path, env set).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # creates and migrates the tables
    return path


@pytest.fixture()
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path) -> str:
    """A fresh SQLite tracking store (a copy of the migrated template) under tmp_path."""
    db = tmp_path / "mlflow.db"
    shutil.copyfile(sqlite_template, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)
