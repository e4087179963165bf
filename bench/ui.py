"""The web UI on a 2M-object heap (issue [10/11]): how long each view takes to load once the
dump is analysed, in the API and in a real browser, next to the CLI command that prints the
same view (which has to read the dump again each time: the baseline).

Uses the three ~2,000,000-object dumps of bench/heap.rb (generated once into
target/bench-heap/2000000/ by `ruby bench/heap.rb --generate`), the release binary, and
Playwright with Debian's Chromium from target/pyenv (scripts/install-deps).

    cargo build --release -p rbscope
    target/pyenv/bin/python bench/ui.py [RUNS]

Prints one line per view: the UI's time (median of RUNS; the first, uncached, time too),
the CLI's, and the ratio. Exits non-zero if a command fails or a view misses the target.
"""

import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RBSCOPE = ROOT / "target/release/rbscope"
OBJECTS = 2_000_000
DUMPS = ROOT / f"target/bench-heap/{OBJECTS}"
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
TARGET_S = 2.0


def generate():
    if all((DUMPS / f"{i}.json").exists() for i in (1, 2, 3)):
        return
    DUMPS.mkdir(parents=True, exist_ok=True)
    print(f"generating three {OBJECTS}-object dumps into {DUMPS} (once; a few minutes)")
    subprocess.run(["ruby", str(ROOT / "bench/heap.rb"), "--generate", str(OBJECTS), str(DUMPS)], check=True)


def get(base, path):
    """(status, seconds, JSON) of one GET."""
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(base + path) as r:
            body, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    return status, time.perf_counter() - t, json.loads(body)


def until_ready(base, path):
    t = time.perf_counter()
    while True:
        status, _, body = get(base, path)
        if status != 202:
            assert status == 200, (path, status, body)
            return time.perf_counter() - t, body
        time.sleep(0.05)


def timed(fn, runs=RUNS):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def cli(*args):
    t = time.perf_counter()
    subprocess.run([str(RBSCOPE), *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    generate()
    dumps = [str(DUMPS / f"{i}.json") for i in (1, 2, 3)]
    for d in dumps:  # into the page cache, for both sides alike
        subprocess.run(["cat", d], check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen(
        [str(RBSCOPE), "ui", "--listen", "127.0.0.1:0", *dumps],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base = server.stdout.readline().strip().removeprefix("rbscope ui: open ").rstrip("/")
        rows = []
        failed = []

        def row(view, first, times, baseline):
            med = statistics.median(times)
            rows.append((view, first, med, baseline))
            if med > TARGET_S or first > TARGET_S:
                failed.append(view)

        analysis, info = until_ready(base, "/api/heap/f3")
        print(f"analysis of {Path(dumps[2]).name} ({info['objects']:,} objects): {analysis:.2f} s "
              f"(read, graph, dominator tree, paths, summary, first view's records)")

        top_q = "/api/heap/f3/top?depth=2&limit=60"
        first = get(base, top_q)[1]
        row("top: biggest retainers (2 levels)", first, timed(lambda: get(base, top_q)),
            cli("heap", "top", "--json", "--depth", "2", "-n", "60", dumps[2]))
        _, _, top = get(base, top_q)
        biggest = max(top["tree"], key=lambda n: n["retained"] if n["depth"] == 0 else 0)
        from_q = f"/api/heap/f3/top?from={biggest['address']}&depth=2&limit=60"
        first = get(base, from_q)[1]
        row("top --from the biggest (zoom in)", first, timed(lambda: get(base, from_q)),
            cli("heap", "top", "--json", "--depth", "2", "-n", "60", "--from", biggest["address"], dumps[2]))
        _, _, zoomed = get(base, from_q)
        leaf = zoomed["tree"][-1]["address"]
        path_q = f"/api/heap/f3/path?address={leaf}"
        first = get(base, path_q)[1]
        row("path of an object", first, timed(lambda: get(base, path_q)),
            cli("heap", "path", "--json", dumps[2], leaf))
        sum_q = "/api/heap/f3/summary"
        first = get(base, sum_q)[1]
        row("summary", first, timed(lambda: get(base, sum_q)), cli("heap", "summary", "--json", "-n", "50", dumps[2]))
        diff_compute, _ = until_ready(base, "/api/diff?files=f1,f2,f3")
        diff_q = "/api/diff?files=f1,f2,f3"
        row("diff of the three (after computing it)", get(base, diff_q)[1], timed(lambda: get(base, diff_q)),
            cli("heap", "diff", "--json", *dumps))
        print(f"diff computed in {diff_compute:.2f} s (once, in the background)")

        print()
        print(f"{'view (API)':42} {'first':>8} {'median':>8} {'CLI':>8} {'UI/CLI':>7}")
        for view, first, med, base_s in rows:
            print(f"{view:42} {first:7.3f}s {med:7.3f}s {base_s:7.2f}s {med / base_s:7.3f}")
        sys.stdout.flush()
        browser_rows = browser(base, biggest["address"], leaf)
        if browser_rows:
            print()
            print(f"{'page in Chromium (until drawn)':42} {'first':>8} {'median':>8}")
            for view, first, times in browser_rows:
                med = statistics.median(times)
                print(f"{view:42} {first:7.3f}s {med:7.3f}s")
                if med > TARGET_S or first > TARGET_S:
                    failed.append(view)
        if failed:
            print(f"over {TARGET_S} s: {failed}")
            sys.exit(1)
        print(f"every view under {TARGET_S} s after the analysis")
    finally:
        server.kill()


def browser(base, zoom_address, leaf):
    """Time from navigation to the view being drawn, in Chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("(playwright not installed: browser timings skipped; run scripts/install-deps)")
        return []
    out = []
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        page = b.new_page(viewport={"width": 1400, "height": 900})

        def load(path, selector):
            def go():
                page.goto(base + path)
                page.wait_for_selector(selector, state="visible", timeout=30_000)
            return go

        for view, path, sel in [
            ("heap page: treemap of the roots", "/heap/f3", '[data-testid="treemap-node"]'),
            ("heap page zoomed into the biggest", f"/heap/f3?from={zoom_address}", '[data-testid="treemap-node"]'),
            ("retention path", f"/heap/f3/path/{leaf}", '[data-testid="path-step"]'),
            ("diff of the three", "/diff?files=f1,f2,f3", '[data-testid="diff-row"]'),
        ]:
            go = load(path, sel)
            first = timed(go, 1)[0]
            out.append((view, first, timed(go)))
        b.close()
    return out


if __name__ == "__main__":
    main()
