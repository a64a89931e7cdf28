"""Benchmark trace analytics against the naive approach, on a SQLite store and a loopback server.

Run on demand (never in CI):

    python bench/bench_analytics.py --sizes 1000,10000,100000 --workdir /tmp/insights-bench

For each size it builds (once) a corpus with bench/build_corpus.py, then times in fresh
subprocesses (so peak RSS is per task, from ``resource.getrusage``):
  - census cold (empty cache) and warm (second call),
  - SQL: a cold query over spans (empty cache), three typical queries warm, then the first
    query that reads span payloads (inputs), which loads them,
  - the naive baseline: page through ``MlflowClient.search_traces`` (full traces) and aggregate
    in Python. Above ``--naive-sample`` traces the baseline is timed on that many traces and
    extrapolated linearly (marked "extrapolated").
Both through the SQLite URI directly and through an ``mlflow server`` it starts on 127.0.0.1
(Trace SQL through the server, a full pull of every trace, only up to ``--server-sql-max``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUERIES = {
    "error_spans": "SELECT trace_id FROM traces "
                   "WHERE size(filter(spans, s -> s.status_code = 'ERROR')) > 0",
    "verbose": "SELECT trace_id, length(request) AS req_len, length(response) AS resp_len "
               "FROM traces WHERE length(request) < 100 AND length(response) > 1000 "
               "ORDER BY resp_len DESC LIMIT 20",
    "slow_tools": "SELECT s.name, count(*) AS calls, percentile_approx(s.duration_ms, 0.95) "
                  "AS p95_ms FROM traces LATERAL VIEW explode(spans) x AS s "
                  "WHERE s.span_type = 'TOOL' GROUP BY s.name ORDER BY p95_ms DESC",
}
# reads span inputs, so it is the first query that needs the span payloads (most of the bytes)
PAYLOAD_QUERY = ("SELECT count(*) FROM traces "
                 "WHERE exists(spans, s -> s.span_type = 'TOOL' AND s.inputs LIKE '%2%')")


# ---------------------------------------------------------------- worker side (subprocess)

def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(task: str, uri: str, exp: str, limit: int) -> dict:
    if task == "census":
        from insights.analytics import AnalyticsSession, compute_census

        t = time.perf_counter()
        with AnalyticsSession(uri, exp) as session:
            c = compute_census(session)
            cold = time.perf_counter() - t
            t = time.perf_counter()
            compute_census(session)  # warm: the same session, as an investigation runs it
            warm = time.perf_counter() - t
        sample = c.sample
        note = (f"{', '.join(sample.sections)} from {sample.traces:,} sampled traces"
                if sample and sample.sections else "")
        return {"cold": cold, "warm": warm, "peak_mb": _peak_mb(),
                "traces": c.total_traces, "note": note}
    if task == "sql":
        from insights.analytics import AnalyticsSession, execute_sql

        t = time.perf_counter()
        with AnalyticsSession(uri, exp) as session:
            execute_sql(session, QUERIES["slow_tools"])
            out = {"cold": time.perf_counter() - t}
            for name, sql in QUERIES.items():
                t = time.perf_counter()
                execute_sql(session, sql)
                out[f"warm_{name}"] = time.perf_counter() - t
            t = time.perf_counter()
            execute_sql(session, PAYLOAD_QUERY)
            out["payload"] = time.perf_counter() - t
        out["peak_mb"] = _peak_mb()
        return out
    if task == "naive":
        return naive(uri, exp, limit)
    raise SystemExit(f"unknown task {task}")


def naive(uri: str, exp: str, limit: int) -> dict:
    """The slow baseline: full traces through search_traces, census-like aggregation in Python."""
    import statistics

    import mlflow

    client = mlflow.MlflowClient(uri)
    t = time.perf_counter()
    token, n, errors, lat = None, 0, 0, []
    span_stats: dict[str, list] = {}
    while n < limit:
        page = client.search_traces(locations=[exp], max_results=min(500, limit - n),
                                    page_token=token, include_spans=True)
        for tr in page:
            n += 1
            errors += tr.info.state.value == "ERROR"
            lat.append(tr.info.execution_duration or 0)
            for s in tr.data.spans:
                st = span_stats.setdefault(s.name, [0, 0, []])
                st[0] += 1
                st[1] += s.status.status_code.value == "ERROR"
                st[2].append((s.end_time_ns - s.start_time_ns) / 1e6)
        token = page.token
        if not token:
            break
    for st in span_stats.values():
        statistics.quantiles(st[2], n=20) if len(st[2]) > 1 else None
    statistics.quantiles(lat, n=100) if len(lat) > 1 else None
    return {"seconds": time.perf_counter() - t, "traces": n, "peak_mb": _peak_mb()}


# ---------------------------------------------------------------- driver side

def run_task(task: str, uri: str, exp: str, limit: int = 0, timeout: int = 1800) -> dict:
    env = dict(os.environ, INSIGHTS_CACHE_DIR=tempfile.mkdtemp(prefix="bench-cache-"))
    cmd = [sys.executable, __file__, "--worker", task, "--uri", uri, "--exp", exp,
           "--limit", str(limit)]
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout}s"}
    if p.returncode:
        return {"error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "failed"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def start_server(db: Path) -> tuple[subprocess.Popen, str]:
    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(db.with_suffix(".server.log"), "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                             f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "2", "--artifacts-destination", str(db.parent / "server-artifacts")],
                            stdout=log, stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if requests.get(f"{uri}/health", timeout=1).ok:
                return proc, uri
        except requests.RequestException:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("mlflow server did not start")


def measure(size: int, uri: str, exp: str, store: str, sample: int,
            sql: bool = True) -> list[dict]:
    rows = []
    limit = min(size, sample)
    nv = run_task("naive", uri, exp, limit)
    naive_s = nv.get("seconds")
    extrapolated = naive_s is not None and nv["traces"] < size
    if extrapolated:
        naive_s = naive_s * size / nv["traces"]
    note = f"naive extrapolated from {nv['traces']} traces" if extrapolated else ""
    rows.append({"size": size, "store": store, "task": "naive search_traces",
                 "seconds": naive_s, "peak_mb": nv.get("peak_mb"), "naive": naive_s,
                 "note": nv.get("error", note)})
    c = run_task("census", uri, exp)
    s = run_task("sql", uri, exp) if sql else {"error": "skipped (--server-sql-max)"}
    for task, res, key in (("census cold", c, "cold"), ("census warm", c, "warm"),
                           ("sql cold (slow_tools)", s, "cold"),
                           *[(f"sql warm {q}", s, f"warm_{q}") for q in QUERIES],
                           ("sql first payload query", s, "payload")):
        rows.append({"size": size, "store": store, "task": task, "seconds": res.get(key),
                     "peak_mb": res.get("peak_mb"), "naive": naive_s,
                     "note": res.get("error", res.get("note", "") if key == "cold" else "")})
    return rows


def render(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="insights.analytics vs naive search_traces")
    for col in ("traces", "store", "task", "seconds", "peak MB", "speedup vs naive",
                "growth 10k->100k", "note"):
        table.add_column(col, justify="right" if col not in ("store", "task", "note") else "left")
    by_key = {(r["size"], r["store"], r["task"]): r["seconds"] for r in rows}
    for r in rows:
        sec = r["seconds"]
        speed = (f"{r['naive'] / sec:.0f}x" if sec and r["naive"] and "naive" not in r["task"]
                 else "")
        growth = ""
        if r["size"] == 100_000:
            small = by_key.get((10_000, r["store"], r["task"]))
            if small and sec:
                growth = f"{math.log10(sec / small):.2f}"
        table.add_row(f"{r['size']:,}", r["store"], r["task"],
                      f"{sec:.2f}" if sec is not None else "-",
                      f"{r['peak_mb']:.0f}" if r.get("peak_mb") else "-", speed, growth,
                      r["note"])
    Console(width=160).print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "insights-bench"))
    ap.add_argument("--naive-sample", type=int, default=10_000,
                    help="time the naive baseline on at most this many traces, extrapolate")
    ap.add_argument("--no-server", action="store_true")
    ap.add_argument("--server-sql-max", type=int, default=10_000,
                    help="skip Trace SQL through the server above this size (a full pull)")
    ap.add_argument("--worker"), ap.add_argument("--uri"), ap.add_argument("--exp")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.uri, args.exp, args.limit)))
        return
    sys.path.insert(0, str(HERE))
    import build_corpus

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for size in [int(s) for s in args.sizes.split(",")]:
        db = work / f"corpus-{size}.db"
        uri = f"sqlite:///{db}"
        if not db.exists():
            t = time.perf_counter()
            build_corpus.build(uri, size)
            print(f"built {size} traces in {time.perf_counter() - t:.1f}s", flush=True)
        exp = str(build_corpus.ensure_experiment(uri, "bench"))
        rows += measure(size, uri, exp, "sqlite", args.naive_sample)
        if not args.no_server:
            proc, server_uri = start_server(db)
            try:
                rows += measure(size, server_uri, exp, "server", args.naive_sample,
                                sql=size <= args.server_sql_max)
            finally:
                proc.terminate()
                proc.wait(30)
        print(json.dumps(rows[-1]), flush=True)
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    render(rows)
    import mlflow

    print(f"machine: nproc={os.cpu_count()} python={platform.python_version()} "
          f"mlflow={mlflow.__version__} load={os.getloadavg()}")


if __name__ == "__main__":
    main()
