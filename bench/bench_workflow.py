"""Time an unattended offline analysis (the whole analyze-experiment workflow) at scale.

Builds (or reuses) a corpus with bench/build_corpus.py, then runs the workflow with
``WorkflowContext(auto_answer=True)`` in a fresh subprocess per size, with an empty trace cache,
and prints the wall time of each node and in total. Run on demand, never in CI:

    python bench/bench_workflow.py --sizes 10000,100000 --workdir /tmp/insights-bench
Targets (issue 5): 10k traces < 30 s, 100k traces < 2 min on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
CHILD = r"""
import json, sys, time, resource
t0 = time.time()
from insights import InsightsClient
from agent.offline import OfflineAnalyst
from workflows.analyze_experiment import WorkflowContext, build_graph
uri, exp, report_dir = sys.argv[1:4]
ctx = WorkflowContext(client=InsightsClient(uri), analyst=OfflineAnalyst(), auto_answer=True,
                      report_dir=report_dir)
nodes, last, start = {}, time.time(), time.time()
for chunk in build_graph().stream({"experiment_id": exp}, context=ctx, stream_mode="updates"):
    now = time.time()
    name = next(iter(chunk))
    nodes[name] = nodes.get(name, 0) + now - last
    last = now
print(json.dumps({"import_s": start - t0, "workflow_s": time.time() - start, "nodes": nodes,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def corpus(workdir: Path, n: int) -> tuple[str, str]:
    db = workdir / f"corpus-{n}.db"
    uri = f"sqlite:///{db}"
    sys.path.insert(0, str(HERE))
    from build_corpus import build, ensure_experiment

    if not db.exists():
        started = time.time()
        exp = build(uri, n)
        print(f"built {n} traces in {time.time() - started:.0f} s")
    else:
        exp = ensure_experiment(uri, "bench")
    return uri, str(exp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--workdir", default="/tmp/insights-bench")
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    table = Table(title="Unattended offline analysis (insights-agent run --yes)")
    for col in ("traces", "workflow s", "import s", "peak MB", "slowest nodes"):
        table.add_column(col)
    for n in [int(s) for s in args.sizes.split(",")]:
        uri, exp = corpus(workdir, n)
        env = {**os.environ, "INSIGHTS_CACHE_DIR": str(workdir / f"cache-{n}-{time.time_ns()}")}
        out = subprocess.run([sys.executable, "-c", CHILD, uri, exp, str(workdir)], env=env,
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        slow = sorted(r["nodes"].items(), key=lambda kv: -kv[1])[:4]
        table.add_row(f"{n:,}", f"{r['workflow_s']:.1f}", f"{r['import_s']:.1f}", f"{r['peak_mb']:.0f}",
                      ", ".join(f"{k} {v:.1f}s" for k, v in slow))
    Console().print(table)


if __name__ == "__main__":
    main()
