"""The rbscope web UI in a real browser: Debian's Chromium, driven by Playwright.

Usage: ui_e2e.py URL UNREACHABLE_URL SCREENSHOT_DIR BROKEN_SNAPSHOT_ID [RAILS_SNAPSHOT_URL]

URL serves the store of tests/programs/ui_app.rb (with one snapshot made unreadable) and the
files f1..f6: three heap dumps of tests/programs/heap_leak.rb, a jsonl trace, a speedscope
profile and a saved `heap top --json`. UNREACHABLE_URL is a UI whose store cannot be reached.
RAILS_SNAPSHOT_URL ("-" or absent: skipped) is the page of tests/programs/ui_rails_app.rb's
snapshot: a record and parameters, shown as their attributes and entries.
Each check raises on failure; a screenshot of every page is saved. Run by tests/ui.rs.
"""

import re
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

url, unreachable_url, shots, broken_id = sys.argv[1:5]
rails_url = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] != "-" else None
base = url.rstrip("/")
shots = Path(shots)
errors = []


def shot(page, name):
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    print(f"screenshot {name}.png")


def tid(page, name):
    return page.locator(f'[data-testid="{name}"]')


def tree_row(scope, name):
    """The value-tree row whose name is exactly `name`."""
    return scope.locator('[data-testid="tree-node"]').filter(
        has=scope.page.locator(".vt-name", has_text=re.compile(rf"^{re.escape(name)}$"))
    ).first


def expand(row):
    toggle = row.locator('[data-testid="toggle"]')
    if toggle.get_attribute("aria-expanded") != "true":
        toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")


with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    )
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(20_000)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on(
        "console",
        lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" and "404" not in m.text and "422" not in m.text and "503" not in m.text else None,
    )
    # Any request to somewhere else than the UI itself fails the test: it works offline.
    page.on(
        "request",
        lambda r: errors.append(f"request outside the UI: {r.url}") if not r.url.startswith(base) else None,
    )

    # 1. The snapshot list, grouped.
    page.goto(url)
    expect(page).to_have_url(re.compile(r"/snapshots"))
    groups = tid(page, "group-row")
    expect(groups).to_have_count(2)
    expect(groups.filter(has_text="Shop::PaymentError")).to_contain_text("3")
    shot(page, "01-snapshots-grouped")

    # Search narrows it (and goes into the URL).
    tid(page, "search").fill("config is")
    tid(page, "search").press("Enter")
    expect(groups).to_have_count(1)
    expect(groups.first).to_contain_text("ArgumentError")
    expect(page).to_have_url(re.compile(r"q=config"))
    tid(page, "search").fill("")
    tid(page, "search").press("Enter")
    expect(groups).to_have_count(2)

    # All snapshots, one row each; the broken one is listed too.
    tid(page, "view-all").click()
    expect(tid(page, "snapshot-row")).to_have_count(4)
    shot(page, "02-snapshots-all")
    tid(page, "view-groups").click()
    expect(groups).to_have_count(2)

    # 2. A snapshot: the group opens its latest.
    groups.filter(has_text="Shop::PaymentError").first.click()
    expect(page).to_have_url(re.compile(r"/snapshots/[0-9A-Z]{26}"))
    expect(tid(page, "exception")).to_contain_text("Shop::PaymentError")
    expect(tid(page, "exception")).to_contain_text("card declined for ann")
    frames = tid(page, "frame")
    expect(frames.first).to_contain_text("Shop::Checkout#charge(order, card_token:)")
    expect(tid(page, "source").first).to_contain_text("raise PaymentError")
    expect(tid(page, "source").first.locator(".current")).to_contain_text("raise PaymentError")
    expect(tid(page, "restore-command")).to_contain_text(re.compile(r"rbscope .*restore [0-9A-Z]{26}"))

    # The secret local is redacted, and so is the password inside the Rails-style params.
    frame0 = frames.first
    expect(tree_row(frame0, "password").locator('[data-testid="redacted"]')).to_be_visible()
    params = tree_row(frame0, "params")
    expand(params)
    user = tree_row(frame0, '"user"')
    expand(user)
    expect(tree_row(frame0, '"password"').locator('[data-testid="redacted"]')).to_be_visible()
    expect(tree_row(frame0, '"email"')).to_contain_text("ann@example.com")

    # The class-level state of the frames' classes, after the frames.
    cls = tid(page, "class-state")
    expect(cls).to_contain_text("Shop::Checkout")
    expect(tree_row(cls, "@gateway")).to_contain_text('"sandbox"')
    expect(tree_row(cls, "@@charges")).to_contain_text(re.compile(r"[1-3]"))

    # Text from the app is shown as text, never run.
    expect(tree_row(frame0, "note")).to_contain_text('<img src=x onerror="window.__pwned=1">')
    assert page.evaluate("window.__pwned") is None, "markup from a snapshot ran"

    # The cycle: order -> @customer -> @orders -> [0] is the order again.
    order = tree_row(frame0, "order")
    expand(order)
    customer = tree_row(frame0, "@customer")
    expand(customer)
    orders = tree_row(frame0, "@orders")
    expand(orders)
    back = tree_row(frame0, "[0]")
    expect(back.locator('[data-testid="cycle"]')).to_be_visible()
    shot(page, "03-snapshot-cycle")
    back.locator('[data-testid="ref-link"]').click()
    expect(order).to_have_class(re.compile(r"vt-flash"))
    shot(page, "04-snapshot-cycle-followed")

    # The other group: the cause chain and a value cut by the depth limit.
    page.goto(f"{base}/snapshots?q=config")
    tid(page, "group-row").first.click()
    expect(tid(page, "exception")).to_contain_text("ArgumentError")
    expect(tid(page, "cause")).to_contain_text("KeyError")
    cfg = tid(page, "frame").filter(has_text="load_config").first
    if cfg.locator('[data-testid="tree-node"]').count() == 0:
        cfg.locator("summary, .frame-head, [data-testid=frame-toggle]").first.click()
    deep = tree_row(cfg, "deep")
    expand(deep)
    # Open `:inner` after `:inner` until the capture's depth limit shows.
    inners = cfg.locator('[data-testid="tree-node"]').filter(
        has=page.locator(".vt-name", has_text=re.compile(r"^:inner$"))
    )
    for _ in range(40):
        if cfg.locator('[data-testid="cut"]').count() > 0:
            break
        handle = inners.last.element_handle()
        toggle = handle.query_selector('[data-testid="toggle"]')
        assert toggle, "an :inner without a toggle before the cut"
        toggle.click()
        page.wait_for_function("t => t.getAttribute('aria-expanded') === 'true'", arg=toggle)
    expect(cfg.locator('[data-testid="cut"]').first).to_be_visible()
    shot(page, "05-snapshot-cause-and-cut")

    # 3. Unknown id: a 404 page.
    resp = page.goto(f"{base}/snapshots/01NOSUCHSNAPSHOTATALL00000")
    assert resp.status == 404, resp.status
    expect(tid(page, "not-found")).to_contain_text("no snapshot with id")
    shot(page, "06-snapshot-404")

    # A snapshot whose blob is damaged: the page says so.
    page.goto(f"{base}/snapshots/{broken_id}")
    expect(tid(page, "error")).to_contain_text("cannot be read")
    shot(page, "07-snapshot-corrupted")

    # A store that cannot be reached: the list page says so.
    other = browser.new_page(viewport={"width": 1400, "height": 900})
    other.goto(unreachable_url)
    expect(tid(other, "error")).to_contain_text("cannot be read")
    expect(tid(other, "error")).to_contain_text("127.0.0.1:1")
    shot(other, "08-store-unreachable")
    other.close()

    # 4. Files, and the heap treemap of the last dump (f3).
    page.goto(f"{base}/files")
    expect(tid(page, "file-row")).to_have_count(6)
    shot(page, "09-files")
    page.goto(f"{base}/heap/f3")
    treemap = tid(page, "treemap")
    expect(treemap).to_be_visible(timeout=60_000)
    nodes = treemap.locator('[data-testid="treemap-node"]')
    expect(nodes.first).to_be_visible()
    shot(page, "10-heap-treemap")
    # The leaking array is among the biggest retainers (inside the Leak module's box): select
    # it, then zoom in.
    top = page.evaluate("fetch('/api/heap/f3/top?depth=2&limit=60').then(r => r.json())")
    address = next(
        n["address"] for n in top["tree"] if n["class"] == "Array" and "6000" in (n.get("info") or "")
    )
    array = treemap.locator(f'[data-testid="treemap-node"][data-address="{address}"]')
    array.click()
    panel = tid(page, "object-panel")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text(address)
    expect(panel).to_contain_text("Array")
    tid(page, "zoom-in").first.click()
    expect(page).to_have_url(re.compile(rf"from={address}"))
    expect(tid(page, "breadcrumb")).to_be_visible()
    expect(nodes.filter(has_text="Leak::Entry").first).to_be_visible()
    shot(page, "11-heap-zoomed")
    # Back goes to the roots again.
    page.go_back()
    expect(page).not_to_have_url(re.compile(r"from="))
    expect(nodes.first).to_be_visible()
    # The icicle of the same data, and the dominator tree.
    tid(page, "view-icicle").click()
    shot(page, "12-heap-icicle")
    expect(tid(page, "domtree-row").first).to_be_visible()
    tid(page, "tab-summary").click()
    expect(tid(page, "heap-summary").first).to_contain_text("Leak::Entry")
    shot(page, "13-heap-summary")

    # Why an entry is alive.
    page.goto(f"{base}/heap/f3?from={address}")
    zoomed = page.evaluate(f"fetch('/api/heap/f3/top?from={address}&depth=2&limit=60').then(r => r.json())")
    entry_address = zoomed["tree"][0]["address"]
    assert zoomed["tree"][0]["class"] == "Leak::Entry", zoomed["tree"][0]
    # Its label (top left corner), not the payload string drawn inside it.
    tid(page, "treemap-node").and_(page.locator(f'[data-address="{entry_address}"]')).click(position={"x": 4, "y": 4})
    expect(tid(page, "object-panel")).to_contain_text(entry_address)
    tid(page, "why-alive").click()
    expect(page).to_have_url(re.compile(r"/heap/f3/path/0x"))
    steps = tid(page, "path-step")
    expect(steps.first).to_be_visible()
    expect(steps.last).to_contain_text(entry_address)
    expect(steps.last).to_contain_text("Leak::Entry")
    expect(steps.filter(has_text="Leak").first).to_be_visible()
    shot(page, "14-heap-path")

    # The diff of the three dumps.
    page.goto(f"{base}/diff?files=f1,f2,f3")
    expect(tid(page, "diff-row").filter(has_text="Leak::Entry").first).to_be_visible(timeout=60_000)
    shot(page, "15-heap-diff")

    # The saved analysis.
    page.goto(f"{base}/saved/f6")
    expect(page.locator("main, body").first).to_contain_text("Leak::Entry")
    shot(page, "16-saved-top")

    # 5. The trace timeline: both threads, a span's details on click.
    page.goto(f"{base}/traces/f4")
    timeline = tid(page, "timeline")
    expect(timeline).to_be_visible()
    labels = tid(page, "thread-label")
    expect(labels.filter(has_text="pricing-worker")).to_have_count(1)
    expect(labels.filter(has_text="main")).to_have_count(1)
    shot(page, "17-trace-timeline")
    tid(page, "zoom-in").first.click()
    tid(page, "zoom-reset").first.click()
    # Click the worker's longest span: where it is drawn follows from its times (the view
    # shows the whole trace after a reset); a few pixels either side allow for rounding.
    canvas = timeline.locator("canvas").first
    box = canvas.bounding_box()
    label_box = labels.filter(has_text="pricing-worker").bounding_box()
    y = label_box["y"] + label_box["height"] / 2 - box["y"]
    trace = page.evaluate("fetch('/api/traces/f4').then(r => r.json())")
    worker = next(t for t in trace["threads"] if t["name"] == "pricing-worker")
    longest = max(worker["spans"], key=lambda s: s[1])
    x = (longest[0] + longest[1] / 2) / trace["end_ns"] * box["width"]
    hit = False
    for dx in (0, -1, 1, -2, 2, -3, 3, -5, 5):
        canvas.click(position={"x": min(max(1, x + dx), box["width"] - 1), "y": max(1, y)})
        # (From Ruby 3.3 on the longest is Integer#times, which is Ruby code there.)
        if tid(page, "span-detail").count() and "pricing-worker" in tid(page, "span-detail").inner_text():
            hit = True
            break
    assert hit, "no span found along the pricing-worker lane"
    expect(tid(page, "span-detail")).to_contain_text("pricing-worker")
    shot(page, "18-trace-span")

    # 6. The profile's flame graph.
    page.goto(f"{base}/profiles/f5")
    flame = tid(page, "flamegraph")
    expect(flame).to_be_visible()
    expect(flame).to_contain_text("Burner#burn")
    shot(page, "19-profile-flamegraph")

    # 7. An unknown page.
    resp = page.goto(f"{base}/nowhere")
    assert resp.status == 404
    expect(tid(page, "not-found")).to_be_visible()

    # 8. A Rails record and parameters: attributes and entries, the internals one row away.
    if rails_url:
        # Another UI (its own store), so another page with its own offline check.
        rails_base = re.match(r"https?://[^/]+", rails_url).group(0)
        page.close()
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(20_000)
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on(
            "request",
            lambda r: errors.append(f"request outside the UI: {r.url}") if not r.url.startswith(rails_base) else None,
        )
        page.goto(rails_url)
        frame0 = tid(page, "frame").first
        user = tree_row(frame0, "user")
        expect(user).to_contain_text('#<User id: 1, name: "ada", password_digest: [REDACTED], age: 36>')
        expect(user).to_contain_text("4 attributes")
        expand(user)
        expect(tree_row(frame0, "name")).to_contain_text('"ada"')
        expect(tree_row(frame0, "password_digest").locator('[data-testid="redacted"]')).to_be_visible()
        expect(tree_row(frame0, "age")).to_contain_text("36")
        internals = tree_row(frame0, "(internals)")
        expand(internals)
        expect(tree_row(frame0, "@attributes")).to_contain_text("ActiveModel::LazyAttributeSet")
        fresh = tree_row(frame0, "fresh")
        expect(fresh).to_contain_text("new record")
        params = tree_row(frame0, "params")
        expect(params).to_contain_text("permitted: false")
        expand(params)
        pu = tree_row(frame0, '"user"')
        expand(pu)
        expect(tree_row(frame0, '"password"').locator('[data-testid="redacted"]')).to_be_visible()
        expect(tree_row(frame0, '"id"')).to_contain_text('"1"')
        shot(page, "20-snapshot-rails-record")

    browser.close()

if errors:
    print("\n".join(errors))
    sys.exit(1)
print("all browser checks passed")
