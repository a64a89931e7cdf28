"""DuckDB tables of the local trace cache, and the user-facing description of `traces`.

The cache keeps flat tables (one row per trace / span / assessment) because they load and
aggregate fast; the nested ``traces`` table that Trace SQL queries is built from them on
first use and then only for new or changed traces.
"""

from __future__ import annotations

SCHEMA_VERSION = "8"

# start_time_ms leads so list_sort() orders a trace's spans chronologically for free
SPAN_STRUCT = (
    "STRUCT(start_time_ms DOUBLE, span_id VARCHAR, parent_id VARCHAR, name VARCHAR, "
    "span_type VARCHAR, status_code VARCHAR, status_message VARCHAR, end_time_ms DOUBLE, "
    "duration_ms DOUBLE, inputs VARCHAR, outputs VARCHAR, attributes VARCHAR, events VARCHAR)"
)
LITE_SPAN_STRUCT = (
    "STRUCT(start_time_ms DOUBLE, span_id VARCHAR, parent_id VARCHAR, name VARCHAR, "
    "span_type VARCHAR, status_code VARCHAR, status_message VARCHAR, end_time_ms DOUBLE, "
    "duration_ms DOUBLE)"
)
SPAN_PAYLOAD_FIELDS = {"inputs", "outputs", "attributes", "events"}
ASSESSMENT_STRUCT = (
    "STRUCT(name VARCHAR, value VARCHAR, source_type VARCHAR, rationale VARCHAR)"
)

DDL = f"""
CREATE TABLE IF NOT EXISTS cache_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS trace_rows (
    trace_id VARCHAR, request_time_ms BIGINT, execution_time_ms BIGINT, state VARCHAR,
    request VARCHAR, response VARCHAR, trace_name VARCHAR, session_id VARCHAR,
    input_tokens BIGINT, output_tokens BIGINT, total_tokens BIGINT, total_cost DOUBLE,
    request_length BIGINT, response_length BIGINT, response_empty BOOLEAN);
CREATE TABLE IF NOT EXISTS span_rows (
    trace_id VARCHAR, name VARCHAR, span_type VARCHAR, status_code VARCHAR,
    status_message VARCHAR, start_time_ms DOUBLE, duration_ms DOUBLE, is_root BOOLEAN,
    exception_type VARCHAR, exception_message VARCHAR, span_id VARCHAR, parent_id VARCHAR,
    end_time_ms DOUBLE);
CREATE TABLE IF NOT EXISTS span_lists (trace_id VARCHAR, spans {LITE_SPAN_STRUCT}[]);
CREATE TABLE IF NOT EXISTS assessment_rows (
    trace_id VARCHAR, assessment_id VARCHAR, name VARCHAR, value VARCHAR,
    source_type VARCHAR, rationale VARCHAR, last_updated_ms BIGINT);
CREATE TABLE IF NOT EXISTS traces (
    trace_id VARCHAR, request_time TIMESTAMP, request_time_ms BIGINT, execution_time_ms BIGINT,
    state VARCHAR, request VARCHAR, response VARCHAR, response_empty BOOLEAN,
    trace_name VARCHAR, session_id VARCHAR, tags MAP(VARCHAR, VARCHAR), metadata MAP(VARCHAR, VARCHAR), input_tokens BIGINT,
    output_tokens BIGINT, total_tokens BIGINT, total_cost DOUBLE,
    spans {SPAN_STRUCT}[], assessments {ASSESSMENT_STRUCT}[]);
"""

TRACES_COLUMNS = [
    "trace_id", "request_time", "request_time_ms", "execution_time_ms", "state", "request",
    "response", "response_empty", "trace_name", "session_id", "tags", "metadata", "input_tokens",
    "output_tokens", "total_tokens", "total_cost", "spans", "assessments",
]

TRACES_SCHEMA_HELP = """\
Table `traces` (one row per trace of the experiment). Write Spark SQL; it is transpiled to
DuckDB and run locally on a cached copy of the experiment that refreshes itself on every call.
Only SELECT / WITH queries are allowed.

  trace_id           STRING     e.g. 'tr-3f2a...'
  request_time       TIMESTAMP  trace start, UTC (request_time_ms: same as epoch milliseconds)
  execution_time_ms  BIGINT     end-to-end latency
  state              STRING     'OK' | 'ERROR' | 'IN_PROGRESS'
  request            STRING     root span inputs as JSON text
  response           STRING     root span outputs as JSON text (NULL when none)
  response_empty     BOOLEAN    the response holds no answer text: missing, or every text
                     leaf empty ('', null, {}, [], {"answer": ""}, a chat completion or
                     message with empty content, a {"messages": [...]} state whose last
                     message is empty); numbers, booleans and protocol fields (role, model,
                     id, usage, finish_reason...) are not text. Empty answers of finished
                     traces: WHERE state = 'OK' AND response_empty
  trace_name         STRING
  session_id         STRING
  tags               MAP<STRING,STRING>      e.g. tags['env']
  metadata           MAP<STRING,STRING>      e.g. metadata['mlflow.user']
  input_tokens, output_tokens, total_tokens  BIGINT (NULL when not recorded)
  total_cost         DOUBLE     (NULL when not recorded)
  spans              ARRAY<STRUCT<span_id, parent_id, name, span_type, status_code ('OK'|'ERROR'
                     |'UNSET'), status_message (NULL when empty), start_time_ms, end_time_ms,
                     duration_ms (DOUBLE),
                     inputs, outputs, attributes, events (all JSON text)>>, ordered by start
                     time. Read an attribute with
                     get_json_object(s.attributes, '$["mlflow.chat.tokenUsage"]')
                     In filter()/exists() lambdas, AND-ed conditions are checked left to
                     right: put the cheap one first (s.name = 'x' AND <test of s.outputs>)
  assessments        ARRAY<STRUCT<name, value (string: 'true', 'false', 'yes', '0.8', ...),
                     source_type ('HUMAN'|'LLM_JUDGE'|'CODE'), rationale>>

Examples:
  -- traces with at least one failed span
  SELECT trace_id FROM traces WHERE size(filter(spans, s -> s.status_code = 'ERROR')) > 0

  -- verbose responses to short requests
  SELECT trace_id, length(request) AS req_len, length(response) AS resp_len FROM traces
  WHERE length(request) < 200 AND length(response) > 2000 ORDER BY resp_len DESC LIMIT 20

  -- slowest tools
  SELECT s.name, count(*) AS calls, percentile_approx(s.duration_ms, 0.95) AS p95_ms
  FROM traces LATERAL VIEW explode(spans) x AS s
  WHERE s.span_type = 'TOOL' GROUP BY s.name ORDER BY p95_ms DESC

  -- failing assessments
  SELECT a.name, count(*) FROM traces LATERAL VIEW explode(assessments) y AS a
  WHERE a.value IN ('false', 'no') GROUP BY a.name

  -- empty answers of traces that ended OK, by trace name
  SELECT trace_name, count(*) FROM traces WHERE state = 'OK' AND response_empty GROUP BY 1
"""
