"""Where the DuckDB trace caches live, and which tracking URI a session talks to.

Location: ``$INSIGHTS_CACHE_DIR`` or the user cache dir (``platformdirs``) /
``trace-cache/<sha256(tracking_uri|experiment_id)[:20]>.duckdb``. The cache itself is managed
by ``insights.analytics.session.AnalyticsSession``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir() -> Path:
    """Directory holding the DuckDB cache files."""
    env = os.environ.get("INSIGHTS_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("insights-agent")) / "trace-cache"


def cache_path(tracking_uri: str, experiment_id: str) -> Path:
    """The cache file of one experiment of one tracking store."""
    key = hashlib.sha256(f"{tracking_uri}|{experiment_id}".encode()).hexdigest()
    return cache_dir() / f"{key[:20]}.duckdb"


def resolve_uri(tracking_uri: str | None) -> str:
    """The given URI, else MLflow's current one (``MLFLOW_TRACKING_URI`` and friends)."""
    if tracking_uri:
        return tracking_uri
    import mlflow

    return mlflow.get_tracking_uri()
