"""Cohort statistics against scipy and a published worked example."""

from __future__ import annotations

import pytest
from scipy.stats import fisher_exact

from analytics.conftest import cohort_of
from insights.analytics.cohorts import compare, wilson
from insights.errors import InvalidInputError


def test_newcombe_published_example():
    # Newcombe (1998), Stat Med 17:873-890, example (a): 56/70 vs 48/80 -> 0.0524 .. 0.3339
    r = compare(70, 56, 80, 48)
    assert r["difference"] == pytest.approx(0.2)
    assert r["ci95"] == pytest.approx([0.0524, 0.3339], abs=5e-5)
    assert r["relative_risk"] == pytest.approx((56 / 70) / (48 / 80))
    assert r["p_value"] == pytest.approx(fisher_exact([[56, 14], [48, 32]])[1])


def test_wilson_known_value():
    # Wilson interval for 81/263 (Newcombe 1998 table I): 0.2553 .. 0.3662
    assert wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)


def test_cohort_stats_on_traces(sqlite_corpus):
    uri, exp, ids = sqlite_corpus
    # long requests: i % 3 == 0 (7 traces: 0,3,...,18) ; errors: i in {3, 13}
    r = cohort_of(uri, exp, cohort="length(request) > 100", control="length(request) <= 100",
                     outcome="state = 'ERROR'")
    assert (r["cohort"]["n"], r["cohort"]["events"]) == (7, 1)
    assert (r["control"]["n"], r["control"]["events"]) == (13, 1)
    assert r["cohort"]["sample_event_trace_ids"] == [ids[3]]
    assert r["control"]["sample_event_trace_ids"] == [ids[13]]
    assert len(r["cohort"]["sample_nonevent_trace_ids"]) == 5
    assert r["difference"] == pytest.approx(1 / 7 - 1 / 13)
    assert r["p_value"] == pytest.approx(fisher_exact([[1, 6], [1, 12]])[1])
    assert r["test"] == "fisher_exact" and r["overlap"] == 0
    lo, hi = r["ci95"]
    assert lo < r["difference"] < hi


def test_cohort_stats_span_predicates(sqlite_corpus):
    uri, exp, _ = sqlite_corpus
    r = cohort_of(uri, exp,
                     cohort="exists(spans, s -> s.name = 'search' AND s.status_code = 'ERROR')",
                     control="NOT exists(spans, s -> s.name = 'search' AND s.status_code = 'ERROR')",
                     outcome="exists(assessments, a -> a.value = 'false')", samples=2)
    # failed search: 0,5,10,15 ; failing feedback: 0,4
    assert (r["cohort"]["n"], r["cohort"]["events"]) == (4, 1)
    assert (r["control"]["n"], r["control"]["events"]) == (16, 1)
    assert len(r["control"]["sample_nonevent_trace_ids"]) == 2


def test_cohort_bad_predicate(sqlite_corpus):
    uri, exp, _ = sqlite_corpus
    with pytest.raises(InvalidInputError):
        cohort_of(uri, exp, "nope_column > 1", "true", "state = 'ERROR'")
    with pytest.raises(InvalidInputError):
        cohort_of(uri, exp, "1=1; DROP TABLE traces", "true", "true")


SHARED = [  # (cohort, control): the analyst's shapes, NULLs, ORs, nesting, nothing shared
    ("(exists(spans, s -> s.status_code = 'ERROR')) AND (length(request) > 50)",
     "NOT (exists(spans, s -> s.status_code = 'ERROR')) AND (length(request) > 50)"),
    ("length(request) > 100 OR state = 'ERROR'", "NOT (length(request) > 100 OR state = 'ERROR')"),
    ("CASE WHEN length(request) > 100 THEN NULL ELSE state = 'OK' END",
     "NOT (CASE WHEN length(request) > 100 THEN NULL ELSE state = 'OK' END)"),
    ("((state = 'OK')) AND (length(request) > 10 AND length(request) < 200)",
     "NOT ((state = 'OK')) AND length(request) > 10 AND (length(request) < 200)"),
    ("length(request) > 100", "length(request) <= 100"),
]


@pytest.mark.parametrize(("cohort", "control"), SHARED)
def test_conjuncts_shared_by_cohort_and_control_count_as_the_predicates_do(
        sqlite_corpus, cohort, control):
    """Evaluating each shared conjunct once (shared_conjuncts) gives the counts the predicates
    give written out, NULLs included (a NULL side is in neither group)."""
    from insights.analytics import AnalyticsSession
    from insights.analytics.cohorts import cohort_stats
    from insights.analytics.sql import execute_sql

    uri, exp, _ = sqlite_corpus
    outcome = "state = 'ERROR'"
    with AnalyticsSession(uri, exp) as session:
        r = cohort_stats(session, cohort, control, outcome, samples=100)
        written = execute_sql(session, (
            f"SELECT count_if(({cohort})), count_if(({cohort}) AND ({outcome})), "
            f"count_if(({control})), count_if(({control}) AND ({outcome})), "
            f"count_if(({cohort}) AND ({control})) FROM traces")).rows[0]
        ids = {row[0] for row in execute_sql(
            session, f"SELECT trace_id FROM traces WHERE ({cohort}) AND ({outcome})").rows}
    got = (r["cohort"]["n"], r["cohort"]["events"], r["control"]["n"], r["control"]["events"],
           r["overlap"])
    assert got == tuple(written)
    assert set(r["cohort"]["sample_event_trace_ids"]) == ids
    assert r["cohort"]["n"] + r["control"]["n"] > 0


def test_shared_conjuncts_evaluate_a_finding_once():
    from insights.analytics.cohorts import shared_conjuncts

    finding = "exists(spans, s -> s.status_code = 'ERROR')"
    atoms, cohort, control = shared_conjuncts(f"({finding}) AND (x > 1)",
                                              f"NOT ({finding}) AND (x > 1)")
    assert len(atoms) == 2 and control == f"NOT {cohort.split(' AND ')[0]} AND " \
        f"{cohort.split(' AND ')[1]}"
