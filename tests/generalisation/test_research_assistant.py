"""The research assistant example app: its planted faults are visible in the stored traces,
and an unattended offline analysis finds them (see harness.py)."""

from __future__ import annotations

import pytest

from .conftest import SEEDS
from .harness import check_ground_truth, check_offline_run


@pytest.mark.parametrize("seed", SEEDS)
def test_research_assistant_ground_truth_is_visible(app_store, seed):
    check_ground_truth(app_store("research_assistant", seed))


@pytest.mark.generalisation
@pytest.mark.parametrize("seed", SEEDS)
def test_research_assistant_offline_run_finds_planted_faults(app_store, seed, tmp_path):
    check_offline_run(app_store("research_assistant", seed), tmp_path)
