"""The generalisation scorer matches issues to planted faults by their cited traces only."""

from __future__ import annotations

from examples.apps.truth import GroundTruth, score


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
