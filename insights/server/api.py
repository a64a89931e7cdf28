"""The Insights Agentic REST API (FastAPI) and the app that also serves the web UI.

Every endpoint is ``POST {API_PREFIX}{group}/{verb}`` with a JSON body, as in the PRD. Errors
use MLflow's REST error shape, ``{"error_code": ..., "message": ...}``, and also carry the PRD's
``{"error": {"code": ..., "message": ...}}`` form, with HTTP 400 (bad body, bad value, bad id,
body not UTF-8 or JSON nested too deep), 413 (body over the size limit), 404 (unknown
experiment, run, hypothesis, issue or trace), 503 (tracking store unreachable) or 500 (an
unreadable entity file, STORAGE_ERROR, or anything else). Bodies are checked before parsing
(see ``insights.server.guard``). Lists answer 200 with a ``warnings`` list naming any entity
file they could not read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from insights.client import InsightsClient
from insights.errors import (
    InsightsError,
    InvalidInputError,
    NotFoundError,
    TrackingServerError,
)
from insights.models import EvidenceEntry, HypothesisStatus
from insights.server import export, guard, schemas as s, service

API_PREFIX = "/api/3.0/mlflow/traces/insights/agentic/"
UI_PREFIX = "/insights"
STATIC_DIR = Path(__file__).parent / "static"
UI_ACTOR = "insights-ui"  # "by" in the history entries of changes made through this API
UI_URL_ENV = "MLFLOW_INSIGHTS_UI_URL"  # base URL of the MLflow UI, for links to traces
_log = logging.getLogger(__name__)

ClientFor = Callable[[Request], InsightsClient]
UiUrlFor = Callable[[Request], "str | None"]


# ---------------------------------------------------------------------- errors


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    """MLflow's REST error shape plus the PRD's nested form."""

    error_code: str
    message: str
    error: ErrorDetail


_ERRORS = {
    400: {"model": ErrorResponse, "description": "Bad request body or parameter value "
          "(INVALID_PARAMETER_VALUE)"},
    413: {"model": ErrorResponse, "description": "Request body over the size limit "
          "(REQUEST_LIMIT_EXCEEDED)"},
    404: {"model": ErrorResponse, "description": "Unknown experiment, run, hypothesis, issue or "
          "trace (RESOURCE_NOT_FOUND)"},
    500: {"model": ErrorResponse, "description": "An entity file in the store is unreadable "
          "(STORAGE_ERROR; the message names the file), or another server failure"},
    503: {"model": ErrorResponse, "description": "Tracking store unreachable "
          "(TEMPORARILY_UNAVAILABLE)"},
}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={
        "error_code": code, "message": message, "error": {"code": code, "message": message}})


def _http_status(exc: InsightsError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, InvalidInputError):
        return 400
    if isinstance(exc, TrackingServerError):
        return 503
    return 500  # StorageError too: the stored file is at fault, not the request


def validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        kind = err.get("type", "")
        if kind == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "invalid JSON")
            return f"Malformed JSON body: {detail}"
        if not loc and kind in ("missing", "model_attributes_type", "dict_type", "model_type"):
            return "Request body must be a JSON object"
        field = ".".join(loc) or "body"
        msg = err.get("msg", "is invalid")
        if kind == "missing":
            parts.append(f"Missing required field '{field}'")
        else:
            parts.append(f"Invalid value for '{field}': {msg}")
    return "; ".join(parts) or "Invalid request"


class InsightsRoute(APIRoute):
    """Maps validation and SDK errors to MLflow-style JSON errors on these routes only, so the
    API behaves the same standalone and mounted inside ``mlflow server`` (whose app-wide
    handlers would answer 422)."""

    def get_route_handler(self) -> Callable:
        original = super().get_route_handler()

        async def handler(request: Request):
            try:
                if request.method == "POST":
                    await guard.read_checked_body(request)
                return await original(request)
            except guard.BodyRejected as exc:
                return error_response(exc.status, exc.code, str(exc))
            except HTTPException as exc:  # FastAPI's own body parsing refusals
                code = "INVALID_PARAMETER_VALUE" if exc.status_code == 400 else "INTERNAL_ERROR"
                return error_response(exc.status_code, code, str(exc.detail))
            except RequestValidationError as exc:
                return error_response(400, "INVALID_PARAMETER_VALUE", validation_message(exc))
            except InsightsError as exc:
                return error_response(_http_status(exc), exc.error_code, str(exc))
            except Exception as exc:  # noqa: BLE001 - the API answers JSON, never a traceback
                _log.exception("Insights API failure on %s", request.url.path)
                return error_response(500, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")

        return handler


# ---------------------------------------------------------------------- router


def build_router(client_for: ClientFor, ui_url_for: UiUrlFor) -> APIRouter:
    """All Agentic API routes; ``client_for`` picks the InsightsClient for a request."""
    r = APIRouter(prefix=API_PREFIX.rstrip("/"), route_class=InsightsRoute, responses=_ERRORS)

    def post(path: str, summary: str, tag: str):
        return r.post(path, summary=summary, tags=[tag])

    # -------------------------------------------------------------- analyses

    @post("/analyses/list", "List the analyses of an experiment, newest first (paged with "
          "max_results / page_token)", "analyses")
    def list_analyses(body: s.ListAnalysesBody, request: Request) -> dict[str, Any]:
        analyses = service.list_analyses(client_for(request), body.experiment_id,
                                         body.page_token, body.max_results)
        return {"analyses": list(analyses), "warnings": analyses.warnings,
                "total_count": analyses.total_count,
                "next_page_token": analyses.next_page_token}

    @post("/analyses/get", "One analysis with its hypothesis counts", "analyses")
    def get_analysis(body: s.RunBody, request: Request) -> dict[str, Any]:
        return {"analysis": service.get_analysis(client_for(request), body.insights_run_id)}

    @post("/analyses/update", "Archive, complete or reopen an analysis; rename it", "analyses")
    def update_analysis(body: s.UpdateAnalysisBody, request: Request) -> dict[str, Any]:
        client = client_for(request)
        _require_change(body, "status", "name", "description")
        client.update_analysis(body.insights_run_id, name=body.name, description=body.description,
                               status=body.status)
        return {"analysis": service.get_analysis(client, body.insights_run_id)}

    @post("/analyses/export", "The analysis report as Markdown", "analyses")
    def export_analysis(body: s.RunBody, request: Request) -> dict[str, Any]:
        client = client_for(request)
        analysis = client.get_analysis(body.insights_run_id)
        hypotheses = client.list_hypotheses(body.insights_run_id)
        issues = [i for i in client.list_issues(analysis.experiment_id)
                  if i.source_run_id == analysis.run_id]
        md = export.analysis_report(analysis, hypotheses, issues, ui_url_for(request))
        return {"markdown": md, "filename": f"analysis-{_slug(analysis.name)}.md"}

    # -------------------------------------------------------------- hypotheses

    @post("/hypotheses/list", "The hypotheses of an analysis run, oldest first (paged with "
          "max_results / page_token)", "hypotheses")
    def list_hypotheses(body: s.ListHypothesesBody, request: Request) -> dict[str, Any]:
        hyps = client_for(request).list_hypotheses(body.insights_run_id)
        chunk, next_token, _ = service.page(list(hyps), body.page_token, None, body.max_results)
        return {"hypotheses": [service.hypothesis_json(h) for h in chunk],
                "warnings": hyps.warnings, "total_count": len(hyps),
                "next_page_token": next_token}

    @post("/hypotheses/get", "One hypothesis", "hypotheses")
    def get_hypothesis(body: s.HypothesisBody, request: Request) -> dict[str, Any]:
        h = client_for(request).get_hypothesis(body.insights_run_id, body.hypothesis_id)
        return {"hypothesis": service.hypothesis_json(h)}

    @post("/hypotheses/preview", "The traces cited by a run's hypotheses, paged", "hypotheses")
    def preview_hypotheses(body: s.PreviewHypothesesBody, request: Request) -> dict[str, Any]:
        client = client_for(request)
        if body.hypothesis_id:
            hyps = [client.get_hypothesis(body.insights_run_id, body.hypothesis_id)]
        else:
            hyps = client.list_hypotheses(body.insights_run_id)
        cited = service.cited_traces((h.hypothesis_id, h.evidence) for h in hyps)
        return service.preview(client, cited, body)

    @post("/hypotheses/create", "Add a hypothesis (status TESTING) to an analysis", "hypotheses")
    def create_hypothesis(body: s.CreateHypothesisBody, request: Request) -> dict[str, Any]:
        client = client_for(request)
        hid = client.create_hypothesis(body.insights_run_id, body.statement,
                                       testing_plan=body.testing_plan, rationale=body.rationale,
                                       metadata={"created_by": "insights-ui"})
        return {"hypothesis": service.hypothesis_json(client.get_hypothesis(body.insights_run_id,
                                                                            hid))}

    @post("/hypotheses/update", "Validate or reject a hypothesis (status, rationale, plan)",
          "hypotheses")
    def update_hypothesis(body: s.UpdateHypothesisBody, request: Request) -> dict[str, Any]:
        _require_change(body, "status", "rationale", "testing_plan")
        h = client_for(request).update_hypothesis(
            body.insights_run_id, body.hypothesis_id, status=body.status,
            rationale=body.rationale, testing_plan=body.testing_plan)
        return {"hypothesis": service.hypothesis_json(h)}

    @post("/hypotheses/add-evidence", "Add evidence (supporting or refuting) to a hypothesis",
          "hypotheses")
    def add_hypothesis_evidence(body: s.AddEvidenceToHypothesisBody, request: Request
                                ) -> dict[str, Any]:
        h = client_for(request).update_hypothesis(
            body.insights_run_id, body.hypothesis_id,
            add_evidence=[e.model_dump() for e in body.evidence])
        return {"hypothesis": service.hypothesis_json(h)}

    @post("/hypotheses/create-issue", "Create an issue from a hypothesis and its evidence",
          "hypotheses")
    def create_issue_from_hypothesis(body: s.CreateIssueFromHypothesisBody, request: Request
                                     ) -> dict[str, Any]:
        client = client_for(request)
        h = client.get_hypothesis(body.insights_run_id, body.hypothesis_id)
        evidence = [EvidenceEntry(trace_id=e.trace_id, rationale=e.rationale)
                    for e in h.evidence if e.supports or body.include_refuting]
        description = body.description
        if description is None:
            description = h.statement + (f"\n\n{h.rationale}" if h.rationale else "")
            if h.status != HypothesisStatus.VALIDATED:
                description += f"\n\n(Created from a hypothesis in status {h.status.value}.)"
        issue_id = client.create_issue(
            body.insights_run_id, title=body.title or h.statement[:200], description=description,
            severity=body.severity, hypothesis_id=h.hypothesis_id, evidence=evidence,
            metadata={"created_by": "insights-ui"})
        analysis = client.get_analysis(body.insights_run_id)
        issue = client.get_issue(issue_id, analysis.experiment_id)
        return {"issue": service.issue_json(issue)}

    # -------------------------------------------------------------- issues

    @post("/issues/list", "The issues of an experiment (default: most traces first)", "issues")
    def list_issues(body: s.ListIssuesBody, request: Request) -> dict[str, Any]:
        client = client_for(request)
        issues = client.list_issues(body.experiment_id)
        total, warnings = len(issues), issues.warnings
        issues = service.sort_and_filter_issues(issues, body)
        chunk, next_token, _ = service.page(issues, body.page_token, None, body.max_results)
        names = service.run_names(client, body.experiment_id) if chunk else {}
        return {"issues": [service.issue_json(i, names) for i in chunk],
                "total_count": total, "matching_count": len(issues),
                "next_page_token": next_token, "warnings": warnings}

    @post("/issues/get", "One issue (experiment_id optional)", "issues")
    def get_issue(body: s.IssueBody, request: Request) -> dict[str, Any]:
        client = client_for(request)
        issue = client.get_issue(body.issue_id, body.experiment_id)
        names = _source_name(client, issue)
        return {"issue": service.issue_json(issue, names)}

    @post("/issues/preview", "The traces cited by an experiment's issues (or one issue), paged",
          "issues")
    def preview_issues(body: s.PreviewIssuesBody, request: Request) -> dict[str, Any]:
        client = client_for(request)
        if body.issue_id:
            issues = [client.get_issue(body.issue_id, body.experiment_id)]
        elif body.experiment_id:
            issues = client.list_issues(body.experiment_id)
        else:
            raise InvalidInputError("Pass experiment_id (all issues) or issue_id (one issue)")
        cited = service.cited_traces((i.issue_id, i.evidence) for i in issues)
        return service.preview(client, cited, body)

    @post("/issues/update", "Change an issue's status, severity, resolution, title or description",
          "issues")
    def update_issue(body: s.UpdateIssueBody, request: Request) -> dict[str, Any]:
        _require_change(body, "status", "severity", "resolution", "title", "description")
        client = client_for(request)
        issue = client.update_issue(
            issue_id=body.issue_id, experiment_id=body.experiment_id, status=body.status,
            severity=body.severity, resolution=body.resolution, title=body.title,
            description=body.description, changed_by=UI_ACTOR)
        return {"issue": service.issue_json(issue, _source_name(client, issue))}

    @post("/issues/bulk-update", "Set status and/or severity on several issues; every id is "
          "checked first (an unknown one: 404, nothing written)", "issues")
    def bulk_update_issues(body: s.BulkUpdateIssuesBody, request: Request) -> dict[str, Any]:
        results = service.bulk_update_issues(client_for(request), body.experiment_id,
                                             body.issue_ids, body.status, body.severity,
                                             by=UI_ACTOR)
        return {"results": results, "updated_count": sum(r["changed"] for r in results),
                "failed_count": sum(not r["ok"] for r in results)}

    @post("/issues/review", "Accept (keep, marked reviewed; a REJECTED issue reopens) or reject "
          "(status REJECTED) an issue in one step", "issues")
    def review_issue(body: s.ReviewIssueBody, request: Request) -> dict[str, Any]:
        client = client_for(request)
        issue = service.review_issue(client, body.issue_id, body.experiment_id, body.decision,
                                     body.reason, by=UI_ACTOR)
        return {"issue": service.issue_json(issue, _source_name(client, issue))}

    @post("/issues/recheck", "Recheck open issues' signatures on newer traces, no model; "
          "each result is recorded in the issue's history", "issues")
    def recheck_issues(body: s.RecheckIssuesBody, request: Request) -> dict[str, Any]:
        from insights.recheck import parse_since, recheck

        results = recheck(client_for(request), body.experiment_id, parse_since(body.since),
                          issue_ids=body.issue_ids)
        return {"results": results}

    @post("/issues/add-evidence", "Cite more traces as evidence for an issue", "issues")
    def add_issue_evidence(body: s.AddEvidenceToIssueBody, request: Request) -> dict[str, Any]:
        client = client_for(request)
        issue = client.update_issue(issue_id=body.issue_id, experiment_id=body.experiment_id,
                                    add_evidence=[e.model_dump() for e in body.evidence])
        return {"issue": service.issue_json(issue, _source_name(client, issue))}

    @post("/issues/log-assessments", "Log a feedback assessment on every trace of an issue",
          "issues")
    def log_assessments(body: s.LogAssessmentsBody, request: Request) -> dict[str, Any]:
        client = client_for(request)
        issue = client.get_issue(body.issue_id, body.experiment_id)
        return service.log_issue_assessments(client, issue, body.experiment_id,
                                             body.assessment_name, body.source_id, body.force)

    @post("/issues/export", "The issue as GitHub Markdown or Jira wiki markup", "issues")
    def export_issue(body: s.ExportIssueBody, request: Request) -> dict[str, Any]:
        client = client_for(request)
        issue = client.get_issue(body.issue_id, body.experiment_id)
        experiment_id = body.experiment_id or _experiment_of(client, issue.source_run_id)
        name = _source_name(client, issue).get(issue.source_run_id)
        render = export.issue_jira if body.format == "jira" else export.issue_markdown
        text = render(issue, experiment_id, ui_url_for(request), name)
        ext = "jira.txt" if body.format == "jira" else "md"
        return {"markdown": text, "format": body.format, "title": issue.title,
                "filename": f"issue-{_slug(issue.title)}.{ext}"}

    # -------------------------------------------------------------- traces, experiments, config

    @post("/traces/get", "The span tree of one trace (inputs and outputs truncated)", "traces")
    def get_trace(body: s.TraceBody, request: Request) -> dict[str, Any]:
        return service.span_tree(client_for(request), body.trace_id, body.max_value_chars)

    @post("/experiments/list", "Experiments, for the UI's experiment picker", "experiments")
    def list_experiments(body: s.ListExperimentsBody, request: Request) -> dict[str, Any]:
        return {"experiments": service.list_experiments(client_for(request), body.max_results)}

    @r.get("/config", summary="UI settings: MLflow UI base URL, refresh interval", tags=["ui"])
    def config(request: Request) -> dict[str, Any]:
        return {"mlflow_ui_url": ui_url_for(request), "api_prefix": API_PREFIX,
                "refresh_ms": 1500}

    @r.get("/openapi.json", summary="This API's OpenAPI document", tags=["ui"],
           include_in_schema=False)
    def openapi_doc() -> dict[str, Any]:
        return openapi_document(r)

    return r


_OPENAPI_CACHE: dict[int, dict[str, Any]] = {}


def openapi_document(router: APIRouter) -> dict[str, Any]:
    key = id(router)
    if key not in _OPENAPI_CACHE:
        _OPENAPI_CACHE[key] = get_openapi(
            title="MLflow Insights Agentic API",
            version="3.0",
            description=(
                "Analyses, hypotheses and issues about traces, stored in MLflow. Every endpoint "
                "is POST with a JSON body. Errors: {\"error_code\", \"message\", \"error\": "
                "{\"code\", \"message\"}} with 400 INVALID_PARAMETER_VALUE, 404 "
                "RESOURCE_NOT_FOUND, 503 TEMPORARILY_UNAVAILABLE, 500 INTERNAL_ERROR."),
            routes=router.routes,
        )
    return _OPENAPI_CACHE[key]


def _require_change(body: BaseModel, *fields: str) -> None:
    if all(getattr(body, f) is None for f in fields):
        raise InvalidInputError(f"Nothing to change: pass at least one of {', '.join(fields)}")


def _slug(text: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return slug[:60] or "export"


def _experiment_of(client: InsightsClient, run_id: str) -> str | None:
    try:
        return client.get_analysis(run_id).experiment_id
    except InsightsError:
        return None


def _source_name(client: InsightsClient, issue) -> dict[str, str]:
    try:
        a = client.get_analysis(issue.source_run_id)
    except InsightsError:
        return {}
    return {a.run_id: a.run_name or a.name}


# ---------------------------------------------------------------------- app


def default_ui_url(tracking_uri: str | None) -> str | None:
    """Where the MLflow UI lives: $MLFLOW_INSIGHTS_UI_URL, else an http(s) tracking URI."""
    configured = os.environ.get(UI_URL_ENV)
    if configured:
        return configured.rstrip("/")
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        parts = urlsplit(tracking_uri)
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")  # drop any credentials
        return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return None


def mount_ui(app: FastAPI) -> None:
    app.mount(UI_PREFIX, StaticFiles(directory=STATIC_DIR, html=True), name="insights-ui")


def create_app(tracking_uri: str | None = None, mlflow_ui_url: str | None = None,
               allowed_hosts: list[str] | None = None) -> FastAPI:
    """The standalone Insights server: the Agentic API and the UI over one tracking store.

    Requests whose Host header does not name the bound address (or one of ``allowed_hosts`` /
    $MLFLOW_INSIGHTS_ALLOWED_HOSTS) get 400, and every response carries a CSP that forbids
    framing and inline code (``insights.server.guard``).
    """
    client = InsightsClient(tracking_uri)
    ui_url = mlflow_ui_url.rstrip("/") if mlflow_ui_url else default_ui_url(client.tracking_uri)
    app = FastAPI(title="MLflow Insights", docs_url=None, redoc_url=None, openapi_url=None)
    router = build_router(lambda _request: client, lambda _request: ui_url)
    app.include_router(router)
    app.state.insights_client = client

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{UI_PREFIX}/")

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    _docs_from_router(app, router)
    mount_ui(app)
    app.add_middleware(guard.StandaloneGuard, allowed_hosts=allowed_hosts or ())
    return app


def _docs_from_router(app: FastAPI, router: APIRouter) -> None:
    """``app.openapi()`` is the router's document (served at {API_PREFIX}openapi.json)."""
    app.openapi = lambda: openapi_document(router)  # type: ignore[method-assign]


def serve(host: str = "127.0.0.1", port: int = 5050, tracking_uri: str | None = None,
          mlflow_ui_url: str | None = None, log_level: str = "info",
          allowed_hosts: list[str] | None = None) -> None:
    """Run the standalone server with uvicorn (blocks)."""
    import uvicorn

    app = create_app(tracking_uri, mlflow_ui_url, allowed_hosts)
    print(f"MLflow Insights UI: http://{host}:{port}{UI_PREFIX}/  "
          f"API: http://{host}:{port}{API_PREFIX}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
