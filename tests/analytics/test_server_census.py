"""The census on a tracking server: server aggregates plus a sample, against the exact census."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from insights import InsightsClient
from analytics.conftest import census_of
from insights.cli import app
from insights.errors import InvalidInputError

# span durations: MLflow aggregates whole milliseconds, the exact census keeps fractions
MS_FIELDS = ("p50_ms", "p95_ms", "max_ms")


def _without(items: list[dict], fields: tuple[str, ...]) -> list[dict]:
    return [{k: v for k, v in item.items() if k not in fields} for item in items]


def test_sample_covering_every_trace_gives_the_exact_census(server_corpus):
    uri, exp, _ = server_corpus
    steps: list[str] = []
    fast = census_of(uri, exp, progress=steps.append)
    exact = census_of(uri, exp, exact=True)
    assert fast["method"] == "server aggregates + sample" and exact["method"] == "exact"
    assert any("server" in s for s in steps)
    assert fast["sample"]["traces"] == 20 and fast["sample"]["scale"] == 1.0
    assert fast["sample"]["sections"] == []
    for key in ("total_traces", "error_traces", "error_rate", "time_range", "latency_ms",
                "errors", "responses", "tokens", "cost", "assessments", "time_buckets"):
        assert fast[key] == exact[key], key
    assert _without(fast["spans"], MS_FIELDS) == _without(exact["spans"], MS_FIELDS)
    assert _without(fast["tools"], MS_FIELDS) == _without(exact["tools"], MS_FIELDS)
    for f, e in zip(fast["spans"], exact["spans"]):
        assert abs(f["max_ms"] - e["max_ms"]) < 1


def test_small_sample_keeps_server_counts_exact_and_scales_the_rest(server_corpus):
    uri, exp, ids = server_corpus
    c = census_of(uri, exp, sample_traces=6)
    json.dumps(c)
    n, sample = c["sample"]["traces"], c["sample"]
    assert 6 <= n < 20 and sample["of"] == 20 and sample["scale"] == round(20 / n, 4)
    assert "errors" in sample["sections"] and "responses" in sample["sections"]
    # from the server: exact whatever the sample
    assert (c["total_traces"], c["error_traces"], c["error_rate"]) == (20, 2, 0.1)
    spans = {s["name"]: s for s in c["spans"]}
    assert (spans["search"]["count"], spans["search"]["error_count"]) == (20, 4)
    assert spans["search"]["traces_with_error"] <= 4
    assert (spans["llm"]["count"], spans["llm"]["error_count"]) == (20, 2)
    assert [(t["name"], t["calls"], t["failures"]) for t in c["tools"]] == [("search", 20, 4)]
    (corr,) = c["assessments"]
    assert (corr["count"], corr["values"], corr["failing"]) == (8, {"true": 6, "false": 2}, 2)
    assert c["tokens"]["total_tokens"] == 20 * 15 and c["tokens"]["traces_with_tokens"] == 20
    assert sum(b["traces"] for b in c["time_buckets"]["buckets"]) == 20
    assert sum(b["errors"] for b in c["time_buckets"]["buckets"]) == 2
    # from the sample: scaled counts, and evidence ids that are real traces of the experiment
    scale = 20 / n
    for e in c["errors"]:
        assert e["count"] == round(e["sample_count"] * scale)
    empty = c["responses"]["empty_responses"]
    assert empty["count"] == round(empty["sample_count"] * scale)
    cited = {t for s in c["spans"] for t in s["sample_trace_ids"]}
    assert cited and cited <= set(ids)


def test_unknown_experiment_on_server(server_uri):
    with pytest.raises(InvalidInputError):
        census_of(server_uri, "987654321")


def test_filtered_census_on_server_is_exact(server_corpus):
    uri, exp, _ = server_corpus
    c = census_of(uri, exp, filter_string="trace.status = 'ERROR'")
    assert c["method"] == "exact" and c["total_traces"] == 2


@pytest.mark.parametrize("flags, method", [((), "server aggregates + sample"),
                                           (("--exact",), "exact")])
def test_cli_census_on_server(server_corpus, flags, method):
    uri, exp, _ = server_corpus
    run_id = InsightsClient(uri).create_analysis(experiment_id=exp, run_name="census")
    runner = CliRunner()
    made = runner.invoke(app, ["--tracking-uri", uri, "create-baseline-census", "--run-id", run_id,
                               *flags, "--output", "json"])
    assert made.exit_code == 0, made.stderr
    census = json.loads(made.stdout)
    assert census["method"] == method and census["total_traces"] == 20
    read = runner.invoke(app, ["--tracking-uri", uri, "get-baseline-census", "--run-id", run_id,
                               "--output", "json"])
    assert read.exit_code == 0 and json.loads(read.stdout) == census
    human = runner.invoke(app, ["--tracking-uri", uri, "get-baseline-census", "--run-id", run_id])
    assert human.exit_code == 0 and "Baseline census" in human.stdout


def test_cli_census_unknown_run(server_uri):
    r = CliRunner().invoke(app, ["--tracking-uri", server_uri, "create-baseline-census",
                                 "--run-id", "0123456789abcdef0123456789abcdef"])
    assert r.exit_code != 0 and "0123456789abcdef0123456789abcdef" in r.stderr


def test_sample_spread_over_days(ten_day_corpus):
    uri, exp, ids = ten_day_corpus
    c = census_of(uri, exp, sample_traces=10)
    assert c["method"] == "server aggregates + sample"
    assert c["sample"]["traces"] == 10 and c["sample"]["scale"] == 3.0
    assert (c["total_traces"], c["error_traces"]) == (30, 10)
    buckets = c["time_buckets"]
    assert buckets["granularity"] == "day" and len(buckets["buckets"]) == 10
    assert all((b["traces"], b["errors"]) == (3, 1) for b in buckets["buckets"])
    # one sampled trace per day: each day's bucket cites a trace of that day
    for b in buckets["buckets"]:
        (tid,) = b["sample_trace_ids"]
        assert tid in ids
    spans = {s["name"]: s for s in c["spans"]}
    assert (spans["lookup"]["span_type"], spans["lookup"]["count"]) == ("TOOL", 30)
    assert abs(spans["lookup"]["p50_ms"] - 4) <= 1


def test_empty_experiment_on_server(server_uri):
    import mlflow

    exp = mlflow.MlflowClient(server_uri).create_experiment("empty-census")
    c = census_of(server_uri, exp)
    assert c["total_traces"] == 0 and c["spans"] == [] and c["sample"]["traces"] == 0


def test_answer_at_the_row_limit_falls_back_to_the_exact_path(server_corpus, monkeypatch):
    from insights.analytics import server_census

    uri, exp, _ = server_corpus
    monkeypatch.setattr(server_census, "METRIC_ROWS", 3)  # span counts have more rows
    steps: list[str] = []
    c = census_of(uri, exp, progress=steps.append)
    assert c["method"] == "exact" and c["total_traces"] == 20
    assert any("loading every trace" in s for s in steps)


def test_quotas_are_proportional_and_sum_to_the_sample():
    from insights.analytics.server_census import _quotas

    assert _quotas([1] * 99 + [9901], 100) == [0] * 99 + [100]
    assert sum(_quotas([5, 5, 5], 10)) == 10 and sorted(_quotas([5, 5, 5], 10)) == [3, 3, 4]
    assert _quotas([10, 30], 40) == [10, 30]
