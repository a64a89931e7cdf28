"""Exclusions in a testing plan may only set aside traces explained by a VALIDATED finding
(agent/plans.py: "repeat after setting aside traces already explained by a validated
hypothesis"). Here the excluded pattern is itself rejected, and must not wipe out a real one.

This once made unattended runs miss the demo's failing-assessment fault (multi-city trips rated
unsatisfied): the miner attached the long-request pattern as an exclusion to the
'multi-city' word hypothesis, every multi-city request is long, so the cohort was empty after
the exclusion and the hypothesis was REJECTED as "explained by a stronger finding".
"""

from __future__ import annotations

from agent.frame import FAILING_VALUES, sql_list
from agent.plans import Plan, run_plan
from agent.toolkit import TraceToolkit
from tests.workflow.conftest import Store, offline_context
from workflows.analyze_experiment import build_graph

SCOPE = "exists(assessments, a -> a.name = 'user_satisfaction')"
FAILED = (f"exists(assessments, a -> a.name = 'user_satisfaction' AND lower(a.value) IN "
          f"({sql_list(FAILING_VALUES)}))")
# A pattern covering (almost) every request: it explains nothing, and it is REJECTED.
LONG = "length(request) > 30"
MULTI = "lower(request) LIKE '%multi-city%'"


def _plan(feature: str, exclude: list[str]) -> Plan:
    return Plan(cohort=f"({feature}) AND {SCOPE}", control=f"NOT ({feature}) AND {SCOPE}",
                outcome=FAILED, split="all", exclude=exclude, outcome_label="failed satisfaction")


def test_exclusion_of_a_rejected_pattern_does_not_reject_a_real_finding(fresh_store: Store) -> None:
    client = fresh_store.client()
    exp = fresh_store.experiment_id
    toolkit = TraceToolkit(client, exp)
    # Preconditions from the data: the broad pattern does not explain failed satisfaction,
    # multi-city requests do, and every multi-city request falls in the broad pattern.
    assert run_plan(_plan(LONG, []), toolkit.stats).verdict == "REJECTED"
    assert run_plan(_plan(MULTI, []), toolkit.stats).verdict == "VALIDATED"
    assert toolkit.count(f"({MULTI}) AND NOT ({LONG})") == 0

    run_id = client.create_analysis(exp, run_name="Exclusion Check", name="Exclusion check",
                                    description="d", metadata={"phase": "review_hypotheses",
                                                               "focus": "general analysis"})
    for key, feature, exclude in (("long", LONG, []), ("multi", MULTI, [LONG])):
        plan = _plan(feature, exclude)
        client.create_hypothesis(run_id, f"{key} requests fail user_satisfaction more often",
                                 plan.prose(), rationale="r",
                                 metadata={"key": f"test:{key}", "plan": plan.model_dump()})
    build_graph().invoke({"run_id": run_id}, context=offline_context(fresh_store, auto_answer=True))
    by_key = {h.metadata["key"]: h for h in client.list_hypotheses(run_id)}
    assert by_key["test:long"].status.value == "REJECTED"
    multi = by_key["test:multi"]
    assert multi.status.value == "VALIDATED", multi.metadata.get("verdict_reason")


BROAD = "length(request) > 120"   # holds every multi-city request, and much else


def test_a_pattern_inside_a_validated_one_is_judged_against_the_rest_of_it(fresh_store: Store) -> None:
    toolkit = TraceToolkit(fresh_store.client(), fresh_store.experiment_id)
    assert toolkit.count(f"({MULTI}) AND NOT ({BROAD})") == 0, "premise: multi-city lies inside"

    def plan(cohort: str) -> Plan:
        p = _plan(cohort, [])
        p.within = [BROAD]
        return p

    specific = run_plan(plan(MULTI), toolkit.stats)
    assert specific.verdict == "VALIDATED", specific.reason
    assert specific.adjusted is not None
    rest = toolkit.count(f"({BROAD}) AND NOT ({MULTI}) AND {SCOPE}")
    assert specific.adjusted["control"]["n"] == rest      # compared with the broad pattern's rest
    # Half of the multi-city requests (by trace id) beat the other traces, but not the other half.
    half = f"({MULTI}) AND substring(trace_id, length(trace_id), 1) < '8'"
    p = _plan(half, [])
    assert run_plan(p, toolkit.stats).verdict == "VALIDATED", "premise: it passes on its own"
    p.within = [MULTI]
    not_specific = run_plan(p, toolkit.stats)
    assert not_specific.verdict == "REJECTED"
    assert not_specific.reason.startswith("no worse than the broader finding"), not_specific.reason
