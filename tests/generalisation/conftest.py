"""Fixtures for the generalisation harness: two example apps with seeded planted faults.

Each (app, seed, size) store is generated once and kept in the test fixture cache (keyed by
the generators' code, MLflow's version and the day; see examples/apps/truth.py), so only the
first session pays for SDK logging. Analyses run on a private copy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from helpers import fixtures

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `examples` is not an installed package
    sys.path.insert(0, str(ROOT))

from examples.apps import truth as truth_mod  # noqa: E402

# 1,500 traces keep every planted fault at >= ~40 traces; generating one store takes ~3 min
# on a 2-core machine (once per day and code version: it is cached). The default suite scores
# one seed per application; GENERALISATION_SEEDS=1,2,3 (or bench/bench_generalisation.py)
# scores more.
N_TRACES = int(os.environ.get("GENERALISATION_TRACES", "1500"))
SEEDS = [int(s) for s in os.environ.get("GENERALISATION_SEEDS", "1").split(",") if s]
APPS = list(truth_mod.APPS)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "generalisation: runs the offline analyst on a generated example app and "
        "scores the issues against planted faults (slow; expected to fail until the analyst "
        "generalises)")


@pytest.fixture(scope="session", autouse=True)
def _isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory):
    """Keep the analytics cache and the CLI checkpointer out of the real home folder."""
    home = tmp_path_factory.mktemp("gen-user-dirs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INSIGHTS_CACHE_DIR", str(home / "cache"))
        mp.setenv("XDG_DATA_HOME", str(home / "data"))
        mp.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        yield home


_STORES: dict[tuple[str, int], truth_mod.Store] = {}


@pytest.fixture(scope="session")
def app_store():
    """`app_store(app, seed)`: the pristine generated store (do not write to it)."""
    def get(app: str, seed: int) -> truth_mod.Store:
        if (app, seed) not in _STORES:
            _STORES[(app, seed)] = truth_mod.cached_store(app, N_TRACES, seed,
                                                           fixtures.migrated_template())
        return _STORES[(app, seed)]
    return get
