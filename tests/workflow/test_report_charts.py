"""The report's latency histogram draws its sample from the whole experiment: query results
stop at a row limit, and the first rows an engine returns are the ones it stored first."""

from __future__ import annotations

from agent.report import latency_sample
from insights import InsightsClient
from tests.workflow.conftest import Store


def test_latency_sample_is_not_the_first_rows_stored_and_is_repeatable(small_store: Store):
    client = InsightsClient(small_store.uri)
    exp = small_store.experiment_id
    stored = client.execute_sql(
        exp, "SELECT execution_time_ms FROM traces WHERE execution_time_ms IS NOT NULL",
        max_rows=None).rows
    sample = latency_sample(client, exp, n=40)
    assert len(sample) == 40 and sample == latency_sample(client, exp, n=40)
    first_rows = [r[0] for r in stored[:40]]
    assert sorted(sample) != sorted(first_rows)
