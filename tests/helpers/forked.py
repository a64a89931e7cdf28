"""Worker processes for the multi-process tests, forked from a server that imported MLflow once.

Starting each worker as a fresh ``python`` meant every worker imported MLflow, the SDK and a
tracking store (seconds each, far more when four start together on two cores). Here workers
come from a ``multiprocessing`` "forkserver" whose server process imports those modules once
(``PRELOAD``) and then forks a child per worker. Each worker is still a separate OS process
that builds its own InsightsClient, MLflow client and database/HTTP connections after the fork:
the server opens none, it only imports modules.

A forkserver child inherits the environment and working directory the server had when it
started, not the test's (which monkeypatches ``MLFLOW_TRACKING_URI`` and friends), so each
child is given the test's ``os.environ`` and a working directory explicitly. Its stdout and
stderr go to ``worker-N.log`` in the test's folder; its return value to ``result-N.json``, or
its traceback to ``error-N.txt``. ``Workers`` turns a worker that failed, died or overran its
deadline into a test failure with that traceback and log, and kills whatever is left.

The server is created on first use, once per pytest process, and ends with it (it exits when
the pytest process that started it is gone).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from multiprocessing import forkserver
from pathlib import Path
from typing import Any, Self

# Imported by the server before it forks any worker: what a worker would otherwise import
# after start-up (the SDK, MLflow's SQLite and REST stores, the artifact repositories).
# The forkserver ignores a module that fails to import, so a worker reports whether the
# first of these was loaded (see ``Workers.results``).
PRELOAD = [
    "insights.client",
    "insights.journal",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.tracking.rest_store",
    "mlflow.store.tracking.sqlalchemy_workspace_store",
    "mlflow.tracking.request_header.registry",
    "mlflow.store.artifact.local_artifact_repo",
    "mlflow.store.artifact.http_artifact_repo",
    "mlflow.store.artifact.mlflow_artifacts_repo",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.store.model_registry.rest_store",
    "alembic.migration",
    "alembic.script",
    "alembic.command",
    "alembic.config",
    "sqlalchemy.dialects.sqlite",
    "requests",
    "netrc",
    "yaml",
]

_CONTEXT: multiprocessing.context.BaseContext | None = None


def context() -> multiprocessing.context.BaseContext:
    """The forkserver context, its server started (preloading in the background) on first use.

    Call it early in a test (before creating its data) so the server's imports overlap the
    test's own set-up."""
    global _CONTEXT
    if _CONTEXT is None:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)  # no effect if something else started it already
        forkserver.ensure_running()
        _CONTEXT = ctx
    return _CONTEXT


def _child(target: Callable[..., Any], index: int, args: tuple, folder: str,
           env: dict[str, str], cwd: str) -> None:
    """Runs in the forked worker: the test's environment, then ``target(index, *args)``."""
    preloaded = PRELOAD[0] in sys.modules
    out = Path(folder)
    log_fd = os.open(out / f"worker-{index}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        result = target(index, *args)
        partial = out / f".result-{index}.json"
        partial.write_text(json.dumps({"result": result, "preloaded": preloaded}))
        os.replace(partial, out / f"result-{index}.json")
    except BaseException:  # noqa: BLE001  (reported to the test, then a non-zero exit)
        text = traceback.format_exc()
        (out / f"error-{index}.txt").write_text(text)
        sys.stderr.write(text)
        sys.stderr.flush()
        sys.exit(1)


class Workers:
    """``n`` worker processes running ``target(index, *args)``, each reporting to ``folder``.

    Use as a context manager: on exit every worker still running is killed."""

    def __init__(self, target: Callable[..., Any], n: int, args: Sequence[Any], folder: Path,
                 cwd: Path | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        ctx = context()
        env = dict(os.environ)
        self.procs = [
            ctx.Process(target=_child, name=f"worker-{i}", daemon=True,
                        args=(target, i, tuple(args), str(self.folder), env,
                              str(cwd or self.folder)))
            for i in range(n)
        ]
        try:
            for p in self.procs:
                p.start()
        except BaseException:
            self.kill()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    def kill(self) -> None:
        for p in self.procs:
            if p.pid is not None and p.exitcode is None:
                p.kill()
        for p in self.procs:
            if p.pid is not None:
                p.join(10)

    def _report(self, i: int, why: str) -> str:
        parts = [f"worker {i} {why}"]
        error, log = (self.folder / f"error-{i}.txt"), (self.folder / f"worker-{i}.log")
        text = error.read_text(errors="replace") if error.exists() else ""
        if text:
            parts.append(f"--- its traceback:\n{text[-6000:]}")
        # its output besides the traceback (which it also printed): warnings, MLflow's logs
        rest = log.read_text(errors="replace").replace(text, "").strip() if log.exists() else ""
        if rest:
            parts.append(f"--- its output ({log}):\n{rest[-4000:]}")
        return "\n".join(parts)

    def fail_if_any_exited(self, why: str) -> None:
        """pytest.fail if a worker has ended already (for waits where none should have)."""
        import pytest

        for i, p in enumerate(self.procs):
            if p.exitcode is not None:
                self.kill()
                pytest.fail(self._report(i, f"{why} (exit code {p.exitcode})"), pytrace=False)

    def results(self, timeout: float) -> list[Any]:
        """Wait for every worker (one deadline for all); their return values, in order.
        A worker that failed, died, wrote no result or overran the deadline fails the test."""
        import pytest  # (not at the top: a worker imports this module too, and needs no pytest)

        deadline = time.monotonic() + timeout
        for i, p in enumerate(self.procs):
            p.join(max(0.0, deadline - time.monotonic()))
            if p.exitcode is None:
                self.kill()
                pytest.fail(self._report(i, f"did not finish within {timeout:.0f} s"),
                            pytrace=False)
        out = []
        for i, p in enumerate(self.procs):
            result = self.folder / f"result-{i}.json"
            if p.exitcode != 0 or not result.exists():
                pytest.fail(self._report(i, f"failed (exit code {p.exitcode})"), pytrace=False)
            data = json.loads(result.read_text())
            if not data["preloaded"]:
                warnings.warn(f"the forkserver did not preload {PRELOAD[0]}: workers start "
                              "slowly", stacklevel=2)
            out.append(data["result"])
        return out
