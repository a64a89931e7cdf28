"""Fixtures for the MCP server tests: the small demo store of the workflow tests, with a
private copy per test (``small_store``). Helpers are in ``insights_mcp_helpers``.

No ``__init__.py`` here on purpose: a package named ``mcp`` would hide the MCP SDK.
"""

from workflow.conftest import (  # noqa: F401  (fixtures reused as they are)
    _isolated_user_dirs, small_demo_store, small_store)
