"""Assessments on their own terms: each value shape has one failing rule, read from the data
per assessment name, and Python, Trace SQL and the census agree on it."""

from __future__ import annotations

import duckdb
import mlflow
import pytest
from mlflow.entities import AssessmentSource

from analytics.conftest import census_of, log_agent_traces, sql_of
from insights.analytics.assessments import (SCALES_SQL, failing_predicate,
                                            failing_sql_by_name, infer_scale, is_failing,
                                            read_scales)

HUMAN = AssessmentSource("HUMAN", "tester")


# (values logged under one name, the failing ones, the scale kind)
SHAPES = [
    (["true", "false", "True", " FALSE "], ["false", " FALSE "], "bool"),
    (["yes", "No", '"no"', '"\\"no\\""', "y", "n"], ["No", '"no"', '"\\"no\\""', "n"], "yes/no"),
    (["PASS", "fail", "Failed", "passed"], ["fail", "Failed"], "pass/fail"),
    (["0.1", "0.49", "0.5", "0.93", "1"], ["0.1", "0.49"], "numeric"),
    (["1", "2", "3", "4", "5"], ["1", "2"], "numeric"),
    (["3", "7", "9", "10"], ["3"], "numeric"),
    (["0", "1"], ["0"], "numeric"),
    (["-0.8", "0.1", "0.9"], ["-0.8"], "numeric"),
    (["120", "3400", "980"], [], "numeric"),
    (["correct", "incorrect", "partially correct"], ["incorrect"], "categorical"),
    (["safe", "unsafe", "UNSAFE"], ["unsafe", "UNSAFE"], "categorical"),
    (["formal", "casual", "neutral"], [], "categorical"),
]


@pytest.mark.parametrize("values, failing, kind", SHAPES)
def test_each_value_shape_has_one_failing_rule(values, failing, kind):
    scale = infer_scale("x", values)
    assert scale.kind == kind and scale.rule
    assert [v for v in values if scale.is_failing(v)] == failing
    assert scale.has_failing == bool(failing) or kind in ("bool", "yes/no", "pass/fail")
    con = duckdb.connect()
    in_sql = [v for v in values if con.execute(
        f"SELECT {scale.failing_sql('v')} FROM (SELECT $1::VARCHAR AS v)", [v]).fetchone()[0]]
    assert in_sql == failing


def test_numeric_thresholds_are_read_from_the_data_per_name():
    scales = read_scales([("relevance", "0.2"), ("relevance", "0.7"), ("rating", "4", 3),
                          ("rating", "2", 1), ("rating", "5", 9), ("latency", "1500")])
    assert scales["relevance"].threshold == 0.5
    assert (scales["rating"].low, scales["rating"].high, scales["rating"].threshold) == (1, 5, 3)
    assert scales["rating"].is_failing("2") and not scales["rating"].is_failing("3")
    assert scales["latency"].threshold is None and not scales["latency"].has_failing
    # the same value fails on one scale and passes on another
    assert not scales["relevance"].is_failing("0.6") and scales["rating"].is_failing("0.6")


def test_name_blind_failing_predicate_keeps_working():
    con = duckdb.connect()
    for value, failing in [("false", True), (' "No" ', True), ('"\\"fail\\""', True),
                           ('"fail"', True), ("0", True), ("true", False), ("0.2", False)]:
        assert is_failing(value) is failing, value
        got = con.execute(f"SELECT {failing_predicate('v')} FROM (SELECT $1::VARCHAR AS v)",
                          [value]).fetchone()[0]
        assert got is failing, value


def _log(ids, name, values, rationale=None):
    for i, (tid, v) in enumerate(zip(ids, values)):
        mlflow.log_feedback(trace_id=tid, name=name, value=v, source=HUMAN,
                            rationale=rationale(i) if rationale else None)


def test_trace_sql_and_census_agree_with_the_scales(fresh_store):
    uri, exp = fresh_store
    ids = log_agent_traces(exp, 0, 20)
    _log(ids, "correct", [i % 3 != 0 for i in range(20)],
         lambda i: "wrong city" if i % 2 == 0 else "x" * 300)
    _log(ids, "rating", [1 + i % 5 for i in range(20)])
    _log(ids[:12], "verdict", ['"no"', "Yes", "NO", "yes"] * 3)
    _log(ids[:9], "tone", ["formal", "casual", "neutral"] * 3)
    _log(ids[:10], "relevance", [i / 10 for i in range(10)])

    scales = read_scales(sql_of(uri, exp, SCALES_SQL))
    assert {n: s.kind for n, s in scales.items()} == {
        "correct": "bool", "rating": "numeric", "verdict": "yes/no", "tone": "categorical",
        "relevance": "numeric"}
    rows = sql_of(uri, exp, "SELECT trace_id, a.name, a.value, "
                            f"{failing_sql_by_name(scales, 'a')} FROM traces "
                            "LATERAL VIEW explode(assessments) y AS a").rows
    assert len(rows) == 20 + 20 + 12 + 9 + 10
    assert all(bool(f) == scales[n].is_failing(v) for _, n, v, f in rows)
    failing_by_name = {}
    for tid, n, _, f in rows:
        if f:
            failing_by_name.setdefault(n, set()).add(tid)

    c = {a["name"]: a for a in census_of(uri, exp)["assessments"]}
    expected = {"correct": 7, "rating": 8, "verdict": 6, "tone": 0, "relevance": 5}
    for name, n in expected.items():
        a = c[name]
        assert a["failing"] == a["failing_traces"] == n == len(failing_by_name.get(name, ()))
        assert a["failing_rate"] == round(n / a["count"], 4)
        assert a["scale"]["kind"] == scales[name].kind
    assert c["rating"]["scale"]["threshold"] == 3 and "below 3" in c["rating"]["scale"]["rule"]
    assert c["relevance"]["scale"]["threshold"] == 0.5
    assert c["tone"]["values"] == {"formal": 3, "casual": 3, "neutral": 3}
    assert c["tone"]["failing_rationales"] == [] and "distribution" in c["tone"]["scale"]["rule"]
    # rationales of failing values: most frequent first, cut to 200 characters, with samples
    top = c["correct"]["failing_rationales"]
    assert [(r["rationale"][:10], r["count"]) for r in top] == [("wrong city", 4),
                                                                ("x" * 10, 3)]
    assert len(top[1]["rationale"]) == 200
    assert set(top[0]["sample_trace_ids"]) <= failing_by_name["correct"]
