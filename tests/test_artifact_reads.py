"""Reading artifacts from a real `mlflow server` while a writer rewrites them in place.

MLflow's artifact store rewrites a file in place (truncate, then write), so a server streaming
that file can announce more bytes than it then sends. Such a read was cut short, not refused:
it is tried again, and never surfaces as "tracking server unreachable" (it did, about one read
in five, in the concurrent-update tests)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import mlflow

from insights import artifacts

BODY = "notes: " + "x" * 40_000 + "\n"


def _rewrite_in_place(target: Path, stop: threading.Event) -> None:
    while not stop.is_set():
        with open(target, "w") as f:  # truncated, then written in two parts
            f.write(BODY[:20_000])
            f.flush()
            time.sleep(0.001)
            f.write(BODY[20_000:])
        time.sleep(0.02)  # a busy writer, not a tight loop


def _logged(mlflow_server, server_uri: str, tmp_path: Path, names: list[str]):
    client = mlflow.MlflowClient(server_uri)
    run = client.create_run(client.create_experiment(f"rewritten-{uuid.uuid4().hex[:8]}"))
    for name in names:
        (tmp_path / name).write_text(BODY)
        client.log_artifact(run.info.run_id, str(tmp_path / name), "entities")
    [target] = (mlflow_server.root / "artifacts").rglob(names[0])
    return client, run.info.run_id, target


def _while_rewritten(target: Path, read, times: int) -> list[str]:
    stop = threading.Event()
    writer = threading.Thread(target=_rewrite_in_place, args=(target, stop))
    writer.start()
    errors = []
    try:
        for _ in range(times):
            try:
                read()
            except Exception as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(str(exc))
    finally:
        stop.set()
        writer.join()
    return errors


def test_reading_a_file_rewritten_on_the_server_never_fails(mlflow_server, server_uri, tmp_path):
    client, run_id, target = _logged(mlflow_server, server_uri, tmp_path, ["issue.yaml"])
    errors = _while_rewritten(
        target, lambda: artifacts.read_text(client, run_id, "entities/issue.yaml"), 150)
    assert not errors, f"{len(errors)} of 150 reads failed, first: {errors[0]}"


def test_reading_a_folder_while_one_file_is_rewritten_never_fails(mlflow_server, server_uri,
                                                                   tmp_path):
    names = [f"issue-{i}.yaml" for i in range(4)]
    client, run_id, target = _logged(mlflow_server, server_uri, tmp_path, names)
    seen: list[int] = []

    artifact_uri = client.get_run(run_id).info.artifact_uri

    def read_dir(uri: str | None) -> None:  # one request per file; MLflow's folder download
        entries = artifacts.read_yaml_dir(client, run_id, "entities", "issue-", uri)
        seen.append(len(entries))

    for uri in (artifact_uri, None):
        errors = _while_rewritten(target, lambda: read_dir(uri), 30)
        assert not errors, f"{len(errors)} of 30 folder reads failed, first: {errors[0]}"
    assert set(seen) == {4}
