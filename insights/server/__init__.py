"""The Insights REST API and web UI.

``create_app(tracking_uri)`` builds a FastAPI app serving the Agentic API under
``/api/3.0/mlflow/traces/insights/agentic/`` and the UI under ``/insights/``; ``serve()`` runs it
with uvicorn. ``insights.server.mlflow_app:create_app`` is the ``mlflow server --app-name
insights`` plugin that serves MLflow and Insights together.
"""

from __future__ import annotations

from insights.server.api import API_PREFIX, UI_PREFIX, create_app, serve

__all__ = ["API_PREFIX", "UI_PREFIX", "create_app", "serve"]
