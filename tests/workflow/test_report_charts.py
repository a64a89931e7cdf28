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


def test_errors_over_time_steps_cover_the_empty_hours_between_buckets():
    """The census lists only hours with traces; the chart's steps show the hours between as
    zero instead of stretching the hour before them."""
    from agent.report import timeline_steps
    from insights.analytics.census_model import TimeBucket

    hour = 3_600_000
    buckets = [TimeBucket(start_ms=10 * hour, traces=5, errors=1, error_rate=0.2),
               TimeBucket(start_ms=13 * hour, traces=2, errors=0, error_rate=0.0)]
    edges, series = timeline_steps(buckets, "hour")
    assert edges == [h * hour for h in range(10, 15)]
    assert series == {"traces": [5, 0, 0, 2], "errors": [1, 0, 0, 0]}
    day = 24 * hour
    edges, series = timeline_steps([TimeBucket(start_ms=3 * day, traces=1, errors=1,
                                               error_rate=1.0)], "day")
    assert edges == [3 * day, 4 * day] and series == {"traces": [1], "errors": [1]}
