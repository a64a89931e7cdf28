"""Fast fresh SQLite stores: one migrated template database, copied per test.

Creating and migrating an MLflow SQLite database takes seconds; copying a migrated one takes
milliseconds. The template is built once per installed MLflow and kept in a cache folder
across pytest runs (``fixture_cache_dir()``), so most sessions never run a migration at all.

tests/conftest.py uses these for its ``tracking_uri``; modules that still import
``tracking_uri`` and ``sqlite_template`` from here get the same fixture, same contract (a fresh
store under tmp_path, ``MLFLOW_TRACKING_URI`` set).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

_TEMPLATE: Path | None = None


def fixture_cache_dir() -> Path:
    """Where built test fixtures are kept between runs (``INSIGHTS_TEST_CACHE_DIR`` overrides).

    Entries are keyed by what they were built from and published by an atomic rename, so
    concurrent pytest processes (other checkouts included) can share the folder."""
    root = os.environ.get("INSIGHTS_TEST_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), f"insights-agent-test-cache-{os.getuid()}")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def build_lock(entry: Path) -> Iterator[None]:
    """Hold an exclusive lock named after a cache entry while checking for it and building it,
    so parallel workers (pytest-xdist, other checkouts) build each entry once and the others
    wait for it instead of building their own copy."""
    import fcntl

    with open(entry.with_name(f".lock-{entry.name}"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cache_enabled() -> bool:
    """``INSIGHTS_TEST_CACHE=0`` rebuilds everything in the session's temp folders instead."""
    return os.environ.get("INSIGHTS_TEST_CACHE", "1") != "0"


def _mlflow_schema_key() -> str:
    """Changes whenever the installed MLflow (or its set of migrations) changes."""
    versions = Path(mlflow.__file__).parent / "store" / "db_migrations" / "versions"
    names = sorted(os.listdir(versions)) if versions.is_dir() else []
    text = "\n".join([mlflow.__version__, str(Path(mlflow.__file__).resolve()), *names])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _is_migrated(db: Path) -> bool:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return bool(con.execute("SELECT version_num FROM alembic_version").fetchone())
        finally:
            con.close()
    except sqlite3.Error:
        return False


def _migrate(db: Path) -> None:
    mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()  # creates and migrates the tables


def migrated_template() -> Path:
    """An empty, fully migrated MLflow SQLite database. Copy it; never write to it."""
    global _TEMPLATE
    if _TEMPLATE is not None and _TEMPLATE.exists():
        return _TEMPLATE
    if not cache_enabled():
        folder = Path(tempfile.mkdtemp(prefix="insights-template-"))
        _migrate(folder / "mlflow.db")
        _TEMPLATE = folder / "mlflow.db"
        return _TEMPLATE
    final = fixture_cache_dir() / f"mlflow-template-{_mlflow_schema_key()}.db"
    with build_lock(final):
        _build_template(final)
    _TEMPLATE = final
    return final


def _build_template(final: Path) -> None:
    if not _is_migrated(final):
        partial = final.with_name(f".{final.name}.{uuid.uuid4().hex}")
        try:
            _migrate(partial)
            os.replace(partial, final)  # atomic: readers see no file or a whole one
        finally:
            partial.unlink(missing_ok=True)


def copy_template(db: Path) -> str:
    """A fresh migrated store at ``db``; returns its tracking URI."""
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated_template(), db)
    return f"sqlite:///{db}"


def rewrite_paths(db: Path, old: str, new: str) -> None:
    """Point every stored path (experiment/run artifact locations, trace tags...) at the copy."""
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for _, column, ctype, *_ in con.execute(f'PRAGMA table_info("{table}")'):
                if ctype.upper().startswith(("VARCHAR", "TEXT", "CHAR")) or not ctype:
                    con.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                                f'WHERE "{column}" LIKE ?', (old, new, f"%{old}%"))
        con.commit()
    finally:
        con.close()


@pytest.fixture(scope="session")
def sqlite_template() -> Path:
    return migrated_template()


@pytest.fixture()
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path) -> str:
    """A fresh SQLite tracking store (a copy of the migrated template) under tmp_path;
    artifacts go to a folder beside it."""
    uri = copy_template(tmp_path / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)
