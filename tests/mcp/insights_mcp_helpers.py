"""Helpers for the MCP server tests: the server's command and environment, and an MCP client
session talking to ``insights-agent mcp`` over stdio (a module of its own, not conftest, so
test files import it by a name no other folder uses)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def server_env(store: Any, **extra: str) -> dict[str, str]:
    """The server's environment: this one (the analytics cache folder of the session
    included), the repo on the path, and the demo experiment as the default."""
    env = dict(os.environ, MLFLOW_EXPERIMENT_ID=store.experiment_id,
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.pop("MLFLOW_TRACKING_URI", None)  # the server must take the URI from --tracking-uri
    env.update(extra)
    return env


def server_command(store: Any, *more: str) -> list[str]:
    return [sys.executable, "-m", "agent.cli", "mcp", "--tracking-uri", store.uri, *more]


@contextlib.asynccontextmanager
async def stdio_session(store: Any) -> AsyncIterator:
    """An initialized MCP ``ClientSession`` with ``insights-agent mcp`` spawned over stdio."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    command = server_command(store)
    params = StdioServerParameters(command=command[0], args=command[1:], env=server_env(store),
                                   cwd=str(ROOT))
    with open(store.root / "server-stderr.log", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session
