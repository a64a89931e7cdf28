"""The analyst's vocabulary on real stores: every outcome and feature is a numpy mask for the
screen and a Trace SQL predicate for the plan, and the two must select the same traces, or a
hypothesis would be tested on something else than what was mined. Checked on two example
applications of different shapes (routed sub-agents with retrieval and sessions; a
tool-calling data agent)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.features import cut_feature, features, numeric_fields, value_features, window_feature
from agent.frame import TraceFrame
from agent.mining import screen, tautology
from agent.outcomes import outcomes, slow_limit
from agent.toolkit import TraceToolkit
from insights import InsightsClient

APPS = ("research_assistant", "data_agent")


def _toolkit(store) -> TraceToolkit:
    return TraceToolkit(InsightsClient(store.uri), store.truth.experiment_id)


def _sql_ids(toolkit: TraceToolkit, predicate: str) -> set[str]:
    rows = toolkit.frame_sql(f"SELECT trace_id FROM traces WHERE {predicate}").rows
    return {r[0] for r in rows}


@pytest.mark.parametrize("app", APPS)
def test_every_outcome_and_feature_predicate_selects_its_mask(small_app_store, app) -> None:
    toolkit = _toolkit(small_app_store(app))
    frame = toolkit.frame("TRUE")
    outs = outcomes(frame)
    values, fields = value_features(frame, toolkit.frame_sql, "TRUE")
    feats = features(frame, values)
    for o in outs:
        feats += [f for f in (cut_feature(n, o) for n in numeric_fields(frame, fields)) if f]
        if (w := window_feature(frame, o)) is not None:
            feats.append(w)
    kinds = {o.kind for o in outs} | {f.kind for f in feats}
    # the vocabulary reaches inside spans on both shapes of application
    assert {"span_error", "span_slow"} <= kinds and {"span", "value"} & kinds, kinds
    checked = set()
    for item in outs + feats:
        if item.sql in checked:
            continue
        checked.add(item.sql)
        expected = set(frame.trace_id[item.mask])
        assert _sql_ids(toolkit, item.sql) == expected, (item.key, item.sql)
        scope = getattr(item, "scope", None)
        if scope is not None:
            assert _sql_ids(toolkit, item.scope_sql) == set(frame.trace_id[scope]), item.key


@pytest.mark.parametrize("app", APPS)
def test_a_failure_passed_up_the_span_tree_belongs_to_the_span_that_raised_it(
        small_app_store, app) -> None:
    toolkit = _toolkit(small_app_store(app))
    frame = toolkit.frame("TRUE")
    spans = frame.spans
    failed = spans.error_type != None  # noqa: E711
    passed_up = failed & (spans.origin_error == None)  # noqa: E711
    assert failed.any()
    # a span counted as passing an error up has a child that failed with the same type
    rows = toolkit.frame_sql(
        "SELECT trace_id, p.span_id, p.name, c.name FROM traces LATERAL VIEW explode(spans) x AS p "
        "LATERAL VIEW explode(spans) y AS c WHERE c.parent_id = p.span_id AND "
        "p.status_code = 'ERROR' AND c.status_code = 'ERROR'").rows
    parents = {(r[0], r[2]) for r in rows}
    for t, name in zip(spans.trace[passed_up], spans.name[passed_up]):
        assert (frame.trace_id[t], name) in parents
    # and no span outcome is made of passed-up failures alone
    for o in outcomes(frame):
        if o.kind == "span_error" and "span" in o.detail:
            mine = (spans.name == o.detail["span"]) & (spans.origin_error == o.detail["error_type"])
            assert mine.any(), o.key


def test_span_outcomes_never_take_their_own_span_for_a_cause(small_app_store) -> None:
    frame = _toolkit(small_app_store("data_agent")).frame("TRUE")
    outs = [o for o in outcomes(frame) if o.detail.get("span")]
    feats = features(frame)
    assert outs
    for o in outs:
        for f in feats:
            if f.detail.get("span") == o.detail["span"] and f.kind in ("span", "tool", "span_error"):
                assert tautology(o, f), (o.key, f.key)


def test_slow_limit_cuts_between_two_duration_modes_however_common_the_slow_one() -> None:
    rng = np.random.default_rng(1)
    fast = rng.lognormal(np.log(450), 0.25, 600)
    slow = rng.lognormal(np.log(4500), 0.2, 400)       # 40% of calls, 10x slower
    limit = slow_limit(np.concatenate([fast, slow]))
    assert fast.max() < limit < slow.min()


def test_slow_limit_of_one_mode_leaves_ordinary_variation_alone() -> None:
    rng = np.random.default_rng(2)
    calls = rng.lognormal(np.log(1000), 0.5, 2000)
    limit = slow_limit(calls)
    assert limit >= 2.5 * np.median(calls)
    assert (calls > limit).mean() < 0.01


def test_screen_on_an_unseen_half_shape_finds_span_level_candidates(small_app_store) -> None:
    toolkit = _toolkit(small_app_store("research_assistant"))
    frame = toolkit.frame("TRUE")
    cands = screen(frame, toolkit.frame_sql, "TRUE")
    assert cands and all(c.p_value < 0.01 or c.feature.kind in ("segment", "window") for c in cands)
    # titles name a span (quoted) and a condition, not only a trace-level proxy
    from agent.titles import issue_title

    assert any("'" in issue_title(c, frame) and c.outcome.kind.startswith("span") for c in cands)


def test_frame_of_an_empty_half_has_empty_span_rows(small_app_store) -> None:
    toolkit = _toolkit(small_app_store("data_agent"))
    frame = TraceFrame.load(toolkit.frame_sql, "FALSE")
    assert len(frame) == 0 and len(frame.spans) == 0 and outcomes(frame) == []
