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
        assert not errors(), (who, errors())
        assert outside == [], (who, outside)
    ada.context.close()
