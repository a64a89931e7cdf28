"""``insights-agent mcp --http PORT``: the same tools over streamable HTTP on 127.0.0.1,
reached with the MCP SDK's streamable HTTP client."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time

import pytest

from insights_mcp_helpers import ROOT, server_command, server_env

pytestmark = pytest.mark.timeout(300)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc: subprocess.Popen, port: int, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited before listening"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listening on 127.0.0.1:{port} after {limit_s}s")


def test_http_transport_serves_the_tools_on_loopback(small_store):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    port = free_port()
    log = open(small_store.root / "http-server.log", "w")
    proc = subprocess.Popen(server_command(small_store, "--http", str(port)), cwd=ROOT,
                            env=server_env(small_store), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(proc, port)

        async def go():
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write, _):
                async with ClientSession(read, write) as s:
                    await s.initialize()
                    names = {t.name for t in (await s.list_tools()).tools}
                    created = await s.call_tool("create_analysis", {"run_name": "Over HTTP"})
                    listed = await s.call_tool("list_analyses", {})
                    bad = await s.call_tool("update_analysis", {
                        "run_id": json.loads(created.content[0].text)["run_id"],
                        "status": "FINISHED"})
                    return names, created, listed, bad

        names, created, listed, bad = asyncio.run(go())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert {"list_issues", "execute_sql", "create_baseline_census"} <= names
    run_id = json.loads(created.content[0].text)["run_id"]
    assert [a["run_id"] for a in json.loads(listed.content[0].text)["analyses"]] == [run_id]
    assert bad.isError and "'ACTIVE', 'COMPLETED' or 'ARCHIVED'" in bad.content[0].text
    with small_store.client() as client:
        assert client.get_analysis(run_id).status.value == "ACTIVE"
    # It says where it listens: loopback only.
    assert f"http://127.0.0.1:{port}/mcp" in (small_store.root / "http-server.log").read_text()
