"""Small generated stores of the example applications, for the analyst's vocabulary tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from helpers import fixtures

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `examples` is not an installed package
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def small_app_store(tmp_path_factory: pytest.TempPathFactory):
    """A private copy of each example app's 300-trace store (cached pristine by seed)."""
    from examples.apps import truth as truth_mod

    made = {}

    def get(app: str):
        if app not in made:
            pristine = truth_mod.cached_store(app, 300, 5, fixtures.migrated_template())
            made[app] = pristine.copy_to(tmp_path_factory.mktemp(app) / "store")
        return made[app]

    return get
