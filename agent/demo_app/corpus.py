"""Build a corpus of demo traces with known planted faults, and the ground truth for them."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import mlflow
from mlflow import MlflowClient

from insights import compat

from .app import Outcome, TravelAssistant
from .clock import NS_PER_S, SimClock
from .faults import (
    EMPTY_RESPONSES, FAILING_ASSESSMENT, SLOW_LONG_INPUTS, TOOL_OUTAGE, FaultPlan,
)
from .feedback import user_feedback
from .turn import Turn
from .workload import Workload, arrival_offsets

CORPUS_HOURS = 48
# The export queues drop work when full (OpenTelemetry's span queue holds one batch, MLflow's
# task queue a set number of tasks): drain them every FLUSH_EVERY traces. Each flush costs up to
# a second of idle waiting (MLflow's queue consumer notices it only when its poll times out), so
# the queues are sized to let flushes be rare: 500 traces of up to 40 spans fit one batch.
FLUSH_EVERY = 500

# Export tuning applied only while the corpus is written: big span batches and a single
# writer thread are ~3x faster on SQLite than the defaults (5-span batches, 10 writers), and
# twice as fast as synchronous export (which a caller may have chosen for its own traces).
# Token costs come from MLflow's bundled model catalog, never fetched: a simulated corpus has
# no use for today's prices, and on a machine without internet each model provider's fetch
# waited out ~7 s of retries inside the writer.
EXPORT_TUNING = {
    "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "true",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE": "20000",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE": "100000",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS": "1",
    # Export only when flushed (every FLUSH_EVERY traces, between two traces), never on a timer
    # in the middle of one: a trace whose spans are split over two exports gets a partial cost
    # from MLflow's store (seen: a fifth of the sum of its spans' costs).
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS": "3600000",
    "MLFLOW_MODEL_CATALOG_URI": "",
    # the simulated inputs and outputs hold no base64 data URIs to move out into attachments:
    # skip MLflow's search for them in every span's (growing) message list
    "MLFLOW_TRACE_EXTRACT_ATTACHMENTS": "false",
}


@dataclass
class DemoCorpus:
    """The traces written and the ground truth an analysis of them should recover."""

    experiment_id: str
    trace_ids: list[str]
    faults: dict[str, set[str]]
    harmless: set[str]
    descriptions: dict[str, str]
    start_ms: int
    end_ms: int
    outage_window_ms: tuple[int, int]
    traits: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> str:
        """A few lines for people: what was planted and how often it showed."""
        start = datetime.fromtimestamp(self.start_ms / 1000, timezone.utc)
        lo, hi = (datetime.fromtimestamp(t / 1000, timezone.utc) for t in self.outage_window_ms)
        lines = [
            f"experiment {self.experiment_id}: {len(self.trace_ids)} traces over "
            f"{CORPUS_HOURS} h from {start:%Y-%m-%d %H:%M} UTC",
            f"flight outage window: {lo:%Y-%m-%d %H:%M} - {hi:%H:%M} UTC",
        ]
        for name, ids in self.faults.items():
            lines.append(f"  {name:<20} {len(ids):>5} traces  {self.descriptions[name]}")
        lines.append(f"  {'harmless':<20} {len(self.harmless):>5} traces  "
                     f"{self.descriptions['harmless']}")
        return "\n".join(lines)


def build_demo_corpus(
    tracking_uri: str,
    n_traces: int = 400,
    seed: int = 7,
    experiment_name: str = "insights-demo",
    *,
    start: datetime | None = None,
    plan: FaultPlan | None = None,
) -> DemoCorpus:
    """Run the travel assistant on `n_traces` simulated requests and log them to MLflow.

    Traffic is spread over 48 simulated hours from `start` (default: 48 h before now, on the
    hour). The experiment is created if missing. The caller's tracking URI is restored
    afterwards and the active experiment is never changed.
    """
    plan = plan or FaultPlan()
    start_ns = _start_ns(start)
    with tracing_to(tracking_uri):
        client = MlflowClient(tracking_uri)
        experiment_id = _experiment_id(client, experiment_name)
        with _seeded_trace_ids(client, experiment_id, seed):
            served = _serve(TravelAssistant(experiment_id), n_traces, seed, plan, start_ns)
        check_stored(client, experiment_id, {o.trace_id for _, o in served})
        unhappy = _log_feedback(served, random.Random(f"feedback-{seed}"))
    return _ground_truth(experiment_id, served, unhappy, plan, start_ns)


def _serve(app: TravelAssistant, n_traces: int, seed: int, plan: FaultPlan, start_ns: int
           ) -> list[tuple[Turn, Outcome]]:
    """Replay the simulated traffic through the app, one traced request at a time."""
    rng = random.Random(seed)
    workload = Workload(rng)
    served: list[tuple[Turn, Outcome]] = []
    for i, offset in enumerate(arrival_offsets(n_traces, CORPUS_HOURS, rng)):
        turn = Turn(request=workload.draw(),
                    clock=SimClock(start_ns + int(offset * NS_PER_S)),
                    rng=random.Random(rng.getrandbits(64)),
                    plan=plan, corpus_start_ns=start_ns)
        served.append((turn, app.handle(turn)))
        last = i + 1 == n_traces
        if (i + 1) % FLUSH_EVERY == 0 or last:
            # The last flush also stops the export threads: once idle, MLflow's queue consumer
            # notices a flush only when its one-second poll times out, so every later flush
            # (ours on the way out, MLflow's when the tracking URI is restored) would wait up
            # to a second each. Later writes (the feedback) are synchronous anyway.
            mlflow.flush_trace_async_logging(terminate=last)
    return served


# MLflow's tag on a trace whose spans log_spans stored (spelled out as in MLflow's
# TraceTagKey.SPANS_LOCATION; tests/test_compat_contract.py checks the two agree)
SPANS_LOCATION_TAG = "mlflow.trace.spansLocation"


def check_stored(client: MlflowClient, experiment_id: str, trace_ids: set[str],
                 what: str = "demo traces") -> None:
    """Fail loudly if the async exporter dropped any trace (it does when its queue is full),
    or stored a trace without its spans: on a SQL store, a trace's log_spans tags it
    ``mlflow.trace.spansLocation`` (other stores keep spans elsewhere: not checked)."""
    on_sql = compat.sql_store(client.tracking_uri)
    stored: set[str] = set()
    spanless = 0
    token = None
    while True:
        page = client.search_traces(locations=[experiment_id], max_results=1000,
                                    include_spans=False, page_token=token)
        stored.update(t.info.trace_id for t in page)
        if on_sql:
            spanless += sum(1 for t in page if not t.info.tags.get(SPANS_LOCATION_TAG))
        token = page.token
        if not token:
            break
    if missing := trace_ids - stored:
        raise RuntimeError(f"{len(missing)} of {len(trace_ids)} {what} were not stored")
    if spanless:
        raise RuntimeError(f"{spanless} of {len(trace_ids)} {what} were stored without their "
                           "spans")


def _log_feedback(served: list[tuple[Turn, Outcome]], rng: random.Random) -> set[str]:
    """Log user feedback on the stored traces; return ids of traces rated unsatisfied."""
    unhappy: set[str] = set()
    for turn, outcome in served:
        feedback = user_feedback(turn, outcome, rng)
        if feedback is None:
            continue
        mlflow.log_assessment(trace_id=outcome.trace_id, assessment=feedback)
        if feedback.value is False:
            unhappy.add(outcome.trace_id)
    return unhappy


def _ground_truth(experiment_id: str, served: list[tuple[Turn, Outcome]], unhappy: set[str],
                  plan: FaultPlan, start_ns: int) -> DemoCorpus:
    """Ground truth from what happened in each request, not from what was intended."""
    def fired(name: str) -> set[str]:
        return {o.trace_id for t, o in served if name in t.fired}

    multi_city = {o.trace_id for t, o in served if t.request.is_multi_city}
    start_ms = start_ns // 1_000_000
    return DemoCorpus(
        experiment_id=experiment_id,
        trace_ids=[o.trace_id for _, o in served],
        faults={
            TOOL_OUTAGE: fired(TOOL_OUTAGE),
            SLOW_LONG_INPUTS: fired(SLOW_LONG_INPUTS),
            EMPTY_RESPONSES: fired(EMPTY_RESPONSES),
            FAILING_ASSESSMENT: multi_city & unhappy,
        },
        harmless={o.trace_id for t, o in served if t.request.language == "es"},
        descriptions=plan.describe(),
        start_ms=start_ms,
        end_ms=start_ms + CORPUS_HOURS * 3_600_000,
        outage_window_ms=(start_ms + int(plan.outage_start_s * 1000),
                          start_ms + int(plan.outage_end_s * 1000)),
        traits={o.trace_id: _traits(t, o) for t, o in served},
    )


def _traits(turn: Turn, outcome: Outcome) -> dict[str, Any]:
    """Request features and outcome, handy for checking rates in tests and notebooks."""
    r = turn.request
    return {"kind": r.kind, "language": r.language, "long": r.is_long,
            "multi_city": r.is_multi_city, "error": outcome.error is not None,
            "empty": outcome.error is None and not outcome.response,
            "causes": sorted(turn.fired)}


@contextmanager
def _seeded_trace_ids(client: MlflowClient, experiment_id: str, seed: int) -> Iterator[None]:
    """Same seed, same trace ids: the whole corpus, ids included, is reproducible.

    OpenTelemetry's default id generator (the one MLflow uses unless told otherwise) draws from
    Python's global ``random``. Analyses split traces by id, so fixed ids make a demo run (and
    the tests built on it) repeatable. The caller's global random state is restored; an
    experiment that already holds traces gets fresh ids, so a second build never collides.
    """
    state = random.getstate()
    fresh = not client.search_traces(locations=[experiment_id], max_results=1, include_spans=False)
    random.seed(f"demo-trace-ids:{seed}:{experiment_id}" if fresh else None)
    try:
        yield
    finally:
        random.setstate(state)


def _experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def _start_ns(start: datetime | None) -> int:
    if start is None:
        now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        start = now - timedelta(hours=CORPUS_HOURS)
    return int(start.timestamp()) * NS_PER_S


@contextmanager
def tracing_to(tracking_uri: str) -> Iterator[None]:
    """Point tracing at `tracking_uri` with fast export settings; restore everything after.

    On a SQL store each trace's info is stored before its spans and the experiment is read
    once (same rows, written faster: see `compat.trace_info_written_first` and
    `compat.experiments_read_once`).

    `mlflow.set_tracking_uri` resets the tracer provider, so the export tuning takes effect
    for the corpus and the caller's own settings come back with the restored URI. It also
    writes `$MLFLOW_TRACKING_URI` (and clears it when given None), so that variable is put
    back last, as the caller had it.
    """
    previous_uri = compat.tracking_uri_set()
    saved = [*EXPORT_TUNING, "MLFLOW_TRACKING_URI"]
    previous_env = {key: os.environ.get(key) for key in saved}
    os.environ.update(EXPORT_TUNING)
    with compat.trace_info_written_first(), compat.experiments_read_once(tracking_uri):
        mlflow.set_tracking_uri(tracking_uri)
        try:
            yield
        finally:
            mlflow.flush_trace_async_logging(terminate=False)
            _restore_env({k: previous_env[k] for k in EXPORT_TUNING})
            mlflow.set_tracking_uri(previous_uri)
            _restore_env({"MLFLOW_TRACKING_URI": previous_env["MLFLOW_TRACKING_URI"]})


def _restore_env(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
