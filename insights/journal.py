"""Lost-update-free entity files on an artifact store that has no compare-and-swap.

Each entity (an analysis, a hypothesis, an issue) has a snapshot, the PRD's
``insights/{kind}_{id}.yaml``, and a journal folder ``insights_journal/{kind}_{id}/`` of
immutable change files. A write never edits anything: it adds one change file, then folds the
whole journal into a fresh snapshot, then lists the journal again; if a change file appeared
meanwhile it folds again. So the last snapshot written has folded every change whose writer
finished, and two writers racing on one hypothesis both keep their evidence.

Folding is deterministic: changes apply in (time, writer id) order; scalar fields are
last-writer-wins, evidence is a union, metadata and metrics merge key by key.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import yaml

from insights import artifacts
from insights.errors import InsightsError
from insights.models import now_ms

SNAPSHOT_DIR = "insights"
JOURNAL_DIR = "insights_journal"
_MAX_FOLDS = 50


def snapshot_path(kind: str, entity_id: str | None) -> str:
    name = kind if entity_id is None else f"{kind}_{entity_id}"
    return f"{SNAPSHOT_DIR}/{name}.yaml"


def journal_path(kind: str, entity_id: str | None) -> str:
    name = kind if entity_id is None else f"{kind}_{entity_id}"
    return f"{JOURNAL_DIR}/{name}"


def _change_name() -> str:
    # Sortable by time first; the random tail orders writers that share a nanosecond.
    return f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.yaml"


def create(client, run_id: str, kind: str, entity_id: str | None, initial: dict[str, Any]) -> None:
    """Write the creation change and the first snapshot."""
    change = {"op": "create", "at": now_ms(), "state": initial}
    artifacts.write_yaml(client, run_id, f"{journal_path(kind, entity_id)}/{_change_name()}", change)
    artifacts.write_yaml(client, run_id, snapshot_path(kind, entity_id), initial)


def update(
    client,
    run_id: str,
    kind: str,
    entity_id: str | None,
    change: dict[str, Any],
    after_fold: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Record ``change`` and return the folded state it produced.

    ``change`` may hold ``set`` (fields, last writer wins), ``add_evidence`` (list of dicts),
    ``merge`` (dict fields merged key by key: metadata, metrics). ``after_fold`` runs with
    each folded state before the journal is re-checked (used to mirror fields into tags).
    """
    record = {"op": "update", "at": now_ms(), **change}
    folder = journal_path(kind, entity_id)
    artifacts.write_yaml(client, run_id, f"{folder}/{_change_name()}", record)
    for _ in range(_MAX_FOLDS):
        folded = _fold_folder(client, run_id, folder)
        if folded is None:          # a change file was still being written; look again
            time.sleep(0.05)
            continue
        names, state = folded
        artifacts.write_yaml(client, run_id, snapshot_path(kind, entity_id), state)
        if after_fold is not None:
            after_fold(state)
        # Sizes too: a change file caught half-written is re-folded once it is complete.
        if artifacts.list_sizes(client, run_id, folder) == names:
            return state
    raise InsightsError(f"could not settle {kind} {entity_id or ''} after {_MAX_FOLDS} attempts")


def copy_entity(client, src_run: str, dst_run: str, kind: str, entity_id: str) -> None:
    """Copy an entity's journal to another run and fold it there (used when merging parents)."""
    folder = journal_path(kind, entity_id)
    with tempfile.TemporaryDirectory() as tmp:
        local = artifacts.download_dir(client, src_run, folder, tmp)
        if local is None:
            return
        client.log_artifacts(dst_run, local, folder)
    folded = _fold_folder(client, dst_run, folder)
    if folded is not None:
        artifacts.write_yaml(client, dst_run, snapshot_path(kind, entity_id), folded[1])


def _fold_folder(client, run_id: str, folder: str) -> tuple[list[tuple[str, int]], dict[str, Any]] | None:
    """(name, size) of each change file and the folded state; None if one is unreadable yet."""
    with tempfile.TemporaryDirectory() as tmp:
        local = artifacts.download_dir(client, run_id, folder, tmp)
        files = sorted(Path(local).glob("*.yaml")) if local else []
        changes = []
        for f in files:
            data = _read_change(f)
            if data is None:
                return None
            changes.append(data)
        names = [(f.name, f.stat().st_size) for f in files]
    return names, fold(changes)


def _read_change(path: Path) -> dict[str, Any] | None:
    """A complete change file always has an 'op'; anything else was caught mid-write."""
    try:
        data = yaml.load(path.read_text(), Loader=artifacts.Loader)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) and data.get("op") else None


def fold(changes: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply changes in order to the creation state."""
    state: dict[str, Any] = {}
    for change in changes:
        if change.get("op") == "create":
            base = dict(change.get("state") or {})
            # A create seen after updates (clock skew) must not erase them.
            base.update({k: v for k, v in state.items() if k != "evidence"})
            base["evidence"] = list(base.get("evidence") or []) + list(state.get("evidence") or [])
            state = base
            continue
        _apply_update(state, change)
    state["evidence"] = _dedupe_evidence(state.get("evidence") or [])
    return state


def _apply_update(state: dict[str, Any], change: dict[str, Any]) -> None:
    state.update(change.get("set") or {})
    for field, values in (change.get("merge") or {}).items():
        state[field] = {**(state.get(field) or {}), **values}
    if change.get("add_evidence"):
        state["evidence"] = list(state.get("evidence") or []) + list(change["add_evidence"])
    if change.get("add_assessments"):
        existing = list(state.get("assessments") or [])
        state["assessments"] = existing + [a for a in change["add_assessments"] if a not in existing]
    state["updated_at"] = max(int(state.get("updated_at") or 0), int(change.get("at") or 0))


def _dedupe_evidence(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple] = set()
    out = []
    for entry in entries:
        key = (entry.get("trace_id"), entry.get("rationale", ""), entry.get("supports", True))
        if key not in seen:
            seen.add(key)
            out.append(entry)
    return out
