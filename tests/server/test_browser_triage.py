"""Triage in the web UI, in headless Debian Chromium (Playwright) against a real uvicorn server
over a real SQLite store: bulk status/severity, accept/reject, recheck badges, an issue's
history timeline, comparing two evidence traces, the supporting/refuting filter, paged
hypotheses and the traces an analysis examined. Writes docs/screenshots/*.png."""

from __future__ import annotations

from insights.client import InsightsClient
from tests.server.browser_kit import SHOTS, expect, pytestmark, sync_api  # noqa: F401


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def row(page, title: str):
    return page.locator("[data-testid=issue-row]", has_text=title)


def test_bulk_select_and_set_status_and_severity(ui):
    page, base, s = ui
    page.wait_for_selector("[data-testid=issue-row]")
    expect(page.locator("#bulk-apply")).to_be_disabled()
    row(page, "Lookup timeouts").locator(".select-issue").check()
    row(page, "Empty answers").locator(".select-issue").check()
    expect(page.locator("[data-testid=selected-count]")).to_have_text("2 selected")
    expect(page.locator("#select-all")).not_to_be_checked()
    page.select_option("#bulk-status", "IN_PROGRESS")
    page.select_option("#bulk-severity", "CRITICAL")
    shot(page, "issues-bulk.png")
    page.click("#bulk-apply")
    page.wait_for_selector(".toast >> text=Updated 2 issues")
    client = InsightsClient(s.uri)
    a, b, c = (client.get_issue(i) for i in s.issue_ids)
    assert (a.status.value, a.severity.value) == ("IN_PROGRESS", "CRITICAL")
    assert (b.status.value, b.severity.value) == ("IN_PROGRESS", "CRITICAL")
    assert (c.status.value, c.severity.value) == ("OPEN", "CRITICAL")
    assert [h["event"] for h in a.metadata["history"]] == ["status", "severity"]
    expect(row(page, "Empty answers").locator("[data-testid=st-badge]")).to_have_text("IN PROGRESS")

    # select all, then resolve everything on the page
    page.check("#select-all")
    expect(page.locator("[data-testid=selected-count]")).to_have_text("3 selected")
    assert page.locator(".select-issue:checked").count() == 3
    page.select_option("#bulk-status", "RESOLVED")
    page.click("#bulk-apply")
    page.wait_for_selector(".toast >> text=Updated 3 issues")
    assert {i.status.value for i in client.list_issues(s.experiment_id)} == {"RESOLVED"}


def test_accept_and_reject_in_one_click(ui):
    page, base, s = ui
    page.wait_for_selector("[data-testid=issue-row]")
    row(page, "Empty answers").locator("button[data-action=reject]").click()
    page.wait_for_selector(".toast >> text=Rejected: Empty answers")
    expect(row(page, "Empty answers").locator("[data-testid=st-badge]")).to_have_text("REJECTED")
    client = InsightsClient(s.uri)
    issue = client.get_issue(s.issue_ids[1])
    assert issue.status.value == "REJECTED" and issue.metadata["review"] == "rejected"

    row(page, "Lookup timeouts").locator("button[data-action=accept]").click()
    page.wait_for_selector(".toast >> text=Accepted: Lookup timeouts")
    expect(row(page, "Lookup timeouts").locator("[data-testid=accepted]")).to_be_visible()
    issue = client.get_issue(s.issue_ids[0])
    assert issue.status.value == "OPEN" and issue.metadata["review"] == "accepted"

    # on the issue page: accepting the rejected one reopens it
    row(page, "Empty answers").locator("a").first.click()
    page.wait_for_selector("[data-testid=issue-title]")
    expect(page.locator("button[data-action=reject]")).to_be_disabled()
    page.click("button[data-action=accept]")
    expect(page.locator("[data-testid=review-state]")).to_have_text("accepted")
    issue = client.get_issue(s.issue_ids[1])
    assert issue.status.value == "OPEN" and issue.metadata["review"] == "accepted"
    events = page.locator("[data-testid=timeline-item]").evaluate_all(
        "els => els.map(e => e.dataset.event)")
    assert events == ["created", "rejected", "accepted"]


def test_recheck_from_the_list_shows_badges(ui):
    page, base, s = ui
    client = InsightsClient(s.uri)
    sig = {"kind": "census", "key": "census:errors", "where": "state = 'ERROR'"}
    errors = client.create_issue(s.run_id, "Lookup errors", severity="HIGH", metadata={
        "signature": sig, "last_seen": 1})
    gone = client.create_issue(s.run_id, "Vanished failure", severity="LOW", metadata={
        "signature": {**sig, "key": "census:gone", "where": "trace_id = 'nope'"},
        "last_seen": 1})
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.locator("[data-testid=issue-row]")).to_have_count(5)
    assert page.locator("[data-testid=check-badge]").count() == 0
    page.click("#recheck")
    page.wait_for_selector(".toast >> text=Rechecked 2 issues")
    expect(row(page, "Lookup errors").locator("[data-testid=check-badge]")).to_contain_text(
        "still present, 2 traces since")
    expect(row(page, "Vanished failure").locator("[data-testid=check-badge]")).to_contain_text(
        "not seen since")
    assert client.get_issue(errors).metadata["last_check"]["result"] == "still present"
    assert client.get_issue(gone).metadata["last_check"]["result"] == "not seen"
    shot(page, "issues-recheck.png")

    # one issue, from its page: the badge and a recheck entry in its history
    row(page, "Lookup errors").locator("a").first.click()
    page.wait_for_selector("#recheck-issue")
    expect(page.locator("[data-testid=check-badge]")).to_contain_text("still present")
    page.click("#recheck-issue")
    page.wait_for_selector(".toast >> text=Rechecked 1 issue")
    expect(page.locator("[data-testid=timeline-item][data-event=recheck]")).to_have_count(2)

    phone = page.context.browser.new_page(viewport={"width": 375, "height": 812})
    phone.goto(f"{base}#/issues?exp={s.experiment_id}")
    phone.wait_for_selector("[data-testid=check-badge]")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    phone.screenshot(path=str(SHOTS / "issues-recheck-phone.png"), full_page=True)
    phone.close()


def test_issue_history_timeline(ui):
    page, base, s = ui
    client = InsightsClient(s.uri)
    iid = s.issue_ids[0]
    t0 = client.get_issue(iid).created_at
    numbers = {"trace_count": 4, "total_traces": 6, "share": 0.6667}
    client.update_issue(issue_id=iid, metadata={"history": [
        {"at": t0 + 1, "run_id": s.run_id, "key": "census:errors", "event": "seen",
         "numbers": numbers},
        {"at": t0 + 2, "run_id": s.run_id, "key": "plan:h1", "event": "merged",
         "numbers": {**numbers, "trace_count": 5}},
        {"at": t0 + 3, "run_id": None, "event": "recheck", "result": "worse",
         "numbers": {"since": t0, "count": 9, "traces": 20, "rate": 0.45, "earlier_rate": 0.1}},
        {"at": t0 + 4, "run_id": s.run_id, "event": "regressed", "key": "census:errors",
         "change": "3 new traces since it was resolved", "numbers": numbers},
    ]})
    client.update_issue(issue_id=iid, status="RESOLVED", changed_by="ana")
    page.goto(f"{base}#/issues/{iid}?exp={s.experiment_id}")
    page.wait_for_selector("[data-testid=timeline]")
    items = page.locator("[data-testid=timeline-item]")
    assert items.evaluate_all("els => els.map(e => e.dataset.event)") == [
        "created", "seen", "merged", "recheck", "regressed", "status"]
    texts = items.all_inner_texts()
    assert "error-sweep" in texts[0] and "4 traces (66.7% of 6)" in texts[1]
    assert "(census:errors)" not in texts[2] and "plan:h1" in texts[2]
    assert "worse: 9 traces since" in texts[3] and "4.5× the earlier rate" in texts[3]
    assert "3 new traces since it was resolved" in texts[4]
    assert "OPEN → RESOLVED by ana" in texts[5]

    # a change made in the UI lands as one more entry
    page.select_option("#issue-severity", "LOW")
    page.click("#update-status")
    page.wait_for_selector(".toast >> text=Issue updated")
    last = page.locator("[data-testid=timeline-item]").last
    expect(last).to_have_attribute("data-event", "severity")
    expect(last).to_contain_text("HIGH → LOW by insights-ui")
    page.locator("[data-testid=timeline]").scroll_into_view_if_needed()
    shot(page, "issue-timeline.png")


def test_compare_two_evidence_traces(ui):
    page, base, s = ui
    failing, fine = s.trace_ids[2], s.trace_ids[3]   # lookup timed out / answered
    page.goto(f"{base}#/issues/{s.issue_ids[0]}?exp={s.experiment_id}")
    page.wait_for_selector("[data-testid=evidence-list]")
    expect(page.locator("#compare-btn")).to_be_disabled()
    page.check(f".compare-pick[value='{failing}']")
    page.check(f".compare-pick[value='{fine}']")
    page.click("#compare-btn")
    page.wait_for_selector("[data-testid=compare-row]")
    rows = page.locator("[data-testid=compare-row]")
    assert rows.evaluate_all("els => els.map(e => e.dataset.path)") == ["agent", "agent / lookup"]
    lookup = page.locator("[data-testid=compare-row][data-path='agent / lookup']")
    expect(lookup).to_have_class("cmp-row diff")
    assert "status ERROR vs OK" in lookup.get_attribute("data-diff")
    expect(lookup).to_contain_text("lookup 2 timed out")          # the exception, side A
    assert "difference" in page.inner_text("[data-testid=compare-summary]")
    lookup.locator("details").first.click()
    page.locator("[data-testid=compare]").scroll_into_view_if_needed()
    shot(page, "compare.png")
    # a third pick drops the oldest: still two
    page.check(f".compare-pick[value='{s.trace_ids[4]}']")
    assert page.locator(".compare-pick:checked").count() == 2
    assert not page.locator(f".compare-pick[value='{failing}']").is_checked()


def test_evidence_filter_on_issue_and_hypothesis_pages(ui):
    page, base, s = ui
    InsightsClient(s.uri).update_issue(issue_id=s.issue_ids[1], add_evidence=[
        {"trace_id": s.trace_ids[3], "rationale": "answered fine", "supports": False}])
    page.goto(f"{base}#/issues/{s.issue_ids[1]}?exp={s.experiment_id}")
    page.wait_for_selector("[data-testid=evidence-list]")
    items = page.locator("[data-testid=evidence-list] > li")
    expect(items.filter(visible=True)).to_have_count(2)
    page.select_option("#evidence-filter", "refutes")
    expect(items.filter(visible=True)).to_have_count(1)
    expect(items.filter(visible=True)).to_contain_text("answered fine")
    page.select_option("#evidence-filter", "supports")
    expect(items.filter(visible=True)).to_have_count(1)
    expect(items.filter(visible=True)).to_contain_text("Empty answers in")

    page.goto(f"{base}#/runs/{s.run_id}?exp={s.experiment_id}")
    page.wait_for_selector("[data-testid=hypothesis]")
    page.locator("[data-testid=hypothesis] summary").first.click()
    ev = page.locator("[data-testid=hypothesis] .evidence > li")
    expect(ev.filter(visible=True)).to_have_count(2)
    page.select_option("#hyp-evidence-filter", "supports")
    expect(ev.filter(visible=True)).to_have_count(1)
    expect(ev.filter(visible=True)).to_contain_text("lookup timed out")
    page.select_option("#hyp-evidence-filter", "refutes")
    expect(ev.filter(visible=True)).to_contain_text("fast and fine")


def test_hypotheses_paged_and_traces_examined(ui):
    page, base, s = ui
    client = InsightsClient(s.uri)
    for n in range(21):
        client.create_hypothesis(s.run_id, f"Paged hypothesis {n:02d}")
    page.click("#nav-runs")
    page.wait_for_selector("[data-testid=run-row]")
    expect(page.locator("[data-testid=runs-page-info]")).to_have_text("1–1 of 1")
    page.click("[data-testid=run-row] a.title")
    page.wait_for_selector("[data-testid=hypothesis]")
    expect(page.locator("[data-testid=hypothesis]")).to_have_count(20)
    expect(page.locator("[data-testid=hyp-page-info]")).to_have_text("1–20 of 22")
    expect(page.locator("[data-testid=traces-examined]")).to_contain_text("not counted yet")
    expect(page.locator("[data-testid=progress]")).to_contain_text("22 hypotheses")

    client.create_baseline_census(s.run_id)       # the dashboard polls: the count appears
    expect(page.locator("[data-testid=traces-examined]")).to_have_text("6 traces examined",
                                                                       timeout=10_000)
    expect(page.locator("[data-testid=progress]")).to_contain_text("6 traces examined")
    client.create_hypothesis(s.run_id, "Arrived while watching page 1")
    page.wait_for_selector(".toast >> text=1 new hypothesis on another page", timeout=5000)
    expect(page.locator("[data-testid=hyp-page-info]")).to_have_text("1–20 of 23")
    page.click("[data-testid=hyp-page-info] ~ button")
    expect(page.locator("[data-testid=hyp-page-info]")).to_have_text("21–23 of 23")
    expect(page.locator("[data-testid=hypothesis]")).to_have_count(3)
    assert page.locator("[data-testid=hypothesis] .statement").all_inner_texts() == [
        "Paged hypothesis 19", "Paged hypothesis 20", "Arrived while watching page 1"]
    shot(page, "run-detail-paged.png")
