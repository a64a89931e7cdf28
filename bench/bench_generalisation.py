"""Score the offline analyst on the generalisation apps (examples/apps/): generate each
(app, seed) store (cached in the test fixture cache), analyse a copy unattended, print the
found/missed table and the run time. Run on demand, never in CI:

    python bench/bench_generalisation.py --seeds 1,2,3 --traces 1500 [--apps data_agent]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.apps import truth  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--traces", type=int, default=1500)
    parser.add_argument("--apps", default=",".join(truth.APPS))
    args = parser.parse_args(argv)
    totals: list[str] = []
    for app in args.apps.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            started = time.monotonic()
            store = truth.cached_store(app, args.traces, seed)
            gen_s = time.monotonic() - started
            with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
                copy = store.copy_to(Path(tmp) / "store")
                issues, run_s = truth.timed_analyse(copy.uri, copy.truth.experiment_id,
                                                    str(Path(tmp) / "reports"))
            result = truth.score(issues, copy.truth)
            print(copy.truth.summary())
            print(result.table())
            print("\nissues:\n" + result.details())
            print(f"\nstore {gen_s:.0f} s (generated in {copy.truth.generation_seconds:.0f} s "
                  f"when first built), analysis {run_s:.0f} s\n", flush=True)
            totals.append(f"{app} seed {seed}: {result.found}/{len(result.matches)} found, "
                          f"confounder {'RAISED' if result.confounder_raised else 'ok'}, "
                          f"{len(result.false_alarms)} false alarms, {run_s:.0f} s")
    print("\n".join(totals))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
