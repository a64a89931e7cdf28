"""Cold census of a 3,000-trace SQLite store against the naive ``search_traces`` census.

Run on demand (never in CI):

    python bench/bench_census_cold.py [--traces 3000] [--workdir /tmp/insights-bench] [--repeat 3]

Builds the store once with bench/build_corpus.py, then in this one process:
  - the naive census: every trace through ``MlflowClient.search_traces`` (with spans),
    aggregated in Python (``bench_analytics.naive``);
  - a cold census: a fresh, empty cache folder each time, a new ``AnalyticsSession``, the
    census, then ``close()`` (which writes the cache). The first cold run also pays for
    importing the analytics modules (duckdb, sqlglot, ...), reported on its own line.
mlflow is imported before either is timed: both need it. Prints every timing (best of
``--repeat``) and the ratio naive / cold, in wall-clock and in CPU seconds (the latter
barely moves when other processes compete for the cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def build_store(workdir: Path, traces: int) -> tuple[str, str]:
    db = workdir / f"cold-{traces}.db"
    uri = f"sqlite:///{db}"
    if not db.exists():
        print(f"building a {traces:,}-trace store at {db} ...", flush=True)
        subprocess.run([sys.executable, str(HERE / "build_corpus.py"), str(traces), "--uri", uri,
                        "--experiment", "cold"], check=True)
    import mlflow

    exp = mlflow.MlflowClient(uri).get_experiment_by_name("cold").experiment_id
    return uri, exp


def cold_census(uri: str, exp: str) -> tuple[float, float, int, float]:
    """(seconds to the census in hand, seconds including close, traces counted, CPU seconds
    including close)."""
    os.environ["INSIGHTS_CACHE_DIR"] = tempfile.mkdtemp(prefix="cold-cache-")
    t, cpu = time.perf_counter(), time.process_time()
    from insights.analytics import AnalyticsSession, compute_census

    session = AnalyticsSession(uri, exp)
    census = compute_census(session)
    ready = time.perf_counter() - t
    session.close()
    return ready, time.perf_counter() - t, census.total_traces, time.process_time() - cpu


def naive_census(uri: str, exp: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the naive census."""
    from bench_analytics import naive

    cpu = time.process_time()
    seconds = naive(uri, exp, 10**9)["seconds"]
    return seconds, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=3000)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "insights-bench"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    import mlflow  # noqa: F401  (both sides need it)

    print(f"import mlflow (shared)           {time.perf_counter() - t:7.2f} s")
    uri, exp = build_store(workdir, args.traces)
    first = cold_census(uri, exp)
    colds = [first] + [cold_census(uri, exp) for _ in range(args.repeat - 1)]
    naives = [naive_census(uri, exp) for _ in range(args.repeat)]
    assert all(c[2] == args.traces for c in colds), "the census did not count every trace"
    best_ready = min(c[0] for c in colds)
    best_closed = min(c[1] for c in colds)
    best_naive = min(n[0] for n in naives)
    cpu_cold, cpu_naive = min(c[3] for c in colds[1:] or colds), min(n[1] for n in naives)
    print(f"traces                           {args.traces:7,}")
    print(f"naive search_traces census       {best_naive:7.2f} s  (best of {args.repeat})")
    print(f"cold census, first (+ imports)   {first[1]:7.2f} s  (census in hand {first[0]:.2f} s)")
    print(f"cold census, census in hand      {best_ready:7.2f} s  (best of {args.repeat})")
    print(f"cold census, incl. close         {best_closed:7.2f} s  (best of {args.repeat})")
    print(f"ratio naive / cold (incl. close) {best_naive / best_closed:7.1f}x")
    print(f"ratio naive / first cold         {best_naive / first[1]:7.1f}x  (imports included)")
    print(f"CPU seconds naive / cold         {cpu_naive:.2f} / {cpu_cold:.2f} = "
          f"{cpu_naive / cpu_cold:.1f}x  (less sensitive to a busy machine)")


if __name__ == "__main__":
    main()
