"""The REST API's edges over real HTTP: body size (413), undecodable or absurdly nested JSON
(400, not 500), oversized ids (400), the standalone server's Host check against DNS rebinding,
and the browser security headers on every response, with a UI that works under its CSP."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient

from insights.server import create_app
from insights.server.api import API_PREFIX
from insights.server.guard import MAX_BODY_ENV
from tests.helpers.fixtures import sqlite_template  # noqa: F401 (fast fresh stores)
from tests.server.conftest import UvicornThread, free_port, seed

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory, sqlite_template):  # noqa: F811
    """One seeded store and standalone server for the module: the tests write little, and
    compare before and after when they do."""
    root = tmp_path_factory.mktemp("hardening")
    shutil.copyfile(sqlite_template, root / "mlflow.db")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv(MAX_BODY_ENV, raising=False)
        mlflow.set_tracking_uri(uri)
        try:
            exp = MlflowClient(uri).create_experiment(
                "hardening", artifact_location=(root / "artifacts").as_uri())
            seeded = seed(uri, exp)
            with UvicornThread(create_app(uri, allowed_hosts=["insights.internal"])) as srv:
                srv.seeded = seeded
                yield srv
        finally:
            mlflow.set_tracking_uri(None)


def post(server, path: str, data: bytes | None = None, **kw) -> requests.Response:
    headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
    return requests.post(f"{server.url}{API_PREFIX}{path}", data=data, headers=headers,
                         timeout=30, **kw)


def assert_error(res: requests.Response, status: int, code: str, fragment: str) -> None:
    assert res.status_code == status, res.text[:300]
    body = res.json()
    assert body["error_code"] == code and body["error"]["code"] == code
    assert fragment.lower() in body["message"].lower(), body["message"]


def issue_titles(seeded) -> list[str]:
    return sorted(i.title for i in seeded.client.list_issues(seeded.experiment_id))


# ---------------------------------------------------------------------- bodies


def test_body_over_the_limit_gets_413_and_changes_nothing(server, monkeypatch) -> None:
    s = server.seeded
    monkeypatch.setenv(MAX_BODY_ENV, "4096")
    before = issue_titles(s)
    body = {"insights_run_id": s.run_id, "hypothesis_id": s.hypothesis_id,
            "title": "Too big", "description": "x" * 5000}
    res = post(server, "hypotheses/create-issue", json.dumps(body).encode())
    assert_error(res, 413, "REQUEST_LIMIT_EXCEEDED", "larger than 4096 bytes")

    def chunks():  # no Content-Length: the limit holds while streaming too
        yield json.dumps(body)[:3000].encode()
        yield json.dumps(body)[3000:].encode()

    res = post(server, "hypotheses/create-issue", chunks())
    assert_error(res, 413, "REQUEST_LIMIT_EXCEEDED", "larger than")
    assert issue_titles(s) == before

    body["description"] = "x" * 3000  # under the limit: accepted
    res = post(server, "hypotheses/create-issue", json.dumps(body).encode())
    assert res.status_code == 200, res.text
    assert issue_titles(s) == sorted([*before, "Too big"])


def test_default_limit_refuses_a_large_body_before_reading_it(server) -> None:
    res = post(server, "issues/list", b"[" + b"1," * 600_000 + b"1]")
    assert_error(res, 413, "REQUEST_LIMIT_EXCEEDED", "MLFLOW_INSIGHTS_MAX_BODY_BYTES")


def test_non_utf8_body_gets_400(server) -> None:
    s = server.seeded
    res = post(server, "issues/list", b'{"experiment_id": "' + s.experiment_id.encode()
               + b'\xff\xfe"}')
    assert_error(res, 400, "INVALID_PARAMETER_VALUE", "not UTF-8")
    res = post(server, "issues/list", '{"experiment_id": "1"}'.encode("utf-16"))
    assert res.status_code == 400, res.text


@pytest.mark.parametrize("body", [
    b"[" * 10_000 + b"]" * 10_000,
    b'{"experiment_id": "1", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    b"[" * 100_000,  # unbalanced as well
])
def test_absurdly_nested_json_gets_400(server, body: bytes) -> None:
    assert_error(post(server, "issues/list", body), 400, "INVALID_PARAMETER_VALUE", "nests JSON")


def test_brackets_inside_strings_are_not_nesting(server) -> None:
    s = server.seeded
    title = "[" * 200 + '{"quoted \\" bracket' + "]" * 200
    res = post(server, "issues/update", json.dumps(
        {"issue_id": s.issue_ids[0], "title": title}).encode())
    assert res.status_code == 200, res.text
    assert res.json()["issue"]["title"] == title


def test_malformed_json_is_still_400(server) -> None:
    assert_error(post(server, "issues/list", b'{"experiment_id": '), 400,
                 "INVALID_PARAMETER_VALUE", "Malformed JSON")


@pytest.mark.parametrize("path,field", [
    ("issues/list", "experiment_id"), ("issues/get", "issue_id"),
    ("analyses/get", "insights_run_id"), ("traces/get", "trace_id"),
])
def test_oversized_ids_get_400(server, path: str, field: str) -> None:
    res = post(server, path, json.dumps({field: "9" * 10_000}).encode())
    assert_error(res, 400, "INVALID_PARAMETER_VALUE", field)


def test_oversized_page_token_gets_400(server) -> None:
    s = server.seeded
    for token in ("9" * 5000, "x" * 5000):
        res = post(server, "issues/list", json.dumps(
            {"experiment_id": s.experiment_id, "page_token": token}).encode())
        assert_error(res, 400, "INVALID_PARAMETER_VALUE", "page_token")
        assert len(res.json()["message"]) < 200


def test_oversized_evidence_trace_id_gets_400_and_changes_nothing(server) -> None:
    s = server.seeded
    before = s.client.get_issue(s.issue_ids[0]).evidence
    res = post(server, "issues/add-evidence", json.dumps(
        {"issue_id": s.issue_ids[0], "evidence": [{"trace_id": "tr-" + "a" * 5000}]}).encode())
    assert_error(res, 400, "INVALID_PARAMETER_VALUE", "trace_id")
    assert s.client.get_issue(s.issue_ids[0]).evidence == before


def test_oversized_paths_are_not_server_errors(server) -> None:
    for path in (f"/insights/{'a' * 20_000}", f"{API_PREFIX}issues/{'b' * 20_000}"):
        res = requests.get(server.url + path, timeout=30)
        assert 400 <= res.status_code < 500, (path[:40], res.status_code)


# ---------------------------------------------------------------------- Host header


def raw_request(port: int, host: str, method: str = "GET", path: str = "/health",
                body: bytes = b"") -> tuple[int, str]:
    """One HTTP/1.1 request with exactly this Host header (what a rebound browser sends)."""
    request = (f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode("latin-1") + "\n\n" + rest.decode("utf-8", "replace")


def test_foreign_host_is_refused_and_cannot_write(server) -> None:
    s = server.seeded
    port = server.port
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}",
                 f"localhost.evil.example:{port}", f"127.0.0.1:{port + 1}"):
        status, text = raw_request(port, host, path="/insights/")
        assert status == 400, (host, text[:300])
        assert "does not name this server" in text
    before = issue_titles(s)
    body = json.dumps({"issue_id": s.issue_ids[0], "title": "rebound write"}).encode()
    status, _ = raw_request(port, f"evil.example:{port}", "POST", f"{API_PREFIX}issues/update", body)
    assert status == 400
    assert issue_titles(s) == before


def test_loopback_names_and_configured_hosts_are_served(server) -> None:
    port = server.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}",
                 f"insights.internal:{port}", "insights.internal"):
        status, text = raw_request(port, host)
        assert status == 200, (host, text[:300])


# ---------------------------------------------------------------------- browser headers


def check_security_headers(res_headers) -> None:
    csp = res_headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp, csp
    assert re.search(r"script-src 'self'(;|$)", csp) and "unsafe-inline" not in csp, csp
    assert res_headers.get("x-frame-options") == "DENY"
    assert res_headers.get("x-content-type-options") == "nosniff"


def test_every_response_carries_the_security_headers(server) -> None:
    s = server.seeded
    responses = [
        requests.get(f"{server.url}/insights/", timeout=30),
        requests.get(f"{server.url}/insights/app.js", timeout=30),
        requests.get(f"{server.url}/insights/app.css", timeout=30),
        requests.get(f"{server.url}/insights/missing.js", timeout=30),
        requests.get(f"{server.url}/health", timeout=30),
        requests.get(f"{server.url}/", allow_redirects=False, timeout=30),
        requests.get(f"{server.url}{API_PREFIX}config", timeout=30),
        post(server, "issues/list", json.dumps({"experiment_id": s.experiment_id}).encode()),
        post(server, "issues/get", json.dumps({"issue_id": "no-such-issue"}).encode()),
        post(server, "issues/list", b"[" * 1000),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 200, 307, 200, 200, 404, 400]
    for res in responses:
        check_security_headers(res.headers)
    status, text = raw_request(server.port, "evil.example")
    head = dict(line.split(": ", 1) for line in text.split("\n\n")[0].splitlines()[1:])
    check_security_headers({k.lower(): v for k, v in head.items()})


def test_ui_loads_under_its_csp(server) -> None:
    """Every script and stylesheet is a same-origin file of the right type (nosniff blocks a
    wrong one), and nothing inline is left for the CSP to block."""
    res = requests.get(f"{server.url}/insights/", timeout=30)
    html = res.text
    csp = res.headers["content-security-policy"]
    assert "style-src 'self'" in csp and "connect-src 'self'" in csp and "img-src 'self' data:" in csp
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts)
    assert "<style" not in html and not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers
    for ref, kind in [(m, "javascript") for m in re.findall(r'<script[^>]*src="([^"]+)"', html)] + \
                     [(m, "css") for m in re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)]:
        assert "//" not in ref
        asset = requests.get(f"{server.url}/insights/{ref}", timeout=30)
        assert asset.status_code == 200 and kind in asset.headers["content-type"], ref
    js = requests.get(f"{server.url}/insights/app.js", timeout=30).text
    assert not re.search(r"\.innerHTML\s*=|\beval\(|new Function", js)
    assert not re.search(r"setAttribute\(\s*['\"]style", js)
    # h() sets "style" through the CSSOM (allowed by a CSP), never as an attribute
    assert re.search(r'k === "style"\) el\.style\.cssText', js)
    assert "fetch(API" in js and "http://" not in js.replace("http://www.w3.org", "")


# ---------------------------------------------------------------------- insights-agent serve


def test_insights_agent_serve_checks_host_and_sends_headers(server, tmp_path) -> None:
    seeded = server.seeded
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(MAX_BODY_ENV, None)
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from agent.cli import main; main()", "serve", "--host",
         "127.0.0.1", "--port", str(port), "--tracking-uri", seeded.uri,
         "--allowed-host", "proxy.internal"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.time() < deadline, \
                (tmp_path / "serve.log").read_text()[-2000:]
            time.sleep(0.3)
        res = requests.get(f"http://127.0.0.1:{port}/insights/", timeout=30)
        assert res.status_code == 200
        check_security_headers(res.headers)
        assert raw_request(port, f"evil.example:{port}")[0] == 400
        assert raw_request(port, f"proxy.internal:{port}")[0] == 200
        assert raw_request(port, f"localhost:{port}")[0] == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
