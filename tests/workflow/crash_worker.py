"""Run the analyze-experiment workflow unattended and die by SIGKILL mid-testing.

Used by test_resume.py in a subprocess:  python crash_worker.py TRACKING_URI EXPERIMENT_ID DIR
With CRASH_AFTER_TESTS=N the process kills itself (SIGKILL: no cleanup, no flush) right after
the analyst has computed the verdict of hypothesis N+1, before the workflow records it, so N
hypotheses are settled in MLflow, one lost its work mid-way and the rest are untouched.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.offline import OfflineAnalyst  # noqa: E402
from insights import InsightsClient  # noqa: E402
from workflows.analyze_experiment import WorkflowContext, build_graph  # noqa: E402


class CrashingAnalyst(OfflineAnalyst):
    def __init__(self, crash_after: int):
        self.crash_after = crash_after
        self.tested = 0

    def test_hypothesis(self, hypothesis, toolkit):
        verdict = super().test_hypothesis(hypothesis, toolkit)
        self.tested += 1
        if self.crash_after >= 0 and self.tested > self.crash_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return verdict


def main() -> None:
    uri, experiment_id, folder = sys.argv[1:4]
    extra = json.loads(os.environ.get("EXTRA_HYPOTHESES", "[]"))
    analyst = CrashingAnalyst(int(os.environ.get("CRASH_AFTER_TESTS", "-1")))
    ctx = WorkflowContext(client=InsightsClient(uri), analyst=analyst, auto_answer=True,
                          report_dir=folder,
                          answers={"confirm_description": {"add_hypotheses": extra}})
    state = build_graph().invoke({"experiment_id": experiment_id}, context=ctx)
    print(json.dumps({"run_id": state.get("run_id"), "phase": state.get("phase")}))


if __name__ == "__main__":
    main()
