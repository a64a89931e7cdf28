"""``cohort-stats`` whose cohort matches no trace prints its table instead of crashing.

Found by ``bench/bench_cli.py``: with an empty cohort the p-value is None and the table title
formatted it as a number (TypeError, traceback, exit 1).
"""

from __future__ import annotations

from typer.testing import CliRunner

from insights.cli import app
from helpers.insights_helpers import make_traces


def test_empty_cohort_prints_a_table_with_no_p_value(tracking_uri, experiment_id):
    make_traces(tracking_uri, experiment_id, 3)
    result = CliRunner().invoke(app, ["cohort-stats", "--experiment-id", experiment_id,
                                      "--cohort", "1 = 0", "--outcome", "state = 'ERROR'"])
    assert result.exit_code == 0, result.output
    assert "p=n/a" in result.output
    assert "control" in result.output
