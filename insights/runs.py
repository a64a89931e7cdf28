"""The run hierarchy: one ``Insights`` parent run per experiment, analysis runs nested under it.

Runs are only ever addressed by explicit id through ``MlflowClient``; MLflow's fluent
active-run state is never touched, so a caller's active run stays as it was.

The parent is found by tag search. Two processes that create the first analysis at the same
moment may each create a parent; whoever then sees more than one merges them into the oldest
(children re-pointed, issues copied, the extra parent deleted), and every process that
creates an analysis re-checks the whole hierarchy until it holds still
(``ensure_under_canonical``). The outcome is one parent holding every analysis.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import TYPE_CHECKING

from insights import journal
from insights.artifacts import store_errors
from insights.errors import NotAnInsightsRunError, NotFoundError

if TYPE_CHECKING:
    from mlflow.entities import Run

# MLflow's own tags (mlflow.utils.mlflow_tags), spelled out so that importing this module does
# not import MLflow (seconds); tests/test_compat_contract.py checks they still match.
MLFLOW_PARENT_RUN_ID = "mlflow.parentRunId"
MLFLOW_RUN_NAME = "mlflow.runName"
MLFLOW_RUN_NOTE = "mlflow.note.content"

TAG_TYPE = "mlflow.insights.type"
TAG_PARENT = "mlflow.insights.parent"
TAG_NAME = "mlflow.insights.name"
TAG_STATUS = "mlflow.insights.status"
TAG_CREATED = "mlflow.insights.created_at"
TAG_UPDATED = "mlflow.insights.updated_at"
TAG_METADATA = "mlflow.insights.metadata"
METADATA_TAG_MAX = 5000  # MLflow caps tag values; longer metadata is read from the snapshot
METADATA_IN_SNAPSHOT = "@snapshot"
PARENT_RUN_NAME = "Insights"
_SEARCH_PAGE = 1000


def find_parents(client, experiment_id: str) -> list[Run]:
    """Active parent runs of an experiment, oldest first (the first is canonical)."""
    from mlflow.entities import ViewType

    with store_errors("searching runs"):
        runs = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{TAG_TYPE}` = 'parent'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=_SEARCH_PAGE,
        )
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def find_parent(client, experiment_id: str) -> Run | None:
    """The canonical parent run, or ``None``. Never creates anything."""
    parents = find_parents(client, experiment_id)
    return parents[0] if parents else None


def get_or_create_parent(client, experiment_id: str) -> str:
    parents = find_parents(client, experiment_id)
    if not parents:
        tags = {TAG_TYPE: "parent", TAG_PARENT: "true", MLFLOW_RUN_NAME: PARENT_RUN_NAME}
        with store_errors("creating the Insights parent run"):
            client.create_run(experiment_id, tags=tags, run_name=PARENT_RUN_NAME)
        parents = find_parents(client, experiment_id)
    return merge_parents(client, parents)


def merge_parents(client, parents: list[Run]) -> str:
    """Fold every extra parent into the oldest one and return its id."""
    canonical = parents[0].info.run_id
    for extra in parents[1:]:
        _merge_into(client, extra, canonical)
    return canonical


def _merge_into(client, extra: Run, canonical: str) -> None:
    extra_id = extra.info.run_id
    _point_at(client, _children(client, extra.info.experiment_id, extra_id), canonical)
    for issue_id in journal.entity_ids(client, extra_id, "issue"):  # journaled or not
        journal.copy_entity(client, extra_id, canonical, "issue", issue_id)
    with store_errors("deleting a duplicate parent run"):
        try:
            client.delete_run(extra_id)
        except NotFoundError:
            pass  # another process merged it first


def _point_at(client, children: list[Run], parent_id: str) -> None:
    """Make ``parent_id`` the parent of each run in ``children``."""
    for child in children:
        with store_errors("re-pointing an analysis run"):
            client.set_tag(child.info.run_id, MLFLOW_PARENT_RUN_ID, parent_id)


def _children(client, experiment_id: str, parent_id: str) -> list[Run]:
    from mlflow.entities import ViewType

    with store_errors("searching runs"):
        return client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_id}'",
            run_view_type=ViewType.ALL,
            max_results=_SEARCH_PAGE,
        )


# how many times a process re-checks the hierarchy after creating an analysis run
_SETTLE_ROUNDS = 5


def ensure_under_canonical(client, experiment_id: str, parent_id: str) -> str:
    """After creating a child under ``parent_id``, re-check until the hierarchy holds still:
    merge any duplicate parents, then point every analysis run of the experiment that is not
    under the canonical parent at it (the run just created, and any that another process
    pointed at a parent being merged away). Return the canonical parent's id.

    Why every run and a loop: a parent's start time is taken before it is stored, so a process
    may not yet see the oldest parent and re-point runs to a younger one while the oldest's
    creator merges that younger one away (tests/test_concurrency.py's race of four processes
    left a run under a deleted parent in 2 of 30 tries). Unless its rounds run out, each
    process ends with a check that found nothing to change, so the last process to write
    anything checks after all writes."""
    canonical = parent_id
    for _ in range(_SETTLE_ROUNDS):
        parents = find_parents(client, experiment_id)
        settled = merge_parents(client, parents) if parents else canonical
        moved = _adopt_strays(client, experiment_id, settled)
        if settled == canonical and not moved:
            break
        canonical = settled
    return canonical


def _adopt_strays(client, experiment_id: str, canonical: str) -> int:
    """Point the experiment's active analysis runs that are not under ``canonical`` at it."""
    from mlflow.entities import ViewType

    with store_errors("searching runs"):
        strays = client.search_runs(
            [experiment_id],
            filter_string=(f"tags.`{TAG_TYPE}` = 'analysis' AND "
                           f"tags.`{MLFLOW_PARENT_RUN_ID}` != '{canonical}'"),
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=_SEARCH_PAGE,
        )
    _point_at(client, strays, canonical)
    return len(strays)


def create_analysis_run(client, experiment_id: str, run_name: str, name: str, description: str,
                        created_at: int, metadata: dict | None = None) -> str:
    parent_id = get_or_create_parent(client, experiment_id)
    tags = {
        TAG_TYPE: "analysis",
        TAG_NAME: name,
        TAG_STATUS: "ACTIVE",
        TAG_CREATED: str(created_at),
        TAG_UPDATED: str(created_at),
        MLFLOW_PARENT_RUN_ID: parent_id,
        MLFLOW_RUN_NAME: run_name,
        MLFLOW_RUN_NOTE: description,
        TAG_METADATA: metadata_tag(metadata),
    }
    with store_errors("creating the analysis run"):
        run = client.create_run(experiment_id, tags=tags, run_name=run_name)
    ensure_under_canonical(client, experiment_id, parent_id)
    return run.info.run_id


def get_analysis_run(client, run_id: str) -> Run:
    """The run, checked to be an Insights analysis run."""
    try:
        with store_errors("reading the run"):
            run = client.get_run(run_id)
    except NotFoundError:
        raise NotFoundError(f"Analysis run '{run_id}' not found") from None
    if run.info.lifecycle_stage == "deleted":
        raise NotFoundError(f"Analysis run '{run_id}' not found (it is deleted)")
    if run.data.tags.get(TAG_TYPE) != "analysis":
        raise NotAnInsightsRunError(f"Run '{run_id}' is not an Insights analysis run")
    return run


def search_analysis_runs(client, experiment_id: str) -> list[Run]:
    """Every analysis run of the experiment with one tag search (other runs are not scanned)."""
    from mlflow.entities import ViewType

    runs: list[Run] = []
    token = None
    while True:
        with store_errors("searching runs"):
            page = client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{TAG_TYPE}` = 'analysis'",
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=_SEARCH_PAGE,
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def stored_run(info: dict, tags: dict[str, str]) -> SimpleNamespace:
    """A run read straight from a local store's tables, shaped as MLflow's ``Run`` for what
    listings read (``info.run_id``, ``info.run_name``, ... and ``data.tags``): building
    MLflow's own entities would import MLflow, seconds of a CLI call. ``info`` holds
    ``RunInfo``'s fields; the run name falls back to the ``mlflow.runName`` tag, as in
    MLflow's SQL store."""
    run_name = info.get("run_name") or tags.get(MLFLOW_RUN_NAME)
    return SimpleNamespace(info=SimpleNamespace(**{**info, "run_name": run_name}),
                           data=SimpleNamespace(tags=dict(tags)))


def metadata_tag(metadata: dict | None) -> str:
    """The analysis metadata as a tag value: JSON, or a marker when too long for a tag."""
    text = json.dumps(metadata or {}, sort_keys=True, default=str)
    return text if len(text) <= METADATA_TAG_MAX else METADATA_IN_SNAPSHOT


def mirror_analysis_tags(client, run_id: str, state: dict) -> None:
    """Keep the fields listings need in tags, so listing analyses is one search."""
    from mlflow.entities import RunTag

    tags = [
        RunTag(TAG_NAME, str(state.get("name", ""))),
        RunTag(TAG_STATUS, str(state.get("status", "ACTIVE"))),
        RunTag(TAG_UPDATED, str(state.get("updated_at", ""))),
        RunTag(MLFLOW_RUN_NOTE, str(state.get("description", ""))[:5000]),
        RunTag(TAG_METADATA, metadata_tag(state.get("metadata"))),
    ]
    with store_errors("tagging the analysis run"):
        client.log_batch(run_id, tags=tags)
