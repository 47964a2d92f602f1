#!/usr/bin/env python3
"""dashboard_bench.py: the browser side of bench/run's dashboard scenario.

Drives tend's dashboard (the page `tend serve` serves at /) in Debian's
Chromium through Playwright (the Python from scripts/browser's venv), and
times what a person sees, from the page's own DOM:

    dashboard_bench.py load BASE ROUNDS
        ROUNDS first loads, each in a fresh browser context (empty cache,
        empty sessionStorage): navigate to BASE/#token=..., and take the
        page's performance.now() (0 = the start of the navigation) when the
        first row of the executions table (`tr[data-id]`) is in the DOM, and
        at the animation frame after it (the frame that paints it). Also the
        resource timing of the API calls made before it. Prints per round:
        `round R rows N dom_ms X frame_ms Y dcl_ms Z health_ms H list_ms L`.

    dashboard_bench.py live BASE TEND DB ROUNDS KILL_ROUNDS
        One signed-in page. A MutationObserver on the table records, for
        every (id, status) a row shows, the wall-clock time (CLOCK_REALTIME
        in ms, performance.timeOrigin + performance.now()) at which the DOM
        first showed it, and the animation frame after. Per round it runs
        `TEND run -d -- true` and waits until the row shows `succeeded`;
        then KILL_ROUNDS times `TEND run -d -- sh -c 'sleep 0.3'` (`late`: an
        exit well after the start, for comparison), and per kill round
        `TEND run -d -- sleep 600`, waits for `running`, then
        `TEND kill ID` and waits for `killed`. The ledger (DB, read-only)
        gives the committed instants (ms): finished_at for the exit, and
        kill_requested_at/finished_at for the kill. Prints per round:
        `run|late R id ID launch_to_row_ms A launch_to_final_ms B commit_to_dom_ms C commit_to_frame_ms D`
        `kill R id ID kill_to_dom_ms A commit_to_dom_ms C commit_to_frame_ms D`

The token is read from the environment (BENCH_DAEMON_TOKEN), never argv.
Every script it runs in the page is a function (the page's CSP, script-src
'self', refuses Playwright's eval of a bare expression; the CSP is kept).
Chromium is started with --no-sandbox --disable-gpu and without background
networking, component updates or sync; Playwright downloads no browser.
"""

import os
import sqlite3
import subprocess
import sys
import time

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

# Installed before any of the page's scripts run: marks the first row, and
# every (id, status) shown, in the DOM and at the next animation frame.
OBSERVER = """
(() => {
  window.__bench = { firstDom: null, firstFrame: null, dom: {}, frame: {} };
  const b = window.__bench;
  const wall = () => performance.timeOrigin + performance.now();
  const look = () => {
    const body = document.querySelector('#executions tbody');
    if (!body) return;
    const trs = body.querySelectorAll('tr[data-id]');
    if (trs.length && b.firstDom === null) {
      b.firstDom = performance.now();
      b.firstRows = trs.length;
      requestAnimationFrame(() => { b.firstFrame = performance.now(); });
    }
    const now = wall();
    const fresh = [];
    for (const tr of trs) {
      const st = tr.querySelector('td.status');
      const k = tr.dataset.id + '|' + (st ? st.textContent : '');
      if (!(k in b.dom)) { b.dom[k] = now; fresh.push(k); }
    }
    if (fresh.length) requestAnimationFrame(() => {
      const t = wall();
      for (const k of fresh) b.frame[k] = t;
    });
  };
  new MutationObserver(look).observe(document, { childList: true, subtree: true });
})();
"""


def browser_of(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=ARGS)


def page_of(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.add_init_script(OBSERVER)
    return ctx, ctx.new_page()


def load(base, token, rounds):
    with sync_playwright() as p:
        browser = browser_of(p)
        for r in range(1, rounds + 1):
            ctx, page = page_of(browser)
            page.goto(base + "/#token=" + token, wait_until="commit")
            page.wait_for_function("() => window.__bench && window.__bench.firstFrame !== null", timeout=60000)
            b = page.evaluate("() => window.__bench")
            t = page.evaluate("""() => {
                const nav = performance.getEntriesByType('navigation')[0];
                const res = performance.getEntriesByType('resource');
                const took = (p) => { const e = res.find((x) => x.name.includes(p));
                                      return e ? e.responseEnd - e.startTime : -1; };
                return { dcl: nav ? nav.domContentLoadedEventEnd : -1,
                         health: took('/api/v1/health'), list: took('/api/v1/executions?') };
            }""")
            print("round %d rows %d dom_ms %.1f frame_ms %.1f dcl_ms %.1f health_ms %.1f list_ms %.1f"
                  % (r, b["firstRows"], b["firstDom"], b["firstFrame"], t["dcl"], t["health"], t["list"]))
            sys.stdout.flush()
            ctx.close()
        browser.close()


def tend(binary, *argv):
    out = subprocess.run([binary, *argv], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def seen(page, key, timeout_s=30):
    """The (dom, frame) wall-clock ms at which the page showed KEY, or None."""
    try:
        page.wait_for_function("(k) => k in window.__bench.frame", arg=key, timeout=timeout_s * 1000)
    except Exception:  # noqa: BLE001 - reported as a missed round
        return None
    return page.evaluate("(k) => [window.__bench.dom[k], window.__bench.frame[k]]", key)


def live(base, token, binary, db, rounds, kill_rounds):
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)

    def row(id_, cols):
        return con.execute("SELECT %s FROM executions WHERE id = ?" % cols, (id_,)).fetchone()

    with sync_playwright() as p:
        browser = browser_of(p)
        ctx, page = page_of(browser)
        page.goto(base + "/#token=" + token)
        page.wait_for_function("() => window.__bench && window.__bench.firstFrame !== null", timeout=60000)
        page.wait_for_function("() => document.querySelector('#live').textContent.includes('live')", timeout=30000)
        time.sleep(0.5)
        plan = [("run", r, ["true"]) for r in range(1, rounds + 1)]
        plan += [("late", r, ["sh", "-c", "sleep 0.3"]) for r in range(1, kill_rounds + 1)]
        for kind, r, argv in plan:
            t0 = time.time_ns() / 1e6
            id_ = tend(binary, "run", "-d", "--", *argv)
            final = seen(page, id_ + "|succeeded")
            if final is None:
                print("%s %d id %s: the row never showed succeeded" % (kind, r, id_))
                continue
            first = min(v for k, v in page.evaluate("() => window.__bench.dom").items() if k.startswith(id_ + "|"))
            (fin,) = row(id_, "finished_at")
            print("%s %d id %s launch_to_row_ms %.1f launch_to_final_ms %.1f commit_to_dom_ms %.1f commit_to_frame_ms %.1f"
                  % (kind, r, id_, first - t0, final[0] - t0, final[0] - fin, final[1] - fin))
            sys.stdout.flush()
            time.sleep(0.3)
        for r in range(1, kill_rounds + 1):
            id_ = tend(binary, "run", "-d", "--kill-grace", "1s", "--", "sleep", "600")
            if seen(page, id_ + "|running") is None:
                print("kill %d id %s: the row never showed running" % (r, id_))
                continue
            time.sleep(0.3)
            t0 = time.time_ns() / 1e6
            subprocess.run([binary, "kill", id_], check=False, capture_output=True)
            final = seen(page, id_ + "|killed")
            if final is None:
                print("kill %d id %s: the row never showed killed" % (r, id_))
                continue
            req, fin = row(id_, "kill_requested_at, finished_at")
            print("kill %d id %s kill_to_dom_ms %.1f commit_to_dom_ms %.1f commit_to_frame_ms %.1f request_to_commit_ms %d"
                  % (r, id_, final[0] - t0, final[0] - fin, final[1] - fin, fin - req))
            sys.stdout.flush()
            time.sleep(0.3)
        ctx.close()
        browser.close()


def main():
    a = sys.argv[1:]
    token = os.environ.get("BENCH_DAEMON_TOKEN", "")
    if len(a) == 3 and a[0] == "load":
        load(a[1], token, int(a[2]))
    elif len(a) == 6 and a[0] == "live":
        live(a[1], token, a[2], a[3], int(a[4]), int(a[5]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
