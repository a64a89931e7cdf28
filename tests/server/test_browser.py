"""The web UI in headless Debian Chromium (Playwright) against a real uvicorn server on
127.0.0.1 over a real SQLite store. Also writes docs/screenshots/*.png."""

from __future__ import annotations

import subprocess
import sys
import time

from insights.client import InsightsClient
from tests.server.browser_kit import SHOTS, expect, pytestmark, sync_api  # noqa: F401


def titles(page) -> list[str]:
    return page.locator("[data-testid=issue-row] .title").all_inner_texts()


def test_issues_list_renders_sorts_filters(ui):
    page, base, s = ui
    page.wait_for_selector("[data-testid=issue-row]")
    assert titles(page) == ["Lookup timeouts", "Slow first token", "Empty answers"]
    assert page.locator("[data-testid=trace-count]").all_inner_texts() == ["4", "2", "1"]
    assert page.locator("[data-testid=issue-row] >> text=error-sweep").count() == 3
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "issues.png"), full_page=True)

    page.select_option("#sort", "severity")
    # expect() polls from Playwright's own isolated world: the page's CSP forbids eval, which
    # wait_for_function("...") needs.
    expect(page.locator("[data-testid=issue-row] .title").first).to_have_text("Slow first token")
    assert titles(page) == ["Slow first token", "Lookup timeouts", "Empty answers"]

    page.select_option("#filter-severity", "LOW")
    expect(page.locator("[data-testid=issue-row]")).to_have_count(1)
    assert titles(page) == ["Empty answers"]
    assert "filtered from 3" in page.inner_text("[data-testid=page-info]")

    page.select_option("#filter-severity", "")
    page.select_option("#filter-status", "RESOLVED")
    page.wait_for_selector("[data-testid=empty]")
    page.fill("#from", "2000-01-01")  # date range: nothing resolved either way
    page.click("text=Clear")
    expect(page.locator("[data-testid=issue-row]")).to_have_count(3)

    phone = page.context.browser.new_page(viewport={"width": 375, "height": 812})
    phone.goto(f"{base}#/issues?exp={s.experiment_id}")
    phone.wait_for_selector("[data-testid=issue-row]")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    phone.screenshot(path=str(SHOTS / "issues-phone.png"), full_page=True)
    phone.close()


def test_change_issue_status_in_ui_lands_in_mlflow(ui):
    page, base, s = ui
    page.click("[data-testid=issue-row] a >> text=Lookup timeouts")
    page.wait_for_selector("#update-status")
    assert page.inner_text("[data-testid=issue-title]") == "Lookup timeouts"
    # inline span viewer, loaded on expand
    page.click("[data-testid=show-spans] >> nth=0")
    page.wait_for_selector(".spans .span .name >> text=lookup")
    link = page.locator("[data-testid=evidence-list] a.mono").first.get_attribute("href")
    assert link.startswith(f"http://127.0.0.1:5000/#/experiments/{s.experiment_id}/traces?")

    page.select_option("#issue-status", "IN_PROGRESS")
    page.select_option("#issue-severity", "CRITICAL")
    page.fill("#issue-resolution", "Investigating the lookup service")
    page.focus("#update-status")
    page.keyboard.press("Enter")  # keyboard reachable
    page.wait_for_selector(".toast >> text=Issue updated")
    issue = InsightsClient(s.uri).get_issue(s.issue_ids[0])
    assert issue.status.value == "IN_PROGRESS" and issue.severity.value == "CRITICAL"
    assert issue.resolution == "Investigating the lookup service"
    page.screenshot(path=str(SHOTS / "issue-detail.png"), full_page=True)


SCRIPT = """
import sys
from insights.client import InsightsClient
c = InsightsClient(sys.argv[1])
c.create_hypothesis(sys.argv[2], "Added by another process", testing_plan="watch the UI")
"""


def test_runs_dashboard_shows_hypothesis_from_another_process(ui):
    page, base, s = ui
    page.click("#nav-runs")
    page.wait_for_selector("[data-testid=run-row]")
    assert "Production error analysis" in page.inner_text("[data-testid=run-row]")
    page.screenshot(path=str(SHOTS / "runs.png"), full_page=True)
    page.click("[data-testid=run-row] a.title")
    page.wait_for_selector("[data-testid=hypothesis]")
    page.wait_for_selector("[data-testid=live-indicator]:not([hidden])")

    subprocess.run([sys.executable, "-c", SCRIPT, s.uri, s.run_id], check=True,
                   capture_output=True, timeout=120)
    written = time.monotonic()
    page.wait_for_selector("[data-testid=hypothesis] >> text=Added by another process",
                           timeout=3000)
    assert time.monotonic() - written < 3
    page.wait_for_selector(".toast >> text=New hypothesis", timeout=3000)

    # validate from the UI; it lands in MLflow
    card = page.locator("[data-testid=hypothesis]", has_text="Lookup timeouts cause failed answers")
    card.locator("button[data-action=VALIDATED]").click()
    page.wait_for_selector(".toast >> text=Hypothesis validated")
    h = InsightsClient(s.uri).get_hypothesis(s.run_id, s.hypothesis_id)
    assert h.status.value == "VALIDATED"
    page.locator("[data-testid=hypothesis] summary").first.click()
    page.screenshot(path=str(SHOTS / "run-detail.png"), full_page=True)
    phone = page.context.browser.new_page(viewport={"width": 375, "height": 812})
    phone.goto(page.url)
    phone.wait_for_selector("[data-testid=hypothesis]")
    phone.screenshot(path=str(SHOTS / "runs-phone.png"), full_page=True)
    phone.close()
