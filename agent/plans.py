"""Executable testing plans: the steps a hypothesis is judged by, kept beside its prose plan.

A plan compares a cohort with a control on one outcome, each a SQL predicate over the
``traces`` table, and decides by a rule fixed before the data is looked at. Because it lives in
the hypothesis's metadata, re-running it on newer traces tells whether an issue is still there.

Plans proposed from the data are judged on the other half of it: traces are split by the last
hex digit of their id, hypotheses are mined on one half (``explore``) and tested on the other
(``holdout``), so a pattern found by searching many candidates must show up again on traces
the search never saw.
"""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel, Field

EXPLORE_SQL = "substring(trace_id, length(trace_id), 1) IN ('0','2','4','6','8','a','c','e')"
HOLDOUT_SQL = f"NOT ({EXPLORE_SQL})"


class DecisionRule(BaseModel):
    """VALIDATE when all three hold; otherwise REJECT."""

    max_p_value: float = 0.01
    min_rate_ratio: float = 2.0
    min_cohort_events: int = 5


class Plan(BaseModel):
    cohort: str = Field(description="SQL predicate selecting the traces the hypothesis blames")
    control: str = Field(description="SQL predicate selecting comparable traces without it")
    outcome: str = Field(description="SQL predicate for the problem, e.g. state = 'ERROR'")
    cohort_label: str = "cohort"
    control_label: str = "control"
    outcome_label: str = "the problem"
    split: str = Field("holdout", description="holdout (test on unseen half) or all")
    exclude: list[str] = Field(default_factory=list,
                               description="predicates of stronger explanations to set aside")
    within: list[str] = Field(default_factory=list,
                              description="predicates of broader findings the cohort lies inside")
    rule: DecisionRule = Field(default_factory=DecisionRule)

    def steps(self) -> list[str]:
        """The plan as numbered prose steps, for people and for the testing_plan field."""
        where = " on the held-out half of traces" if self.split == "holdout" else ""
        rule = self.rule
        steps = [
            f"Step 1: select the cohort{where}: {self.cohort_label} (`{self.cohort}`).",
            f"Step 2: select the control{where}: {self.control_label} (`{self.control}`).",
            f"Step 3: count traces with {self.outcome_label} (`{self.outcome}`) in each; compare "
            "the rates with a Fisher exact test and a 95% confidence interval on the difference.",
        ]
        if self.within:
            steps.append(f"Step {len(steps) + 1}: the cohort lies inside a broader pattern; if "
                         "that pattern is validated, compare the cohort with the rest of its "
                         "traces (" + "; ".join(f"`{w}`" for w in self.within) + ") instead: "
                         "only a cohort still worse there is a problem of its own.")
        if self.exclude:
            steps.append(f"Step {len(steps) + 1}: repeat after setting aside traces already "
                         "explained by a validated hypothesis ("
                         + "; ".join(f"`{e}`" for e in self.exclude) + ").")
        steps.append(
            f"Step {len(steps) + 1}: VALIDATE if p < {rule.max_p_value}, the cohort rate is at "
            f"least {rule.min_rate_ratio}x the control rate and the cohort has at least "
            f"{rule.min_cohort_events} such traces; otherwise REJECT. Supporting evidence: cohort "
            "traces with the outcome; refuting evidence: control traces with it and cohort "
            "traces without it."
        )
        return steps

    def prose(self) -> str:
        return "\n".join(self.steps())


class PlanResult(BaseModel):
    verdict: str
    reason: str
    stats: dict[str, Any]
    adjusted: dict[str, Any] | None = None


StatsFn = Callable[[str, str, str], dict[str, Any]]


def run_plan(plan: Plan, stats_fn: StatsFn, progress: Callable[[str], None] = lambda _: None) -> PlanResult:
    """Run the plan's comparison(s) with ``stats_fn(cohort, control, outcome)`` and decide."""
    scope = f" AND {HOLDOUT_SQL}" if plan.split == "holdout" else ""
    cohort, control = f"({plan.cohort}){scope}", f"({plan.control}){scope}"
    progress(f"cohort filter: {cohort}")
    progress(f"control filter: {control}")
    progress(f"outcome: {plan.outcome}")
    stats = stats_fn(cohort, control, plan.outcome)
    verdict, reason = decide(plan.rule, stats)
    adjusted = None
    for broader in plan.within if verdict == "VALIDATED" else []:
        progress(f"comparing with the rest of a broader validated finding: {broader}")
        adjusted = stats_fn(cohort, f"({broader}) AND {control}", plan.outcome)
        verdict, why = decide(plan.rule, adjusted)
        reason = (f"{reason}; against the rest of the broader finding: {why}"
                  if verdict == "VALIDATED" else f"no worse than the broader finding it lies in: {why}")
    if verdict == "VALIDATED" and plan.exclude:
        rest = " AND ".join(f"NOT ({e})" for e in plan.exclude)
        progress(f"setting aside traces explained by stronger findings: {rest}")
        adjusted = stats_fn(f"{cohort} AND {rest}", f"{control} AND {rest}", plan.outcome)
        verdict, why = decide(plan.rule, adjusted)
        reason = (f"{reason}; after setting aside traces already explained: {why}"
                  if verdict == "VALIDATED" else f"explained by a stronger finding: {why}")
    return PlanResult(verdict=verdict, reason=reason, stats=stats, adjusted=adjusted)


def decide(rule: DecisionRule, stats: dict[str, Any]) -> tuple[str, str]:
    c, k = stats["cohort"], stats["control"]
    if not c["n"] or not k["n"]:
        return "REJECTED", (f"nothing to compare: {c['n']} cohort and {k['n']} control traces")
    c_rate, k_rate = c["rate"] or 0.0, k["rate"] or 0.0
    p_value = stats.get("p_value")
    p_value = 1.0 if p_value is None else p_value
    ratio = _ratio(c_rate, k_rate)
    facts = (f"{c['events']}/{c['n']} ({c_rate:.1%}) vs {k['events']}/{k['n']} "
             f"({k_rate:.1%}), ratio {ratio:.1f}x, p={p_value:.2g}")
    ok = (p_value < rule.max_p_value and ratio >= rule.min_rate_ratio
          and c["events"] >= rule.min_cohort_events)
    return ("VALIDATED" if ok else "REJECTED"), facts


def _ratio(a: float, b: float) -> float:
    if b == 0:
        return float("inf") if a > 0 else 0.0
    return a / b
