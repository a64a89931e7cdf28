"""How long the two CLIs take per call, against the cost of ``import mlflow`` in the same run.

    python bench/bench_cli.py [--traces 1000] [--repeat 5]

An agent that keeps its memory through ``mlflow-insights`` calls it dozens of times, so each
call's start-up counts. The script builds a small SQLite store in a temp folder
(``build_corpus.py``: ``--traces`` traces), sets it up through the CLI itself (an analysis,
its baseline census, an issue, one warm-up SQL query so the trace cache is warm), then times
every command in a fresh interpreter, ``--repeat`` rounds, commands interleaved within a round
so a change in machine load hits them all alike. Each command runs the way its console
script does (``from insights.cli import main; main()``), with this checkout first on
``sys.path``.

Targets (issue 10): ``mlflow-insights --help`` and ``insights-agent --help`` at most 0.2x of
``python -c "import mlflow"``; every other command at most that import plus 0.5 s. Prints a
table of medians and ratios with pass/fail (on wall time, as the targets are stated), and the
median CPU time of each call with its ratio, which a loaded machine distorts far less; exits 1
if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
HELP_RATIO = 0.2
COMMAND_SLACK_S = 0.5

ENTRY = {
    "mlflow-insights": "import sys; from insights.cli import main; sys.exit(main())",
    "insights-agent": "import sys; from agent.cli import main; sys.exit(main())",
}


def argv(program: str, *args: str) -> list[str]:
    """A fresh interpreter running ``program`` exactly as its console script would."""
    return [sys.executable, "-c", ENTRY[program], *args]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(cmd: list[str], env: dict[str, str], cwd: str) -> tuple[float, float, str]:
    """Wall and CPU seconds of one call (CPU time hardly moves with machine load); a failing
    call stops the benchmark (its figure would lie)."""
    began, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - began, _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd[3:]) or cmd}\n{done.stderr}")
    return seconds, cpu, done.stdout


def prepare(work: Path, traces: int, env: dict[str, str]) -> dict[str, str]:
    """The store, an analysis with a census and an issue; returns the ids the commands need."""
    sys.path.insert(0, str(ROOT / "bench"))
    from build_corpus import build

    uri = f"sqlite:///{work / 'mlflow.db'}"
    exp = str(build(uri, traces, experiment="bench-cli"))
    env["MLFLOW_TRACKING_URI"] = uri
    env["MLFLOW_EXPERIMENT_ID"] = exp
    cwd = str(work)
    *_, out = run(argv("mlflow-insights", "create-analysis", "--run-name", "bench cli",
                      "-o", "json"), env, cwd)
    run_id = json.loads(out)["run_id"]
    run(argv("mlflow-insights", "create-baseline-census", "--run-id", run_id, "-o", "json"),
        env, cwd)
    *_, out = run(argv("mlflow-insights", "execute-sql", "-o", "json",
                      "SELECT trace_id FROM traces ORDER BY trace_id LIMIT 1"), env, cwd)
    rows = json.loads(out).get("rows") or []
    if not rows:
        raise SystemExit("the bench store has no traces to cite as evidence")
    evidence = json.dumps({"trace_id": rows[0][0], "rationale": "bench"})
    *_, out = run(argv("mlflow-insights", "create-issue", "--run-id", run_id, "--title",
                      "Bench issue for CLI timings", "--evidence", evidence, "-o", "json"),
                  env, cwd)
    issue_id = json.loads(out)["issue_id"]
    return {"uri": uri, "exp": exp, "run_id": run_id, "issue_id": issue_id, "evidence": evidence}


def commands(ids: dict[str, str]) -> list[tuple[str, list[str], str]]:
    """(label, argv, target kind): "base" is the yardstick, "help" 0.2x, "command" +0.5 s."""
    mi = lambda *a: argv("mlflow-insights", *a)  # noqa: E731
    return [
        ('python -c "import mlflow"', [sys.executable, "-c", "import mlflow"], "base"),
        ("mlflow-insights --help", mi("--help"), "help"),
        ("insights-agent --help", argv("insights-agent", "--help"), "help"),
        ("mlflow-insights execute-sql --help", mi("execute-sql", "--help"), "help"),
        ("insights-agent run --help", argv("insights-agent", "run", "--help"), "help"),
        ("list-analyses -o json", mi("list-analyses", "-o", "json"), "command"),
        ("list-issues", mi("list-issues"), "command"),
        ("get-issue", mi("get-issue", "--issue-id", ids["issue_id"]), "command"),
        ("list-hypotheses", mi("list-hypotheses", "--run-id", ids["run_id"]), "command"),
        ("get-baseline-census", mi("get-baseline-census", "--run-id", ids["run_id"]), "command"),
        ("execute-sql (warm cache)",
         mi("execute-sql", "SELECT state, count(*) AS n FROM traces GROUP BY state"), "command"),
        ("cohort-stats (warm cache)",
         mi("cohort-stats", "--cohort", "length(request) > 200", "--outcome", "state = 'ERROR'"),
         "command"),
        ("create-hypothesis",
         mi("create-hypothesis", "--run-id", ids["run_id"], "--statement", "Bench statement",
            "-o", "json"), "command"),
        ("create-hypothesis --evidence",
         mi("create-hypothesis", "--run-id", ids["run_id"], "--statement", "Bench statement",
            "--evidence", ids["evidence"], "-o", "json"), "command"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=int, default=1000, help="traces in the store")
    ap.add_argument("--repeat", type=int, default=5, help="rounds; medians are reported")
    args = ap.parse_args()
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    env = dict(os.environ, INSIGHTS_CACHE_DIR=str(work / "cache"),
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    began = time.perf_counter()
    ids = prepare(work, args.traces, env)
    console.print(f"store {ids['uri']} ({args.traces} traces), set up in "
                  f"{time.perf_counter() - began:.1f} s; {args.repeat} rounds")
    plan = commands(ids)
    times: dict[str, list[float]] = {label: [] for label, _, _ in plan}
    cpu: dict[str, list[float]] = {label: [] for label, _, _ in plan}
    for _ in range(args.repeat):
        for label, cmd, _ in plan:
            wall, used, _ = run(cmd, env, str(work))
            times[label].append(wall)
            cpu[label].append(used)
    base = statistics.median(times[plan[0][0]])
    base_cpu = statistics.median(cpu[plan[0][0]])
    table = Table(title=f"CLI start-up and commands vs import mlflow ({args.traces} traces, "
                        f"median of {args.repeat})")
    for col in ("call", "median s", "min s", "x import mlflow", "cpu s", "cpu x", "target",
                "result"):
        table.add_column(col, justify="left" if col == "call" else "right")
    failed = []
    for label, _, kind in plan:
        median = statistics.median(times[label])
        if kind == "base":
            target, ok = "yardstick", None
        elif kind == "help":
            target, ok = f"<= {HELP_RATIO}x", median <= HELP_RATIO * base
        else:
            target = f"<= {base + COMMAND_SLACK_S:.2f} s"
            ok = median <= base + COMMAND_SLACK_S
        if ok is False:
            failed.append(label)
        result = "" if ok is None else ("[green]pass[/green]" if ok else "[red]FAIL[/red]")
        used = statistics.median(cpu[label])
        table.add_row(label, f"{median:.2f}", f"{min(times[label]):.2f}", f"{median / base:.2f}",
                      f"{used:.2f}", f"{used / base_cpu:.2f}", target, result)
    console.print(table)
    console.print("all targets met" if not failed else f"[red]missed:[/red] {', '.join(failed)}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
