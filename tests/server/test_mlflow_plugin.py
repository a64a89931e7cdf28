"""``mlflow server --app-name insights`` serves MLflow and the Insights API + UI together.

The ``mlflow.app`` entry point is registered for the subprocess through a throwaway
``*.dist-info`` on PYTHONPATH, so this test does not depend on how the package was installed.
"""

from __future__ import annotations

import os

import pytest
import requests
from mlflow import MlflowClient

from insights.client import InsightsClient
from insights.server.api import API_PREFIX
from tests.conftest import MlflowServer

pytestmark = pytest.mark.server


@pytest.fixture()
def plugin_server(tmp_path):
    dist = tmp_path / "plugin" / "insights_plugin_probe-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: insights-plugin-probe\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(
        "[mlflow.app]\ninsights = insights.server.mlflow_app:create_app\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path / "plugin"), os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    server = MlflowServer(tmp_path / "server", extra_args=("--app-name", "insights"),
                          env=env)
    try:
        server.start()  # a copy of the migrated template as backend store; stopped on failure
        yield server.uri
    finally:
        server.stop()


def test_mlflow_server_app_serves_mlflow_and_insights(plugin_server):
    url = plugin_server
    exp = MlflowClient(url).create_experiment("plugin-exp")  # MLflow's own API still works
    sdk = InsightsClient(url)
    run_id = sdk.create_analysis(exp, run_name="via-plugin")
    sdk.create_issue(run_id, "Seen through mlflow server", severity="HIGH")

    res = requests.post(f"{url}{API_PREFIX}issues/list", json={"experiment_id": exp}, timeout=30)
    assert res.status_code == 200, res.text
    assert [i["title"] for i in res.json()["issues"]] == ["Seen through mlflow server"]
    res = requests.post(f"{url}{API_PREFIX}analyses/list", json={"experiment_id": exp}, timeout=30)
    assert res.json()["analyses"][0]["run_name"] == "via-plugin"
    bad = requests.post(f"{url}{API_PREFIX}issues/list", json={}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert requests.get(f"{url}/insights/", timeout=30).status_code == 200
    assert requests.get(f"{url}{API_PREFIX}openapi.json", timeout=30).json()["paths"]
    assert "<html" in requests.get(f"{url}/", timeout=30).text.lower()  # MLflow UI at /
