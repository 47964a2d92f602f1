# Drives tend's dashboard in a real Chromium (Debian's, through Playwright)
# against a running `tend serve`: signs in with the token, sees a running
# execution appear live, opens it, sees its log lines arrive, kills it from
# the button, sees it become killed, filters by status through the address
# bar, and checks that no request went out without the token. Saves a
# screenshot. Prints "ok" and exits 0 when every step held.
#
# usage: dashboard.py BASE_URL TOKEN TEND_BIN SCREENSHOT
import os
import subprocess
import sys

from playwright.sync_api import expect, sync_playwright

base, token, tend, shot = sys.argv[1:5]
bare = []  # API requests sent without the token


def launch(*argv):
    out = subprocess.run([tend, "run", "-d", *argv], check=True, capture_output=True, text=True)
    return out.stdout.strip()


with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync"],
    )
    page = browser.new_page(viewport={"width": 1280, "height": 800})

    def watch(req):
        if "/api/" in req.url and "authorization" not in {k.lower() for k in req.headers}:
            bare.append(req.url)

    page.on("request", watch)
    expect_error = []
    page.on("pageerror", lambda e: expect_error.append(str(e)))

    # Without the token, only the sign-in form; a wrong token says so.
    page.goto(base + "/")
    expect(page.locator("#signin")).to_be_visible()
    page.fill("#token-input", "x" * 20)
    page.click("#signin button[type=submit]")
    expect(page.locator("#signin-error")).to_contain_text("refused")
    page.fill("#token-input", token)
    page.click("#signin button[type=submit]")
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#live")).to_contain_text("live")

    # Some history, for the screenshot: a success and a failure.
    launch("--name", "nightly-report", "--", "sh", "-c", "echo done")
    launch("--name", "backup-db", "--", "sh", "-c", "echo disk full >&2; exit 3")

    # A new execution appears without reloading, and its output arrives.
    script = "for i in 1 2 3 4 5 6 7 8 9 10; do echo line-$i; sleep 0.3; done; sleep 30"
    eid = launch("--name", "browser-demo", "--", "sh", "-c", script)
    row = page.locator(f"tr[data-id='{eid}']")
    expect(row).to_be_visible(timeout=5000)
    expect(row.locator("td.status")).to_have_text("running")
    row.click()
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#log")).to_contain_text("line-3", timeout=10000)
    expect(page.locator("#stats-summary")).to_contain_text("executions")
    expect(page.locator("#per-hour .bar")).to_have_count(24)
    page.screenshot(path=shot)

    # Kill from the button: it asks first and shows the grace.
    page.click("#kill")
    expect(page.locator("#confirm-text")).to_contain_text("grace")
    page.click("#confirm-ok")
    expect(row.locator("td.status")).to_have_text("killed", timeout=15000)

    # Jobs: listed with their schedule; "Run now" starts one, numbered.
    subprocess.run([tend, "job", "add", "nightly", "--schedule", "0 3 * * *", "--", "sh", "-c", "echo job-ran"],
                   check=True, capture_output=True)
    page.reload()
    jobs = page.locator("#jobs")
    expect(jobs).to_contain_text("nightly")
    expect(jobs).to_contain_text("0 3 * * *")
    page.get_by_role("button", name="Run now nightly").click()
    expect(page.locator("td", has_text="nightly#1")).to_be_visible(timeout=10000)

    # Filter by status through the address bar.
    page.goto(base + "/?status=killed")
    expect(page.locator(f"tr[data-id='{eid}']")).to_be_visible()
    expect(page.locator("#f-status")).to_have_value("killed")
    page.goto(base + "/?status=succeeded")
    expect(page.locator(f"tr[data-id='{eid}']")).to_have_count(0)

    browser.close()

if bare:
    print("requests without the token:", bare)
    sys.exit(1)
if expect_error:
    print("page errors:", expect_error)
    sys.exit(1)
print("ok")
