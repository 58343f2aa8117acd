"""The example shop and its inbox in a real browser (Debian's Chromium via Playwright)."""
import os
import shutil
import threading

import pytest
from werkzeug.serving import make_server

from conftest import require

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
        "--disable-sync", "--no-first-run", "--disable-extensions"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """The example shop running its demo (dev mail server, seeded mail) on a free port."""
    from examples.shop import create_app
    from shared_inbox.demo import start_demo
    from shared_inbox.scheduler import stop

    tmp = tmp_path_factory.mktemp("shop")
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'shop.db'}",
        "SHARED_INBOX_ATTACHMENT_DIR": str(tmp / "files"),
        "SHARED_INBOX_DEV_IMAP_PORT": 0, "SHARED_INBOX_DEV_SMTP_PORT": 0,
    })
    app.instance_path = str(tmp / "instance")
    mail = start_demo(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    stop(app)
    mail.stop()


@pytest.fixture(scope="module")
def browser():
    require("Chromium (apt-get install chromium)", shutil.which("chromium") is not None)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def login(page, base, email, password):
    page.goto(f"{base}/support/")
    assert "/login" in page.url  # the host's own login page
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_agent_logs_in_with_shop_account_and_reads_a_thread(shop, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(shop) and not r.url.startswith(("about:", "data:")) else None)
    login(page, shop, "ada@acme.test", "ada-demo")
    page.wait_for_url(f"{shop}/support/")
    rows = page.locator("tr.si-ticket-row")
    assert rows.count() >= 5
    mailboxes = page.locator(".si-folders").inner_text()
    # Ada works in support and sales, not billing.
    assert "Support" in mailboxes and "Sales" in mailboxes and "Billing" not in mailboxes
    body = page.locator(".si-list").inner_text()
    assert "refund" not in body.lower()
    if os.environ.get("SHARED_INBOX_SCREENSHOT"):
        page.screenshot(path=os.environ["SHARED_INBOX_SCREENSHOT"])

    # The HTML newsletter: shown in a sandboxed frame, its script never runs, and its
    # tracking pixel is never requested.
    page.click("a.si-subject:has-text(\"Spring wholesale catalogue\")")
    frame = page.locator("iframe.si-html")
    assert frame.count() == 1
    assert frame.get_attribute("sandbox") is not None
    assert "allow-scripts" not in frame.get_attribute("sandbox")
    assert page.frame_locator("iframe.si-html").locator("body").inner_text()
    assert not errors, errors
    assert outside == [], outside


def test_non_agent_customer_gets_forbidden(shop, browser):
    page = browser.new_page()
    login(page, shop, "carol@acme.test", "carol-demo")
    response = page.goto(f"{shop}/support/")
    assert response.status == 403
