"""What the browser tests share: headless Debian Chromium driven by Playwright, and a page
of the UI served by a real uvicorn server over the seeded store.

Test modules import ``pytestmark`` (skip without Chromium), ``expect`` and ``SHOTS`` from
here; the ``browser`` and ``ui`` fixtures live in tests/server/conftest.py."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
expect = sync_api.expect

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
# Screenshots go to a temp folder, so running the tests leaves the checkout clean;
# INSIGHTS_UPDATE_SCREENSHOTS=1 writes them into docs/screenshots/ to refresh the docs.
SHOTS = (Path(__file__).resolve().parents[2] / "docs" / "screenshots"
         if os.environ.get("INSIGHTS_UPDATE_SCREENSHOTS") == "1"
         else Path(tempfile.gettempdir()) / f"insights-agent-screenshots-{os.getuid()}")

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} missing: apt-get install -y chromium")
