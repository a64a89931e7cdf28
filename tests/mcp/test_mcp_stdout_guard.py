"""Over stdio, stdout carries the protocol only: output that code inside the server writes to
stdout (a print, or a raw write to file descriptor 1 as a C library would) goes to stderr and
the session carries on."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from insights_mcp_helpers import ROOT

pytestmark = pytest.mark.timeout(120)

NOISY_SERVER = """
import os
from agent.mcp_server import build_server

server = build_server(None)

@server.tool()
def noisy() -> str:
    print("stray print from a tool", flush=True)
    os.write(1, b"stray bytes on fd 1\\n")
    return "still talking"

server.run("stdio")
"""


def test_stray_stdout_goes_to_stderr(tmp_path):
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = dict(os.environ, PYTHONPATH=str(ROOT),
               MLFLOW_TRACKING_URI=(tmp_path / "mlruns").as_uri())  # never the checkout's store
    params = StdioServerParameters(command=sys.executable, args=["-c", NOISY_SERVER], env=env,
                                   cwd=str(tmp_path))
    log = tmp_path / "stderr.log"

    async def go():
        with open(log, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as s:
                    await s.initialize()
                    first = await s.call_tool("noisy", {})
                    second = await s.call_tool("noisy", {})
                    return first, second

    first, second = asyncio.run(go())
    assert [r.content[0].text for r in (first, second)] == ["still talking"] * 2
    stderr = log.read_text()
    assert stderr.count("stray print from a tool") == 2
    assert stderr.count("stray bytes on fd 1") == 2
