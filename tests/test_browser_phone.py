"""The dashboard in a real browser: on a phone, in place, and with two agents on one ticket.

Playwright drives Debian's Chromium against the example shop (demo mail server, seeded
mail) with a one-second presence heartbeat. Screenshots go next to test_browser.py's
(``SHARED_INBOX_ARTIFACTS``, else the test's tmp dir).
"""
import os
import smtplib
import threading
from email.message import EmailMessage
from email.utils import make_msgid
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from test_browser import ARGS, CHROMIUM, _wait, _watch, login
from conftest import require

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PHONE = {"width": 390, "height": 844}
TICKET_SUBJECT = "Tent pole snapped on first trip"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """The example shop (as in test_browser.py), its heartbeat every second."""
    from examples.shop import create_app
    from shared_inbox.demo import start_demo
    from shared_inbox.scheduler import stop

    tmp = tmp_path_factory.mktemp("shop_phone")
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'shop.db'}",
        "SHARED_INBOX_ATTACHMENT_DIR": str(tmp / "files"),
        "SHARED_INBOX_DEV_IMAP_PORT": 0, "SHARED_INBOX_DEV_SMTP_PORT": 0,
        "SHARED_INBOX_PRESENCE_INTERVAL": 1,
    })
    app.instance_path = str(tmp / "instance")
    mail = start_demo(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}", app=app, mail=mail)
    server.shutdown()
    stop(app)
    mail.stop()


@pytest.fixture(scope="module")
def browser():
    require("Chromium (apt-get install chromium)", os.path.exists(CHROMIUM))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def artifacts(tmp_path):
    where = os.environ.get("SHARED_INBOX_ARTIFACTS") or str(tmp_path)
    os.makedirs(where, exist_ok=True)
    return where


def ticket_id_of(shop, subject):
    from shared_inbox.extension import get_state

    state = get_state(shop.app)
    with shop.app.app_context():
        m = state.models
        found = state.db.session.scalar(sa.select(m.Ticket.id).where(m.Ticket.subject.contains(subject)))
        state.db.session.remove()
    assert found is not None
    return found


def watch(page, base):
    """test_browser's watcher, minus the browser's own favicon request (the shop has none)."""
    errors, outside = _watch(page, base)
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)

    def real_errors():
        # A 404 the page itself asked for is in ``missing``; a console 404 without one is
        # the browser's own favicon request (a mobile context makes it).
        missing_pages = [url for url in missing if not url.endswith("/favicon.ico")]
        return [e for e in errors if "status of 404" not in e] + missing_pages
    return real_errors, outside


def overflow(page):
    """How many CSS pixels the page is wider than the screen (0: no horizontal scrolling)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def within_screen(page, selector):
    """The element can be scrolled to and lies inside the screen's width."""
    el = page.locator(selector).first
    el.scroll_into_view_if_needed()
    box = el.bounding_box()
    assert box is not None, f"{selector} is not shown"
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, (selector, box)
    assert el.is_visible() and el.is_enabled(), selector
    return box


def test_phone_inbox_and_tickets_fit_the_screen(shop, browser, artifacts):
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    page = context.new_page()
    errors, outside = watch(page, shop.url)
    login(page, shop.url, "ada@acme.test", "ada-demo")
    page.wait_for_url(f"{shop.url}/support/")
    assert page.locator("tr.si-ticket-row").count() >= 5
    assert overflow(page) <= 0
    within_screen(page, "#si-q")
    within_screen(page, "a.si-subject")
    page.screenshot(path=os.path.join(artifacts, "inbox-phone.png"), full_page=True)

    links = page.eval_on_selector_all("a.si-subject", "els => els.map(a => a.href)")
    for href in links:  # every demo conversation: plain text, HTML mail, long addresses
        page.goto(href)
        assert overflow(page) <= 0, f"{href} scrolls sideways by {overflow(page)} px"

    ticket_id = ticket_id_of(shop, TICKET_SUBJECT)
    page.goto(f"{shop.url}/support/tickets/{ticket_id}")
    assert overflow(page) <= 0
    reply = within_screen(page, "#si-reply-text")
    assert reply["width"] >= PHONE["width"] * 0.8  # a reply box as wide as the screen
    send = within_screen(page, "form.si-reply-form button[value=send]")
    assert send["height"] >= 40  # big enough for a thumb
    within_screen(page, "form.si-reply-form button[value=close]")
    within_screen(page, "#si-note-text")
    for selector in ("#si-status", "#si-assignee", "#si-tags-section input[name=name]"):
        within_screen(page, selector)
    page.fill("#si-reply-text", "Typing on a phone " * 30)
    assert overflow(page) <= 0
    page.screenshot(path=os.path.join(artifacts, "ticket-phone.png"), full_page=True)
    assert not errors(), errors()
    assert outside == [], outside
    context.close()


def test_ticket_actions_and_bulk_actions_work_in_place(shop, browser, artifacts):
    from shared_inbox.extension import get_state

    state = get_state(shop.app)
    m = state.models
    ticket_id = ticket_id_of(shop, "Hip belt buckle broke")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, outside = watch(page, shop.url)
    login(page, shop.url, "ada@acme.test", "ada-demo")
    page.wait_for_url(f"{shop.url}/support/")
    page.goto(f"{shop.url}/support/tickets/{ticket_id}")
    page.evaluate("window.siNoReload = true")  # gone if the page loads again
    page.fill("#si-reply-text", "A draft that must survive in-place actions")

    page.select_option("#si-assignee", label="Ben Agent")
    page.click("#si-assignee-section button[type=submit]")
    live = page.locator("#si-live")
    live.locator("text=now assigned to Ben Agent").wait_for()
    assert "assigned to Ben Agent" in page.locator("#si-ticket-header").inner_text()
    assert page.locator("#si-assignee-section button[type=submit]").first.inner_text() == "Transfer"
    assert page.evaluate("document.activeElement.id") == "si-assignee"  # focus kept

    page.fill("#si-tags-section input[name=name]", "winter-kit")
    page.press("#si-tags-section input[name=name]", "Enter")
    live.locator("text=Added tag winter-kit").wait_for()
    assert "winter-kit" in page.locator("#si-ticket-header").inner_text()
    page.click("#si-tags-section button[aria-label='Remove tag winter-kit']")
    live.locator("text=Removed tag winter-kit").wait_for()
    assert "winter-kit" not in page.locator("#si-tags-section").inner_text()

    page.select_option("#si-status", "pending")
    page.click("#si-status-form button[type=submit]")
    live.locator("text=is now pending").wait_for()
    assert page.locator("#si-ticket-header .si-status").inner_text().strip().lower() == "pending"
    assert "changed status open → pending" in page.locator("#si-activity-section").inner_text()
    assert page.input_value("#si-reply-text") == "A draft that must survive in-place actions"
    assert page.evaluate("window.siNoReload === true")
    assert live.get_attribute("aria-live") == "polite"
    with shop.app.app_context():
        t = state.db.session.get(m.Ticket, ticket_id)
        assert t.status == "pending" and t.assignee is not None and t.assignee.name == "Ben Agent"
        assert [tag.name for tag in t.tags] == []
        state.db.session.remove()

    # Bulk: close two conversations from the list; they leave the folder without a reload.
    page.goto(f"{shop.url}/support/?folder=open")
    page.evaluate("window.siNoReload = true")
    rows = page.locator("tr.si-ticket-row")
    before = rows.count()
    assert before >= 3
    chosen = [rows.nth(i).get_attribute("data-ticket") for i in (0, 1)]
    for ticket in chosen:
        page.check(f"#si-sel-{ticket}")
    page.select_option("#si-bulk select[name=action]", "status:closed")
    page.click("#si-bulk button[type=submit]")
    live.locator("text=2 tickets updated.").wait_for()
    assert rows.count() == before - 2
    for ticket in chosen:
        assert page.locator(f"tr.si-ticket-row[data-ticket='{ticket}']").count() == 0
    assert page.evaluate("window.siNoReload === true")
    # The list's keyboard still works on the new rows.
    page.locator("h3").first.click()
    page.keyboard.press("j")
    assert page.locator("tr.si-ticket-row.si-current").count() == 1
    page.screenshot(path=os.path.join(artifacts, "inbox-in-place.png"), full_page=True)
    with shop.app.app_context():
        statuses = {state.db.session.get(m.Ticket, int(t)).status for t in chosen}
        state.db.session.remove()
    assert statuses == {"closed"}
    assert not errors(), errors()
    assert outside == [], outside
    page.close()


def test_two_agents_see_each_other_and_a_new_message_arrives(shop, browser, artifacts):
    from shared_inbox.extension import get_state
    from shared_inbox.mail.imap import poll_all

    state = get_state(shop.app)
    ticket_id = ticket_id_of(shop, TICKET_SUBJECT)
    url = f"{shop.url}/support/tickets/{ticket_id}"
    pages = {}
    for who in ("ada", "ben"):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        pages[who] = (page, watch(page, shop.url))
        login(page, shop.url, f"{who}@acme.test", f"{who}-demo")
        page.wait_for_url(f"{shop.url}/support/")
        page.goto(url)
        page.evaluate("window.siNoReload = true")
    ada, ben = pages["ada"][0], pages["ben"][0]
    ada_others, ben_others = ada.locator("#si-presence-others"), ben.locator("#si-presence-others")

    ada_others.locator("text=Ben Agent is viewing").wait_for(timeout=5000)
    ben_others.locator("text=Ada Agent is viewing").wait_for(timeout=5000)
    assert "Ada Agent" not in ada_others.inner_text()
    assert ada_others.get_attribute("aria-live") == "polite"

    ben.click("#si-reply-text")
    ben.keyboard.type("Hi Alice, a new pole is on its way")
    ada_others.locator("text=Ben Agent is replying").wait_for(timeout=3000)
    assert ada.locator("#si-new-messages").is_hidden()
    # An in-place action of Ben's keeps both his draft and his "replying".
    ben.fill("#si-tags-section input[name=name]", "pole")
    ben.click("#si-tags-section button[type=submit]")
    ben.locator("#si-live").locator("text=Added tag pole").wait_for()
    ada.wait_for_timeout(2500)  # two heartbeats
    assert "Ben Agent is replying" in ada_others.inner_text()

    # The customer writes again meanwhile; after the next poll, Ada's page says so.
    answer = EmailMessage()
    answer["From"] = "Alice Johnson <alice@example.org>"
    answer["To"] = "Acme Outdoor Support <support@example.com>"
    answer["Subject"] = f"Re: {TICKET_SUBJECT}"
    answer["Message-ID"] = mid = make_msgid(domain="example.org")
    with shop.app.app_context():
        m = state.models
        last = state.db.session.scalars(sa.select(m.Message).where(
            m.Message.ticket_id == ticket_id, m.Message.kind == "inbound")
            .order_by(m.Message.id.desc())).first()
        answer["In-Reply-To"] = f"<{last.message_id}>"
        answer["References"] = f"<{last.message_id}>"
        state.db.session.remove()
    answer.set_content("Also, the tent bag zip broke. Alice\n")
    with smtplib.SMTP("127.0.0.1", shop.mail.smtp_port, timeout=10) as smtp:
        smtp.send_message(answer)

    def polled():
        with shop.app.app_context():
            poll_all()
            found = state.db.session.scalar(sa.select(m.Message.ticket_id).where(
                m.Message.message_id == mid.strip("<>")))
            state.db.session.remove()
            return found
    assert _wait(polled, timeout=15, interval=0.3) == ticket_id

    notice = ada.locator("#si-new-messages")
    notice.wait_for(state="visible", timeout=3000)
    assert "1 new message arrived since you opened this page (from Alice Johnson)" in \
        notice.inner_text()
    ben.locator("#si-new-messages").wait_for(state="visible", timeout=3000)
    assert ada.evaluate("window.siNoReload === true")
    assert ben.input_value("#si-reply-text") == "Hi Alice, a new pole is on its way"
    ada.screenshot(path=os.path.join(artifacts, "ticket-presence.png"))

    # Ben reloads to read it: the new message is in the thread and his draft is kept.
    with ben.expect_navigation():
        ben.click("#si-new-messages a")
    assert "the tent bag zip broke" in ben.locator("article.si-inbound").last.inner_text()
    assert ben.input_value("#si-reply-text") == "Hi Alice, a new pole is on its way"
    assert ben.locator("#si-new-messages").is_hidden()

    # Ada never reloaded: her Send is held back with her text kept and the new message shown;
    # the page she gets now knows that message, so sending again goes through.
    ada.fill("#si-reply-text", "Sorry about the pole, Alice")
    with ada.expect_navigation():
        ada.click("form.si-reply-form button[value=send]")
    alert = ada.locator("form.si-reply-form .si-form-summary")
    assert "Not sent: 1 new message(s) arrived since you opened this page (from Alice Johnson)" \
        in alert.inner_text()
    assert ada.input_value("#si-reply-text") == "Sorry about the pole, Alice"
    assert "the tent bag zip broke" in ada.locator("article.si-inbound").last.inner_text()
    with ada.expect_navigation():
        ada.click("form.si-reply-form button[value=send]")
    assert ada.locator("p.si-flash-success", has_text="Reply").count() == 1
    assert "Sorry about the pole" in ada.locator("article.si-outbound").last.inner_text()
    # Another agent's reply is news too: Ben's page says so, and his Send is held back.
    ben_notice = ben.locator("#si-new-messages")
    ben_notice.wait_for(state="visible", timeout=3000)
    assert "1 new message arrived since you opened this page" in ben_notice.inner_text()
    with ben.expect_navigation():
        ben.click("form.si-reply-form button[value=send]")
    assert "Not sent: 1 new message(s) arrived" in \
        ben.locator("form.si-reply-form .si-form-summary").inner_text()
    assert ben.input_value("#si-reply-text") == "Hi Alice, a new pole is on its way"

    # Ben leaves: after PRESENCE_TIMEOUT he is no longer listed (checked through the service,
    # not by waiting 45 seconds).
    from datetime import timedelta

    from shared_inbox.models import utcnow
    from shared_inbox.services import presence

    ben.context.close()
    with shop.app.test_request_context():
        t = state.db.session.get(m.Ticket, ticket_id)
        ada_user = state.db.session.scalar(sa.select(state.user_model).where(
            state.user_model.email == "ada@acme.test"))
        assert presence.others(t, ada_user, now=utcnow() + timedelta(seconds=46)) == []
        state.db.session.remove()
    for who in ("ada", "ben"):
        errors, outside = pages[who][1]
        # The held-back sends answered 422 on purpose (the page with the error and the text).
        real = [e for e in errors() if "status of 422" not in e]
        assert not real, (who, real)
        assert outside == [], (who, outside)
    ada.context.close()


class _PixelServer:
    """A real HTTP server on 127.0.0.1 standing in for a tracking pixel's host."""

    PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d49444154789c6360000002000005000182a2b3f4"
                        "0000000049454e44ae426082")

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        hits = self.hits = []
        png = self.PNG

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(png)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(png)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_remote_images_load_only_after_show_images(shop, browser):
    """No tracking pixel fires when a ticket is opened; "Show images" loads them for that
    message only, and "Block them again" goes back."""
    from shared_inbox.extension import get_state
    from shared_inbox.mail.imap import poll_all

    pixel = _PixelServer()
    state = get_state(shop.app)
    subject = "Newsletter with a tracking pixel 7731"
    mail = EmailMessage()
    mail["From"] = "Deals <deals@example.net>"
    mail["To"] = "Acme Outdoor Support <support@example.com>"
    mail["Subject"] = subject
    mail["Message-ID"] = make_msgid(domain="example.net")
    mail.set_content("Our deals")
    mail.add_alternative(f'<p>Our deals</p><img src="{pixel.url}/open.png?u=42" alt="pixel" '
                         f'width="10" height="10">', subtype="html")
    with smtplib.SMTP("127.0.0.1", shop.mail.smtp_port, timeout=10) as smtp:
        smtp.send_message(mail)

    def polled():
        with shop.app.app_context():
            poll_all()
            m = state.models
            found = state.db.session.scalar(sa.select(m.Ticket.id).where(m.Ticket.subject == subject))
            state.db.session.remove()
            return found
    ticket_id = _wait(polled, timeout=15, interval=0.3)
    assert ticket_id
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        login(page, shop.url, "ada@acme.test", "ada-demo")
        page.wait_for_url(f"{shop.url}/support/")
        page.goto(f"{shop.url}/support/tickets/{ticket_id}")
        frame = page.frame_locator("iframe.si-html")
        assert "Our deals" in frame.locator("body").inner_text()
        page.wait_for_timeout(500)
        assert pixel.hits == []  # opening the ticket fired nothing
        assert "Remote images are blocked" in page.locator("p.si-images").inner_text()

        with page.expect_navigation():
            page.click("p.si-images a:has-text('Show images')")
        assert _wait(lambda: pixel.hits, timeout=5) == ["/open.png?u=42"]
        frame.locator("img").first.wait_for()
        page.wait_for_function(
            "() => { const d = document.querySelector('iframe.si-html').contentDocument;"
            " const i = d && d.querySelector('img'); return i && i.complete && i.naturalWidth > 0; }")

        with page.expect_navigation():
            page.click("p.si-images a:has-text('Block them again')")
        page.wait_for_timeout(500)
        assert pixel.hits == ["/open.png?u=42"]
        assert "Remote images are blocked" in page.locator("p.si-images").inner_text()

        # The frame's own policy still lets our inline (cid:) attachments show.
        page.goto(f"{shop.url}/support/tickets/{ticket_id_of(shop, 'stove won')}")
        page.wait_for_function(
            "() => { const d = document.querySelector('iframe.si-html').contentDocument;"
            " const i = d && d.querySelector('img[alt=\"stove igniter\"]');"
            " return i && i.complete && i.naturalWidth > 0; }")
    finally:
        page.close()
        pixel.close()


# Every control a screen reader lands on needs a name: a <label>, aria-label, or its text.
UNLABELLED = """() => Array.from(document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, a[href]'))
  .filter(el => el.getClientRects().length > 0)
  .filter(el => {
    const text = s => (s || '').replace(/\\s+/g, ' ').trim();
    const labels = el.labels ? Array.from(el.labels).map(l => text(l.textContent)).join('') : '';
    const own = ['BUTTON', 'A'].includes(el.tagName) ? text(el.textContent) : '';
    const value = ['submit', 'button'].includes(el.type) ? text(el.value) : '';
    return !(text(el.getAttribute('aria-label')) || el.getAttribute('aria-labelledby') ||
             labels || own || value || text(el.getAttribute('title')));
  })
  .map(el => el.outerHTML.slice(0, 160))"""


def test_every_control_has_a_name_for_screen_readers(shop, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    login(page, shop.url, "admin@acme.test", "admin-demo")
    page.wait_for_url(f"{shop.url}/support/")
    ticket_id = ticket_id_of(shop, TICKET_SUBJECT)
    paths = ["/support/", f"/support/tickets/{ticket_id}", "/support/settings/",
             "/support/settings/tags/", "/support/settings/saved-replies/",
             "/support/settings/saved-replies/new", "/support/settings/mailboxes/new"]
    edit = page.goto(f"{shop.url}/support/settings/")
    assert edit.status == 200
    edit_link = page.locator("a[href*='/settings/mailboxes/'][href$='/edit']").first
    paths.append(edit_link.get_attribute("href"))
    missing = {}
    for path in paths:
        response = page.goto(shop.url + path if path.startswith("/") else path)
        assert response.status == 200, path
        # Open every <details> so the controls inside are checked too.
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        found = page.evaluate(UNLABELLED)
        if found:
            missing[path] = found
    assert missing == {}
    page.close()


def test_settings_pages_fit_a_phone_too(shop, browser, artifacts):
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    page = context.new_page()
    login(page, shop.url, "admin@acme.test", "admin-demo")
    page.wait_for_url(f"{shop.url}/support/")
    page.goto(f"{shop.url}/support/settings/")
    edit = page.locator("a[href*='/settings/mailboxes/'][href$='/edit']").first.get_attribute("href")
    wide = {}
    for path in ("/support/settings/", edit, "/support/settings/mailboxes/new",
                 "/support/settings/tags/", "/support/settings/saved-replies/",
                 "/support/settings/saved-replies/new"):
        page.goto(shop.url + path)
        if overflow(page) > 0:
            wide[path] = overflow(page)
    page.goto(shop.url + edit)
    within_screen(page, "form.si-form button[value=save]")
    within_screen(page, "input[name=append_to_sent]")
    page.screenshot(path=os.path.join(artifacts, "mailbox-settings-phone.png"), full_page=True)
    assert wide == {}
    context.close()


def test_j_and_k_on_a_ticket_open_the_next_and_previous_conversation(shop, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, outside = watch(page, shop.url)
    login(page, shop.url, "ada@acme.test", "ada-demo")
    page.wait_for_url(f"{shop.url}/support/")
    links = page.eval_on_selector_all("a.si-subject", "els => els.map(a => a.href)")
    assert len(links) >= 3
    page.click("a.si-subject >> nth=0")
    page.wait_for_url(links[0])
    page.locator("h1").click()
    with page.expect_navigation():
        page.keyboard.press("j")
    assert page.url == links[1]
    with page.expect_navigation():
        page.keyboard.press("j")
    assert page.url == links[2]
    with page.expect_navigation():
        page.keyboard.press("k")
    assert page.url == links[1]
    # Typed into the reply box, j and k are letters.
    page.click("#si-reply-text")
    page.keyboard.type("jk")
    assert page.url == links[1] and page.input_value("#si-reply-text") == "jk"
    # / goes back to the list the agent came from, folder and sort kept, search focused.
    page.goto(f"{shop.url}/support/?folder=open&sort=oldest")
    page.click("a.si-subject >> nth=0")
    page.wait_for_url("**/tickets/**")
    page.locator("h1").click()
    with page.expect_navigation():
        page.keyboard.press("/")
    assert page.url == f"{shop.url}/support/?folder=open&sort=oldest#search"
    assert page.evaluate("document.activeElement.id") == "si-q"
    assert not errors(), errors()
    assert outside == [], outside
    page.close()
