"""Shared fixtures: a real SQLite tracking store per test and a real `mlflow server` on loopback."""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

# Test data is written with MLflow's synchronous trace export: a trace is stored when its span
# ends. The asynchronous exporter (the default) gains nothing for a handful of traces, and each
# flush of it waits out its consumer thread's one-second poll: ~1-2 s per test that writes traces.
# Set before MLflow builds an exporter; the CLIs and servers the tests start inherit it.
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
# Storing a span with a model provider and token usage makes MLflow fetch that provider's price
# list from GitHub once per process; without internet that waited out ~7 s of retries in every
# worker, CLI and server that stored such spans. Prices come from MLflow's bundled catalog.
os.environ.setdefault("MLFLOW_MODEL_CATALOG_URI", "")

# The garbage collector runs ten times less often in test processes. Why: a test worker holds
# hundreds of thousands of objects (MLflow, LangGraph, Spark's client, the corpora), and every
# collection of the older generations walks them all; with Python's default thresholds that was
# ~6% of the workers' CPU (measured on tests/workflow: 153 -> 144 CPU-s, collections 4,651 -> 393).
# Only when garbage is collected changes, never what is collected.
gc.set_threshold(7000, 20, 20)

from helpers.spark_conf import pyspark_submit_args  # noqa: E402

# Every local Spark a test starts runs with settings for tiny data (see helpers/spark_conf.py).
os.environ.setdefault("PYSPARK_SUBMIT_ARGS", pyspark_submit_args())

import mlflow  # noqa: E402
import pytest  # noqa: E402
import requests  # noqa: E402

from helpers.fixtures import copy_template, sqlite_template, tracking_uri  # noqa: F401

# Fixtures whose use means a test talks to a real `mlflow server` (marked ``server``), and the
# parametrized store fixtures whose "server" param does.
SERVER_FIXTURES = {"mlflow_server", "server_uri", "server_experiment_id"}
PARAMETRIZED_STORES = ("store", "corpus")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_SESSION_EXPERIMENT_ID = os.environ.get("MLFLOW_EXPERIMENT_ID")


@pytest.fixture(autouse=True)
def _no_leaked_environment():
    """A test's changes to os.environ end with it. The CLIs set variables in-process on purpose
    (a `.env` file's MLFLOW_EXPERIMENT_ID, `--engine`'s INSIGHTS_ENGINE); left behind, they
    steer whichever test the same worker runs next."""
    saved = dict(os.environ)
    yield
    if dict(os.environ) != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _no_leaked_active_experiment():
    """Tests that log traces through MLflow's fluent API set an active experiment; clear it so
    no later test sees one it did not set."""
    yield
    mlflow.tracking.fluent._active_experiment_id = None
    # set_experiment also exports MLFLOW_EXPERIMENT_ID, which the SDK and CLIs read as the
    # default experiment: back to what the session started with (a module fixture's too)
    if os.environ.get("MLFLOW_EXPERIMENT_ID") != _SESSION_EXPERIMENT_ID:
        if _SESSION_EXPERIMENT_ID is None:
            os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        else:
            os.environ["MLFLOW_EXPERIMENT_ID"] = _SESSION_EXPERIMENT_ID


@pytest.fixture()
def experiment_id(tracking_uri: str, tmp_path: Path) -> str:  # noqa: F811 (the fixture)
    return mlflow.MlflowClient(tracking_uri).create_experiment(
        "test-exp", artifact_location=(tmp_path / "artifacts").as_uri()
    )


class MlflowServer:
    """A real `mlflow server` subprocess on 127.0.0.1 whose backend store starts as a copy of
    the migrated template (no migrations at start-up). It runs in its own process group so
    ``stop()`` ends the workers too.

    One worker by default: with more, uvicorn's workers share a socket on which it does not set
    TCP_NODELAY, so every response on a kept-alive connection (MLflow's client keeps them)
    waits out the client's delayed ACK, ~40 ms a request; one worker still serves requests
    concurrently (MLflow's handlers run in a thread pool)."""

    START_TIMEOUT_S = 180  # generous: a loaded 2-core machine can take minutes

    def __init__(self, root: Path, *, extra_args: tuple[str, ...] = (), workers: int = 1,
                 env: dict[str, str] | None = None):
        self.root = root
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args
        self.workers = workers
        self.env = dict(os.environ if env is None else env)
        self.proc: subprocess.Popen | None = None

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def start(self) -> None:
        """Start and wait for /health; on a timeout or an early exit, stop the whole process
        group and raise with the tail of the server's output."""
        self.root.mkdir(parents=True, exist_ok=True)
        backend = copy_template(self.root / "server.db")
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", backend,
            "--artifacts-destination", str(self.root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
            *self.extra_args,
        ]
        # No background job runner (scorer jobs, which no test uses): it is several polling
        # processes per server, CPU the tests need on a small machine.
        env = {**self.env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n"
                                   f"{self._log_tail()}")
            try:
                if requests.get(f"{self.uri}/health", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"mlflow server did not answer /health in {self.START_TIMEOUT_S} s:\n"
                           f"{self._log_tail()}")

    def _log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL it if it lingers. Safe to call twice."""
        if self.proc is None:
            return
        if self.proc.poll() is not None:  # the leader is gone; end any worker it left behind
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return
        for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory,
                  request: pytest.FixtureRequest) -> MlflowServer:
    """One real `mlflow server` on 127.0.0.1 for the whole session, always stopped at the end
    (a finalizer registered before it starts)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    request.addfinalizer(server.stop)
    server.start()
    return server


@pytest.fixture()
def server_uri(mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    mlflow.set_tracking_uri(mlflow_server.uri)
    yield mlflow_server.uri
    mlflow.set_tracking_uri(None)


@pytest.fixture()
def server_experiment_id(server_uri: str) -> str:
    import uuid

    return mlflow.MlflowClient(server_uri).create_experiment(f"exp-{uuid.uuid4().hex[:8]}")


@pytest.fixture(params=["sqlite", "server"])
def store(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(tracking_uri, experiment_id) on a local SQLite store and on a real loopback server."""
    if request.param == "sqlite":
        uri = request.getfixturevalue("tracking_uri")
        return uri, request.getfixturevalue("experiment_id")
    uri = request.getfixturevalue("server_uri")
    return uri, request.getfixturevalue("server_experiment_id")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that talks to a real `mlflow server` with ``server``, so
    ``pytest -m "not server"`` is a fast local loop: tests using a server fixture (directly or
    through another fixture), the "server" param of the parametrized store fixtures, and the
    REST/UI tests under tests/server/."""
    server_dir = Path(__file__).parent / "server"
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
                or any(params.get(name) == "server" for name in PARAMETRIZED_STORES)
                or server_dir in Path(str(item.path)).parents):
            item.add_marker(pytest.mark.server)
    _longest_files_first(items)


# Folders of files that generate the big example-app stores (minutes on a cold fixture cache),
# and folders whose files run whole analyses on demo corpora.
STORE_BUILDING_DIRS = ("generalisation",)
ANALYSIS_DIRS = ("workflow", "analyst")


def _longest_files_first(items: list[pytest.Item]) -> None:
    """Order files by how long they usually take, longest first, keeping each file's tests
    together and in their order. Why: workers take files in this order (``--dist loadfile``
    with ``--no-loadscope-reorder``; xdist would otherwise put files with the most tests
    first), so a long file taken last ran alone at the end while the other workers idled.
    Rank: files generating the example-app stores (one app per file, so two workers build
    them at once), the Spark files, analysis folders, files with server tests, the
    rest."""
    root = Path(__file__).parent
    rank: dict[Path, int] = {}
    for item in items:
        path = Path(str(item.path))
        mine = (0 if any(root / name in path.parents for name in STORE_BUILDING_DIRS)
                else 1 if _spark_file(path)
                else 2 if any(root / name in path.parents for name in ANALYSIS_DIRS)
                else 3 if item.get_closest_marker("server") else 4)
        rank[path] = min(rank.get(path, mine), mine)
    items.sort(key=lambda item: rank[Path(str(item.path))])  # stable: file order kept within


def _spark_file(path: str | Path) -> bool:
    """The Spark test files, by name: the scheduler sees node ids only, not markers."""
    return "spark" in Path(path).name


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadfile``, except that the files with "spark" in their name are one unit of
    work. Why: each worker that runs Spark tests starts a JVM and warms Spark's planner up
    (~10 s of CPU on 2 cores); on one worker the files share one local Spark."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SparkFilesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "spark files" if _spark_file(path) else path

    return SparkFilesTogether(config, log)


def pytest_unconfigure(config: pytest.Config) -> None:
    """An xdist worker whose session is over leaves without tearing its interpreter down.
    Why: the worker has sent every result by now, and freeing its heap (hundreds of thousands
    of objects) and modules took seconds that the whole run waited for at its end. Its
    servers, Spark and browsers were stopped by their fixtures; processes it started that are
    still alive see their pipe to it close."""
    if hasattr(config, "workerinput"):
        atexit.register(_leave_now)  # registered last, so it runs first of the exit handlers


def _leave_now() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: one worker more than there are CPUs (``--maxprocesses`` still caps it).
    Why: workers spend part of their time waiting (on a server's answer, a subprocess, a fixture
    another worker is building); on 2 cores a third worker kept the CPUs ~95% busy instead of
    ~84% and cut the suite by about a tenth. $PYTEST_XDIST_AUTO_NUM_WORKERS still decides."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    return (os.cpu_count() or 1) + 1
