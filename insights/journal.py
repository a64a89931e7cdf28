"""Entity files that stay the source of truth, with no lost updates on a store without CAS.

Each entity (an analysis, a hypothesis, an issue) is the PRD's ``insights/{kind}_{id}.yaml``.
That file is what everyone reads, and what another tool or a person may write or edit. Beside
it, ``insights_journal/{kind}_{id}/`` holds immutable change files. A write never edits a
change: it adds one, then folds the whole journal into a fresh snapshot, then lists the journal
again; if a change file appeared meanwhile it folds again. So the last snapshot written has
folded every change whose writer finished, and two writers racing on one hypothesis both keep
their evidence.

Outside edits are folded in, never overwritten. Every snapshot we write ends with a marker
(``_journal``: the last change folded, how many, and a SHA-256 of the content). Before folding,
a writer compares the snapshot it read with its marker: a file edited by hand, written by
another tool, or carrying no journal at all differs from what the journal produced, and the
difference is recorded as an ``import`` change placed right after the changes the edited
snapshot had folded. Its name is derived from the edited content, so writers that notice the
same edit at once write the same file.

Folding is deterministic: changes apply in file-name order; scalar fields are last-writer-wins,
evidence is a union, metadata and metrics merge key by key, and ``metadata.history`` (an
append-only list) is a union too, so concurrent writers who each appended an entry to the list
they read keep both.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, NamedTuple

import yaml

from insights import artifacts, yamlio
from insights.errors import InsightsError, StorageError
from insights.models import now_ms, to_ms

SNAPSHOT_DIR = "insights"
JOURNAL_DIR = "insights_journal"
MARKER = "_journal"          # the last key of every snapshot we write
_MAX_FOLDS = 50
_FIRST = "0" * 20            # sorts before any time-named change
_SHA = re.compile(r"[0-9a-f]{64}")
_SETTLE_READS = 5
_BASE_SEARCH_WINDOW = 20     # late-arriving changes are looked for among the last ones
_BASE_SEARCH_MAX = 500
APPEND_ONLY = "history"       # a metadata list writers only append to: merged as a union
_STUCK_READS = 10            # an unreadable change file unchanged this often is ignored
_log = logging.getLogger(__name__)


class Entry(NamedTuple):
    name: str
    size: int
    change: dict[str, Any]


def snapshot_path(kind: str, entity_id: str | None) -> str:
    name = kind if entity_id is None else f"{kind}_{entity_id}"
    return f"{SNAPSHOT_DIR}/{name}.yaml"


def journal_path(kind: str, entity_id: str | None) -> str:
    name = kind if entity_id is None else f"{kind}_{entity_id}"
    return f"{JOURNAL_DIR}/{name}"


def _change_name() -> str:
    # Sortable by time first; the random tail orders writers that share a nanosecond.
    return f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.yaml"


# ---------------------------------------------------------------------- snapshots


def strip_marker(doc: dict[str, Any]) -> dict[str, Any]:
    """The entity's fields, without our bookkeeping."""
    return {k: v for k, v in doc.items() if k != MARKER}


def fingerprint(state: dict[str, Any]) -> str:
    """SHA-256 of the parsed content, so re-formatting a file is not an edit."""
    text = json.dumps(_canonical(state), separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        return [[str(k), _canonical(v)] for k, v in items]
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def _snapshot_doc(state: dict[str, Any], entries: list[Entry]) -> dict[str, Any]:
    marker = {"through": entries[-1].name if entries else "", "changes": len(entries),
              "sha256": fingerprint(state)}
    return {**strip_marker(state), MARKER: marker}


def _marker(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The marker when whole; a snapshot caught half-written has none or a cut one."""
    marker = doc.get(MARKER)
    if (isinstance(marker, dict) and isinstance(marker.get("through"), str)
            and isinstance(marker.get("changes"), int)
            and isinstance(marker.get("sha256"), str) and _SHA.fullmatch(marker["sha256"])):
        return marker
    return None


def read_snapshot(client, run_id: str, path: str) -> dict[str, Any] | None:
    """The entity file as stored (marker included), ``None`` when absent.

    A file without a whole marker may be one a writer is replacing right now: it is read again
    until two reads agree. A file that stays unparseable raises ``StorageError`` naming it.
    """
    previous: str | None = None
    text = artifacts.read_text(client, run_id, path)
    for _ in range(_SETTLE_READS):
        if text is None:
            return None
        try:
            doc = artifacts.parse(text, f"{path} (run {run_id})")
            if _marker(doc) is not None or text == previous:
                return doc
        except StorageError:
            if text == previous:
                raise
        previous = text
        time.sleep(0.05)
        text = artifacts.read_text(client, run_id, path)
    if text is None:
        return None
    return artifacts.parse(text, f"{path} (run {run_id})")


# ---------------------------------------------------------------------- writes


def create(client, run_id: str, kind: str, entity_id: str | None, initial: dict[str, Any]) -> None:
    """Write the creation change and the first snapshot."""
    change = {"op": "create", "at": now_ms(), "state": initial}
    name = _change_name()
    artifacts.write_yaml(client, run_id, f"{journal_path(kind, entity_id)}/{name}", change)
    state = fold([change])
    artifacts.write_yaml(client, run_id, snapshot_path(kind, entity_id),
                         _snapshot_doc(state, [Entry(name, 0, change)]))


_UNREAD: Any = object()


def update(
    client,
    run_id: str,
    kind: str,
    entity_id: str | None,
    change: dict[str, Any],
    after_fold: Callable[[dict[str, Any]], None] | None = None,
    current: dict[str, Any] | None = _UNREAD,
) -> dict[str, Any]:
    """Record ``change`` and return the folded state it produced.

    ``change`` may hold ``set`` (fields, last writer wins), ``add_evidence`` (list of dicts),
    ``merge`` (dict fields merged key by key: metadata, metrics). ``after_fold`` runs with
    each folded state before the journal is re-checked (used to mirror fields into tags).
    ``current`` is the snapshot as just read (``read_snapshot``), to save reading it again.

    Once the change file is written the update has happened: a later failure (folding, the
    snapshot, ``after_fold``) is logged, and the next write or fold carries the change.
    """
    read_at = f"{time.time_ns():020d}"   # (the caller read ``current`` just before)
    if current is _UNREAD:
        current = read_snapshot(client, run_id, snapshot_path(kind, entity_id))
    record = {"op": "update", "at": now_ms(), **change}
    artifacts.write_yaml(client, run_id, f"{journal_path(kind, entity_id)}/{_change_name()}",
                         record)
    try:
        return _settle(client, run_id, kind, entity_id, current, after_fold, read_at)
    except Exception as exc:  # noqa: BLE001 - the change is stored; the fold can happen later
        where = snapshot_path(kind, entity_id)
        _log.warning("Change to %s in run %s was recorded, but refreshing the file failed (%s); "
                     "the next write folds it in", where, run_id, exc)
        state = strip_marker(current or {})
        _apply_update(state, record)
        return state


def copy_entity(client, src_run: str, dst_run: str, kind: str, entity_id: str) -> None:
    """Copy an entity, journal and outside edits alike, to another run (merging parents)."""
    folder = journal_path(kind, entity_id)
    current = read_snapshot(client, src_run, snapshot_path(kind, entity_id))
    with tempfile.TemporaryDirectory() as tmp:
        local = artifacts.download_dir(client, src_run, folder, tmp)
        if local is not None:
            client.log_artifacts(dst_run, local, folder)
    if local is None and current is None:
        return
    _settle(client, dst_run, kind, entity_id, current, None)


def entity_ids(client, run_id: str, kind: str) -> list[str]:
    """Ids of the ``kind`` entities in a run: with a journal, a snapshot, or both."""
    prefix = f"{kind}_"
    ids: set[str] = set()
    for folder in (JOURNAL_DIR, SNAPSHOT_DIR):
        for info in artifacts.list_infos(client, run_id, folder):
            name = os.path.basename(info.path)
            if folder == SNAPSHOT_DIR and (info.is_dir or not name.endswith(".yaml")):
                continue
            stem = name[:-len(".yaml")] if folder == SNAPSHOT_DIR else name
            if stem.startswith(prefix):
                ids.add(stem[len(prefix):])
    return sorted(ids)


def _settle(client, run_id: str, kind: str, entity_id: str | None,
            current: dict[str, Any] | None,
            after_fold: Callable[[dict[str, Any]], None] | None,
            before: str | None = None) -> dict[str, Any]:
    """Fold until the journal stops moving; first record any outside edit of ``current``."""
    folder = journal_path(kind, entity_id)
    checked = False
    stuck: dict[tuple[str, int], int] = {}   # unreadable change file -> times seen unchanged
    for _ in range(_MAX_FOLDS):
        entries, unreadable = _read_folder(client, run_id, folder)
        for key in unreadable:
            stuck[key] = stuck.get(key, 0) + 1
        if any(stuck[key] < _STUCK_READS for key in unreadable):
            time.sleep(0.05)         # a change file was still being written; look again
            continue
        if unreadable:
            _log.warning("Ignoring unreadable change files in %s of run %s: %s", folder, run_id,
                         ", ".join(name for name, _ in unreadable))
        if not checked:
            checked = True
            outside = outside_edit(current, entries, before)
            if outside is not None:
                artifacts.write_yaml(client, run_id, f"{folder}/{outside[0]}", outside[1])
                continue
        state = fold([e.change for e in entries])
        artifacts.write_yaml(client, run_id, snapshot_path(kind, entity_id),
                             _snapshot_doc(state, entries))
        if after_fold is not None:
            after_fold(state)
        # Sizes too: a change file caught half-written is re-folded once it is complete.
        seen = sorted([(e.name, e.size) for e in entries] + unreadable)
        listed = [f for f in artifacts.list_sizes(client, run_id, folder) if f[0].endswith(".yaml")]
        if listed == seen:
            return state
    raise InsightsError(f"could not settle {kind} {entity_id or ''} after {_MAX_FOLDS} attempts")


def _read_folder(client, run_id: str, folder: str) -> tuple[list[Entry], list[tuple[str, int]]]:
    """The readable change files in name order, and (name, size) of the others.

    Each file is read once and its size taken from the bytes read: on a local store the
    folder is read in place, and a change still being written must not be parsed from one
    moment and sized from a later one."""
    with tempfile.TemporaryDirectory() as tmp:
        local = artifacts.download_dir(client, run_id, folder, tmp)
        files = sorted(Path(local).glob("*.yaml")) if local else []
        entries, unreadable = [], []
        for f in files:
            try:
                raw = f.read_bytes()
            except FileNotFoundError:
                continue
            data = _read_change(raw)
            if data is None:
                unreadable.append((f.name, len(raw)))
            else:
                entries.append(Entry(f.name, len(raw), data))
    return entries, unreadable


def _read_change(raw: bytes) -> dict[str, Any] | None:
    """A complete change file always has an 'op'; anything else was caught mid-write."""
    try:
        data = yamlio.load(raw.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("op") else None


# ---------------------------------------------------------------------- outside edits


def outside_edit(current: dict[str, Any] | None, entries: list[Entry],
                 before: str | None = None) -> tuple[str, dict[str, Any]] | None:
    """(file name, change) recording how ``current`` differs from what the journal produced.

    ``None`` when the snapshot is absent or is exactly a state the journal folded. Changes
    named from ``before`` on (when ``current`` was read) came later than the edit. Removals
    (a field, a metadata key, an evidence entry) are honoured only when the snapshot carries
    our marker, i.e. it is known whole; otherwise the import only adds and changes.
    """
    if current is None:
        return None
    doc = strip_marker(current)
    sha = fingerprint(doc)
    marker = _marker(current)
    names = [e.name for e in entries]
    if marker is not None and marker["through"] in names:
        if marker["sha256"] == sha:
            return None
        base = _marked_base(entries, marker)
        after, whole = marker["through"], True
    elif all(e.change.get("op") == "update" or e.name.startswith(_FIRST) for e in entries):
        # never folded by us (a file from another tool): the import comes first of all, and
        # writers that found the file at once write the same import
        base, after, whole = {}, None, False
    else:
        if _matches_a_fold(entries, sha):
            return None
        prior = [e for e in entries if before is None or e.name < before]
        base = fold([e.change for e in prior])
        after, whole = (prior[-1].name if prior else None), False
    change = diff(base, doc, removals=whole)
    if not change:
        return None
    # right after the changes the edited file had folded (first of all without a journal)
    stem = after[:-len(".yaml")] + "~" if after else _FIRST + "-"
    return f"{stem}import-{sha[:16]}.yaml", {"op": "import", "at": now_ms(), **change}


def _marked_base(entries: list[Entry], marker: dict[str, Any]) -> dict[str, Any]:
    """The state the marker's snapshot was folded from.

    Its changes are those named up to ``through``, less any that arrived late (named earlier
    but written after that fold); the content hash tells which.
    """
    upto = [e for e in entries if e.name <= marker["through"]]
    extra = len(upto) - marker["changes"]
    first = fold([e.change for e in upto])
    if extra <= 0 or fingerprint(first) == marker["sha256"]:
        return first
    window = range(max(0, len(upto) - 1 - _BASE_SEARCH_WINDOW), len(upto) - 1)
    for skip in itertools.islice(itertools.combinations(window, extra), _BASE_SEARCH_MAX):
        state = fold([e.change for i, e in enumerate(upto) if i not in skip])
        if fingerprint(state) == marker["sha256"]:
            return state
    return first


def _matches_a_fold(entries: list[Entry], sha: str) -> bool:
    """Whether an unmarked snapshot is what folding some prefix of the journal produced
    (snapshots written before markers existed)."""
    for end in range(len(entries), max(0, len(entries) - 50), -1):
        if fingerprint(fold([e.change for e in entries[:end]])) == sha:
            return True
    return False


def diff(base: dict[str, Any], doc: dict[str, Any], removals: bool = True) -> dict[str, Any]:
    """The change that turns ``base`` into ``doc`` in the journal's terms."""
    change: dict[str, Any] = {}
    sets, merge, drop_keys = {}, {}, {}
    for key, value in doc.items():
        old = base.get(key)
        if key in base and old == value:
            continue
        if key == "evidence" and isinstance(value, list) and isinstance(old or [], list):
            _diff_evidence(old or [], value, change, removals)
        elif key == "assessments" and isinstance(value, list) and isinstance(old or [], list):
            added = [a for a in value if a not in (old or [])]
            gone = [a for a in (old or []) if a not in value]
            if added:
                change["add_assessments"] = added
            if gone and removals:
                change["remove_assessments"] = gone
        elif isinstance(value, dict) and isinstance(old, dict):
            changed = {k: v for k, v in value.items() if k not in old or old[k] != v}
            gone = [k for k in old if k not in value]
            if changed:
                merge[key] = changed
            if gone and removals:
                drop_keys[key] = gone
        else:
            sets[key] = value
    unset = [k for k in base if k not in doc] if removals else []
    for key, value in (("set", sets), ("merge", merge), ("remove_keys", drop_keys),
                       ("unset", unset)):
        if value:
            change[key] = value
    return change


def _diff_evidence(old: list, new: list, change: dict[str, Any], removals: bool) -> None:
    new_keys = {_evidence_key(e) for e in new}
    old_by_key = {_evidence_key(e): e for e in old}
    added = [e for e in new if old_by_key.get(_evidence_key(e)) != e]
    gone = [list(k) for k, e in old_by_key.items() if k not in new_keys or e not in new]
    if added:
        change["add_evidence"] = added
    if gone and removals:
        change["remove_evidence"] = gone


def _evidence_key(entry: Any) -> tuple:
    """What makes two evidence entries the same finding (hashable whatever a file holds)."""
    if not isinstance(entry, dict):
        return ("", repr(entry), True)
    supports = entry.get("supports", True)
    return (str(entry.get("trace_id")), str(entry.get("rationale", "")),
            supports if isinstance(supports, bool) else str(supports))


# ---------------------------------------------------------------------- folding


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
    for field in change.get("unset") or []:
        state.pop(field, None)
    for field, values in (change.get("merge") or {}).items():
        current = state.get(field) if isinstance(state.get(field), dict) else {}
        merged = {**current, **values}
        if isinstance(current.get(APPEND_ONLY), list) and isinstance(values.get(APPEND_ONLY), list):
            # two writers who each appended to the history they read both keep their entry
            merged[APPEND_ONLY] = current[APPEND_ONLY] + [
                h for h in values[APPEND_ONLY] if h not in current[APPEND_ONLY]]
        state[field] = merged
    for field, keys in (change.get("remove_keys") or {}).items():
        if isinstance(state.get(field), dict):
            state[field] = {k: v for k, v in state[field].items() if k not in keys}
    if change.get("remove_evidence"):
        gone = {tuple(k) for k in change["remove_evidence"]}
        state["evidence"] = [e for e in state.get("evidence") or [] if _evidence_key(e) not in gone]
    if change.get("add_evidence"):
        state["evidence"] = list(state.get("evidence") or []) + list(change["add_evidence"])
    if change.get("add_assessments"):
        existing = list(state.get("assessments") or [])
        state["assessments"] = existing + [a for a in change["add_assessments"] if a not in existing]
    if change.get("remove_assessments"):
        state["assessments"] = [a for a in state.get("assessments") or []
                                if a not in change["remove_assessments"]]
    state["updated_at"] = max(to_ms(state.get("updated_at")), to_ms(change.get("at")))


def _dedupe_evidence(entries: list[Any]) -> list[Any]:
    seen: set[tuple] = set()
    out = []
    for entry in entries:
        key = _evidence_key(entry)
        if key not in seen:
            seen.add(key)
            out.append(entry)
    return out
