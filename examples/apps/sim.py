"""Shared machinery for the generalisation apps: seeded names, traffic, time, MLflow plumbing.

Everything random is drawn from `random.Random` instances derived from the seed; the global
`random` is only seeded (and restored) so OpenTelemetry's id generator gives repeatable trace
ids, as the demo corpus does.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import AssessmentSource, Feedback

from agent.demo_app.clock import NS_PER_S, SimClock
from agent.demo_app.corpus import FLUSH_EVERY, check_stored, tracing_to
from agent.demo_app.spans import record_exception, sim_span  # noqa: F401 - re-exported

HOURS = 72  # three simulated days

WORDS = ["quartz", "kestrel", "juniper", "obsidian", "marlin", "saffron", "tundra", "heron",
         "cobalt", "lichen", "vesper", "basalt", "ember", "fennel", "glacier", "hazel", "indigo",
         "jasper", "krypton", "lotus", "magma", "nimbus", "onyx", "pumice", "quill", "rowan",
         "sorrel", "tamarack", "umber", "vireo", "wren", "yarrow", "zephyr", "alder", "birch"]


# --- exceptions the simulated providers raise (their type names are what traces show) -------

class ServiceUnavailableError(Exception):
    """HTTP 503 from an upstream service."""


class AuthenticationError(Exception):
    """HTTP 401 from a provider."""


class PermissionDeniedError(Exception):
    """HTTP 403 from a provider."""


class BadRequestError(Exception):
    """HTTP 400 from a provider (e.g. context length exceeded)."""


class RateLimitError(Exception):
    """HTTP 429: background noise, not a planted fault."""


class APIConnectionError(Exception):
    """A dropped connection: background noise, not a planted fault."""


class ToolTimeoutError(Exception):
    """A tool call that ran out of time."""


# --- names --------------------------------------------------------------------------------

def tokens(rng: random.Random, n: int, used: set[str] | None = None) -> list[str]:
    """`n` distinctive tag values like ``kestrel47``: they never occur in prose by accident."""
    used = used if used is not None else set()
    out: list[str] = []
    while len(out) < n:
        t = f"{rng.choice(WORDS)}{rng.randint(10, 99)}"
        if t not in used and not any(t.rstrip("0123456789") == u.rstrip("0123456789")
                                     for u in out):
            used.add(t)
            out.append(t)
    return out


def one_of(rng: random.Random, pool: list[Any]) -> Any:
    return pool[rng.randrange(len(pool))]


def window(rng: random.Random) -> tuple[float, float]:
    """A 2-3 hour window (seconds from the start) away from the edges of the three days."""
    length = rng.uniform(2.0, 3.0) * 3600
    start = rng.uniform(8 * 3600, HOURS * 3600 - 8 * 3600 - length)
    return start, start + length


def start_ns() -> int:
    """Midnight UTC three days ago: the corpus ends today, like the demo's."""
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((today - timedelta(hours=HOURS)).timestamp()) * NS_PER_S


# --- traffic --------------------------------------------------------------------------------

@dataclass
class Request:
    """One planned trace: who asks, in which session and turn, when."""

    user_id: str
    session_id: str
    turn: int  # 1-based index of this trace in its session
    session_len: int
    offset_s: float
    tags: dict[str, str]
    user: dict[str, Any]


@dataclass
class Run:
    """Per-trace state: clock, randomness and the planted faults that actually happened."""

    request: Request
    clock: SimClock
    rng: random.Random
    start_ns: int
    fired: set[str] = field(default_factory=set)
    trace_id: str = ""
    error: Exception | None = None
    answer: Any = None
    facts: dict[str, Any] = field(default_factory=dict)

    def wait(self, low: float, high: float) -> None:
        self.clock.advance(self.rng.uniform(low, high))

    @property
    def offset_s(self) -> float:
        return (self.clock.now_ns - self.start_ns) / NS_PER_S


def session_length(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.40:
        return rng.randint(1, 2)
    if r < 0.72:
        return rng.randint(3, 4)
    return rng.randint(5, 8)


def plan_traffic(rng: random.Random, n_traces: int, tag_values: dict[str, list[str]],
                 confounder: tuple[str, str], win: tuple[float, float],
                 confounder_share: float = 0.08, in_window: float = 0.8) -> list[Request]:
    """Users with fixed tags, multi-turn sessions over three days, exactly `n_traces` turns.

    Users of the confounded segment (tag `confounder`) start most of their sessions inside
    `win`; otherwise they are like everyone else. Other users never carry that value.
    """
    ckey, cval = confounder
    n_users = max(20, n_traces // 7)
    users = []
    for i in range(n_users):
        special = i < max(3, int(n_users * confounder_share))
        tags = {}
        for key, values in tag_values.items():
            if key == ckey:
                tags[key] = cval if special else one_of(rng, [v for v in values if v != cval])
            else:
                tags[key] = one_of(rng, values)
        users.append({"id": f"user-{rng.getrandbits(32):08x}", "tags": tags, "special": special})
    requests: list[Request] = []
    n_sessions = 0
    while len(requests) < n_traces:
        user = one_of(rng, users)
        length = session_length(rng)
        span_s = length * 240.0
        if user["special"] and rng.random() < in_window:
            begin = rng.uniform(win[0], max(win[0], win[1] - span_s))
        else:
            begin = rng.uniform(0, HOURS * 3600 - span_s - 60)
        session_id = f"sess-{rng.getrandbits(40):010x}"
        n_sessions += 1
        t = begin
        for turn in range(1, length + 1):
            requests.append(Request(user["id"], session_id, turn, length, t, dict(user["tags"]),
                                    user))
            t += rng.uniform(30, 200)
    requests = requests[:n_traces]
    requests.sort(key=lambda r: r.offset_s)
    return requests


# --- MLflow plumbing -------------------------------------------------------------------------

@contextmanager
def seeded_trace_ids(seed_text: str) -> Iterator[None]:
    """OpenTelemetry draws trace ids from the global `random`: seed it, restore it after."""
    state = random.getstate()
    random.seed(seed_text)
    try:
        yield
    finally:
        random.setstate(state)


def experiment_id(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id if experiment else client.create_experiment(name)


def serve(runs: list[Run], handle, seed_text: str) -> None:
    """Trace every run through `handle(run)` (which sets run.trace_id/answer/error)."""
    with seeded_trace_ids(seed_text):
        for i, run in enumerate(runs):
            handle(run)
            last = i + 1 == len(runs)
            if (i + 1) % FLUSH_EVERY == 0 or last:
                # the last flush stops the export threads, as the demo's does (an idle consumer
                # makes each later flush wait out its one-second poll)
                mlflow.flush_trace_async_logging(terminate=last)


def feedback(run: Run, name: str, value: Any, source_type: str, source_id: str,
             rationale: str | None = None) -> None:
    """Log one assessment on the run's trace, stamped a little after the answer."""
    created_ms = (run.clock.now_ns + int(run.rng.uniform(2, 90) * NS_PER_S)) // 1_000_000
    mlflow.log_assessment(trace_id=run.trace_id, assessment=Feedback(
        name=name, value=value, rationale=rationale, create_time_ms=created_ms,
        source=AssessmentSource(source_type=source_type, source_id=source_id)))


def new_runs(requests: list[Request], rng: random.Random, t0_ns: int) -> list[Run]:
    return [Run(r, SimClock(t0_ns + int(r.offset_s * NS_PER_S)), random.Random(rng.getrandbits(64)),
                t0_ns) for r in requests]


def words(rng: random.Random, n: int) -> str:
    vocab = ["the", "data", "model", "results", "shows", "trend", "across", "regions", "with",
             "higher", "lower", "growth", "paper", "method", "baseline", "evidence", "suggests",
             "significant", "improvement", "compared", "previous", "quarter", "study", "sources"]
    return " ".join(rng.choice(vocab) for _ in range(n))


def write_corpus(app: str, design: Any, make_app, assess, tracking_uri: str, n_traces: int,
                 seed: int, experiment_name: str) -> tuple[list, str, int]:
    """Plan the traffic, serve every request through ``make_app(design, experiment_id)``,
    check the traces were stored, log the assessments (``assess(design, runs, rng)``).
    Returns the runs, the experiment id and the corpus start (ns)."""
    rng = random.Random(f"{app}:traffic:{seed}")
    t0 = start_ns()
    requests = plan_traffic(rng, n_traces, design.tag_values, design.confounder, design.window)
    runs = new_runs(requests, rng, t0)
    with tracing_to(tracking_uri):
        client = MlflowClient(tracking_uri)
        exp_id = experiment_id(client, experiment_name)
        serve(runs, make_app(design, exp_id).handle, f"{app}-trace-ids:{seed}:{exp_id}")
        check_stored(client, exp_id, {r.trace_id for r in runs}, what="traces")
        assess(design, runs, random.Random(f"{app}:assess:{seed}"))
    return runs, exp_id, t0
