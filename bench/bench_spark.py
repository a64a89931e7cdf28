"""Trace analytics at scale: the census and three cohort counts on DuckDB and on Spark.

Why synthetic Parquet: logging a million traces through MLflow takes hours, and Spark reads
Parquet anyway. ``generate`` writes N traces straight into Parquet in the `traces` table's
schema (the layout ``mlflow-insights export-traces`` writes: ``day=YYYY-MM-DD/`` folders),
with agent-like shapes: an AGENT root, 1-3 TOOL calls that sometimes fail (with an exception
event, as MLflow records one), one CHAT_MODEL call, tags, token counts, and a correctness
assessment on a fifth of the traces.

Each engine then runs in its own subprocess so its peak memory is its own: DuckDB loads the
Parquet into a database file (as the cache holds the `traces` table), builds the census's flat
tables and computes the census (``sections``), then runs the cohort queries as ``execute-sql``
would (same parsing, guard and transpilation); Spark computes the same census with
``spark_census`` and runs the queries as written through ``spark_engine``, with ``--table``
pointing at the Parquet folder. The two censuses and the query answers are compared. Peak memory is the
subprocess's peak resident size (VmHWM), plus, for Spark, the JVM's.

Usage:
  python bench/bench_spark.py --sizes 100000,1000000 [--work /tmp/bench-spark]
  python bench/bench_spark.py --sizes 1000000 --engines spark --spark-remote sc://HOST:15002 \
      --table s3a://bucket/traces   # a cluster: its own copy of the data
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The census itself runs on both engines: on DuckDB over flat tables built from the Parquet
# (as the cache holds them), on Spark over the flat views ``spark_census`` derives from
# `traces`. The same flat rows on DuckDB, written in DuckDB SQL:
_EVENTS = "'[{\"name\":\"VARCHAR\",\"attributes\":\"MAP(VARCHAR,VARCHAR)\"}]'"
DUCKDB_FLAT = {
    "t": ("SELECT trace_id, request_time_ms, execution_time_ms, state, request, response, "
          "trace_name, session_id, input_tokens, output_tokens, total_tokens, total_cost, "
          "length(request)::BIGINT AS request_length, length(response)::BIGINT AS "
          "response_length, response_empty FROM traces"),
    "s": ("SELECT trace_id, sp.name, sp.span_type, sp.status_code, sp.status_message, "
          "sp.start_time_ms, sp.duration_ms, sp.parent_id IS NULL AS is_root, "
          "exc['exception.type'] AS exception_type, exc['exception.message'] AS "
          "exception_message, sp.span_id, sp.parent_id, sp.end_time_ms FROM ("
          "SELECT trace_id, sp, CASE WHEN sp.status_code = 'ERROR' THEN list_filter(from_json("
          f"sp.events, {_EVENTS}), e -> e.name = 'exception')[1].attributes END AS exc "
          "FROM (SELECT trace_id, unnest(spans) AS sp FROM traces))"),
    "a": ("SELECT trace_id, NULL::VARCHAR AS assessment_id, x.name, x.value, x.source_type, "
          "x.rationale, NULL::BIGINT AS last_updated_ms "
          "FROM (SELECT trace_id, unnest(assessments) AS x FROM traces)"),
}
COHORTS = {
    "long_request_errors": ("length(request) > 120", "state = 'ERROR'"),
    "failed_tool_bad_answer": (
        "exists(spans, s -> s.span_type = 'TOOL' AND s.status_code = 'ERROR')",
        "exists(assessments, a -> a.value = 'false')"),
    "env_prod_slow": ("tags['env'] = 'prod'", "execution_time_ms > 3000"),
}


def generate(out: Path, n: int) -> float:
    """Write ``n`` synthetic traces as day-partitioned Parquet; returns seconds taken."""
    import duckdb

    from insights.analytics.schema import TRACES_COLUMNS

    started = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    tool = ("struct_pack(start_time_ms := t0 + 50.0 * j, span_id := printf('%016x', i * 8 + j), "
            "parent_id := printf('%016x', i * 8), name := tools[1 + (h >> (4 * j)) % 4], "
            "span_type := 'TOOL', "
            "status_code := CASE WHEN (h >> (8 + j)) % 17 = 0 THEN 'ERROR' ELSE 'OK' END, "
            "status_message := CASE WHEN (h >> (8 + j)) % 17 = 0 THEN errs[1 + (h >> (4 * j)) % 4] END, "
            "end_time_ms := t0 + 50.0 * j + ((h >> j) % 900), duration_ms := ((h >> j) % 900)::DOUBLE, "
            "inputs := '{\"q\": \"' || city || '\"}', outputs := '{\"result\": \"ok\"}', "
            "attributes := '{\"mlflow.spanType\": \"TOOL\"}', "
            "events := CASE WHEN (h >> (8 + j)) % 17 = 0 THEN '[{\"name\": \"exception\", "
            "\"attributes\": {\"exception.type\": \"' || "
            "split_part(errs[1 + (h >> (4 * j)) % 4], ':', 1) || '\", \"exception.message\": \"' || "
            "errs[1 + (h >> (4 * j)) % 4] || '\"}}]' ELSE '[]' END)")
    chat = ("struct_pack(start_time_ms := t0 + 400.0, span_id := printf('%016x', i * 8 + 7), "
            "parent_id := printf('%016x', i * 8), name := 'ChatModel', span_type := 'CHAT_MODEL', "
            "status_code := CASE WHEN h % 23 = 0 THEN 'ERROR' ELSE 'OK' END, "
            "status_message := CASE WHEN h % 23 = 0 THEN 'RateLimitError: 429' END, "
            "end_time_ms := t0 + 400.0 + lat * 0.8, duration_ms := lat * 0.8, "
            "inputs := '{\"messages\": []}', outputs := response, "
            "attributes := '{\"mlflow.chat.tokenUsage\": {\"input_tokens\": ' || tok_in || "
            "', \"output_tokens\": ' || tok_out || '}}', events := '[]')")
    root = ("struct_pack(start_time_ms := t0, span_id := printf('%016x', i * 8), "
            "parent_id := NULL::VARCHAR, name := 'agent', span_type := 'AGENT', "
            "status_code := CASE WHEN h % 23 = 0 THEN 'ERROR' ELSE 'OK' END, "
            "status_message := CASE WHEN h % 23 = 0 THEN 'RateLimitError: 429' END, "
            "end_time_ms := t0 + lat, duration_ms := lat, inputs := request, outputs := response, "
            "attributes := '{}', events := '[]')")
    con.execute(f"""
        CREATE TEMP VIEW gen AS
        WITH base AS (
          SELECT i, (hash(i) >> 2)::BIGINT AS h, 1767225600000 + i * 2000 AS t0i FROM range({n}) r(i)),
        shaped AS (
          SELECT *, t0i::DOUBLE AS t0, (200 + h % 5000)::DOUBLE AS lat,
                 ['Paris', 'Berlin', 'Tokyo', 'Lima', 'Oslo', 'Cairo', 'Austin', 'Seoul'][1 + h % 8] AS city,
                 ['search_web', 'get_weather', 'calculator', 'sql_query'] AS tools,
                 ['TimeoutError: search backend timed out', 'ConnectionError: weather API unreachable',
                  'ZeroDivisionError: division by zero', 'OperationalError: no such table'] AS errs,
                 100 + h % 900 AS tok_in, 20 + (h >> 3) % 400 AS tok_out
          FROM base),
        texts AS (
          SELECT *, '{{"question": "' || repeat('Tell me about ', 1 + (h >> 5) % 20) || city || '"}}' AS request,
                 CASE WHEN h % 23 = 0 THEN NULL WHEN h % 31 = 0 THEN '""'
                      WHEN h % 13 = 0 THEN '"I cannot help with that."'
                      ELSE '"' || city || ' answer ' || (h % 100000) || '"' END AS response
          FROM shaped)
        SELECT 'tr-' || md5(i::VARCHAR) AS trace_id, make_timestamp(t0i * 1000) AS request_time,
               t0i AS request_time_ms, lat::BIGINT AS execution_time_ms,
               CASE WHEN h % 23 = 0 THEN 'ERROR' ELSE 'OK' END AS state, request, response,
               response IS NULL OR response = '""' AS response_empty, 'agent' AS trace_name,
               'session-' || (i // 5) AS session_id,
               MAP {{'env': CASE WHEN h % 3 = 0 THEN 'prod' ELSE 'staging' END,
                    'version': 'v' || (h % 4)}} AS tags,
               MAP {{'mlflow.user': 'user' || (h % 50)}} AS metadata,
               tok_in AS input_tokens, tok_out AS output_tokens, tok_in + tok_out AS total_tokens,
               (tok_in + tok_out) * 0.000002 AS total_cost,
               list_concat([{root}], list_transform(range(1 + h % 3), j -> {tool}), [{chat}]) AS spans,
               CASE WHEN h % 5 = 0 THEN [struct_pack(name := 'correctness',
                    value := CASE WHEN (h >> 9) % 4 = 0 THEN 'false' ELSE 'true' END,
                    source_type := 'LLM_JUDGE', rationale := 'checked against the sources')]
                    ELSE [] END AS assessments
        FROM texts""")
    out.mkdir(parents=True, exist_ok=True)
    cols = ", ".join(TRACES_COLUMNS)
    con.execute(f"COPY (SELECT {cols}, strftime(request_time, '%Y-%m-%d') AS day FROM gen) "
                f"TO '{out}' (FORMAT PARQUET, PARTITION_BY (day), OVERWRITE_OR_IGNORE)")
    con.close()
    return time.perf_counter() - started


def queries() -> dict[str, str]:
    from insights.analytics.cohorts import spark_counts_sql

    named = {}
    for name, (cohort, outcome) in COHORTS.items():
        named[f"cohort.{name}"] = spark_counts_sql(cohort, f"NOT ({cohort})", outcome, 5)
    return named


def run_duckdb(data: str, work: Path) -> dict:
    """Load the Parquet into a DuckDB file, then run each query as execute-sql does."""
    import duckdb

    from insights.analytics.sql import parse_query, run, to_duckdb

    db = work / "bench.duckdb"
    db.unlink(missing_ok=True)
    con = duckdb.connect(str(db))
    con.execute("SET memory_limit = '8GB'")
    started = time.perf_counter()
    con.execute(f"CREATE TABLE traces AS SELECT * EXCLUDE (day) FROM "
                f"read_parquet('{data}/*/*.parquet', hive_partitioning = true)")
    load = time.perf_counter() - started
    from insights.analytics.census_model import Census
    from insights.analytics.sections import exact_census

    started = time.perf_counter()
    for name, body in DUCKDB_FLAT.items():
        con.execute(f"CREATE TEMP TABLE {name} AS {body}")
    census = Census.model_validate({**exact_census(con), "method": "exact"})
    census = census.model_dump(mode="json")
    census.pop("method", None)
    times, answers = {"census": time.perf_counter() - started}, {"census": census}
    for name, sql in queries().items():
        started = time.perf_counter()
        result = run(con, to_duckdb(parse_query(sql), "traces"), 10_000, timeout=3600,
                     max_memory="8GB", session_memory="8GB")
        times[name] = time.perf_counter() - started
        answers[name] = result.rows
    con.close()
    return {"load_s": load, "times": times, "answers": answers}


def run_spark(data: str, remote: str | None, master: str | None) -> dict:
    """Run each query as written on Spark over the Parquet folder (or table)."""
    from insights.analytics import spark_engine

    from insights.analytics.spark_census import spark_census

    started = time.perf_counter()
    spark_engine.spark_session(remote, master)
    load = time.perf_counter() - started
    started = time.perf_counter()
    census = spark_census(table=data, remote=remote, master=master).model_dump(mode="json")
    census.pop("method", None)
    times, answers = {"census": time.perf_counter() - started}, {"census": census}
    for name, sql in queries().items():
        started = time.perf_counter()
        result = spark_engine.execute_sql_spark(sql, table=data, remote=remote, master=master,
                                                max_rows=10_000, timeout=3600)
        times[name] = time.perf_counter() - started
        answers[name] = result.rows
    jvm = _jvm_peak_kb()
    return {"load_s": load, "times": times, "answers": answers, "jvm_peak_kb": jvm}


def _jvm_peak_kb() -> int:
    """Peak resident size (VmHWM) of this process's child JVM, 0 when none (Spark Connect)."""
    me = str(os.getpid())
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == me and "java" in fields.get("Name", ""):
            return int(fields.get("VmHWM", "0 kB").split()[0])
    return 0


def _peak_kb(status: Path) -> int:
    """VmHWM, the peak resident size of this process's own memory. Not ru_maxrss: here the
    Spark child reported exactly the DuckDB child's figure, carried over from before exec."""
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def child(args: argparse.Namespace) -> None:
    work = Path(args.work)
    if args.engine == "duckdb":
        result = run_duckdb(args.data, work)
    else:
        result = run_spark(args.data, args.spark_remote, args.spark_master)
    result["python_peak_kb"] = _peak_kb(Path("/proc/self/status"))
    print(json.dumps(result, default=str))


def _rounded(value):
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _same(a: list, b: list) -> bool:
    def norm(rows):
        out = []
        for r in rows:
            out.append([round(v, 4) if isinstance(v, float) else v for v in r])
        return sorted(out, key=lambda r: json.dumps(r, default=str))

    return norm(a) == norm(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000")
    ap.add_argument("--engines", default="duckdb,spark")
    ap.add_argument("--work", default="/tmp/bench-spark")
    ap.add_argument("--table", help="Query this Parquet/Delta path or table instead of "
                    "generating data (Spark only; e.g. on a cluster).")
    ap.add_argument("--spark-remote")
    ap.add_argument("--spark-master")
    ap.add_argument("--engine", help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine:
        return child(args)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    summary = {}
    for n in [int(s) for s in args.sizes.split(",")]:
        data = args.table
        if not data:
            data = str(work / f"traces-{n}")
            if not Path(data).exists():
                print(f"generating {n:,} traces ...", flush=True)
                print(f"  {generate(Path(data), n):.1f} s", flush=True)
        size_mb = sum(f.stat().st_size for f in Path(data).rglob("*.parquet")) / 1e6 \
            if Path(data).exists() else 0
        per = {}
        for engine in args.engines.split(","):
            cmd = [sys.executable, __file__, "--engine", engine, "--data", data,
                   "--work", str(work)]
            for flag in ("spark_remote", "spark_master"):
                if getattr(args, flag):
                    cmd += [f"--{flag.replace('_', '-')}", getattr(args, flag)]
            started = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - started
            if done.returncode:
                sys.exit(f"{engine} at {n}: {done.stderr[-2000:]}")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            r["wall_s"] = wall
            per[engine] = r
            peak_mb = (r["python_peak_kb"] + r.get("jvm_peak_kb", 0)) / 1024
            census = r["times"]["census"]
            cohorts = sum(v for k, v in r["times"].items() if k.startswith("cohort."))
            print(f"{n:>9,} {engine:6} start/load {r['load_s']:6.1f} s  census {census:6.1f} s  "
                  f"cohorts {cohorts:6.1f} s  process {wall:6.1f} s  peak {peak_mb:7.0f} MB "
                  f"(parquet {size_mb:.0f} MB)", flush=True)
            for k, v in r["times"].items():
                print(f"            {k:36} {v:7.2f} s")
        if len(per) == 2:
            a, b = per["duckdb"]["answers"], per["spark"]["answers"]
            differ = [k for k in a if k != "census" and not _same(a[k], b[k])]
            if _rounded(a["census"]) != _rounded(b["census"]):
                differ.append("census")
            print(f"  answers differ: {differ or 'none'}", flush=True)
        summary[n] = {e: {k: v for k, v in r.items() if k != "answers"} for e, r in per.items()}
    if len(summary) >= 2:
        sizes = sorted(summary)
        lo, hi = sizes[0], sizes[-1]
        for engine in summary[lo]:
            t = [sum(summary[s][engine]["times"].values()) for s in (lo, hi)]
            print(f"growth exponent {engine}: {math.log(t[1] / t[0]) / math.log(hi / lo):.2f} "
                  f"(query time {t[0]:.1f} s -> {t[1]:.1f} s)")
    (work / "summary.json").write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
