"""The example shop and its inbox in a real browser (Debian's Chromium via Playwright)."""
import os
import shutil
import threading
import time
from types import SimpleNamespace

import pytest
from werkzeug.serving import make_server

from conftest import require

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
        "--disable-sync", "--no-first-run", "--disable-extensions"]


@pytest.fixture(scope="module")
def shop_env(tmp_path_factory):
    """The example shop running its demo (dev mail server, seeded mail) on a free port.

    Not under ``app.testing``: SEND_MAIL is on, so a reply is really sent over SMTP to the
    development server (``mail.sent``), as in production."""
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
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}", app=app, mail=mail)
    server.shutdown()
    stop(app)
    mail.stop()


@pytest.fixture(scope="module")
def shop(shop_env):
    return shop_env.url


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


# -- the whole round trip: reply with a saved reply, customer answers, internal note -------
CUSTOMER = "alice@example.org"
TICKET_SUBJECT = "Tent pole snapped on first trip"


def _watch(page, base):
    """Collect JavaScript errors and requests to any host other than the app."""
    errors, outside = [], []
    page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
    page.on("console", lambda m: errors.append(f"{page.url}: console: {m.text}")
            if m.type == "error" else None)
    page.on("request", lambda r: outside.append(r.url)
            if not r.url.startswith(base + "/") and not r.url.startswith(("about:", "data:"))
            else None)
    return errors, outside


def _parsed(record):
    from email import message_from_bytes
    from email.policy import default

    return message_from_bytes(record.data, policy=default)


def _wait(predicate, timeout=10.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def test_reply_with_saved_reply_customer_answers_and_note_stays_internal(shop_env, browser, tmp_path):
    import smtplib
    from email.message import EmailMessage
    from email.utils import make_msgid

    import sqlalchemy as sa

    from shared_inbox.extension import get_state
    from shared_inbox.mail.imap import poll_all
    from shared_inbox.services import outbox

    base, app, mail = shop_env.url, shop_env.app, shop_env.mail
    artifacts = os.environ.get("SHARED_INBOX_ARTIFACTS") or str(tmp_path)
    os.makedirs(artifacts, exist_ok=True)
    state = get_state(app)
    m = state.models

    # A global saved reply with placeholders, as an admin would add it in the settings.
    with app.app_context():
        state.db.session.add(m.SavedReply(
            title="Warranty: replacement pole", mailbox_id=None,
            body="Hi {{ customer.first_name }},\n\nA replacement pole for ticket "
                 "#{{ ticket.number }} is on its way.\n\n{{ agent.name }}\n"))
        state.db.session.add(m.SavedReply(title="Unrelated: opening hours", mailbox_id=None,
                                          body="We are open 9-5."))
        state.db.session.commit()
        ticket = state.db.session.scalar(sa.select(m.Ticket).where(
            m.Ticket.subject.contains(TICKET_SUBJECT)))
        assert ticket is not None
        ticket_id, number = ticket.id, ticket.number
        customer_msg = state.db.session.scalars(
            sa.select(m.Message).where(m.Message.ticket_id == ticket_id,
                                       m.Message.kind == "inbound")
            .order_by(m.Message.created_at.desc(), m.Message.id.desc())).first()
        customer_mid, customer_refs = customer_msg.message_id, customer_msg.reference_ids
        state.db.session.remove()
    sent_before = len(mail.sent)

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, outside = _watch(page, base)
    login(page, base, "ada@acme.test", "ada-demo")
    page.wait_for_url(f"{base}/support/")

    # The inbox list: "/" focuses the search, j moves to the first conversation.
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "si-q"
    page.locator("#si-q").blur()
    page.keyboard.press("j")
    assert page.locator("tr.si-ticket-row.si-current").count() == 1
    inbox_png = os.path.join(artifacts, "inbox.png")
    page.screenshot(path=inbox_png, full_page=True)

    page.click(f"a.si-subject:has-text(\"{TICKET_SUBJECT}\")")
    page.wait_for_url(f"{base}/support/tickets/{ticket_id}")

    # r focuses the reply box; typing there is text, not shortcuts.
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("r")
    assert page.evaluate("document.activeElement.id") == "si-reply-text"
    page.keyboard.type("Thanks for the photo!\n\n")
    assert page.input_value("#si-reply-text") == "Thanks for the photo!\n\n"
    assert page.url == f"{base}/support/tickets/{ticket_id}"

    # The saved-reply picker (shown by inbox.js) searches the JSON endpoint and inserts the
    # reply rendered for this ticket at the cursor.
    picker = page.locator("#si-saved-picker")
    assert picker.is_visible()
    page.fill("#si-saved-q", "pole")
    page.wait_for_function(
        "() => { const s = document.getElementById('si-saved-select');"
        " return s.options.length === 1 && s.options[0].text.startsWith('Warranty'); }")
    page.click("#si-saved-insert")
    text = page.input_value("#si-reply-text")
    assert text.startswith("Thanks for the photo!\n\nHi Alice,\n\nA replacement pole for "
                           f"ticket #{number} is on its way.\n\nAda Agent"), text
    assert "{{" not in text
    assert page.evaluate("document.activeElement.id") == "si-reply-text"

    # Send: the view delivers at once over SMTP to the development server.
    page.click("form.si-reply-form button[name=action][value=send]")
    page.wait_for_url(f"{base}/support/tickets/{ticket_id}")
    page.wait_for_load_state()
    assert _wait(lambda: any(CUSTOMER in r.rcpt_tos for r in mail.sent[sent_before:])), \
        "the reply never reached the SMTP server"
    replies = [r for r in mail.sent[sent_before:] if CUSTOMER in r.rcpt_tos]
    assert len(replies) == 1
    sent = _parsed(replies[0])
    with app.app_context():
        ours = state.db.session.scalars(
            sa.select(m.Message).where(m.Message.ticket_id == ticket_id,
                                       m.Message.kind == "outbound")
            .order_by(m.Message.id.desc())).first()
        assert ours.send_status == "sent"
        our_mid, our_refs = ours.message_id, ours.references
        state.db.session.remove()
    assert [a.addr_spec for a in sent["To"].addresses] == [CUSTOMER]
    assert f"[#{number}]" in sent["Subject"]
    assert sent["Message-ID"] == f"<{our_mid}>"
    assert sent["In-Reply-To"] == f"<{customer_mid}>"
    assert sent["References"].split() == [f"<{i}>" for i in customer_refs + [customer_mid]]
    assert our_refs.split() == customer_refs + [customer_mid]
    assert sent["Thread-Index"]
    body = sent.get_body(("plain",)).get_content()
    assert "Hi Alice," in body and f"ticket #{number} is on its way" in body
    assert "Thanks for the photo!" in body

    # The customer answers by SMTP, as her mail client would.
    answer = EmailMessage()
    answer["From"] = f"Alice Johnson <{CUSTOMER}>"
    answer["To"] = "Acme Outdoor Support <support@example.com>"
    answer["Subject"] = "Re: " + sent["Subject"]
    answer_mid = make_msgid(domain="example.org")
    answer["Message-ID"] = answer_mid
    answer["In-Reply-To"] = sent["Message-ID"]
    answer["References"] = f"{sent['References']} {sent['Message-ID']}"
    answer.set_content("Wonderful, thank you! The pole fits perfectly-ALICE-ANSWER-7319.\n\n"
                       "Alice\n")
    with smtplib.SMTP("127.0.0.1", mail.smtp_port, timeout=10) as smtp:
        smtp.send_message(answer)

    def polled():
        with app.app_context():
            poll_all()
            found = state.db.session.scalar(sa.select(m.Message).where(
                m.Message.message_id == answer_mid.strip("<>")))
            where = found.ticket_id if found is not None else None
            state.db.session.remove()
            return where
    assert _wait(polled, timeout=15, interval=0.3) == ticket_id

    page.reload()
    thread = page.locator("section.si-thread")
    assert "ALICE-ANSWER-7319" in thread.locator("article.si-inbound").last.inner_text()
    assert page.url == f"{base}/support/tickets/{ticket_id}"

    # n focuses the internal note; a note is never mailed to the customer.
    page.locator("h1").click()
    page.keyboard.press("n")
    assert page.evaluate("document.activeElement.id") == "si-note-text"
    phrase = "INTERNAL-ONLY-5b8e: customer is a repeat buyer, no return label needed"
    page.keyboard.type(phrase)  # includes "e", "r", "n", "a": typed, not shortcuts
    assert page.input_value("#si-note-text") == phrase
    page.click("form.si-note-form button[type=submit]")
    page.wait_for_load_state()
    note = page.locator("article.si-note").last
    assert phrase in note.inner_text() and "internal note" in note.inner_text()
    with app.app_context():
        outbox.deliver_due(force=True)  # anything queued goes out now
        state.db.session.remove()
    time.sleep(0.3)
    assert not [r for r in mail.sent if b"INTERNAL-ONLY-5b8e" in r.data]
    assert [r for r in mail.sent[sent_before:] if CUSTOMER in r.rcpt_tos] == replies

    # a focuses the assignee select.
    page.locator("h1").click()
    page.keyboard.press("a")
    assert page.evaluate("document.activeElement.id") == "si-assignee"
    page.keyboard.press("Escape")
    page.locator("h1").click()
    # A modified key is the browser's, never a shortcut.
    page.keyboard.press("Control+e")
    page.wait_for_timeout(200)
    assert page.url.startswith(f"{base}/support/tickets/{ticket_id}")
    ticket_png = os.path.join(artifacts, "ticket.png")
    page.screenshot(path=ticket_png, full_page=True)

    # e closes the ticket, in place (no page load), and says so.
    assert page.locator("header .si-status").text_content().strip() != "closed"
    page.evaluate("window.siNoReload = true")
    page.keyboard.press("e")
    page.locator("#si-live").locator("text=is now closed").wait_for()
    assert page.locator("header .si-status").text_content().strip() == "closed"
    assert page.evaluate("window.siNoReload === true")
    with app.app_context():
        assert state.db.session.get(m.Ticket, ticket_id).status == "closed"
        state.db.session.remove()

    # / on a ticket's page goes to the inbox with the search box ready to type in.
    page.locator("h1").click()
    with page.expect_navigation():
        page.keyboard.press("/")
    assert page.url == f"{base}/support/#search"
    assert page.evaluate("document.activeElement.id") == "si-q"
    page.keyboard.type("pole")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=pole**")

    print(f"\nscreenshots: {inbox_png} {ticket_png}")
    assert not errors, errors
    assert outside == [], outside
