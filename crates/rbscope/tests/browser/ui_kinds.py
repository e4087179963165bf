"""Snapshots no exception caused, by kind, in a real browser: Debian's Chromium, driven by Playwright.

Usage: ui_kinds.py URL SCREENSHOT_DIR ALPHA_ID BETA_ID BREAKPOINT_ID SLOW_ID BREAKPOINT_REASON SLOW_REASON [gone]

URL serves a store holding exactly: two live snapshots taken together (threads alpha and beta,
`rbscope snapshot -p`), one breakpoint snapshot and one slow request's snapshot (thread
request-1), all of one real process (tests/ui_kinds.rs). With `gone`, beta's snapshot has been
purged since, and only alpha's page is checked: beta is listed without a link. Each check
raises on failure; a screenshot of every page is saved.
"""

import re
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

url, shots, alpha, beta, breakpoint, slow, breakpoint_reason, slow_reason = sys.argv[1:9]
gone = sys.argv[9:] == ["gone"]
base = url.rstrip("/")
shots = Path(shots)
errors = []


def shot(page, name):
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    print(f"screenshot {name}.png")


def tid(scope, name):
    return scope.locator(f'[data-testid="{name}"]')


def page_url(id):
    return re.compile(rf"/snapshots/{id}$")


def kind_page(page, kind, thread, reason):
    """The open snapshot page's header: its kind, what took it and which thread."""
    header = tid(page, "exception")
    expect(tid(header, "kind")).to_have_text(kind)
    expect(tid(header, "kind")).to_have_attribute("data-kind", kind)
    expect(tid(header, "kind")).to_have_class(re.compile(rf"\bkind-{kind}\b"))
    expect(tid(header, "trigger")).to_have_text(reason)
    expect(tid(header, "trigger")).to_have_attribute("data-thread", thread)
    expect(header.locator("h1")).to_have_text(f"{kind[0].upper()}{kind[1:]} snapshot of thread {thread}")


with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run"],
    )
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(20_000)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("request", lambda r: errors.append(f"request outside the UI: {r.url}") if not r.url.startswith(base) else None)

    if gone:
        # Beta's snapshot purged: alpha's page still names beta's thread and id, without a link.
        page.goto(f"{base}/snapshots/{alpha}")
        kind_page(page, "live", "alpha", "asked by rbscope snapshot -p")
        take = tid(page, "take")
        expect(tid(take, "take-thread")).to_have_count(0)
        expect(tid(take, "take-thread-gone")).to_have_count(1)
        expect(tid(take, "take-thread-gone")).to_have_attribute("data-id", beta)
        expect(take).to_contain_text(re.compile(rf"beta \(tid \d+\) {beta} \(not in this store\)"))
        shot(page, "06-live-take-gone")
        browser.close()
        if errors:
            raise SystemExit("\n".join(errors))
        print("all kind checks passed (gone)")
        sys.exit(0)

    # 1. The list, one row per snapshot: each row's kind as its own badge.
    page.goto(f"{base}/snapshots?view=all")
    rows = tid(page, "snapshot-row")
    expect(rows).to_have_count(4)
    for id, kind in [(alpha, "live"), (beta, "live"), (breakpoint, "breakpoint"), (slow, "slow")]:
        badge = tid(page.locator(f'[data-testid="snapshot-row"][data-id="{id}"]'), "kind")
        expect(badge).to_have_text(kind)
        expect(badge).to_have_class(re.compile(rf"\bkind-{kind}\b"))
    # The message column says which thread and why.
    expect(page.locator(f'[data-testid="snapshot-row"][data-id="{slow}"]')).to_contain_text(
        f"thread request-1 ({slow_reason})")
    shot(page, "01-kinds-all")

    # Grouped (by kind and top frame: the two live snapshots, both in Parked#park, are one
    # group): each group row with its kind's badge.
    page.goto(f"{base}/snapshots")
    groups = tid(page, "group-row")
    expect(groups).to_have_count(3)
    expect(tid(page, "kind")).to_have_count(3)
    kinds = sorted(tid(page, "kind").all_inner_texts())
    assert kinds == ["breakpoint", "live", "slow"], kinds
    shot(page, "02-kinds-grouped")

    # 2. The live snapshot of alpha: its kind, reason and thread, and a link to beta's.
    page.goto(f"{base}/snapshots/{alpha}")
    kind_page(page, "live", "alpha", "asked by rbscope snapshot -p")
    take = tid(page, "take")
    expect(take).to_contain_text("Taken together with 1 other thread")
    links = tid(take, "take-thread")
    expect(links).to_have_count(1)
    expect(links.first).to_have_text(re.compile(r"^beta \(tid \d+\)$"))
    expect(links.first).to_have_attribute("data-id", beta)
    expect(tid(take, "take-restore")).to_have_text(
        re.compile(rf"^rbscope restore {alpha} --thread NAME\|TID --store \S+$"))
    shot(page, "03-live-take")
    links.first.click()
    expect(page).to_have_url(page_url(beta))
    kind_page(page, "live", "beta", "asked by rbscope snapshot -p")
    back = tid(tid(page, "take"), "take-thread")
    expect(back).to_have_count(1)
    expect(back.first).to_have_text(re.compile(r"^alpha \(tid \d+\)$"))
    back.first.click()
    expect(page).to_have_url(page_url(alpha))
    kind_page(page, "live", "alpha", "asked by rbscope snapshot -p")

    # 3. The breakpoint's and the slow request's pages: their kinds, reasons and threads; no take.
    page.goto(f"{base}/snapshots/{breakpoint}")
    kind_page(page, "breakpoint", "main", breakpoint_reason)
    expect(tid(page, "take")).to_have_count(0)
    expect(tid(page, "frame").first).to_contain_text("Counter#bump")
    shot(page, "04-breakpoint")
    page.goto(f"{base}/snapshots/{slow}")
    kind_page(page, "slow", "request-1", slow_reason)
    expect(tid(page, "take")).to_have_count(0)
    expect(tid(page, "frame").first).to_contain_text("Checkout#wait_for_stock")
    shot(page, "05-slow")

    browser.close()

if errors:
    raise SystemExit("\n".join(errors))
print("all kind checks passed")
