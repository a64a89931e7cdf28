"""The generalisation harness: are the generated apps honest, and does the analyst find their
planted faults without anything keyed to names?

`test_*_ground_truth_is_visible` check the generators (they must pass). The
`test_*_offline_run_finds_planted_faults` tests (marker `generalisation`) score an unattended
offline analysis against the ground truth: >= 5 of 6 faults found with evidence precision
>= 0.8 and coverage >= 0.7, and the confounded segment not raised. Select them with
`-m generalisation`; deselect with `-m "not generalisation"`.
"""

from __future__ import annotations

import math
import random

import pytest
from mlflow import MlflowClient
from scipy.stats import fisher_exact

from helpers.insights_helpers import all_traces
from examples.apps.truth import FAMILIES, GroundTruth, analyse, manifests, score

from .conftest import SEEDS

MIN_FAULT_TRACES = 30
SAMPLE = 5


def _check_ground_truth(store) -> None:
    truth: GroundTruth = store.truth
    assert len(truth.faults) == 6, truth.summary()
    assert set(f.family for f in truth.faults.values()) <= set(FAMILIES)
    client = MlflowClient(store.uri)
    infos = _trace_infos(client, truth.experiment_id)
    assert len(infos) == truth.n_traces
    rng = random.Random(f"check:{truth.app}:{truth.seed}")
    all_ids = sorted(infos)
    for fault in truth.faults.values():
        assert len(fault.trace_ids) >= MIN_FAULT_TRACES, truth.summary()
        assert fault.trace_ids <= set(infos), fault.name
        for tid in rng.sample(sorted(fault.trace_ids), SAMPLE):
            assert manifests(client.get_trace(tid), fault), (fault.name, tid)
        others = [t for t in all_ids if t not in fault.trace_ids]
        for tid in rng.sample(others, SAMPLE):
            assert not manifests(client.get_trace(tid), fault), (fault.name, "outside", tid)
    _check_confounder(truth, infos)


def _check_confounder(truth: GroundTruth, infos: dict) -> None:
    """The confounded segment's error rate is high overall (its traffic sits in the window) but
    matches everyone else's inside the window and outside it."""
    key, value = truth.confounder
    lo, hi = truth.window_ms
    groups: dict[tuple[bool, bool], list[bool]] = {}
    for info in infos.values():
        inside = lo <= info.request_time <= hi
        seg = info.tags.get(key) == value
        groups.setdefault((seg, inside), []).append(str(info.state).endswith("ERROR"))

    def rate(seg: bool, inside: bool | None = None) -> tuple[float, int]:
        xs = [e for (s, i), v in groups.items() for e in v
              if s == seg and (inside is None or i == inside)]
        return (sum(xs) / len(xs) if xs else 0.0), len(xs)

    (seg_all, n_seg), (rest_all, n_rest) = rate(True), rate(False)
    assert n_seg >= 40, f"confounded segment has only {n_seg} traces"
    # overall, the segment looks much worse (a Fisher test separates it) ...
    seg_err, rest_err = round(seg_all * n_seg), round(rest_all * n_rest)
    _, p_value = fisher_exact([[seg_err, n_seg - seg_err], [rest_err, n_rest - rest_err]],
                              alternative="greater")
    assert seg_all >= rest_all + 0.15 and p_value < 1e-4, (seg_all, rest_all, p_value)
    # ... but inside the window and outside it, it is like everyone else
    for inside in (True, False):
        (p1, n1), (p2, n2) = rate(True, inside), rate(False, inside)
        assert n1 >= 10 and n2 >= 10, (inside, n1, n2)
        p = (p1 * n1 + p2 * n2) / (n1 + n2)
        tolerance = 3 * math.sqrt(max(p * (1 - p), 0.01) * (1 / n1 + 1 / n2)) + 0.02
        assert abs(p1 - p2) <= tolerance, (
            f"{key}={value} {'inside' if inside else 'outside'} the window: "
            f"{p1:.2f} (n={n1}) vs {p2:.2f} (n={n2})")


def _trace_infos(client: MlflowClient, experiment_id: str) -> dict:
    return {t.info.trace_id: t.info for t in all_traces(client, experiment_id)}


def _check_offline_run(store, tmp_path) -> None:
    copy = store.copy_to(tmp_path / "store")
    issues = analyse(copy.uri, copy.truth.experiment_id, str(tmp_path / "reports"))
    result = score(issues, copy.truth)
    table = result.table()
    print(table)
    assert result.found >= 5 and not result.confounder_raised, "\n" + table


@pytest.mark.parametrize("seed", SEEDS)
def test_research_assistant_ground_truth_is_visible(app_store, seed):
    _check_ground_truth(app_store("research_assistant", seed))


@pytest.mark.parametrize("seed", SEEDS)
def test_data_agent_ground_truth_is_visible(app_store, seed):
    _check_ground_truth(app_store("data_agent", seed))


@pytest.mark.generalisation
@pytest.mark.parametrize("seed", SEEDS)
def test_research_assistant_offline_run_finds_planted_faults(app_store, seed, tmp_path):
    _check_offline_run(app_store("research_assistant", seed), tmp_path)


@pytest.mark.generalisation
@pytest.mark.parametrize("seed", SEEDS)
def test_data_agent_offline_run_finds_planted_faults(app_store, seed, tmp_path):
    _check_offline_run(app_store("data_agent", seed), tmp_path)


def test_score_matches_issues_to_faults_by_evidence():
    from types import SimpleNamespace

    from examples.apps.truth import Fault

    a, b = {f"a{i}" for i in range(100)}, {f"b{i}" for i in range(50)}
    truth = GroundTruth("app", 1, "1", {"fa": Fault("fa", "outage", "", a),
                                        "fb": Fault("fb", "tool_loop", "", b)},
                        ("region", "kestrel47"), (0, 1), 0, 1, 150)

    def issue(i, title, ids, description=""):
        return SimpleNamespace(issue_id=str(i), title=title, description=description,
                               trace_ids=list(ids))

    pure_small = issue(1, "pure but small", sorted(a)[:20])
    found = issue(2, "found", sorted(a)[:80] + ["x1", "x2"])
    b_noisy = issue(3, "noisy", sorted(b) + [f"x{i}" for i in range(30)])
    alarm = issue(4, "errors are high for region=Kestrel47", ["x9"])
    result = score([pure_small, found, b_noisy, alarm], truth)
    fa, fb = result.matches
    assert (fa.issue_title, fa.found, round(fa.coverage, 2)) == ("found", True, 0.8)
    assert (fb.issue_title, fb.found, round(fb.precision, 3)) == ("noisy", False, 0.625)
    assert result.found == 1 and result.confounder_raised
    assert result.false_alarms == ["errors are high for region=Kestrel47"]
    assert "| fa | outage | 100 | found |" in result.table()
