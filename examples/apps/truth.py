"""Ground truth for the generalisation apps, the scorer, and an unattended offline analysis.

A planted fault's trace set holds exactly the traces where the fault *manifested* (the outcome
happened because of it). `score` matches issues to faults by their cited traces only: nothing
here, nor in the analyst, is keyed to the names the apps happened to draw.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

FAMILIES = ("tag_error", "outage", "conditional_slow", "truncation", "empty_answer",
            "tool_loop", "failing_assessment", "session_degrade")
MIN_HITS = 5
MIN_PRECISION = 0.8
MIN_COVERAGE = 0.7


@dataclass
class Fault:
    name: str
    family: str
    description: str
    trace_ids: set[str] = field(default_factory=set)
    params: dict[str, Any] = field(default_factory=dict)  # what the fault looks like in spans


@dataclass
class GroundTruth:
    app: str
    seed: int
    experiment_id: str
    faults: dict[str, Fault]
    confounder: tuple[str, str]
    window_ms: tuple[int, int]  # the time-bound fault the confounded segment piles into
    start_ms: int
    end_ms: int
    n_traces: int
    generation_seconds: float = 0.0

    def to_json(self) -> str:
        d = asdict(self)
        for f in d["faults"].values():
            f["trace_ids"] = sorted(f["trace_ids"])
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> GroundTruth:
        d = json.loads(text)
        d["faults"] = {k: Fault(**{**v, "trace_ids": set(v["trace_ids"])})
                       for k, v in d["faults"].items()}
        d["confounder"] = tuple(d["confounder"])
        d["window_ms"] = tuple(d["window_ms"])
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> GroundTruth:
        return cls.from_json(Path(path).read_text())

    def summary(self) -> str:
        lines = [f"{self.app} seed {self.seed}: {self.n_traces} traces, experiment "
                 f"{self.experiment_id}, confounder {self.confounder[0]}={self.confounder[1]}"]
        for f in self.faults.values():
            lines.append(f"  {f.name:<28} {f.family:<19} {len(f.trace_ids):>5}  {f.description}")
        return "\n".join(lines)


@dataclass
class Match:
    fault: str
    family: str
    traces: int
    issue_title: str | None
    precision: float
    coverage: float

    @property
    def found(self) -> bool:
        return self.precision >= MIN_PRECISION and self.coverage >= MIN_COVERAGE


@dataclass
class Score:
    app: str
    seed: int
    matches: list[Match]
    confounder: tuple[str, str]
    confounder_raised: bool
    confounder_issues: list[str]
    false_alarms: list[str]  # titles of issues matching no fault
    n_issues: int
    overlaps: list[tuple[str, int, dict[str, int]]] = field(default_factory=list)

    def details(self) -> str:
        """Every issue: its evidence size and how many traces it shares with each fault."""
        return "\n".join(f"- {title[:90]} [{n}] " + (", ".join(f"{k}: {v}" for k, v in hits.items())
                                                     or "matches no fault")
                         for title, n, hits in self.overlaps)

    @property
    def found(self) -> int:
        return sum(m.found for m in self.matches)

    def table(self) -> str:
        rows = [f"### {self.app} (seed {self.seed}): {self.found}/{len(self.matches)} faults "
                f"found, {self.n_issues} issues",
                "",
                "| fault | family | traces | best issue | precision | coverage | found |",
                "|---|---|---:|---|---:|---:|:---:|"]
        for m in self.matches:
            title = (m.issue_title or "-").replace("|", "/")[:70]
            rows.append(f"| {m.fault} | {m.family} | {m.traces} | {title} | {m.precision:.2f} "
                        f"| {m.coverage:.2f} | {'yes' if m.found else 'no'} |")
        ckey, cval = self.confounder
        rows.append("")
        rows.append(f"confounder {ckey}={cval}: "
                    + ("RAISED by " + "; ".join(self.confounder_issues)
                       if self.confounder_raised else "not raised"))
        rows.append(f"false alarms ({len(self.false_alarms)}): "
                    + ("; ".join(t[:60] for t in self.false_alarms) or "none"))
        return "\n".join(rows)


def score(issues: list, truth: GroundTruth) -> Score:
    """Match each planted fault to its best issue (by evidence traces); flag the confounder."""
    matches: list[Match] = []
    matched_issue_ids: set[str] = set()
    for fault in truth.faults.values():
        best: tuple[float, float, Any] | None = None
        for issue in issues:
            ids = set(issue.trace_ids)
            hit = len(ids & fault.trace_ids)
            if hit < min(MIN_HITS, len(fault.trace_ids)) or hit == 0:
                continue
            matched_issue_ids.add(issue.issue_id)
            precision, coverage = hit / len(ids), hit / len(fault.trace_ids)
            key = (precision, coverage, issue)
            # an issue that finds the fault beats a purer one that covers too little of it
            if best is None or _rank(key) > _rank(best):
                best = key
        if best is None:
            matches.append(Match(fault.name, fault.family, len(fault.trace_ids), None, 0.0, 0.0))
        else:
            matches.append(Match(fault.name, fault.family, len(fault.trace_ids), best[2].title,
                                 best[0], best[1]))
    cval = truth.confounder[1].lower()
    naming = [i.title for i in issues
              if cval in f"{i.title}\n{i.description}".lower()]
    false_alarms = [i.title for i in issues if i.issue_id not in matched_issue_ids]
    overlaps = [(i.title, len(set(i.trace_ids)),
                 {f.name: n for f in truth.faults.values()
                  if (n := len(set(i.trace_ids) & f.trace_ids))}) for i in issues]
    return Score(truth.app, truth.seed, matches, truth.confounder, bool(naming), naming,
                 false_alarms, len(issues), overlaps)


def _rank(key: tuple) -> tuple:
    precision, coverage = key[0], key[1]
    return (precision >= MIN_PRECISION and coverage >= MIN_COVERAGE, precision, coverage)


def analyse(tracking_uri: str, experiment_id: str, report_dir: str | None = None) -> list:
    """One unattended offline analysis, in-process; the issues that run raised."""
    from agent.offline import OfflineAnalyst
    from insights import InsightsClient
    from workflows.analyze_experiment import WorkflowContext, build_graph

    client = InsightsClient(tracking_uri)
    ctx = WorkflowContext(client=client, analyst=OfflineAnalyst(), auto_answer=True,
                          report_dir=report_dir or tempfile.mkdtemp(prefix="gen-report-"))
    events = list(build_graph().stream({"experiment_id": experiment_id}, context=ctx,
                                       stream_mode="custom"))
    run_ids = {e["run_id"] for e in events if isinstance(e, dict) and e.get("run_id")}
    return [i for i in client.list_issues(experiment_id) if i.source_run_id in run_ids]


def timed_analyse(tracking_uri: str, experiment_id: str, report_dir: str | None = None
                  ) -> tuple[list, float]:
    started = time.monotonic()
    issues = analyse(tracking_uri, experiment_id, report_dir)
    return issues, time.monotonic() - started


# --- does a stored trace show the fault? (used by the honesty tests) ------------------------

def manifests(trace, fault: Fault) -> bool:
    """True if `trace` (an mlflow Trace with spans) shows `fault` in its generic structure."""
    p = fault.params
    spans = trace.data.spans
    named = [s for s in spans if s.name in set(p.get("span_names", []))]
    if fault.family in ("tag_error", "outage", "session_degrade"):
        return any(_error_matches(s, p["error_type"], p["error_match"]) for s in named)
    if fault.family == "tool_loop":
        return (len(named) >= p["min_calls"]
                and any(_error_matches(s, p["error_type"], p["error_match"]) for s in named))
    if fault.family == "conditional_slow":
        slow = [s for s in named if (s.end_time_ns - s.start_time_ns) / 1e6 >= p["min_ms"]]
        return bool(slow)
    if fault.family == "truncation":
        for s in spans:
            out = s.outputs if isinstance(s.outputs, dict) else {}
            if _finish_reason(out) == p["reason"] and s.attributes.get(
                    "mlflow.llm.model") == p["model"]:
                usage = s.attributes.get("mlflow.chat.tokenUsage") or {}
                return usage.get("output_tokens") == p["max_tokens"]
        return False
    if fault.family == "empty_answer":
        root = next(s for s in spans if s.parent_id is None)
        docs_empty = any(s.outputs == [] for s in spans if s.span_type == "RETRIEVER")
        out = root.outputs
        text = out.get("answer") if isinstance(out, dict) else out
        return docs_empty and text == ""
    if fault.family == "failing_assessment":
        return any(a.name == p["assessment"] and getattr(a, "value", None) in p["failing_values"]
                   for a in trace.info.assessments)
    raise ValueError(fault.family)


def _error_matches(span, error_type: str, match: str) -> bool:
    if span.status.status_code != "ERROR":
        return False
    for e in span.events:
        if e.name == "exception" and e.attributes.get("exception.type") == error_type \
                and match in str(e.attributes.get("exception.message", "")):
            return True
    return False


def _finish_reason(out: dict) -> str | None:
    if "stop_reason" in out:
        return out["stop_reason"]
    if out.get("choices"):
        return out["choices"][0].get("finish_reason")
    if out.get("generations"):
        gen = out["generations"][0][0]
        return (gen.get("generation_info") or {}).get("finish_reason")
    return None


# --- stores: generate once per (app, seed, size, code, day), keep, copy -----------------------

APPS = {"research_assistant": "examples.apps.research_assistant",
        "data_agent": "examples.apps.data_agent"}


def generate(app: str, tracking_uri: str, n_traces: int, seed: int,
             experiment_name: str | None = None) -> GroundTruth:
    """Run `app`'s generator (see its module's `generate`)."""
    module = importlib.import_module(APPS[app])
    return module.generate(tracking_uri, n_traces, seed, experiment_name or app)


@dataclass
class Store:
    """A SQLite store holding one generated experiment, with its truth.json beside it."""

    root: Path
    truth: GroundTruth

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def copy_to(self, dst: Path) -> Store:
        """A byte copy whose stored artifact paths point into `dst`."""
        shutil.copytree(self.root, dst)
        _rewrite_paths(dst / "mlflow.db", str(self.root), str(dst))
        return Store(dst, self.truth)


def build_store(root: Path, app: str, n_traces: int, seed: int,
                template: Path | None = None) -> Store:
    """Generate the store under `root`. `template`: an empty, migrated MLflow database to start
    from (a copy of it skips MLflow's migrations of a new database, ~1 s of CPU)."""
    root.mkdir(parents=True, exist_ok=True)
    if template is not None:
        shutil.copyfile(template, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    from mlflow import MlflowClient

    MlflowClient(uri).create_experiment(app, artifact_location=(root / "artifacts").as_uri())
    truth = generate(app, uri, n_traces, seed, app)
    truth.save(root / "truth.json")
    return Store(root, truth)


def cache_dir() -> Path:
    """The test fixture cache (same folder and override as tests/helpers/fixtures.py)."""
    root = os.environ.get("INSIGHTS_TEST_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), f"insights-agent-test-cache-{os.getuid()}")
    Path(root).mkdir(parents=True, exist_ok=True)
    return Path(root)


def cache_key(app: str, n_traces: int, seed: int) -> str:
    """Seed, size, the generators' code (and the demo span helpers), MLflow, and the day (the
    corpus ends at today's midnight UTC). Not the scorer: editing it keeps the stores."""
    import mlflow

    import agent.demo_app as demo_app

    digest = hashlib.sha256()
    here = Path(__file__).parent
    files = [here / f for f in ("sim.py", "research_assistant.py", "data_agent.py")]
    files += [Path(demo_app.__file__).parent / f for f in ("spans.py", "clock.py")]
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    day = datetime.now(timezone.utc).strftime("%Y%m%d")
    parts = [app, str(n_traces), str(seed), mlflow.__version__, day, digest.hexdigest()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def cached_store(app: str, n_traces: int, seed: int, template: Path | None = None) -> Store:
    """The pristine generated store (read-only: copy it before analysing). Built on first use
    (from `template`, if given: see `build_store`), kept in the fixture cache;
    `INSIGHTS_TEST_CACHE=0` builds a private one each time."""
    if os.environ.get("INSIGHTS_TEST_CACHE", "1") == "0":
        return build_store(Path(tempfile.mkdtemp(prefix=f"gen-{app}-")) / "store", app,
                           n_traces, seed, template)
    cache = cache_dir()
    entry = cache / f"gen-{app}-{seed}-{n_traces}-{cache_key(app, n_traces, seed)}"
    with _build_lock(entry):  # parallel test workers build it once; the others wait
        _build_entry(cache, entry, app, n_traces, seed, template)
    return Store(entry, GroundTruth.load(entry / "truth.json"))


@contextlib.contextmanager
def _build_lock(entry: Path):
    """An exclusive lock named after the cache entry, held while it is checked and built."""
    import fcntl

    with open(entry.with_name(f".lock-{entry.name}"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_entry(cache: Path, entry: Path, app: str, n_traces: int, seed: int,
                 template: Path | None) -> None:
    if not (entry / "truth.json").exists():
        for old in cache.glob(f"gen-{app}-{seed}-{n_traces}-*"):  # other code or day
            shutil.rmtree(old, ignore_errors=True)
        partial = cache / f".partial-gen-{uuid.uuid4().hex}"
        try:
            store = build_store(partial, app, n_traces, seed, template)
            (partial / "truth.json").unlink()
            _rewrite_paths(partial / "mlflow.db", str(partial), str(entry))
            store.truth.save(partial / "truth.json")  # written last: marks a whole entry
            with contextlib.suppress(OSError):
                os.rename(partial, entry)
        finally:
            shutil.rmtree(partial, ignore_errors=True)


def _rewrite_paths(db: Path, old: str, new: str) -> None:
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for _, column, ctype, *_ in con.execute(f'PRAGMA table_info("{table}")'):
                if ctype.upper().startswith(("VARCHAR", "TEXT", "CHAR")) or not ctype:
                    con.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                                f'WHERE "{column}" LIKE ?', (old, new, f"%{old}%"))
        con.commit()
    finally:
        con.close()
