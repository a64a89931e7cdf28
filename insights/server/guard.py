"""Limits on what the REST API reads, and the standalone server's Host and browser headers.

Request bodies are read up to a size limit (413 beyond it) and must be UTF-8 JSON nested no
deeper than a limit (400 otherwise), checked before FastAPI parses them: Python's JSON parser
raises RecursionError on thousands of nested arrays, which used to surface as a 500.

The standalone server (``insights-agent serve``) also answers only to Host names that belong
to its bind address, so a web page on another domain that rebinds its DNS to 127.0.0.1 cannot
read or write analyses (DNS rebinding), and sends headers that forbid framing and inline code.
Inside ``mlflow server --app-name insights`` MLflow's own security middleware does the latter.
"""

from __future__ import annotations

import ipaddress
import os
import re
from itertools import accumulate
from typing import Any, Iterable

from starlette.requests import Request

MAX_BODY_ENV = "MLFLOW_INSIGHTS_MAX_BODY_BYTES"
ALLOWED_HOSTS_ENV = "MLFLOW_INSIGHTS_ALLOWED_HOSTS"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # room for several 100,000-character texts
MAX_JSON_DEPTH = 32  # the deepest real body (evidence lists of objects) is 3

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})

SECURITY_HEADERS = {
    # The UI is one module script and one stylesheet from /insights/; it calls the API on the
    # same origin and shows the favicon as a data: URL. Nothing else may load or frame it.
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}

# A string, closed or not: the optional closing quote means a match never fails and is retried,
# so stripping strings stays linear even on a body of unbalanced quotes and backslashes.
_STRINGS = re.compile(rb'"(?:[^"\\]++|\\.)*+"?', re.DOTALL)
_NOT_BRACKETS = re.compile(rb"[^\[\]{}]+")
_STEP = [1 if chr(b) in "[{" else -1 if chr(b) in "]}" else 0 for b in range(256)]


class BodyRejected(Exception):
    """A request body refused before parsing: ``status`` is 413 or 400."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code


def max_body_bytes() -> int:
    """The body size limit: $MLFLOW_INSIGHTS_MAX_BODY_BYTES, else 1 MiB."""
    raw = os.environ.get(MAX_BODY_ENV, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_BODY_BYTES


async def read_checked_body(request: Request) -> bytes:
    """Read the body (at most the limit), check it is UTF-8 JSON of bounded depth, and leave it
    cached on ``request`` so FastAPI's own parsing reads the same bytes."""
    limit = max_body_bytes()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # starlette's cache: request.body() / .json() return these bytes
    check_json_body(body)
    return body


def check_json_body(body: bytes) -> None:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyRejected(400, "INVALID_PARAMETER_VALUE",
                           f"Request body is not UTF-8 (invalid byte at position {exc.start})"
                           ) from None
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise BodyRejected(400, "INVALID_PARAMETER_VALUE",
                           f"Request body nests JSON more than {MAX_JSON_DEPTH} levels deep")


def json_depth(body: bytes) -> int:
    """How deep arrays and objects nest, counted without parsing (brackets in strings skipped).

    Strings are cut out by a regex, then the running sum of +1 per opening and -1 per closing
    bracket is taken with C-level ``map``/``accumulate``: a fraction of a second for a body
    of brackets at the size limit.
    """
    brackets = _NOT_BRACKETS.sub(b"", _STRINGS.sub(b"", body))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _too_large(limit: int) -> BodyRejected:
    return BodyRejected(413, "REQUEST_LIMIT_EXCEEDED",
                        f"Request body is larger than {limit} bytes (set {MAX_BODY_ENV} to raise "
                        "the limit)")


# ---------------------------------------------------------------------- standalone server


def configured_hosts(extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names allowed besides the bind address: $MLFLOW_INSIGHTS_ALLOWED_HOSTS (comma
    separated) and ``extra`` (``insights-agent serve --allowed-host``)."""
    names = [*os.environ.get(ALLOWED_HOSTS_ENV, "").split(","), *extra]
    return frozenset(n.strip().lower() for n in names if n.strip())


def split_host(header: str) -> tuple[str, int | None]:
    """``name[:port]`` or ``[v6][:port]`` -> (name, port); port None when absent or bad."""
    header = header.strip().lower()
    if header.startswith("["):
        name, _, rest = header[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = header.rpartition(":") if header.count(":") == 1 else (header, "", "")
    return name, int(port) if port.isdigit() else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_allowed(header: str, server: tuple[str, int] | None, extra: frozenset[str]) -> bool:
    """Does the Host header name this server?

    The port must be the bound port. The name must be: a configured name; for a loopback bind,
    a loopback name; for a specific address, that address; for a wildcard bind (0.0.0.0, ::),
    localhost or an IP address. A DNS rebinding attack always arrives with the attacker's
    domain name as Host, so it is refused unless that name was configured.
    """
    name, port = split_host(header)
    if not name:
        return False
    if name in extra or f"{name}:{port}" in extra:
        return True
    if server is None:
        return name in LOOPBACK_NAMES
    bound_host, bound_port = str(server[0]).lower(), server[1]
    if (port or 80) != bound_port:
        return False
    if bound_host in WILDCARD_BINDS:
        return name == "localhost" or _is_ip(name)
    if bound_host in LOOPBACK_NAMES or bound_host.startswith("127."):
        return name in LOOPBACK_NAMES or name == bound_host
    return name == bound_host


class StandaloneGuard:
    """ASGI middleware for the standalone server: refuse foreign Host names (400), and add
    the browser security headers to every response."""

    def __init__(self, app: Any, allowed_hosts: Iterable[str] = ()):
        self.app = app
        self.extra = configured_hosts(allowed_hosts)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not host_allowed(host, scope.get("server"), self.extra):
            await _refuse_host(host, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*_without_security(message.get("headers") or []),
                                      *_security_headers()]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _security_headers() -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


def _without_security(headers: list) -> list:
    return [(k, v) for k, v in headers if k.decode("latin-1").lower() not in SECURITY_HEADERS]


async def _refuse_host(host: str, send: Any) -> None:
    import json

    message = (f"Host header {host[:100]!r} does not name this server; set "
               f"{ALLOWED_HOSTS_ENV} (or --allowed-host) to serve it under another name")
    body = json.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": message,
                       "error": {"code": "INVALID_PARAMETER_VALUE", "message": message}}).encode()
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *_security_headers()]})
    await send({"type": "http.response.body", "body": body})
