"""Thin helpers over MLflow run artifacts: YAML in and out, listings, folder downloads.

Errors from the store are translated here into the SDK's typed errors so callers never see a
raw MLflow exception, a requests traceback or a silent ``None``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import yaml

from insights import yamlio
from insights.compat import download_artifact_file, write_local_artifact
from insights.errors import (
    InsightsError,
    InvalidInputError,
    NotFoundError,
    StorageError,
    TrackingServerError,
)

REMOTE_READ_THREADS = 16   # small files on a remote store: latency-bound, so many in flight


@contextlib.contextmanager
def store_errors(what: str = "tracking store") -> Iterator[None]:
    """Translate MLflow and transport failures into typed Insights errors."""
    try:
        yield
    except InsightsError:
        raise
    except Exception as exc:
        if _is_mlflow_error(exc):
            raise _from_mlflow(exc, what) from None
        if isinstance(exc, (ConnectionError, OSError)):
            raise TrackingServerError(f"{what} unreachable: {_first_line(str(exc))}") from None
        if exc.__class__.__module__.startswith(("requests", "urllib3")):  # and friends
            raise TrackingServerError(f"{what} unreachable: {_first_line(str(exc))}") from None
        raise


def _is_mlflow_error(exc: Exception) -> bool:
    """Whether ``exc`` is an ``MlflowException``, without importing MLflow (seconds) in a
    process that never did: then nothing can have raised one."""
    module = sys.modules.get("mlflow.exceptions")
    return module is not None and isinstance(exc, module.MlflowException)


def _from_mlflow(exc: Any, what: str) -> InsightsError:
    """The typed error for an ``MlflowException`` raised while doing ``what``."""
    code = getattr(exc, "error_code", "")
    message = _first_line(exc.message if hasattr(exc, "message") else str(exc))
    if code == "RESOURCE_DOES_NOT_EXIST":
        return NotFoundError(message)
    if code == "INVALID_PARAMETER_VALUE" and not _looks_unreachable(message):
        return InvalidInputError(message)
    if _looks_unreachable(message):
        return TrackingServerError(f"Tracking server unreachable ({what}): {_endpoint(message)}")
    return TrackingServerError(f"{what} failed: {message}")


def _looks_unreachable(message: str) -> bool:
    lowered = message.lower()
    return any(s in lowered for s in ("max retries", "connection refused", "failed to establish"))


def _endpoint(message: str) -> str:
    """Shorten a urllib3 retry message to the host it could not reach."""
    match = re.search(r"host='([^']+)', port=(\d+)", message)
    return f"cannot connect to {match.group(1)}:{match.group(2)}" if match else message


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line[:300]


_parsed: dict[tuple[str, int, int], dict[str, Any]] = {}


def dump_yaml(data: dict[str, Any]) -> str:
    """YAML text of an entity file (long evidence lists one JSON-shaped line per entry)."""
    return yamlio.dump(data)


def write_yaml(client, run_id: str, path: str, data: dict[str, Any]) -> None:
    with store_errors("writing artifact"):
        client.log_text(run_id, dump_yaml(data), path)


class LocalRunWriter:
    """A client whose ``log_text`` for one run with a local artifact folder writes the file in
    place as ``MlflowClient.log_text`` would through MLflow's ``LocalArtifactRepository``
    (``compat.write_local_artifact``); anything else is passed to ``client``.

    Why: on a local SQLite store the run (and its artifact URI) is read from the store's
    tables; ``MlflowClient.log_text`` would import MLflow and start its SQL store (seconds)
    only to look the run up again and write a small file into that folder."""

    def __init__(self, client: Any, run_id: str, root: str):
        self._client = client
        self._run_id = run_id
        self._root = root
        self.tracking_uri = client.tracking_uri

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        if run_id != self._run_id:
            self._client.log_text(run_id, text, artifact_file)
        else:
            write_local_artifact(self._root, artifact_file, text)


def local_writer(client: Any, run_id: str, artifact_uri: str) -> LocalRunWriter | None:
    """A ``LocalRunWriter`` for the run, None when its artifacts are not on this disk."""
    root = _uri_path(artifact_uri)
    return None if root is None else LocalRunWriter(client, run_id, root)


def read_yaml(client, run_id: str, path: str) -> dict[str, Any] | None:
    """Read one YAML artifact, or ``None`` if it does not exist.

    A file that is not a YAML mapping raises ``StorageError`` naming it.
    """
    text = read_text(client, run_id, path)
    return None if text is None else parse(text, _where(path, run_id))


_artifact_uris: dict[tuple[str, str], str] = {}


def remember_artifact_uri(tracking_uri: str, run_id: str, artifact_uri: str) -> None:
    """Note a run's artifact URI found some other way, so reads need not look the run up."""
    _artifact_uris[(str(tracking_uri), run_id)] = artifact_uri or ""


def _local_root(client, run_id: str) -> Path | None:
    """The run's artifact folder when it is on this machine's disk, else None.

    Why: every MLflow artifact call on a ``runs:/`` path looks the run up again (several
    queries) and copies the file to a temporary folder; an update reads a snapshot and a
    journal folder, so on a local store most of its time went there. A run's artifact URI
    never changes, so it is looked up once per process.
    """
    path = _uri_path(_artifact_uri(client, run_id))
    return Path(path) if path is not None else None


def _artifact_uri(client, run_id: str) -> str | None:
    """The run's artifact URI, looked up once per process; None when the run is unknown."""
    key = (str(getattr(client, "tracking_uri", "")), run_id)
    uri = _artifact_uris.get(key)
    if uri is None:
        try:
            with store_errors("reading the run"):
                uri = client.get_run(run_id).info.artifact_uri or ""
        except NotFoundError:
            return None          # MLflow's own calls below say what is missing
        if len(_artifact_uris) > 10_000:
            _artifact_uris.clear()
        _artifact_uris[key] = uri
    return uri


_remote_repos: dict[tuple[str, str], Any] = {}


def _remote_repo(client, run_id: str) -> Any | None:
    """The artifact repository of a run whose artifacts are not on this disk, kept per run.

    Why: MLflow's public reads (``download_artifacts``, ``list_artifacts``) look the run up and
    ask whether the path is a folder before every download: three requests where one does. On
    a tracking server each request is a round trip, and an update reads several files. None
    when the run is unknown or its artifacts are local (callers then take MLflow's path)."""
    uri = _artifact_uri(client, run_id)
    if not uri or _uri_path(uri) is not None:
        return None
    return _repository(client, uri)


def _repository(client, uri: str) -> Any:
    """MLflow's artifact repository for ``uri``, made once per process (and tracking URI)."""
    key = (str(client.tracking_uri), uri)
    repo = _remote_repos.get(key)
    if repo is None:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        with store_errors("reading artifacts"):
            repo = get_artifact_repository(uri, tracking_uri=client.tracking_uri)
        if len(_remote_repos) > 1024:
            _remote_repos.clear()
        _remote_repos[key] = repo
    return repo


def _uri_path(uri: str | None) -> str | None:
    """The local path of a ``file://`` or plain-path artifact URI, else None."""
    if not uri:
        return None
    if uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(uri).path)
    if "://" not in uri and ":" not in uri.split("/")[0]:
        return uri
    return None


def read_text(client, run_id: str, path: str) -> str | None:
    """Read one text artifact, or ``None`` if it does not exist."""
    root = _local_root(client, run_id)
    if root is not None:
        try:
            return (root / path).read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise StorageError(f"{_where(path, run_id)} cannot be read: {exc}") from None
    repo = _remote_repo(client, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with store_errors("reading artifact"):
                if repo is None:
                    local = _whole(client.download_artifacts, run_id, path, tmp)
                else:        # one request: a path named as a file is fetched as one
                    local = os.path.join(tmp, os.path.basename(path) or "artifact")
                    _whole(download_artifact_file, repo, path, local)
        except (NotFoundError, TrackingServerError) as exc:
            if _missing(exc):
                return None
            raise
        try:
            return Path(local).read_text()
        except (FileNotFoundError, IsADirectoryError):
            return None


# A server streaming a file that a writer truncates meanwhile (MLflow's artifact store rewrites
# files in place) sends fewer bytes than it announced: that read was cut short, the server is
# not unreachable. Such a download is tried again a few times before the error stands.
CUT_SHORT_TRIES = 8


def _whole(download, *args: Any) -> Any:
    """``download(*args)``, again when the body came cut short (see ``CUT_SHORT_TRIES``)."""
    for attempt in range(CUT_SHORT_TRIES - 1):
        try:
            return download(*args)
        except Exception as exc:
            text = str(exc).lower()
            if "incompleteread" not in text and "connection broken" not in text:
                raise
            time.sleep(0.02 * (attempt + 1))
    return download(*args)  # the last try: its error stands


def _missing(exc: Exception) -> bool:
    text = str(exc).lower()
    if isinstance(exc, NotFoundError):
        return True
    return any(s in text for s in ("no such file", "not found", "does not exist", "404"))


def _where(path: str, run_id: str) -> str:
    return f"{path} (run {run_id})"


def _load(path: Path, where: str) -> dict[str, Any]:
    return parse(path.read_text(), where)


def _load_cached(path: Path, where: str) -> dict[str, Any]:
    """Parse a file in place, reusing the result while its size and mtime are unchanged."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _parsed:
        if len(_parsed) > 50_000:
            _parsed.clear()
        _parsed[key] = _load_settled(path, where)
    return dict(_parsed[key])


def _load_settled(path: Path, where: str, attempts: int = 5) -> dict[str, Any]:
    """A snapshot being replaced can be caught half-written; read again until it parses."""
    for _ in range(attempts - 1):
        try:
            return _load(path, where)
        except StorageError:
            time.sleep(0.05)
    return _load(path, where)


def parse(text: str, where: str) -> dict[str, Any]:
    """The mapping a YAML entity file holds; ``StorageError`` naming ``where`` otherwise."""
    try:
        data = yamlio.load(text)
    except yaml.YAMLError as exc:
        raise StorageError(f"{where} is not valid YAML: {_first_line(str(exc))}") from None
    if data is None:
        raise StorageError(f"{where} is empty")
    if not isinstance(data, dict):
        raise StorageError(f"{where} is not a YAML mapping (found {type(data).__name__})")
    return data


DirEntry = tuple[str, "dict[str, Any] | StorageError"]


def read_yaml_dir(client, run_id: str, folder: str, prefix: str,
                  artifact_uri: str | None = None) -> list[DirEntry]:
    """Read every ``{prefix}*.yaml`` directly in ``folder``: (artifact path, mapping or error).

    A file that does not parse comes back as its ``StorageError``, so one bad file never hides
    the others. On a local artifact store the files are read in place (no copies, parsed once
    per change); elsewhere one listing, then the files in parallel. Without the run's artifact
    URI the folder comes down through MLflow's own download.
    """
    local_root = local_artifact_dir(artifact_uri)
    if local_root is not None:
        root = Path(local_root) / folder
        files = sorted(p for p in root.glob(f"{prefix}*.yaml") if p.is_file()) if root.is_dir() else []
        return [_entry(f"{folder}/{p.name}", run_id, partial(_load_cached, p))
                for p in files]
    if artifact_uri:
        return _read_remote_yaml_dir(client, run_id, folder, prefix, artifact_uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = download_dir(client, run_id, folder, tmp)
        if local is None:
            return []
        files = sorted(p for p in Path(local).glob(f"{prefix}*.yaml") if p.is_file())
        return [_entry(f"{folder}/{p.name}", run_id, partial(_load, p)) for p in files]


def _entry(path: str, run_id: str, load) -> DirEntry:
    where = _where(path, run_id)
    try:
        data = load(where)
    except StorageError as exc:
        return path, exc
    return path, data


def _read_remote_yaml_dir(client, run_id: str, folder: str, prefix: str,
                          artifact_uri: str) -> list[DirEntry]:
    """One listing, then the matching files fetched side by side.

    A remote store has no bulk download: each file is one request. MLflow's own folder download
    runs 2 per CPU core at once; a list of a few hundred small YAML files is bound by round-trip
    latency, not bandwidth, so more requests in flight make it several times faster.
    """
    with store_errors("reading artifacts"):
        repo = _repository(client, artifact_uri)
        try:
            infos = repo.list_artifacts(folder)
        except Exception as exc:  # a folder never written lists as missing on some stores
            if _missing(exc):
                return []
            raise
        paths = sorted(i.path for i in infos if not i.is_dir
                       and os.path.basename(i.path).startswith(prefix) and i.path.endswith(".yaml"))
        if not paths:
            return []
        with tempfile.TemporaryDirectory() as tmp, \
                ThreadPoolExecutor(min(REMOTE_READ_THREADS, len(paths))) as pool:
            def fetch(path: str) -> DirEntry:
                local = os.path.join(tmp, os.path.basename(path))
                # the public download_artifacts() first asks whether the path is a folder,
                # one more request per file; the listing already said it is a file
                _whole(download_artifact_file, repo, path, local)
                return _entry(path, run_id, partial(_load, Path(local)))

            return list(pool.map(fetch, paths))


def local_artifact_dir(artifact_uri: str | None) -> str | None:
    """The run's artifact folder when it is on this machine's disk, else None."""
    path = _uri_path(artifact_uri)
    return path if path is not None and os.path.isdir(path) else None


def download_dir(client, run_id: str, folder: str, dst: str) -> str | None:
    """Download an artifact folder; ``None`` when it does not exist.

    On a local artifact store the folder itself is returned (read it, do not change it)."""
    root = _local_root(client, run_id)
    if root is not None:
        return str(root / folder) if (root / folder).is_dir() else None
    repo = _remote_repo(client, run_id)
    try:
        with store_errors("reading artifacts"):
            if repo is None:
                local = _whole(client.download_artifacts, run_id, folder, dst)
            else:
                local = _whole(repo.download_artifacts, folder, dst)
    except (NotFoundError, TrackingServerError) as exc:
        if _missing(exc):
            return None
        raise
    return local if os.path.isdir(local) else None


def list_sizes(client, run_id: str, folder: str) -> list[tuple[str, int]]:
    """(name, size) of the files directly in ``folder``, sorted by name."""
    root = _local_root(client, run_id)
    if root is not None:
        try:
            with os.scandir(root / folder) as it:
                return sorted((e.name, e.stat().st_size) for e in it if e.is_file())
        except (FileNotFoundError, NotADirectoryError):
            return []
    infos = list_infos(client, run_id, folder)
    return sorted((os.path.basename(i.path), int(i.file_size or 0)) for i in infos if not i.is_dir)


def list_infos(client, run_id: str, folder: str) -> list[Any]:
    """MLflow's ``FileInfo`` listing of ``folder``, in one request on a remote store."""
    repo = _remote_repo(client, run_id)
    with store_errors("listing artifacts"):
        return client.list_artifacts(run_id, folder) if repo is None else repo.list_artifacts(folder)
