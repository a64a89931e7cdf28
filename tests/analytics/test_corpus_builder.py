"""The benchmark corpus builder writes rows MLflow itself reads back, and the census agrees."""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import build_corpus  # noqa: E402

from analytics.conftest import census_of, sql_of  # noqa: E402


def test_builder_roundtrip(fresh_store):
    uri, _ = fresh_store
    exp = str(build_corpus.build(uri, 200, experiment="bench", seed=1))
    client = mlflow.MlflowClient(uri)
    traces = client.search_traces(locations=[exp], max_results=200)
    assert len(traces) == 200
    full = client.get_trace(traces[0].info.trace_id)
    assert full.data.spans[0].name == "agent" and full.info.token_usage["total_tokens"] > 0
    errors_by_mlflow = len(client.search_traces(locations=[exp], max_results=200,
                                                filter_string="trace.status = 'ERROR'"))
    census = census_of(uri, exp)
    assert census["total_traces"] == 200
    assert census["error_traces"] == errors_by_mlflow
    n_spans = sum(len(client.get_trace(t.info.trace_id).data.spans) for t in traces[:20])
    ids = ", ".join(f"'{t.info.trace_id}'" for t in traces[:20])
    r = sql_of(uri, exp, f"SELECT sum(size(spans)) FROM traces WHERE trace_id IN ({ids})")
    assert r.rows == [[n_spans]]
