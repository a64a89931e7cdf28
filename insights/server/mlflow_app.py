"""``mlflow server --app-name insights``: MLflow's own server with the Insights API and UI beside it.

MLflow 3.x runs ``mlflow.server.fastapi_app`` (FastAPI, with MLflow's Flask app mounted at ``/``)
under uvicorn; an ``mlflow.app`` entry point that names a function is started as a uvicorn
factory. ``create_app`` builds MLflow's FastAPI app, adds the Insights router and the UI at
``/insights/``, and moves MLflow's catch-all Flask mount back to the end so both are reachable.

Inside the server the SDK talks to the same server over loopback HTTP (the port it is listening
on), so artifacts go through MLflow's artifact proxy exactly as for any other client. Set
``MLFLOW_INSIGHTS_TRACKING_URI`` to point it elsewhere.

MLflow's own Host validation and security headers wrap the whole app, Insights routes included;
MLflow's basic-auth app does not (``--app-name`` picks one app): see the README on auth.
"""

from __future__ import annotations

import os
import threading

from fastapi import FastAPI, Request
from starlette.routing import Mount

from insights.client import InsightsClient
from insights.server.api import build_router, mount_ui, openapi_document  # noqa: F401

TRACKING_URI_ENV = "MLFLOW_INSIGHTS_TRACKING_URI"
_clients: dict[str, InsightsClient] = {}
_lock = threading.Lock()


def _tracking_uri(request: Request) -> str:
    configured = os.environ.get(TRACKING_URI_ENV)
    if configured:
        return configured
    server = request.scope.get("server") or ("127.0.0.1", 5000)
    return f"http://127.0.0.1:{server[1]}"


def _client_for(request: Request) -> InsightsClient:
    uri = _tracking_uri(request)
    with _lock:
        if uri not in _clients:
            _clients[uri] = InsightsClient(uri)
        return _clients[uri]


def _ui_url_for(request: Request) -> str:
    configured = os.environ.get("MLFLOW_INSIGHTS_UI_URL")
    return (configured or str(request.base_url)).rstrip("/")


def create_app() -> FastAPI:
    """The ``mlflow.app`` factory: MLflow's server app plus the Insights API and UI."""
    from mlflow.server.fastapi_app import create_fastapi_app

    app = create_fastapi_app()
    app.include_router(build_router(_client_for, _ui_url_for))
    mount_ui(app)
    routes = app.router.routes
    catch_all = [r for r in routes if isinstance(r, Mount) and r.path in ("", "/")]
    for route in catch_all:
        routes.remove(route)
        routes.append(route)
    return app
